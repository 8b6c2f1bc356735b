"""Grader pool sizes: a rank's share of its CPU set, never all cores on every rank (issue 13)."""

from __future__ import annotations

import os

import pytest

from rlspec.runtime.reward.grade import default_workers


def test_ranks_on_a_node_share_its_cores(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers(None) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_workers(None) == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores * 4))  # more ranks than cores: one worker each
    assert default_workers(None) == 1
    assert default_workers(3) == 3  # an explicit size wins
    with pytest.raises(ValueError, match="at least 1"):
        default_workers(0)
