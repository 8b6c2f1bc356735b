"""The benchmark metrics against definitions worked out by hand or by brute force.

pass@k is checked against its meaning (enumerate every k-subset of n samples and count the subsets
holding a correct one), avg@k and its standard error against numbers computed by hand, maj@k
against small vote tables including ties.
"""

from __future__ import annotations

import itertools
import math

import pytest

from rlspec.runtime.metrics import avg_at_k, maj_at_k, majority_correct, metric_name, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)          # pass@1 is the plain accuracy
    # n = 1024 overflows the binomials as floats; the product form stays exact enough
    exact = 1 - math.comb(1024 - 7, 128) / math.comb(1024, 128)
    assert pass_at_k(1024, 7, 128) == pytest.approx(exact, rel=1e-12)
    assert 0.0 <= pass_at_k(1024, 1, 1000) <= 1.0


@pytest.mark.parametrize("args", [(4, 5, 1), (4, -1, 1), (4, 2, 5), (4, 2, 0)])
def test_pass_at_k_rejects_impossible_counts(args):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(*args)


def test_avg_at_k_by_hand():
    # per-problem accuracies 1/4, 3/4, 1, 0 -> mean 0.5
    matrix = [[1, 0, 0, 0], [1, 1, 1, 0], [True, True, True, True], [False] * 4]
    mean, stderr = avg_at_k(matrix)
    assert mean == pytest.approx(0.5)
    # sample variance: ((-.25)^2 + .25^2 + .5^2 + .5^2) / 3 = 0.625 / 3; stderr = sqrt(var / 4)
    assert stderr == pytest.approx(math.sqrt(0.625 / 3 / 4))


def test_avg_at_k_single_problem_and_empty():
    assert avg_at_k([[1, 0]]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        avg_at_k([])
    with pytest.raises(ValueError):
        avg_at_k([[]])


def test_majority_vote():
    # the correct answer written two ways still forms one block of votes
    assert majority_correct(["1/2", "0.5", "3", None], [True, True, False, False]) == 1.0
    assert majority_correct(["3", " 3", "1/2", "7"], [False, False, True, False]) == 0.0
    assert majority_correct(["3", "1/2"], [False, True]) == 0.5          # a tie splits the credit
    assert majority_correct([None, None], [False, False]) == 0.0
    mean, stderr = maj_at_k([["2", "2", "5"], ["4", "9", "9"]], [[True, True, False], [True, False, False]])
    assert (mean, stderr) == (pytest.approx(0.5), pytest.approx(0.5))


def test_metric_names():
    assert metric_name("avg@k", 64) == "avg@64"
    assert metric_name("maj@k", 8) == "maj@8"
    assert metric_name("pass@16", 128) == "pass@16"
