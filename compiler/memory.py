"""GPU memory per GPU of every train job and every inference job (bench, filter, sample), estimated
before launch.

What: `train_estimate(TrainInputs)` and `engine_estimate(EngineInputs)` return an `Estimate` per GPU in
GiB, split into named parts (weights, gradients, optimizer states, activations, the log-prob chunk,
the rollout engine, ...), with what went to host memory and what vLLM's sleep mode would free.
`stage_train` builds a train job's inputs from a validated spec; `inference_jobs(spec)` lists every
inference job with its engine block resolved as the plan resolves it (`compiler/engines.py`), and
`inference_inputs` gives one replica's inputs: weights split over tensor x pipeline parallel at the
quantization's (or the checkpoint's saved) bytes per weight, the KV cache of one pipeline stage,
latent attention (DeepSeek-V3/R1) as one vector per token and layer. A model known only by its
parameter count (from its name) gets a weights-only bound (`WeightsOnly`). The plan (`rlspec plan`)
shows the estimates and the checks (`rlspec check`) refuse a job whose estimate exceeds its
resources' `gpu_mem_gb`, listing what would make it fit (`remedies`, `inference_remedies`).

Why: at 8K-32K tokens a 7B policy's activations, its 152K-vocabulary logits and a colocated vLLM
engine decide whether a step fits; learning that from an out-of-memory error hours into a job is
the expensive way.

How: pure arithmetic on the model's shape, no torch and no network (the compiler stays pure). The
shape comes from `model.from_scratch` (exact), a local folder's `config.json`, or `KNOWN_MODELS`
(hub models whose public config.json is copied here); otherwise the job is "not estimated" with the
reason, never guessed. Formulas, assumptions and the CPU measurement that checks them:
docs/memory.md and tests/runtime/test_memory_estimate.py.

The rollout budget (GPU-hours per job) is `compiler/budget.py`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import engines, uris
from .spec import InferenceEngine, JobResources, Lora, ModelSpec, PassRateFilter, Spec, Stage

PathT = tuple[str | int, ...]

GIB = 1 << 30
WEIGHT_SYNC_BUCKET = 256 * 2**20  # bytes the ZeRO-3 weight push gathers at once (runtime/grpo/weightsync.py)
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

# Measured peak of fp32 (positions x vocabulary) copies while one checkpointed log-prob chunk runs its
# forward again and its backward with entropy (scaled logits, log-softmax, its exp, their gradients):
# 4.1 to 5.0 on CPU (tests/runtime/test_memory_estimate.py); 5 is the upper end.
LOGIT_COPIES = 5
# DeepSpeed defaults the trainer does not override (deepspeed/runtime/zero/config.py): elements per
# gradient-reduce bucket, and ZeRO-3's prefetch bucket of gathered parameters.
REDUCE_BUCKET = 500_000_000
PREFETCH_BUCKET = 50_000_000
# CUDA context, cuBLAS workspaces and NCCL buffers of one process: outside any framework's accounting.
CUDA_CONTEXT_GIB = 0.75
# vLLM's defaults for the offline `LLM` class (vllm/engine/arg_utils.py): tokens per profiling batch
# on GPUs with at least 70 GiB, and on smaller ones.
VLLM_BATCHED_TOKENS = (16384, 8192)
NEAR_LIMIT = 0.95  # an estimate above this fraction of the GPU gets a warning: fragmentation is not modelled


# ------------------------------------------------------------------------------------------
# model shape
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """What memory depends on in a dense decoder (Qwen2, Llama, Mistral, Qwen3)."""

    params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int
    largest_module: int  # parameters of the biggest module ZeRO-3 gathers at once (embedding or one layer)
    source: str  # where the shape came from, for the plan
    # Latent-attention models (DeepSeek-V3/R1 MLA) cache one compressed vector per token and layer,
    # not K and V per head: its width in values (kv_lora_rank + qk_rope_head_dim), the same on every
    # tensor-parallel rank. None: dense attention, 2 x kv_heads x head_dim.
    kv_latent: int | None = None
    saved_weight_bytes: float | None = None  # a checkpoint saved quantized (R1: fp8, 1 byte); None: the dtype's
    embedding_params: int = 0  # embedding + output head: vLLM keeps them in the dtype under quantization


@dataclass(frozen=True)
class NotEstimated:
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"estimated": False, "reason": self.reason}


# Hub models whose shapes are shipped: the fields memory depends on, copied from each model's public
# config.json (https://huggingface.co/<id>/blob/main/config.json). The R1 distills keep their base
# model's shape (DeepSeek-R1 README, "DeepSeek-R1-Distill Models": 1.5B/7B from Qwen2.5-Math, 14B/32B
# from Qwen2.5); tests/compiler/test_memory.py checks the parameter counts against the Hub's.
_QWEN_7B = dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)
_QWEN_14B = dict(model_type="qwen2", hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                 num_attention_heads=40, num_key_value_heads=8, vocab_size=152064, tie_word_embeddings=False)
_QWEN_32B = dict(model_type="qwen2", hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                 num_attention_heads=40, num_key_value_heads=8, vocab_size=152064, tie_word_embeddings=False)
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": _QWEN_7B,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": _QWEN_14B,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": _QWEN_32B,
    "Qwen/Qwen2.5-Math-7B": _QWEN_7B,
    "Qwen/Qwen2.5-7B": _QWEN_7B,
    "Qwen/Qwen2.5-14B": _QWEN_14B,
    "Qwen/Qwen2.5-32B": _QWEN_32B,
    # DeepSeek-R1 (= DeepSeek-V3's architecture): a mixture of experts with latent attention, saved in
    # fp8 (config.json `quantization_config`); 671B parameters (the Hub's 685B adds the 14B
    # multi-token-prediction module, which vLLM does not load for sampling).
    "deepseek-ai/DeepSeek-R1": dict(
        model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
        num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, n_routed_experts=256,
        n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=3, q_lora_rank=1536, kv_lora_rank=512,
        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, vocab_size=129280, tie_word_embeddings=False,
        quantization_config={"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}),
    "meta-llama/Llama-3.1-8B": dict(
        model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
}
_KNOWN_BY_LOWER = {name.lower(): (name, cfg) for name, cfg in KNOWN_MODELS.items()}
DENSE_TYPES = ("qwen2", "llama", "mistral", "qwen3")
MLA_TYPES = ("deepseek_v3",)
SAVED_QUANT_BYTES = {"fp8": 1.0}  # config.json quantization_config.quant_method -> bytes per weight as saved
# vLLM `quantization` -> bytes per weight of the quantized linear layers (awq/gptq/bitsandbytes: 4-bit;
# compressed-tensors schemes differ, so it counts as the dtype's, an upper bound)
QUANT_BYTES = {"fp8": 1.0, "awq": 0.5, "gptq": 0.5, "bitsandbytes": 0.5}


def shape_from_config(cfg: dict[str, Any], source: str) -> Shape | NotEstimated:
    """A dense decoder's (or DeepSeek-V3/R1's) shape and parameter count from its HF config.json fields."""
    kind = cfg.get("model_type")
    if kind in MLA_TYPES:
        return _mla_shape(cfg, source)
    if kind not in DENSE_TYPES:
        return NotEstimated(f"{source}: model_type {kind!r} is not modelled (dense {', '.join(DENSE_TYPES)} are)")
    try:
        h, layers, heads = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        kv, inter = int(cfg.get("num_key_value_heads") or heads), int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        return NotEstimated(f"{source}: config.json lacks a usable {exc}")
    hd = int(cfg.get("head_dim") or h // heads)
    attn = 2 * h * heads * hd + 2 * h * kv * hd
    if kind == "qwen2" or cfg.get("attention_bias"):
        attn += heads * hd + 2 * kv * hd
    if kind == "qwen3":
        attn += 2 * hd  # q_norm and k_norm
    mlp = 3 * h * inter + (2 * inter + h if cfg.get("mlp_bias") else 0)
    layer = attn + mlp + 2 * h
    tied = bool(cfg.get("tie_word_embeddings", False))
    params = vocab * h * (1 if tied else 2) + layers * layer + h
    return Shape(params, h, layers, heads, kv, hd, vocab, inter, max(vocab * h, layer), source)


def _mla_shape(cfg: dict[str, Any], source: str) -> Shape | NotEstimated:
    """DeepSeek-V3/R1: latent attention (queries and keys/values through low-rank projections), the
    first `first_k_dense_replace` layers dense, the others `n_routed_experts` experts plus shared
    ones. Parameters counted from the projections (671B for R1, the published total)."""
    try:
        h, layers, heads = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        qr, kvr = int(cfg["q_lora_rank"]), int(cfg["kv_lora_rank"])
        nope, rope, v = int(cfg["qk_nope_head_dim"]), int(cfg["qk_rope_head_dim"]), int(cfg["v_head_dim"])
        inter, moe_inter = int(cfg["intermediate_size"]), int(cfg["moe_intermediate_size"])
        experts, shared = int(cfg["n_routed_experts"]), int(cfg.get("n_shared_experts") or 0)
        dense, vocab = int(cfg["first_k_dense_replace"]), int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        return NotEstimated(f"{source}: config.json lacks a usable {exc}")
    attn = h * qr + qr + qr * heads * (nope + rope) + h * (kvr + rope) + kvr + kvr * heads * (nope + v) + heads * v * h
    moe = (experts + shared) * 3 * h * moe_inter + experts * h
    mlp_params = dense * 3 * h * inter + (layers - dense) * moe
    embedding = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    params = embedding + layers * (attn + 2 * h) + mlp_params + h
    quant = (cfg.get("quantization_config") or {}).get("quant_method")
    return Shape(params, h, layers, heads, heads, nope + rope, vocab, inter, max(vocab * h, attn + moe), source,
                 kv_latent=kvr + rope, saved_weight_bytes=SAVED_QUANT_BYTES.get(quant), embedding_params=embedding)


def model_shape(model: ModelSpec, spec_dir: Path | None) -> Shape | NotEstimated:
    """The starting policy's shape (every stage trains the same architecture)."""
    if model.from_scratch is not None:
        arch, tok = model.from_scratch.architecture, model.from_scratch.tokenizer
        cfg = dict(model_type=arch.family, hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
                   num_hidden_layers=arch.num_layers, num_attention_heads=arch.num_heads,
                   num_key_value_heads=arch.num_kv_heads, vocab_size=tok.vocab_size,
                   tie_word_embeddings=arch.tie_word_embeddings)
        # the trained tokenizer has at most vocab_size tokens, so this is an upper bound
        return shape_from_config(cfg, "model.from_scratch")
    if model.path is None:  # checks.model_source reports it
        return NotEstimated("the model sets neither `path` nor `from_scratch`")
    return named_shape(model.path, spec_dir)


