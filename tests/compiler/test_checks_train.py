"""Micro-batch shape rules: a token budget must hold the stage's longest sequence."""

from __future__ import annotations

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
