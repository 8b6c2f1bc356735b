"""Helpers shared by the curation tests: a tiny model that always answers 7, specs compiled for real.

The "answers 7" model is a real tiny Qwen2 (rlspec.runtime.tinymodel) fine-tuned for a few dozen
steps to reply `... </think>\n\boxed{7}` to any prompt. With it, a pass-rate filter has something
to measure: items whose answer is 7 are solved, all others are not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TEMPLATE = "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n"
MATH_SUFFIX = " Answer in \\boxed{}."
SEVEN = "ok</think>\n\\boxed{7}"


def build_seven_model(out_dir: Path, steps: int = 60) -> Path:
    import torch
    from rlspec.runtime import tinymodel
    from rlspec.runtime.data.builtin import generate

    prompts = [TEMPLATE.replace("{question}", r["prompt"] + MATH_SUFFIX)
               for r in generate("builtin://math?n=24&difficulty=1&seed=7")]
    tok = tinymodel.train_tokenizer(list(tinymodel.arithmetic_corpus(200)) + [p + SEVEN for p in prompts], 320)
    cfg = tinymodel.TinyModelConfig(hidden=64, layers=2, heads=2, kv_heads=1, ffn=128, max_positions=256)
    model = tinymodel.build_model(tok, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    texts = [p + SEVEN + tinymodel.EOS_TOKEN for p in prompts]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = torch.full_like(batch["input_ids"], -100)
    answer = len(tok(SEVEN + tinymodel.EOS_TOKEN, add_special_tokens=False)["input_ids"])
    labels[:, -answer:] = batch["input_ids"][:, -answer:]  # left padding: every row ends with the answer
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return tinymodel.save_model(model, tok, out_dir)


def compile_spec(spec: Path, out: Path) -> Path:
    """`rlspec compile`, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def job_files(build: Path, kind: str) -> list[Path]:
    return sorted((build / "jobs" / kind).glob("*.json"))


def job_for(build: Path, kind: str, label: str) -> Path:
    for path in job_files(build, kind):
        if json.loads(path.read_text())["label"] == label:
            return path
    raise AssertionError(f"no {kind} job labelled {label!r} in {build}")


def run_job(build: Path, kind: str, job: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m rlspec.runtime.<kind> --job ... --context context.json` from the build folder."""
    return subprocess.run([sys.executable, "-m", f"rlspec.runtime.{kind}", "--job", str(job.relative_to(build)),
                           "--context", "context.json"], cwd=build, capture_output=True, text=True, timeout=timeout)
