"""DeepSpeed on CPU or GPU: process groups, config from the spec, and the launch.

`python -m rlspec.runtime.train` is what the workflow runs. When the job asks for more than one
rank and the process was not started by a launcher, it re-executes itself (`launch_command`):
- locally, and in a one-node Slurm allocation: `torchrun --nnodes 1` with every rank on this node;
- in a Slurm allocation of N > 1 nodes: one `torchrun` per node through `srun`, a c10d rendezvous
  on the allocation's first node with the Slurm job id as rendezvous id. Every count is explicit
  (`srun --nodes N --ntasks N --ntasks-per-node 1`, `torchrun --nnodes N --nproc_per_node ranks/N`):
  the Slurm executor's job step strips the allocation's `SLURM_*` variables, so srun could not infer
  them. `--kill-on-bad-exit=1`: a rank that fails ends every node's torchrun, and its error is in
  the job log (`--label` prefixes each line with its node's task number).
A single rank still goes through `torch.distributed` (gloo on CPU, nccl on GPU) so one code path
serves both. The compiler writes the same lines, with the allocation's values left symbolic, into
the build folder (`launch/<job id>.txt`, `rlspec.compiler.render`).

Process groups: the world group carries the model's tensors (nccl on GPU). Counters and Python
objects (`all_reduce_sum`, `all_gather_objects`, `barrier`) go through a gloo side group created
once at `init` (on CPU the world group is gloo already): NCCL reduces only device tensors, and the
float64 counts stay exact on the CPU. Both groups get the spec's `resources.deepspeed.timeout_minutes`;
a collective past it raises `CollectiveError` naming the collective and the timeout.

On CPU, DeepSpeed JIT-compiles a shared-memory collective op on every init (35-110 s): we skip it
(gloo collectives are enough here) and use torch's AdamW, so nothing is ever compiled.
"""

from __future__ import annotations

import datetime
import importlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from rlspec.compiler.jobs import TrainJob

PROGRAM = "rlspec.runtime.train"
# The c10d rendezvous port on the allocation's first node: derived from the job id, so every node
# computes the same one without talking to the others; below Linux's ephemeral range (32768+).
RDZV_PORT_BASE, RDZV_PORT_SPAN = 20000, 10000
# The job identity survives into the per-node srun; every other SLURM_*/SRUN_*/SBATCH_* variable of
# the job step (its own task count, CPUs, GPUs) would be read by srun as defaults for the new step.
KEEP_SLURM = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR",
              "SLURM_SUBMIT_HOST", "SLURM_CONF"}


class CollectiveError(RuntimeError):
    """A collective that did not complete on this rank: a peer timed out or died."""


class LaunchError(RuntimeError):
    """The ranks cannot be started in this allocation; the message says why and what to set."""


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def main(self) -> bool:
        return self.rank == 0


# Set once by `init`: the group for CPU objects and counters (None = the world group, gloo on CPU)
# and the timeout, for the error message.
_cpu_group: Any = None
_timeout_minutes: float | None = None


def launched() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


# ------------------------------------------------------------------------------------------ launch


@dataclass(frozen=True)
class Allocation:
    """The Slurm allocation this process runs in, as the per-node launch needs it."""

    job_id: str
    hosts: list[str]
    """`scontrol show hostnames $SLURM_JOB_NODELIST`: the first is the rendezvous host."""
    cpus_per_task: str
    """CPUs of each node's task: the job step's `SLURM_CPUS_PER_TASK` (the plugin's `--cpus-per-task`)."""


def rdzv_port(job_id: str) -> int:
    return RDZV_PORT_BASE + int(job_id) % RDZV_PORT_SPAN


def local_torchrun(ranks: int, argv: list[str], *, port: int | str, python: str = sys.executable) -> list[str]:
    """All `ranks` on this machine: the path for local runs and one-node allocations."""
    return [python, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks),
            "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", PROGRAM, *argv]


