"""Benchmark: GRPO step time of our trainer against TRL's `GRPOTrainer`, measured in the same run.

What: seconds per optimiser step (generate + grade + advantages + one AdamW step + weight push) for
one workload: a tiny Qwen2 (hidden 128, 2 layers, local tokenizer, SFT warm-up so rewards are not
all zero), 8 prompts x 4 responses per step, at most 32 response tokens, temperature 1, lr 1e-4,
AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01), gradient clip 1.0, beta = 0 (no reference
model), clip 0.2 / 0.28, token-mean loss over the batch (TRL: `loss_type="dapo"`), std-normalised
group advantages, reward = our math grader (`rlspec.runtime.reward.grade_math`) for both.
Rows:
  (a) ours `rollout.engine: hf` vs TRL generating with transformers (goal: ours <= 0.5x TRL's time);
  (b) ours `rollout.engine: vllm` vs the fastest TRL configuration that runs here;
  (c) ours with 1 rank vs 2 DeepSpeed ranks (`resources.train.ranks_per_node: 2`);
  (d) the DAPO shape, several optimiser steps per rollout batch: ours with `mini_batch_size`
      `--mini-batch` prompts (8 / 2 = 4 optimiser steps per batch, old log-probs once per batch) vs
      TRL with `steps_per_generation` = 4 and `per_device_train_batch_size` = 2 prompts x 4 responses
      (TRL 1.16 generates once per `steps_per_generation` optimiser steps and computes old log-probs
      when that exceeds `gradient_accumulation_steps`; it shuffles the batch's completions across its
      mini-batches, ours keeps groups whole: same cost). Timed per rollout batch: TRL's optimiser-step
      times are summed over each generation's `steps_per_generation` steps.
How ours runs: the real way. The script writes a spec, `rlspec compile`s it, runs the model job
(from-scratch tiny model + warm-up), the curate job, then `python -m rlspec.runtime.train` for each
configuration and reads `time_step_s` / `time_generate_s` / `time_train_s` from its `metrics.jsonl`.
TRL gets the same model folder and the same curated prompts rendered with the same template (as
plain-text prompts), and a callback times its steps. Every configuration runs in its own process,
`--rounds` times, in alternating order; the first `--skip` steps of each run are warm-up. Reported:
medians over all kept steps, the median of per-round ratios (both sides of a round ran minutes
apart, so load drift hits them alike), the ratio of best steps, and the machine load (the 2-core box
is shared; with a load of 7-9 single numbers swing by 2x, so read the three ratios together).
Configurations that are slow or broken here (TRL with vLLM colocated, TRL with transformers'
continuous batching) run once, briefly, in the first round, so the JSON records what happened.
Run: `OMP_NUM_THREADS=1 python perf/train_step.py [--steps 12 --rounds 3]`; prints a table,
writes perf/results/train_step.json. TRL is a benchmark-only dependency: `pip install -e .[cpu,perf]`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results" / "train_step.json"
PY = sys.executable


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12, help="optimiser steps per run")
    p.add_argument("--skip", type=int, default=2, help="warm-up steps dropped from each run")
    p.add_argument("--rounds", type=int, default=3, help="runs per configuration, in alternating order")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="responses per prompt")
    p.add_argument("--max-tokens", type=int, default=32, help="response length budget")
    p.add_argument("--mini-batch", type=int, default=2, help="prompts per optimiser step in row (d), the DAPO shape")
    p.add_argument("--warmup-steps", type=int, default=150, help="SFT warm-up of the tiny model (0: random init)")
    p.add_argument("--configs", default="all", help="comma-separated subset of the configuration names")
    p.add_argument("--run-timeout", type=int, default=600, help="seconds before one run is killed")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)  # internal: run one TRL job
    return p.parse_args(argv)


# --- the workload, as a spec ----------------------------------------------------------------------

TEMPLATE = "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n"
LR, WEIGHT_DECAY, GRAD_CLIP, CLIP_LOW, CLIP_HIGH = 1.0e-4, 0.01, 1.0, 0.2, 0.28


def spec(args, *, model: dict, engine: str = "hf", ranks: int = 1, mini_batch: int | None = None) -> dict[str, Any]:
    """The workload; `mini_batch` prompts per optimiser step (None: the whole batch, one step)."""
    rows = args.prompts * args.group
    return {
        "name": "trainbench", "seed": 0,
        "model": {**model, "dtype": "float32", "max_context": 256,
                  "prompt": {"template": TEMPLATE, "math_suffix": " Answer in \\boxed{}."}},
        "datasets": {"math": {"domain": "math", "sources": [{"uri": "builtin://math?n=512&difficulty=1"}]}},
        "algorithm": {
            "loss_agg": "token_mean", "updates_per_batch": 1, "kl": {"coef": 0.0},
            "clip": {"low": CLIP_LOW, "high": CLIP_HIGH}, "micro_batch_size": rows, "mini_batch_size": mini_batch,
            "optimizer": {"lr": LR, "weight_decay": WEIGHT_DECAY, "grad_clip": GRAD_CLIP, "warmup_steps": 0},
            "overlong": {"kind": "none"}, "checkpoint_every": 10_000,
            # a tiny policy may score 0 for a while; timing runs must not stop on that
            "health": {"max_zero_reward_steps": None, "max_all_zero_variance_steps": None},
        },
        "rollout": {"engine": engine, "temperature": 1.0, "top_p": 1.0, "max_prompt_tokens": 96,
                    "hf": {"batch_size": rows},
                    "vllm": {"kv_cache_memory_bytes": 128 << 20, "enforce_eager": True, "max_num_seqs": rows}},
        "stages": [{"name": "bench", "datasets": ["math"], "max_response_tokens": args.max_tokens,
                    "steps": args.steps, "prompts_per_step": args.prompts, "group_size": args.group,
                    "evaluate": False}],
        "tracking": {"backend": "none"},
        "resources": {"train": {"cpus": 2, "ranks_per_node": ranks}, "deepspeed": {"zero_stage": 0}},
    }


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
              "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"})
    return e


def sh(cmd: list[str], cwd: Path, log: Path, timeout: int) -> None:
    """Run one job; on failure show the end of its log (the report quotes it)."""
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=cwd, env=env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{' '.join(cmd)} (cwd {cwd}) failed: rc={rc}\n" + "\n".join(tail))


def compile_spec(doc: dict, folder: Path) -> tuple[Path, dict]:
    """Write and compile a spec; returns the build folder and its job files by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sh([PY, "-m", "rlspec.compiler.cli", "compile", "spec.yaml", "-o", "build"], folder, folder / "compile.log", 120)
    build = folder / "build"
    jobs = {kind.name: sorted(kind.glob("*.json")) for kind in (build / "jobs").iterdir()}
    return build, jobs


