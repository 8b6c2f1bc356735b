"""The trainer's collectives on 2 real gloo ranks (torchrun on this machine), through
`rlspec.runtime.grpo.distributed.init` as the train job calls it.

On GPUs the world group is NCCL and these collectives run on the gloo side group that `init`
creates; here the world group is gloo itself, so these ranks stand in for that side group (the
NCCL world group cannot be created without GPUs). What is checked: float64 counts stay exact (sums
a float32 reduction would round), objects come back in rank order, and a rank that sleeps past a
short process-group timeout makes the other rank fail with a message naming the collective and
`resources.deepspeed.timeout_minutes`, and ends the whole launch instead of hanging it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

PROGRAM = textwrap.dedent("""\
    import sys, time
    from rlspec.runtime.grpo import distributed
    mode, timeout = sys.argv[1], float(sys.argv[2])
    d = distributed.init(False, timeout_minutes=timeout)
    if mode == "sums":
        big = 2.0 ** 40
        total = distributed.all_reduce_sum([big + d.rank + 1, 0.5 * d.rank])
        assert total == [2 * big + 3, 0.5], total   # float32 would give 2**41 + 4
        got = distributed.all_gather_objects({"rank": d.rank, "lengths": [d.rank] * (d.rank + 1)})
        assert got == [{"rank": 0, "lengths": [0]}, {"rank": 1, "lengths": [1, 1]}], got
        distributed.barrier()
        print(f"rank {d.rank} ok", flush=True)
    else:
        if d.rank == 1:
            time.sleep(60)
            print("rank 1 woke", flush=True)
        try:
            distributed.all_reduce_sum([1.0])
        except distributed.CollectiveError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(1)
        print(f"rank {d.rank} finished", flush=True)
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(prog), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_counts_stay_exact_and_objects_come_in_rank_order(tmp_path):
    out = torchrun(tmp_path, "sums", "5", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rank 0 ok" in out.stdout and "rank 1 ok" in out.stdout


def test_a_rank_past_the_timeout_fails_the_launch_with_the_timeout_named(tmp_path):
    """Rank 1 sleeps 60 s before the collective; the timeout is 0.05 min (3 s). Rank 0 must fail
    with the collective and the knob named, and torchrun must end rank 1 before it wakes."""
    out = torchrun(tmp_path, "timeout", "0.05", timeout=300)
    assert out.returncode != 0
    assert "rank 0 of 2: all_reduce_sum did not complete" in out.stderr, out.stderr[-3000:]
    assert "process-group timeout of 0.05 min (resources.deepspeed.timeout_minutes)" in out.stderr
    assert "rank 1 woke" not in out.stdout and "finished" not in out.stdout
