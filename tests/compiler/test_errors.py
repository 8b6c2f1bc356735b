"""One test per kind of spec error: the message says what/why/fix and points at the right line.

Each test introduces one mistake into a small valid spec (conftest.MINI) and runs the real CLI
(`rlspec check`): exit code 1, no traceback, and `FILE:LINE:COL path: message` on stderr.
"""

from __future__ import annotations

import re

import pytest

from rlspec.compiler.cli import main

from conftest import MINI


def check(path, capsys) -> tuple[int, str]:
    rc = main(["check", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the nth line containing needle."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def expect(err: str, path, line: int, dotted: str, *fragments: str) -> str:
    """Find the error line for `dotted` at `line` and check it contains every fragment."""
    pattern = re.compile(rf"^{re.escape(str(path))}:{line}:\d+ {re.escape(dotted)}: (.*)$", re.M)
    m = pattern.search(err)
    assert m, f"no error for {dotted} at line {line} in:\n{err}"
    for frag in fragments:
        assert frag in m.group(1), f"{frag!r} not in {m.group(1)!r}"
    return m.group(1)


def test_valid_spec_passes(write_spec, capsys):
    path = write_spec(MINI)
    assert main(["check", str(path)]) == 0
    assert "ok (1 grid cell" in capsys.readouterr().out


def test_malformed_yaml(write_spec, capsys):
    text = MINI.replace("  path: org/model", "  path: [org/model")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+ <root>: invalid YAML", err, re.M)


def test_wrong_type(write_spec, capsys):
    text = MINI.replace("    steps: 10\n", "    steps: ten\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "steps: ten"), "stages[0].steps", "expected a whole number ≥ 1",
           "(Optimiser steps", "got the text 'ten'")


def test_unknown_key_suggests(write_spec, capsys):
    text = MINI.replace("    group_size: 4\n", "    grup_size: 4\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "grup_size"), "stages[0].grup_size",
           "unknown key 'grup_size'", "did you mean 'group_size'?", "valid keys here:")


def test_unknown_kind_suggests(write_spec, capsys):
    text = MINI.replace("kind: dedup_exact", "kind: dedup_exakt")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "dedup_exakt"), "datasets.math.filters[0].kind",
           "unknown kind 'dedup_exakt'", "did you mean 'dedup_exact'?", "valid kinds:")


def test_bad_choice_suggests(write_spec, capsys):
    text = MINI.replace("  max_context: 4096\n", "  max_context: 4096\n  dtype: bfloat61\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "bfloat61"), "model.dtype", "'bfloat61' is not allowed",
           "did you mean 'bfloat16'?")


def test_missing_required_key(write_spec, capsys):
    text = MINI.replace("    max_response_tokens: 2048\n", "")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "- name: s2"), "stages[1].max_response_tokens",
           "required key missing", "Response length budget", "add `max_response_tokens:`")


def test_duplicate_key(write_spec, capsys):
    text = MINI.replace("seed: 3\n", "seed: 3\nseed: 4\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "seed: 4"), "seed", "duplicate key 'seed' (first at line 2)")


def test_bad_name(write_spec, capsys):
    text = MINI.replace("name: mini", "name: my experiment!")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, 1, "name", "not a valid name")


def test_empty_and_non_map(write_spec, capsys):
    path = write_spec("# nothing here\n")
    rc, err = check(path, capsys)
    assert rc == 1 and "the spec is empty" in err
    path = write_spec("- a\n- b\n", "list.yaml")
    rc, err = check(path, capsys)
    assert rc == 1 and "must be a map" in err


def test_missing_spec_file(tmp_path, capsys):
    rc, err = check(tmp_path / "nope.yaml", capsys)
    assert rc == 1 and "spec file not found" in err


def test_extends_missing_file(write_spec, capsys):
    text = "extends: base.yaml\n" + MINI
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, 1, "extends", "base spec 'base.yaml' not found")


def test_extends_cycle(write_spec, capsys):
    write_spec("extends: b.yaml\nname: a\n", "a.yaml")
    path = write_spec("extends: a.yaml\nname: b\n", "b.yaml")
    rc, err = check(path, capsys)
    assert rc == 1
    assert "`extends` forms a cycle" in err and "a.yaml" in err


def test_grid_path_does_not_exist(write_spec, capsys):
    text = MINI + "grid:\n  axes:\n    - path: stages[1].max_respons_tokens\n      values: [1024, 2048]\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "max_respons_tokens"), "grid.axes[0].path",
           "does not exist", "no field 'max_respons_tokens'", "did you mean 'max_response_tokens'?")


def test_grid_index_out_of_range(write_spec, capsys):
    text = MINI + "grid:\n  axes:\n    - path: stages[5].steps\n      values: [1, 2]\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "stages[5]"), "grid.axes[0].path", "index 5 is out of range")


def test_grid_unknown_stage_name(write_spec, capsys):
    text = MINI + "grid:\n  axes:\n    - path: stages[s9].steps\n      values: [1, 2]\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "stages[s9]"), "grid.axes[0].path", "no entry named 's9'")


