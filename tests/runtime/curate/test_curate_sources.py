"""Reading sources into the normalised schema: local files, `hf://` (offline), `builtin://`.

The `hf://` tests use the real `datasets` code path with no network (HF_DATASETS_OFFLINE=1): a
`save_to_disk` folder, a folder of data files, and a hub dataset id served from a local HF cache
(`datasets`' own cache layout, as a previous online `load_dataset` leaves it).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from rlspec.compiler.jobs import DataSource
from rlspec.runtime.data.records import parse_tests, read_prompts, write_prompts
from rlspec.runtime.data.sources import SourceError, read_source

ROWS = [{"problem": "What is 2 + 2?", "solution_value": "4", "url": "u1"},
        {"problem": "What is 3 * 3?", "solution_value": "9", "url": "u2"}]


def src(uri: str, **kw) -> DataSource:
    """A source block as a job config holds it (sha256: null unless the test pins the bytes)."""
    return DataSource(**{"uri": uri, "config": None, "split": "train", "revision": None, "fields": {}, "limit": None,
                         "shuffle": False, "sha256": None, **kw})


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_with_a_field_mapping(tmp_path, suffix):
    write(tmp_path / f"d{suffix}", ROWS)
    out = read_source(src(f"d{suffix}", fields={"prompt": "problem", "answer": "solution_value"}), "math",
                      spec_dir=tmp_path)
    assert [(r["prompt"], r["answer"]) for r in out] == [("What is 2 + 2?", "4"), ("What is 3 * 3?", "9")]
    assert out[0]["meta"] == {"url": "u1"} and out[0]["source"] == f"d{suffix}" and out[0]["domain"] == "math"
    assert len({r["id"] for r in out}) == 2


def test_unknown_column_in_the_mapping_names_it_and_lists_the_columns(tmp_path):
    write(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(SourceError, match=r"d.jsonl: the field mapping names columns the source does not have "
                                          r"\(fields.answer: 'answr'\); its columns are \['problem', 'solution_value'"):
        read_source(src("d.jsonl", fields={"prompt": "problem", "answer": "answr"}), "math", spec_dir=tmp_path)


def test_missing_required_field_says_how_to_map_it(tmp_path):
    write(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(SourceError, match=r"no answer field for a math dataset; map it from one of .* "
                                          r"with `fields: \{answer: <column>\}`"):
        read_source(src("d.jsonl", fields={"prompt": "problem"}), "math", spec_dir=tmp_path)


def test_missing_file_and_changed_file(tmp_path):
    with pytest.raises(SourceError, match=r"nope.jsonl: file not found"):
        read_source(src("nope.jsonl"), "math", spec_dir=tmp_path)
    path = write(tmp_path / "d.jsonl", ROWS)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fields = {"prompt": "problem", "answer": "solution_value"}
    assert len(read_source(src("d.jsonl", fields=fields, sha256=digest), "math", spec_dir=tmp_path)) == 2
    path.write_text(path.read_text() + json.dumps(ROWS[0]) + "\n")
    with pytest.raises(SourceError, match="changed since the spec was compiled"):
        read_source(src("d.jsonl", fields=fields, sha256=digest), "math", spec_dir=tmp_path)


def test_a_mapped_field_wins_over_a_column_of_the_same_name(tmp_path):
    write(tmp_path / "d.jsonl", [{"prompt": "q", "answer": "see solution", "final": "12", "meta": {"level": 3}}])
    [r] = read_source(src("d.jsonl", fields={"answer": "final"}), "math", spec_dir=tmp_path)
    assert r["answer"] == "12" and r["meta"] == {"level": 3, "answer": "see solution"}


def test_numbers_as_answers_become_text(tmp_path):
    write(tmp_path / "d.jsonl", [{"prompt": "a", "answer": 9}, {"prompt": "b", "answer": 2.0}, {"prompt": "c"}])
    assert [r["answer"] for r in read_source(src("d.jsonl"), "math", spec_dir=tmp_path)] == ["9", "2", ""]


def test_broken_jsonl_names_the_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "answer": "1"}\n{oops\n')
    with pytest.raises(SourceError, match=r"d.jsonl: cannot read .jsonl file \(ValueError: line 2"):
        read_source(src("d.jsonl"), "math", spec_dir=tmp_path)


def test_shuffle_and_limit_are_seeded(tmp_path):
    write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(50)])
    a = read_source(src("d.jsonl", shuffle=True, limit=10), "math", spec_dir=tmp_path, seed=1)
    b = read_source(src("d.jsonl", shuffle=True, limit=10), "math", spec_dir=tmp_path, seed=1)
    c = read_source(src("d.jsonl", shuffle=True, limit=10), "math", spec_dir=tmp_path, seed=2)
    assert a == b and len(a) == 10 and a != c
    assert [r["prompt"] for r in read_source(src("d.jsonl", limit=3), "math", spec_dir=tmp_path)] == ["q0", "q1", "q2"]


def test_code_sources_normalise_test_formats(tmp_path):
    rows = [
        {"question": "Add.", "cases": json.dumps([{"input": "1 2\n", "output": "3\n"}]), "date": "2024-05-01T10:00:00"},
        {"question": "Echo.", "cases": {"inputs": ["a\n"], "outputs": ["a\n"]}, "date": "2023-01-02"},
        {"question": "Sum.", "cases": [{"args": [[1, 2]], "expected": 3}], "fn_name": "total", "date": None},
        {"question": "LCB.", "cases": json.dumps([{"input": "[1, 2]\n3", "output": "4", "testtype": "functional"}]),
         "fn_name": "f", "date": "2024-09-09"},
    ]
    write(tmp_path / "c.jsonl", rows)
    out = read_source(src("c.jsonl", fields={"prompt": "question", "tests": "cases", "release_date": "date"}), "code",
                      spec_dir=tmp_path)
    assert out[0]["tests"] == [{"input": "1 2\n", "output": "3\n"}] and out[0]["release_date"] == "2024-05-01"
    assert out[1]["tests"] == [{"input": "a\n", "output": "a\n"}]
    assert out[2]["tests"] == [{"fn_name": "total", "args": [[1, 2]], "expected": 3}] and out[2]["release_date"] is None
    assert out[3]["tests"] == [{"fn_name": "f", "args": [[1, 2], 3], "expected": 4}]


def test_bad_tests_name_the_row(tmp_path):
    write(tmp_path / "c.jsonl", [{"prompt": "x", "tests": "[{"}])
    with pytest.raises(SourceError, match=r"c.jsonl: row 0: tests are not valid JSON"):
        read_source(src("c.jsonl"), "code", spec_dir=tmp_path)


def test_builtin_source_and_wrong_domain():
    assert len(read_source(src("builtin://code?n=7"), "code")) == 7
    with pytest.raises(SourceError, match="gives math problems, but this dataset's domain is code"):
        read_source(src("builtin://math?n=2"), "code")
    with pytest.raises(SourceError, match="unknown parameter"):
        read_source(src("builtin://math?m=2"), "math")


def test_unknown_scheme():
    with pytest.raises(SourceError, match="unknown scheme; use hf://org/name, builtin://math|code or a local file"):
        read_source(src("s3://bucket/x.jsonl"), "math")


def test_parquet_round_trip_keeps_mixed_domains(tmp_path):
    math_rows = read_source(src("builtin://math?n=3"), "math")
    code_rows = read_source(src("builtin://code?n=3"), "code")
    write_prompts(tmp_path / "p.parquet", math_rows + code_rows, ["math", "code"])
    back = read_prompts(tmp_path / "p.parquet")
    assert back == math_rows + code_rows
    assert not list(tmp_path.glob(".p.parquet.tmp*"))


def test_a_curated_prompts_parquet_reads_back_as_a_source(tmp_path):
    code_rows = read_source(src("builtin://code?n=4"), "code")
    write_prompts(tmp_path / "p.parquet", code_rows, ["code"])
    again = read_source(src("p.parquet"), "code", spec_dir=tmp_path)
    assert [(r["prompt"], r["tests"], r["meta"]) for r in again] == [(r["prompt"], r["tests"], r["meta"]) for r in code_rows]


def test_apps_style_call_tests():
    assert parse_tests({"inputs": [[1, 2]], "outputs": [[3]]}, "add") == [{"fn_name": "add", "args": [1, 2], "expected": 3}]


# ---------------------------------------------------------------------------------------------- hf://


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty HF home, offline: only what a test puts there can be loaded."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(tmp_path / "hf" / "datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def test_hf_save_to_disk_folder(tmp_path, hf_home):
    import datasets
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "saved"))
    out = read_source(src("hf://saved", split="test", fields={"prompt": "problem", "answer": "solution_value"}),
                      "math", spec_dir=tmp_path)
    assert [r["answer"] for r in out] == ["4", "9"]
    with pytest.raises(SourceError, match=r"no split 'train'; it has \['test'\]"):
        read_source(src("hf://saved", fields={"prompt": "problem", "answer": "solution_value"}), "math",
                    spec_dir=tmp_path)


def test_hf_folder_of_data_files(tmp_path, hf_home):
    (tmp_path / "files").mkdir()
    write(tmp_path / "files" / "train.jsonl", ROWS)
    out = read_source(src(f"hf://{tmp_path / 'files'}", fields={"prompt": "problem", "answer": "solution_value"}),
                      "math")
    assert [r["prompt"] for r in out] == [r["problem"] for r in ROWS]


def test_hf_hub_id_from_the_local_cache_offline(tmp_path, hf_home):
    """`hf://acme/tiny-math` with no network: served from the datasets cache, as after an online load."""
    from datasets.packaged_modules.json.json import Json
    data = write(tmp_path / "train.jsonl", ROWS)
    builder = Json(dataset_name="tiny-math", data_files={"train": str(data)}, hash="0123abcd",
                   cache_dir=str(hf_home / "datasets"))
    builder.repo_id = "acme/tiny-math"  # the cache folder a hub download uses: acme___tiny-math/default/...
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()
    [config_dir] = (hf_home / "datasets" / "acme___tiny-math").glob("default-*")
    config_dir.rename(config_dir.with_name("default"))  # a hub dataset's config is named `default`
    out = read_source(src("hf://acme/tiny-math", fields={"prompt": "problem", "answer": "solution_value"}), "math")
    assert [r["answer"] for r in out] == ["4", "9"]


def test_hf_dataset_neither_cached_nor_reachable_is_a_clear_error(hf_home):
    with pytest.raises(SourceError) as err:
        read_source(src("hf://acme/not-there", split="test"), "math")
    message = str(err.value)
    assert message.startswith("hf://acme/not-there (config=None, split='test', revision=None): cannot load")
    assert "not in the local HF cache (offline mode is on)" in message


def test_hf_shuffle_and_limit_pick_the_same_rows_as_for_a_local_file(tmp_path, hf_home):
    import datasets
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(40)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    write(tmp_path / "d.jsonl", rows)
    pick = {"shuffle": True, "limit": 7}
    from_hf = read_source(src("hf://saved", **pick), "math", spec_dir=tmp_path, seed=3)
    from_file = read_source(src("d.jsonl", **pick), "math", spec_dir=tmp_path, seed=3)
    assert [r["prompt"] for r in from_hf] == [r["prompt"] for r in from_file] != [f"q{i}" for i in range(7)]


def test_expected_repr_survives_curation_and_keeps_the_tuple():
    """A function-call case may store its expected value as a Python literal (`expected_repr`), so a
    tuple stays a tuple through JSON and Parquet; the grader then tells a list from it."""
    from rlspec.compiler.jobs import Grading
    from rlspec.compiler.spec import AnswerExtraction, RewardSettings
    from rlspec.runtime.scoring import score
    (case,) = parse_tests([{"fn_name": "f", "args": [2], "expected_repr": "(2, 4)"}], None)
    assert case == {"fn_name": "f", "args": [2], "expected": None, "expected_repr": "(2, 4)"}
    record = {"id": "c0", "domain": "code", "tests": [case]}
    programs = {"tuple": "def f(x):\n    return (x, 2 * x)", "list": "def f(x):\n    return [x, 2 * x]"}
    grades = score([record, record], [f"</think>\n```python\n{p}\n```" for p in programs.values()],
                   Grading(reward=RewardSettings(), answer=AnswerExtraction(), rewards={}), workers=1)
    assert [g.status for g in grades] == ["pass", "wrong"]
