"""A train job cancelled on a real Slurm resumes on Snakemake's retry and ends with the weights of
an uninterrupted run (issue 13, "preemption and time limits").

`rlspec run tests/e2e/data/slurm-preempt.yaml --profile slurm` runs the small spec's `model`, `curate`
and its one train stage (40 GRPO steps, a checkpoint after each) through sbatch on the local
one-node cluster (scripts/slurm-up.sh, started as tests/e2e/test_slurm.py does). Once the train job
is RUNNING in Slurm and has logged a step, the test `scancel`s it: Slurm sends SIGTERM to the job
step's processes and SIGKILL after KillWait, as preemption does. The generated profile's `retries`
submits the job again; it must resume from its newest complete checkpoint, log every step once,
finish, and leave the final weights of the same spec run uninterrupted with `--profile local` (run
meanwhile, into another build folder), bit for bit.

What it stands in for, and where this cluster differs from a production one: the local cluster
tracks a step's processes with proctrack/linuxproc (cgroups cannot work in this sandbox). In the
job step the process tree is snakemake (the plugin's job step) -> bash -> the trainer; SIGTERM kills
bash at once, and the trainer, reparented, is no longer found by linuxproc, so it finishes its step
and writes its stop checkpoint ("stopped by SIGTERM after step N"), which the test checks. Under
proctrack/cgroup, slurmstepd SIGKILLs the whole step as soon as its task (snakemake) exits, so the
trainer would die mid-step and the retry would resume from the newest periodic checkpoint instead
(with checkpoint_every 1 here, one step earlier); the rest of the test holds either way.

A stand-in for a production cluster in three ways: one node, CPU, a tiny model. Needs root
(packages, daemons). About 2.5 min on 2 busy cores, the cluster's start included:
    .venv/bin/python -m pytest -m slurm tests/e2e/test_slurm_preemption.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_slurm import LOOPBACK_FLAGS, SUBMITTED, slurm_cluster  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests/e2e/data/slurm-preempt.yaml"
# The train job and the jobs it needs (the spec has no benchmarks; `report` is left out).
UNTIL = ["--until", "train"]
RUN_TIMEOUT_S = 420
RESUMED = re.compile(r"^resumed from step-(\d{6}) \(step (\d+)/(\d+)\)$", re.M)


def train_folder(build: Path) -> tuple[str, Path]:
    """The one train job's id and results folder; compiles the spec into `build`."""
    subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(SPEC), "-o", str(build)],
                   check=True, capture_output=True, timeout=120)
    (job,) = (build / "jobs" / "train").glob("*.json")
    return job.stem, build / "results" / "train" / job.stem


def train_submissions(build: Path) -> list[str]:
    """The Slurm job ids Snakemake submitted the train rule under, in order."""
    log = build / "logs/snakemake.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return [slurm_id for slurm_id, slurm_log in SUBMITTED.findall(text) if "/rule_train/" in slurm_log]


def slurm_state(slurm_id: str) -> str:
    out = subprocess.run(["scontrol", "-o", "show", "job", slurm_id], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"JobState=(\S+)", out)
    return m[1] if m else "UNKNOWN"


