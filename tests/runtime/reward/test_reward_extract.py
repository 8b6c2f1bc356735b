"""Answer extraction: think tag, last box with nesting, fallbacks, last python block."""

from rlspec.runtime.reward.extract import final_text, last_boxed, math_answer, python_code


def test_text_after_the_last_think_tag():
    assert final_text("a</think>b</think>c") == "c"
    assert final_text("no tag") is None
    assert final_text("no tag", think_end=None) == "no tag"
    assert final_text("x<|end|>y", think_end="<|end|>") == "y"


def test_last_boxed_keeps_nested_braces():
    assert last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"so \fbox{7}.") == "7"
    assert last_boxed(r"$\boxed 5$") == "5"


def test_truncated_or_empty_box_falls_back_to_an_earlier_one():
    assert last_boxed(r"\boxed{3} and \boxed{\frac{1}{") == "3"
    assert last_boxed(r"\boxed{3} and \boxed{ }") == "3"
    assert last_boxed("nothing here") is None


def test_math_answer_ignores_boxes_inside_the_thinking():
    assert math_answer(r"<think>\boxed{1}</think> final \boxed{2}") == "2"
    assert math_answer(r"<think>\boxed{1}</think> I give up") is None
    assert math_answer(r"\boxed{1} but never closed the thinking") is None


def test_fallback_patterns_apply_only_without_a_box():
    pattern = r"answer is\s*(-?\d+)"
    assert math_answer("</think>The answer is 12.", fallbacks=[pattern]) == "12"
    assert math_answer(r"</think>answer is 12, \boxed{13}", fallbacks=[pattern]) == "13"


def test_python_code_takes_the_last_python_block_after_thinking():
    resp = "<think>```python\nprint(0)\n```</think>\n```python\nprint(1)\n```\ntext\n```py\nprint(2)\n```\n```bash\nls\n```"
    assert python_code(resp) == "print(2)\n"
    assert python_code("</think> no code") is None
    assert python_code("```python\nprint(1)\n```") is None  # never closed its thinking
