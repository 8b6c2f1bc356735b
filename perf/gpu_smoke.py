"""GPU smoke test: 3 GRPO steps of our train job on one NVIDIA GPU, at 8K then 16K response tokens.

What: a Qwen2 with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads, FFN 4864,
151,936-token vocabulary, tied embeddings: 494 M parameters) built from its config with random
weights, and a tokenizer built here (byte-level BPE trained on the builtin math corpus, padded to
the model's vocabulary with synthetic tokens `<v123>` so the logits have the real width). A random
model rarely samples EOS, so responses run to the length budget: the step is the long-context
worst case. One stage per length, `--steps` steps each, through rlspec's own train job with
DeepSpeed ZeRO-3 in bf16 over NCCL (a world of 1), gradient checkpointing on, rollouts with vLLM if
it is installed, else the transformers engine (`rollout.engine: hf`).

How: the real way. The script writes the model folder and a spec (`<out>/spec.yaml`), runs
`rlspec compile`, the `model` and `curate` jobs as subprocesses, then each `train` job in its own
process (`--child`), which runs `rlspec.runtime.train.main` and records the peak GPU memory
(`torch.cuda.max_memory_allocated` / `max_memory_reserved`). Per stage it reports those peaks, the
plan's estimate for the same job (`rlspec plan --json`, `compiler/memory.py`), step time and
rollout / train tokens per second from the job's metrics.jsonl.

Needs: torch with CUDA, transformers, deepspeed, pydantic and math-verify (`scripts/gpu-smoke-wheels.sh`
builds or fetches the wheels a torch + transformers image lacks, on a machine with network), and
rlspec itself (`pip install --no-deps -e .`); vLLM optional. No network: the data is `builtin://`, the
model is built here.

    python perf/gpu_smoke.py                       # GPU: 8K and 16K, 3 steps each -> perf/results/gpu_smoke.json
    python perf/gpu_smoke.py --cpu --out /tmp/s    # tiny shapes, 1 step at 16 and 32 tokens (the CPU test)
    scripts/gpu-smoke.sh --lengths 8192 --steps 3  # on a GPU machine with no network (see that script)

With the transformers engine a step's generation is sequential in the response length (8 responses
of 8K tokens: minutes on one GPU), so on a time-limited machine run one length per command.

Prints one row per stage; writes the results JSON (`--results`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results" / "gpu_smoke.json"
PY = sys.executable
# Qwen2.5-0.5B's config.json (the shape only; no weights are fetched).
QWEN2_05B = {"hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2, "ffn": 4864, "vocab": 151936}
TINY = {"hidden": 64, "layers": 2, "heads": 2, "kv_heads": 1, "ffn": 128, "vocab": 600}
PROMPT = {"template": "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n",
          "math_suffix": " Answer in \\boxed{}."}
MAX_PROMPT_TOKENS = 128
# Per step, from the train job's metrics.jsonl (the training phase's peaks: `rlspec.runtime.peakmem`).
STEP_METRICS = ("step", "time_step_s", "time_generate_s", "time_train_s", "rollout_tokens_per_s", "train_tokens_per_s",
                "response_len_mean", "truncation_rate", "train_peak_gpu_gib", "train_peak_rss_gib")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
       "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU, 1 step at 16 and 32 tokens")
    p.add_argument("--lengths", default=None, help="response budgets, comma-separated (default 8192,16384)")
    p.add_argument("--steps", type=int, default=None, help="GRPO steps per length (default 3; --cpu 1)")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="responses per prompt")
    p.add_argument("--engine", choices=["auto", "vllm", "hf"], default="auto", help="auto: vLLM if installed")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: a new one under /tmp)")
    p.add_argument("--results", type=Path, default=None, help=f"results JSON (default {RESULTS.relative_to(ROOT)}, "
                   "with --cpu <out>/gpu_smoke.json)")
    p.add_argument("--child", nargs=3, metavar=("BUILD", "JOB", "PEAKS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in (args.lengths or ("16,32" if args.cpu else "8192,16384")).split(",")]
    args.steps = args.steps or (1 if args.cpu else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(*args.child)
    if not args.cpu:
        import torch
        if not torch.cuda.is_available():
            sys.exit("gpu_smoke: no CUDA GPU here (torch.cuda.is_available() is False); --cpu runs the tiny CPU mode")
    out = args.out or Path(f"/tmp/rlspec-gpu-smoke-{os.getpid()}")
    out.mkdir(parents=True, exist_ok=True)
    engine = pick_engine(args.engine)
    model_dir = build_policy(out / "policy", TINY if args.cpu else QWEN2_05B, max(args.lengths))
    spec = write_spec(out, model_dir, args, engine)
    build = prepare(out, spec)
    plan = plan_memory(spec)
    rows = [run_stage(build, job, plan) for job in train_jobs(build)]
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "mode": "cpu" if args.cpu else "gpu",
               "engine": engine, "shape": TINY if args.cpu else QWEN2_05B, "zero_stage": 3,
               "dtype": "float32" if args.cpu else "bfloat16", "prompts_per_step": args.prompts,
               "group_size": args.group, "steps": args.steps, "stages": rows}
    path = args.results or (out / "gpu_smoke.json" if args.cpu else RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print_table(rows)
    print(f"results: {path}")
    return 0


# ------------------------------------------------------------------------------------------ setup


def pick_engine(choice: str) -> str:
    if choice != "auto":
        return choice
    import importlib.util
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def build_policy(folder: Path, shape: dict[str, int], max_len: int) -> Path:
    """The policy folder: a BPE tokenizer trained on builtin math text, padded with synthetic tokens
    to `shape["vocab"]`, and a randomly initialised Qwen2 of `shape` (rlspec's own tiny-model code)."""
    if (folder / "config.json").is_file():
        return folder
    from rlspec.runtime import tinymodel
    from rlspec.runtime.data.builtin import generate
    rows = generate("builtin://math?n=300&difficulty=2&worked=true")
    tokenizer = tinymodel.train_tokenizer([r["prompt"] + r["response"] + tinymodel.EOS_TOKEN for r in rows], 512)
    tokenizer.add_tokens([f"<v{i}>" for i in range(shape["vocab"] - len(tokenizer))])
    cfg = tinymodel.TinyModelConfig(family="qwen2", hidden=shape["hidden"], layers=shape["layers"],
                                    heads=shape["heads"], kv_heads=shape["kv_heads"], ffn=shape["ffn"],
                                    vocab=shape["vocab"], max_positions=max_len + MAX_PROMPT_TOKENS,
                                    tie_embeddings=True, seed=1)
    tinymodel.save_model(tinymodel.build_model(tokenizer, cfg), tokenizer, folder)
    return folder


def write_spec(out: Path, model_dir: Path, args: argparse.Namespace, engine: str) -> Path:
    gpu_mem = 80.0
    if not args.cpu:
        import torch
        gpu_mem = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    stages = [{"name": f"r{n}", "datasets": ["math"], "max_response_tokens": n, "steps": args.steps,
               "prompts_per_step": args.prompts, "group_size": args.group, "evaluate": False} for n in args.lengths]
    spec = {
        "name": "gpu-smoke", "seed": 1,
        "model": {"path": str(model_dir), "dtype": "float32" if args.cpu else "bfloat16",
                  "max_context": max(args.lengths) + MAX_PROMPT_TOKENS, "prompt": PROMPT},
        "datasets": {"math": {"domain": "math", "sources": [{"uri": "builtin://math?n=64&difficulty=2"}]}},
        "algorithm": {"micro_batch_size": 1, "gradient_checkpointing": True, "checkpoint_every": 1000},
        "rollout": {"engine": engine, "temperature": 1.0, "max_prompt_tokens": MAX_PROMPT_TOKENS},
        "stages": stages, "evaluate_initial": False, "tracking": {"backend": "none", "mode": "disabled"},
        # gpus: 1 also with --cpu, so the plan estimates the job (the CPU run stands in for the GPU one)
        "resources": {"train": {"gpus": 1, "cpus": os.cpu_count() or 1, "mem_gb": 16, "gpu_mem_gb": gpu_mem},
                      "deepspeed": {"zero_stage": 3}},
    }
    if engine == "vllm":
        # a bounded KV cache: vLLM's default (85% of the GPU) would leave the colocated trainer nothing
        spec["rollout"]["vllm"] = {"kv_cache_memory_bytes": (64 << 20) if args.cpu else (8 << 30),
                                   "enforce_eager": args.cpu}
    path = out / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sh(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"gpu_smoke: {what} failed (rc {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res


def prepare(out: Path, spec: Path) -> Path:
    """Compile, then run the model and curate jobs (train jobs run one by one in `run_stage`)."""
    build = out / "build"
    sh([PY, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(build)], out, "rlspec compile")
    for kind in ("model", "curate"):
        for job in sorted((build / "jobs" / kind).glob("*.json")):
            if not (build / "results" / kind / job.stem / "done.json").is_file():
                sh([PY, "-m", f"rlspec.runtime.{kind}", "--job", str(job.relative_to(build)), "--context",
                    "context.json"], build, f"{kind} job {job.stem}")
    return build


def plan_memory(spec: Path) -> dict[str, Any]:
    """Per train job id: the plan's GPU-memory estimate (what `rlspec plan --json` prints)."""
    res = sh([PY, "-m", "rlspec.compiler.cli", "plan", str(spec), "--json"], spec.parent, "rlspec plan")
    return {j["id"]: j.get("memory") for j in json.loads(res.stdout)["jobs"] if j["kind"] == "train"}


def train_jobs(build: Path) -> list[Path]:
    """Train jobs in stage order (each stage's input is the previous one's output)."""
    context = json.loads((build / "context.json").read_text())
    labels = [j for j, v in context["jobs"].items() if v["kind"] == "train"]
    return [build / "jobs" / "train" / f"{j}.json" for j in labels]


# ------------------------------------------------------------------------------------------ measure


def run_stage(build: Path, job: Path, plan: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(job.read_text())
    peaks = build / f"peaks-{job.stem}.json"
    t0 = time.perf_counter()
    sh([PY, str(Path(__file__).resolve()), "--child", str(build), str(job.relative_to(build)), str(peaks)], build,
       f"train job {doc['label']}")
    wall = time.perf_counter() - t0
    metrics = [json.loads(x) for x in (build / doc["output_dir"] / "metrics.jsonl").read_text().splitlines() if x]
    est = plan.get(job.stem) or {}
    return {"stage": doc["config"]["stage"], "job": job.stem, "max_response_tokens": doc["config"]["max_response_tokens"],
            "wall_s": round(wall, 1), **json.loads(peaks.read_text()),
            "estimate_gib": est.get("per_gpu_gib"), "estimate": est,
            "steps": [{k: m[k] for k in STEP_METRICS if k in m} for m in metrics]}


def child(build: str, job: str, peaks: str) -> int:
    """One train job in this process, then its peak GPU memory (GiB) into `peaks`."""
    import torch
    os.chdir(build)
    from rlspec.runtime import train
    rc = train.main(["--job", job, "--context", "context.json"])
    gpu = torch.cuda.is_available()
    Path(peaks).write_text(json.dumps({
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if gpu else None}))
    return rc


def machine() -> dict[str, Any]:
    import torch
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for mod in ("deepspeed", "transformers", "vllm"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'stage':>8} {'tokens':>6} {'peak alloc':>10} {'reserved':>9} {'plan est':>9} {'step s':>8} "
          f"{'gen tok/s':>10} {'train tok/s':>11}")
    for r in rows:
        last = r["steps"][-1] if r["steps"] else {}
        def num(v, fmt):
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        print(f"{r['stage']:>8} {r['max_response_tokens']:>6} {num(r['peak_allocated_gib'], '>9.2f')}G "
              f"{num(r['peak_reserved_gib'], '>8.2f')}G {num(r['estimate_gib'], '>8.2f')}G "
              f"{num(last.get('time_step_s'), '>8.1f')} {num(last.get('rollout_tokens_per_s'), '>10.0f')} "
              f"{num(last.get('train_tokens_per_s'), '>11.0f')}")


if __name__ == "__main__":
    sys.exit(main())
