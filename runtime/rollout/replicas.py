"""Data-parallel sampling for inference jobs: n answers per prompt over `replicas.count` engines.

What: `sample(model, prompts, sampling, inference=, replicas=, label=)` is the one call the `bench`
job, the stage `filter` job and the pass-rate `sample` job make. It returns every prompt's n samples
in prompt order (`Sampled.groups`), whatever the number of replicas:
- `replicas.count == 1`: one engine in this process, as before;
- `count > 1`: one OS process per replica (`python -m rlspec.runtime.rollout.replica`), each with its
  own device slice (`CUDA_VISIBLE_DEVICES` = its `gpus` devices out of the ones this job sees; on
  CPU, `OMP_NUM_THREADS` = `replicas.cpus`) and its shard of the prompts: replica r takes the prompts
  of global index g with g % count == r (strided, so long and short prompts spread evenly).

Why: inference is most of a recipe's GPU-hours, and one engine uses one of the GPUs a job holds.
Results must not depend on the split: every prompt is seeded by its global index (`seed + g * n`,
`Engine.generate(..., indices=)`), so 1 replica and 8 give the same samples and the same metrics.

How:
- The parent tokenises once, checks the prompt lengths (the engine's own check, so the error is the
  same with any count), and writes one task file (engine settings, sampling, all prompts) into a
  scratch folder: the system temp folder on one node, the current folder (the build folder, which
  every node of a Slurm job sees) on several.
- Each replica submits its shard in engine calls of up to ROWS_PER_CALL (prompt x sample) rows:
  vLLM schedules a call continuously, so a benchmark (AIME: 30 x 64 rows) is one call and no chunk
  waits on another chunk's longest sample, while a pass-rate job's millions of responses never sit
  in memory at once. It appends each call's samples to `shard-<r>.jsonl` under a temporary name,
  writes what it did to `shard-<r>.json` (progress lines come from it) and renames the shard when
  complete.
- The parent waits for all of them; a replica that dies or fails stops the others and fails the call
  with `ReplicaError` naming the replica and its log's tail. Nothing partial is returned, and the
  scratch folder (shards included) is removed on success and failure alike. The shards are read in
  global order, one line at a time; with `consume`, each prompt's samples go to the caller as they are
  read and are not kept (the pass-rate jobs keep only what they measured).
- Multi-node (`replicas.nodes > 1`, in a Slurm allocation): one srun task per node
  (`srun --overlap --nodes N --ntasks N --ntasks-per-node 1 --kill-on-bad-exit=1`, the train job's
  conventions from `rlspec.runtime.grpo.distributed`) runs `replica --node-from-env`, which starts
  that node's processes (`placement`). A replica bigger than a node (`gpus > gpus_per_node`, e.g. R1
  at TP 8 x PP 2 on 8-GPU nodes) spans gpus / gpus_per_node nodes: node rank 0 builds the engine with
  vLLM's multi-node arguments, the others serve it headless until its shard is written.
- Fault injection for the tests: `RLSPEC_FAULT=replica:<r>` SIGKILLs replica r before it writes.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rlspec.compiler.jobs import Inference, Replicas

from .base import Generations, Sample, SamplingParams, Timing, check_lengths

PROGRAM = "rlspec.runtime.rollout.replica"
TASK = "task.json"
POLL_S = 0.2
LOG_TAIL = 3000  # characters of a failed replica's log in the error
# The torch.distributed port of multi-node replica r: base + r, derived from the Slurm job id so every
# node computes it alone; a span apart from the train job's rendezvous ports (20000-29999).
MASTER_PORT_BASE, MASTER_PORT_SPAN = 30000, 2000
# (prompt x sample) rows per engine call: one call holds its samples' token ids and log-probs (~70
# bytes a token in Python), so 4,096 rows of 20K tokens are ~6 GB; a benchmark of up to 4,096 rows
# (AIME: 30 x 64, MATH500: 500 x 4) is a single call.
ROWS_PER_CALL = 4096
Consumer = Callable[[int, list[Sample]], None]


class ReplicaError(RuntimeError):
    """A replica that failed or died; the message names it and ends with its log's tail."""


@dataclass(frozen=True)
class Sampled:
    """The samples of one `sample` call, in prompt order, and what the call cost."""

    groups: Generations
    load_s: float
    """Engine start-up (the slowest replica's)."""
    generate_s: float
    """Sampling (the slowest replica's `generate` call)."""
    wall_s: float
    """The whole call: processes, engines, sampling, merging."""
    replicas: list[dict]
    """What each replica did: prompts, tokens, seconds, the devices and threads it had."""