def named_shape(name: str, spec_dir: Path | None) -> Shape | NotEstimated:
    """A hub id (`hf://org/name` or `org/name`) from KNOWN_MODELS, or a local folder's config.json
    (relative to `spec_dir`, the spec's folder; None when the caller does not know it)."""
    hub = name
    if uris.is_hf(name):  # `hf://ORG/NAME[@REV]` -> ORG/NAME
        try:
            hub = uris.parse_model(name).name
        except uris.UriError as exc:  # `rlspec check` reports it at model.path
            return NotEstimated(str(exc))
    folder = Path(name).expanduser()
    if not name.startswith("hf://") and not folder.is_absolute() and spec_dir is not None:
        folder = spec_dir / folder
    if not name.startswith("hf://") and (folder.is_absolute() or spec_dir is not None) and folder.is_dir():
        return _local_shape(folder, name)
    known = _KNOWN_BY_LOWER.get(hub.lower())
    if known is not None:
        return shape_from_config(known[1], f"{known[0]} (shipped table)")
    if name.startswith((".", "/", "~")):
        where = "" if spec_dir is not None else " (checks do not know the spec's folder, relative to which it is read)"
        return NotEstimated(f"local model folder {name!r} not found{where}")
    return NotEstimated(f"hub model {hub!r} is not in the shipped table (compiler/memory.py KNOWN_MODELS) and "
                        "the compiler reads no network; point model.path at a local copy to estimate it")


def _local_shape(folder: Path, name: str) -> Shape | NotEstimated:
    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return NotEstimated(f"{name}/config.json could not be read ({exc})")
    return shape_from_config(cfg, f"{name}/config.json")


# ------------------------------------------------------------------------------------------
# estimates
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """GiB per GPU. `parts` add up to `total`; `details` are the numbers behind them."""

    gpu_mem_gb: float
    parts: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    offloaded: dict[str, float] = field(default_factory=dict)  # GiB per rank moved to host memory
    sleep_frees: float | None = None  # what the engine's sleep mode frees during training (train jobs)
    problems: tuple[str, ...] = ()  # reasons it cannot start even when the total fits
    sleep_mode: bool = False  # the total is the peak of a job whose engine sleeps while it trains
    with_sleep_mode: float | None = None  # the total with sleep mode on (train jobs)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_mem_gb and not self.problems

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"estimated": True, "per_gpu_gib": _r(self.total), "gpu_mem_gb": self.gpu_mem_gb,
                               "fits": self.fits, "parts_gib": {k: _r(v) for k, v in self.parts.items()},
                               "details": self.details, "problems": list(self.problems)}
        if self.offloaded:
            out["offloaded_to_host_gib"] = {k: _r(v) for k, v in self.offloaded.items()}
        if self.sleep_frees is not None:
            out["sleep_mode"] = self.sleep_mode
            out["sleep_mode_would_free_gib"] = _r(self.sleep_frees)
            out["per_gpu_with_sleep_mode_gib"] = _r(self.total if self.with_sleep_mode is None else self.with_sleep_mode)
        return out


