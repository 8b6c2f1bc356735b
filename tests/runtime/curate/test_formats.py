"""Dataset layouts read as they are: veRL parquet, TRL standard and conversational, Open-Reasoner-Zero's
list-of-dialogue JSON, LiveCodeBench with its compressed private tests; nested `fields` paths; the
restricted unpickler; `hf://datasets/...` URIs.

Every file is written by the test in the layout the framework's own docs and datasets use; nothing
is downloaded. The `hf://` tests run the real `datasets` code offline against a local HF cache.
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from rlspec.compiler.jobs import DataSource
from rlspec.runtime.data.records import RecordError, plain_unpickle, read_prompts, write_prompts
from rlspec.runtime.data.sources import SourceError, read_source


def src(uri: str, **kw) -> DataSource:
    return DataSource(**{"uri": uri, "config": None, "split": "train", "revision": None, "fields": {}, "limit": None,
                         "shuffle": False, "sha256": None, **kw})


def parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------- veRL


def verl_rows() -> list[dict]:
    """veRL's `examples/data_preprocess/gsm8k.py` layout (prompt as messages, reward_model, extra_info)."""
    return [{"data_source": "openai/gsm8k",
             "prompt": [{"role": "system", "content": "Think step by step."},
                        {"role": "user", "content": f"What is {q}?"}],
             "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": truth},
             "extra_info": {"split": "train", "index": 10 + i, "question": f"What is {q}?"}}
            for i, (q, truth) in enumerate([("2 + 2", "4"), ("3 * 3", "9")])]


def test_verl_parquet_needs_no_mapping(tmp_path, capsys):
    parquet(tmp_path / "train.parquet", verl_rows())
    out = read_source(src("train.parquet"), "math", spec_dir=tmp_path)
    assert [r["prompt"] for r in out] == ["What is 2 + 2?", "What is 3 * 3?"]  # the last user message
    assert [r["answer"] for r in out] == ["4", "9"]
    assert out[0]["messages"] == [{"role": "system", "content": "Think step by step."},
                                  {"role": "user", "content": "What is 2 + 2?"}]
    assert out[0]["meta"]["data_source"] == "openai/gsm8k" and out[0]["meta"]["ability"] == "math"
    assert out[0]["meta"]["extra_info"] == {"split": "train", "index": 10, "question": "What is 2 + 2?"}
    assert out[0]["meta"]["reward_model"] == {"style": "rule", "ground_truth": "4"}  # reached by a path: kept
    assert "veRL layout (answer <- reward_model.ground_truth)" in capsys.readouterr().err
    # the message list survives prompts.parquet
    write_prompts(tmp_path / "p.parquet", out, ["math"])
    assert read_prompts(tmp_path / "p.parquet") == out


def test_nested_paths_in_fields_and_explicit_fields_win(tmp_path):
    parquet(tmp_path / "train.parquet", verl_rows())
    out = read_source(src("train.parquet", fields={"id": "extra_info.index", "answer": "extra_info.split"}), "math",
                      spec_dir=tmp_path)
    assert [r["id"] for r in out] == ["10", "11"] and [r["answer"] for r in out] == ["train", "train"]


def test_a_free_domain_keeps_the_ground_truth_as_the_source_had_it(tmp_path):
    row = {**verl_rows()[0], "reward_model": {"style": "rule", "ground_truth": {"any": ["4", 4]}}}
    jsonl(tmp_path / "qa.jsonl", [row])
    [rec] = read_source(src("qa.jsonl"), "qa", spec_dir=tmp_path)
    assert rec["answer"] == {"any": ["4", 4]} and rec["domain"] == "qa" and rec["prompt"] == "What is 2 + 2?"
    assert set(rec) == {"id", "prompt", "messages", "answer", "source", "domain", "meta"}
    write_prompts(tmp_path / "p.parquet", [rec], ["qa"])
    assert read_prompts(tmp_path / "p.parquet") == [rec]