@dataclass(frozen=True)
class Proc:
    """One process of a replica: replica `replica`'s node rank `node_rank` (0: the engine's leader,
    which writes the shard) on node `node` of the job, seeing `devices` (CUDA ids; [] on CPU)."""

    replica: int
    node: int
    node_rank: int
    span: int
    """Nodes the replica spans (1 unless it needs more GPUs than a node has)."""
    devices: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# The call
# ---------------------------------------------------------------------------------------------


def sample(model: str | Path, prompts: Sequence[Sequence[int]], sampling: SamplingParams, *,
           inference: Inference, replicas: Replicas, label: str, consume: Consumer | None = None) -> Sampled:
    """n samples of every prompt (token ids) from `model` with `replicas.count` engines (see the module
    docstring). `sampling.seed` seeds the engines and every prompt (by its index): it must be set, as
    unseeded samples would depend on the split. With `consume`, `consume(g, samples)` is called for
    every prompt in global order instead of keeping the samples (`Sampled.groups` is then empty)."""
    start = time.perf_counter()
    if sampling.seed is None:
        raise ValueError("inference sampling needs a seed: unseeded samples would depend on the replicas")
    ids = [list(map(int, p)) for p in prompts]
    check_lengths(ids, inference.rollout, inference.max_model_len, sampling.max_tokens)
    if not ids:  # nothing to sample (every record filtered out or too long): start no engine
        return Sampled(Generations([], Timing(0, 0, 0.0)), 0.0, 0.0, time.perf_counter() - start, [])
    groups: list[list[Sample]] = []
    keep = consume if consume is not None else (lambda g, group: groups.append(group))
    if replicas.count == 1:
        stats = [_in_process(model, ids, sampling, inference, start, keep)]
    else:
        with scratch(replicas) as workdir:
            write_task(workdir, model, ids, sampling, inference, replicas)
            run_replicas(workdir, replicas, label)
            stats = merge(workdir, replicas.count, len(ids), sampling.n, keep)
    wall = time.perf_counter() - start
    timing = Timing(prompt_tokens=sum(map(len, ids)) * sampling.n,
                    generated_tokens=sum(s["generated_tokens"] for s in stats), seconds=wall)
    return Sampled(Generations(groups, timing), max(s["load_s"] for s in stats),
                   max(s["generate_s"] for s in stats), wall, stats)


def _in_process(model, ids: list[list[int]], sampling: SamplingParams, inference: Inference, start: float,
                keep: Consumer) -> dict:
    from . import make_engine
    engine = make_engine(model, inference.rollout, dtype=inference.dtype, seed=sampling.seed,
                         max_model_len=inference.max_model_len)
    load_s = time.perf_counter() - start
    with engine:
        timing = generate_calls(engine, ids, range(len(ids)), sampling, keep)
    return summary(0, len(ids), timing, load_s)