def run_job(build: Path, job: Path, timeout: int, reuse: bool = False) -> Path:
    kind = job.parent.name
    out = build / json.loads(job.read_text())["output_dir"]
    if reuse and (out / "done.json").is_file():  # `--keep` folder from an earlier run
        return out
    sh([PY, "-m", f"rlspec.runtime.{kind}", "--job", str(job.relative_to(build)), "--context", "context.json"],
       build, build / f"{kind}-{job.stem}.log", timeout)
    return out


def prepare_model(args, work: Path) -> tuple[Path, Path]:
    """The policy every configuration starts from, and the curated prompts (same for all)."""
    if args.warmup_steps:
        model = {"from_scratch": {
            "architecture": {"family": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_layers": 2,
                             "num_heads": 4, "num_kv_heads": 2},
            "tokenizer": {"vocab_size": 384},
            "warmup": {"sources": [{"uri": "builtin://math?n=2000&difficulty=1&worked=true"}],
                       "steps": args.warmup_steps, "batch_size": 32, "lr": 3.0e-3}}}
    else:
        from rlspec.runtime.tinymodel import build_tiny_model
        model = {"path": str(build_tiny_model(work / "tiny"))}
    build, jobs = compile_spec(spec(args, model=model), work / "base")
    model_dir = run_job(build, jobs["model"][0], args.run_timeout, reuse=True) / "model" if args.warmup_steps else Path(model["path"])
    data = run_job(build, jobs["curate"][0], args.run_timeout)
    return model_dir, data


# --- ours ------------------------------------------------------------------------------------------


