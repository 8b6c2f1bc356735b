"""Local GPU slices: on one workstation, every job of a local run gets GPUs of its own.

What:
- `local_devices()`: the device ids of this machine: `RLSPEC_LOCAL_GPUS` (a count, for tests and
  stand-ins), else `CUDA_VISIBLE_DEVICES` (the ids it lists), else one per line of `nvidia-smi -L`,
  else none.
- `local_run_env(build, devices)`: what `rlspec run --profile local` hands its jobs (the runner also
  gives Snakemake `--resources gpu=<len(devices)>`, so the GPU jobs running at once never need more
  GPUs than there are).
- `claim_for_job(job)`: called by `runtime.job.load_job` at every job's start. In a local run (the
  runner's `RLSPEC_GPU_LOCKS` is set) and not under Slurm (which gives a job its own devices), it takes
  as many free device ids as the job's rule reserved (`dag.json`), holds an exclusive `flock` on
  `<build>/.gpus/<id>.lock` for each for the life of the process, and sets `CUDA_VISIBLE_DEVICES` to
  them before anything initialises CUDA. A job without GPUs gets `CUDA_VISIBLE_DEVICES=""` on a
  machine that has some, so it cannot take another job's memory by accident.

Why: Snakemake's `gpu` resource only counts; without a slice every job sees every GPU and each vLLM
engine would take 90% of GPU 0.

How: the lock is the kernel's: it goes when the process that holds it dies, SIGKILL included, so a
killed job frees its GPUs and no stale lock is left to clean up. A claim takes all its devices or
none (a partial claim is released before it waits), so two jobs never deadlock holding half each.
Processes the job starts inherit `CUDA_VISIBLE_DEVICES` and `RLSPEC_GPU_SLICE` (which makes their own
`load_job` claim nothing more): torchrun's ranks and engine replicas share the job's slice.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

LOCKS_ENV = "RLSPEC_GPU_LOCKS"  # the lock folder; set by `rlspec run --profile local` only
DEVICES_ENV = "RLSPEC_LOCAL_DEVICES"  # comma-separated device ids the runner found
SLICE_ENV = "RLSPEC_GPU_SLICE"  # set once a process of this job holds its slice
COUNT_ENV = "RLSPEC_LOCAL_GPUS"
WAIT_S = 600.0  # Snakemake's cap makes a wait rare (another run on the same build, a stray process)
POLL_S = 0.2

_HELD: list[IO[str]] = []  # open lock files: the locks live as long as these stay open


class DeviceError(Exception):
    """No slice can be claimed; the message says why and what to do."""


def local_devices(env: dict[str, str] | None = None) -> list[str]:
    """This machine's GPU ids (see the module docstring for the order of the sources)."""
    env = dict(os.environ) if env is None else env
    if env.get(COUNT_ENV, "").strip():
        return [str(i) for i in range(int(env[COUNT_ENV]))]
    if (visible := env.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def local_run_env(build: Path, devices: list[str]) -> dict[str, str]:
    """The environment a local run gives its jobs: where the locks are and which ids to hand out."""
    return {LOCKS_ENV: str((build / ".gpus").resolve()), DEVICES_ENV: ",".join(devices)}


def claim_for_job(job: Any) -> list[str] | None:
    """Take this job's slice (local runs only); None when there is nothing to do here."""
    if not os.environ.get(LOCKS_ENV) or os.environ.get("SLURM_JOB_ID") or SLICE_ENV in os.environ:
        return None
    devices = [d for d in os.environ.get(DEVICES_ENV, "").split(",") if d]
    need = job_gpus(job)
    if not devices and not need:
        return None  # no GPUs on this machine: nothing to hide or hand out
    ids = claim(need, devices, Path(os.environ[LOCKS_ENV]), WAIT_S)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    os.environ[SLICE_ENV] = ",".join(ids)
    return ids


def job_gpus(job: Any) -> int:
    """The GPUs the job's rule reserved: `dag.json`'s `gpu` (what Snakemake counts against the cap),
    or for a several-node job its `gres` per node x nodes; 0 for a CPU job."""
    build = Path(job.path).resolve().parents[2]  # <build>/jobs/<kind>/<id>.json
    try:
        res = json.loads((build / "dag.json").read_text())["jobs"][job.kind][job.id]["resources"]
    except (OSError, ValueError, KeyError) as exc:
        raise DeviceError(f"{build}/dag.json has no resources for {job.kind} job {job.id} ({exc}); "
                          "recompile with `rlspec compile`") from None
    if "gpu" in res:
        return int(res["gpu"])
    gres = str(res.get("gres", ""))
    return int(gres.split(":")[-1]) * int(res["nodes"]) if gres.startswith("gpu:") else 0


def claim(count: int, devices: list[str], folder: Path, wait_s: float) -> list[str]:
    """`count` ids of `devices` whose lock this process now holds, waiting up to `wait_s` seconds for
    them to be free; the locks stay held until the process exits (or `release()`)."""
    if count > len(devices):
        raise DeviceError(f"the job needs {count} GPUs but this machine has {len(devices)} "
                          f"({', '.join(devices) or 'none'}: {COUNT_ENV}, else CUDA_VISIBLE_DEVICES, else nvidia-smi -L); "
                          "give it fewer (resources.<kind>.gpus) or run it on Slurm")
    if count == 0:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        held = _try_claim(count, devices, folder)
        if held is not None:
            _HELD.extend(fh for _, fh in held)
            return [d for d, _ in held]
        if time.monotonic() >= deadline:
            raise DeviceError(f"no {count} of GPUs {', '.join(devices)} were free for {wait_s:g} s: the lock files "
                              f"in {folder} are held by {_holders(folder)}; wait for those jobs or stop them")
        time.sleep(POLL_S)


def _try_claim(count: int, devices: list[str], folder: Path) -> list[tuple[str, IO[str]]] | None:
    """All `count` locks, or none (the partial claim is released)."""
    held: list[tuple[str, IO[str]]] = []
    for d in devices:
        fh = open(folder / f"{d}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")  # who holds it, for the message of a claim that waits in vain
        fh.flush()
        held.append((d, fh))
        if len(held) == count:
            return held
    for _, fh in held:
        fh.close()
    return None


def _holders(folder: Path) -> str:
    """The pids written in the lock files that are held now (a free file keeps its last holder's)."""
    pids = set()
    for path in folder.glob("*.lock"):
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                pids.add(fh.read().strip() or "?")
    return "processes " + ", ".join(sorted(pids)) if pids else "other processes"


def release() -> None:
    """Drop every lock this process holds (a job's locks otherwise go when it exits)."""
    while _HELD:
        _HELD.pop().close()