def test_a_broken_path_names_the_spec_path_and_the_real_columns(tmp_path):
    parquet(tmp_path / "train.parquet", verl_rows())
    with pytest.raises(SourceError) as err:
        read_source(src("train.parquet", fields={"answer": "reward_model.ground_truh"}), "math", spec_dir=tmp_path,
                    place="datasets.gsm.sources[0]")
    assert str(err.value) == (
        "train.parquet: the field mapping names columns the source does not have "
        "(datasets.gsm.sources[0].fields.answer: 'reward_model.ground_truh': 'reward_model' has no key 'ground_truh' "
        "(its keys are ['ground_truth', 'style'])); its columns are "
        "['ability', 'data_source', 'extra_info', 'prompt', 'reward_model']")


def test_an_object_mapped_as_the_math_answer_is_refused_with_the_path_to_write(tmp_path):
    parquet(tmp_path / "train.parquet", verl_rows())
    with pytest.raises(SourceError, match=r"row 0: answer \('reward_model'\) is an object with keys "
                                          r"\['ground_truth', 'style'\].*`answer: reward_model.ground_truth`"):
        read_source(src("train.parquet", fields={"answer": "reward_model"}), "math", spec_dir=tmp_path)


# ------------------------------------------------------------------------------------------- TRL


def test_trl_conversational_jsonl(tmp_path):
    """TRL's conversational prompt-only layout (e.g. trl-lib/DeepMath-103K: `prompt` messages, `solution`)."""
    rows = [{"prompt": [{"role": "user", "content": "Solve 5 - 3."}], "solution": "2", "difficulty": 1.5},
            {"prompt": [{"role": "user", "content": "Solve 6 / 2."}], "solution": "3", "difficulty": 2.0}]
    jsonl(tmp_path / "conv.jsonl", rows)
    out = read_source(src("conv.jsonl"), "math", spec_dir=tmp_path)
    assert [(r["prompt"], r["answer"]) for r in out] == [("Solve 5 - 3.", "2"), ("Solve 6 / 2.", "3")]
    assert out[1]["messages"] == [{"role": "user", "content": "Solve 6 / 2."}]
    assert out[0]["meta"] == {"difficulty": 1.5}
    # a domain of one's own keeps `solution` among the columns its reward function receives
    [qa, _] = read_source(src("conv.jsonl"), "qa", spec_dir=tmp_path)
    assert qa["answer"] is None and qa["meta"] == {"solution": "2", "difficulty": 1.5}


def test_trl_standard_layout_is_text(tmp_path):
    jsonl(tmp_path / "std.jsonl", [{"prompt": "The sky is", "completion": " blue."}])
    [rec] = read_source(src("std.jsonl"), "style", spec_dir=tmp_path)
    assert rec["prompt"] == "The sky is" and rec["messages"] is None and rec["meta"] == {"completion": " blue."}


def test_a_message_list_without_a_user_turn_is_an_error(tmp_path):
    jsonl(tmp_path / "d.jsonl", [{"prompt": [{"role": "system", "content": "x"}], "answer": "1"}])
    with pytest.raises(SourceError, match=r"row 0: the message list has no user message \(roles: \['system'\]\)"):
        read_source(src("d.jsonl"), "math", spec_dir=tmp_path)


# ------------------------------------------------------------------------------- Open-Reasoner-Zero


def test_open_reasoner_zero_list_of_dialogue_json(tmp_path):
    """ORZ's `orz_math_57k_collected.json`: a list of [human turn, assistant turn with ground_truth]."""
    data = [[{"from": "human", "value": "Find $x$ if $2x = 6$."},
             {"from": "assistant", "ground_truth": {"value": "3", "pass_at_n": 0.5}}],
            [{"from": "human", "value": "Compute $1 + 1$."},
             {"from": "assistant", "ground_truth": {"value": "2"}}]]
    (tmp_path / "orz.json").write_text(json.dumps(data))
    out = read_source(src("orz.json"), "math", spec_dir=tmp_path)
    assert [(r["prompt"], r["answer"]) for r in out] == [("Find $x$ if $2x = 6$.", "3"), ("Compute $1 + 1$.", "2")]
    assert out[0]["messages"] == [{"role": "user", "content": "Find $x$ if $2x = 6$."}]
    assert out[0]["meta"] == {"ground_truth": {"value": "3", "pass_at_n": 0.5}} and out[1]["meta"] == {}


