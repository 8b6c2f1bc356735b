"""How a train job starts its ranks (`rlspec.runtime.grpo.distributed.launch_command`), and the
multi-node path run for real on this machine.

Multi-node Slurm cannot run here (the local test cluster of tests/e2e/test_slurm.py has one node),
so `fake_slurm/` stands in for Slurm's clients: `scontrol show hostnames` splits a comma list and
`srun` starts one copy of its command per "node" on this machine, with srun's task variables and
--kill-on-bad-exit. The environment is what a Slurm job step has (SLURM_JOB_ID, SLURM_JOB_NODELIST,
SLURM_CPUS_PER_TASK). Everything after srun is real: one torchrun per "node", a c10d rendezvous on
the first host, gloo ranks, the real train job; 2 nodes x 1 rank must end with the weights of
1 node x 2 ranks and of 1 rank.

Marked `slurm`: the per-node srun itself on the local one-node Slurm (scripts/slurm-up.sh), one node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import compile_and_curate, job_dir, metrics, run_train, spec_text
from rlspec.runtime.grpo import distributed

FAKE = Path(__file__).resolve().parent / "fake_slurm"
ARGV = ["--job", "jobs/train/abc.json", "--context", "context.json"]


def slurm_env(nodelist: str, job_id: str = "4242", **extra: str) -> dict[str, str]:
    return {"PATH": f"{FAKE}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": job_id,
            "SLURM_JOB_NODELIST": nodelist, "SLURM_CPUS_PER_TASK": "64", **extra}


def test_two_nodes_get_one_torchrun_each_through_srun_with_every_count_explicit():
    cmd = distributed.launch_command(16, ARGV, slurm_env("gpu-a,gpu-b"), gpus=True)
    py = sys.executable
    assert cmd == ["srun", "--jobid=4242", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                   "--cpus-per-task=64", "--mem=0", "--gres=gpu:8", "--kill-on-bad-exit=1", "--label", "--export=ALL",
                   py, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "8",
                   "--rdzv_backend", "c10d", "--rdzv_endpoint", "gpu-a:24242", "--rdzv_id", "4242",
                   "--max_restarts", "0", "-m", "rlspec.runtime.train", *ARGV]


def test_cpu_ranks_ask_srun_for_no_gpus():
    cmd = distributed.launch_command(4, ARGV, slurm_env("n1,n2"), gpus=False)
    assert not any(a.startswith("--gres") for a in cmd)
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2"


@pytest.mark.parametrize("env", [{}, {"SLURM_JOB_ID": "7"}, "one-node"])
def test_outside_slurm_and_on_one_node_every_rank_runs_here(env):
    env = slurm_env("gpu-a") if env == "one-node" else env
    cmd = distributed.launch_command(8, ARGV, env, gpus=True)
    assert cmd[:10] == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "8",
                        "--master_addr", "127.0.0.1", "--master_port"]
    assert cmd[11:] == ["-m", "rlspec.runtime.train", *ARGV]


def test_ranks_the_nodes_cannot_share_evenly_are_refused():
    with pytest.raises(distributed.LaunchError, match="the train job has 3 ranks, which the 2 nodes of Slurm job 4242"):
        distributed.launch_command(3, ARGV, slurm_env("a,b"), gpus=False)


def test_a_step_without_its_cpu_count_is_refused():
    env = slurm_env("a,b")
    del env["SLURM_CPUS_PER_TASK"]
    with pytest.raises(distributed.LaunchError, match="no SLURM_CPUS_PER_TASK"):
        distributed.launch_command(2, ARGV, env, gpus=False)


def test_missing_scontrol_says_so():
    env = {**slurm_env("a,b"), "PATH": "/nonexistent"}
    with pytest.raises(distributed.LaunchError, match="cannot list the nodes of Slurm job 4242"):
        distributed.launch_command(2, ARGV, env, gpus=False)


def test_the_per_node_srun_does_not_inherit_the_job_steps_own_counts():
    env = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b", "SLURM_NTASKS": "1", "SLURM_CPUS_PER_TASK": "64",
           "SLURM_GPUS": "8", "SRUN_CPUS_PER_TASK": "64", "SBATCH_MEM": "1", "HOME": "/root"}
    assert distributed.launch_env(env) == {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b", "HOME": "/root"}


def free_job_id() -> str:
    """A job id whose rendezvous port (`distributed.rdzv_port`) is free on this machine."""
    for job_id in range(4242, 4242 + 5000, 7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", distributed.rdzv_port(str(job_id))))
            except OSError:
                continue
            return str(job_id)
    raise AssertionError("no free rendezvous port")


@pytest.mark.slow
def test_two_nodes_of_one_rank_train_like_one_node_of_two_and_one_rank(tmp_path, tiny_model_dir):
    runs = {}
    for name, ranks, env in (("1x1", 1, None), ("1x2", 2, None),
                             ("2x1", 2, {**slurm_env("localhost,localhost", free_job_id(), SLURM_CPUS_PER_TASK="1"),
                                         "FAKE_SRUN_LOG": str(tmp_path / "srun.jsonl")})):
        build, job = compile_and_curate(tmp_path / name, spec_text(tiny_model_dir, steps=2, ranks=ranks, every=10))
        out = run_train(build, job, env_extra=env, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"world {ranks}" in out.stdout
        runs[name] = (metrics(build, job), load_file(str(job_dir(build, job) / "model" / "model.safetensors")))
    srun = [json.loads(line) for line in (tmp_path / "srun.jsonl").read_text().splitlines()]
    assert len(srun) == 1 and srun[0][:5] == ["--jobid=" + srun[0][0].split("=")[1], "--overlap", "--nodes=2",
                                               "--ntasks=2", "--ntasks-per-node=1"]
    assert srun[0][srun[0].index("--nnodes") + 1] == "2" and srun[0][srun[0].index("--nproc_per_node") + 1] == "1"
    m1, w1 = runs["1x1"]
    for name in ("1x2", "2x1"):
        m, w = runs[name]
        assert [r["reward_mean"] for r in m] == [r["reward_mean"] for r in m1], name
        assert [r["loss"] for r in m] == pytest.approx([r["loss"] for r in m1], rel=1e-4, abs=1e-6), name
        for key in w1:
            assert torch.allclose(w[key], w1[key], atol=1e-5), (name, key)


# ------------------------------------------------------------------------------- the local Slurm

PROBE = textwrap.dedent("""\
    import os, subprocess, sys
    from rlspec.runtime.grpo import distributed as d
    alloc = d.slurm_allocation(os.environ)
    cmd = d.slurm_torchrun(2, [], nodes=len(alloc.hosts), head=alloc.hosts[0], job_id=alloc.job_id,
                           cpus_per_task=alloc.cpus_per_task, gpus_per_node=0, port=d.rdzv_port(alloc.job_id))
    cmd = cmd[:cmd.index(d.PROGRAM) - 1] + [sys.argv[1], sys.argv[2], "0.1"]   # the collectives program
    print("launch:", " ".join(cmd), flush=True)
    sys.exit(subprocess.call(cmd, env=d.launch_env(os.environ)))
    """)
# What the slurm-jobstep plugin does in the batch script: drop the allocation's SLURM_* settings but
# the job's identity, then run the rule in one step.
BATCH = textwrap.dedent("""\
    #!/bin/sh
    for v in $(env | grep -oE '^(SLURM|SRUN|SBATCH)_[A-Z_]*' | grep -vE '^SLURM_(JOB_ID|JOBID|CLUSTER_NAME|SUBMIT_DIR|SUBMIT_HOST)$'); do
      unset "$v"
    done
    exec srun -n1 --cpus-per-task=2 --nodes=1 {python} probe.py prog.py "$1"
    """)


def local_slurm_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


def finished_state(job: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        state = re.search(r"JobState=(\S+)", out)
        if state and state.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return state.group(1)
        time.sleep(1)
    subprocess.run(["scancel", job])
    raise AssertionError(f"Slurm job {job} still running after {timeout} s")


@pytest.mark.slurm
@pytest.mark.parametrize("mode", ["sums", "timeout"])
def test_the_per_node_srun_on_the_local_slurm(tmp_path, mode):
    """A batch job that does what the slurm-jobstep plugin does (one `srun -n1 --cpus-per-task=2` step,
    the allocation's settings removed); in that step the per-node srun of `slurm_torchrun` (a nested
    `--overlap` step, real `scontrol show hostnames`, c10d on the node) starts 2 gloo ranks running
    the program of test_collectives.py. Real Slurm, one node (the local cluster has no second)."""
    if not local_slurm_up():
        pytest.skip("the local Slurm is not running (scripts/slurm-up.sh)")
    from test_collectives import PROGRAM
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "job.sh").write_text(BATCH.format(python=sys.executable))
    sub = subprocess.run(["sbatch", "--parsable", "-N1", "-c2", "--mem=3000", "-o", "job.log", "job.sh", mode],
                         cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    state = finished_state(sub.stdout.strip().split(";")[0])
    log = (tmp_path / "job.log").read_text()
    assert "launch: srun --jobid=" in log and "--overlap --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=2" in log
    if mode == "sums":
        assert state == "COMPLETED", log[-3000:]
        assert "0: rank 0 ok" in log and "0: rank 1 ok" in log  # --label: task 0 of the per-node step
    else:
        assert state == "FAILED", log[-3000:]
        assert "0: error: rank 0 of 2: all_reduce_sum did not complete" in log and "timeout_minutes" in log
        assert "rank 1 woke" not in log
