"""GPU memory per GPU of every train, filter and bench job, estimated before launch.

What: `train_estimate(TrainInputs)` and `engine_estimate(EngineInputs)` return an `Estimate` per GPU in
GiB, split into named parts (weights, gradients, optimizer states, activations, the log-prob chunk,
the rollout engine, ...), with what went to host memory and what vLLM's sleep mode would free.
`stage_train` / `stage_filter` / `benchmark_engine` build those inputs from a validated spec; the
plan (`rlspec plan`) shows the estimates and the checks (`rlspec check`) refuse a job whose estimate
exceeds `resources.<kind>.gpu_mem_gb`, listing what would make it fit (`remedies`).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import uris
from .spec import JobResources, Lora, ModelSpec, Spec, Stage

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
    "meta-llama/Llama-3.1-8B": dict(
        model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
}
_KNOWN_BY_LOWER = {name.lower(): (name, cfg) for name, cfg in KNOWN_MODELS.items()}
DENSE_TYPES = ("qwen2", "llama", "mistral", "qwen3")


def shape_from_config(cfg: dict[str, Any], source: str) -> Shape | NotEstimated:
    """A dense decoder's shape and exact parameter count from its HF config.json fields."""
    kind = cfg.get("model_type")
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
    sleep_frees: float | None = None  # what vLLM's sleep mode (level 1) would free during training
    problems: tuple[str, ...] = ()  # reasons it cannot start even when the total fits

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
            out["sleep_mode_would_free_gib"] = _r(self.sleep_frees)
            out["per_gpu_with_sleep_mode_gib"] = _r(self.total - self.sleep_frees)
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
    s = e.shape
    kv_heads = max(1, s.kv_heads // e.tensor_parallel_size)  # fewer KV heads than GPUs: vLLM replicates
    return 2 * s.layers * kv_heads * s.head_dim * DTYPE_BYTES[e.dtype]


def _vllm_parts(e: EngineInputs) -> tuple[dict[str, float], dict[str, Any], tuple[str, ...]]:
    """vLLM takes `gpu_memory_utilization` x the GPU at start-up (or weights + reserve + the KV cache
    it was given in bytes): its weights, the peak of one profiling batch, and a KV cache of the rest."""
    s, b, tp = e.shape, DTYPE_BYTES[e.dtype], e.tensor_parallel_size
    weights = _bytes_to_gib(s.params * b / tp)
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
                        f"sequence of max_model_len = model.max_context = {e.max_context:,} tokens ({_r(need)} GiB)")
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
    parts = {"cuda_context": CUDA_CONTEXT_GIB, **_colocated_engine(engine, e), **states, **saved,
             "transient": transient}
    if t.reference_model:  # full copy in the job's dtype on every GPU (trainer: `.to(device)`)
        parts["reference_model"] = _bytes_to_gib(s.params * DTYPE_BYTES[e.dtype])
    details = {"rollout": engine_details, **act_details, **transient_details, "params": s.params,
               "trainable_params": s.params if t.lora is None else t.lora.params(s.layers), "model": s.source}
    if t.zero_stage == 3:
        problems += _zero3_start(t, parts, details)
    sleep = engine_details["weights_gib"] + engine_details["kv_cache_gib"] if e.engine == "vllm" else None
    return Estimate(e.gpu_mem_gb, parts, details, offloaded, sleep, problems)


def _zero3_start(t: TrainInputs, parts: dict[str, float], details: dict[str, Any]) -> tuple[str, ...]:
    """DeepSpeed casts the model to 16 bits and moves all of it to each GPU before ZeRO-3 partitions it
    (the trainer does not build it under `zero.Init`), after the engine has taken its share."""
    full = _bytes_to_gib(t.engine.shape.params * DTYPE_BYTES[t.engine.dtype])
    start = parts["cuda_context"] + parts["rollout_engine"] + parts.get("reference_model", 0.0) + full
    details["zero3_start_gib"] = _r(start)
    if start <= t.engine.gpu_mem_gb:
        return ()
    return (f"at start-up DeepSpeed moves the whole 16-bit model ({_r(full)} GiB) to each GPU before ZeRO-3 "
            f"partitions it: {_r(start)} GiB with the engine's share",)


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


def layer_bytes_per_token(s: Shape, dtype: str, *, masked: bool) -> int:
    """Bytes one decoder layer saves for its backward, per token, with SDPA/flash attention (no
    (heads x seq x seq) scores are stored). Two RMSNorms: their fp32 upcast of the input and the
    normalised tensor before and after the weight; attention: Q, K, V (expanded to all heads by
    `repeat_kv` when a padding mask is passed), its output and the output projection's input;
    SwiGLU: gate, SiLU(gate), up and their product."""
    b = DTYPE_BYTES[dtype]
    q = s.heads * s.head_dim
    kv = q if masked else s.kv_heads * s.head_dim
    norms = 2 * (4 + 2 * b) * s.hidden
    return norms + b * (3 * q + 2 * kv) + 4 * b * s.intermediate


