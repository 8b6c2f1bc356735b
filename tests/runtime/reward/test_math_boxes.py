"""The answer-reading knobs: ``boxes`` ("last_box" / "all_boxes") and ``unboxed_fallback``.

Extraction is tested on strings; the grading tests run the real grader (exact path, math-verify
pool) end to end.
"""

import pytest

from rlspec.runtime.reward import grade_math
from rlspec.runtime.reward.extract import final_box_group, math_answer, stated_answer


def status(response: str, reference: str, **knobs) -> str:
    return grade_math([response], [reference], **knobs)[0].status


# ------------------------------------------------------------------ all_boxes: the final group


@pytest.mark.parametrize("text, group", [
    (r"The roots are $x = \boxed{-3}$ and $x = \boxed{5}$.", "-3, 5"),
    (r"\boxed{1}, \boxed{2}, \boxed{3}", "1, 2, 3"),
    (r"$\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}$", "(2, 2), (6, 2)"),
    (r"\boxed{1}\boxed{2}", "1, 2"),  # adjacent boxes
    (r"There are $\boxed{9}$ chickens and $\boxed{10}$ rabbits.", "9, 10"),
    (r"So \boxed{5}. The checks above confirm it.\n\n**Final Answer**\n\boxed{5}", "5"),  # a repeat counts once
    (r"\boxed{5} \boxed{5} \boxed{7}", "5, 7"),
    (r"Either $\boxed{\{-4, -1\}}$ or $\boxed{-4}$.", "-4, -1, -4"),  # a boxed set joins as its members
])
def test_all_boxes_takes_the_final_group_of_boxes(text, group):
    assert final_box_group(text) == group


@pytest.mark.parametrize("text, group", [
    (r"First guess $\boxed{3}$. That fails the check, so after recomputing, it is $\boxed{5}$", "5"),
    (r"\boxed{1} no no no no no \boxed{2}", "2"),  # far apart, no separator
    (r"\boxed{3}" + " filler" * 12 + r", and \boxed{4}", "4"),  # a separator, but 70+ characters away
    (r"\boxed{3}" + "\n\n" + r"**Final Answer**, \boxed{4}", "4"),  # a sentence break
    (r"\boxed{\boxed{5}}", "5"),  # a box around the group ends it
    (r"\boxed{1}, \boxed{2", "1"),  # the truncated last box is no answer; the one before it is
])
def test_all_boxes_leaves_out_earlier_attempts(text, group):
    assert final_box_group(text) == group


def test_all_boxes_grades_roots_sets_and_tuples_boxed_one_by_one():
    knobs = dict(boxes="all_boxes")
    assert status(r"</think>The roots are $x = \boxed{-3}$ and $x = \boxed{5}$.", "-3, 5", **knobs) == "correct"
    assert status(r"</think>The roots are $x = \boxed{5}$ and $x = \boxed{-3}$.", "\\{-3, 5\\}", **knobs) == "correct"
    assert status(r"</think>$\boxed{(2, 2)}$ and $\boxed{(6, 2)}$", "(2, 2), (6, 2)", **knobs) == "correct"
    assert status(r"</think>The roots are $x = \boxed{-3}$ and $x = \boxed{6}$.", "-3, 5", **knobs) == "wrong"
    assert status(r"</think>The roots are $x = \boxed{-3}$ and $x = \boxed{5}$.", "-3, 5") == "wrong"  # last_box: only 5


def test_all_boxes_pays_nothing_for_hedging():
    for hedge in [r"Either $\boxed{5}$ or $\boxed{7}$.", r"It is $\boxed{5}$, $\boxed{6}$, $\boxed{7}$."]:
        assert status("</think>" + hedge, "5", boxes="all_boxes") == "wrong"


def test_last_box_stays_the_default():
    assert math_answer(r"</think>\boxed{1} and \boxed{2}") == "2"
    assert status(r"</think>\boxed{1} and \boxed{2}", "1, 2") == "wrong"
    assert status(r"</think>\boxed{1} and \boxed{2}", "1, 2", boxes="all_boxes") == "correct"


def test_an_unknown_box_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="last_box"):
        grade_math(["</think>\\boxed{1}"], ["1"], boxes="every_box")


# ---------------------------------------------------------------- unboxed fallback


@pytest.mark.parametrize("text, answer", [
    ("The answer is 5", "5"),
    ("So the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("Final Answer: **73**", "73"),
    ("Answer: 3\n\nWait, that is wrong.\n\nAnswer: 5", "5"),  # the last statement counts
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("The answers are 9 and 10.", "9 and 10"),
    ("Therefore x = 7.", "7"),
    ("So the total is 42.", "42"),
    ("The loss is 28 percent.", "28\\%"),
    ("The probability is .4", ".4"),
    ("We get\n$x = 3$", "x = 3"),
    ("The answer is $1,234.00", "1,234.00"),  # money outside math, not a math span
])
def test_stated_answer_reads_the_final_statement(text, answer):
    assert stated_answer(text) == answer


@pytest.mark.parametrize("text", [
    "I could not finish the computation.",
    "The answer is \\boxed{12",  # a truncated box is no answer: no fallback
    "The answer is $\\boxed{}$",  # nor is an empty one
    "",
])
def test_stated_answer_finds_nothing_where_nothing_is_stated(text):
    assert stated_answer(text) is None


def test_unboxed_fallback_is_off_by_default():
    assert status("<think>...</think>The answer is 17.", "17") == "no_answer"
    assert status("<think>...</think>The answer is 17.", "17", unboxed_fallback=True) == "correct"
    assert status("<think>...</think>The answer is 18.", "17", unboxed_fallback=True) == "wrong"


def test_a_box_wins_over_a_stated_answer_and_thinking_never_counts():
    response = r"<think>the answer is 17</think>The answer is 16, that is $\boxed{17}$."
    assert status(response, "17", unboxed_fallback=True) == "correct"
    assert status("<think>the answer is 17</think>I give up.", "17", unboxed_fallback=True) == "no_answer"


def test_spec_fallback_patterns_come_before_the_unboxed_fallback():
    response = "</think>Result: 12. The answer is 13."
    assert math_answer(response, fallbacks=[r"Result: (\d+)"], unboxed=True) == "12"
    assert math_answer(response, unboxed=True) == "13"


def test_plain_mixed_numbers_are_read_as_mixed_numbers():
    """math-verify 0.9 reads "2 2/3" as 4/3; the grader hands it 2\\frac{2}{3} (= 8/3)."""
    assert status(r"</think>$\boxed{2 2/3}$", "\\frac{8}{3}") == "correct"
    assert status(r"</think>$\boxed{2 2/3}$", "2") == "wrong"
    assert status("</think>The answer is 4 4/9.", "\\frac{40}{9}", unboxed_fallback=True) == "correct"
