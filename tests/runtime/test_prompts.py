"""Prompt rendering: text templates, the chat template (the tiny tokenizer's, a real trained one),
message-list records, system prompts, chat-template arguments and per-domain prompts."""

from __future__ import annotations

import pytest
import yaml

from rlspec.compiler.jobs import Prompts
from rlspec.compiler.spec import PromptTemplate
from rlspec.runtime.prompts import render_prompt
from rlspec.runtime.tinymodel import ChatTemplate, train_tokenizer

QUICKSTART = yaml.safe_load(open("specs/quickstart.yaml"))["model"]["prompt"]


@pytest.fixture(scope="module")
def tokenizer():
    """A real tokenizer trained here, carrying the from-scratch chat template."""
    corpus = ["<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n1 + 2 = 3</think>"] * 50
    return train_tokenizer(corpus, 300)


def test_tiny_chat_template_renders_the_quickstart_text(tokenizer):
    record = {"prompt": "What is 7 + 5 - 3?"}
    text = render_prompt(record, "math", PromptTemplate(**QUICKSTART))
    chat = PromptTemplate(**{k: v for k, v in QUICKSTART.items() if k != "template"})  # the default: chat template
    assert render_prompt(record, "math", chat, tokenizer) == text
    assert render_prompt(record, "math", chat, ChatTemplate()) == text
    assert text == "<|im_start|>user\nWhat is 7 + 5 - 3? Answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n<think>\n"


def test_written_template_wins_over_the_chat_template(tokenizer):
    prompt = PromptTemplate(template="Q: {question}\nA:", math_suffix="")
    assert render_prompt({"prompt": "2+2?"}, "math", prompt, tokenizer) == "Q: 2+2?\nA:"


def test_no_chat_template_falls_back_to_deepseek_text():
    class Plain:
        chat_template = None
    text = render_prompt({"prompt": "2+2?"}, "qa", PromptTemplate(), Plain())
    assert text == "<｜User｜>2+2?<｜Assistant｜><think>\n"
    with pytest.raises(ValueError, match="has none"):
        render_prompt({"prompt": "2+2?"}, "qa", PromptTemplate(use_chat_template=True), Plain())


def test_messages_system_prompt_and_suffix(tokenizer):
    record = {"prompt": "And 3 + 4?", "messages": [
        {"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "3"},
        {"role": "user", "content": "And 3 + 4?"}]}
    prompt = PromptTemplate(system="Be brief.", math_suffix=" Box it.")
    text = render_prompt(record, "math", prompt, tokenizer)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n"
                    "<|im_start|>assistant\n3<|im_end|>\n<|im_start|>user\nAnd 3 + 4? Box it.<|im_end|>\n"
                    "<|im_start|>assistant\n<think>\n")
    own = {**record, "messages": [{"role": "system", "content": "Mine."}, *record["messages"]]}
    assert render_prompt(own, "math", prompt, tokenizer).startswith("<|im_start|>system\nMine.<|im_end|>")


def test_chat_template_args_reach_the_template(tokenizer):
    prompt = PromptTemplate(chat_template_args={"enable_thinking": False})
    assert render_prompt({"prompt": "hi"}, "qa", prompt, tokenizer) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_system_in_a_text_template():
    prompt = PromptTemplate(template="[{system}] {question} =", system="Add.", use_chat_template=False)
    assert render_prompt({"prompt": "1+1"}, "qa", prompt) == "[Add.] 1+1 ="


def test_per_domain_prompt(tokenizer):
    prompts = Prompts(default=PromptTemplate(template="M: {question}"),
                      domains={"qa": PromptTemplate(system="You answer trivia.")})
    assert render_prompt({"prompt": "x"}, "math", prompts, tokenizer).startswith("M: x")
    assert render_prompt({"prompt": "Capital of France?"}, "qa", prompts, tokenizer) == (
        "<|im_start|>system\nYou answer trivia.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n")
