"""Tiny Qwen2 models with a locally trained tokenizer, built from a config on any machine.

What: library functions that train a byte-level BPE tokenizer, build a randomly initialised Qwen2
causal LM of any (small) shape, give the tokenizer a chat template, and save both as an ordinary
Hugging Face folder that transformers, vLLM and DeepSpeed load like any downloaded model.

Why: tests, CI and the from-scratch `model` job have no hub access, yet need a *real* model end to
end (real tokenizer, real attention, real vLLM). A tiny model built here is that real thing.

How: `build_tiny_model(out_dir, TinyModelConfig(...))` does it all; the steps are separate functions
so later jobs can reuse them (`train_tokenizer`, `build_model`, `save_model`). From a shell:
    python -m rlspec.runtime.tinymodel --out /tmp/tiny --hidden 128 --layers 2

The one trap (measured, see shared/platform/machine.md §3): `AutoTokenizer` returns a
`Qwen2Tokenizer` for `model_type=qwen2`, which keeps only vocab + merges and rebuilds the
normaliser and pre-tokeniser as Qwen2's. A tokenizer trained with any other pre-tokeniser then
gives *different ids* after a reload, silently. So we train with exactly Qwen2's pipeline (NFC,
Qwen2's split regex, byte-level without its own regex) and the test suite asserts that the raw
`tokenizer.json`, `AutoTokenizer` and `PreTrainedTokenizerFast` agree.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# Qwen2's pre-tokenisation regex (the pattern Qwen2Tokenizer installs when it is loaded).
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
EOS_TOKEN = "<|im_end|>"  # chat models end a turn with this, so generation stops on it
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", EOS_TOKEN, PAD_TOKEN)
# ChatML, as Qwen's: one `<|im_start|>role\n...<|im_end|>\n` block per message (a system message too);
# the opened assistant turn starts a think block, so a question renders exactly as the quickstart's
# text template does ("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n").
# `enable_thinking: false` (a chat-template argument, as Qwen3's) leaves the think block out.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the tiny model and its tokenizer (defaults: ~0.3 M parameters)."""

    family: str = "qwen2"  # transformers architecture: qwen2 or llama (spec: from_scratch.architecture.family)
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 256
    vocab: int = 512  # target BPE vocabulary; the trained one can be smaller on a small corpus
    max_positions: int = 2048
    tie_embeddings: bool = False
    seed: int = 0  # initialisation seed: the same config gives the same weights


def arithmetic_corpus(n: int = 4000, seed: int = 0) -> Iterator[str]:
    """Synthetic math chat text: enough digits, words and markup for a useful tiny vocabulary."""
    rng = random.Random(seed)
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        yield (
            f"<|im_start|>user\nWhat is {a} {op} {b}? Please reason step by step, and put your "
            f"final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n<think>\n"
            f"We compute {a} {op} {b} = {value}.\n</think>\nThe answer is \\boxed{{{value}}}.<|im_end|>\n"
        )


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer with Qwen2's exact pre-tokenisation (see module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            # use_regex=False: the split above already did GPT-2-style splitting, Qwen2's way.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # every byte is in the vocabulary, so no input is ever unknown
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        padding_side="left",  # generation pads on the left so every row ends at the same column
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


class ChatTemplate:
    """The tiny tokenizer's chat template, rendered without a tokenizer: the `model` job renders
    warm-up prompts before the tokenizer that will carry this template has been trained."""

    def __init__(self, template: str = CHAT_TEMPLATE):
        import jinja2
        self.chat_template = template
        self._template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template)

    def apply_chat_template(self, messages, *, tokenize: bool = False, add_generation_prompt: bool = False, **kwargs):
        assert not tokenize, "ChatTemplate renders text only"
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **kwargs)


def build_model(tokenizer, cfg: TinyModelConfig):
    """A randomly initialised causal LM of `cfg.family` sized by `cfg`, wired to `tokenizer`'s special ids."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    families = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if cfg.family not in families:
        raise ValueError(f"family {cfg.family!r}: this version builds {sorted(families)}")
    config_cls, model_cls = families[cfg.family]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Seed a private generator state so building a model neither depends on nor disturbs the
    # caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = model_cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_model(model, tokenizer, out_dir: str | Path) -> Path:
    """Write model (safetensors) and tokenizer (with chat template) as one HF folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_model(out_dir: str | Path, cfg: TinyModelConfig = TinyModelConfig(), corpus=None) -> Path:
    """Train the tokenizer, build the model and save both to `out_dir`; returns the folder."""
    corpus = arithmetic_corpus(seed=cfg.seed) if corpus is None else corpus
    tokenizer = train_tokenizer(corpus, cfg.vocab)
    return save_model(build_model(tokenizer, cfg), tokenizer, out_dir)


def _parse_args(argv=None) -> tuple[Path, TinyModelConfig]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    for name, default in asdict(TinyModelConfig()).items():
        kind = ((lambda s: s.lower() in ("1", "true", "yes")) if isinstance(default, bool)
                else type(default))
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    args = vars(parser.parse_args(argv))
    return args.pop("out"), TinyModelConfig(**args)


def main(argv=None) -> None:
    out, cfg = _parse_args(argv)
    print(build_tiny_model(out, cfg))


if __name__ == "__main__":
    main()