def _r(x: float) -> float:
    return round(x, 2)


@dataclass(frozen=True)
class EngineInputs:
    """What a rollout engine's memory depends on (spec: `rollout`, the model, the job's lengths)."""

    shape: Shape
    dtype: str
    engine: str  # "vllm" or "hf"
    gpu_mem_gb: float
    gpu_memory_utilization: float
    tensor_parallel_size: int
    kv_cache_memory_bytes: int | None
    max_num_seqs: int
    hf_batch_size: int
    max_context: int  # the engine's max_model_len
    sequence_tokens: int  # the job's max prompt + max response
    # inference jobs (`inference.<kind>`); a train stage's colocated engine has neither
    pipeline_parallel_size: int = 1
    quantization: str | None = None  # vLLM `quantization`; None: the checkpoint's own (Shape.saved_weight_bytes)


def lora_targets(s: Shape) -> dict[str, tuple[int, int]]:
    """The linear layers of one dense decoder layer that LoRA can target: name -> (in, out) features."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    return {"q_proj": (s.hidden, q), "k_proj": (s.hidden, kv), "v_proj": (s.hidden, kv), "o_proj": (q, s.hidden),
            "gate_proj": (s.hidden, s.intermediate), "up_proj": (s.hidden, s.intermediate),
            "down_proj": (s.intermediate, s.hidden)}


@dataclass(frozen=True)
class LoraShape:
    """What `model.lora` changes in a train job's memory: per decoder layer, every targeted linear
    layer (in, out) gets A (rank x in) and B (out x rank), the only parameters that train."""

    rank: int
    dropout: bool  # lora_dropout > 0: the dropped input is saved for A's backward
    modules: tuple[tuple[int, int], ...]  # (in, out) of each targeted linear layer of one decoder layer

    def params(self, layers: int) -> int:
        return layers * sum(self.rank * (i + o) for i, o in self.modules)

    def bytes_per_token(self, b: int) -> int:
        """Saved per token per decoder layer on top of the full-fine-tuning count: A's output (rank
        values) for B's backward, and with dropout its output and mask (A's input otherwise is the
        layer input, already counted)."""
        return sum(self.rank * b + (i * (b + 1) if self.dropout else 0) for i, _ in self.modules)


@dataclass(frozen=True)
class TrainInputs:
    """What a train job's memory per GPU depends on; the engine is colocated in the same process."""

    engine: EngineInputs
    micro_batch_size: int
    checkpointing: bool
    max_tokens_per_micro_batch: int | None  # the token budget (`algorithm.max_tokens_per_micro_batch`)
    packed: bool  # `algorithm.pack_sequences`: one padding-free row per micro-batch
    logprob_chunk_tokens: int
    reference_model: bool
    zero_stage: int
    offload_optimizer: bool
    offload_params: bool
    ranks: int
    lora: LoraShape | None = None  # `model.lora` (None: every weight trains)
    sleep_mode: bool = False  # `rollout.sleep_mode`: the engine frees its weights (and KV cache) while training


def _bytes_to_gib(n: float) -> float:
    return n / GIB


def engine_estimate(e: EngineInputs) -> Estimate:
    """A filter or bench job: one rollout engine per GPU (no trainer)."""
    parts, details, problems = _engine_parts(e)
    return Estimate(e.gpu_mem_gb, {"cuda_context": CUDA_CONTEXT_GIB, **parts}, details, problems=problems)


def _engine_parts(e: EngineInputs) -> tuple[dict[str, float], dict[str, Any], tuple[str, ...]]:
    if e.engine == "hf":
        return _hf_engine_parts(e)
    return _vllm_parts(e)


