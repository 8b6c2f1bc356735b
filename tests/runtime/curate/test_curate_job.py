"""The `sample`, `curate` and `filter` jobs end to end: specs compiled by `rlspec compile`, jobs run as
the workflow runs them (`python -m rlspec.runtime.<kind> --job ... --context context.json` in the build
folder), bad inputs, and a job killed while it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate_helpers import MATH_SUFFIX, compile_spec, job_files, job_for, run_job
from rlspec.runtime.data.builtin import generate
from rlspec.runtime.data.records import SCHEMA, read_prompts

SPEC = """
name: mini
model:
  path: tiny
  dtype: float32
  max_context: 256
  prompt:
    template: "<|im_start|>user\\n{{question}}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
    math_suffix: "{suffix}"
datasets:
  math:
    domain: math
    sources:
      - uri: builtin://math?n=100&difficulty=1
      - uri: extra.jsonl
        fields: {{prompt: problem, answer: value}}
    filters:
{filters}
rollout:
  engine: hf
  max_prompt_tokens: 64
stages:
  - name: s1
    datasets: [math]
    max_response_tokens: 16
    steps: 2
    prompts_per_step: 4
    group_size: 2
    filter_before: {{k: 2, max: 0.5}}
benchmarks:
  held:
    domain: math
    source: {{uri: "builtin://math?n=40&difficulty=1&split=test"}}
    sampling: {{max_response_tokens: 16}}
"""
FILTERS = """\
      - kind: length
        min: 5
      - kind: dedup_exact
      - kind: decontaminate
      - kind: answer_parseable
      - kind: pass_rate
        k: 2
        max: 0.5
