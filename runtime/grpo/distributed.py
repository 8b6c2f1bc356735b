"""DeepSpeed on CPU or GPU: process group, config from the spec, and the launch.

`python -m rlspec.runtime.train` is what the workflow runs. When the job asks for more than one
rank and the process was not started by a launcher, it re-executes itself under `torchrun`
(single node; multi-node jobs run under Slurm's `srun` + torchrun, which sets the same variables).
A single rank still goes through `torch.distributed` (gloo on CPU, nccl on GPU) so one code path
serves both.

On CPU, DeepSpeed JIT-compiles a shared-memory collective op on every init (35-110 s): we skip it
(gloo collectives are enough here) and use torch's AdamW, so nothing is ever compiled.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlspec.compiler.jobs import TrainJob


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_under_torchrun(ranks: int, argv: list[str]) -> int:
    """Run this module again with `ranks` processes; returns torchrun's exit code."""
    import subprocess
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks),
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "rlspec.runtime.train", *argv]
    return subprocess.call(cmd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(use_gpu: bool, *, timeout_minutes: int) -> Dist:
    """Initialise torch.distributed through DeepSpeed (world of 1 when not launched)."""
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
    import datetime
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo",
                               timeout=datetime.timedelta(minutes=timeout_minutes))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = f"cuda:{local}" if use_gpu else "cpu"
    if use_gpu:
        import torch
        torch.cuda.set_device(local)
    return Dist(rank, world, local, device)


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


def barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (float64 on CPU keeps counts exact)."""
    import torch
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
