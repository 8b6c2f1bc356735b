"""`rlspec check` on inference jobs (bench, filter, sample): replicas that use exactly the job's GPUs,
replicas that fit a node or whole nodes, engine settings the engine can honour, and a model that fits
(memory estimate with tensor and pipeline parallelism, quantization, latent attention; a teacher's
shape from the shipped table, a weights-only bound from its name, or a warning that it is not
estimated)."""

from __future__ import annotations

import math

import pytest

from rlspec.compiler import memory
from rlspec.compiler.errors import SpecError
from rlspec.compiler.validate import check_file

from conftest import MINI, REPO

SPEC_7B = REPO / "specs/acereason-nemotron-7b.yaml"


def issues_of(path, overrides=()) -> tuple[dict, list]:
    """(path -> (line, message) of every error, warnings) of a spec file with `--set` overrides."""
    try:
        checked = check_file(path, overrides=list(overrides))
    except SpecError as exc:
        return {i.path: (i.loc.line if i.loc else 0, i.message) for i in exc.errors}, \
            [i for i in exc.issues if i.severity == "warning"]
    return {}, checked.warnings


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


GPU_BENCH = MINI + """\
resources:
  bench: {gpus: 8, gpu_mem_gb: 80}
"""


# ------------------------------------------------------------------------------- the 7B spec


def test_7b_spec_checks_with_r1_at_tp8_pp2():
    errors, warnings = issues_of(SPEC_7B)
    assert errors == {}
    spec = check_file(SPEC_7B).cells[0].spec
    samples = [j for j in memory.inference_jobs(spec) if j.kind == "sample"]
    assert {j.model for j in samples} == {"hf://deepseek-ai/DeepSeek-R1"} and len(samples) == 3
    est = memory.estimate(memory.inference_inputs(spec, samples[0], None))
    rollout = est.details
    assert est.fits and samples[0].block.tensor_parallel_size == 8 and samples[0].block.pipeline_parallel_size == 2
    # fp8 weights as saved (embeddings in bf16) over 16 GPUs; MLA cache of its 31-layer pipeline stage
    s = memory.named_shape("hf://deepseek-ai/DeepSeek-R1", None)
    weights = ((s.params - s.embedding_params) * 1 + s.embedding_params * 2) / 16 / 2**30
    assert rollout["weights_gib"] == pytest.approx(weights, abs=0.01)
    assert rollout["kv_bytes_per_token"] == (512 + 64) * math.ceil(61 / 2) * 2
    assert rollout["max_model_len"] == 2048 + 32768  # prompt + response budget, not the 131K max_context


def test_r1_shape_is_671b_with_latent_attention():
    s = memory.named_shape("hf://deepseek-ai/DeepSeek-R1", None)
    assert s.params == pytest.approx(671e9, rel=0.001)  # DeepSeek-V3 report: 671B total parameters
    assert s.kv_latent == 512 + 64 and s.layers == 61 and s.hidden == 7168 and s.vocab == 129280
    assert s.saved_weight_bytes == 1.0


def test_r1_on_one_node_does_not_fit_and_the_fix_is_pipeline_parallel():
    errors, _ = issues_of(SPEC_7B, ["inference.sample.pipeline_parallel_size=1"])
    line, msg = errors[("datasets", "math", "filters", 11)]
    assert "no room for a KV cache" in msg and "weights (78.33)" in msg
    assert "inference.sample.pipeline_parallel_size: 2 -> fits" in msg
    assert line == line_of(SPEC_7B.read_text(), "policy: hf://deepseek-ai/DeepSeek-R1   # and drop") - 1


# ------------------------------------------------------------------------------- replicas


def test_tp_pp_dp_must_equal_the_jobs_gpus(tmp_path):
    errors, _ = issues_of(SPEC_7B, ["inference.sample.data_parallel_size=3"])
    line, msg = errors[("inference", "sample")]
    assert line == line_of(SPEC_7B.read_text(), "sample: {tensor_parallel_size: 8")
    assert "8 x pipeline_parallel_size 2 x data_parallel_size 3 = 48 GPUs" in msg and "4 node(s) x 8 GPUs = 32" in msg
    assert "'math', 'code', 'code-capped'" in msg  # one message for the jobs that share the block
    assert "set inference.sample.data_parallel_size: 2" in msg


def test_replica_over_nodes_must_be_whole_nodes():
    errors, _ = issues_of(SPEC_7B, ["inference.sample.tensor_parallel_size=6", "inference.sample.data_parallel_size=2"])
    msg = errors[("inference", "sample")][1]
    assert "= 12 GPUs, more than a node's 8" in msg and "not a whole number of nodes" in msg


def test_replica_that_does_not_divide_a_node_is_refused():
    errors, _ = issues_of(SPEC_7B, ["inference.sample.tensor_parallel_size=3"])
    assert "do not divide a node's 8" in errors[("inference", "sample")][1]


def test_default_dp_uses_every_gpu(write_spec):
    assert issues_of(write_spec(GPU_BENCH + "inference:\n  bench: {tensor_parallel_size: 2}\n"))[0] == {}


def test_job_engine_override_is_where_the_error_points(write_spec):
    text = GPU_BENCH.replace("    k: 4\n", "    k: 4\n    engine: {tensor_parallel_size: 3}\n")
    errors, _ = issues_of(write_spec(text))
    line, msg = errors[("benchmarks", "held", "engine")]
    assert line == line_of(text, "engine: {tensor_parallel_size: 3}")
    assert "the bench jobs of 'held'" in msg and "use a divisor of 8" in msg


def test_tensor_parallel_over_nodes_is_a_warning():
    errors, warnings = issues_of(SPEC_7B, ["inference.sample.tensor_parallel_size=16",
                                           "inference.sample.pipeline_parallel_size=1"])
    assert errors == {}
    assert any("tensor_parallel_size 16 spans nodes" in w.message for w in warnings)


