"""Local GPU slices (`rlspec.runtime.devices`): concurrent jobs get disjoint device ids, a claim waits
for free ones or fails with the reason, and a killed job's GPUs are free again.

Real processes and real `flock`s on real lock files. The GPUs themselves are stand-ins: this
machine has none, so `RLSPEC_LOCAL_GPUS` / `CUDA_VISIBLE_DEVICES` / a fake `nvidia-smi` say how
many there are; what is tested is the bookkeeping that hands them out, which is all devices.py does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlspec.runtime import devices

HOLD = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from rlspec.runtime import devices
    ids = devices.claim(int(sys.argv[1]), sys.argv[2].split(","), Path(sys.argv[3]), float(sys.argv[4]))
    print(",".join(ids), flush=True)
    time.sleep(float(sys.argv[5]))
    """)


def holder(count: int, folder: Path, *, hold_s: float = 60, wait_s: float = 0, n: int = 4) -> subprocess.Popen:
    """A process that claims `count` of `n` devices and holds them for `hold_s` seconds."""
    ids = ",".join(str(i) for i in range(n))
    return subprocess.Popen([sys.executable, "-c", HOLD, str(count), ids, str(folder), str(wait_s), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claimed(proc: subprocess.Popen) -> set[str]:
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()
    return set(line.split(","))


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_two_concurrent_claims_get_disjoint_slices(tmp_path, procs):
    procs += [holder(2, tmp_path), holder(2, tmp_path)]
    a, b = claimed(procs[0]), claimed(procs[1])
    assert a.isdisjoint(b) and a | b == {"0", "1", "2", "3"}


def test_a_claim_with_none_free_fails_with_the_holders(tmp_path, procs):
    procs.append(holder(3, tmp_path))
    claimed(procs[0])
    with pytest.raises(devices.DeviceError, match=rf"no 2 of GPUs 0, 1, 2, 3 were free for 0.3 s.*processes {procs[0].pid}"):
        devices.claim(2, ["0", "1", "2", "3"], tmp_path, 0.3)
    # all or nothing: the failed claim left the one free device free
    assert devices.claim(1, ["0", "1", "2", "3"], tmp_path, 0) == ["3"]
    devices.release()


def test_a_claim_waits_until_devices_are_free(tmp_path, procs):
    procs.append(holder(4, tmp_path, hold_s=1.0))
    claimed(procs[0])
    start = time.monotonic()
    ids = devices.claim(2, ["0", "1", "2", "3"], tmp_path, 30)
    assert len(ids) == 2 and time.monotonic() - start >= 0.5
    devices.release()


def test_a_killed_job_frees_its_gpus(tmp_path, procs):
    procs.append(holder(4, tmp_path))
    claimed(procs[0])
    with pytest.raises(devices.DeviceError):
        devices.claim(1, ["0", "1", "2", "3"], tmp_path, 0)
    os.kill(procs[0].pid, signal.SIGKILL)
    procs[0].wait()
    assert devices.claim(4, ["0", "1", "2", "3"], tmp_path, 0) == ["0", "1", "2", "3"]
    devices.release()


def test_more_gpus_than_the_machine_has_fail_at_once(tmp_path):
    with pytest.raises(devices.DeviceError, match="needs 5 GPUs but this machine has 4"):
        devices.claim(5, ["0", "1", "2", "3"], tmp_path, 60)


def test_local_devices_sources(tmp_path, monkeypatch):
    assert devices.local_devices({"RLSPEC_LOCAL_GPUS": "3", "CUDA_VISIBLE_DEVICES": "7"}) == ["0", "1", "2"]
    assert devices.local_devices({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert devices.local_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    # a stand-in nvidia-smi: the format of `nvidia-smi -L` (one "GPU i: name (UUID: ...)" line per GPU)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)'\n"
                    "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert devices.local_devices({}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert devices.local_devices({}) == []


def _build(tmp_path: Path, resources: dict) -> SimpleNamespace:
    """A build folder with a dag.json naming one job's resources, and that job (as load_job returns it)."""
    (tmp_path / "jobs" / "bench").mkdir(parents=True)
    (tmp_path / "dag.json").write_text(json.dumps({"jobs": {"bench": {"abc": {"resources": resources}}}}))
    return SimpleNamespace(kind="bench", id="abc", path=tmp_path / "jobs" / "bench" / "abc.json")


JOB_START = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    from types import SimpleNamespace
    from rlspec.runtime import devices
    job = SimpleNamespace(kind="bench", id="abc", path=Path(sys.argv[1]))
    ids = devices.claim_for_job(job)
    again = devices.claim_for_job(job)  # a rank or replica the job starts: it shares the job's slice
    print(json.dumps({"ids": ids, "again": again, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}))
    """)


def job_start(job, env: dict) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", devices.SLICE_ENV, "CUDA_VISIBLE_DEVICES")}
    out = subprocess.run([sys.executable, "-c", JOB_START, str(job.path)], env={**base, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_job_start_sets_its_slice_in_a_local_run(tmp_path):
    job = _build(tmp_path, {"gpu": 2, "nodes": 1})
    env = devices.local_run_env(tmp_path, ["0", "1", "2", "3"])
    got = job_start(job, env)
    assert len(got["ids"]) == 2 and got["visible"] == ",".join(got["ids"]) and got["again"] is None
    cpu = _build(tmp_path / "cpu", {"cpus": 2, "nodes": 1})
    assert job_start(cpu, env)["visible"] == ""  # a CPU job sees none of the machine's GPUs


def test_job_start_does_nothing_under_slurm_or_outside_a_local_run(tmp_path):
    job = _build(tmp_path, {"gpu": 2, "nodes": 1})
    env = devices.local_run_env(tmp_path, ["0", "1", "2", "3"])
    assert job_start(job, {**env, "SLURM_JOB_ID": "42"}) == {"ids": None, "again": None, "visible": None}
    assert job_start(job, {}) == {"ids": None, "again": None, "visible": None}


def test_a_gpu_job_on_a_machine_without_gpus_fails_with_the_reason(tmp_path, monkeypatch):
    job = _build(tmp_path, {"gpu": 1, "nodes": 1})
    for key in ("SLURM_JOB_ID", devices.SLICE_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in devices.local_run_env(tmp_path, []).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(devices.DeviceError, match="needs 1 GPUs but this machine has 0"):
        devices.claim_for_job(job)
