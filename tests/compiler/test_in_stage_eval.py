"""Evaluation inside a stage (`stages[].evaluate_every`) in the compiled workflow: which snapshot
steps the train job writes, one bench job per benchmark per step (content-addressed, depending on
the train job, feeding the report), and the refusals when the steps cannot be known or do nothing;
`algorithm.keep_checkpoints` reaches the train job."""

from __future__ import annotations

import json

import pytest

from rlspec.compiler.errors import SpecError
from rlspec.compiler.plan import build_plan
from rlspec.compiler.validate import check_file
from test_checks_resources import issues_of, line_of

from conftest import MINI

TWO_BENCHES = MINI.replace("stages:\n", """\
  code-held:
    domain: math
    source: {uri: "builtin://math?n=10&split=test"}
    k: 2
    sampling: {max_response_tokens: 512}
stages:
""", 1)


def plan_of(write_spec, text: str):
    return build_plan(check_file(write_spec(text)).cells)


def benches(plan) -> dict[str, object]:
    return {j.label: j for j in plan.jobs.values() if j.kind == "bench"}


def test_bench_jobs_at_every_nth_step_below_the_end(write_spec):
    text = TWO_BENCHES.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 4\n", 1)
    plan = plan_of(write_spec, text)
    train = {j.config.stage: j for j in plan.jobs.values() if j.kind == "train"}
    assert train["s1"].config.snapshot_steps == [4, 8] and train["s2"].config.snapshot_steps == []
    found = benches(plan)
    inside = {label: j for label, j in found.items() if " step " in label}
    assert sorted(inside) == ["bench code-held @ s1 step 4", "bench code-held @ s1 step 8",
                              "bench held @ s1 step 4", "bench held @ s1 step 8"]
    for label, job in inside.items():
        assert job.config.step == int(label.rsplit(" ", 1)[1])
        assert job.inputs == {"policy": train["s1"].id}  # runs once the train job (and its snapshots) is done
    assert found["bench held @ s1"].config.step is None  # the stage's end: the train job's model/
    # content-addressed: the step is part of the config, so each step is its own job
    assert len({j.id for j in inside.values()}) == 4
    # the report depends on them and knows where each snapshot is
    assert {j.id for j in inside.values()} <= set(plan.report.inputs["jobs"])
    (cell,) = plan.report.config.cells
    s1 = cell.stages[0]
    assert [(e.step, sorted(e.bench)) for e in s1.evaluations] == [(4, ["code-held", "held"]), (8, ["code-held", "held"])]
    assert s1.evaluations[0].model == f"results/train/{train['s1'].id}/snapshots/step-000004/model"
    assert s1.evaluations[1].bench["held"] == found["bench held @ s1 step 8"].id
    assert cell.stages[1].evaluations == []


def test_same_spec_same_jobs_and_a_control_without(write_spec):
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 3\n", 1)
    a, b = plan_of(write_spec, text), plan_of(write_spec, text)
    assert list(a.jobs) == list(b.jobs)
    assert [j.config.step for j in a.jobs.values() if j.kind == "bench"].count(None) == 3  # initial, s1, s2
    assert sorted(s for j in a.jobs.values() if j.kind == "bench" and (s := j.config.step)) == [3, 6, 9]
    plain = plan_of(write_spec, MINI)
    assert [j.config.step for j in plain.jobs.values() if j.kind == "bench"] == [None, None, None]
    assert all(j.config.snapshot_steps == [] for j in plain.jobs.values() if j.kind == "train")


def test_epochs_with_known_sizes_give_the_steps(write_spec):
    # 100 expected prompts / 8 per step = 13 steps per epoch; 2 epochs = 26 steps
    text = (MINI.replace("      - kind: decontaminate\n", "      - kind: decontaminate\n    expected_size: 100\n", 1)
            .replace("    steps: 10\n", "    epochs: 2\n    evaluate_every: 10\n", 1))
    plan = plan_of(write_spec, text)
    (s1,) = [j for j in plan.jobs.values() if j.kind == "train" and j.config.stage == "s1"]
    assert s1.config.snapshot_steps == [10, 20] and s1.config.epochs == 2


def test_a_grid_over_a_later_stage_shares_the_snapshot_benches(write_spec):
    text = (MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 5\n", 1)
            + "grid:\n  axes:\n    - {path: \"stages[s2].algorithm.optimizer.lr\", values: [1.0e-6, 2.0e-6]}\n")
    plan = plan_of(write_spec, text)
    (inside,) = [j for j in plan.jobs.values() if j.kind == "bench" and j.config.step == 5]
    assert sorted(inside.cells) == [0, 1]  # one job for both cells, like the stage it evaluates
    assert [c.stages[0].evaluations[0].bench["held"] for c in plan.report.config.cells] == [inside.id] * 2