def _kv_bytes_per_token(e: EngineInputs) -> int:
    """KV-cache bytes per token on one GPU: the layers of its pipeline stage (the largest stage), each
    K and V of its share of the KV heads, or (latent attention) one latent vector, which every
    tensor-parallel rank holds whole."""
    s = e.shape
    layers = math.ceil(s.layers / e.pipeline_parallel_size)
    if s.kv_latent is not None:
        return layers * s.kv_latent * DTYPE_BYTES[e.dtype]
    kv_heads = max(1, s.kv_heads // e.tensor_parallel_size)  # fewer KV heads than GPUs: vLLM replicates
    return 2 * layers * kv_heads * s.head_dim * DTYPE_BYTES[e.dtype]


def weight_bytes(shape: Shape, dtype: str, quantization: str | None) -> float:
    """Bytes of all weights: quantized linear layers at `quantization`'s width (or the checkpoint's
    saved one), embeddings and output head in the dtype."""
    b = DTYPE_BYTES[dtype]
    per = QUANT_BYTES.get(quantization, b) if quantization is not None else (shape.saved_weight_bytes or b)
    return (shape.params - shape.embedding_params) * per + shape.embedding_params * b


def _vllm_parts(e: EngineInputs) -> tuple[dict[str, float], dict[str, Any], tuple[str, ...]]:
    """vLLM takes `gpu_memory_utilization` x the GPU at start-up (or weights + reserve + the KV cache
    it was given in bytes): its weights, the peak of one profiling batch, and a KV cache of the rest."""
    s, b, tp = e.shape, DTYPE_BYTES[e.dtype], e.tensor_parallel_size
    weights = _bytes_to_gib(weight_bytes(s, e.dtype, e.quantization) / (tp * e.pipeline_parallel_size))
    tokens = VLLM_BATCHED_TOKENS[0] if e.gpu_mem_gb >= 70 else VLLM_BATCHED_TOKENS[1]
    # profiling peak: one layer's gate/up/act outputs for the batch, and the sampler's fp32 logits
    # (+ probabilities and log-probs) for max_num_seqs sequences
    reserve = _bytes_to_gib(tokens * 3 * s.intermediate * b / tp + e.max_num_seqs * s.vocab * 4 * 3)
    if e.kv_cache_memory_bytes is not None:
        kv = _bytes_to_gib(e.kv_cache_memory_bytes)
        reserved = weights + reserve + kv
    else:
        reserved = e.gpu_memory_utilization * e.gpu_mem_gb
        kv = reserved - weights - reserve
    per_token = _kv_bytes_per_token(e)
    capacity = max(0, int(kv * GIB // per_token))
    details = {"engine": "vllm", "weights_gib": _r(weights), "profiling_reserve_gib": _r(reserve),
               "kv_cache_gib": _r(kv), "kv_bytes_per_token": per_token, "kv_tokens": capacity,
               "max_model_len": e.max_context, "sequence_tokens": e.sequence_tokens,
               "full_length_sequences_at_once": min(e.max_num_seqs, capacity // e.sequence_tokens),
               "max_num_seqs": e.max_num_seqs,
               "kv_gib_for_max_num_seqs": _r(_bytes_to_gib(e.max_num_seqs * e.sequence_tokens * per_token))}
    problems = []
    if kv <= 0:
        problems.append(f"vLLM's share ({_r(reserved)} GiB) is smaller than its weights ({_r(weights)}) plus its "
                        f"profiling reserve ({_r(reserve)}): no room for a KV cache")
    elif capacity < e.max_context:
        need = _bytes_to_gib(e.max_context * per_token)
        problems.append(f"vLLM refuses to start: its KV cache ({_r(kv)} GiB, {capacity:,} tokens) cannot hold one "
                        f"sequence of max_model_len = {e.max_context:,} tokens ({_r(need)} GiB)")
    return {"rollout_engine": reserved}, details, tuple(problems)


def _hf_engine_parts(e: EngineInputs) -> tuple[dict[str, float], dict[str, Any], tuple[str, ...]]:
    """transformers `generate`: a private weights copy, the KV cache of one batch, its last logits."""
    weights = _bytes_to_gib(e.shape.params * DTYPE_BYTES[e.dtype])
    kv, logits = _hf_generation(e)
    details = {"engine": "hf", "weights_gib": _r(weights), "kv_cache_gib": _r(kv), "logits_gib": _r(logits),
               "batch_size": e.hf_batch_size, "sequence_tokens": e.sequence_tokens}
    return {"rollout_engine": weights + kv + logits}, details, ()


def _hf_generation(e: EngineInputs) -> tuple[float, float]:
    """GiB of one `generate` batch: its KV cache at full length, and fp32 logits (+ probabilities)."""
    kv = _bytes_to_gib(e.hf_batch_size * e.sequence_tokens * _kv_bytes_per_token(e))
    return kv, _bytes_to_gib(e.hf_batch_size * e.shape.vocab * 4 * 2)


def train_estimate(t: TrainInputs) -> Estimate:
    """Peak per GPU of a train job: what stays resident (engine, weights, gradients, optimizer,
    DeepSpeed buffers, reference), the activations a micro-batch saves for its backward, and the
    largest transient that comes on top of them (see docs/memory.md)."""
    e, s = t.engine, t.engine.shape
    engine, engine_details, problems = _engine_parts(e)
    states, offloaded = _model_states(t)
    saved, act_details = _activations(t)
    transient, transient_details = _transient(t)
    resident = _colocated_engine(engine, e)["rollout_engine"]
    # what sleep mode frees while training: vLLM's weights and KV cache (level 2; its profiling
    # reserve and CUDA graphs stay), the hf engine's weights copy
    frees = engine_details["weights_gib"] + engine_details["kv_cache_gib"] if e.engine == "vllm" else resident
    parts = {"cuda_context": CUDA_CONTEXT_GIB, "rollout_engine": resident, **states, **saved, "transient": transient}
    if t.reference_model:  # full copy in the job's dtype on every GPU (trainer: `.to(device)`)
        parts["reference_model"] = _bytes_to_gib(s.params * DTYPE_BYTES[e.dtype])
    details = {"rollout": engine_details, **act_details, **transient_details, "params": s.params,
               "trainable_params": s.params if t.lora is None else t.lora.params(s.layers), "model": s.source}
    if t.zero_stage == 3:
        problems += _zero3_start(t, {**parts, "rollout_engine": resident}, details)
    phases = _phases(parts, resident, frees)
    peak = max(phases, key=lambda name: sum(phases[name].values()))
    with_sleep = sum(phases[peak].values())
    if t.sleep_mode:
        details["sleep_mode"] = {"peak_phase": peak, "engine_asleep_gib": _r(resident - frees),
                                 **{f"{name}_gib": _r(sum(p.values())) for name, p in phases.items()}}
        return Estimate(e.gpu_mem_gb, phases[peak], details, offloaded, frees, problems, True, with_sleep)
    return Estimate(e.gpu_mem_gb, parts, details, offloaded, frees, problems, False, with_sleep)


def _phases(parts: dict[str, float], resident: float, frees: float) -> dict[str, dict[str, float]]:
    """The parts of the two phases of a step whose engine sleeps while the trainer trains: generation
    (the engine's whole share beside the model states, no activations) and training (what the engine
    keeps asleep beside the activations and transients). The peak is the larger one."""
    states = {k: v for k, v in parts.items() if k not in ("activations", "transient")}
    return {"generation": states,
            "training": {**parts, "rollout_engine": resident - frees}}


def _zero3_start(t: TrainInputs, parts: dict[str, float], details: dict[str, Any]) -> tuple[str, ...]:
    """The start-up peak under ZeRO-3, after the engine has taken its share. Without LoRA the trainer
    loads the policy under `deepspeed.zero.Init` (runtime/grpo/trainer.py `_partitioned_load`): each
    parameter is partitioned as it is created, so a GPU holds its 1/N share plus the module being
    built. With LoRA the model is loaded whole, and DeepSpeed casts it to 16 bits and moves all of it
    to each GPU before partitioning it."""
    s, b = t.engine.shape, DTYPE_BYTES[t.engine.dtype]
    whole = t.lora is not None
    model = _bytes_to_gib(s.params * b if whole else s.params * b / t.ranks + max(s.largest_module, 1) * b)
    start = parts["cuda_context"] + parts["rollout_engine"] + parts.get("reference_model", 0.0) + model
    details["zero3_start_gib"] = _r(start)
    if start <= t.engine.gpu_mem_gb:
        return ()
    how = ("DeepSpeed moves the whole 16-bit model ({} GiB) to each GPU before ZeRO-3 partitions it (LoRA: the "
           "model is loaded whole)" if whole else "each GPU builds its ZeRO-3 share of the model plus one module "
           "({} GiB)").format(_r(model))
    return (f"at start-up {how}: {_r(start)} GiB with the engine's share",)


def _colocated_engine(engine: dict[str, float], e: EngineInputs) -> dict[str, float]:
    """The hf engine's KV cache and logits exist only while it generates, when no training
    activations do: they count in `transient`, only its weights copy stays resident."""
    if e.engine == "hf":
        return {"rollout_engine": _bytes_to_gib(e.shape.params * DTYPE_BYTES[e.dtype])}
    return engine


def _model_states(t: TrainInputs) -> tuple[dict[str, float], dict[str, float]]:
    """16-bit weights and gradients plus fp32 AdamW states (master copy + 2 moments = 12 bytes a
    parameter; 8 when the weights are fp32 already), partitioned by ZeRO stage: 1 shards the
    optimizer over the ranks, 2 also the gradients, 3 also the weights. Offloaded states live in
    host memory and count 0 here. LoRA: gradients and optimizer states are the adapter's only; the
    frozen base weights and the adapter are resident."""
    p, b, n, z = t.engine.shape.params, DTYPE_BYTES[t.engine.dtype], t.ranks, t.zero_stage
    opt_bytes = 8 if t.engine.dtype == "float32" else 12
    trained = p if t.lora is None else t.lora.params(t.engine.shape.layers)
    resident = p if t.lora is None else p + trained
    weights = resident * b / (n if z >= 3 else 1)
    grads = trained * b / (n if z >= 2 else 1)
    optimizer = trained * opt_bytes / (n if z >= 1 else 1)
    offloaded = {}
    if t.offload_optimizer and z >= 1:
        offloaded["optimizer"] = _bytes_to_gib(optimizer)
        optimizer = 0.0
    if t.offload_params and z == 3:
        offloaded["weights"] = _bytes_to_gib(weights)
        weights = 0.0
    states = {"weights": _bytes_to_gib(weights), "gradients": _bytes_to_gib(grads),
              "optimizer": _bytes_to_gib(optimizer)}
    if z >= 1:  # one gradient-reduce bucket; ZeRO-3 also holds the gathered module and its prefetch
        buffers = min(REDUCE_BUCKET, trained) * b
        if z == 3:
            buffers += (t.engine.shape.largest_module + min(PREFETCH_BUCKET, resident)) * b
        states["zero_buffers"] = _bytes_to_gib(buffers)
    return states, offloaded


def layer_bytes_per_token(s: Shape, dtype: str) -> int:
    """Bytes one decoder layer saves for its backward, per token, with the trainer's attention
    (`runtime/grpo/attention.py`: causal SDPA per sequence, no (heads x seq x seq) scores, K and V at
    the KV heads' size in every layout). Two RMSNorms: their fp32 upcast of the input and the
    normalised tensor before and after the weight; attention: Q, K, V, its output and the output
    projection's input; SwiGLU: gate, SiLU(gate), up and their product."""
    b = DTYPE_BYTES[dtype]
    q = s.heads * s.head_dim
    kv = s.kv_heads * s.head_dim
    norms = 2 * (4 + 2 * b) * s.hidden
    return norms + b * (3 * q + 2 * kv) + 4 * b * s.intermediate


def micro_batch_tokens(t: TrainInputs) -> int:
    """Tokens in the forward of the largest micro-batch. Without a budget: `micro_batch_size` padded
    sequences of max prompt + max response tokens. With a budget B: at most B tokens (padded width x
    count, or the packed sum), never more than the fixed count would hold. No attention mask is built
    beyond the (count x width) padding booleans: the trainer's attention finds sequence boundaries
    itself (runtime/grpo/attention.py), so packing costs no (N x N) mask either."""
    seq = t.engine.sequence_tokens
    tokens = t.micro_batch_size * seq
    if t.max_tokens_per_micro_batch is not None:
        tokens = max(seq, min(tokens, t.max_tokens_per_micro_batch))
    return tokens


def _activations(t: TrainInputs) -> tuple[dict[str, float], dict[str, Any]]:
    """Saved for the backward of the largest micro-batch (`micro_batch_tokens`): every layer's
    activations, or with gradient checkpointing only every layer's input; the final norm and the
    response hidden states."""
    e, s = t.engine, t.engine.shape
    b = DTYPE_BYTES[e.dtype]
    tokens = micro_batch_tokens(t)
    per_layer = s.hidden * b if t.checkpointing else _layer_bytes(t)
    saved = {"activations": _bytes_to_gib(s.layers * tokens * per_layer + tokens * s.hidden * (4 + 3 * b))}
    details = {"micro_batch_tokens": tokens, "gradient_checkpointing": t.checkpointing,
               "packed": t.packed, "token_budget": t.max_tokens_per_micro_batch}
    return saved, details


def _layer_bytes(t: TrainInputs) -> int:
    """One decoder layer's saved bytes per token, with the adapters' own (an upper bound under LoRA:
    a frozen, untargeted linear layer needs no saved input, which the full-fine-tuning count has)."""
    b = DTYPE_BYTES[t.engine.dtype]
    extra = t.lora.bytes_per_token(b) if t.lora is not None else 0
    return layer_bytes_per_token(t.engine.shape, t.engine.dtype) + extra


def _transient(t: TrainInputs) -> tuple[float, dict[str, Any]]:
    """The largest of what exists only for a moment, on top of the saved activations: one
    log-prob chunk's fp32 logits being recomputed and differentiated, one checkpointed layer
    being recomputed, or (hf engine) the generation's KV cache and logits."""
    e, s = t.engine, t.engine.shape
    chunk = _bytes_to_gib(t.logprob_chunk_tokens * s.vocab * 4 * LOGIT_COPIES)
    tokens = micro_batch_tokens(t)
    recompute = _bytes_to_gib(tokens * _layer_bytes(t)) if t.checkpointing else 0.0
    generation = sum(_hf_generation(e)) if e.engine == "hf" else 0.0
    # ZeRO-3 weight push (runtime/grpo/weightsync.py): one bucket gathered and its copy, at most
    # max(bucket, largest parameter) each; below ZeRO-3 the parameters go out as views
    largest = max(s.largest_module, 1) * DTYPE_BYTES[e.dtype]
    sync = _bytes_to_gib(2 * max(WEIGHT_SYNC_BUCKET, largest)) if t.zero_stage == 3 else 0.0
    if t.lora is not None and t.zero_stage < 3:  # one merged weight at a time: W and B·A in fp32, the result
        sync = _bytes_to_gib(max(i * o for i, o in t.lora.modules) * (8 + DTYPE_BYTES[e.dtype]))
    details = {"logprob_chunk_gib": _r(chunk), "layer_recompute_gib": _r(recompute), "weight_sync_gib": _r(sync)}
    if e.engine == "hf":
        details["generation_gib"] = _r(generation)
    return max(chunk, recompute, generation, sync), details


# ------------------------------------------------------------------------------------------
# from a spec
# ------------------------------------------------------------------------------------------


def checkpointing_on(stage: Stage, resources: JobResources) -> bool:
    """`algorithm.gradient_checkpointing`; null means on when the train job has GPUs."""
    flag = stage.algorithm.gradient_checkpointing
    return resources.gpus > 0 if flag is None else flag


def sleep_mode_on(stage: Stage, resources: JobResources) -> bool:
    """`rollout.sleep_mode`; null means on when the train job has GPUs (the runtime: where CUDA is)."""
    flag = stage.rollout.sleep_mode
    return resources.gpus > 0 if flag is None else flag


def _engine_inputs(spec: Spec, rollout, resources: JobResources, shape: Shape, response_tokens: int) -> EngineInputs:
    v = rollout.vllm
    return EngineInputs(shape=shape, dtype=spec.model.dtype, engine=rollout.engine, gpu_mem_gb=resources.gpu_mem_gb,
                        gpu_memory_utilization=v.gpu_memory_utilization, tensor_parallel_size=v.tensor_parallel_size,
                        kv_cache_memory_bytes=v.kv_cache_memory_bytes, max_num_seqs=v.max_num_seqs,
                        hf_batch_size=rollout.hf.batch_size,
                        max_context=engines.max_model_len(spec, rollout.max_prompt_tokens, response_tokens),
                        sequence_tokens=rollout.max_prompt_tokens + response_tokens)


def stage_train(spec: Spec, stage: Stage, ranks: int, spec_dir: Path | None) -> TrainInputs | NotEstimated:
    """The inputs of a stage's train job (`ranks`: checks.train_ranks)."""
    res = spec.resources.train
    if res.gpus == 0:
        return NotEstimated("runs on CPU (resources.train.gpus = 0)")
    shape = model_shape(spec.model, spec_dir)
    if isinstance(shape, NotEstimated):
        return shape
    alg, ds = stage.algorithm, spec.resources.deepspeed
    lora = lora_shape(spec.model.lora, shape)
    if isinstance(lora, NotEstimated):
        return lora
    # LoRA with the stage's input as KL reference: the policy with its adapter off, no second model
    adapter_off = lora is not None and alg.kl.reference == "stage_input"
    engine = _engine_inputs(spec, stage.rollout, res, shape, stage.max_response_tokens)
    return TrainInputs(engine=engine, micro_batch_size=alg.micro_batch_size, checkpointing=checkpointing_on(stage, res),
                       sleep_mode=sleep_mode_on(stage, res),
                       max_tokens_per_micro_batch=alg.max_tokens_per_micro_batch, packed=alg.pack_sequences,
                       logprob_chunk_tokens=alg.logprob_chunk_tokens, reference_model=alg.kl.coef > 0 and not adapter_off,
                       zero_stage=ds.zero_stage, offload_optimizer=ds.offload_optimizer,
                       offload_params=ds.offload_params, ranks=ranks, lora=lora)


def lora_shape(cfg: Lora | None, shape: Shape) -> LoraShape | NotEstimated | None:
    """`model.lora` on the model's shape; targets that are not a dense decoder's projections are not
    estimated (PEFT matches names, which this shape does not know)."""
    if cfg is None:
        return None
    dims = lora_targets(shape)
    last = [m.split(".")[-1] for m in cfg.target_modules]  # PEFT matches the end of a module's name
    unknown = [m for m, name in zip(cfg.target_modules, last) if name not in dims]
    if unknown:
        return NotEstimated(f"model.lora.target_modules {unknown}: the estimate knows a dense decoder's projections "
                            f"only ({', '.join(dims)})")
    return LoraShape(rank=cfg.rank, dropout=cfg.dropout > 0, modules=tuple(dims[name] for name in dict.fromkeys(last)))


@dataclass(frozen=True)
class InferenceJob:
    """One bench, filter or sample job of a spec as `rlspec check` and the plan see it: its engine
    block resolved as the plan resolves it (`compiler/engines.py`), its resources and lengths, and
    the spec paths a message points at."""

    kind: str  # bench, filter or sample
    what: str  # "the bench jobs of 'aime24'", for messages
    path: PathT  # the benchmark, stage filter or pass-rate filter
    block: InferenceEngine  # `inference.<kind>` with the job's `engine` over it, every default filled
    block_path: PathT  # the most specific engine block that writes the parallelism (or resources)
    engine_path: PathT  # the most specific one that writes the engine, quantization or TP/PP
    resources: JobResources
    resources_path: PathT
    response_tokens: int
    model: str | None  # a teacher (`pass_rate.policy`); None: the policy (the spec's model architecture)

    @property
    def max_model_len(self) -> int:
        assert self.block.max_model_len is not None  # `_inference_job` fills it
        return self.block.max_model_len


def inference_jobs(spec: Spec) -> list[InferenceJob]:
    """Every benchmark's bench jobs, every stage's filter job and every pass-rate filter's sample job
    (of a dataset some stage trains on: the others are not curated)."""
    jobs = [_inference_job(spec, "bench", f"the bench jobs of {name!r}", ("benchmarks", name), b.engine,
                           spec.resources.bench, None, b.sampling.max_response_tokens, None)
            for name, b in spec.benchmarks.items()]
    for i, stage in enumerate(spec.stages):
        f = stage.filter_before
        if f is not None:
            jobs.append(_inference_job(spec, "filter", f"the filter job before stage {stage.name!r}",
                                       ("stages", i, "filter_before"), f.engine, spec.resources.filter, None,
                                       f.max_response_tokens or stage.max_response_tokens, None))
    for name, ds in spec.datasets.items():
        first = next((s.max_response_tokens for s in spec.stages if name in s.datasets), None)
        for j, f in enumerate(ds.filters):
            if not isinstance(f, PassRateFilter) or (f.max_response_tokens or first) is None:
                continue
            who = "the initial model" if f.policy == "initial" else f.policy
            jobs.append(_inference_job(spec, "sample", f"the pass-rate samples of {who} on {name!r}",
                                       ("datasets", name, "filters", j), f.engine, f.resources or spec.resources.sample,
                                       ("datasets", name, "filters", j, "resources") if f.resources else None,
                                       f.max_response_tokens or first, None if f.policy == "initial" else f.policy))
    return jobs


PARALLEL_FIELDS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
ENGINE_FIELDS = ("engine", "quantization", "tensor_parallel_size", "pipeline_parallel_size")


def _inference_job(spec: Spec, kind: str, what: str, path: PathT, override: InferenceEngine | None,
                   res: JobResources, res_path: PathT | None, tokens: int, model: str | None) -> InferenceJob:
    block = engines.inference_block(spec, kind, override)
    length = engines.max_model_len(spec, spec.rollout.max_prompt_tokens, tokens, block)
    res_path = res_path or ("resources", kind)
    return InferenceJob(kind, what, path, block.model_copy(update={"max_model_len": length}),
                        _writer(spec, kind, path, override, PARALLEL_FIELDS, res_path),
                        _writer(spec, kind, path, override, ENGINE_FIELDS, ("inference", kind)), res, res_path,
                        tokens, model)


def _writer(spec: Spec, kind: str, path: PathT, override: InferenceEngine | None, fields: tuple[str, ...],
            fallback: PathT) -> PathT:
    """The most specific engine block that writes one of `fields`: the job's own, `inference.<kind>`, else `fallback`."""
    if override is not None and override.model_fields_set & set(fields):
        return (*path, "engine")
    if getattr(spec.inference, kind).model_fields_set & set(fields):
        return ("inference", kind)
    return fallback


def inference_inputs(spec: Spec, job: InferenceJob, spec_dir: Path | None) -> EngineInputs | WeightsOnly | NotEstimated:
    """The memory inputs of one replica of an inference job: the full estimate when the model's shape
    is known, a weights-only bound when only its parameter count is, else not estimated."""
    res, b = job.resources, job.block
    if res.gpus == 0:
        return NotEstimated(f"runs on CPU ({'.'.join(map(str, job.resources_path))}.gpus = 0)")
    shape = model_shape(spec.model, spec_dir) if job.model is None else named_shape(job.model, spec_dir)
    if isinstance(shape, NotEstimated):
        params = params_from_name(job.model) if job.model is not None else None
        if params is None:
            return shape
        return WeightsOnly(params, DTYPE_BYTES[b.dtype or spec.model.dtype], b.quantization,
                           engines.gpus_per_replica(b), res.gpu_mem_gb,
                           b.gpu_memory_utilization, f"{params / 1e9:g}B parameters read from the name {job.model!r}")
    assert b.engine and b.dtype and b.max_num_seqs and b.hf_batch_size  # inference_block fills them
    return EngineInputs(shape=shape, dtype=b.dtype, engine=b.engine, gpu_mem_gb=res.gpu_mem_gb,
                        gpu_memory_utilization=b.gpu_memory_utilization, tensor_parallel_size=b.tensor_parallel_size,
                        kv_cache_memory_bytes=b.kv_cache_memory_bytes, max_num_seqs=b.max_num_seqs,
                        hf_batch_size=b.hf_batch_size, max_context=job.max_model_len,
                        sequence_tokens=spec.rollout.max_prompt_tokens + job.response_tokens,
                        pipeline_parallel_size=b.pipeline_parallel_size, quantization=b.quantization)


def stage_filter(spec: Spec, stage: Stage, spec_dir: Path | None) -> EngineInputs | WeightsOnly | NotEstimated:
    """The inputs of a stage's hard-prompt filter job (`inference.filter` + its `engine`)."""
    path = ("stages", next(i for i, s in enumerate(spec.stages) if s.name == stage.name), "filter_before")
    job = next(j for j in inference_jobs(spec) if j.path == path)
    return inference_inputs(spec, job, spec_dir)


def benchmark_engine(spec: Spec, name: str, spec_dir: Path | None) -> EngineInputs | WeightsOnly | NotEstimated:
    """The inputs of a benchmark's bench jobs (`inference.bench` + its `engine`)."""
    job = next(j for j in inference_jobs(spec) if j.kind == "bench" and j.path == ("benchmarks", name))
    return inference_inputs(spec, job, spec_dir)


def sample_engine(spec: Spec, config: Any, teacher: str | None, spec_dir: Path | None):
    """The inputs of a compiled `sample` job (`config`: its SampleJob; `teacher`: its teacher as the
    spec or its model job names it, `hf://org/name` or `org/name`, None when it samples the initial
    model): the first pass-rate filter of the spec whose job has that model, length and engine (the
    plan shares one job among all of them)."""
    for job in inference_jobs(spec):
        if job.kind != "sample" or _hub(job.model) != _hub(teacher) or \
                job.response_tokens != config.sampling.max_response_tokens:
            continue
        if engines.inference_engine(spec, job.block) == config.inference.rollout:
            return inference_inputs(spec, job, spec_dir)
    return NotEstimated("no pass-rate filter of the spec matches this sample job")


def _hub(name: str | None) -> str | None:
    """`hf://org/name@rev` -> `org/name`; a folder or None as it is."""
    if name is None or not uris.is_hf(name):
        return name
    try:
        return uris.parse_model(name).name
    except uris.UriError:
        return name


def params_from_name(name: str) -> int | None:
    """A parameter count a model's name states (`Llama-3.1-70B-Instruct` -> 70e9; `Qwen3-235B-A22B`
    -> 235e9, the total): only for a weights-only bound. `8x7B` style names state no total."""
    found = re.search(r"(?<![\dx.])(\d+(?:\.\d+)?)[Bb](?![A-Za-z0-9])", name.rstrip("/").split("/")[-1].split("@")[0])
    return int(float(found[1]) * 1e9) if found else None


@dataclass(frozen=True)
class WeightsOnly:
    """A model whose shape is unknown but whose parameter count is: its weights split over one
    replica's GPUs against vLLM's share of a GPU (KV cache and activations not counted: a lower bound)."""

    params: int
    dtype_bytes: int
    quantization: str | None
    gpus: int
    gpu_mem_gb: float
    gpu_memory_utilization: float
    source: str


def weights_only_estimate(w: WeightsOnly) -> Estimate:
    per = QUANT_BYTES.get(w.quantization, w.dtype_bytes) if w.quantization else w.dtype_bytes
    weights = _bytes_to_gib(w.params * per / w.gpus)
    share = w.gpu_memory_utilization * w.gpu_mem_gb
    problems = () if weights < share else (
        f"its weights alone ({_r(weights)} GiB per GPU over {w.gpus} GPUs, {w.source}) exceed vLLM's share "
        f"({_r(share)} GiB = gpu_memory_utilization {w.gpu_memory_utilization} x {w.gpu_mem_gb:g})",)
    return Estimate(w.gpu_mem_gb, {"cuda_context": CUDA_CONTEXT_GIB, "weights": weights},
                    {"bound": "weights only (KV cache and activations not counted)", "source": w.source,
                     "gpus_per_replica": w.gpus}, problems=problems)


def estimate(inputs: TrainInputs | EngineInputs | WeightsOnly | NotEstimated) -> Estimate | NotEstimated:
    if isinstance(inputs, TrainInputs):
        return train_estimate(inputs)
    if isinstance(inputs, EngineInputs):
        return engine_estimate(inputs)
    if isinstance(inputs, WeightsOnly):
        return weights_only_estimate(inputs)
    return inputs


# ------------------------------------------------------------------------------------------
# what to change
# ------------------------------------------------------------------------------------------


def remedies(inputs: TrainInputs | EngineInputs) -> list[str]:
    """Settings that would lower the estimate, each with the total it gives (most effective first)."""
    if isinstance(inputs, EngineInputs):
        return _engine_remedies(inputs, colocated=False)
    t, found = inputs, []
    seq = t.engine.sequence_tokens
    if t.micro_batch_size > 1 and (t.max_tokens_per_micro_batch or 2 * seq) > seq:
        # a budget of one full-length sequence bounds memory like one sequence per micro-batch, and
        # still groups short responses (micro_batch_size stays the cap)
        found.append((f"algorithm.max_tokens_per_micro_batch: {seq}",
                      dataclasses.replace(t, max_tokens_per_micro_batch=seq)))
        found.append(("algorithm.micro_batch_size: 1", dataclasses.replace(t, micro_batch_size=1)))
    if not t.checkpointing:
        found.append(("algorithm.gradient_checkpointing: true", dataclasses.replace(t, checkpointing=True)))
    if t.zero_stage < 3 and t.ranks > 1:
        found.append(("resources.deepspeed.zero_stage: 3", dataclasses.replace(t, zero_stage=3)))
    if not t.offload_optimizer:
        also = " (with zero_stage: 1)" if t.zero_stage == 0 else ""
        found.append((f"resources.deepspeed.offload_optimizer: true{also}",
                      dataclasses.replace(t, offload_optimizer=True, zero_stage=max(t.zero_stage, 1))))
    if t.logprob_chunk_tokens > 256:
        found.append(("algorithm.logprob_chunk_tokens: 256", dataclasses.replace(t, logprob_chunk_tokens=256)))
    if not t.sleep_mode:
        found.append(("rollout.sleep_mode: true", dataclasses.replace(t, sleep_mode=True)))
    results = sorted(((train_estimate(changed), what) for what, changed in found), key=lambda r: r[0].total)
    rollout = train_estimate(t).details["rollout"]
    short = rollout["engine"] == "vllm" and rollout["kv_tokens"] < rollout["max_model_len"]
    kv = _engine_remedies(t.engine, colocated=True) if short else []
    return kv + [f"{what} -> {_r(est.total)} GiB{_verdict(est)}" for est, what in results] + _utilization_remedy(t)


def inference_remedies(job: InferenceJob, inputs: EngineInputs | WeightsOnly | NotEstimated) -> list[str]:
    """For an inference job that does not fit: the keys of its engine block (its own `engine`, else
    `inference.<kind>`) that would, each with the estimate after the change. More GPUs per replica
    keep the job's GPUs: DP = GPUs / (TP x PP) falls with them."""
    if isinstance(inputs, NotEstimated):
        return []
    where = ".".join(map(str, job.path)) + ".engine" if job.block_path[-1] == "engine" else f"inference.{job.kind}"
    per_node = job.resources.gpus
    found: list[tuple[str, Any]] = []
    if isinstance(inputs, WeightsOnly):
        if _placeable(inputs.gpus * 2, job.resources):
            found.append((f"{where}.pipeline_parallel_size: {2 * job.block.pipeline_parallel_size}",
                          dataclasses.replace(inputs, gpus=inputs.gpus * 2)))
        return [f"{what} -> weights {_r(weights_only_estimate(w).parts['weights'])} GiB per GPU" for what, w in found]
    e = inputs
    if e.engine == "hf":
        half = dataclasses.replace(e, hf_batch_size=max(1, e.hf_batch_size // 2))
        return [f"{where}.hf_batch_size: {half.hf_batch_size} -> {_r(engine_estimate(half).total)} GiB"]
    tp, pp = e.tensor_parallel_size, e.pipeline_parallel_size
    if _placeable(tp * 2 * pp, job.resources) and tp * 2 <= per_node:
        found.append((f"{where}.tensor_parallel_size: {2 * tp}", dataclasses.replace(e, tensor_parallel_size=2 * tp)))
    elif _placeable(tp * pp * 2, job.resources):
        found.append((f"{where}.pipeline_parallel_size: {2 * pp}", dataclasses.replace(e, pipeline_parallel_size=2 * pp)))
    if e.gpu_memory_utilization < 0.9:
        found.append((f"{where}.gpu_memory_utilization: 0.9", dataclasses.replace(e, gpu_memory_utilization=0.9)))
    if e.quantization is None and e.shape.saved_weight_bytes is None and DTYPE_BYTES[e.dtype] > 1:
        found.append((f"{where}.quantization: fp8", dataclasses.replace(e, quantization="fp8")))
    out = [f"{what} -> {_verdict(engine_estimate(changed)).strip(' ()') or 'fits'} (KV cache "
           f"{engine_estimate(changed).details['kv_cache_gib']} GiB)" for what, changed in found]
    if e.max_context > e.sequence_tokens:
        out.append(f"{where}.max_model_len: {e.sequence_tokens} (the job's prompt + response budget; now "
                   f"{e.max_context:,})")
    return out


def _placeable(replica: int, res: JobResources) -> bool:
    """A replica of this many GPUs divides a node or is whole nodes, within the job's GPUs."""
    g = res.gpus
    return replica <= g * res.nodes and (g % replica == 0 if replica <= g else replica % g == 0)


def _verdict(est: Estimate) -> str:
    return " (fits)" if est.fits else " (still too much)" if est.total > est.gpu_mem_gb else " (still cannot start)"


def _utilization_remedy(t: TrainInputs) -> list[str]:
    """The largest vLLM share under which the rest of the job fits, if its KV cache still holds a sequence."""
    e = t.engine
    if e.engine != "vllm" or e.kv_cache_memory_bytes is not None:
        return []
    now = train_estimate(t)
    share = e.gpu_memory_utilization * e.gpu_mem_gb
    rest = max(now.total, now.details.get("zero3_start_gib", 0.0)) - share  # what is not the engine's
    util = math.floor((e.gpu_mem_gb - rest) / e.gpu_mem_gb * 100) / 100
    if util <= 0 or util >= e.gpu_memory_utilization:
        return []
    changed = dataclasses.replace(t, engine=dataclasses.replace(e, gpu_memory_utilization=util))
    est = train_estimate(changed)
    if est.problems:
        return [f"rollout.vllm.gpu_memory_utilization: {util} is the most that leaves room, but then vLLM's KV "
                f"cache cannot hold one sequence of max_model_len {e.max_context:,}"]
    seqs = est.details["rollout"]["full_length_sequences_at_once"]
    return [f"rollout.vllm.gpu_memory_utilization: {util} -> {_r(est.total)} GiB{_verdict(est)}, a KV cache "
            f"for {seqs} full-length sequences at once"]


def _engine_remedies(e: EngineInputs, *, colocated: bool) -> list[str]:
    """For an engine that does not start: a smaller max_model_len, a larger share (not beside a
    trainer, which needs the rest), more GPUs per engine; for the hf engine a smaller batch."""
    if e.engine == "hf":
        half = dataclasses.replace(e, hf_batch_size=max(1, e.hf_batch_size // 2))
        return [f"rollout.hf.batch_size: {half.hf_batch_size} -> {_r(engine_estimate(half).total)} GiB"]
    out = [f"model.max_context to the longest prompt + response of any stage or benchmark (this job's: "
           f"{e.sequence_tokens:,}; it is vLLM's max_model_len, now {e.max_context:,})"]
    if e.engine == "vllm" and e.gpu_memory_utilization < 0.9 and not colocated:
        better = engine_estimate(dataclasses.replace(e, gpu_memory_utilization=0.9))
        out.append(f"rollout.vllm.gpu_memory_utilization: 0.9 -> KV cache {better.details['kv_cache_gib']} GiB")
    if e.tensor_parallel_size == 1:
        out.append("rollout.vllm.tensor_parallel_size: 2 (weights and KV cache split over 2 GPUs)")
    return out


def describe(est: Estimate) -> str:
    """`rollout_engine 56.0 + activations 13.2 + ...`, largest parts first, zeros left out."""
    parts = sorted(((k, v) for k, v in est.parts.items() if v >= 0.005), key=lambda kv: -kv[1])
    return " + ".join(f"{k} {v:.1f}" for k, v in parts)
