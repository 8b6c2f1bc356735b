"""Memory per GPU before launch (`compiler/memory.py`): the formula on hand-computed cases, model
shapes from every source, and what `rlspec check` / `rlspec plan` do with the estimates.

The measured side (real forward/backward passes against the estimate) is
tests/runtime/test_memory_estimate.py; the formulas are explained in docs/memory.md.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlspec.compiler import memory
from rlspec.compiler.cli import plan_data
from rlspec.compiler.errors import SpecError
from rlspec.compiler.plan import build_plan
from rlspec.compiler.validate import check_file

from conftest import MINI, SPECS

GIB = 2**30
SEVEN_B = SPECS / "acereason-nemotron-7b.yaml"

# A shape with round numbers, so every part below is arithmetic one can redo by hand.
SHAPE = memory.Shape(params=1_000_000_000, hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                     vocab=100_000, intermediate=16384, largest_module=409_600_000, source="test")


def engine(**kw) -> memory.EngineInputs:
    base = dict(shape=SHAPE, dtype="bfloat16", engine="vllm", gpu_mem_gb=80, gpu_memory_utilization=0.5,
                tensor_parallel_size=1, kv_cache_memory_bytes=None, max_num_seqs=256, hf_batch_size=8,
                max_context=4096, sequence_tokens=1000)
    return memory.EngineInputs(**{**base, **kw})


def train(**kw) -> memory.TrainInputs:
    base = dict(engine=engine(), micro_batch_size=2, checkpointing=False, logprob_chunk_tokens=1024,
                max_tokens_per_micro_batch=None, packed=False,
                reference_model=False, zero_stage=0, offload_optimizer=False, offload_params=False, ranks=8)
    return memory.TrainInputs(**{**base, **kw})


def gib(parts: dict, key: str) -> float:
    return parts[key] * GIB


# ------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("name, params", [
    # safetensors totals the Hub reports for these repos (api/models/<id>: "safetensors": {"total": ...})
    ("Qwen/Qwen2.5-7B", 7_615_616_512),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32_763_876_352),
])
def test_shipped_shapes_count_the_hubs_parameters(name, params):
    assert memory.named_shape(f"hf://{name}", None).params == params


@pytest.mark.parametrize("name, billions", [
    # the parameter counts the Hub's model pages show, in billions
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.8), ("Qwen/Qwen2.5-Math-7B", 7.62), ("Qwen/Qwen2.5-14B", 14.8),
    ("Qwen/Qwen2.5-32B", 32.8), ("meta-llama/Llama-3.1-8B", 8.03),
])
def test_every_shipped_shape_has_its_published_size(name, billions):
    params = memory.named_shape(name.lower(), None).params  # hub ids are case-insensitive
    assert round(params / 1e9, 2 if billions < 10 else 1) == billions


@pytest.mark.parametrize("family, tied", [("qwen2", True), ("llama", False)])
def test_from_scratch_shape_counts_the_built_models_parameters(family, tied):
    """A tiny real model built from the same config (transformers, no weights downloaded)."""
    transformers = pytest.importorskip("transformers")
    from rlspec.compiler.spec import ModelSpec
    arch = dict(family=family, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=4, num_kv_heads=2,
                tie_word_embeddings=tied)
    model = ModelSpec(from_scratch={"architecture": arch, "tokenizer": {"vocab_size": 500},
                                    "warmup": {"sources": [{"uri": "builtin://math"}]}})
    shape = memory.model_shape(model, None)
    config_cls = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}[family]
    built = {"qwen2": transformers.Qwen2ForCausalLM, "llama": transformers.LlamaForCausalLM}[family](config_cls(
        vocab_size=500, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tied))
    assert shape.params == sum(p.numel() for p in built.parameters())


def test_local_model_folder_is_read_relative_to_the_spec(tmp_path):
    folder = tmp_path / "models" / "mine"
    folder.mkdir(parents=True)
    cfg = dict(memory.KNOWN_MODELS["Qwen/Qwen2.5-7B"])
    (folder / "config.json").write_text(json.dumps(cfg))
    shape = memory.named_shape("models/mine", tmp_path)
    assert shape.params == 7_615_616_512 and shape.source == "models/mine/config.json"
    # without the spec's folder (what `check` rules see) a relative folder is not guessed at
    assert isinstance(memory.named_shape("./models/mine", None), memory.NotEstimated)


def test_unknown_models_are_not_estimated_with_the_reason(tmp_path):
    unknown = memory.named_shape("hf://org/model", None)
    assert isinstance(unknown, memory.NotEstimated)
    assert "'org/model' is not in the shipped table" in unknown.reason and "local copy" in unknown.reason
    moe = memory.shape_from_config({"model_type": "mixtral", "hidden_size": 4096}, "x/config.json")
    assert "model_type 'mixtral' is not modelled" in moe.reason
    # DeepSeek-V3/R1 is modelled, but a config without its latent-attention fields is refused, not guessed
    assert "lacks a usable" in memory.shape_from_config({"model_type": "deepseek_v3", "hidden_size": 7168}, "x").reason
    assert "lacks a usable" in memory.shape_from_config({"model_type": "llama"}, "x").reason


# ------------------------------------------------------------------------------------------ formula


def test_model_states_by_zero_stage():
    """Mixed precision, 8 ranks: 2 + 2 + 12 bytes a parameter, sharded from stage 1 (optimizer),
    2 (+ gradients), 3 (+ weights); stages >= 1 add a 5e8-element gradient-reduce bucket."""
    p = 1_000_000_000
    z0 = memory.train_estimate(train(zero_stage=0)).parts
    assert (gib(z0, "weights"), gib(z0, "gradients"), gib(z0, "optimizer")) == (2 * p, 2 * p, 12 * p)
    assert "zero_buffers" not in z0
    z1 = memory.train_estimate(train(zero_stage=1)).parts
    assert (gib(z1, "gradients"), gib(z1, "optimizer"), gib(z1, "zero_buffers")) == (2 * p, 12 * p / 8, 5e8 * 2)
    z2 = memory.train_estimate(train(zero_stage=2)).parts
    assert (gib(z2, "weights"), gib(z2, "gradients")) == (2 * p, 2 * p / 8)
    z3 = memory.train_estimate(train(zero_stage=3)).parts
    assert gib(z3, "weights") == 2 * p / 8
    # ZeRO-3 also holds the gathered largest module plus its 5e7-element prefetch bucket
    assert gib(z3, "zero_buffers") == pytest.approx(5e8 * 2 + (409_600_000 + 5e7) * 2)
    fp32 = memory.train_estimate(train(engine=engine(dtype="float32"))).parts
    assert (gib(fp32, "weights"), gib(fp32, "optimizer")) == (4 * p, 8 * p)  # no separate master copy


def test_zero3_start_up_builds_the_share_under_zero_init_or_the_whole_model_with_lora():
    """Without LoRA the trainer loads the policy under zero.Init: a GPU builds its 1/N share plus the
    module being built (the 409.6M-element embedding), after vLLM took its share. With LoRA the model is
    loaded whole and DeepSpeed moves all of it to the GPU before ZeRO-3 partitions it."""
    est = memory.train_estimate(train(zero_stage=3, engine=engine(gpu_memory_utilization=0.98)))
    start = memory.CUDA_CONTEXT_GIB + 0.98 * 80 + (2e9 / 8 + 409_600_000 * 2) / GIB
    assert est.details["zero3_start_gib"] == round(start, 2) and start > 80
    assert not est.fits and "builds its ZeRO-3 share of the model plus one module" in est.problems[0]
    assert memory.train_estimate(train(zero_stage=3)).fits
    lora = memory.LoraShape(rank=16, dropout=False, modules=((4096, 4096),))
    whole = memory.train_estimate(train(zero_stage=3, lora=lora, engine=engine(gpu_memory_utilization=0.98)))
    assert whole.details["zero3_start_gib"] == round(memory.CUDA_CONTEXT_GIB + 0.98 * 80 + 2e9 / GIB, 2)
    assert "moves the whole 16-bit model" in whole.problems[0]
    assert "zero3_start_gib" not in memory.train_estimate(train(zero_stage=2)).details


def test_offloaded_states_count_zero_and_say_where_they_went():
    est = memory.train_estimate(train(zero_stage=3, offload_optimizer=True, offload_params=True))
    assert est.parts["optimizer"] == 0 and est.parts["weights"] == 0
    assert est.offloaded == {"optimizer": 12e9 / 8 / GIB, "weights": 2e9 / 8 / GIB}
    assert est.as_json()["offloaded_to_host_gib"] == {"optimizer": 1.4, "weights": 0.23}
    # optimizer offload needs ZeRO: at stage 0 nothing moves
    assert memory.train_estimate(train(zero_stage=0, offload_optimizer=True)).offloaded == {}


def test_layer_activations_per_token():
    """bf16, the trainer's per-sequence SDPA (no heads x seq x seq scores, grouped-query K and V never
    expanded): norms 2 x (4 + 2 x 2) x 4096, attention 2 x (3 x 4096 + 2 x 1024) (K and V at the 8 KV
    heads), SwiGLU 4 x 2 x 16384."""
    assert memory.layer_bytes_per_token(SHAPE, "bfloat16") == 65_536 + 28_672 + 131_072
    # fp32: the norms' upcast is the input itself, everything else doubles
    assert memory.layer_bytes_per_token(SHAPE, "float32") == 2 * (4 + 8) * 4096 + 4 * 14_336 + 16 * 16384


def test_activations_with_and_without_checkpointing():
    """2 padded sequences of 1000 tokens = 2000 tokens; final norm + response hidden states
    2000 x 4096 x (4 + 3 x 2) either way; no attention mask (the trainer's attention builds none)."""
    final = 2000 * 4096 * 10
    plain = memory.train_estimate(train(checkpointing=False)).parts
    assert gib(plain, "activations") == pytest.approx(32 * 2000 * 225_280 + final)
    assert "attention_mask" not in plain
    ckpt = memory.train_estimate(train(checkpointing=True))
    assert gib(ckpt.parts, "activations") == pytest.approx(32 * 2000 * 4096 * 2 + final)  # each layer's input
    assert ckpt.details["layer_recompute_gib"] == round(2000 * 225_280 / GIB, 2)


def test_transient_is_the_larger_of_logprob_chunk_and_layer_recompute():
    chunk = 1024 * 100_000 * 4 * memory.LOGIT_COPIES
    ckpt = memory.train_estimate(train(checkpointing=True))
    assert gib(ckpt.parts, "transient") == pytest.approx(chunk)  # 2.05e9 > one layer's 0.48e9
    long = memory.train_estimate(train(checkpointing=True, engine=engine(sequence_tokens=8000)))
    assert gib(long.parts, "transient") == pytest.approx(2 * 8000 * 225_280)
    small = memory.train_estimate(train(checkpointing=True, logprob_chunk_tokens=128))
    assert gib(small.parts, "transient") == pytest.approx(2000 * 225_280)


def test_reference_model_is_a_full_copy_in_the_dtype():
    assert "reference_model" not in memory.train_estimate(train()).parts
    assert gib(memory.train_estimate(train(reference_model=True)).parts, "reference_model") == 2e9


def test_vllm_takes_its_share_and_splits_it():
    """0.5 x 80 GiB up front: 2e9 B of weights, a profiling reserve (16384 tokens x 3 x 16384 x 2 B +
    256 sequences x 100,000 x 12 B of sampler logits) and the rest as KV cache at
    2 x 32 layers x 8 heads x 128 x 2 B = 131,072 B a token."""
    est = memory.engine_estimate(engine())
    d = est.details
    reserve = 16384 * 3 * 16384 * 2 + 256 * 100_000 * 12
    kv = 40 * GIB - 2e9 - reserve
    assert est.parts["rollout_engine"] == 40 and est.total == 40 + memory.CUDA_CONTEXT_GIB
    assert d["weights_gib"] == round(2e9 / GIB, 2) and d["profiling_reserve_gib"] == round(reserve / GIB, 2)
    assert d["kv_bytes_per_token"] == 131_072 and d["kv_tokens"] == int(kv // 131_072)
    assert d["full_length_sequences_at_once"] == min(256, int(kv // 131_072) // 1000)
    assert d["kv_gib_for_max_num_seqs"] == round(256 * 1000 * 131_072 / GIB, 2)
    assert est.fits
    # the bytes it was given instead of a share
    given = memory.engine_estimate(engine(kv_cache_memory_bytes=GIB))
    assert given.parts["rollout_engine"] == pytest.approx((2e9 + reserve) / GIB + 1)
    # tensor parallel: weights and KV heads split over the GPUs
    assert memory.engine_estimate(engine(tensor_parallel_size=2)).details["kv_bytes_per_token"] == 65_536


def test_vllm_that_cannot_hold_one_sequence_does_not_fit():
    est = memory.engine_estimate(engine(gpu_memory_utilization=0.05))  # 4 GiB: ~0.35 GiB of KV
    assert not est.fits and est.total < 80
    assert "vLLM refuses to start" in est.problems[0] and "max_model_len = 4,096 tokens" in est.problems[0]
    none = memory.engine_estimate(engine(gpu_memory_utilization=0.03))
    assert "no room for a KV cache" in none.problems[0]


def test_sleep_mode_frees_weights_and_kv_cache_while_training():
    """Asleep, the peak is the larger phase: generation (the engine's whole share beside the model
    states) or training (its profiling reserve beside activations and transients)."""
    awake = memory.train_estimate(train())
    rollout = awake.details["rollout"]
    assert awake.sleep_frees == rollout["weights_gib"] + rollout["kv_cache_gib"] and not awake.sleep_mode
    asleep = memory.train_estimate(train(sleep_mode=True))
    assert asleep.sleep_mode and asleep.total == pytest.approx(awake.with_sleep_mode)
    states = sum(v for k, v in awake.parts.items() if k not in ("rollout_engine", "activations", "transient"))
    generation = states + awake.parts["rollout_engine"]
    training = states + awake.parts["rollout_engine"] - awake.sleep_frees + awake.parts["activations"] + \
        awake.parts["transient"]
    assert asleep.total == pytest.approx(max(generation, training)) and asleep.total < awake.total
    assert asleep.details["sleep_mode"]["peak_phase"] == ("generation" if generation > training else "training")
    assert awake.as_json()["per_gpu_with_sleep_mode_gib"] == round(asleep.total, 2)
    # long sequences without checkpointing: training is the larger phase, and sleep mode takes all of
    # the engine's weights + KV cache out of it
    long = train(sleep_mode=True, checkpointing=False, micro_batch_size=8)
    est = memory.train_estimate(long)
    assert est.details["sleep_mode"]["peak_phase"] == "training"
    assert est.parts["rollout_engine"] == pytest.approx(awake.parts["rollout_engine"] - awake.sleep_frees)
    assert memory.train_estimate(dataclasses.replace(long, sleep_mode=False)).total == pytest.approx(
        est.total + est.sleep_frees)


def test_hf_engine_keeps_a_weights_copy_and_generates_in_the_transient():
    est = memory.train_estimate(train(engine=engine(engine="hf", hf_batch_size=64, sequence_tokens=8000),
                                      checkpointing=True))
    assert gib(est.parts, "rollout_engine") == 2e9 and est.sleep_frees == pytest.approx(2e9 / GIB)
    # asleep, the weights copy is freed while training
    assert gib(memory.train_estimate(train(engine=est_engine_hf(), sleep_mode=True)).parts, "rollout_engine") == 0
    generation = 64 * 8000 * 131_072 + 64 * 100_000 * 8
    assert gib(est.parts, "transient") == pytest.approx(generation)


def est_engine_hf():
    return engine(engine="hf", hf_batch_size=64, sequence_tokens=8000)


def test_remedies_say_what_each_change_gives():
    t = train(zero_stage=0, micro_batch_size=4, checkpointing=True)
    lines = memory.remedies(t)
    assert any(line.startswith("algorithm.micro_batch_size: 1 -> ") for line in lines)
    assert any(line.startswith("resources.deepspeed.zero_stage: 3 -> ") for line in lines)
    assert any("offload_optimizer: true (with zero_stage: 1)" in line for line in lines)
    totals = [float(line.split("-> ")[1].split()[0]) for line in lines if "-> " in line and "utilization" not in line]
    assert totals == sorted(totals) and max(totals) < memory.train_estimate(t).total
    one = memory.train_estimate(dataclasses.replace(t, micro_batch_size=1)).total
    assert f"algorithm.micro_batch_size: 1 -> {round(one, 2)} GiB (fits)" in lines
    zero3 = memory.train_estimate(dataclasses.replace(t, zero_stage=3)).total
    assert lines[0] == f"resources.deepspeed.zero_stage: 3 -> {round(zero3, 2)} GiB (fits)"  # 16 -> 2 bytes/param
    # a change that is not enough says so
    big = train(zero_stage=0, micro_batch_size=4, checkpointing=True, engine=engine(gpu_memory_utilization=0.9))
    assert any(line.endswith("(still too much)") for line in memory.remedies(big))


def test_a_token_budget_bounds_the_largest_micro_batch():
    """`max_tokens_per_micro_batch` of one full-length sequence: activations as with one sequence per
    micro-batch, though 8 short ones may share it."""
    seq = engine().sequence_tokens
    eight = train(micro_batch_size=8)
    budget = train(micro_batch_size=8, max_tokens_per_micro_batch=seq)
    one = train(micro_batch_size=1)
    act = {k: memory.train_estimate(t).details["micro_batch_tokens"] for k, t in
           (("eight", eight), ("budget", budget), ("one", one))}
    assert act == {"eight": 8 * seq, "budget": seq, "one": seq}
    # a budget above the fixed count's tokens changes nothing
    assert memory.micro_batch_tokens(train(micro_batch_size=2, max_tokens_per_micro_batch=10 * seq)) == 2 * seq
    lines = memory.remedies(eight)
    assert any(line.startswith(f"algorithm.max_tokens_per_micro_batch: {seq} -> ") for line in lines)


def test_packing_costs_no_mask():
    """A packed row of 2 sequences: its tokens, and no (N x N) block-diagonal mask (the trainer's
    attention reads the boundaries from the position ids)."""
    seq = engine().sequence_tokens
    packed = train(micro_batch_size=8, max_tokens_per_micro_batch=2 * seq, packed=True)
    assert memory.micro_batch_tokens(packed) == 2 * seq
    assert "attention_mask" not in memory.train_estimate(packed).parts


# ------------------------------------------------------------------------------------------ check and plan


def checked(write_spec, text: str):
    try:
        return check_file(write_spec(text)), []
    except SpecError as exc:
        return None, exc.errors


def test_check_refuses_the_7b_spec_on_one_80gb_gpu_with_zero_0(write_spec):
    text = f"""\
extends: {SEVEN_B}
resources:
  train: {{gpus: 1, nodes: 1}}
  deepspeed: {{zero_stage: 0}}
"""
    _, errors = checked(write_spec, text)
    train = [e for e in errors if e.path[0] == "stages" and len(e.path) == 2]
    assert [e.path for e in train] == [("stages", i) for i in range(6)]  # every stage, at its own line
    first = train[0]
    assert first.loc.file.endswith("acereason-nemotron-7b.yaml") and first.loc.line > 100
    msg = first.message
    assert msg.startswith("the train job of stage 'math-8k': estimated ")
    assert "exceeds resources.train.gpu_mem_gb (80)" in msg
    # the parts, ZeRO-0's full optimizer states first, and what to change
    for part in ("optimizer 85.1", "gradients 14.2", "weights 14.2", "rollout_engine 56.0"):
        assert part in msg
    # sleep mode is on (GPUs): the peak is generation, with the engine awake beside ZeRO-0's states
    assert "(the generation phase: rollout.sleep_mode frees " in msg
    assert "offload_optimizer: true (with zero_stage: 1) -> " in msg


def test_check_accepts_the_shipped_7b_and_14b_specs():
    """The shipped specs fit 80 GB GPUs by the estimate (7B at one sequence per micro-batch; 14B also
    with max_context 34816, vLLM at the 7B spec's 0.7): `check` must not refuse what we ship."""
    check_file(SEVEN_B)
    check_file(SEVEN_B.parent / "acereason-nemotron-14b.yaml")


def test_estimate_near_the_limit_is_a_warning(write_spec):
    # sleep mode off: the engine's share stays beside the 32K stages' activations (75.8 GiB)
    ok, errors = checked(write_spec, f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\n"
                                     "rollout:\n  sleep_mode: false\nresources:\n  train: {gpu_mem_gb: 78}\n")
    assert errors == []
    near = [w for w in ok.warnings if "within 5% of resources.train.gpu_mem_gb (78)" in w.message]
    assert [w.path for w in near] == [("stages", 4), ("stages", 5)]
    assert "fragmentation" in near[0].message


def test_time_limit_below_the_plans_gpu_hours_is_a_warning(write_spec):
    # generation: 10 steps x 8 prompts x 4 responses x 1024 tokens x 0.6 at 1 token/s = 54.613 GPU-hours,
    # training: 320 x (2048 + 1024) x 0.6 tokens at 8000/s = 0.020; 54.634 x 60 / 2 GPUs = 1639.0 minutes
    text = MINI + "resources:\n  train: {gpus: 2, time_min: 60}\n  throughput: {rollout_tokens_per_gpu_s: 1}\n"
    ok, errors = checked(write_spec, text)
    assert errors == []
    slow = [w for w in ok.warnings if w.path == ("resources", "train", "time_min")]
    assert len(slow) == 2  # both stages
    assert slow[0].loc.line == text.splitlines().index("  train: {gpus: 2, time_min: 60}") + 1
    assert "stage 's1' needs about 55 GPU-hours" in slow[0].message and "on its 2 GPUs" in slow[0].message
    assert "raise time_min to at least 1640" in slow[0].message
    assert "resumes from its last checkpoint" in slow[0].message
    # CPU jobs (no GPUs) have no GPU-hours to compare
    cpu = MINI + "resources:\n  train: {time_min: 1}\n  throughput: {rollout_tokens_per_gpu_s: 1}\n"
    assert not [w for w in checked(write_spec, cpu)[0].warnings if "time_min" in str(w.path)]


def test_gradient_checkpointing_null_means_on_with_gpus(write_spec):
    spec = check_file(write_spec(f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\n")).cells[0].spec
    stage, res = spec.stages[0], spec.resources.train
    assert stage.algorithm.gradient_checkpointing is None and memory.checkpointing_on(stage, res) is True
    off = stage.model_copy(update={"algorithm": stage.algorithm.model_copy(update={"gradient_checkpointing": False})})
    assert memory.checkpointing_on(off, res) is False
    assert memory.stage_train(spec, stage, 64, None).checkpointing is True
    cpu = check_file(write_spec(MINI)).cells[0].spec
    assert memory.checkpointing_on(cpu.stages[0], cpu.resources.train) is False
    assert "runs on CPU" in memory.stage_train(cpu, cpu.stages[0], 1, None).reason
    # switched off on GPUs, the 8K stage's activations alone outgrow the GPU, and check says what to set
    _, errors = checked(write_spec, f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\n"
                                    "  gradient_checkpointing: false\n")
    assert errors and "set (estimate after the change) algorithm.gradient_checkpointing: true -> " in errors[0].message


def test_plan_json_has_memory_per_gpu_job(write_spec, tmp_path):
    path = write_spec(f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\n")
    checked_spec = check_file(path)
    data = plan_data(build_plan(checked_spec.cells, path.parent), path.parent)
    by_label = {j["label"]: j for j in data["jobs"]}
    mem = by_label["train math-32k"]["memory"]
    assert mem["estimated"] and mem["fits"] and mem["gpu_mem_gb"] == 80
    # on GPUs sleep mode is on by default: the peak is the larger phase, here generation (no activations)
    assert mem["sleep_mode"] and mem["details"]["sleep_mode"]["peak_phase"] == "generation"
    assert set(mem["parts_gib"]) == {"cuda_context", "rollout_engine", "weights", "gradients", "optimizer",
                                     "zero_buffers"}
    assert mem["details"]["sleep_mode"]["training_gib"] < mem["per_gpu_gib"]
    assert mem["per_gpu_with_sleep_mode_gib"] == mem["per_gpu_gib"]
    assert mem["per_gpu_gib"] == round(sum(mem["parts_gib"].values()), 2) or \
        abs(mem["per_gpu_gib"] - sum(mem["parts_gib"].values())) < 0.05
    assert mem["details"]["gradient_checkpointing"] is True and mem["details"]["micro_batch_tokens"] == 34816
    off = check_file(write_spec(f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\nrollout:\n  sleep_mode: false\n"))
    off_data = plan_data(build_plan(off.cells, path.parent), path.parent)
    off_mem = {j["label"]: j for j in off_data["jobs"]}["train math-32k"]["memory"]
    assert "activations" in off_mem["parts_gib"] and not off_mem["sleep_mode"]
    assert off_mem["per_gpu_with_sleep_mode_gib"] == mem["per_gpu_gib"] < off_mem["per_gpu_gib"]
    assert by_label["filter before math-24k"]["memory"]["details"]["engine"] == "vllm"
    assert by_label["bench aime24 @ initial"]["memory"]["fits"]
    assert by_label["report"]["memory"] is None and by_label["curate math"]["memory"] is None
    json.dumps(data)  # plain JSON


def test_plan_says_why_a_job_is_not_estimated(write_spec):
    path = write_spec(MINI + "resources:\n  train: {gpus: 1}\n")
    data = plan_data(build_plan(check_file(path).cells, path.parent), path.parent)
    by_label = {j["label"]: j for j in data["jobs"]}
    assert by_label["train s1"]["memory"]["estimated"] is False
    assert "'org/model' is not in the shipped table" in by_label["train s1"]["memory"]["reason"]
    assert "runs on CPU" in by_label["bench held @ initial"]["memory"]["reason"]


# ------------------------------------------------------------------------------------------ LoRA


def test_lora_trains_the_adapter_only_and_keeps_the_frozen_weights():
    """Rank 16 on q_proj and v_proj of SHAPE's 32 layers: A and B per layer are 16 x (4096 + 4096)
    and 16 x (4096 + 1024) = 212,992 parameters, 6,815,744 in all. Gradients, AdamW states and the
    gradient-reduce bucket shrink to the adapter's; the base weights stay (plus the adapter)."""
    lora = memory.LoraShape(rank=16, dropout=False, modules=((4096, 4096), (4096, 1024)))
    a = lora.params(32)
    assert a == 32 * 16 * (4096 + 4096 + 4096 + 1024) == 6_815_744
    p = 1_000_000_000
    full, adapted = memory.train_estimate(train(zero_stage=1)), memory.train_estimate(train(zero_stage=1, lora=lora))
    assert gib(adapted.parts, "weights") == 2 * (p + a)
    assert (gib(adapted.parts, "gradients"), gib(adapted.parts, "optimizer")) == (2 * a, 12 * a / 8)
    assert gib(adapted.parts, "zero_buffers") == 2 * a  # the reduce bucket holds no more than the adapter
    assert adapted.details["trainable_params"] == a and full.details["trainable_params"] == p
    assert full.total - adapted.total > (2 * p + 12 * p / 8 - 14 * a) / GIB * 0.99  # ~3.3 GiB saved
    # ZeRO-3 still partitions the (frozen) weights; ZeRO-2 the adapter's gradients
    assert gib(memory.train_estimate(train(zero_stage=3, lora=lora)).parts, "weights") == 2 * (p + a) / 8
    assert gib(memory.train_estimate(train(zero_stage=2, lora=lora)).parts, "gradients") == 2 * a / 8


def test_lora_adds_its_saved_activations_and_one_merged_weight_to_the_push():
    """Per token and layer: A's output (rank values) per target, and with dropout the dropped input
    (in x (b + 1) bytes); the weight push merges one layer at a time: in x out x (4 + 4 + b) bytes."""
    lora = memory.LoraShape(rank=16, dropout=False, modules=((4096, 4096), (4096, 1024)))
    assert lora.bytes_per_token(2) == 2 * 16 * 2
    assert memory.LoraShape(16, True, lora.modules).bytes_per_token(2) == 2 * 16 * 2 + 2 * 4096 * 3
    t = train(micro_batch_size=1, lora=lora)
    base = memory.layer_bytes_per_token(SHAPE, "bfloat16")
    tokens = memory.micro_batch_tokens(t)
    expected = SHAPE.layers * tokens * (base + 64) + tokens * SHAPE.hidden * (4 + 3 * 2)
    assert gib(memory.train_estimate(t).parts, "activations") == pytest.approx(expected)
    assert memory.train_estimate(t).details["weight_sync_gib"] == round(4096 * 4096 * 10 / GIB, 2)


def test_plan_counts_lora_and_its_adapter_off_reference(write_spec):
    """`model.lora` in a spec: the plan's train estimate trains the adapter only, and with KL against
    the stage's input there is no reference model (the policy with its adapter off); against the
    run's initial model there is. Unknown target names are not estimated, with the reason."""
    lora = "  lora: {rank: 16, alpha: 32, target_modules: [q_proj, k_proj, v_proj, o_proj]}\n"
    # 141 GB (an H200): a full reference model beside the 7B spec's engine would not fit 80 GB
    base = (f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\n  kl: {{coef: 0.001}}\n"
            "resources:\n  train: {gpu_mem_gb: 141}\n")

    def train_memory(text):
        path = write_spec(text)
        data = plan_data(build_plan(check_file(path).cells, path.parent), path.parent)
        return {j["label"]: j for j in data["jobs"]}["train math-8k"]["memory"]
    full = train_memory(base)
    adapted = train_memory(base + "model:\n" + lora)
    # Qwen2.5-7B: 28 layers x 16 x ((3584 + 3584) + 2 x (3584 + 512) + (3584 + 3584)) = 10,092,544
    assert adapted["details"]["trainable_params"] == 28 * 16 * (2 * 7168 + 2 * 4096) == 10_092_544
    assert "reference_model" in full["parts_gib"] and "reference_model" not in adapted["parts_gib"]
    assert adapted["parts_gib"]["optimizer"] < 0.01 < full["parts_gib"]["optimizer"]
    initial = train_memory(base.replace("coef: 0.001", "coef: 0.001, reference: initial") + "model:\n" + lora)
    assert "reference_model" in initial["parts_gib"]
    # PEFT matches the end of a module's name: a longer suffix of a projection is the same layer
    same = train_memory(base + "model:\n" + lora.replace("o_proj", "self_attn.o_proj"))
    assert same["details"]["trainable_params"] == adapted["details"]["trainable_params"]


def test_check_refuses_lora_targets_that_are_not_projections(write_spec):
    """The output layer (tied to the embeddings in small models) and embeddings have no merged
    linear weight the engines load; the check says so at the name, listing the projections."""
    text = (f"extends: {SEVEN_B}\nalgorithm:\n  micro_batch_size: 1\nmodel:\n"
            "  lora:\n    rank: 8\n    alpha: 16\n    target_modules: [q_proj, lm_head, embed_tokens]\n")
    _, errors = checked(write_spec, text)
    found = {e.path: e for e in errors if e.path[:2] == ("model", "lora")}
    assert list(found) == [("model", "lora", "target_modules", 1), ("model", "lora", "target_modules", 2)]
    msg = found[("model", "lora", "target_modules", 1)].message
    assert "'lm_head' is not a linear projection" in msg and "DeepSeek-R1-Distill-Qwen-7B" in msg
    assert "use some of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in msg
    assert found[("model", "lora", "target_modules", 1)].loc.line == text.splitlines().index(
        "    target_modules: [q_proj, lm_head, embed_tokens]") + 1
