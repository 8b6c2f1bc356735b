"""Reward and prompt blocks in the spec: free domain names, `reward` terms resolved per domain into
the jobs' Grading block, the reward file's hash in the job id, and the located errors of `check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlspec.compiler.errors import SpecError
from rlspec.compiler.plan import build_plan
from rlspec.compiler.validate import check_file

REWARD = "def score(data_source, solution_str, ground_truth, extra_info=None):\n    return 1.0\n"

SPEC = """\
name: qa
model:
  path: org/model
  max_context: 4096
datasets:
  qa:
    domain: qa
    sources: [{{uri: data.jsonl}}]
{reward}
  math: {{domain: math, sources: [{{uri: "builtin://math?n=8"}}]}}
benchmarks:
  held:
    domain: qa
    source: {{uri: data.jsonl}}
    sampling: {{max_response_tokens: 64}}
stages:
  - {{name: s1, datasets: [qa], max_response_tokens: 64, steps: 1, prompts_per_step: 2, group_size: 2}}
  - {{name: s2, datasets: [math], max_response_tokens: 64, steps: 1, prompts_per_step: 2, group_size: 2}}
"""
TERMS = """\
    reward:
      - {python: rewards.py:score, signature: verl}
      - {python: rewards.py:score, signature: trl, weight: 0.2, timeout_s: 3}
"""


def write(tmp: Path, reward: str = TERMS, code: str = REWARD) -> Path:
    (tmp / "data.jsonl").write_text(json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    (tmp / "rewards.py").write_text(code)
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(reward=reward))
    return spec


def plan_of(spec: Path):
    return build_plan(check_file(spec).cells, spec.parent)


def jobs(plan, kind):
    return {j.label: j for j in plan.jobs.values() if j.kind == kind}


def errors(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        check_file(spec)
    return [i.render() for i in info.value.issues]


def test_terms_reach_train_and_bench_of_their_domain_only(tmp_path):
    plan = plan_of(write(tmp_path))
    train = jobs(plan, "train")
    qa = train["train s1"].config.grading.rewards["qa"]
    assert [(t.name, t.python.signature, t.weight, t.python.timeout_s) for t in qa] == [
        ("score", "verl", 1.0, 10.0), ("score", "trl", 0.2, 3.0)]
    assert qa[0].python.path == "rewards.py" and qa[0].python.sha256 and qa[0].python.function == "score"
    assert train["train s2"].config.grading.rewards == {}  # math: the built-in grader, as before
    assert jobs(plan, "bench")["bench held @ initial"].config.grading.rewards["qa"] == qa


def test_editing_the_reward_file_changes_the_job_ids(tmp_path):
    before = plan_of(write(tmp_path))
    after = plan_of(write(tmp_path, code=REWARD.replace("1.0", "0.5")))
    changed = {label for label, j in jobs(after, "train").items() if j.id != jobs(before, "train")[label].id}
    assert changed == {"train s1", "train s2"}  # s2 starts from s1's checkpoint, so it moves too
    assert jobs(after, "curate")["curate math"].id == jobs(before, "curate")["curate math"].id


def test_custom_domain_without_reward_is_refused_at_its_line(tmp_path):
    spec = write(tmp_path, reward="")
    found = errors(spec)
    assert any("spec.yaml:7:" in e and "datasets.qa.domain" in e and "no built-in grader" in e for e in found), found


def test_missing_reward_file_and_function_are_located(tmp_path):
    spec = write(tmp_path, reward="    reward: {python: nothere.py:score}\n")
    assert any("spec.yaml:9:" in e and "does not exist" in e for e in errors(spec))
    spec = write(tmp_path, reward="    reward: {python: rewards.py:scor}\n")
    found = errors(spec)
    assert any("spec.yaml:9:" in e and "defines no function 'scor'" in e and "score" in e for e in found), found


def test_grader_and_python_together_are_refused(tmp_path):
    spec = write(tmp_path, reward="    reward: {python: rewards.py:score, grader: math}\n")
    assert any("exactly one of `grader`" in e for e in errors(spec))


def test_same_domain_with_other_reward_is_refused(tmp_path):
    spec = write(tmp_path)
    text = spec.read_text().replace("    source: {uri: data.jsonl}\n",
                                    "    source: {uri: data.jsonl}\n    reward: {python: rewards.py:score, weight: 2}\n", 1)
    spec.write_text(text)
    found = errors(spec)
    assert any("benchmarks.held.reward" in e and "domain name" in e for e in found), found


def test_math_only_filter_on_a_custom_domain_is_refused(tmp_path):
    spec = write(tmp_path, reward=TERMS + "    filters: [{kind: answer_parseable}]\n")
    assert any("filter `answer_parseable` applies to math data" in e for e in errors(spec))


def test_domain_names_are_validated_like_names(tmp_path):
    spec = write(tmp_path)
    spec.write_text(spec.read_text().replace("domain: qa\n    sources", "domain: q a\n    sources"))
    assert any("datasets.qa.domain" in e and "not a valid name" in e for e in errors(spec))


def test_reward_path_in_an_extends_base_is_relative_to_the_base(tmp_path):
    base = write(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    (tmp_path / "b").mkdir()
    exp = tmp_path / "b" / "exp.yaml"
    exp.write_text("extends: ../a/spec.yaml\nname: exp\n"
                   "datasets: {qa: {sources: [{uri: ../a/data.jsonl}]}}\n"
                   "benchmarks: {held: {source: {uri: ../a/data.jsonl}}}\n")
    plan = plan_of(exp)
    assert jobs(plan, "train")["train s1"].config.grading.rewards["qa"][0].python.path == "../a/rewards.py"
    assert base.exists()


def test_per_dataset_prompt_is_merged_over_model_prompt(tmp_path):
    spec = write(tmp_path, reward=TERMS + "    prompt: {system: You answer trivia.}\n")
    prompts = jobs(plan_of(spec), "train")["train s1"].config.inference.prompt
    assert prompts.domains["qa"].system == "You answer trivia."
    assert prompts.domains["qa"].math_suffix == prompts.default.math_suffix and prompts.default.system is None


def test_chat_template_with_a_local_tokenizer_without_one_is_refused(tmp_path):
    spec = write(tmp_path)
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text("{}")
    spec.write_text(spec.read_text().replace("  path: org/model\n", "  path: org/model\n  tokenizer: ./tok\n"
                                             "  prompt: {use_chat_template: true}\n"))
    found = errors(spec)
    assert any("spec.yaml:5:" in e and "model.prompt.use_chat_template" in e and "no chat template" in e
               for e in found), found
    (tok / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    check_file(spec)


def test_system_prompt_without_a_place_in_the_text_template_is_refused(tmp_path):
    spec = write(tmp_path)
    spec.write_text(spec.read_text().replace("  max_context: 4096\n", "  max_context: 4096\n  prompt:\n"
                                             "    template: 'Q: {question}'\n    system: Be brief.\n"))
    assert any("model.prompt.system" in e and "no `{system}`" in e for e in errors(spec))
