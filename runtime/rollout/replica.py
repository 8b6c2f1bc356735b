"""One inference replica (or one node's replicas): the worker side of `rollout/replicas.py`.

What:
    python -m rlspec.runtime.rollout.replica --task T --replica R --node-rank K [--master-addr H --master-port P]
samples replica R's shard of the task's prompts (global indices g with g % count == R) with one
engine and writes `shard-R.jsonl` next to the task file (complete once renamed); node rank K > 0 of a
replica that spans several nodes instead serves its leader's engine headless.
    python -m rlspec.runtime.rollout.replica --task T --node-from-env
is what srun runs once per node of a multi-node job: it starts that node's processes (`placement`,
node = `SLURM_PROCID`) and exits non-zero as soon as one fails, which ends the whole srun step
(`--kill-on-bad-exit=1`).

Why: a separate process per replica is the simplest way to give each engine its own devices and
threads (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS must be set before torch starts) and to see a dead
engine as a dead process.

How: the parent (`replicas.sample`) set this process's environment; it sets torch's threads to
OMP_NUM_THREADS before the engine starts, samples the shard in `generate` calls of up to
`ROWS_PER_CALL` rows (the engine schedules each continuously), appending each call's samples to the
shard, and hits the fault point `replica:<R>` (RLSPEC_FAULT) just before the shard is made complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import replicas as rep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = rep.read_task(args.task)
    if args.node_from_env:
        return run_node(args.task, task)
    if args.node_rank > 0:
        serve(task, args)
        return 0
    run_leader(args.task, task, args.replica, multinode(task, args))
    # The shard is complete and the engine closed; the interpreter's teardown with vLLM loaded takes
    # ~5 s on this CPU, which every job would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"python -m {rep.PROGRAM}", description="Run one inference replica.")
    p.add_argument("--task", type=Path, required=True, help="task.json written by rollout.replicas.sample")
    p.add_argument("--replica", type=int, default=0)
    p.add_argument("--node-rank", type=int, default=0, help="this process's node within its replica")
    p.add_argument("--master-addr", default="", help="the replica's node-rank-0 host (multi-node replicas)")
    p.add_argument("--master-port", type=int, default=0)
    p.add_argument("--node-from-env", action="store_true", help="start this node's replicas (under srun)")
    return p.parse_args(argv)


def run_leader(task_path: Path, task: dict, replica: int, multi) -> None:
    """Sample this replica's shard and write it (the fault point sits just before the write)."""
    import torch

    from rlspec.runtime.job import fault_point

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # the parent set it: the replica's cpus
    start = time.perf_counter()
    engine = build_engine(task, multi)
    load_s = time.perf_counter() - start
    indices = rep.shard_indices(len(task["prompts"]), task["replicas"].count, replica)
    writer = rep.ShardWriter(task_path.parent, replica)
    with engine:
        timing = rep.generate_calls(engine, task["prompts"], indices, task["sampling"], writer)
    fault_point(f"replica:{replica}")
    writer.close(rep.summary(replica, len(indices), timing, load_s))
    print(f"replica {replica}: {len(indices)} prompts, {timing.generated_tokens} tokens "
          f"in {timing.seconds:.1f} s", flush=True)


def build_engine(task: dict, multi):
    from . import make_engine
    from .vllm_engine import VllmEngine

    inf = task["inference"]
    common = dict(dtype=inf.dtype, seed=task["sampling"].seed, max_model_len=inf.max_model_len,
                  settings=inf.rollout)
    if multi is None:
        return make_engine(task["model"], **common)
    return VllmEngine(task["model"], multinode=multi, **common)


def multinode(task: dict, args: argparse.Namespace):
    """vLLM's multi-node arguments when this replica spans several nodes, else None."""
    from .vllm_engine import MultiNode

    nodes = rep.span(task["replicas"])
    if nodes == 1:
        return None
    if task["inference"].rollout.engine != "vllm":
        raise SystemExit(f"a replica of {task['replicas'].gpus} GPUs spans {nodes} nodes, which only the vllm "
                         "engine can run")
    return MultiNode(nnodes=nodes, node_rank=args.node_rank, master_addr=args.master_addr,
                     master_port=args.master_port)


def serve(task: dict, args: argparse.Namespace) -> None:
    """Node rank > 0 of a multi-node replica: this node's workers of the leader's engine."""
    from .vllm_engine import serve_headless

    inf = task["inference"]
    serve_headless(task["model"], inf.rollout, dtype=inf.dtype, seed=task["sampling"].seed,
                   max_model_len=inf.max_model_len, multinode=multinode(task, args))


def run_node(task_path: Path, task: dict) -> int:
    """Under srun: this node's processes (node = this task's SLURM_PROCID), watched like local replicas."""
    from rlspec.runtime.grpo.distributed import slurm_allocation

    env = dict(os.environ)
    alloc = slurm_allocation(env)
    if alloc is None or "SLURM_PROCID" not in env:
        print("error: --node-from-env runs as a task of srun in a Slurm allocation (no SLURM_JOB_ID, "
              "SLURM_JOB_NODELIST or SLURM_PROCID here)", file=sys.stderr)
        return 2
    node = int(env["SLURM_PROCID"])
    procs = [p for p in rep.placement(task["replicas"], rep.visible_devices(env, task["replicas"])) if p.node == node]
    try:
        rep.watch(task_path.parent, procs, task["replicas"], env, f"node {node}", hosts=alloc.hosts,
                  job_id=alloc.job_id)
    except rep.ReplicaError as exc:
        print(f"error: node {node}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
