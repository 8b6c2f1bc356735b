"""`rlspec run`: Snakemake on a compiled build folder, with a progress display.

Snakemake runs as a subprocess of the same Python environment (`python -m snakemake`), with this
environment's bin folder first on PATH so job commands (`python -m rlspec.runtime...`) use the same
interpreter. Its full log goes to `<build>/logs/snakemake.log`; the terminal shows a progress bar
and, when a job fails, the tail of that job's log.

With `--profile local`, Snakemake gets `--resources gpu=<this machine's GPUs>` (so the GPU jobs that
run at once fit the machine) and the jobs the lock folder and device ids from which each takes its
own slice at start (`rlspec.runtime.devices`). Slurm gives each job its devices itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

STEPS = re.compile(r"^(\d+) of (\d+) steps \((?:\d+%|[\d.]+%)\) done")
RULE = re.compile(r"^(?:localrule|rule) (\w+):")
JOB_ERROR = re.compile(r"^Error in rule (\w+):")
LOG_LINE = re.compile(r"^\s+log: (\S+)")
TAIL_LINES = 30


def profile_dir(build: Path, profile: str) -> Path:
    if profile in ("local", "slurm"):
        return (build / "profiles" / profile).resolve()
    path = Path(profile)
    if not (path / "config.yaml").is_file():
        raise SystemExit(f"rlspec run: --profile {profile!r} is neither local, slurm, nor a folder with a config.yaml")
    return path.resolve()


def check_executor(profile: Path) -> None:
    """Fail early, with the fix, when a profile needs an executor plugin that is not installed."""
    import importlib.util
    text = (profile / "config.yaml").read_text()
    if re.search(r"^executor:\s*slurm\b", text, re.M) and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        raise SystemExit("rlspec run: the slurm profile needs Snakemake's Slurm executor plugin; "
                         'install it with: pip install "rlspec[slurm]"')


def snakemake_command(build: Path, *, profile: str, cores: int | None, dry_run: bool, extra: list[str],
                      gpus: int | None = None) -> list[str]:
    """`gpus`: the local run's `gpu` resource cap (None: no cap, as under Slurm); a `--resources` of
    the user's own in `extra` replaces it."""
    prof = profile_dir(build, profile)
    check_executor(prof)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(build / "Snakefile"), "--directory", str(build),
           "--profile", str(prof)]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    if dry_run:
        cmd += ["--dry-run"]
    cmd += list(extra)
    # last: `--resources` takes every following word, so the user's targets must not come after it
    if gpus is not None and not any(a in ("--resources", "--res") or a.startswith("--resources=") for a in extra):
        cmd += ["--resources", f"gpu={gpus}"]
    return cmd


def local_gpus(profile: str) -> list[str] | None:
    """This machine's GPU ids for a local run (`rlspec.runtime.devices.local_devices`); None otherwise."""
    if profile != "local":
        return None
    from rlspec.runtime.devices import local_devices  # stdlib only: the compiler stays free of torch
    return local_devices()


def job_env(build: Path, devices: list[str] | None, console: Console) -> dict[str, str]:
    """Snakemake's environment, which its jobs inherit: this interpreter's bin folder first on PATH,
    and in a local run (`devices` not None) the GPU lock folder and ids (`rlspec.runtime.devices`)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if devices is not None:
        from rlspec.runtime.devices import local_run_env
        env.update(local_run_env(build, devices))
        console.print(f"local GPUs: {len(devices)} ({', '.join(devices) or 'none'}); each job gets its own")
    return env


def hold_build_lock(build: Path):
    """An exclusive lock on the build folder for as long as this process — and any child it passes the
    descriptor to — lives (the kernel drops it when the last holder dies, SIGKILL included). Returns
    the open file, or None if another `rlspec run` holds it."""
    import fcntl
    build.mkdir(parents=True, exist_ok=True)
    fh = open(build / ".rlspec-run.lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def clear_stale_snakemake_lock(build: Path, env: dict, console: Console) -> None:
    """Snakemake's own directory lock survives a killed run and blocks the next one. When we hold
    the build lock, no other `rlspec run` uses this folder, so a leftover lock is stale."""
    locks = build / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        console.print("removing the lock a killed run left behind (snakemake --unlock)")
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(build / "Snakefile"), "--directory",
                        str(build), "--unlock"], env=env, capture_output=True, check=False)


def run_snakemake(build: Path, *, profile: str = "local", cores: int | None = None, dry_run: bool = False,
                  extra: list[str] | None = None, total_jobs: int | None = None, console: Console | None = None) -> int:
    console = console or Console(stderr=True)
    devices = local_gpus(profile)
    cmd = snakemake_command(build, profile=profile, cores=cores, dry_run=dry_run, extra=extra or [],
                            gpus=None if devices is None else len(devices))
    env = job_env(build, devices, console)
    lock = hold_build_lock(build)
    if lock is None:
        console.print(f"[red]another `rlspec run` is using {build}; wait for it or stop it first[/red]")
        return 1
    clear_stale_snakemake_lock(build, env, console)
    log_path = build / "logs" / "snakemake.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Snakemake inherits the lock's descriptor: if this process is stopped alone (SIGTERM, a closed
    # terminal) while Snakemake and its jobs run on, the folder stays locked until they are gone, and
    # the next `rlspec run` says so instead of taking Snakemake's live lock for a stale one.
    keep = (lock.fileno(),)
    if dry_run:
        return subprocess.call(cmd, env=env, pass_fds=keep)
    failed_logs: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False) as progress:
        task = progress.add_task("starting", total=total_jobs)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                pass_fds=keep)
        assert proc.stdout is not None
        in_error = False
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if m := STEPS.match(line):
                progress.update(task, completed=int(m[1]), total=int(m[2]))
            elif m := RULE.match(line):
                progress.update(task, description=f"running {m[1]}")
            elif m := JOB_ERROR.match(line):
                in_error = True
                progress.console.print(f"[red]job failed: {m[1]}[/red]")
            elif in_error and (m := LOG_LINE.match(line)):
                failed_logs.append(m[1].split(" ")[0])
                in_error = False
            elif line.startswith("Nothing to be done"):
                progress.update(task, description="up to date", completed=total_jobs or 0)
        rc = proc.wait()
    for rel in failed_logs:
        path = build / rel
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            console.print(f"[bold]--- last {len(tail)} lines of {path} ---[/bold]")
            console.print("\n".join(tail), markup=False, highlight=False)
    if rc != 0:
        console.print(f"[red]snakemake failed (exit {rc}); full log: {log_path}[/red]")
        return 1
    console.print(f"done; results under {build}/results, log: {log_path}")
    return 0
