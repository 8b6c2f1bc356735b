"""YAML 1.1 merge keys (`<<: *anchor`, `<<: [*a, *b]`) as the README's anchor reuse needs them.

Explicit keys win over merged ones, earlier maps in a merge list win over later ones (the same data
`yaml.safe_load` builds), real duplicate keys are still errors, and every value keeps the location
where it is written: a merged value points at the anchor's line, an overriding one at its own.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from rlspec.compiler.errors import SpecError
from rlspec.compiler.source import parse_yaml
from rlspec.compiler.validate import check_file

from conftest import MINI

ANCHORED = MINI.replace("name: mini\n", """\
name: mini
x-src: &src
  uri: builtin://math?n=100
  fields: {prompt: question}
  limit: 50
""").replace("      - uri: builtin://math?n=100\n", "      - {<<: *src, fields: {prompt: problem}}\n")


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def test_override_wins_over_merged_key(write_spec):
    checked = check_file(write_spec(ANCHORED))
    source = checked.base.datasets["math"].sources[0]
    assert source.fields == {"prompt": "problem"}  # the explicit key, not the anchor's
    assert (source.uri, source.limit) == ("builtin://math?n=100", 50)  # the rest comes from the anchor


@pytest.mark.parametrize("text", [
    "x-a: &a {x: 1, y: 1}\nx-b: &b {x: 2, z: 2}\nm: {<<: [*a, *b]}\n",
    "x-a: &a {x: 1, y: 1}\nm: {x: 9, <<: *a}\n",  # the explicit key wins wherever it stands
    "x-a: &a {x: 1, y: 1}\nm: {<<: *a, x: 9}\n",
    "x-a: &a {x: 1}\nx-b: &b {<<: *a, y: 2}\nm: {<<: *b, z: 3}\nn: {<<: *b}\n",  # chained, and one anchor twice
])
def test_same_data_as_yaml_safe_load(text):
    assert parse_yaml(text, "t.yaml").data == yaml.safe_load(text)


def test_merged_value_located_at_anchor_override_at_its_own_line(write_spec):
    text = ANCHORED.replace("  limit: 50\n", "  limit: 0\n").replace("fields: {prompt: problem}}",
                                                                   "fields: {prompt: problem}, shuffle: maybe}")
    path = write_spec(text)
    with pytest.raises(SpecError) as err:
        check_file(path)
    where = {i.path: i.loc.line for i in err.value.issues}
    assert where[("datasets", "math", "sources", 0, "limit")] == line_of(text, "limit: 0")
    assert where[("datasets", "math", "sources", 0, "shuffle")] == line_of(text, "shuffle: maybe")


def test_merged_key_location_points_into_the_anchor():
    text = "x-a: &a\n  x: 1\n  y: 2\nm:\n  <<: *a\n  y: 3\n"
    located = parse_yaml(text, "t.yaml")
    assert located.key_locs[("m", "x")].line == 2  # written in the anchor
    assert located.key_locs[("m", "y")].line == 6  # the override
    assert located.value_locs[("m", "y")].line == 6


def test_real_duplicates_are_still_errors():
    with pytest.raises(SpecError, match=r"duplicate key 'x' \(first at line 2\)"):
        parse_yaml("m:\n  x: 1\n  x: 2\n", "t.yaml")
    text = "x-a: &a {y: 1, y: 2}\nm: {<<: *a}\nn: {<<: *a}\n"
    with pytest.raises(SpecError) as err:
        parse_yaml(text, "t.yaml")
    assert len(err.value.issues) == 1  # the anchor's duplicate once, not once per alias


@pytest.mark.parametrize("text,message", [
    ("m: {<<: 3}\n", "`<<` takes a map"),
    ("m: {<<: [{a: 1}, [2]]}\n", "not a sequence"),
    ("x-a: &a {q: 1}\nm: {<<: *a, <<: *a}\n", "two `<<` merge keys"),
    ("m: &m {<<: *m}\n", "merges itself"),
])
def test_bad_merges_are_located_errors(text, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_yaml(textwrap.dedent(text), "t.yaml")
    assert all(i.loc is not None for i in err.value.issues)