def calls(indices: Sequence[int], n: int) -> Iterator[list[int]]:
    """`indices` in consecutive groups of at most ROWS_PER_CALL // n prompts (at least one)."""
    per = max(1, ROWS_PER_CALL // n)
    for at in range(0, len(indices), per):
        yield list(indices[at:at + per])


def generate_calls(engine, ids: Sequence[Sequence[int]], indices: Sequence[int], sampling: SamplingParams,
                   keep: Consumer) -> Timing:
    """The prompts of global `indices` (`ids[g]`) through `engine`, call by call (`calls`), each
    prompt's samples handed to `keep(g, samples)` in order; the summed timing."""
    prompt_tokens = generated = 0
    seconds = 0.0
    for chunk in calls(indices, sampling.n):
        out = engine.generate([ids[g] for g in chunk], sampling, indices=chunk)
        for g, group in zip(chunk, out):
            keep(g, group)
        prompt_tokens += out.timing.prompt_tokens
        generated += out.timing.generated_tokens
        seconds += out.timing.seconds
    return Timing(prompt_tokens, generated, seconds)


@contextmanager
def scratch(replicas: Replicas):
    """A fresh folder for the task and the shards, removed afterwards whatever happens: in the system
    temp folder on one node; in the current folder (the build folder) when other nodes must see it."""
    root = tempfile.gettempdir() if replicas.nodes == 1 else os.getcwd()
    path = Path(tempfile.mkdtemp(prefix=".rlspec-replicas-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Task file and shards
# ---------------------------------------------------------------------------------------------


def write_task(workdir: Path, model, ids: list[list[int]], sampling: SamplingParams, inference: Inference,
               replicas: Replicas) -> Path:
    task = {"model": str(model), "inference": inference.model_dump(mode="json"), "sampling": asdict(sampling),
            "replicas": replicas.model_dump(mode="json"), "prompts": ids}
    path = workdir / TASK
    path.write_text(json.dumps(task), encoding="utf-8")
    return path


def read_task(path: Path) -> dict:
    task = json.loads(path.read_text(encoding="utf-8"))
    task["inference"] = Inference.model_validate(task["inference"])
    task["replicas"] = Replicas.model_validate(task["replicas"])
    s = task["sampling"]
    task["sampling"] = SamplingParams(**{**s, "stop": tuple(s["stop"]), "stop_token_ids": tuple(s["stop_token_ids"])})
    return task


def shard_indices(total: int, count: int, replica: int) -> list[int]:
    """Global indices of replica `replica`'s prompts: strided, so each gets long and short ones."""
    return list(range(replica, total, count))


def shard_path(workdir: Path, replica: int) -> Path:
    return workdir / f"shard-{replica}.jsonl"


def log_path(workdir: Path, proc: Proc) -> Path:
    return workdir / f"replica-{proc.replica}-node-{proc.node_rank}.log"


def summary_path(workdir: Path, replica: int) -> Path:
    return workdir / f"shard-{replica}.json"


def summary(replica: int, prompts: int, timing: Timing, load_s: float) -> dict:
    """What one replica did, and the device slice and threads it ran with (this process's)."""
    import torch
    return {"replica": replica, "prompts": prompts, "load_s": load_s, "generate_s": timing.seconds,
            "generated_tokens": timing.generated_tokens, "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "threads": torch.get_num_threads()}


class ShardWriter:
    """A replica's samples, one line per prompt, appended call by call under a temporary name;
    `close` writes the summary (`shard-<r>.json`) and then renames the shard: complete once renamed."""

    def __init__(self, workdir: Path, replica: int):
        self.workdir, self.replica = workdir, replica
        self.path = shard_path(workdir, replica)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.fh = open(self.tmp, "w", encoding="utf-8")

    def __call__(self, g: int, group: list[Sample]) -> None:
        self.fh.write(json.dumps({"g": g, "samples": [[s.token_ids, s.logprobs, s.finish_reason, s.text]
                                                      for s in group]}, ensure_ascii=False) + "\n")

    def close(self, stats: dict) -> Path:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        summary_path(self.workdir, self.replica).write_text(json.dumps(stats), encoding="utf-8")
        os.replace(self.tmp, self.path)
        return self.path


def merge(workdir: Path, count: int, total: int, n: int, keep: Consumer) -> list[dict]:
    """Every prompt's samples in global order from the complete shards (prompt g is the next line of
    shard g % count), handed to `keep(g, samples)` one at a time; each shard's summary."""
    stats = [json.loads(summary_path(workdir, r).read_text(encoding="utf-8")) for r in range(count)]
    files = [open(shard_path(workdir, r), encoding="utf-8") for r in range(count)]
    try:
        for g in range(total):
            line = files[g % count].readline()
            row = json.loads(line) if line else {}
            if row.get("g") != g or len(row["samples"]) != n:
                raise ReplicaError(f"replica {g % count}'s shard lacks the {n} samples of prompt {g} (global index) "
                                   f"in their place: {'it ends early' if not line else 'found ' + str(row.get('g'))}")
            keep(g, [Sample(ids, lps, reason, text) for ids, lps, reason, text in row["samples"]])
        extra = [r for r, fh in enumerate(files) if fh.readline()]
        if extra:
            raise ReplicaError(f"the shards of replicas {extra} hold more prompts than the task gave them")
    finally:
        for fh in files:
            fh.close()
    return stats


# ---------------------------------------------------------------------------------------------
# Placement: which process runs where, with which devices
# ---------------------------------------------------------------------------------------------


def visible_devices(env: Mapping[str, str], replicas: Replicas) -> list[str]:
    """The CUDA devices this job may use: its CUDA_VISIBLE_DEVICES (a device slice), else the node's."""
    found = env.get("CUDA_VISIBLE_DEVICES")
    if found is not None:
        return [d for d in found.split(",") if d.strip()]
    return [str(i) for i in range(replicas.gpus_per_node)]


def span(replicas: Replicas) -> int:
    """Nodes one replica spans: 1, or gpus / gpus_per_node for a replica bigger than a node."""
    if replicas.gpus <= replicas.gpus_per_node or replicas.gpus == 0:
        return 1
    if replicas.gpus % replicas.gpus_per_node:
        raise ReplicaError(f"a replica of {replicas.gpus} GPUs cannot span whole nodes of {replicas.gpus_per_node} "
                           "GPUs; set tensor_parallel_size x pipeline_parallel_size to a multiple of the node's GPUs")
    return replicas.gpus // replicas.gpus_per_node


def placement(replicas: Replicas, devices: Sequence[str]) -> list[Proc]:
    """Every process of the job: replicas fill node 0 first, `gpus` devices each out of `devices`."""
    nodes_each = span(replicas)
    if nodes_each > 1:
        if replicas.count * nodes_each > replicas.nodes:
            raise ReplicaError(f"{replicas.count} replicas of {nodes_each} nodes each need "
                               f"{replicas.count * nodes_each} nodes; the job has {replicas.nodes}")
        return [Proc(r, r * nodes_each + k, k, nodes_each, tuple(devices[:replicas.gpus_per_node]))
                for r in range(replicas.count) for k in range(nodes_each)]
    per_node = math.ceil(replicas.count / replicas.nodes)
    if replicas.gpus and per_node * replicas.gpus > len(devices):
        raise ReplicaError(f"{per_node} replicas of {replicas.gpus} GPUs on a node need {per_node * replicas.gpus} "
                           f"GPUs; this job sees {len(devices)} ({','.join(devices) or 'none'}, CUDA_VISIBLE_DEVICES)")
    procs = []
    for r in range(replicas.count):
        slot = r % per_node
        mine = tuple(devices[slot * replicas.gpus:(slot + 1) * replicas.gpus])
        procs.append(Proc(r, r // per_node, 0, 1, mine))
    return procs


def proc_env(env: Mapping[str, str], proc: Proc, replicas: Replicas) -> dict[str, str]:
    """A replica process's environment: its device slice (none on CPU) and its thread count."""
    out = dict(env)
    out["CUDA_VISIBLE_DEVICES"] = ",".join(proc.devices)
    threads = str(replicas.cpus)
    out.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return out


def proc_command(task: Path, proc: Proc, hosts: Sequence[str] = (), job_id: str = "", *,
                 python: str = sys.executable) -> list[str]:
    """The command of one replica process; a replica over several nodes also gets its leader's host
    and its torch.distributed port (vLLM's `master_addr`, `master_port`)."""
    cmd = [python, "-m", PROGRAM, "--task", str(task), "--replica", str(proc.replica),
           "--node-rank", str(proc.node_rank)]
    if proc.span > 1:
        cmd += ["--master-addr", hosts[proc.node - proc.node_rank], "--master-port",
                str(master_port(job_id, proc.replica))]
    return cmd


def master_port(job_id: str, replica: int) -> int:
    return MASTER_PORT_BASE + (int(job_id) * 64 + replica) % MASTER_PORT_SPAN


# ---------------------------------------------------------------------------------------------
# Launch and watch
# ---------------------------------------------------------------------------------------------


def run_replicas(workdir: Path, replicas: Replicas, label: str) -> None:
    """Run every replica to completion: on this machine, or through srun on every node of the job."""
    from rlspec.runtime.grpo.distributed import launch_env, slurm_allocation
    env = dict(os.environ)
    alloc = slurm_allocation(env) if replicas.nodes > 1 else None
    if replicas.nodes > 1 and (alloc is None or len(alloc.hosts) < replicas.nodes):
        raise ReplicaError(f"the job spreads over {replicas.nodes} nodes but runs "
                           f"{'outside Slurm' if alloc is None else f'in {len(alloc.hosts)} node(s)'}; run it "
                           "through the compiled workflow's Slurm profile, which allocates the nodes")
    if alloc is None:
        procs = placement(replicas, visible_devices(env, replicas))
        watch(workdir, procs, replicas, env, label)
        return
    cmd = srun_command(workdir / TASK, replicas, job_id=alloc.job_id, cpus_per_task=alloc.cpus_per_task)
    print(f"{label}: launch: {' '.join(cmd)}", flush=True)
    with open(workdir / "srun.log", "w", encoding="utf-8") as log:
        code = subprocess.call(cmd, env=launch_env(env), stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise ReplicaError(failure_message(workdir, replicas, f"srun exit code {code}"))


def srun_command(task: Path, replicas: Replicas, *, job_id: str, cpus_per_task: str,
                 python: str = sys.executable) -> list[str]:
    """One task per node of the job's allocation, each starting its node's replica processes."""
    if not cpus_per_task:
        raise ReplicaError(f"Slurm job {job_id} has no SLURM_CPUS_PER_TASK, so the per-node srun cannot ask "
                           "for the node's CPUs; run the job through the compiled workflow's Slurm profile")
    n = replicas.nodes
    cmd = ["srun", f"--jobid={job_id}", "--overlap", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1",
           f"--cpus-per-task={cpus_per_task}", "--mem=0"]
    if replicas.gpus:
        cmd.append(f"--gres=gpu:{replicas.gpus_per_node}")
    return cmd + ["--kill-on-bad-exit=1", "--label", "--export=ALL", python, "-m", PROGRAM, "--task", str(task),
                  "--node-from-env"]


def watch(workdir: Path, procs: list[Proc], replicas: Replicas, env: Mapping[str, str], label: str,
          hosts: Sequence[str] = (), job_id: str = "") -> None:
    """Start `procs` here and wait for them. The first to fail stops the others and raises; a headless
    node (node rank > 0) is stopped once its replica's shard is complete."""
    running: dict[Proc, subprocess.Popen] = {}
    try:
        for proc in procs:
            running[proc] = spawn(workdir, proc, replicas, env, hosts, job_id)
        while running:
            time.sleep(POLL_S)
            for proc, p in list(running.items()):
                code = p.poll()
                if code is None and proc.node_rank > 0 and shard_path(workdir, proc.replica).exists():
                    p.terminate()  # the leader is done: this node's workers have nothing left to serve
                    p.wait()
                    code = 0
                if code is None:
                    continue
                del running[proc]
                if code != 0:
                    raise ReplicaError(failure_message(workdir, replicas, exit_text(code), proc))
                if proc.node_rank == 0:
                    print(f"{label}: {progress_line(workdir, proc.replica, replicas.count)}", flush=True)
    finally:
        for p in running.values():
            p.kill()
            p.wait()


def spawn(workdir: Path, proc: Proc, replicas: Replicas, env: Mapping[str, str], hosts: Sequence[str],
          job_id: str) -> subprocess.Popen:
    cmd = proc_command(workdir / TASK, proc, hosts, job_id)
    log = open(log_path(workdir, proc), "w", encoding="utf-8")
    try:
        return subprocess.Popen(cmd, env=proc_env(env, proc, replicas), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
    finally:
        log.close()


def _die_with_parent() -> None:
    """A replica must not outlive the job that started it (a killed job would leave engines holding GPUs)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def exit_text(code: int) -> str:
    return f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def failure_message(workdir: Path, replicas: Replicas, how: str, proc: Proc | None = None) -> str:
    """`replica r of C failed (how)` and the tail of its log (of every log that says error, under srun)."""
    logs = [log_path(workdir, proc)] if proc is not None else sorted(workdir.glob("replica-*.log"))
    who = f"replica {proc.replica} of {replicas.count}" if proc is not None else f"a replica of {replicas.count}"
    tails = []
    for log in logs + ([workdir / "srun.log"] if proc is None else []):
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if proc is not None or "Error" in text or "error" in text:
            tails.append(f"--- {log.name} (last {LOG_TAIL} characters) ---\n{text[-LOG_TAIL:]}")
    return f"{who} failed ({how}); no samples were kept\n" + "\n".join(tails)


def progress_line(workdir: Path, replica: int, count: int) -> str:
    s = json.loads(summary_path(workdir, replica).read_text(encoding="utf-8"))
    rate = s["generated_tokens"] / s["generate_s"] if s["generate_s"] else 0.0
    return (f"replica {replica} of {count} done: {s['prompts']} prompts, {s['generated_tokens']} tokens "
            f"in {s['generate_s']:.1f} s ({rate:.0f} tok/s, engine start {s['load_s']:.1f} s)")
