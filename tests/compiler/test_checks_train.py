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
