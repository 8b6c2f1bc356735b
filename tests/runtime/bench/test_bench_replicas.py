"""A real bench job (`python -m rlspec.runtime.bench`) over 1 and 2 engine replicas: the same samples
and the same metrics, on the hf engine and on vLLM (CPU); a replica killed mid-job fails the job
with nothing complete left behind, and the rerun gives the uninterrupted run's results.

The replicas run on CPU (`inference.bench.data_parallel_size: 2`, `resources.bench.cpus: 2`: one
thread each), so the data parallelism here is processes on two cores, standing in for GPUs. The spec,
the tiny model and the job lookups are test_bench_job's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlspec.compiler.cli import main as rlspec_main

from test_bench_job import SPEC, bench_job, model_job, tiny  # noqa: F401 (a fixture)

# test_bench_job's spec, its engine replicas on CPU: `replicas` processes sharing the job's 2 cpus
SPEC_DP = SPEC + """\
inference:
  bench: {{data_parallel_size: {replicas}}}
resources:
  bench: {{cpus: 2}}
"""
PROBLEMS, K = 6, 4  # test_bench_job's `held` benchmark


def build(tmp: Path, model: Path, engine: str, replicas: int) -> tuple[Path, str]:
    """Compile the spec; run its model job; return the build folder and the bench job's id."""
    folder = tmp / f"{engine}-{replicas}"
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC_DP.format(model=model, engine=engine, replicas=replicas,
                                                     code_uri="builtin://code?n=3&split=test", window=""))
    assert rlspec_main(["compile", str(folder / "spec.yaml"), "-o", str(folder / "build")]) == 0
    out = folder / "build"
    assert run(out, model_job(out), "model").returncode == 0
    jid = bench_job(out, "held", "initial")
    config = json.loads((out / "jobs" / "bench" / f"{jid}.json").read_text())["config"]
    assert config["replicas"]["count"] == replicas and config["replicas"]["cpus"] == 2 // replicas
    return out, jid


def run(folder: Path, jid: str, kind: str = "bench", fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    env.pop("RLSPEC_FAULT", None)
    if fault is not None:
        env["RLSPEC_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", f"rlspec.runtime.{kind}", "--job", f"jobs/{kind}/{jid}.json",
                           "--context", "context.json"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)


def outcome(folder: Path, jid: str) -> tuple[list[dict], dict]:
    """samples.jsonl and what of results.json must not depend on the replicas (not times, ids, counts)."""
    out = folder / "results" / "bench" / jid
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    results = json.loads((out / "results.json").read_text())
    kept = {k: results[k] for k in ("metrics", "status_counts", "solved_any", "tokens", "problems", "samples")}
    return lines, kept


def check_same(one: tuple[Path, str], two: tuple[Path, str]) -> None:
    lines1, results1 = outcome(*one)
    lines2, results2 = outcome(*two)
    assert len(lines1) == PROBLEMS * K
    assert lines2 == lines1  # texts, answers, rewards, token counts, finish reasons, in problem order
    assert results2 == results1
    assert len({x["response"] for x in lines1}) > 1  # sampled, not all the same text


@pytest.mark.slow
def test_two_hf_replicas_match_one_and_a_killed_replica_fails_the_job(tmp_path, tiny):
    one, two = build(tmp_path, tiny, "hf", 1), build(tmp_path, tiny, "hf", 2)
    proc = run(*one)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = two[0] / "results" / "bench" / two[1]
    killed = run(*two, fault="replica:1")
    assert killed.returncode == 1
    assert "replica 1 of 2 failed (killed by signal SIGKILL)" in killed.stderr
    assert not any((out / name).exists() for name in ("done.json", "results.json", "samples.jsonl"))
    rerun = run(*two)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "replica 0 of 2 done" in rerun.stdout and "replica 1 of 2 done" in rerun.stdout
    check_same(one, two)


@pytest.mark.slow
def test_two_vllm_replicas_match_one(tmp_path, tiny):
    pytest.importorskip("vllm")
    one, two = build(tmp_path, tiny, "vllm", 1), build(tmp_path, tiny, "vllm", 2)
    for folder, jid in (one, two):
        proc = run(folder, jid)
        assert proc.returncode == 0, proc.stderr[-3000:]
    check_same(one, two)