def steps_logged(folder: Path) -> int:
    path = folder / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def cancel_mid_stage(proc: subprocess.Popen, build: Path, folder: Path, timeout: float) -> tuple[str, int]:
    """`scancel` the train job as soon as Slurm runs it and it has logged a step but not finished;
    returns its Slurm id and the steps logged then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ids = train_submissions(build)
        steps = steps_logged(folder)
        if ids and steps >= 1 and not (folder / "done.json").exists() and slurm_state(ids[0]) == "RUNNING":
            subprocess.run(["scancel", ids[0]], check=True, timeout=30)
            return ids[0], steps
        time.sleep(0.1)
    stop(proc)
    pytest.fail(f"never caught the train job running mid-stage:\n{(build / 'logs/snakemake.log').read_text()[-4000:]}")


def first_attempt_log(build: Path, log: Path, timeout: float = 60) -> str:
    """The cancelled attempt's job log, read before the retry's shell truncates the same file
    (`> {log}`): once it says why it stopped, or at the latest when the retry is submitted (the
    plugin's next status poll sees the job gone; its new job step starts seconds later)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline and len(train_submissions(build)) < 2:
        text = log.read_text(errors="replace") if log.is_file() else ""
        if "stopped by" in text or "Traceback" in text:
            break
        time.sleep(0.1)
    return text


def stop(proc: subprocess.Popen) -> None:
    """SIGINT the runner's process group (Snakemake ignores SIGTERM while it waits on jobs), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start(tmp: Path, build: Path, profile: str) -> subprocess.Popen:
    """`rlspec run` of the spec into `build`, in its own process group; its terminal output goes to a file."""
    cmd = [sys.executable, "-m", "rlspec.compiler.cli", "run", str(SPEC), "-o", str(build), "--profile", profile,
           *(["--cores", "2"] if profile == "local" else []), "--", *UNTIL,
           *(LOOPBACK_FLAGS if profile == "slurm" else [])]
    with open(tmp / f"{profile}-run.out", "w") as out:
        return subprocess.Popen(cmd, cwd=tmp, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, build: Path, deadline: float) -> None:
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stop(proc)
        rc = None
    log = (build / "logs/snakemake.log").read_text(errors="replace")
    assert rc == 0, f"rlspec run into {build} ended with {rc} (None: ran past {RUN_TIMEOUT_S} s):\n{log[-4000:]}"


def check_stopped(first: str, cancelled: str, steps_at_cancel: int) -> int:
    """Slurm ended the first attempt as cancelled; the trainer saw SIGTERM and checkpointed its
    step. Returns that step."""
    assert slurm_state(cancelled) == "CANCELLED", slurm_state(cancelled)
    assert "stopped by SIGTERM after step " in first and "Traceback" not in first, first[-3000:]
    stopped_at = int(first.split("stopped by SIGTERM after step ")[1].split()[0])
    assert steps_at_cancel <= stopped_at < 40
    return stopped_at


def check_resumed(build: Path, job_id: str, cancelled: str, stopped_at: int) -> None:
    """Snakemake's retry submitted the job again; that attempt resumed from the checkpoint and
    finished, logging every step once."""
    ids = train_submissions(build)
    assert len(ids) == len(set(ids)) >= 2 and ids[0] == cancelled, ids
    assert slurm_state(ids[-1]) == "COMPLETED", slurm_state(ids[-1])
    final = (build / "logs/train" / f"{job_id}.log").read_text(errors="replace")
    resumed = RESUMED.search(final)
    assert resumed and int(resumed[1]) == int(resumed[2]) == stopped_at and resumed[3] == "40", final[-3000:]
    folder = build / "results" / "train" / job_id
    assert json.loads((folder / "done.json").read_text())["steps"] == 40
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))  # the resumed attempt dropped no step and logged none twice


def test_a_cancelled_train_job_resumes_on_retry_with_the_uninterrupted_weights(slurm_cluster, tmp_path):
    slurm, local = tmp_path / "slurm", tmp_path / "local"
    job_id, folder = train_folder(slurm)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    proc, reference = start(tmp_path, slurm, "slurm"), None
    try:
        cancelled, steps_at_cancel = cancel_mid_stage(proc, slurm, folder, RUN_TIMEOUT_S)
        first = first_attempt_log(slurm, slurm / "logs/train" / f"{job_id}.log")
        reference = start(tmp_path, local, "local")  # the uninterrupted run, meanwhile
        finish(proc, slurm, deadline)
        finish(reference, local, deadline)
    finally:
        for p in (proc, reference):
            if p is not None:
                stop(p)

    stopped_at = check_stopped(first, cancelled, steps_at_cancel)
    check_resumed(slurm, job_id, cancelled, stopped_at)
    ours = (folder / "model" / "model.safetensors").read_bytes()
    theirs = (local / "results" / "train" / job_id / "model" / "model.safetensors").read_bytes()
    (initial,) = (local / "results" / "model").glob("*/model/model.safetensors")
    assert theirs != initial.read_bytes(), "training left the weights unchanged: the comparison would prove nothing"
    assert ours == theirs, "the resumed job's final weights differ from the uninterrupted run's"
