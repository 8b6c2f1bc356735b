"""Turning a dataset record into the text the policy sees, as the spec's `model.prompt` says.

One function serves curation (pass-rate filters), training and benchmarking, so the policy is
always asked the same way. The config is the job's `Prompts` block: `model.prompt`, and per domain
the prompt the datasets and benchmarks of that domain write over it.

Chat template or text: `use_chat_template: true` always renders with the tokenizer's chat template,
`false` always fills `template`; unset, the chat template is used when `template` is not written and
the tokenizer has one (else AceReason's DeepSeek-R1 text). With the chat template, a record's
`messages` (a message list from the source) are rendered as they are, the last user message
getting the domain suffix; a `system` prompt is added when they have no system message; the
assistant turn is opened, with `chat_template_args` passed to `apply_chat_template`.
"""

from __future__ import annotations

from typing import Any

from rlspec.compiler.jobs import Prompts
from rlspec.compiler.spec import PromptTemplate


def question_text(record: dict[str, Any], domain: str, prompt: PromptTemplate) -> str:
    """The problem statement plus the domain's instruction (and starter code for code problems);
    domains other than math and code get the statement as it is."""
    text = str(record["prompt"]).rstrip()
    if domain == "math":
        return text + prompt.math_suffix
    if domain != "code":
        return text
    text += prompt.code_suffix
    starter = record.get("starter_code")
    if starter:
        text += "\n\nStarter code:\n```python\n" + str(starter).rstrip() + "\n```"
    return text


def uses_chat_template(prompt: PromptTemplate, tokenizer: Any) -> bool:
    if prompt.use_chat_template is not None:
        return prompt.use_chat_template
    return prompt.template is None and bool(getattr(tokenizer, "chat_template", None))


def messages_for(record: dict[str, Any], domain: str, prompt: PromptTemplate) -> list[dict[str, str]]:
    """The chat the policy is asked: the record's messages (or its question as one user message),
    the question with its suffix as the last user turn, the system prompt first unless one is there."""
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in record.get("messages") or []]
    question = question_text(record, domain, prompt)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        messages.append({"role": "user", "content": question})
    else:
        messages[last_user] = {"role": "user", "content": question}
    if prompt.system is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": prompt.system})
    return messages


def render_prompt(record: dict[str, Any], domain: str, prompts: Prompts | PromptTemplate, tokenizer: Any = None) -> str:
    """The full prompt string for `record` (see the module docstring for which way it is rendered)."""
    prompt = prompts.domains.get(domain, prompts.default) if isinstance(prompts, Prompts) else prompts
    if uses_chat_template(prompt, tokenizer):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("model.prompt.use_chat_template needs a tokenizer with a chat template; this one has "
                             "none: write a `template` with `{question}` and set `use_chat_template: false`")
        return tokenizer.apply_chat_template(messages_for(record, domain, prompt), tokenize=False,
                                             add_generation_prompt=True, **prompt.chat_template_args)
    text = prompt.text_template().replace("{system}", prompt.system or "")
    return text.replace("{question}", question_text(record, domain, prompt))