class Ours:
    def __init__(self, args, work: Path, name: str, model_dir: Path, engine: str, ranks: int,
                 mini_batch: int | None = None):
        self.name, self.args = name, args
        self.build, jobs = compile_spec(spec(args, model={"path": str(model_dir)}, engine=engine, ranks=ranks,
                                             mini_batch=mini_batch), work / name)
        run_job(self.build, jobs["model"][0], args.run_timeout)  # every job loads the model job's copy
        run_job(self.build, jobs["curate"][0], args.run_timeout)
        self.job = jobs["train"][0]
        self.out = self.build / json.loads(self.job.read_text())["output_dir"]
        self.config = {"engine": engine, "ranks": ranks, "zero_stage": 0, "launcher": "torchrun" if ranks > 1 else None,
                       "optimiser_steps_per_batch": args.prompts // (mini_batch or args.prompts)}

    def run(self) -> list[dict]:
        import shutil
        shutil.rmtree(self.out, ignore_errors=True)  # a finished job would resume; time a fresh one
        run_job(self.build, self.job, self.args.run_timeout)
        rows = [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines() if line]
        return [{"step_s": r["time_step_s"], "generate_s": r["time_generate_s"] + r["time_grade_s"],
                 "train_s": r["time_train_s"], "response_len": r["response_len_mean"], "reward": r["reward_mean"]}
                for r in rows]


# --- TRL -------------------------------------------------------------------------------------------


def trl_prompts(args, data: Path, model_dir: Path, path: Path) -> None:
    """The curated prompts rendered exactly as our trainer renders them, for TRL's dataset."""
    from transformers import AutoTokenizer

    from rlspec.compiler.jobs import TrainJob
    from rlspec.runtime.data.records import read_prompts
    from rlspec.runtime.prompts import render_prompt
    job = json.loads(next((data.parent.parent.parent / "jobs" / "train").glob("*.json")).read_text())
    template = TrainJob.model_validate(job["config"]).inference.prompt  # the train job's own typed config
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [{"prompt": render_prompt(r, "math", template, tok), "answer": str(r["answer"])}
            for r in read_prompts(data / "prompts.parquet")]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


class Trl:
    def __init__(self, args, work: Path, name: str, model_dir: Path, prompts: Path, probe: bool = False, **config):
        self.name, self.args, self.config = name, args, config
        self.probe = probe  # slow or broken here: one short run in the first round only, to record it
        steps = min(args.steps, args.skip + 2) if probe else args.steps
        per_gen = config.get("steps_per_generation", 1)  # optimiser steps per rollout batch
        self.folder = work / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cfg_path = self.folder / "worker.json"
        self.cfg_path.write_text(json.dumps({
            "model": str(model_dir), "prompts": str(prompts), "steps": steps * per_gen,
            "prompts_per_step": args.prompts // per_gen,
            "group": args.group, "max_tokens": args.max_tokens, "out": str(self.folder / "result.json"),
            "trainer_dir": str(self.folder / "trl_out"), **config}))

    def run(self) -> list[dict]:
        result = self.folder / "result.json"
        result.unlink(missing_ok=True)
        ranks = self.config.get("ranks", 1)
        cmd = [PY, str(Path(__file__).resolve()), "--trl-worker", str(self.cfg_path)]
        if ranks > 1:
            cmd = [PY, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks),
                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *cmd[1:]]
        sh(cmd, self.folder, self.folder / "run.log", self.args.run_timeout)
        return json.loads(result.read_text())["steps"]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trl_trainer(cfg: dict, callbacks: list, **overrides):
    """TRL's GRPOTrainer on the workload in `cfg` (a `Trl` worker file: model folder, prompts, batch,
    lengths) with the settings of our side (optimiser, clip, loss, beta 0); `overrides` replace
    GRPOConfig fields (perf/train_memory.py: gradient checkpointing, longer responses)."""
    if cfg.get("use_vllm"):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rlspec.runtime.reward import grade_math

    ranks = cfg.get("ranks", 1)
    rows = [json.loads(line) for line in Path(cfg["prompts"]).read_text().splitlines() if line]
    tok = AutoTokenizer.from_pretrained(cfg["model"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=torch.float32)

    def math_reward(prompts, completions, answer, **kwargs):
        # the same call and arguments our trainer's scoring makes (think_end, 5 s verifier limit)
        return [g.reward for g in grade_math(completions, answer, think_end="</think>", timeout=5)]

    ds_config = None
    if ranks > 1:
        ds_config = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                     "gradient_clipping": "auto", "zero_optimization": {"stage": cfg.get("zero_stage", 0)},
                     "bf16": {"enabled": False}, "zero_allow_untested_optimizer": True}
    args = GRPOConfig(**{
        "output_dir": cfg["trainer_dir"], "use_cpu": True, "seed": 0, "report_to": "none", "save_strategy": "no",
        "logging_steps": 1, "max_steps": cfg["steps"], "dataloader_num_workers": 0, "bf16": False,
        "deepspeed": ds_config, "per_device_train_batch_size": cfg["prompts_per_step"] * cfg["group"] // ranks,
        "gradient_accumulation_steps": 1, "num_generations": cfg["group"], "max_completion_length": cfg["max_tokens"],
        "temperature": 1.0, "top_p": 1.0, "top_k": 0, "learning_rate": LR, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "weight_decay": WEIGHT_DECAY, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
        "max_grad_norm": GRAD_CLIP, "optim": "adamw_torch", "beta": 0.0, "epsilon": CLIP_LOW,
        "epsilon_high": CLIP_HIGH, "loss_type": "dapo", "scale_rewards": "group", "mask_truncated_completions": False,
        "num_iterations": 1, "use_vllm": bool(cfg.get("use_vllm")), "vllm_mode": "colocate",
        "vllm_max_model_length": 256, "vllm_gpu_memory_utilization": 0.3,
        "use_transformers_continuous_batching": bool(cfg.get("continuous_batching")),
        "steps_per_generation": cfg.get("steps_per_generation", 1), **overrides})
    return GRPOTrainer(model=model, reward_funcs=math_reward, args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tok, callbacks=callbacks)


