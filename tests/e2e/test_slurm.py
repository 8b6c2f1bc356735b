"""A compiled workflow on a real Slurm: `rlspec run SPEC --profile slurm` on a single-node cluster.

scripts/slurm-up.sh starts munge + slurmctld + slurmd on loopback (or the test reuses a running
cluster; one it started it stops again). Five of the small spec's jobs (`model`: a tiny torch
model with its SFT warm-up; two `curate` funnels, one running reference solutions in the sandbox;
the initial math `bench`, vLLM on CPU; the math `train` stage, 2 GRPO steps on DeepSpeed) then run
twice: submitted through sbatch, and with `--profile local`. The test checks that every job
went through Slurm (its Slurm job id in the Snakemake log, its kept Slurm log written by the
`slurm-jobstep` executor, COMPLETED in `scontrol` with the rule's comment, none run as a local rule)
and that both runs wrote the same results, timing fields aside.

Needs root on Debian 12 (packages, daemons). About 4.5 min on 2 busy cores; the Slurm run takes
longer than the local one (each job starts Snakemake again inside its allocation, and the plugin's
status polls back off in 10 s steps):
    .venv/bin/python -m pytest -m slurm tests/e2e/test_slurm.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests/e2e/data/slurm-small.yaml"
# The jobs this test runs, by label (the others need training): every job of these kinds, and these.
KINDS = {"model", "curate"}
LABELS = {"bench math-heldout @ initial", "train math"}
# The local cluster has no accounting database, so the plugin must poll squeue (with sacct it waits
# forever); a 1 s first check instead of the profile's 5 s; keep the Slurm logs to check them.
LOOPBACK_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                  "--slurm-keep-successful-logs"]
SUBMITTED = re.compile(r"^Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", re.M)
RUN_TIMEOUT_S = 420


def bounded(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; on timeout SIGINT the whole group (Snakemake ignores
    SIGTERM while it waits on jobs), then SIGKILL, and fail."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} ran past {timeout} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def ctld_running() -> bool:
    try:
        os.kill(int(Path("/run/slurmctld.pid").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (scripts/slurm-up.sh installs packages, starts daemons)")
    was_up = ctld_running()
    up = bounded([str(REPO / "scripts/slurm-up.sh")], 600)
    assert up.returncode == 0, f"scripts/slurm-up.sh failed:\n{up.stdout[-4000:]}"
    yield
    if not was_up:
        bounded([str(REPO / "scripts/slurm-down.sh")], 120)


def chosen_jobs(build: Path) -> set[tuple[str, str]]:
    """(kind, id) of the jobs this test runs; compiles the spec into `build`."""
    subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(SPEC), "-o", str(build)],
                   check=True, capture_output=True, timeout=120)
    jobs = json.loads((build / "context.json").read_text())["jobs"]
    chosen = {(j["kind"], job_id) for job_id, j in jobs.items() if j["kind"] in KINDS or j["label"] in LABELS}
    assert len(chosen) == 5, chosen
    return chosen


def rlspec_run(build: Path, profile: str, extra: list[str]) -> subprocess.CompletedProcess:
    targets = [f"results/{kind}/{job_id}/done.json" for kind, job_id in sorted(chosen_jobs(build))]
    cmd = [sys.executable, "-m", "rlspec.compiler.cli", "run", str(SPEC), "-o", str(build), "--profile", profile,
           *(["--cores", "2"] if profile == "local" else []), "--", *targets, *extra]
    out = bounded(cmd, RUN_TIMEOUT_S, cwd=build.parent)
    assert out.returncode == 0, f"{profile} run failed:\n{out.stdout[-4000:]}\n" + \
        (build / "logs/snakemake.log").read_text(errors="replace")[-4000:]
    return out


def without_timings(path: Path) -> object:
    """A result file's content with wall-clock fields removed (they differ between any two runs).
    JSON is compared as canonical text, so NaN (a train step with zero advantages) equals NaN."""
    if path.suffix == ".json":
        return json.dumps(_drop_timings(json.loads(path.read_text())), sort_keys=True)
    if path.suffix == ".jsonl":
        return [json.dumps(_drop_timings(json.loads(line)), sort_keys=True) for line in path.read_text().splitlines()]
    if path.suffix == ".md":  # funnel tables: blank the `seconds` column
        lines, col = [], None
        for line in path.read_text().splitlines():
            cells = line.split("|")
            if "seconds" in [c.strip() for c in cells]:
                col = [c.strip() for c in cells].index("seconds")
            elif not line.startswith("|"):
                col = None
            if col is not None and len(cells) > col and not set(cells[col].strip()) <= {"-", ":"}:
                cells[col] = " "
            lines.append("|".join(cells))
        return lines
    return path.read_bytes()


def _is_timing(key: str) -> bool:
    # peak memory of a step differs between two runs as timings do
    return key in ("seconds", "wall_s") or key.startswith("time_") or key.endswith(("_per_s", "_rss_gib", "_gpu_gib"))


def _drop_timings(value):
    if isinstance(value, dict):
        return {k: _drop_timings(v) for k, v in value.items() if not _is_timing(k)}
    if isinstance(value, list):
        return [_drop_timings(v) for v in value]
    return value


def results(build: Path) -> dict[str, object]:
    """Every result file, timings aside. A checkpoint's saved global RNG states (`rng-rank*.pt`) are
    left out: they differ between two local runs too, while the weights are bit-identical."""
    root = build / "results"
    return {str(p.relative_to(root)): without_timings(p) for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("rng-rank")}


def test_slurm_run_submits_every_job_and_matches_local(slurm_cluster, tmp_path):
    slurm, local = tmp_path / "slurm", tmp_path / "local"
    rlspec_run(slurm, "slurm", LOOPBACK_FLAGS)
    log = (slurm / "logs/snakemake.log").read_text()

    # every job went through sbatch: one Slurm job id each, for exactly the jobs asked for
    submitted = {}
    for slurm_id, slurm_log in SUBMITTED.findall(log):
        m = re.search(r"slurm_logs/rule_(\w+)/([0-9a-f]+)/\d+\.log$", slurm_log)
        assert m, slurm_log
        submitted[(m[1], m[2])] = (slurm_id, Path(slurm_log))
    assert set(submitted) == chosen_jobs(slurm), log[-4000:]
    assert not re.search(r"^localrule (?!all:)", log, re.M), "a job ran on the submit host, not in Slurm"
    for (kind, job_id), (slurm_id, slurm_log) in submitted.items():
        # Slurm keeps finished jobs for MinJobAge (300 s) and knows which rule each one ran
        info = subprocess.run(["scontrol", "-o", "show", "job", slurm_id], capture_output=True, text=True,
                              timeout=30).stdout
        assert "JobState=COMPLETED" in info and "ExitCode=0:0" in info, info
        assert f"Comment=rule_{kind}_wildcards_{job_id}" in info, info
        assert f"WorkDir={slurm}" in info, info
        # inside the allocation the job ran under the plugin's slurm-jobstep executor
        text = slurm_log.read_text()
        assert "--executor slurm-jobstep" in text and "Finished jobid" in text, text[-2000:]
        assert (slurm / "results" / kind / job_id / "done.json").is_file()

    rlspec_run(local, "local", [])
    assert "SLURM jobid" not in (local / "logs/snakemake.log").read_text()
    ours, theirs = results(slurm), results(local)
    assert sorted(ours) == sorted(theirs)
    assert len(ours) > 2 * len(submitted)  # done.json and the real outputs of every job
    different = [name for name in ours if ours[name] != theirs[name]]
    assert not different, f"Slurm and local results differ: {different}"
