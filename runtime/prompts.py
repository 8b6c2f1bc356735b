"""Turning a dataset record into the text the policy sees, as the spec's `model.prompt` says.

One function serves curation (pass-rate filters), training and benchmarking, so the policy is
always asked the same way. The config is the spec's `model.prompt` block, as the job carries it.
"""

from __future__ import annotations

from typing import Any

from rlspec.compiler.spec import PromptTemplate


def question_text(record: dict[str, Any], domain: str, prompt: PromptTemplate) -> str:
    """The problem statement plus the domain's instruction (and starter code for code problems)."""
    text = str(record["prompt"]).rstrip()
    if domain == "math":
        return text + prompt.math_suffix
    text += prompt.code_suffix
    starter = record.get("starter_code")
    if starter:
        text += "\n\nStarter code:\n```python\n" + str(starter).rstrip() + "\n```"
    return text


def render_prompt(record: dict[str, Any], domain: str, prompt: PromptTemplate, tokenizer: Any = None) -> str:
    """The full prompt string. With `use_chat_template`, the tokenizer's chat template renders one
    user message and opens the assistant turn; otherwise `template` with `{question}` filled in."""
    question = question_text(record, domain, prompt)
    if prompt.use_chat_template:
        if tokenizer is None:
            raise ValueError("model.prompt.use_chat_template needs the policy's tokenizer")
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt.template.replace("{question}", question)