# ---------------------------------------------------------------------------------- LiveCodeBench


def lcb_private(cases: list[dict]) -> str:
    """LiveCodeBench's `private_test_cases`: base64(zlib(pickle(json text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def lcb_rows() -> list[dict]:
    """Two rows in the layout of livecodebench/code_generation_lite: a functional and a stdin problem."""
    return [
        {"question_title": "Sum", "question_content": "Return the sum of nums.", "platform": "leetcode",
         "question_id": "3000", "contest_id": "w1", "contest_date": "2024-09-01T00:00:00",
         "starter_code": "class Solution:\n    def total(self, nums: List[int]) -> int:\n        ",
         "difficulty": "easy",
         "public_test_cases": json.dumps([{"input": "[1, 2]", "output": "3", "testtype": "functional"}]),
         "private_test_cases": lcb_private([{"input": "[5, 5]", "output": "10", "testtype": "functional"}]),
         "metadata": json.dumps({"func_name": "total"})},
        {"question_title": "Echo", "question_content": "Print the input.", "platform": "atcoder",
         "question_id": "abc1_a", "contest_id": "abc1", "contest_date": "2024-10-05T00:00:00", "starter_code": "",
         "difficulty": "easy",
         "public_test_cases": json.dumps([{"input": "a\n", "output": "a\n", "testtype": "stdin"}]),
         "private_test_cases": lcb_private([{"input": "b\n", "output": "b\n", "testtype": "stdin"}]),
         "metadata": "{}"},
    ]


def test_livecodebench_layout_with_private_tests_and_function_names(tmp_path):
    jsonl(tmp_path / "lcb.jsonl", lcb_rows())
    fn, stdin = read_source(src("lcb.jsonl"), "code", spec_dir=tmp_path)
    assert fn["prompt"] == "Return the sum of nums." and fn["id"] == "3000" and fn["fn_name"] == "total"
    assert fn["tests"] == [{"fn_name": "total", "args": [[1, 2]], "expected": 3},
                           {"fn_name": "total", "args": [[5, 5]], "expected": 10}]
    assert fn["release_date"] == "2024-09-01" and fn["starter_code"].startswith("class Solution:")
    assert stdin["fn_name"] is None and stdin["tests"] == [{"input": "a\n", "output": "a\n"},
                                                           {"input": "b\n", "output": "b\n"}]
    assert "private_test_cases" not in fn["meta"] and fn["meta"]["platform"] == "leetcode"


def test_livecodebench_renamed_columns_map_public_and_private_tests(tmp_path):
    rows = [{"q": r["question_content"], "pub": r["public_test_cases"], "priv": r["private_test_cases"],
             "info": r["metadata"]} for r in lcb_rows()]
    jsonl(tmp_path / "lcb.jsonl", rows)
    fields = {"prompt": "q", "tests": "pub", "private_tests": "priv", "fn_name": "info.func_name"}
    fn, stdin = read_source(src("lcb.jsonl", fields=fields), "code", spec_dir=tmp_path)
    assert len(fn["tests"]) == 2 and fn["fn_name"] == "total" and len(stdin["tests"]) == 2
    assert fn["meta"] == {"info": '{"func_name": "total"}'}


def test_a_functional_problem_without_a_function_name_is_an_error_not_a_stdin_program(tmp_path):
    [row, _] = lcb_rows()
    row["metadata"] = "{}"
    jsonl(tmp_path / "lcb.jsonl", [row])
    with pytest.raises(SourceError, match=r"row 0: a functional test case .* needs the function's name, or it would be "
                                          r"graded as a stdin program; map `fn_name`"):
        read_source(src("lcb.jsonl"), "code", spec_dir=tmp_path)


class _Boom:
    """A pickle payload that runs a shell command when unpickled by `pickle.loads`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_private_field_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = base64.b64encode(zlib.compress(pickle.dumps(_Boom(marker)))).decode()
    [row, _] = lcb_rows()
    row["private_test_cases"] = payload
    jsonl(tmp_path / "lcb.jsonl", [row])
    with pytest.raises(SourceError, match=r"row 0: private tests: refused to unpickle \(UnpicklingError: the pickle "
                                          r"asks for (posix|os)\.system; .*never code"):
        read_source(src("lcb.jsonl"), "code", spec_dir=tmp_path)
    assert not marker.exists()
    # the stock unpickler would have run it: the payload is live, the refusal is what kept it harmless
    pickle.loads(zlib.decompress(base64.b64decode(payload)))
    assert marker.exists()