def test_grid_value_wrong_type_points_at_value(write_spec, capsys):
    text = MINI + "grid:\n  axes:\n    - path: stages[s2].steps\n      values:\n        - 20\n        - lots\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "- lots"), "stages[1].steps", "expected a whole number", "got the text 'lots'")


def test_grid_zip_unequal(write_spec, capsys):
    text = MINI + ("grid:\n  mode: zip\n  axes:\n    - {path: seed, values: [1, 2]}\n"
                   "    - {path: 'stages[0].steps', values: [1, 2, 3]}\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "mode: zip"), "grid.mode", "`zip` needs axes of equal length")


def test_group_size_below_two(write_spec, capsys):
    text = MINI.replace("    group_size: 4\n", "    group_size: 1\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "group_size: 1"), "stages[0].group_size", "group size 1 < 2", "set group_size ≥ 2")


def test_batch_not_divisible_by_ranks(write_spec, capsys):
    text = MINI.replace("    prompts_per_step: 8\n", "    prompts_per_step: 3\n", 1) + \
        "resources:\n  train: {gpus: 8}\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "prompts_per_step: 3"), "stages[0].prompts_per_step",
           "prompts_per_step 3 is not divisible by the 8 training ranks", "so 5 ranks would sit idle")


def test_lengths_exceed_context(write_spec, capsys):
    text = MINI.replace("    max_response_tokens: 2048\n", "    max_response_tokens: 4000\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "max_response_tokens: 4000"), "stages[1].max_response_tokens",
           "2048 + 4000 = 6048 tokens exceeds model.max_context (4096)")


def test_unknown_dataset_reference(write_spec, capsys):
    text = MINI.replace("    datasets: [math]\n", "    datasets: [maths]\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "[maths]"), "stages[0].datasets[0]", "dataset 'maths' is not declared")


def test_off_policy_without_clipping(write_spec, capsys):
    text = MINI + "algorithm:\n  updates_per_batch: 4\n  clip: {low: null}\n"
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    # Inherited by both stages from the top-level default: reported once, at the user's line.
    msg = expect(err, path, line_of(text, "clip: {low: null}"), "algorithm.clip", "updates_per_batch = 4 with clipping disabled")
    assert err.count(msg) == 1


def test_stage_override_located_in_stage(write_spec, capsys):
    text = MINI.replace("    group_size: 4\n", "    group_size: 4\n    algorithm: {updates_per_batch: 2, clip: {high: null}}\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "updates_per_batch: 2"), "stages[0].algorithm.clip", "clipping disabled")


def test_shrinking_length_is_a_warning(write_spec, capsys):
    text = MINI.replace("    max_response_tokens: 2048\n", "    max_response_tokens: 512\n")
    path = write_spec(text)
    rc = main(["check", str(path)])
    err = capsys.readouterr().err
    assert rc == 0
    expect(err, path, line_of(text, "max_response_tokens: 512"), "stages[1].max_response_tokens",
           "warning:", "shorter than the previous stage's 1024")


def test_decontaminate_unknown_benchmark(write_spec, capsys):
    text = MINI.replace("      - kind: decontaminate\n", "      - kind: decontaminate\n        benchmarks: [aime24]\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "[aime24]"), "datasets.math.filters[1].benchmarks[0]",
           "benchmark 'aime24' is not declared")


def test_steps_and_epochs(write_spec, capsys):
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    epochs: 2\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, "- name: s1"), "stages[0]", "exactly one of `steps` and `epochs`")


def test_every_problem_at_once_sorted_by_line(write_spec, capsys):
    text = (MINI.replace("seed: 3", "sed: 3")
            .replace("    group_size: 4\n", "    group_size: 1\n", 1)
            .replace("    datasets: [math]\n", "    datasets: [maths]\n", 2))
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    lines = [int(m) for m in re.findall(rf"^{re.escape(str(path))}:(\d+):", err, re.M)]
    assert len(lines) >= 4, err
    assert lines == sorted(lines)
    assert "sed" in err and "group size 1" in err and "'maths'" in err
    assert err.strip().endswith("errors")


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "true", "[1]"])
def test_numbers_validate(write_spec, capsys, value):
    text = MINI.replace("    prompts_per_step: 8\n", f"    prompts_per_step: {value}\n", 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, f"prompts_per_step: {value}"), "stages[0].prompts_per_step")


@pytest.mark.parametrize("old,new,dotted,not_also", [
    ("    steps: 10\n", "    steps: 0\n", "stages[0].steps", "set exactly one of `steps`"),
    ("  path: org/model\n", "  path: 3\n", "model.path", "set exactly one of `path`"),
])
def test_failed_key_is_not_reported_again_as_missing(write_spec, capsys, old, new, dotted, not_also):
    """The cross-field rules still run on a spec with bad values (the bad keys dropped); a rule that
    then only sees the dropped key's default must not add a second, wrong message."""
    text = MINI.replace(old, new, 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    expect(err, path, line_of(text, new.strip()), dotted, "expected")
    assert not_also not in err, err
