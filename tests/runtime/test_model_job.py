"""The `model` job and the one way every job finds its model: `<inputs.policy>/model`.

A hub model is fetched once, at its pinned revision, into the build folder; every later job (here:
the initial benchmark and the first train stage) reads that folder. The hub is a local Hugging Face
cache with two revisions of a tiny model (the real `snapshot_download` reads it offline; no network
here), standing in for the hub a login node would reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlspec.runtime import tinymodel
from rlspec.runtime.job import load_job, model_dir

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
SPEC = """\
name: fetch
model:
  path: {path}
  {extra}
  dtype: float32
  max_context: 256
datasets:
  math: {{domain: math, sources: [{{uri: "builtin://math?n=8"}}]}}
rollout: {{max_prompt_tokens: 96}}
stages:
  - {{name: s1, datasets: [math], max_response_tokens: 8, steps: 1, prompts_per_step: 2, group_size: 2}}
benchmarks:
  held: {{domain: math, source: {{uri: "builtin://math?n=4&split=test"}}, sampling: {{max_response_tokens: 8}}}}
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    a = tinymodel.build_tiny_model(root / "a", tinymodel.TinyModelConfig(seed=1))
    b = tinymodel.build_tiny_model(root / "b", tinymodel.TinyModelConfig(seed=2, vocab=300))
    assert sha(a / "model.safetensors") != sha(b / "model.safetensors")
    return a, b


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, two_models) -> Path:
    """org/tiny in a Hugging Face cache: `main` is commit B, tag `v1` is commit A."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--org--tiny"
    for commit, folder in zip((COMMIT_A, COMMIT_B), two_models):
        shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_B)
    (repo / "refs" / "v1").write_text(COMMIT_A)
    return cache


def compile_spec(tmp: Path, path: str, extra: str = "", where: str = "spec.yaml") -> Path:
    spec = tmp / where
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC.format(path=path, extra=extra))
    out = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(tmp / "build")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tmp / "build"


def run_model_job(build: Path, env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    (job,) = (build / "jobs" / "model").glob("*.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "rlspec.runtime.model", "--job", str(job.relative_to(build)),
                           "--context", "context.json"], cwd=build, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc, build / json.loads(job.read_text())["output_dir"]


def job_of(build: Path, kind: str, label: str):
    jobs = json.loads((build / "context.json").read_text())["jobs"]
    (jid,) = [j for j, info in jobs.items() if info["label"] == label]
    return load_job(build / "jobs" / kind / f"{jid}.json", kind, build / "context.json")


def test_pinned_revision_is_what_bench_and_train_load(tmp_path, hub_cache, two_models, monkeypatch):
    build = compile_spec(tmp_path, "hf://org/tiny", "revision: v1")
    proc, out = run_model_job(build, {"HF_HUB_CACHE": str(hub_cache)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "done.json").read_text())["resolved"] == COMMIT_A
    monkeypatch.chdir(build)
    bench, train = job_of(build, "bench", "bench held @ initial"), job_of(build, "train", "train s1")
    folders = [model_dir(bench), model_dir(train)]
    assert folders[0] == folders[1] == Path(out.relative_to(build)) / "model"
    a = two_models[0]
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert {sha(f / name) for f in folders} == {sha(a / name)}, name
    # the hard links put the bytes in the build folder: the cache can go away
    assert not (out / "model" / "model.safetensors").is_symlink()


def test_unpinned_hub_model_is_main_and_a_missing_one_says_how_to_fix(tmp_path, hub_cache, two_models):
    build = compile_spec(tmp_path / "main", "hf://org/tiny")
    proc, out = run_model_job(build, {"HF_HUB_CACHE": str(hub_cache)})
    assert proc.returncode == 0, proc.stderr
    assert sha(out / "model" / "model.safetensors") == sha(two_models[1] / "model.safetensors")
    build = compile_spec(tmp_path / "missing", "hf://org/absent")
    proc, out = run_model_job(build, {"HF_HUB_CACHE": str(hub_cache)})
    assert proc.returncode == 1 and "cannot fetch hub model 'org/absent'" in proc.stderr
    assert not (out / "done.json").exists() and not (out / "model").exists()


def test_tokenizer_override_replaces_the_models_tokenizer(tmp_path, two_models):
    a, b = two_models
    build = compile_spec(tmp_path, str(a), f"tokenizer: {b}")
    proc, out = run_model_job(build)
    assert proc.returncode == 0, proc.stderr
    from transformers import AutoTokenizer
    got = AutoTokenizer.from_pretrained(out / "model")
    assert len(got) == len(AutoTokenizer.from_pretrained(b)) != len(AutoTokenizer.from_pretrained(a))
    assert sha(out / "model" / "model.safetensors") == sha(a / "model.safetensors")


def test_relative_local_model_is_relative_to_the_spec_and_changes_are_refused(tmp_path, two_models):
    models = tmp_path / "models"
    shutil.copytree(two_models[0], models / "tiny")
    build = compile_spec(tmp_path, "../models/tiny", where="specs/exp.yaml")
    proc, out = run_model_job(build)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model" / "config.json").resolve() == (models / "tiny" / "config.json").resolve()
    (models / "tiny" / "config.json").write_text(json.dumps({"changed": True}))
    shutil.rmtree(out)
    proc, out = run_model_job(build)
    assert proc.returncode == 1 and "changed since `rlspec compile`" in proc.stderr


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_from_scratch_families_and_chat_template(tmp_path, family):
    """`from_scratch.architecture.family: llama` and `prompt.use_chat_template: true` both build: the
    warm-up prompts are rendered with the chat template the tiny tokenizer then carries."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: scratch
        model:
          from_scratch:
            architecture: {{family: {family}, hidden_size: 64, intermediate_size: 128, num_layers: 1,
                            num_heads: 2, num_kv_heads: 1}}
            tokenizer: {{vocab_size: 300, corpus_size: 50}}
            warmup: {{sources: [{{uri: "builtin://math?n=50&worked=true"}}], steps: 2, batch_size: 4}}
          dtype: float32
          max_context: 256
          prompt: {{use_chat_template: true}}
        rollout: {{max_prompt_tokens: 96}}
        datasets:
          math: {{domain: math, sources: [{{uri: "builtin://math?n=8"}}]}}
        stages:
          - {{name: s1, datasets: [math], max_response_tokens: 8, steps: 1, prompts_per_step: 2, group_size: 2}}
        """))
    out = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    proc, folder = run_model_job(tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    from transformers import AutoConfig, AutoTokenizer
    assert AutoConfig.from_pretrained(folder / "model").model_type == family
    tok = AutoTokenizer.from_pretrained(folder / "model")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 1 + 1?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == tinymodel.ChatTemplate().apply_chat_template(
        [{"role": "user", "content": "What is 1 + 1?"}], add_generation_prompt=True)
    # the reloaded tokenizer gives the ids the trained one gave (the Qwen2 pre-tokenizer trap, for llama too)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_a_local_warmup_file_gives_its_responses(tmp_path):
    """A warm-up source that is a local file: its `response` column is not a schema column, so it
    reaches the record in `meta`; the warm-up must read it there (it used to refuse every local file)."""
    import json

    from rlspec.compiler.jobs import ModelJob
    from rlspec.runtime.model import warmup_examples
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1), "response": f"{i} + 1 = \\boxed{{{i + 1}}}"}
            for i in range(4)]
    (tmp_path / "warm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        name: localwarm
        model:
          from_scratch:
            architecture: {hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2, num_kv_heads: 1}
            tokenizer: {vocab_size: 300, corpus_size: 10}
            warmup: {sources: [{uri: warm.jsonl}], steps: 1, batch_size: 2}
          dtype: float32
          max_context: 256
        rollout: {max_prompt_tokens: 96}
        datasets:
          math: {domain: math, sources: [{uri: "builtin://math?n=8"}]}
        stages:
          - {name: s1, datasets: [math], max_response_tokens: 8, steps: 1, prompts_per_step: 2, group_size: 2}
        """))
    out = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(spec), "-o", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [job_file] = (tmp_path / "b" / "jobs" / "model").glob("*.json")
    build = ModelJob.model_validate(json.loads(job_file.read_text())["config"]).build
    examples = warmup_examples(build, tmp_path)
    assert sorted(e["response"] for e in examples) == sorted(r["response"] for r in rows)
    assert all("What is" in e["prompt"] for e in examples)
