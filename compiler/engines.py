"""The engine and the replicas of every job that samples: one resolution, used by the plan, the checks
and the memory estimate.

What:
- `train_engine(spec, stage)`: the colocated engine of a train stage (its `rollout` block).
- `inference_engine(spec, kind, override)`: the full engine block of an inference job (`kind`: bench,
  filter or sample): `inference.<kind>` with the job's own `engine` keys over it, and every field it
  leaves unset filled from `rollout` (engine, KV-cache bytes, max_num_seqs, enforce_eager, hf batch)
  or `model` (dtype).
- `max_model_len(spec, block, response_tokens)`: the engine's longest sequence: the job's prompt
  budget plus response budget, at most `model.max_context`, unless the block sets it.
- `replicas(block, resources)`: data parallelism, DP = the job's GPUs / (TP x PP) unless set.

Why: `rlspec check` must verify exactly what the job will run, so the check and the plan read one
function, not two copies of the defaulting rules.
"""

from __future__ import annotations

import math

from .jobs import EngineSettings, Replicas, VllmEngine
from .spec import HfSettings, InferenceEngine, JobResources, Rollout, Spec

INFERENCE_KINDS = ("bench", "filter", "sample")


def train_engine(rollout: Rollout) -> EngineSettings:
    v = rollout.vllm
    return EngineSettings(engine=rollout.engine, max_prompt_tokens=rollout.max_prompt_tokens,
                          vllm=VllmEngine(tensor_parallel_size=v.tensor_parallel_size, pipeline_parallel_size=1,
                                          gpu_memory_utilization=v.gpu_memory_utilization,
                                          kv_cache_memory_bytes=v.kv_cache_memory_bytes, enforce_eager=v.enforce_eager,
                                          max_num_seqs=v.max_num_seqs, quantization=None),
                          hf=rollout.hf)


def inference_block(spec: Spec, kind: str, override: InferenceEngine | None) -> InferenceEngine:
    """`inference.<kind>` with `override`'s keys over it, every unset default filled in."""
    assert kind in INFERENCE_KINDS, kind
    block = getattr(spec.inference, kind).merged(override)
    r = spec.rollout
    filled = {"engine": r.engine, "dtype": spec.model.dtype, "kv_cache_memory_bytes": r.vllm.kv_cache_memory_bytes,
              "max_num_seqs": r.vllm.max_num_seqs, "enforce_eager": r.vllm.enforce_eager,
              "hf_batch_size": r.hf.batch_size}
    return block.model_copy(update={k: v for k, v in filled.items() if getattr(block, k) is None})


def inference_engine(spec: Spec, block: InferenceEngine) -> EngineSettings:
    """The job-side engine settings of a filled block (`inference_block`)."""
    r = spec.rollout
    assert block.engine is not None and block.max_num_seqs is not None and block.hf_batch_size is not None
    return EngineSettings(engine=block.engine, max_prompt_tokens=r.max_prompt_tokens,
                          vllm=VllmEngine(tensor_parallel_size=block.tensor_parallel_size,
                                          pipeline_parallel_size=block.pipeline_parallel_size,
                                          gpu_memory_utilization=block.gpu_memory_utilization,
                                          kv_cache_memory_bytes=block.kv_cache_memory_bytes,
                                          enforce_eager=bool(block.enforce_eager), max_num_seqs=block.max_num_seqs,
                                          quantization=block.quantization),
                          hf=HfSettings(batch_size=block.hf_batch_size))


def max_model_len(spec: Spec, prompt_tokens: int, response_tokens: int, block: InferenceEngine | None = None) -> int:
    """The engine's longest sequence: prompt budget + response budget, at most `model.max_context`
    (an inference block's own `max_model_len` wins)."""
    if block is not None and block.max_model_len is not None:
        return block.max_model_len
    return min(prompt_tokens + response_tokens, spec.model.max_context)


def gpus_per_replica(block: InferenceEngine) -> int:
    return block.tensor_parallel_size * block.pipeline_parallel_size


def replica_count(block: InferenceEngine, res: JobResources) -> int:
    """DP: the block's `data_parallel_size`, else every GPU of the job (1 on CPU). May not divide
    evenly: `checks.inference_parallelism` refuses that."""
    if block.data_parallel_size is not None:
        return block.data_parallel_size
    total = res.gpus * res.nodes
    return max(1, total // gpus_per_replica(block)) if total else 1


def replicas(block: InferenceEngine, res: JobResources) -> Replicas:
    count = replica_count(block, res)
    gpus = gpus_per_replica(block) if res.gpus else 0
    per_node = math.ceil(count / res.nodes)
    return Replicas(count=count, gpus=gpus, nodes=res.nodes, gpus_per_node=res.gpus,
                    cpus=max(1, res.cpus // max(1, per_node)))