def micro_batch_tokens(t: TrainInputs) -> tuple[int, bool, int]:
    """The largest micro-batch: (tokens in its forward, whether HF builds an attention mask, mask
    bytes). Without a budget: `micro_batch_size` padded sequences of max prompt + max response
    tokens. With a budget B: at most B tokens (padded width x count, or the packed sum), never more
    than the fixed count would hold. Padded: the mask is (count, 1, width, width) booleans, at most
    B x seq bytes. Packed: one row of N tokens whose block-diagonal mask is N x N booleans with
    SDPA (flash attention's varlen path needs none; the estimate assumes SDPA, the default)."""
    seq = t.engine.sequence_tokens
    tokens = t.micro_batch_size * seq
    if t.max_tokens_per_micro_batch is not None:
        tokens = max(seq, min(tokens, t.max_tokens_per_micro_batch))
    if t.micro_batch_size == 1:  # one sequence needs no padding, so HF passes no mask
        return tokens, False, 0
    return tokens, True, tokens * tokens if t.packed else tokens * seq


def _activations(t: TrainInputs) -> tuple[dict[str, float], dict[str, Any]]:
    """Saved for the backward of the largest micro-batch (`micro_batch_tokens`): every layer's
    activations, or with gradient checkpointing only every layer's input; the final norm and the
    response hidden states; the attention mask."""
    e, s = t.engine, t.engine.shape
    b = DTYPE_BYTES[e.dtype]
    tokens, masked, mask_bytes = micro_batch_tokens(t)
    per_layer = s.hidden * b if t.checkpointing else _layer_bytes(t, masked)
    saved = {"activations": _bytes_to_gib(s.layers * tokens * per_layer + tokens * s.hidden * (4 + 3 * b))}
    if masked:
        saved["attention_mask"] = _bytes_to_gib(mask_bytes)
    details = {"micro_batch_tokens": tokens, "gradient_checkpointing": t.checkpointing,
               "packed": t.packed, "token_budget": t.max_tokens_per_micro_batch}
    return saved, details


def _layer_bytes(t: TrainInputs, masked: bool) -> int:
    """One decoder layer's saved bytes per token, with the adapters' own (an upper bound under LoRA:
    a frozen, untargeted linear layer needs no saved input, which the full-fine-tuning count has)."""
    b = DTYPE_BYTES[t.engine.dtype]
    extra = t.lora.bytes_per_token(b) if t.lora is not None else 0
    return layer_bytes_per_token(t.engine.shape, t.engine.dtype, masked=masked) + extra


def _transient(t: TrainInputs) -> tuple[float, dict[str, Any]]:
    """The largest of what exists only for a moment, on top of the saved activations: one
    log-prob chunk's fp32 logits being recomputed and differentiated, one checkpointed layer
    being recomputed, or (hf engine) the generation's KV cache and logits."""
    e, s = t.engine, t.engine.shape
    chunk = _bytes_to_gib(t.logprob_chunk_tokens * s.vocab * 4 * LOGIT_COPIES)
    tokens, masked, _ = micro_batch_tokens(t)
    recompute = _bytes_to_gib(tokens * _layer_bytes(t, masked)) if t.checkpointing else 0.0
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


def _engine_inputs(spec: Spec, rollout, resources: JobResources, shape: Shape, response_tokens: int) -> EngineInputs:
    v = rollout.vllm
    return EngineInputs(shape=shape, dtype=spec.model.dtype, engine=rollout.engine, gpu_mem_gb=resources.gpu_mem_gb,
                        gpu_memory_utilization=v.gpu_memory_utilization, tensor_parallel_size=v.tensor_parallel_size,
                        kv_cache_memory_bytes=v.kv_cache_memory_bytes, max_num_seqs=v.max_num_seqs,
                        hf_batch_size=rollout.hf.batch_size, max_context=spec.model.max_context,
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


def stage_filter(spec: Spec, stage: Stage, spec_dir: Path | None) -> EngineInputs | NotEstimated:
    """The inputs of a stage's hard-prompt filter job (it samples with the stage's rollout settings)."""
    f = stage.filter_before
    assert f is not None
    tokens = f.max_response_tokens or stage.max_response_tokens
    return _engine_job(spec, stage.rollout, spec.resources.filter, "filter", tokens, spec_dir)


def benchmark_engine(spec: Spec, name: str, spec_dir: Path | None) -> EngineInputs | NotEstimated:
    """The inputs of a benchmark's bench jobs (top-level rollout settings, the benchmark's length)."""
    tokens = spec.benchmarks[name].sampling.max_response_tokens
    return _engine_job(spec, spec.rollout, spec.resources.bench, "bench", tokens, spec_dir)


def _engine_job(spec: Spec, rollout, res: JobResources, kind: str, tokens: int, spec_dir: Path | None):
    if res.gpus == 0:
        return NotEstimated(f"runs on CPU (resources.{kind}.gpus = 0)")
    shape = model_shape(spec.model, spec_dir)
    return shape if isinstance(shape, NotEstimated) else _engine_inputs(spec, rollout, res, shape, tokens)


def estimate(inputs: TrainInputs | EngineInputs | NotEstimated) -> Estimate | NotEstimated:
    if isinstance(inputs, TrainInputs):
        return train_estimate(inputs)
    if isinstance(inputs, EngineInputs):
        return engine_estimate(inputs)
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
    results = sorted(((train_estimate(changed), what) for what, changed in found), key=lambda r: r[0].total)
    rollout = train_estimate(t).details["rollout"]
    short = rollout["engine"] == "vllm" and rollout["kv_tokens"] < rollout["max_model_len"]
    kv = _engine_remedies(t.engine, colocated=True) if short else []
    return kv + [f"{what} -> {_r(est.total)} GiB{_verdict(est)}" for est, what in results] + _utilization_remedy(t)


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