def step_timer(at_end=None):
    """A TrainerCallback timing each optimiser step; `at_end()` runs as each step ends (after the
    optimiser step)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t, self.times = 0.0, []

        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t)
            if at_end:
                at_end()

    return StepTimer()


def time_generation(trainer, after=None) -> list[float]:
    """Time the trainer's rollout half (generation + rewards + advantages): returns the list each
    call's seconds are appended to; `after(outputs)` runs as each call ends."""
    gen_times: list[float] = []
    inner = trainer._generate_and_score_completions

    def timed_generate(*a, **kw):
        start = time.perf_counter()
        out = inner(*a, **kw)
        gen_times.append(time.perf_counter() - start)
        if after:
            after(out)
        return out

    trainer._generate_and_score_completions = timed_generate
    return gen_times


def trl_worker(cfg_path: Path) -> None:
    """One TRL GRPOTrainer run (this process, or one rank under torchrun)."""
    cfg = json.loads(cfg_path.read_text())
    timer = step_timer()
    trainer = trl_trainer(cfg, [timer])
    gen_times = time_generation(trainer)
    trainer.train()
    if trainer.accelerator.is_main_process:
        per_gen = cfg.get("steps_per_generation", 1)  # one rollout batch = this many optimiser steps
        logs = [h for h in trainer.state.log_history if "reward" in h]
        if len(logs) >= len(gen_times) * per_gen:  # reward metrics logged at every optimiser step: one per batch
            logs = logs[::per_gen]  # (TRL 1.16 logs them only at the steps that generated)
        batches = [sum(timer.times[i:i + per_gen]) for i in range(0, len(timer.times), per_gen)]
        steps = [{"step_s": t, "generate_s": g, "train_s": t - g, "response_len": h.get("completions/mean_length"),
                  "reward": h.get("reward")} for t, g, h in zip(batches, gen_times, logs)]
        Path(cfg["out"]).write_text(json.dumps({
            "steps": steps, "world": trainer.accelerator.num_processes,
            "wrapped": type(trainer.model_wrapped).__name__, "optimizer": type(trainer.optimizer).__name__}))


# --- the runs --------------------------------------------------------------------------------------


def median_of(samples: list[dict], key: str) -> float | None:
    vals = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(name: str, runner, runs: list[list[dict]], skip: int) -> dict:
    kept = [s for steps in runs for s in steps[skip:]]
    return {"name": name, "config": runner.config, "runs": len(runs), "steps_kept": len(kept),
            **{f"{k}_median": median_of(kept, k) for k in ("step_s", "generate_s", "train_s", "response_len", "reward")},
            "step_s_min": min((s["step_s"] for s in kept), default=None),
            "step_s_per_run": [median_of(steps[skip:], "step_s") for steps in runs]}


