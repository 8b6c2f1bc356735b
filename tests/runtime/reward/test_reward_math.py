"""Math grader: statuses, order, the exact path's agreement with math-verify, timeouts.

All checks use the real math-verify (in this process's main thread for reference verdicts, and in
the grader's forked pool).
"""

import itertools
import os
import random
import signal
import time

import pytest
from math_verify import parse, verify

from rlspec.runtime.reward import Grade, grade_math
from rlspec.runtime.reward.grade import MATH_STATUSES
from rlspec.runtime.reward.killpool import KillPool
from rlspec.runtime.reward.mathgrade import _POOLS, exact_verdict, wrap_reference


def boxed(answer: str) -> str:
    return f"<think>let me think \\boxed{{0}}</think>The answer is $\\boxed{{{answer}}}$."


def test_statuses_and_input_order():
    responses = [boxed("\\frac{1}{2}"), boxed("3"), "<think>never finished \\boxed{7}", boxed("\\sqrt{12}"), boxed("x^2")]
    grades = grade_math(responses, ["0.5", "4", "7", "2\\sqrt{3}", "x^{2}"])
    assert [g.status for g in grades] == ["correct", "wrong", "no_answer", "correct", "correct"]
    assert [g.reward for g in grades] == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert grades[0].answer == "\\frac{1}{2}" and grades[0].detail == "exact"
    assert grades[3].detail == "math-verify"
    assert all(isinstance(g, Grade) for g in grades)


def test_think_end_none_grades_the_whole_text_and_fallbacks_work():
    assert grade_math(["\\boxed{5}"], ["5"], think_end=None)[0].status == "correct"
    grades = grade_math(["</think>so the answer is 17"], ["17"], fallbacks=[r"answer is\s*(\d+)"])
    assert grades[0].status == "correct"


def test_bare_latex_reference_is_wrapped_for_math_verify():
    # Bare "2^{1/2}" parses as 2 in math-verify; wrapped it is sqrt(2).
    assert wrap_reference("2^{1/2}") == "$2^{1/2}$"
    assert grade_math([boxed("\\sqrt{2}")], ["2^{1/2}"])[0].status == "correct"
    assert grade_math([boxed("2")], ["2^{1/2}"])[0].status == "wrong"
    assert grade_math([boxed("(1,2)")], ["(1, 2)"])[0].status == "correct"


FORMS = [
    "0", "1", "2", "-2", "007", "12", "1000", "12345678901234567890", "12345678901234567891",
    "0.5", "0.50", "1.5", "-0.5", "0.333333", "0.3333", "3.14", "2.0", "5.",
    "1/2", "2/4", "3/2", "-1/2", "1/3", "\\frac{1}{2}", "\\dfrac{1}{2}", "\\tfrac{3}{2}", "\\frac{-1}{2}",
    "-\\frac{1}{2}", "\\frac{4}{2}", "\\frac{1}{3}", "\\frac12", "30^\\circ", "30^{\\circ}", "30",
    "10\\%", "0.1", "1,000", "2\\sqrt{3}", "\\sqrt{12}", "(1,2)", "[1,2)", "\\{1,2\\}", "x=2", "x^{2}",
    "\\pi", "\\infty", "\\text{Tuesday}", "a", "b", "5\\text{ cm}", "\\frac{\\pi}{2}", "e", "1e3", "+3",
    "[1,2)", "[1, 2)", "[1,2]", "(1,2]", "(1,2)", "[2,1)", "[-3,0)", "(-\\infty,2]",
    "\\{1,2\\}", "\\{2, 1\\}", "\\{1,1,2\\}", "\\{1,2,3\\}", "\\{-3\\}", "-3",
    "3+2\\sqrt{2}", "2\\sqrt{2}+3", "\\frac{1+\\sqrt{5}}{2}", "4\\pi", "\\pi \\cdot 4", "2^{1/2}", "\\sqrt{2}",
    "\\sqrt[3]{27}", "2(3)", "-2^{2}", "\\frac{\\sqrt{3}}{2}", "1/2\\pi", "2^{10}", "\\left(2\\right)", "6", "-4",
    "1.4142135", "12.566371", "1024", "\\frac{1}{2}\\pi", "\\dfrac{\\pi}{2}", "2\\times 3", "\\sqrt{3}^{2}",
    "x+1", "2x", "x^{2}+1", "x-x+5", "xy", "2k+1", "n^2", "e+1", "i+1", "x+y-y", "cos", "logx", "tanx", "0x+4", "-x",
    "5", "2(3)", "(2)(3)", "2\\frac{1}{2}", "\\frac{5}{2}", "2.5", "-3\\frac{1}{4}", "-\\frac{13}{4}", "1\\,000", "1 000",
    "12 345", "4140", "357", "\\pi(3)", "3\\frac{1}{2}\\pi", "{", "x^", "(1\\}", "\\}",
]


def check_exact_path_agrees(pairs) -> int:
    """Every verdict the exact path dares to give equals math-verify's on the same pair."""
    decided = 0
    for answer, gold in pairs:
        verdict = exact_verdict(answer, gold)
        if verdict is not None:
            decided += 1
            reference = verify(parse(wrap_reference(gold)), parse(f"\\boxed{{{answer}}}"))
            assert verdict == reference, (answer, gold, verdict, reference)
    return decided


