"""The tiny model builder: tokenizer ids survive an AutoTokenizer reload; the model has the asked shape."""

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from rlspec.runtime import tinymodel

TEXTS = [
    "12 + 7",  # the measured trap: a plain ByteLevel pre-tokeniser gives different ids after reload
    "What is 3*4?\n\nOk  then, it's   done.\r\n",
    "Café 東京 123456 \\boxed{42} </think>",
    "<|im_start|>user\nhi<|im_end|>\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_reloaded_tokenizers_give_identical_ids(tiny_model_dir, text):
    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    auto = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir)
    assert auto(text, add_special_tokens=False)["input_ids"] == raw
    assert fast(text, add_special_tokens=False)["input_ids"] == raw
    assert auto.decode(raw) == text  # byte-level BPE is lossless


def test_chat_template_and_special_tokens(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                       add_generation_prompt=True)
    # ChatML that opens the assistant's thinking, as the quickstart's written template does
    assert rendered == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    plain = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                    add_generation_prompt=True, enable_thinking=False)
    assert plain == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == tinymodel.EOS_TOKEN
    assert tok.convert_ids_to_tokens(tok.pad_token_id) == tinymodel.PAD_TOKEN
    assert tok.padding_side == "left"


def test_model_has_the_configured_shape_and_reloads_identically(tmp_path):
    cfg = tinymodel.TinyModelConfig(hidden=64, layers=3, heads=4, kv_heads=1, ffn=96, vocab=400, max_positions=256)
    out = tinymodel.build_tiny_model(tmp_path / "m", cfg)
    model = AutoModelForCausalLM.from_pretrained(out)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.max_position_embeddings) == (64, 3, 4, 1, 96, 256)
    tok = AutoTokenizer.from_pretrained(out)
    assert c.vocab_size == len(tok) <= 400
    # same config and seed -> same weights; the saved folder holds exactly those weights
    rebuilt = tinymodel.build_model(tok, cfg)
    ids = torch.tensor([tok("What is 5 + 8?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, rebuilt(ids).logits)


def test_build_does_not_touch_the_global_rng():
    tok = tinymodel.train_tokenizer(tinymodel.arithmetic_corpus(200), 300)
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    tinymodel.build_model(tok, tinymodel.TinyModelConfig(hidden=32, layers=1, heads=2, kv_heads=1, ffn=32))
    assert torch.equal(torch.rand(4), expected)


def test_cli_builds_a_loadable_folder(tmp_path):
    tinymodel.main(["--out", str(tmp_path / "cli"), "--hidden", "32", "--layers", "1", "--heads", "2",
                    "--kv-heads", "1", "--ffn", "64", "--vocab", "300"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "cli").config.hidden_size == 32
