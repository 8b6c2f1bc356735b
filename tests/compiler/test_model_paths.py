"""Where the compiler says a spec's models are: a local folder relative to the file that names it
(an `extends` base in another folder included), a hub id left as it is, a revision pinned in the
model job, and no model setting in a job that does not read it."""

from __future__ import annotations

from pathlib import Path

from rlspec.compiler.plan import build_plan
from rlspec.compiler.validate import check_file

BASE = """\
name: base
model:
  path: {path}
  tokenizer: {tokenizer}
  max_context: 4096
datasets:
  math: {{domain: math, sources: [{{uri: "builtin://math?n=8"}}]}}
stages:
  - {{name: s1, datasets: [math], max_response_tokens: 64, steps: 1, prompts_per_step: 2, group_size: 2}}
"""


def plan_of(spec: Path):
    checked = check_file(spec)
    return build_plan(checked.cells, spec.parent)


def model_build(plan):
    (job,) = [j for j in plan.jobs.values() if j.kind == "model"]
    return job.config.build


def test_local_model_in_an_extends_base_is_relative_to_the_base(tmp_path):
    (tmp_path / "a" / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "a" / "models" / "tiny" / "config.json").write_text("{}")
    (tmp_path / "a" / "base.yaml").write_text(BASE.format(path="models/tiny", tokenizer="./models/tiny"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "exp.yaml").write_text("extends: ../a/base.yaml\nname: exp\n")
    build = model_build(plan_of(tmp_path / "b" / "exp.yaml"))
    assert build.model.kind == "local" and build.model.name == "../a/models/tiny"
    assert build.model.fingerprint is not None
    assert build.tokenizer.kind == "local" and build.tokenizer.name == "../a/models/tiny"


def test_hub_ids_stay_hub_ids_and_the_revision_is_pinned(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "base.yaml").write_text(BASE.format(path="org/model", tokenizer="hf://org/tok")
                                              .replace("  tokenizer:", "  revision: v2\n  tokenizer:"))
    (tmp_path / "exp.yaml").write_text("extends: a/base.yaml\nname: exp\n")
    plan = plan_of(tmp_path / "exp.yaml")
    build = model_build(plan)
    assert (build.model.kind, build.model.name, build.model.revision) == ("hub", "org/model", "v2")
    assert (build.tokenizer.kind, build.tokenizer.name) == ("hub", "org/tok")
    (model,) = [j.id for j in plan.jobs.values() if j.kind == "model"]
    assert all(j.inputs["policy"] == model for j in plan.jobs.values() if j.kind == "train")


def test_curation_does_not_depend_on_settings_it_does_not_read(tmp_path):
    """`rollout.max_prompt_tokens` and the reward limits are not read by a curate job without
    model or grading filters, so changing them must not rerun curation."""
    spec = tmp_path / "exp.yaml"
    spec.write_text(BASE.format(path="org/model", tokenizer="null"))
    before = {j.id for j in plan_of(spec).jobs.values() if j.kind == "curate"}
    spec.write_text(BASE.format(path="org/model", tokenizer="null")
                    + "rollout: {max_prompt_tokens: 100}\nreward: {code_memory_mb: 64}\n")
    after = plan_of(spec)
    assert {j.id for j in after.jobs.values() if j.kind == "curate"} == before
    (train,) = [j for j in after.jobs.values() if j.kind == "train"]
    assert train.config.inference.rollout.max_prompt_tokens == 100