"""
HELD_OUT = generate("builtin://math?n=40&difficulty=1&split=test")[5]  # planted: decontamination must drop it
EXTRA = [{"problem": "What is 3 + 4?", "value": "7"}, {"problem": "What is 3 + 4?", "value": "7"},
         {"problem": "  " + HELD_OUT["prompt"].upper() + " ", "value": HELD_OUT["answer"]}]


def make_build(tmp_path: Path, seven_model: Path | None = None, filters: str = FILTERS,
               extra: list[dict] | None = EXTRA) -> Path:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    if seven_model is not None:
        (spec_dir / "tiny").symlink_to(seven_model)
    if extra is not None:
        (spec_dir / "extra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    spec = spec_dir / "mini.yaml"
    spec.write_text(SPEC.format(filters=filters, suffix=MATH_SUFFIX.replace("\\", "\\\\")))
    return compile_spec(spec, tmp_path / "build")


@pytest.mark.slow  # three job processes that load torch and a model: ~15 s on a quiet box, 60 s on a busy one
def test_sample_then_curate_then_filter_jobs_end_to_end(tmp_path, seven_model):
    build = make_build(tmp_path, seven_model)
    for model_job in job_files(build, "model"):  # the spec's model (the pass rate's initial policy), linked
        assert run_job(build, "model", model_job).returncode == 0
    [job] = job_files(build, "curate")
    [sjob] = job_files(build, "sample")
    assert json.loads(job.read_text())["inputs"]["upstream"] == json.loads(sjob.read_text())["output_dir"]
    assert "has not finished (no done.json)" in run_job(build, "curate", job).stderr  # the sample job runs first
    result = run_job(build, "sample", sjob)
    assert result.returncode == 0, result.stderr
    sout = build / json.loads(sjob.read_text())["output_dir"]
    sampled = read_prompts(sout / "prompts.parquet")  # every record after the filters, each measured: no cut yet
    assert all("unsampled" in r["meta"]["pass_rate"] or r["meta"]["pass_rate"]["k"] == 2 for r in sampled)
    assert [s["filter"] for s in json.loads((sout / "funnel.json").read_text())["steps"]][-1] == "sampled"
    result = run_job(build, "curate", job)
    assert result.returncode == 0, result.stderr
    out = build / json.loads(job.read_text())["output_dir"]
    assert sorted(p.name for p in out.iterdir()) == ["done.json", "funnel.json", "funnel.md", "prompts.parquet"]
    assert pq.read_schema(out / "prompts.parquet").names == list(SCHEMA["math"])
    records = read_prompts(out / "prompts.parquet")
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["input"] == 103 and funnel["output"] == len(records) > 50
    assert [s["filter"] for s in funnel["steps"]] == ["length", "dedup_exact", "decontaminate", "answer_parseable",
                                                    "sampled", "pass_rate"]
    assert [s["index"] for s in funnel["steps"]] == [1, 2, 3, 4, 5, 5]  # the dataset's filter numbers
    steps = funnel["steps"]
    assert steps[0]["records_in"] == 103 and all(a["kept"] == b["records_in"] for a, b in zip(steps, steps[1:]))
    assert all(s["records_in"] == s["kept"] + s["dropped"] for s in steps)
    assert steps[1]["dropped"] >= 1  # the duplicated extra row
    assert any(e["id"] == "extra.jsonl-2" for e in steps[2]["examples"])  # the planted benchmark question
    assert all(r["answer"] != "7" for r in records)  # the tiny model solves every "7" item: pass rate 1 > 0.5
    assert steps[5]["reasons"]["pass rate above max N"] >= 1
    assert all(r["meta"]["pass_rate"]["k"] == 2 for r in records)
    assert json.loads((out / "done.json").read_text())["records"] == len(records)

    [fjob] = job_files(build, "filter")
    result = run_job(build, "filter", fjob)
    assert result.returncode == 0, result.stderr
    fout = build / json.loads(fjob.read_text())["output_dir"]
    kept = read_prompts(fout / "prompts.parquet")
    assert 0 < len(kept) <= len(records)
    ffunnel = json.loads((fout / "funnel.json").read_text())
    assert ffunnel["dataset"].startswith("math before ") and ffunnel["input"] == len(records) and ffunnel["output"] == len(kept)
    assert json.loads((fout / "done.json").read_text())["domains"] == ["math"]


def error_of(build: Path, job: Path) -> str:
    result = run_job(build, "curate", job)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = build / json.loads(job.read_text())["output_dir"]
    assert not (out / "done.json").exists() and not (out / "prompts.parquet").exists()
    return result.stderr.strip()


def test_missing_local_file_names_dataset_and_source(tmp_path):
    build = make_build(tmp_path, extra=None, filters="      - kind: dedup_exact\n")
    [job] = job_files(build, "curate")
    assert error_of(build, job).startswith("error: dataset 'math', source 2: extra.jsonl: file not found")


def test_unknown_column_in_field_mapping_is_refused_at_its_spec_line(tmp_path):
    """A local source's mapping is checked against the file at `rlspec compile` (check) time, at the
    `fields` line, with the columns the file has (issue 18); the curate-time message for sources
    check cannot read (hub datasets) is tested in test_formats.py."""
    with pytest.raises(AssertionError) as failed:
        make_build(tmp_path, extra=[{"question": "What is 1 + 1?", "value": "2"}], filters="      - kind: proof\n")
    message = str(failed.value)
    line = next(i + 1 for i, t in enumerate((tmp_path / "spec" / "mini.yaml").read_text().splitlines())
                if "problem" in t)
    assert f"mini.yaml:{line}:" in message and "datasets.math.sources[1].fields.prompt" in message
    assert "extra.jsonl has no 'problem'" in message and "['question', 'value']" in message


def test_empty_after_filtering_names_dataset_and_filter_and_keeps_the_funnel(tmp_path):
    build = make_build(tmp_path, filters="      - kind: dedup_exact\n      - kind: length\n        min: 1000\n")
    [job] = job_files(build, "curate")
    assert error_of(build, job).startswith("error: dataset 'math', filter 2 (length): no records left (")
    funnel = json.loads((build / json.loads(job.read_text())["output_dir"] / "funnel.json").read_text())
    assert funnel["output"] == 0 and funnel["steps"][-1]["kept"] == 0
    assert funnel["error"].startswith("dataset 'math', filter 2 (length): no records left")


def test_unreadable_benchmark_names_the_decontaminate_filter(tmp_path):
    build = make_build(tmp_path, filters="      - kind: decontaminate\n")
    [job] = job_files(build, "curate")
    doc = json.loads(job.read_text())
    doc["config"]["filters"][0]["benchmarks"]["held"]["source"]["uri"] = "builtin://math?n=-1"
    from rlspec.compiler.plan import content_hash
    doc["id"] = content_hash({"kind": "curate", "config": doc["config"], "inputs": {}})
    job.write_text(json.dumps(doc))
    assert error_of(build, job).startswith("error: dataset 'math', filter 1 (decontaminate): benchmark 'held': "
                                           "'builtin://math?n=-1': n=-1 is outside")


def test_edited_job_file_is_refused(tmp_path):
    build = make_build(tmp_path, filters="      - kind: proof\n")
    [job] = job_files(build, "curate")
    job.write_text(job.read_text().replace("n=100&", "n=101&"))
    assert "the file was edited after compilation" in error_of(build, job)


def test_killed_while_writing_leaves_no_prompts_parquet_and_no_done_json(tmp_path):
    """A real job process, SIGKILLed the moment its temporary Parquet file appears."""
    build = make_build(tmp_path, filters="      - kind: length\n        min: 1\n")
    [job] = job_files(build, "curate")
    doc = json.loads(job.read_text())
    doc["config"]["sources"] = [{**doc["config"]["sources"][0], "uri": "builtin://math?n=100000&difficulty=2"}]
    from rlspec.compiler.plan import content_hash
    doc["id"] = content_hash({"kind": "curate", "config": doc["config"], "inputs": {}})
    job.write_text(json.dumps(doc))
    out = build / doc["output_dir"]
    out.mkdir(parents=True)
    (out / "done.json").write_text("{}")  # left by an earlier run: must not survive this one
    proc = subprocess.Popen([sys.executable, "-m", "rlspec.runtime.curate", "--job", str(job.relative_to(build)),
                             "--context", "context.json"], cwd=build, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob(".prompts.parquet.tmp*")):
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()!r}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "prompts.parquet").exists()
    assert not (out / "done.json").exists()


def test_builtin_quickstart_shaped_job_runs_fast(tmp_path):
    """What the quickstart's curate jobs do, minus the model: builtin data through the usual filters."""
    filters = FILTERS.rsplit("      - kind: pass_rate", 1)[0]
    build = make_build(tmp_path, filters=filters)
    [job] = job_files(build, "curate")
    start = time.monotonic()
    result = run_job(build, "curate", job)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    assert result.stdout.startswith("curate math: 103 records in, ")
    md = (build / json.loads(job.read_text())["output_dir"] / "funnel.md").read_text()
    assert "# Curation funnel: math (math)" in md and "| 3 | decontaminate |" in md