ROWS = [  # (label, ours, theirs, goal); ratio = theirs' time / ours: how many times faster ours is
    ("(a) hf generate, 1 process each", "ours_hf", "trl_hf", "ours <= 0.5x TRL's time (ratio >= 2)"),
    ("(a) hf generate, 2 DeepSpeed ranks each", "ours_hf_2ranks", "trl_hf_2ranks", "report"),
    ("(b) ours vLLM 1 rank vs TRL's fastest", "ours_vllm", "trl_fastest", "report"),
    ("(b) ours vLLM 2 ranks vs TRL's fastest", "ours_vllm_2ranks", "trl_fastest", "report"),
    ("(c) ours hf: 2 ranks vs 1 rank", "ours_hf_2ranks", "ours_hf", "report (speed-up of 2 ranks)"),
    ("(c) ours vLLM: 2 ranks vs 1 rank", "ours_vllm_2ranks", "ours_vllm", "report (speed-up of 2 ranks)"),
    ("    TRL hf: 2 ranks vs 1 process", "trl_hf_2ranks", "trl_hf", "report (speed-up of 2 ranks)"),
    ("(d) DAPO shape (4 optimiser steps per batch), hf", "ours_hf_dapo", "trl_hf_dapo", "ours ahead (ratio > 1)"),
]


def work_folder(keep: Path | None, prefix: str) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The folder a benchmark works in: `--keep`'s (kept), else a temporary one (clean it up with
    the returned handle)."""
    ctx = tempfile.TemporaryDirectory(prefix=prefix) if keep is None else None
    work = Path(ctx.name) if ctx else keep
    work.mkdir(parents=True, exist_ok=True)
    return work, ctx


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.trl_worker:
        return trl_worker(args.trl_worker)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work, work_ctx = work_folder(args.keep, "train_step-")
    load_start = os.getloadavg()
    model_dir, data = prepare_model(args, work)
    prompts = work / "trl_prompts.jsonl"
    trl_prompts(args, data, model_dir, prompts)
    makers = {
        "ours_hf": lambda: Ours(args, work, "ours_hf", model_dir, "hf", 1),
        "ours_vllm": lambda: Ours(args, work, "ours_vllm", model_dir, "vllm", 1),
        "ours_hf_2ranks": lambda: Ours(args, work, "ours_hf_2ranks", model_dir, "hf", 2),
        "ours_vllm_2ranks": lambda: Ours(args, work, "ours_vllm_2ranks", model_dir, "vllm", 2),
        "trl_hf": lambda: Trl(args, work, "trl_hf", model_dir, prompts, engine="transformers generate", ranks=1),
        "ours_hf_dapo": lambda: Ours(args, work, "ours_hf_dapo", model_dir, "hf", 1, mini_batch=args.mini_batch),
        "trl_hf_dapo": lambda: Trl(args, work, "trl_hf_dapo", model_dir, prompts, engine="transformers generate",
                                   ranks=1, steps_per_generation=args.prompts // args.mini_batch),
        "trl_hf_2ranks": lambda: Trl(args, work, "trl_hf_2ranks", model_dir, prompts, engine="transformers generate",
                                     ranks=2, zero_stage=0, launcher="torchrun + DeepSpeed"),
        "trl_vllm": lambda: Trl(args, work, "trl_vllm", model_dir, prompts, probe=True, engine="vLLM colocate",
                                ranks=1, use_vllm=True),
        "trl_cb": lambda: Trl(args, work, "trl_cb", model_dir, prompts, probe=True,
                              engine="transformers continuous batching", ranks=1, continuous_batching=True),
    }
    names = list(makers) if args.configs == "all" else args.configs.split(",")
    runners, failures = {}, {}
    for name in names:
        try:
            runners[name] = makers[name]()
        except Exception as exc:  # noqa: BLE001 - a configuration that cannot start is a result too
            failures[name] = str(exc)
    samples: dict[str, list[list[dict]]] = {n: [] for n in runners}
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    for rnd in range(args.rounds):
        order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
        for name in order:
            if name in failures or (rnd > 0 and getattr(runners[name], "probe", False)):
                continue
            started = time.perf_counter()
            try:
                samples[name].append(runners[name].run())
            except Exception as exc:  # noqa: BLE001
                failures[name] = str(exc)
                print(f"[round {rnd + 1}] {name}: FAILED\n{exc}", flush=True)
                continue
            steps = samples[name][-1][args.skip:]
            print(f"[round {rnd + 1}] {name}: median {median_of(steps, 'step_s'):.3f} s/step "
                  f"({time.perf_counter() - started:.0f} s wall, load {os.getloadavg()[0]:.2f})", flush=True)
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    results = {n: summarise(n, runners[n], runs, args.skip) for n, runs in samples.items() if runs}
    trl_ones = [n for n in results if n.startswith("trl_") and not n.endswith("_dapo")]  # (d) is another workload
    fastest = min(trl_ones, key=lambda n: results[n]["step_s_median"]) if trl_ones else None
    if fastest:
        results["trl_fastest"] = {**results[fastest], "name": f"trl_fastest = {fastest}"}
    rows = []
    for label, a, b, goal in ROWS:
        if a in results and b in results:
            ra, rb = results[a]["step_s_median"], results[b]["step_s_median"]
            # the same round ran both close in time: its ratio is the least disturbed by load drift
            paired = [t / o for o, t in zip(results[a]["step_s_per_run"], results[b]["step_s_per_run"]) if o and t]
            rows.append({"row": label, "ours": a, "theirs": results[b]["name"], "ours_s": ra, "theirs_s": rb,
                         "ratio": rb / ra, "ratio_paired_by_round": paired,
                         "ratio_paired_median": statistics.median(paired) if paired else None,
                         "ratio_best_step": results[b]["step_s_min"] / results[a]["step_s_min"], "goal": goal})
    print_table(results, rows, failures)
    head = rows[0] if rows else None  # row (a), or the first row of a `--configs` subset
    report = {
        "peer": "TRL GRPOTrainer (trl " + _version("trl") + "), transformers generate, 1 process, OMP_NUM_THREADS=1",
        "ours": head and head["ours_s"], "theirs": head and head["theirs_s"], "unit": "seconds per rollout batch (median); one optimiser step per batch, except row (d)",
        "ratio": head and head["ratio"], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows, "configs": results, "failures": failures,
        "workload": {"prompts_per_step": args.prompts, "group_size": args.group, "max_response_tokens": args.max_tokens,
                     "steps_per_run": args.steps, "warmup_steps_dropped": args.skip, "rounds": args.rounds,
                     "row_d_mini_batch_prompts": args.mini_batch,
                     "temperature": 1.0, "lr": LR, "optimizer": "AdamW (torch), wd 0.01, clip 1.0", "beta": 0.0,
                     "loss": "token mean over the batch (TRL loss_type=dapo)", "reward": "rlspec grade_math",
                     "model": f"tiny Qwen2 h128 L2, SFT warm-up {args.warmup_steps} steps",
                     "prompt_template": TEMPLATE},
        "versions": {p: _version(p) for p in ("trl", "transformers", "torch", "deepspeed", "vllm-cpu", "accelerate")},
        "git": _git(),
        "machine": {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
                    "loadavg_at_start": load_start, "uptime": uptime, "python": sys.version.split()[0]},
        "details": load_note(load_start[0], os.getloadavg()[0], os.cpu_count() or 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if work_ctx:
        work_ctx.cleanup()


def load_note(start: float, end: float, cpus: int) -> str:
    """What the machine's load says about the numbers (the benchmark machine is often shared)."""
    if max(start, end) <= cpus:
        return f"load average {start:.1f} at the start, {end:.1f} at the end on {cpus} cores: an unloaded machine"
    return (f"loaded machine: load average {start:.1f} at the start, {end:.1f} at the end on {cpus} cores (other "
            "processes shared it), so step times are slower and noisier than on an idle one; both sides of a "
            "round ran minutes apart under similar load, so the per-round (paired) ratios are the steadier numbers")


