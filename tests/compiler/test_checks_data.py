"""`hf://` URIs (`compiler/uris.py`) and the data rules of `rlspec check` (`compiler/checks_data.py`):
the old dataset form warns, the documented forms parse, revisions agree, and a `fields` mapping that
names nothing in a local file is an error at that `fields` line with the file's real columns."""

from __future__ import annotations

import json

import pytest

import rlspec.compiler.checks_data  # noqa: F401  (registers its rules, as checks.py's import does)
from rlspec.compiler import uris
from rlspec.compiler.checks_data import local_source_issues
from rlspec.compiler.errors import Issue, SpecError
from rlspec.compiler.source import load_spec_file
from rlspec.compiler.validate import check_file

from conftest import MINI
from test_checks_builtin import check, error_at, line_of


# ------------------------------------------------------------------------------------------- URIs


@pytest.mark.parametrize("uri,revision,expected", [
    ("hf://datasets/acme/math", None, ("acme/math", None, "hub")),
    ("hf://datasets/acme/math@v1.2", None, ("acme/math", "v1.2", "hub")),
    ("hf://datasets/acme/math@refs%2Fpr%2F3", "refs/pr/3", ("acme/math", "refs/pr/3", "hub")),
    ("hf://datasets/acme/math", "abc123", ("acme/math", "abc123", "hub")),
    ("hf://acme/math", None, ("acme/math", None, "legacy")),
    ("hf://acme/math@main", None, ("acme/math", "main", "legacy")),
    ("hf://./data/saved", None, ("./data/saved", None, "folder")),
    ("hf:///abs/saved/folder", None, ("/abs/saved/folder", None, "folder")),
])
def test_dataset_uris_parse(uri, revision, expected):
    ref = uris.parse_dataset(uri, revision)
    assert (ref.name, ref.revision, ref.form, ref.kind) == (*expected, "dataset")


