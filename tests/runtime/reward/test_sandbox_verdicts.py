"""Verdicts as Python's == (and LiveCodeBench's grader) decide them, with a float tolerance on by default.

Expected values stored as JSON lose tuple/list, set and int-key distinctions; ``expected_repr``
keeps them (read with ast.literal_eval). LiveCodeBench compares a call's result with ``==`` after
turning a returned tuple into a list (top level only), and its expected values come from JSON.
"""

import pytest

from rlspec.runtime.reward import grade_code


def py(code: str) -> str:
    return f"</think>\n```python\n{code}\n```"


def call(body: str, expected=None, expected_repr: str | None = None, **kwargs) -> str:
    case = {"fn_name": "f", "args": []}
    case.update({"expected_repr": expected_repr} if expected_repr is not None else {"expected": expected})
    return grade_code([py(f"def f():\n    return {body}")], [[case]], **kwargs)[0].status


@pytest.mark.parametrize("body, expected", [
    ("1", True), ("0", False), ("True", 1), ("[1, 0]", [True, False]), ("{'a': 1}", {"a": True}),
])
def test_zero_and_one_equal_the_bools_expected(body, expected):
    """1 == True in Python, and so in the benchmark's own check: a 0/1 answer is not wrong."""
    assert call(body, expected) == "pass"


@pytest.mark.parametrize("body, expected, status", [
    ("(1, 2)", [1, 2], "pass"),  # a returned tuple counts as the list expected (LiveCodeBench)
    ("[(1, 2), (3, 4)]", [[1, 2], [3, 4]], "wrong"),  # ... at the top level only, as there
    ("[1, 2]", [1, 2], "pass"),
    ("{3, 1, 2}", [1, 2, 3], "wrong"),  # a set is not a list
    ("{1: 'a'}", {"1": "a"}, "wrong"),  # int keys are not the string keys JSON expects
])
def test_json_expected_values(body, expected, status):
    assert call(body, expected) == status


@pytest.mark.parametrize("body, expected_repr, status", [
    ("(1, 2)", "(1, 2)", "pass"),
    ("[1, 2]", "(1, 2)", "wrong"),  # a list where a tuple is expected
    ("(1, 2)", "[1, 2]", "pass"),  # the top-level tuple rule still holds for a literal list
    ("[(1, 2)]", "[(1, 2)]", "pass"),
    ("[[1, 2]]", "[(1, 2)]", "wrong"),
    ("{3, 1, 2}", "{1, 2, 3}", "pass"),
    ("[1, 2, 3]", "{1, 2, 3}", "wrong"),
    ("set()", "set()", "pass"),
    ("{1: 'a', (2, 3): None}", "{1: 'a', (2, 3): None}", "pass"),
    ("{'1': 'a'}", "{1: 'a'}", "wrong"),
    ("1", "True", "pass"),
    ("b'x'", "b'x'", "pass"),
])
def test_expected_values_stored_as_python_literals_keep_their_type(body, expected_repr, status):
    assert call(body, expected_repr=expected_repr) == status


def test_expected_repr_is_read_as_a_literal_never_evaluated():
    with pytest.raises(ValueError, match="expected_repr|function-call test case"):
        grade_code([py("def f():\n    return 1")], [[{"fn_name": "f", "args": [], "expected_repr": "__import__('os')"}]])


def test_float_results_get_a_tolerance_by_default():
    assert call("0.1 + 0.2", 0.3) == "pass"
    assert call("0.1 + 0.2", expected_repr="0.3") == "pass"
    assert call("0.33000000000000007", 0.33) == "pass"
    assert call("[0.1 + 0.2, 1]", [0.3, 1]) == "pass"
    assert call("(0.1 + 0.2,)", expected_repr="(0.3,)") == "pass"
    assert call("0.1 + 0.2", 0.3, float_tolerance=None) == "wrong"  # the knob: exact
    assert call("0.30001", 0.3) == "wrong"  # 1e-5 off: beyond 1e-6
    assert call("1e9 + 1", 1e9) == "pass"  # relative for large values: 1e-9 off
    assert call("10 ** 9 + 1", 10 ** 9) == "wrong"  # integers are exact
    assert call("float('nan')", float("nan")) == "wrong"  # nan equals nothing, as in Python
    assert call("5.0", float("inf")) == "wrong"  # no tolerance makes a number infinite
    assert call("float('inf')", float("inf")) == "pass"
    assert call("10 ** 400", 1e300) == "wrong"  # too large for a float: no crash, just not equal
    tests = [[{"input": "", "output": "inf"}]]
    assert grade_code([py("print(5.0)")], tests)[0].status == "wrong"


def test_stdout_numbers_get_the_tolerance_and_integers_never_do():
    tests = [[{"input": "", "output": "0.3 1000000000"}]]
    assert grade_code([py("print(0.1 + 0.2, 10 ** 9)")], tests)[0].status == "pass"
    assert grade_code([py("print(0.1 + 0.2, 10 ** 9 + 1)")], tests)[0].status == "wrong"
    assert grade_code([py("print(0.1 + 0.2, 10 ** 9)")], tests, float_tolerance=None)[0].status == "wrong"
    assert grade_code([py("print('0.30', '1e9')")], tests, float_tolerance=None)[0].status == "pass"  # same decimals
    big = "7" * 6000  # beyond Python's int-string limit (4,300 digits): compared as decimals
    assert grade_code([py(f"print('{big}')")], [[{"input": "", "output": big}]])[0].status == "pass"


def test_a_result_that_is_not_a_plain_value_is_refused_not_compared():
    """A class of the program's could claim to equal anything: it never reaches the comparison."""
    for cls in ("class A:\n    def __eq__(self, o):\n        return True", "class A(int):\n    pass"):
        code = f"{cls}\ndef f():\n    return A()"
        grade = grade_code([py(code)], [[{"fn_name": "f", "args": [], "expected": 0}]])[0]
        assert grade.status == "runtime_error" and "cannot be sent back" in grade.detail


def test_every_plain_type_survives_the_trip_back():
    value = "[(1, 2.5), {3, 4}, {(6, 7): {8: b'\\x00z'}}, {'\\x00tuple': [9]}, 1j, None, '\\ud800', [[]]]"
    assert call(value, expected_repr=value) == "pass"
    assert call("[frozenset({1}), {frozenset({2})}]", expected_repr="[{1}, {2}]") == "wrong"  # {2} is no member
    assert call("frozenset({1})", expected_repr="{1}") == "pass"  # as in Python, frozenset({1}) == {1}


def test_a_huge_result_is_decoded_quickly():
    """The trusted side decodes what the program sends: a few MB of tuples must cost little."""
    grade = grade_code([py("def f():\n    return [(i, i) for i in range(100_000)]")],
                       [[{"fn_name": "f", "args": [], "expected": [[i, i] for i in range(100_000)]}]])[0]
    assert grade.status == "wrong" and grade.elapsed < 2.0  # nested tuples are no lists
    grade = grade_code([py("def f():\n    return [(i, i) for i in range(100_000)]")],
                       [[{"fn_name": "f", "args": [], "expected": [(i, i) for i in range(100_000)]}]])[0]
    assert grade.status == "pass" and grade.elapsed < 2.0