def _git() -> dict:
    def out(*cmd):
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"head": out("rev-parse", "HEAD"), "dirty_runtime": out("status", "--short", "--", "runtime", "compiler")}


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def print_table(results: dict, rows: list[dict], failures: dict) -> None:
    print(f"\n{'configuration':<34}{'step s':>8}{'gen+grade s':>12}{'train s':>9}{'resp len':>9}{'reward':>8}"
          f"{'steps':>6}")
    for name, r in results.items():
        print(f"{name:<34}{r['step_s_median']:>8.3f}{r['generate_s_median']:>12.3f}{r['train_s_median']:>9.3f}"
              f"{r['response_len_median'] or 0:>9.1f}{r['reward_median'] or 0:>8.3f}{r['steps_kept']:>6}")
    print(f"\n{'comparison (ratio = theirs / ours)':<42}{'ours s':>8}{'theirs s':>9}{'ratio':>7}{'paired':>8}"
          f"{'best':>6}  goal")
    for r in rows:
        paired = r["ratio_paired_median"]
        print(f"{r['row']:<42}{r['ours_s']:>8.3f}{r['theirs_s']:>9.3f}{r['ratio']:>7.2f}"
              f"{paired if paired is not None else float('nan'):>8.2f}{r['ratio_best_step']:>6.2f}  {r['goal']}  "
              f"[theirs = {r['theirs']}]")
    for name, err in failures.items():
        print(f"\nFAILED {name}: {err.splitlines()[0]}")


if __name__ == "__main__":
    main()