def test_exact_path_agrees_with_math_verify_on_a_sample():
    pairs = random.Random(1).sample(list(itertools.product(FORMS, repeat=2)), 400)
    assert check_exact_path_agrees(pairs) > len(pairs) // 2  # and it does take the easy traffic


@pytest.mark.slow
def test_exact_path_agrees_with_math_verify_on_every_pair():
    check_exact_path_agrees(itertools.product(FORMS, repeat=2))  # ~14,000 pairs, ~70 s (130 s on a busy machine)


def test_exact_path_declines_where_math_verify_reads_otherwise():
    """The original exact path decided each of these, and math-verify decides them the other way."""
    assert exact_verdict("2\\frac{1}{2}", "\\frac{5}{2}") is None  # a mixed number to math-verify, not 2 * 1/2
    assert exact_verdict("-3\\frac{1}{4}", "-\\frac{13}{4}") is None
    assert exact_verdict("2(3)", "5") is None  # math-verify reads 2(3) as 5
    assert exact_verdict("1\\,000", "1000") is None  # and a space between digits as a product
    assert exact_verdict("{", "{") is None  # malformed: math-verify parses the reference, not the answer


def test_exact_path_declines_when_unsure():
    assert exact_verdict("5.", "5") is None  # math-verify fails to parse "5."
    assert exact_verdict("10\\%", "0.1") is None  # math-verify rounds a percent against a decimal
    assert exact_verdict("10\\%", "10") is None  # math-verify equates it with 10 but not with \\text{10}: deferred
    assert exact_verdict("0.3333333", "\\frac{1}{3}") is None  # within float rounding: let math-verify say
    assert exact_verdict("$5$", "5") is None


def test_results_match_math_verify_on_random_traffic():
    rng = random.Random(0)
    golds = rng.sample(FORMS, 12)
    responses, references = [], []
    for gold in golds:
        for _ in range(8):
            responses.append(boxed(rng.choice(FORMS)))
            references.append(gold)
    grades = grade_math(responses, references)
    assert {g.status for g in grades} <= set(MATH_STATUSES)
    for g, gold in zip(grades, references):
        expected = verify(parse(wrap_reference(gold)), parse(f"\\boxed{{{g.answer}}}"))
        assert (g.status == "correct") == expected, (g, gold)


def test_math_verify_timeout_is_reported_as_timeout_not_wrong():
    grades = grade_math([boxed("9^{9^{9^{9}}}"), boxed("4")], ["5", "4"], timeout=1)
    assert grades[0].status == "timeout" and grades[0].reward == 0.0
    assert grades[1].status == "correct"


def test_callers_alarm_is_left_alone():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.alarm(30)
        grade_math([boxed("\\sqrt{8}"), boxed("9^{9^{9^{9}}}")], ["2\\sqrt{2}", "1"], timeout=1)
        assert 25 <= signal.alarm(0) <= 30  # still pending, not cancelled by math-verify
        assert not fired
    finally:
        signal.signal(signal.SIGALRM, old)


def test_works_from_a_thread():
    """Calling math-verify in a thread raises (SIGALRM); the grader never runs it there."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        grades = list(pool.map(lambda r: grade_math([boxed(r)], ["2\\sqrt{2}"])[0], ["\\sqrt{8}", "3"]))
    assert [g.status for g in grades] == ["correct", "wrong"]


def test_pool_is_reused_across_calls():
    grade_math([boxed("\\sqrt{4}")], ["2"], workers=2)
    pids = sorted(w.proc.pid for w in _POOLS[2].workers)
    grade_math([boxed("\\sqrt{9}")], ["3"], workers=2)
    assert sorted(w.proc.pid for w in _POOLS[2].workers) == pids


def _stuck_in_c(item):
    """Blocks every signal, as code stuck inside a C extension does, then sleeps."""
    if item == "stuck":
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        time.sleep(60)
    return item * 2


def test_hard_kill_frees_a_stuck_item_and_keeps_the_rest():
    pool = KillPool(_stuck_in_c, 2)
    try:
        start = time.monotonic()
        out = pool.map(["a", "stuck", "b", "c", "d"], hard_timeout=1.0, chunk=3)
        assert time.monotonic() - start < 10
        assert out == [("ok", "aa"), ("timeout", None), ("ok", "bb"), ("ok", "cc"), ("ok", "dd")]
        assert all(w.proc.is_alive() for w in pool.workers) and len(pool.workers) == 2
    finally:
        pool.close()


def _crash(item):
    if item == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    return item


def test_a_worker_that_dies_gives_error_for_its_item_only():
    pool = KillPool(_crash, 1)
    try:
        assert pool.map(["x", "crash", "y"], hard_timeout=5.0, chunk=3) == [("ok", "x"), ("error", "grading worker died"), ("ok", "y")]
    finally:
        pool.close()


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one reference per response"):
        grade_math(["a"], [])


def _slow_init():
    time.sleep(1.5)


def test_a_slow_worker_start_never_counts_against_an_item():
    pool = KillPool(_stuck_in_c, 1, init=_slow_init)
    try:
        assert pool.map(["a", "b"], hard_timeout=0.5) == [("ok", "aa"), ("ok", "bb")]
        assert pool.map(["stuck", "c"], hard_timeout=0.5, chunk=2) == [("timeout", None), ("ok", "cc")]
    finally:
        pool.close()