def slurm_torchrun(ranks: int, argv: list[str], *, nodes: int, head: str, job_id: str, cpus_per_task: int | str,
                   gpus_per_node: int, port: int | str, python: str = sys.executable) -> list[str]:
    """One torchrun per node of Slurm job `job_id` through srun, `ranks` split evenly over `nodes`;
    the c10d rendezvous on `head:port`. `--overlap`: the job step this runs in already holds the
    first node's CPUs and GPUs; `--mem=0`: each task may use all of the job's memory on its node."""
    if ranks % nodes:
        raise LaunchError(f"the train job has {ranks} ranks, which the {nodes} nodes of Slurm job {job_id} "
                          "cannot share evenly (one torchrun per node, the same ranks on each); run it in an "
                          "allocation of resources.train.nodes nodes, as the compiled Slurm profile does")
    srun = ["srun", f"--jobid={job_id}", "--overlap", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={cpus_per_task}", "--mem=0"]
    if gpus_per_node:
        srun.append(f"--gres=gpu:{gpus_per_node}")
    srun += ["--kill-on-bad-exit=1", "--label", "--export=ALL"]
    return srun + [python, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc_per_node",
                   str(ranks // nodes), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{head}:{port}",
                   "--rdzv_id", job_id, "--max_restarts", "0", "-m", PROGRAM, *argv]


def slurm_allocation(env: Mapping[str, str]) -> Allocation | None:
    """The Slurm allocation around this process (None outside Slurm); its hosts from
    `scontrol show hostnames $SLURM_JOB_NODELIST`, the first being the rendezvous host."""
    if "SLURM_JOB_ID" not in env or "SLURM_JOB_NODELIST" not in env:
        return None
    nodelist = env["SLURM_JOB_NODELIST"]
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, env=dict(env)).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LaunchError(f"cannot list the nodes of Slurm job {env['SLURM_JOB_ID']} "
                          f"(`scontrol show hostnames {nodelist}`: {exc}); run the train job where Slurm's "
                          "clients are installed") from None
    hosts = out.split()
    if not hosts:
        raise LaunchError(f"`scontrol show hostnames {nodelist}` listed no nodes")
    return Allocation(env["SLURM_JOB_ID"], hosts, env.get("SLURM_CPUS_PER_TASK", ""))


def launch_command(ranks: int, argv: list[str], env: Mapping[str, str], *, gpus: bool) -> list[str]:
    """How to start `ranks` ranks of this job from here (see the module docstring)."""
    alloc = slurm_allocation(env)
    if alloc is None or len(alloc.hosts) == 1:
        return local_torchrun(ranks, argv, port=_free_port())
    if not alloc.cpus_per_task:
        raise LaunchError(f"Slurm job {alloc.job_id} spans {len(alloc.hosts)} nodes but this job step has no "
                          "SLURM_CPUS_PER_TASK, so the per-node srun cannot ask for the node's CPUs; run the "
                          "train job through the compiled workflow's Slurm profile (it passes --cpus-per-task)")
    nodes = len(alloc.hosts)
    return slurm_torchrun(ranks, argv, nodes=nodes, head=alloc.hosts[0], job_id=alloc.job_id,
                          cpus_per_task=alloc.cpus_per_task, gpus_per_node=ranks // nodes if gpus else 0,
                          port=rdzv_port(alloc.job_id))


def launch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of the per-node srun: the job step's own SLURM_* settings removed."""
    def inherited(name: str) -> bool:
        return (name.startswith("SLURM_") and name not in KEEP_SLURM) or name.startswith(("SRUN_", "SBATCH_"))
    return {k: v for k, v in env.items() if not inherited(k)}


def relaunch(ranks: int, argv: list[str]) -> int:
    """Run this job again as `ranks` ranks (`launch_command`); returns the launcher's exit code."""
    env = dict(os.environ)
    try:
        cmd = launch_command(ranks, argv, env, gpus=_has_gpus())
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("launch: " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=launch_env(env) if cmd[0] == "srun" else env)


def _has_gpus() -> bool:
    import torch
    return torch.cuda.is_available()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ process groups


def init(use_gpu: bool, *, timeout_minutes: float) -> Dist:
    """Initialise torch.distributed through DeepSpeed (world of 1 when not launched), and the gloo
    side group for CPU collectives, both with the spec's process-group timeout."""
    global _cpu_group, _timeout_minutes
    if not launched():
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())})
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    if not use_gpu:
        importlib.import_module("deepspeed.comm.torch")
        # `deepspeed.comm.torch` re-exports torch under that name, so patch through sys.modules.
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    timeout = datetime.timedelta(minutes=timeout_minutes)
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo", timeout=timeout)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = f"cuda:{local}" if use_gpu else "cpu"
    if use_gpu:
        import torch
        torch.cuda.set_device(local)
    import torch.distributed as dist
    # new_group is collective: every rank creates it here, in the same order.
    _cpu_group = dist.new_group(backend="gloo", timeout=timeout) if use_gpu and world > 1 else None
    _timeout_minutes = timeout_minutes
    return Dist(rank, world, local, device)


