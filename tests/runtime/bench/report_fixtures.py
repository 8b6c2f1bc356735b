"""Recorded runs for the report tests: a compiled 2-cell x 2-stage build folder with the outputs
each job kind writes, generated here instead of trained (a real grid would take hours).

The outputs follow the job contracts: bench results come from `rlspec.runtime.bench.score` itself
(fed with real `Sample` and `Grade` objects), funnels from `runtime.data.funnel.funnel_json`, and
training rows carry every key the trainer logs, and `samples.jsonl` rows every key of the samples
contract (helper-written stand-ins for the trainer's rollouts: fixed text, outcomes in a cycle).
Values are deterministic functions of the cell, stage and (for snapshots inside a stage) step, so
tests can predict them (`bench_accuracy`, `reward_at`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlspec.compiler.cli import main as rlspec_main
from rlspec.runtime import bench
from rlspec.runtime.data.funnel import Step, funnel_json
from rlspec.runtime.job import load_job, write_json_atomic
from rlspec.runtime.reward import Grade
from rlspec.runtime.rollout import Sample

SPEC = """\
name: report-fixture
seed: 5
model: {path: org/model, max_context: 4096}
datasets:
  math:
    domain: math
    sources: [{uri: "builtin://math?n=100"}]
    filters: [{kind: length, min: 5}, {kind: dedup_exact}]
benchmarks:
  held:
    domain: math
    source: {uri: "builtin://math?n=20&split=test"}
    k: 4
    metrics: [avg@k, pass@2, maj@k]
    sampling: {max_response_tokens: 512}
    reference: [{model: "Some-Model-7B (paper)", value: 41.5}]
  code-held:
    domain: code
    source: {uri: "builtin://code?n=10&split=test"}
    k: 2
    metrics: [avg@k]
    sampling: {max_response_tokens: 512}
stages:
  - {name: s1, datasets: [math], max_response_tokens: 512, steps: 6, prompts_per_step: 8, group_size: 4}
  - {name: s2, datasets: [math], max_response_tokens: 1024, steps: 5, prompts_per_step: 8, group_size: 4,
     filter_before: {k: 8, max: 0.75}}
grid:
  axes:
    - {path: "stages[s2].max_response_tokens", name: len, values: [768, 1024]}
tracking: {backend: wandb, project: rlspec-test, mode: offline}
"""

STAGES = {"initial": 0, "s1": 1, "s2": 2}
OUTCOMES = ("correct", "wrong", "truncated", "error")
SAMPLE_EVERY, SAMPLES_PER_STEP = 2, 4
TRAIN_KEYS = ("epoch", "response_len_max", "group_size", "zero_variance_frac", "kl", "clip_frac", "grad_norm", "lr",
              "logprob_mad", "logprob_kl", "rollout_tokens_per_s", "train_tokens_per_s", "time_generate_s",
              "time_grade_s", "time_train_s")


def compile_fixture(tmp: Path, spec: str = SPEC) -> Path:
    spec_file = tmp / "spec.yaml"
    spec_file.write_text(spec)
    build = tmp / "build"
    assert rlspec_main(["compile", str(spec_file), "-o", str(build)]) == 0
    return build


def context(build: Path) -> dict:
    return json.loads((build / "context.json").read_text())


def job_file(build: Path, jid: str) -> Path:
    kind = context(build)["jobs"][jid]["kind"]
    return build / "jobs" / kind / f"{jid}.json"


def cell_of(build: Path, jid: str) -> int:
    return context(build)["jobs"][jid]["cells"][-1]


def bench_accuracy(cell: int, stage: str, problem: int, sample: int, step: int | None = None) -> bool:
    """Which samples are right: more after each stage, and cell 1 learns more in s2; a snapshot at
    `step` inside a stage (`evaluate_every`) solves STAGES[stage] - 1 + step of 4, so a late
    snapshot can beat its stage's end."""
    solved = STAGES[stage] + (cell if stage == "s2" else 0) if step is None else min(4, STAGES[stage] - 1 + step)
    return (problem + sample) % 4 < solved


