"""The math grader never raises, whatever a policy writes: every item gets a Grade with a status.

Each input here made the original grader raise for the whole batch (RecursionError from the exact
path at 198 nested parentheses, 142 nested square roots, a 166-deep continued fraction, 990
leading minus signs; ValueError for a run of 4,301 digits), or cost seconds of math-verify time
before a verdict (huge answers), or was parsed although it is no answer (NUL bytes). The sizes are
well above those thresholds, since the recursion depth at which a parser breaks depends on how
deep the caller's stack already is. Real math-verify, real pool; no mocks except where a test
says so.
"""

import time

import pytest

from rlspec.runtime.reward import grade_math, mathgrade
from rlspec.runtime.reward.grade import MATH_STATUSES


def boxed(answer: str) -> str:
    return f"<think>work</think>So the answer is $\\boxed{{{answer}}}$."


DEEP = {
    "parentheses": "(" * 250 + "1" + ")" * 250,
    "square roots": "\\sqrt{" * 200 + "2" + "}" * 200,
    "continued fraction": "1+\\frac{1}{" * 200 + "1" + "}" * 200,
    "minus signs": "-" * 1200 + "1",
    "digits": "7" * 5000,
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_inputs_that_broke_the_parsers_are_refused_not_raised(name):
    grades = grade_math([boxed(DEEP[name]), boxed("2")], ["2", "2"])
    assert grades[0].status == "refused" and grades[0].reward == 0.0
    assert "refused before parsing" in grades[0].detail
    assert grades[1].status == "correct"  # the rest of the batch is graded as usual


@pytest.mark.parametrize("name", sorted(DEEP))
def test_the_exact_path_alone_survives_them_too(name):
    """Behind the screen, the exact path itself no longer recurses per sign or breaks on digits."""
    assert mathgrade.exact_verdict(DEEP[name], "2") in (True, False, None)


def test_answers_just_inside_the_limits_are_graded():
    """(Nested square roots rather than parentheses: math-verify's own extraction slows down with
    nested parentheses, 3 s at 20 levels, and would answer "timeout".)"""
    depth, signs = mathgrade.MAX_DEPTH, mathgrade.MAX_SIGNS
    nested = "\\sqrt{" * depth + "2" + "}" * depth
    grades = grade_math([boxed(nested), boxed("-" * signs + "2"), boxed("3" * mathgrade.MAX_DIGITS)], [nested, "2", "3"])
    assert [g.status for g in grades] == ["correct", "correct", "wrong"]


def test_huge_inputs_cost_no_parsing():
    """A 2 MB answer went to math-verify (seconds per item, then "timeout"); a 5 MB response
    whose final text is a wall of unclosed boxes was rescanned once per box."""
    responses = [boxed("1+" * 1_000_000 + "1"), "</think>" + "\\boxed{" * 100_000 + "2",
                 "<think>" + "x" * 5_000_000 + "</think>\\boxed{2}"]
    start = time.monotonic()
    grades = grade_math(responses, ["2", "2", "2"])
    assert time.monotonic() - start < 5
    assert [g.status for g in grades] == ["refused", "no_answer", "correct"]
    assert len(grades[0].answer) < 300  # the grade carries a preview, not megabytes


def test_control_characters_and_unbalanced_braces():
    grades = grade_math([boxed("1\x002"), "</think>\\boxed{\\frac{1}{2}", boxed("(1,2"), boxed("\\frac{1}{2}}")],
                        ["12", "\\frac{1}{2}", "(1,2)", "\\frac{1}{2}"])
    assert grades[0].status == "refused" and "control character" in grades[0].detail
    assert grades[1].status == "no_answer"  # the only box never closes
    assert {g.status for g in grades} <= set(MATH_STATUSES)


def test_a_reference_over_the_limits_is_an_error_not_the_policys_fault():
    grades = grade_math([boxed("1"), boxed("1")], ["(" * 100 + "1" + ")" * 100, "1"])
    assert grades[0].status == "error" and "fix the data" in grades[0].detail
    assert grades[1].status == "correct"


def test_non_string_inputs_give_error_grades():
    grades = grade_math([None, boxed("2"), 7], ["2", "2", "7"])
    assert [g.status for g in grades] == ["error", "correct", "error"]
    assert "grader raised" in grades[0].detail


def test_any_exception_in_one_item_is_that_items_error(monkeypatch):
    """Stand-in for a grader bug we do not know yet: the exact path raises for one answer."""
    real = mathgrade.exact_verdict

    def broken(answer, reference):
        if answer == "13":
            raise RuntimeError("a bug")
        return real(answer, reference)

    monkeypatch.setattr(mathgrade, "exact_verdict", broken)
    grades = grade_math([boxed("12"), boxed("13"), boxed("14")], ["12", "13", "14"])
    assert [g.status for g in grades] == ["correct", "error", "correct"]
    assert grades[1].reward == 0.0 and "RuntimeError: a bug" in grades[1].detail


def test_a_failing_pool_fails_only_its_items(monkeypatch):
    """Stand-in for a pool that cannot start (fork refused): the exact path's grades survive."""
    def no_pool(workers):
        raise OSError("fork refused")

    monkeypatch.setattr(mathgrade, "_pool", no_pool)
    grades = grade_math([boxed("12"), boxed("\\sqrt{12}")], ["12", "2\\sqrt{3}"])
    assert grades[0].status == "correct"
    assert grades[1].status == "error" and "fork refused" in grades[1].detail


def test_the_numeric_pre_check_gives_up_within_its_budget():
    """A 20-deep continued fraction spent 3 s in the pre-check's evalf (5 s in all before
    math-verify's own timeout). Now the pre-check stops after PRECHECK_SECONDS and leaves the pair
    to math-verify. (The original code had no budget and no ``_values``: this test fails there.)"""
    from math_verify import parse

    gold = parse("$\\frac{1+\\sqrt{5}}{2}$")
    pred = parse("\\boxed{" + "1+\\frac{1}{" * 20 + "1" + "}" * 20 + "}")
    start = time.monotonic()
    assert mathgrade._values(gold, pred) is None
    assert time.monotonic() - start < mathgrade.PRECHECK_SECONDS + 0.5


def test_code_extraction_is_linear_in_the_response():
    """Fences are found in one pass: 4x the text costs about 4x the time (the old regex scanned to
    the end of the text from every ``` and cost 16x). A ratio within one run, not an absolute time."""
    import time

    from rlspec.runtime.reward.extract import python_code

    def cost(n: int) -> float:
        text = "</think>" + "```p " * n
        t0 = time.perf_counter()
        for _ in range(20):
            assert python_code(text) is None
        return time.perf_counter() - t0

    small, large = cost(5_000), cost(20_000)
    assert large / max(small, 1e-9) < 10