def shutdown() -> None:
    """Destroy the process groups before the interpreter exits: a gloo group torn down by the
    interpreter's exit while its threads still run can abort the process ("terminate called without an
    active exception", SIGABRT), which torchrun reports as a failed rank of a finished job."""
    global _cpu_group
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _cpu_group = None


def deepspeed_config(cfg: TrainJob, *, micro_batch: int, grad_accum: int, world: int) -> dict[str, Any]:
    """The DeepSpeed config for a train job: ZeRO stage/offload, precision, clipping, batch shape.

    Offload keeps torch's AdamW: DeepSpeed refuses a non-DeepSpeed optimizer with optimizer offload
    unless `zero_force_ds_cpu_optimizer` is false (its CPU Adam is a JIT-compiled op, 35-110 s per
    start on CPU); the offloaded states then live in host memory and the step runs there."""
    ds = cfg.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu"}
    grad_clip = cfg.algorithm.optimizer.grad_clip
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world,
        "zero_optimization": zero,
        "gradient_clipping": grad_clip if grad_clip is not None else 0.0,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
    }
    if cfg.inference.dtype == "bfloat16":
        out["bf16"] = {"enabled": True}
    elif cfg.inference.dtype == "float16":
        out["fp16"] = {"enabled": True}
    return out


def _world() -> int:
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _collective(name: str, op: Callable[[], Any]) -> Any:
    """Run one collective; a failure (a peer past the timeout, or gone) becomes a `CollectiveError`
    that names the collective, this rank and the timeout."""
    try:
        return op()
    except RuntimeError as exc:  # gloo: "Timed out waiting 3000ms for recv operation"; "Connection closed by peer"
        import torch.distributed as dist
        rank = dist.get_rank()
        timed_out = "timed out" in str(exc).lower() or "timeout" in str(exc).lower()
        why = (f"the other ranks did not reach it within the process-group timeout of {_timeout_minutes:g} min "
               "(resources.deepspeed.timeout_minutes); if one rank is merely slow (a long rollout tail), "
               "raise it" if timed_out else "a peer rank failed or left (see its error in the log)")
        raise CollectiveError(f"rank {rank} of {dist.get_world_size()}: {name} did not complete: {why} "
                              f"[{str(exc).strip().splitlines()[0][:300]}]") from exc


def barrier() -> None:
    if _world() > 1:
        import torch.distributed as dist
        _collective("barrier", lambda: dist.barrier(group=_cpu_group))


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks: float64 on the CPU (gloo) keeps counts exact."""
    import torch
    t = torch.tensor(values, dtype=torch.float64)
    if _world() > 1:
        import torch.distributed as dist
        _collective("all_reduce_sum", lambda: dist.all_reduce(t, group=_cpu_group))
    return t.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (pickled over gloo)."""
    if _world() == 1:
        return [obj]
    import torch.distributed as dist
    out: list[Any] = [None] * dist.get_world_size()
    _collective("all_gather_objects", lambda: dist.all_gather_object(out, obj, group=_cpu_group))
    return out