def test_filter_job_refuses_unfinished_inputs(tmp_path):
    build = make_build(tmp_path, filters="      - kind: proof\n")
    [fjob] = job_files(build, "filter")
    result = run_job(build, "filter", fjob)
    assert result.returncode == 1 and "has not finished (no done.json); run its job first" in result.stderr
    assert job_for(build, "filter", "filter before s1") == fjob


def test_a_sample_job_that_cannot_sample_leaves_no_result_and_says_why(tmp_path):
    """Its model job never ran: the sample job stops at sampling, after its filters; an earlier
    run's done.json is gone and the funnel so far is written with the error."""
    build = make_build(tmp_path, filters="      - kind: dedup_exact\n      - kind: pass_rate\n        k: 2\n")
    [sjob] = job_files(build, "sample")
    out = build / json.loads(sjob.read_text())["output_dir"]
    out.mkdir(parents=True)
    (out / "done.json").write_text("{}")  # left by an earlier run: must not survive this one
    result = run_job(build, "sample", sjob)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: sample the initial model k=2 on math, sampling 'policy': input model ")
    assert not (out / "done.json").exists() and not (out / "prompts.parquet").exists()
    funnel = json.loads((out / "funnel.json").read_text())
    assert [s["filter"] for s in funnel["steps"]] == ["dedup_exact"] and funnel["error"].startswith("sample the")
