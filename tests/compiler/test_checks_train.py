"""Cross-field rules of a train job (`compiler/checks_train.py`): a token budget must hold the stage's
longest sequence, the multi-node layout, and no tensor parallelism in the colocated rollout engine."""

from __future__ import annotations

from rlspec.compiler.errors import SpecError
from rlspec.compiler.validate import check_file
from test_checks_resources import issues_of, line_of

from conftest import MINI


def test_a_budget_below_the_longest_sequence_is_refused_where_it_is_set(write_spec):
    # s1: 2048 prompt + 1024 response = 3072 fits 3500; s2: 2048 + 2048 = 4096 does not
    text = MINI + "algorithm:\n  max_tokens_per_micro_batch: 3500\n  pack_sequences: true\n"
    found = issues_of(write_spec, text)
    # reported once, at the top-level block every stage inherits it from
    assert list(found) == [("algorithm", "max_tokens_per_micro_batch")]
    line, msg = found[("algorithm", "max_tokens_per_micro_batch")]
    assert line == line_of(text, "max_tokens_per_micro_batch: 3500")
    assert "3500 tokens is less than the longest sequence of stage 's2'" in msg
    assert "2048 + 2048 (capped by model.max_context 4096) = 4096" in msg and "at least 4096" in msg


def test_a_budget_of_the_context_checks(write_spec):
    assert issues_of(write_spec, MINI + "algorithm:\n  max_tokens_per_micro_batch: 8192\n") == {}


def test_multi_node_layout_rules(write_spec):
    text = MINI + ("resources:\n  curate: {nodes: 2}\n  bench: {nodes: 2}\n"
                   "  train: {gpus: 4, nodes: 2, ranks_per_node: 8, slurm_extra: \"--qos=long --gres=gpu:8\"}\n")
    found = issues_of(write_spec, text)
    assert "only train and inference jobs (bench, filter, sample) run on several nodes" in \
        found[("resources", "curate", "nodes")][1]
    assert ("resources", "bench", "nodes") not in found  # bench replicas spread over nodes
    assert "8 ranks per node on 4 GPUs" in found[("resources", "train", "ranks_per_node")][1]
    line, msg = found[("resources", "train", "slurm_extra")]
    assert line == line_of(text, "slurm_extra") and "--gres in slurm_extra of a 2-node train job" in msg
    ok = MINI + "resources:\n  train: {gpus: 8, nodes: 2, slurm_extra: \"--qos=long\"}\n"
    assert not {k: v for k, v in issues_of(write_spec, ok).items() if k[0] == "resources" and k[1] == "train"}


# ------------------------------------------------------------------ tensor parallelism of the colocated engine

TP_AT = ("rollout", "vllm", "tensor_parallel_size")
ON_GPUS = "resources:\n  train: {gpus: 8}\n"


def errors_of(write_spec, text: str) -> list:
    try:
        check_file(write_spec(text))
    except SpecError as exc:
        return exc.errors
    return []


def test_tensor_parallel_groups_of_a_node_check(write_spec):
    """TP groups are carved from the training world (vLLM's external launcher): 2, 4 or 8 of 8 ranks."""
    for tp in (1, 2, 4, 8):
        text = MINI + f"rollout:\n  vllm:\n    tensor_parallel_size: {tp}\n" + ON_GPUS
        assert not [e for e in errors_of(write_spec, text) if e.path[-1] == "tensor_parallel_size"], tp


def test_a_top_level_tensor_parallel_size_that_splits_a_node_is_refused_where_it_is_written(write_spec):
    text = MINI + "rollout:\n  vllm:\n    tensor_parallel_size: 3\n" + ON_GPUS
    found = [e for e in errors_of(write_spec, text) if e.path == TP_AT]
    # both stages inherit it: one error, at the line that sets it, naming both
    assert [e.loc.line for e in found] == [line_of(text, "tensor_parallel_size: 3")]
    msg = found[0].message
    assert msg.startswith("tensor_parallel_size 3 in the colocated rollout engines of stages 's1', 's2', with 8 "
                          "training ranks per node: ")
    assert "TP groups of 3 consecutive training ranks" in msg and "set it to one of [1, 2, 4, 8]" in msg
    assert all(e.path[0] != "stages" for e in errors_of(write_spec, text))  # nothing left at a stage
    # more than a node's ranks: a group would span nodes
    text = MINI + "rollout:\n  vllm:\n    tensor_parallel_size: 16\n" + "resources:\n  train: {gpus: 8, nodes: 2}\n"
    assert [e.path for e in errors_of(write_spec, text) if e.path[-1] == "tensor_parallel_size"] == [TP_AT]


def test_a_stage_override_is_refused_at_the_stage(write_spec):
    text = MINI.replace("    max_response_tokens: 2048\n",
                        "    max_response_tokens: 2048\n    rollout:\n      vllm: {tensor_parallel_size: 4}\n", 1)
    on_2 = "resources:\n  train: {gpus: 2}\n"
    found = issues_of(write_spec, text + on_2)
    assert list(found) == [("stages", 1) + TP_AT]  # s1 keeps the top-level 1
    line, msg = found[("stages", 1) + TP_AT]
    assert line == line_of(text, "vllm: {tensor_parallel_size: 4}")
    assert msg.startswith("tensor_parallel_size 4 in the colocated rollout engine of stage 's2', with 2 training "
                          "ranks per node")
    # under a top-level 3, s1 inherits that (reported there) and s2's own 4 is reported at s2
    both = text + on_2 + "rollout:\n  vllm: {tensor_parallel_size: 3}\n"
    found = issues_of(write_spec, both)
    assert sorted(found, key=len) == [TP_AT, ("stages", 1) + TP_AT]
    assert found[TP_AT][1].startswith("tensor_parallel_size 3 in the colocated rollout engine of stage 's1', ")
    # on CPU one rank per node (ranks_per_node unset): only 1 fits
    line, msg = issues_of(write_spec, text)[("stages", 1) + TP_AT]
    assert "with 1 training rank per node" in msg and "set it to one of [1]" in msg


def test_the_hf_engine_ignores_the_vllm_block(write_spec):
    text = MINI + "rollout:\n  engine: hf\n  vllm: {tensor_parallel_size: 3}\n" + ON_GPUS
    assert not [e for e in errors_of(write_spec, text) if e.path[-1] == "tensor_parallel_size"]


def test_vllm_sleep_mode_on_a_cpu_train_job_is_refused_where_it_is_written(write_spec):
    text = MINI + "rollout:\n  sleep_mode: true\n"
    found = [e for e in errors_of(write_spec, text) if e.path[-1] == "sleep_mode"]
    assert [(e.path, e.loc.line) for e in found] == [(("rollout", "sleep_mode"), line_of(text, "sleep_mode: true"))]
    assert found[0].message.startswith("sleep_mode: true with the vLLM engine of stages 's1', 's2' on a CPU train job")
    assert "set sleep_mode: false" in found[0].message
    # on GPUs, with the hf engine, or null (the default): accepted
    for ok in (text + ON_GPUS, MINI + "rollout:\n  engine: hf\n  sleep_mode: true\n", MINI):
        assert not [e for e in errors_of(write_spec, ok) if e.path[-1] == "sleep_mode"]
