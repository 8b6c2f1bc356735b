"""A grid axis that changes nothing is reported at the axis: the resolved cell specs (stages after
their top-level defaults are merged in) are compared, not the values written."""

from __future__ import annotations

from rlspec.compiler.validate import check_file

from conftest import MINI

OVERRIDDEN = MINI.replace("    group_size: 4\n", "    group_size: 4\n    algorithm: {optimizer: {lr: 2.0e-6}}\n")


def warnings_of(path) -> dict[tuple, tuple[int, str]]:
    return {w.path: (w.loc.line, w.message) for w in check_file(path).warnings}


def grid(path: str, values: str) -> str:
    return f"grid:\n  axes:\n    - path: {path}\n      values: {values}\n    - {{path: seed, values: [1, 2]}}\n"


def test_top_level_default_every_stage_overrides_is_reported(write_spec):
    assert OVERRIDDEN.count("lr: 2.0e-6") == 2  # both stages set their own learning rate
    text = OVERRIDDEN + grid("algorithm.optimizer.lr", "[1.0e-6, 5.0e-6]")
    path = write_spec(text)
    assert len(check_file(path).cells) == 4
    line, msg = warnings_of(path)[("grid", "axes", 0, "path")]
    assert line == text.splitlines().index("    - path: algorithm.optimizer.lr") + 1
    assert msg.startswith("grid axis 'lr' changes nothing: every stage sets `algorithm.optimizer.lr` itself")
    assert "put the axis on the stages (`stages[NAME].algorithm.optimizer.lr`)" in msg
    assert ("grid", "axes", 1, "path") not in warnings_of(path)  # the seed axis does change the cells


def test_axis_that_reaches_a_stage_is_not_reported(write_spec):
    one_override = MINI.replace("    group_size: 4\n", "    group_size: 4\n    algorithm: {optimizer: {lr: 2.0e-6}}\n", 1)
    path = write_spec(one_override + grid("algorithm.optimizer.lr", "[1.0e-6, 5.0e-6]"))
    assert not any(p[:2] == ("grid", "axes") for p in warnings_of(path))


def test_two_values_with_the_same_effect_are_reported(write_spec):
    path = write_spec(MINI + grid("stages[s1].steps", "[10, 20, 20]"))
    _, msg = warnings_of(path)[("grid", "axes", 0, "path")]
    assert "the values 20 and 20 give the same resolved spec" in msg