def sample_outcome(step: int, i: int) -> str:
    return OUTCOMES[(step + i) % len(OUTCOMES)]


def reward_at(cell: int, stage_index: int, step: int) -> float:
    return round(0.1 + 0.1 * stage_index + 0.02 * step + 0.05 * cell * stage_index, 4)


def fill(build: Path, skip: set[str] = frozenset()) -> None:
    """Write the outputs of every job except those in `skip` (job ids)."""
    for jid, info in context(build)["jobs"].items():
        if jid in skip or info["kind"] == "report":
            continue
        job = load_job(job_file(build, jid), info["kind"], build / "context.json")
        out = build / job.output_dir
        out.mkdir(parents=True, exist_ok=True)
        WRITERS[info["kind"]](job, out, cell_of(build, jid))


def write_bench(job, out: Path, cell: int) -> None:
    stage = job.label.split("@ ")[-1].split(" step ")[0]
    problems = [{"id": f"p{i}"} for i in range(5)]
    samples, grades = [], []
    for p in range(len(problems)):
        ok = [bench_accuracy(cell, stage, p, s, job.config.step) for s in range(job.config.k)]
        samples.append([Sample([1] * 10, [0.0] * 10, "stop", "x") for _ in ok])
        grades.append([Grade(1.0, "correct", answer="7") if o else Grade(0.0, "wrong", answer=str(p)) for o in ok])
    results = bench.score(job, problems, samples, grades, {}, {"load_s": 1.0, "generate_s": 2.0}, 3.0)
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "done.json", {"benchmark": job.config.benchmark})


def write_train(job, out: Path, cell: int) -> None:
    i = stage_index(job)
    rows = []
    for step in range(1, job.config.steps + 1):
        row = {k: 0.5 for k in TRAIN_KEYS}
        row.update(step=step, reward_mean=reward_at(cell, i, step), pass_rate=reward_at(cell, i, step) * 0.9,
                   response_len_mean=100 + 10 * step + 50 * i, truncation_rate=0.1 / step, entropy=1.0 - 0.05 * step,
                   temperature=1.0)
        rows.append(row)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = [{"stage": job.config.stage, "step": step, "prompt": f"What is {step} + {n}?\nThink.",
                "response": f"<think>{'x' * 50 * n}</think> \\boxed{{{step + n}}}", "reward": float(sample_outcome(step, n) == "correct"),
                "accuracy": float(sample_outcome(step, n) == "correct"), "outcome": sample_outcome(step, n), "status": "graded",
                "length": 10 + n, "domain": "math"}
               for step in range(SAMPLE_EVERY, job.config.steps + 1, SAMPLE_EVERY) for n in range(SAMPLES_PER_STEP)]
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    for step in job.config.snapshot_steps:  # what the bench jobs of evaluate_every read
        (out / "snapshots" / f"step-{step:06d}" / "model").mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir(exist_ok=True)
    write_json_atomic(out / "done.json", {"steps": len(rows)})


def write_funnel(job, out: Path, cell: int) -> None:
    name = job.config.dataset if job.kind == "curate" else f"hard prompts before {job.config.stage}"
    steps = [Step("length", 1, 100, 95, 5, 0.01, {"too short": 5}), Step("dedup_exact", 2, 95, 90, 5, 0.02, {"dup": 5})]
    write_json_atomic(out / "funnel.json", funnel_json(name, "math", [{"uri": "builtin://math", "records": 100}], steps, 90))
    write_json_atomic(out / "done.json", {"records": 90})


def stage_index(job) -> int:
    """Where the job's stage stands in its cell's spec (the resolved spec in the build folder)."""
    resolved = json.loads((Path(job.path).parent.parent.parent / "spec.resolved.json").read_text())
    names = [st["name"] for st in resolved["cells"][0]["spec"]["stages"]]
    return names.index(job.config.stage)


def write_model(job, out: Path, cell: int) -> None:
    (out / "model").mkdir(exist_ok=True)
    write_json_atomic(out / "done.json", {"model": "model"})


WRITERS = {"model": write_model, "bench": write_bench, "train": write_train, "curate": write_funnel, "filter": write_funnel}