@pytest.mark.parametrize("block, what", [
    ("{engine: hf, tensor_parallel_size: 2}", "tensor_parallel_size 2 x pipeline_parallel_size 1 with the hf engine"),
    ("{engine: hf, pipeline_parallel_size: 2}", "tensor_parallel_size 1 x pipeline_parallel_size 2 with the hf engine"),
    ("{engine: hf, quantization: fp8}", "quantization fp8 with the hf engine"),
])
def test_hf_engine_cannot_split_or_quantize(write_spec, block, what):
    errors, _ = issues_of(write_spec(GPU_BENCH + f"inference:\n  bench: {block}\n"))
    msg = errors[("inference", "bench")][1]
    assert what in msg and "set inference.bench.engine: vllm" in msg


def test_split_replica_on_cpu_is_refused(write_spec):
    errors, _ = issues_of(write_spec(MINI + "inference:\n  filter: {tensor_parallel_size: 2}\n"
                                     "  bench: {pipeline_parallel_size: 2}\n"))
    assert "on CPU (resources.bench.gpus = 0)" in errors[("inference", "bench")][1]
    assert ("inference", "filter") not in errors  # MINI has no filter_before: no filter job


# ------------------------------------------------------------------------------- memory


def test_quantization_counts_its_bytes_per_weight():
    s = memory.named_shape("hf://Qwen/Qwen2.5-7B", None)
    full = memory.weight_bytes(s, "bfloat16", None)
    assert memory.weight_bytes(s, "bfloat16", "fp8") == pytest.approx((s.params - s.embedding_params) + 2 * s.embedding_params)
    assert memory.weight_bytes(s, "bfloat16", "awq") < memory.weight_bytes(s, "bfloat16", "fp8") < full
    assert full == s.params * 2


def test_pipeline_parallel_splits_weights_and_kv():
    s = memory.named_shape("hf://Qwen/Qwen2.5-7B", None)
    base = dict(shape=s, dtype="bfloat16", engine="vllm", gpu_mem_gb=80, gpu_memory_utilization=0.9,
                tensor_parallel_size=1, kv_cache_memory_bytes=None, max_num_seqs=256, hf_batch_size=8,
                max_context=8192, sequence_tokens=8192)
    one = memory.engine_estimate(memory.EngineInputs(**base)).details
    two = memory.engine_estimate(memory.EngineInputs(**base, pipeline_parallel_size=2)).details
    assert two["weights_gib"] == pytest.approx(one["weights_gib"] / 2, abs=0.01)
    assert two["kv_bytes_per_token"] == one["kv_bytes_per_token"] // 2  # 28 layers -> 14 per stage


def test_inference_block_utilization_and_length_reach_the_estimate(write_spec):
    text = MINI.replace("  path: org/model\n", "  path: Qwen/Qwen2.5-7B\n") + \
        "resources:\n  bench: {gpus: 1}\ninference:\n  bench: {gpu_memory_utilization: 0.5, max_model_len: 2000}\n"
    spec = check_file(write_spec(text)).cells[0].spec
    job = next(j for j in memory.inference_jobs(spec) if j.kind == "bench")
    est = memory.estimate(memory.inference_inputs(spec, job, None))
    assert est.parts["rollout_engine"] == pytest.approx(40.0) and est.details["max_model_len"] == 2000


def _teacher(policy: str) -> str:
    return MINI.replace("      - kind: decontaminate\n", f"      - kind: decontaminate\n      - kind: pass_rate\n"
                        f"        policy: {policy}\n        k: 4\n        max: 0.9\n", 1) + \
        "resources:\n  sample: {gpus: 1}\n"


def test_teacher_with_only_a_parameter_count_gets_a_weights_only_bound(write_spec):
    text = _teacher("hf://org/Big-70B-Instruct")
    errors, _ = issues_of(write_spec(text))
    line, msg = errors[("datasets", "math", "filters", 2)]
    assert "weights alone (130.39 GiB per GPU over 1 GPUs, 70B parameters read from the name" in msg
    assert line == line_of(text, "- kind: pass_rate")


def test_teacher_not_estimated_is_listed_not_guessed(write_spec):
    errors, warnings = issues_of(write_spec(_teacher("hf://org/teacher")))
    assert errors == {}
    w = next(w for w in warnings if w.path == ("datasets", "math", "filters", 2))
    assert "memory per GPU not estimated" in w.message and "'org/teacher' is not in the shipped table" in w.message


def test_name_parameter_counts():
    assert memory.params_from_name("hf://meta-llama/Llama-3.1-70B-Instruct") == 70_000_000_000
    assert memory.params_from_name("hf://Qwen/Qwen3-235B-A22B@main") == 235_000_000_000
    assert memory.params_from_name("hf://mistralai/Mixtral-8x7B-v0.1") is None  # no total stated
    assert memory.params_from_name("hf://org/teacher") is None


def test_a_compiled_sample_job_finds_its_memory_estimate():
    """What `rlspec plan`'s memory table calls for a sample job (its config and its teacher's model job)."""
    from rlspec.compiler.plan import build_plan
    checked = check_file(SPEC_7B)
    plan = build_plan(checked.cells)
    spec = checked.cells[0].spec
    for job in (j for j in plan.jobs.values() if j.kind == "sample"):
        teacher = plan.jobs[job.inputs["teacher"]].config.build.model.name
        est = memory.estimate(memory.sample_engine(spec, job.config, teacher, None))
        assert est.fits and est.details["weights_gib"] == pytest.approx(39.17, abs=0.01)
    assert isinstance(memory.sample_engine(spec, job.config, None, None), memory.NotEstimated)