def test_the_plain_unpickler_builds_plain_values_only():
    value = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, 2)}
    assert plain_unpickle(pickle.dumps(value)) == value
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        import collections
        plain_unpickle(pickle.dumps(collections.OrderedDict(a=1)))


def test_a_private_field_that_is_not_base64_names_the_problem(tmp_path):
    [row, _] = lcb_rows()
    row["private_test_cases"] = "not base64 at all!"
    jsonl(tmp_path / "lcb.jsonl", [row])
    with pytest.raises(SourceError, match="private tests are neither JSON nor base64"):
        read_source(src("lcb.jsonl"), "code", spec_dir=tmp_path)


def test_decontamination_reads_message_list_prompts_as_text(tmp_path):
    parquet(tmp_path / "bench.parquet", verl_rows())
    items = read_source(src("bench.parquet"), "math", spec_dir=tmp_path, prompts_only=True)
    assert [i["prompt"] for i in items] == ["What is 2 + 2?", "What is 3 * 3?"]
    jsonl(tmp_path / "lcb.jsonl", lcb_rows())
    items = read_source(src("lcb.jsonl"), "code", spec_dir=tmp_path, prompts_only=True)
    assert [i["id"] for i in items] == ["3000", "abc1_a"] and items[1]["prompt"] == "Print the input."


def test_record_error_is_a_value_error():
    assert issubclass(RecordError, ValueError)


# ------------------------------------------------------------------------------------------- hf://


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An offline HF home whose datasets cache holds `acme/tiny-math`, as an online load leaves it."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config
    from datasets.packaged_modules.json.json import Json
    cache = tmp_path / "hf" / "datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    data = jsonl(tmp_path / "train.jsonl", [{"prompt": "What is 2 + 2?", "answer": "4"}])
    builder = Json(dataset_name="tiny-math", data_files={"train": str(data)}, hash="0123abcd", cache_dir=str(cache))
    builder.repo_id = "acme/tiny-math"
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()
    [config_dir] = (cache / "acme___tiny-math").glob("default-*")
    config_dir.rename(config_dir.with_name("default"))
    return cache


def test_hf_datasets_uri_loads_and_the_old_form_warns_once(hf_cache, capsys):
    from rlspec.runtime.data import sources
    sources._WARNED.clear()
    [new] = read_source(src("hf://datasets/acme/tiny-math"), "math")
    assert new["answer"] == "4" and "deprecated" not in capsys.readouterr().err
    for _ in range(2):
        [old] = read_source(src("hf://acme/tiny-math"), "math")
        assert old["prompt"] == new["prompt"]
    err = capsys.readouterr().err
    assert err.count("warning: hf://acme/tiny-math: `hf://ORG/NAME` names a model") == 1
    assert "write hf://datasets/acme/tiny-math" in err


def test_hf_revision_in_the_uri_and_the_field_must_agree(tmp_path):
    with pytest.raises(SourceError, match=r"hf://datasets/acme/x@v1 pins revision 'v1', but `revision` says 'v2'"):
        read_source(src("hf://datasets/acme/x@v1", revision="v2"), "math")


def test_hf_uri_not_cached_names_the_repo_and_the_decoded_revision(hf_cache):
    with pytest.raises(SourceError) as err:
        read_source(src("hf://datasets/acme/not-there@refs%2Fpr%2F1"), "math")
    assert str(err.value).startswith("hf://datasets/acme/not-there@refs%2Fpr%2F1 (config=None, split='train', "
                                     "revision='refs/pr/1'): cannot load")
    assert "offline mode is on" in str(err.value)
