"""`model` job: build the from-scratch starting policy — tokenizer, random init, SFT warm-up.

    python -m rlspec.runtime.model --job jobs/model/<id>.json --context context.json

Offline runs (the quickstart, tests, CI) cannot download a model, so the spec can ask for a tiny
transformers model built from a config: a byte-level BPE tokenizer trained here on the warm-up
corpus (with Qwen2's pre-tokenizer, see `tinymodel`), random weights from the spec seed, and a short
supervised warm-up on worked examples so the policy starts out writing answers in the right format
(`...</think>\\n\\boxed{..}` / a python block). The warm-up trains only on the response tokens.
Output: `<output_dir>/model/` (an HF folder every later job loads), `warmup.jsonl` (loss per step),
and `done.json`, written last.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rlspec.runtime.job import JobError, load_job, parse_args, write_json_atomic


class ModelJobError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args("model", argv)
    try:
        job = load_job(args.job, "model", args.context)
        examples = warmup_examples(job.config, job.context.get("spec_dir"))
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model, tokenizer = build(job.config, examples)
        losses = warm_up(model, tokenizer, examples, job.config)
        save(model, tokenizer, out)
        (out / "warmup.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": v}) + "\n"
                                                  for i, v in enumerate(losses)))
        write_json_atomic(out / "done.json", {"model": "model", "parameters": sum(p.numel() for p in model.parameters()),
                                              "vocab": len(tokenizer), "warmup_steps": len(losses),
                                              "warmup_loss_first": losses[0] if losses else None,
                                              "warmup_loss_last": losses[-1] if losses else None})
    except (JobError, ModelJobError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def warmup_examples(cfg: dict[str, Any], spec_dir: str | None) -> list[dict[str, Any]]:
    """(prompt text, response text) pairs from the warm-up sources, prompts rendered as the policy sees them."""
    from rlspec.runtime.data.builtin import generate
    from rlspec.runtime.prompts import render_prompt
    from rlspec.runtime.scoring import record_domain
    out = []
    for source in cfg["from_scratch"]["warmup"]["sources"]:
        uri = source["uri"]
        if uri.startswith("builtin://"):
            rows = generate(uri)
        else:
            from rlspec.runtime.data.sources import read_source
            rows = read_source(source, "math", spec_dir=spec_dir)  # validates the source and mapping
        for row in rows:
            if not row.get("response"):
                raise ModelJobError(f"warm-up source {uri}: records need a `response` (a worked answer); "
                                    "for builtin generators add `worked=true` to the URI")
            domain = record_domain(row)
            out.append({"prompt": render_prompt(row, domain, cfg["prompt"]), "response": row["response"]})
    if not out:
        raise ModelJobError("the warm-up sources gave no examples")
    random.Random(cfg["seed"]).shuffle(out)
    return out


def build(cfg: dict[str, Any], examples: list[dict[str, Any]]):
    """Tokenizer trained on the warm-up corpus, then a randomly initialised model of the spec's shape."""
    from rlspec.runtime.tinymodel import EOS_TOKEN, TinyModelConfig, build_model, train_tokenizer
    scratch = cfg["from_scratch"]
    if scratch["architecture"]["family"] != "qwen2":
        raise ModelJobError(f"from_scratch family {scratch['architecture']['family']!r} is not built by this "
                            "version; use qwen2")
    corpus = [e["prompt"] + e["response"] + EOS_TOKEN for e in examples[: scratch["tokenizer"]["corpus_size"]]]
    tokenizer = train_tokenizer(corpus, scratch["tokenizer"]["vocab_size"])
    arch = scratch["architecture"]
    shape = TinyModelConfig(hidden=arch["hidden_size"], layers=arch["num_layers"], heads=arch["num_heads"],
                            kv_heads=arch["num_kv_heads"], ffn=arch["intermediate_size"],
                            vocab=scratch["tokenizer"]["vocab_size"], max_positions=cfg["max_context"],
                            tie_embeddings=arch["tie_word_embeddings"], seed=cfg["seed"])
    return build_model(tokenizer, shape), tokenizer


def warm_up(model, tokenizer, examples: list[dict[str, Any]], cfg: dict[str, Any]) -> list[float]:
    """Supervised fine-tuning on the responses (prompt tokens are context only)."""
    import torch
    w = cfg["from_scratch"]["warmup"]
    if w["steps"] == 0:
        return []
    torch.manual_seed(cfg["seed"])
    rows = [_encode(tokenizer, e, w["max_tokens"]) for e in examples]
    rows = [r for r in rows if r is not None]
    opt = torch.optim.AdamW(model.parameters(), lr=w["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / w["steps"]))
    order = random.Random(cfg["seed"] + 1)
    losses, t0 = [], time.perf_counter()
    model.train()
    for step in range(w["steps"]):
        batch = [rows[order.randrange(len(rows))] for _ in range(w["batch_size"])]
        ids, labels, attn = _collate(batch, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % 25 == 0 or step == w["steps"] - 1:
            print(f"warm-up step {step + 1}/{w['steps']} loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    model.eval()
    return losses


def _encode(tokenizer, example: dict[str, Any], max_tokens: int):
    prompt = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]
    response = tokenizer(example["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + response)[:max_tokens]
    if len(prompt) >= len(ids):
        return None  # the response would be cut away entirely
    return ids, len(prompt)


def _collate(batch, pad_id: int):
    import torch
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (seq, p) in enumerate(batch):
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, p:len(seq)] = torch.tensor(seq[p:])
        attn[row, :len(seq)] = 1
    return ids, labels, attn


def save(model, tokenizer, out: Path) -> None:
    """Write `model/` atomically (temporary folder, then rename)."""
    from rlspec.runtime.tinymodel import save_model
    final = out / "model"
    tmp = out / f".model.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tokenizer, tmp)
    (tmp / "rlspec.json").write_text(json.dumps({"built_by": "rlspec.runtime.model"}) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


if __name__ == "__main__":
    sys.exit(main())