def test_keep_checkpoints_reaches_the_train_job(write_spec):
    plan = plan_of(write_spec, MINI + "algorithm:\n  keep_checkpoints: 5\n")
    assert {j.config.algorithm.keep_checkpoints for j in plan.jobs.values() if j.kind == "train"} == {5}
    default = plan_of(write_spec, MINI)
    assert {j.config.algorithm.keep_checkpoints for j in default.jobs.values() if j.kind == "train"} == {2}
    with pytest.raises(SpecError, match="keep_checkpoints"):
        check_file(write_spec(MINI + "algorithm:\n  keep_checkpoints: 0\n"))


# ------------------------------------------------------------------------------------------
# refusals, located at the line that sets evaluate_every
# ------------------------------------------------------------------------------------------


def refused(write_spec, text: str, stage: int = 0) -> tuple[int, str]:
    found = issues_of(write_spec, text)
    line, msg = found[("stages", stage, "evaluate_every")]
    assert line == line_of(text, "evaluate_every")
    return line, msg


def test_epochs_of_unknown_size_are_refused(write_spec):
    text = MINI.replace("    steps: 10\n", "    epochs: 2\n    evaluate_every: 5\n", 1)
    _, msg = refused(write_spec, text)
    assert "stage 's1' counts epochs" in msg and "no expected_size" in msg and "set the stage's `steps`" in msg


def test_epochs_with_filter_solved_are_refused(write_spec):
    text = (MINI.replace("      - kind: decontaminate\n", "      - kind: decontaminate\n    expected_size: 100\n", 1)
            .replace("    steps: 10\n", "    epochs: 2\n    evaluate_every: 5\n    algorithm: {filter_solved: true}\n", 1))
    _, msg = refused(write_spec, text)
    assert "filter_solved re-plans" in msg


def test_epochs_after_a_hard_prompt_filter_are_refused(write_spec):
    text = (MINI.replace("      - kind: decontaminate\n", "      - kind: decontaminate\n    expected_size: 100\n", 1)
            .replace("    max_response_tokens: 2048\n    steps: 10\n",
                     "    max_response_tokens: 2048\n    epochs: 1\n    evaluate_every: 5\n"
                     "    filter_before: {k: 4}\n", 1))
    _, msg = refused(write_spec, text, stage=1)
    assert "filter_before's yield" in msg


def test_filter_solved_with_steps_is_fine(write_spec):
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 5\n    algorithm: {filter_solved: true}\n", 1)
    assert issues_of(write_spec, text) == {}


def test_every_at_or_past_the_end_is_refused(write_spec):
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 10\n", 1)
    _, msg = refused(write_spec, text)
    assert "evaluate_every 10 is not below stage 's1''s 10 steps" in msg and "set it below 10" in msg
    assert issues_of(write_spec, text.replace("evaluate_every: 10", "evaluate_every: 9")) == {}


def test_without_benchmarks_is_refused(write_spec):
    start, end = MINI.index("benchmarks:\n"), MINI.index("stages:\n")
    text = (MINI[:start] + MINI[end:]).replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 2\n", 1)
    _, msg = refused(write_spec, text)
    assert "declares no benchmarks" in msg


def test_refusals_say_where_in_the_cli(write_spec, capsys):
    from rlspec.compiler.cli import main
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 12\n", 1)
    path = write_spec(text)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{line_of(text, 'evaluate_every')}:" in err and "stages[0].evaluate_every" in err


def test_dag_json_runs_snapshot_benches_after_their_train_job(tmp_path, write_spec):
    from rlspec.compiler.cli import main
    text = MINI.replace("    steps: 10\n", "    steps: 10\n    evaluate_every: 5\n", 1)
    assert main(["compile", str(write_spec(text)), "-o", str(tmp_path / "build")]) == 0
    dag = json.loads((tmp_path / "build" / "dag.json").read_text())
    ctx = json.loads((tmp_path / "build" / "context.json").read_text())
    (jid,) = [j for j, info in ctx["jobs"].items() if info["label"] == "bench held @ s1 step 5"]
    (train,) = [j for j, info in ctx["jobs"].items() if info["label"] == "train s1"]
    assert dag["jobs"]["bench"][jid]["needs"] == [f"results/train/{train}/done.json"]
    doc = json.loads((tmp_path / "build" / "jobs" / "bench" / f"{jid}.json").read_text())
    assert doc["config"]["step"] == 5 and doc["inputs"] == {"policy": f"results/train/{train}"}
