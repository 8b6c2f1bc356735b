"""Benchmark: a bench job's throughput with 2 engine replicas against 1, on the same prompts.

What: compiles one small spec twice, with `inference.bench.data_parallel_size` 1 and 2 (and
`resources.bench.cpus: 2`, so each of 2 replicas gets one thread), runs the real bench job
(`python -m rlspec.runtime.bench`, `OMP_NUM_THREADS=1`) on the tiny model for each, checks that both
wrote the same samples and metrics, and compares generated tokens per second over the sampling phase
(replica processes, engine start-up, generation, merge: `results.json` `wall_s.sample_s`) and over
the whole job.
Why: issue 17's data-parallel inference: every GPU (here: core) a job holds should generate. On
2 cores the ceiling is 2x; engine start-up (paid by each replica process, in parallel, on the same 2
cores) and the parent's work come off it, so the gain grows with the generation's length.
How: `python perf/bench_replicas.py [--engine vllm --problems 64 --k 16 --max-tokens 512 --repeats 2]`;
the two jobs run one at a time in alternating order, the best of each counts (the CPU is shared: a
burst of other load slows one run, never helps it); prints a table, writes
perf/results/bench_replicas.json with every run's throughput and the load average.
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

from rlspec.compiler.cli import main as rlspec_main
from rlspec.runtime import tinymodel

RESULTS = Path(__file__).resolve().parent / "results" / "bench_replicas.json"
SPEC = """\
name: bench-replicas-perf
seed: 0
model: {{path: {model}, dtype: float32, max_context: {context},
        prompt: {{template: "<|im_start|>user\\n{{question}}<|im_end|>\\n<|im_start|>assistant\\n"}}}}
datasets:
  math: {{domain: math, sources: [{{uri: "builtin://math?n=20"}}]}}
rollout:
  engine: {engine}
  max_prompt_tokens: 256
  hf: {{batch_size: 64}}
  vllm: {{kv_cache_memory_bytes: 268435456, enforce_eager: true, max_num_seqs: 256}}
inference:
  bench: {{data_parallel_size: {replicas}}}
resources:
  bench: {{cpus: 2}}
stages:
  - {{name: s1, datasets: [math], max_response_tokens: 32, steps: 1, prompts_per_step: 4, group_size: 2}}
benchmarks:
  held:
    domain: math
    source: {{uri: "builtin://math?n={problems}&split=test"}}
    k: {k}
    metrics: [avg@k, pass@2]
    sampling: {{max_response_tokens: {max_tokens}, temperature: 1.0}}
tracking: {{backend: none}}
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved 1, 2, 2, 1, ...; best counts")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def prepare(tmp: Path, model: Path, args, replicas: int) -> tuple[Path, str]:
    """A compiled build whose model job has run; the bench job's id."""
    folder = tmp / f"dp{replicas}"
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC.format(model=model, engine=args.engine, replicas=replicas,
                                                  problems=args.problems, k=args.k, max_tokens=args.max_tokens,
                                                  context=256 + args.max_tokens))
    assert rlspec_main(["compile", str(folder / "spec.yaml"), "-o", str(folder / "build")]) == 0
    build = folder / "build"
    jobs = json.loads((build / "context.json").read_text())["jobs"]
    (model_job,) = [j for j, i in jobs.items() if i["kind"] == "model"]
    run_job(build, "model", model_job)
    (bench_job,) = [j for j, i in jobs.items() if i["label"] == "bench held @ initial"]
    return build, bench_job


def run_job(build: Path, kind: str, jid: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"rlspec.runtime.{kind}", "--job", f"jobs/{kind}/{jid}.json",
                           "--context", "context.json"], cwd=build, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} job failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def measure(build: Path, jid: str) -> dict:
    job_s = run_job(build, "bench", jid)
    out = build / "results" / "bench" / jid
    results = json.loads((out / "results.json").read_text())
    tokens = results["tokens"]["generated"]
    wall = results["wall_s"]
    return {"replicas": results["replicas"], "generated_tokens": tokens, "job_s": round(job_s, 2),
            "sample_s": wall["sample_s"], "load_s": wall["load_s"], "generate_s": wall["generate_s"],
            "sample_tok_s": tokens / wall["sample_s"], "job_tok_s": tokens / job_s,
            "samples": (out / "samples.jsonl").read_text(), "metrics": results["metrics"]}


def main(argv=None) -> None:
    args = parse_args(argv)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tinymodel.build_tiny_model(tmp / "model", tinymodel.TinyModelConfig())
        builds = {n: prepare(tmp, model, args, n) for n in (1, 2)}
        # one job at a time, in alternating order, so a burst of other load on the shared CPU hits both
        order = [n for i in range(args.repeats) for n in ((1, 2) if i % 2 == 0 else (2, 1))]
        tries = {1: [], 2: []}
        for n in order:
            tries[n].append(measure(*builds[n]))
    outputs = {(t["samples"], json.dumps(t["metrics"], sort_keys=True)) for runs in tries.values() for t in runs}
    same = len(outputs) == 1
    assert same, "2 replicas wrote other samples or metrics than 1: the split changed the results"
    best = {n: max(runs, key=lambda t: t["sample_tok_s"]) for n, runs in tries.items()}
    rows = [{k: v for k, v in best[n].items() if k not in ("samples", "metrics")} for n in (1, 2)]
    print(f"\n{'replicas':>8}{'tokens':>10}{'sample s':>10}{'tok/s':>9}{'job s':>8}{'job tok/s':>11}"
          f"{'engine start s':>16}{'generate s':>12}")
    for r in rows:
        print(f"{r['replicas']:>8}{r['generated_tokens']:>10}{r['sample_s']:>10.1f}{r['sample_tok_s']:>9.0f}"
              f"{r['job_s']:>8.1f}{r['job_tok_s']:>11.0f}{r['load_s']:>16.1f}{r['generate_s']:>12.1f}")
    ratio = rows[1]["sample_tok_s"] / rows[0]["sample_tok_s"]
    medians = {n: statistics.median(t["sample_tok_s"] for t in tries[n]) for n in (1, 2)}
    print(f"\n2 replicas / 1 (best of {args.repeats}): {ratio:.2f}x over the sampling phase "
          f"({medians[2] / medians[1]:.2f}x median), "
          f"{rows[1]['job_tok_s'] / rows[0]['job_tok_s']:.2f}x over the whole job; same results: {same}")
    load_end = os.getloadavg()
    report = {
        "peer": "the same bench job with 1 engine replica (in-process engine, OMP_NUM_THREADS=1), same prompts, same run",
        "ours": rows[1]["sample_tok_s"], "theirs": rows[0]["sample_tok_s"],
        "unit": "generated tokens/s over the sampling phase (results.json wall_s.sample_s), best of repeats",
        "ratio": ratio, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load": {"start": list(load_start), "end": list(load_end)},  # 1, 5, 15-minute load averages
        "details": {"engine": args.engine, "problems": args.problems, "k": args.k, "max_tokens": args.max_tokens,
                    "model": "tinymodel.TinyModelConfig() (~0.3 M parameters)", "same_results": same,
                    "job_ratio": rows[1]["job_tok_s"] / rows[0]["job_tok_s"], "best_runs": rows,
                    "ratio_median": medians[2] / medians[1], "repeats": args.repeats,
                    "all_sample_tok_s": {str(n): [round(t["sample_tok_s"]) for t in tries[n]] for n in (1, 2)},
                    "cpus": os.cpu_count(), "loadavg_at_start": load_start, "loadavg_at_end": load_end,
                    "python": sys.version.split()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