@pytest.mark.parametrize("uri,revision,problem", [
    ("hf://datasets/acme/math@v1", "v2", "pins revision 'v1', but `revision` says 'v2'"),
    ("hf://spaces/acme/demo", None, "names a space repository, not a dataset"),
    ("hf://datasets/acme/math/data/train.parquet", None, "a path inside the repository is not supported"),
    ("hf://datasets/acme/math@v1/train.parquet", None, "a file path inside the repository ('train.parquet')"),
    ("hf://datasets/acme/math@", None, "nothing after `@`"),
    ("hf://", None, "names no repository"),
    ("hf://./saved", "v1", "a local dataset folder, which has no revision"),
])
def test_dataset_uri_errors(uri, revision, problem):
    with pytest.raises(uris.UriError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        uris.parse_dataset(uri, revision)


def test_model_uris_parse_as_huggingface_hub_defines_them():
    assert uris.hub_model("hf://Qwen/Qwen2.5-7B@a1b2c3", None) == ("Qwen/Qwen2.5-7B", "a1b2c3")
    assert uris.hub_model("hf://Qwen/Qwen2.5-7B", "main") == ("Qwen/Qwen2.5-7B", "main")
    assert uris.hub_model("hf://gpt2", None) == ("gpt2", None)
    assert uris.hub_model("Qwen/Qwen2.5-7B", "v1") == ("Qwen/Qwen2.5-7B", "v1")  # a bare hub id as it is
    with pytest.raises(uris.UriError, match="names a dataset repository; a model is hf://ORG/NAME"):
        uris.parse_model("hf://datasets/acme/math")
    with pytest.raises(uris.UriError, match="but `model.revision` says 'v2'"):
        uris.parse_model("hf://Qwen/Qwen2.5-7B@v1", "v2")


# ------------------------------------------------------------------------------- check: URIs


def test_old_dataset_form_is_a_located_warning_and_the_new_form_is_quiet(write_spec, capsys):
    text = MINI.replace("      - uri: builtin://math?n=100\n", "      - uri: hf://acme/math\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 0, err
    msg = error_at(err, path, line_of(text, "hf://acme/math"), "datasets.math.sources[0].uri")
    assert msg.startswith("warning: hf://acme/math: `hf://ORG/NAME` names a model") and \
        "write hf://datasets/acme/math" in msg
    path = write_spec(text.replace("hf://acme/math", "hf://datasets/acme/math@v1"))
    rc, err = check(path, capsys)
    assert rc == 0 and "hf://" not in err, err


def test_revision_conflict_is_an_error_at_revision(write_spec, capsys):
    text = MINI.replace("      - uri: builtin://math?n=100\n",
                        "      - uri: hf://datasets/acme/math@v1\n        revision: v2\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    assert "pins revision 'v1'" in error_at(err, path, line_of(text, "revision: v2"),
                                              "datasets.math.sources[0].revision")


def test_a_dataset_uri_as_the_model_is_an_error_at_model_path(write_spec, capsys):
    text = MINI.replace("  path: org/model\n", "  path: hf://datasets/org/model\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    assert "names a dataset repository" in error_at(err, path, line_of(text, "hf://datasets/org/model"),
                                                      "model.path")


# -------------------------------------------------------------------------- check: local files


def verl_parquet(path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"data_source": "gsm8k", "prompt": [{"role": "user", "content": "What is 2 + 2?"}],
             "reward_model": {"style": "rule", "ground_truth": "4"}, "extra_info": {"index": 0}}]
    pq.write_table(pa.Table.from_pylist(rows), path)


def located_issues(path):
    """The data issues of a checked spec with their lines: from `check_file` where it runs
    `local_source_issues` (validate.py), else located here the way `check_file` locates every issue."""
    try:
        base = check_file(path).base
    except SpecError as err:
        return [(i.loc.line, Issue(i.path, i.message)) for i in err.errors]
    located = load_spec_file(path)
    return [(located.loc(i.path).line, i) for i in local_source_issues(base, path.parent)]


def spec_with_source(source_yaml: str) -> str:
    return MINI.replace("      - uri: builtin://math?n=100\n", source_yaml)


def test_a_broken_field_path_is_located_at_its_fields_key_with_the_real_columns(write_spec, tmp_path):
    verl_parquet(tmp_path / "train.parquet")
    text = spec_with_source("      - uri: train.parquet\n        fields:\n          answer: reward_model.ground_truh\n")
    [(line, issue)] = located_issues(write_spec(text))
    assert line == line_of(text, "ground_truh") and issue.path == ("datasets", "math", "sources", 0, "fields", "answer")
    assert issue.message == ("train.parquet has no 'reward_model.ground_truh': 'reward_model' has no key 'ground_truh' "
                             "(its keys are ['ground_truth', 'style']) (its columns are ['data_source', 'extra_info', "
                             "'prompt', 'reward_model']); map a column it has, or a dot path into one "
                             "(`reward_model.ground_truth`)")


def test_a_missing_column_and_a_missing_required_field(write_spec, tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": "1 + 1?", "final": "2"}) + "\n")
    text = spec_with_source("      - uri: d.jsonl\n        fields: {prompt: problem, answer: answr}\n")
    [(line, issue)] = located_issues(write_spec(text))
    assert line == line_of(text, "answr") and "d.jsonl has no 'answr' (its columns are ['final', 'problem'])" in \
        issue.message
    text = spec_with_source("      - uri: d.jsonl\n        fields: {prompt: problem}\n")
    [(line, issue)] = located_issues(write_spec(text))
    assert issue.path[-1] == "fields" and issue.message.startswith("no answer field for a math dataset; map it from "
                                                                   "one of ['final', 'problem']")


def test_known_layouts_and_good_mappings_pass(write_spec, tmp_path):
    verl_parquet(tmp_path / "train.parquet")
    assert located_issues(write_spec(spec_with_source("      - uri: train.parquet\n"))) == []
    text = spec_with_source("      - uri: train.parquet\n        fields: {id: extra_info.index}\n")
    assert located_issues(write_spec(text)) == []


def test_an_unreadable_local_file_is_an_error_at_its_uri(write_spec, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "answer": "1"}\n{oops\n')
    text = spec_with_source("      - uri: d.jsonl\n")
    [(line, issue)] = located_issues(write_spec(text))
    assert line == line_of(text, "d.jsonl") and "cannot read d.jsonl (ValueError: line 2" in issue.message


def test_the_model_job_fetches_the_revision_named_after_the_at(tmp_path):
    """`runtime.model.locate` with the real `snapshot_download`, offline, from a local hub cache whose
    tag `v1` and `main` are different commits (standing in for the hub)."""
    import os
    import subprocess
    import sys
    repo = tmp_path / "hub" / "models--org--tiny"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text(json.dumps({"commit": commit}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    (repo / "refs" / "v1").write_text("a" * 40)
    code = ("import sys\nfrom rlspec.compiler.jobs import ModelName\nfrom rlspec.runtime.model import locate\n"
            "for name, rev in [('hf://org/tiny@v1', None), ('org/tiny@v1', 'v1'), ('org/tiny', None)]:\n"
            "    print(locate(ModelName(kind='hub', name=name, revision=rev, fingerprint=None), None)[1])\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["a" * 40, "a" * 40, "b" * 40]


def test_a_local_file_of_an_unknown_type_is_an_error_at_its_uri(write_spec, tmp_path):
    (tmp_path / "d.txt").write_text("What is 2 + 2?\n")
    text = spec_with_source("      - uri: d.txt\n")
    [(line, issue)] = located_issues(write_spec(text))
    assert line == line_of(text, "d.txt") and issue.message.startswith("'d.txt' is not a data file rlspec reads "
                                                                       "(type '.txt'); use one of ['.jsonl'")
