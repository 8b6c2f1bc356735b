"""The loss-side knobs of issue 16: dual-clip, adaptive entropy, the warm-up unit, the KL reference,
and stop strings reaching the jobs.

Unit tests pin each rule by hand (the entropy controller against Skywork-OR1's rule, the schedule
factor in both units); compile tests check what the spec gives the jobs (the initial model as the
reference input, stop strings) and what `rlspec check` refuses; one slow real train job, killed
and resumed, shows the trainer honours dual-clip, adaptive entropy (across the resume), warm-up in
batches and the initial-model KL reference together.
"""

from __future__ import annotations

import json
import sys

import pytest

from rlspec.compiler.spec import AdaptiveEntropy, Optimizer
from rlspec.runtime.grpo.entropy import EntropyController
from rlspec.runtime.grpo.trainer import _lr_lambda

from conftest import compile_and_curate, metrics, run, run_train, spec_text

RULE = AdaptiveEntropy(target=0.5, step=0.01, min_coef=0.0, max_coef=0.025)


# ------------------------------------------------------------------------------- adaptive entropy


def test_entropy_controller_follows_skywork_or1():
    c = EntropyController(0.005, RULE)
    assert c.metrics() == {"entropy_coef": 0.005, "entropy_coef_applied": 0.005}  # step 1 applies the initial value
    c.observe(0.1)  # below target: up by step, bonus on
    assert c.coef == pytest.approx(0.015) and c.applied == pytest.approx(0.015)
    c.observe(0.2)
    assert c.coef == pytest.approx(0.025)
    c.observe(0.3)  # clamped at max_coef
    assert c.coef == pytest.approx(0.025)
    c.observe(0.9)  # above target: down by step, and the bonus is off for the next step
    assert c.coef == pytest.approx(0.015) and c.applied == 0.0
    assert c.metrics() == {"entropy_coef": pytest.approx(0.015), "entropy_coef_applied": 0.0}
    for _ in range(5):
        c.observe(0.9)
    assert c.coef == 0.0  # clamped at min_coef
    c.observe(0.5)  # at the target is not below it (Skywork: `current_ent < target_ent`)
    assert c.coef == 0.0 and c.applied == 0.0


def test_entropy_controller_state_round_trips_and_a_fixed_coefficient_stays():
    c = EntropyController(0.01, RULE)
    c.observe(0.9)
    restored = EntropyController(0.01, RULE)
    restored.load(json.loads(json.dumps(c.state())))  # the checkpoint's state is JSON
    assert (restored.coef, restored.applied) == (c.coef, c.applied) == (pytest.approx(0.0), 0.0)
    fixed = EntropyController(0.05, None)
    for h in (0.0, 10.0):
        fixed.observe(h)
    assert fixed.applied == 0.05


# ------------------------------------------------------------------------------- warm-up unit


@pytest.mark.parametrize("unit, warm_opt_steps", [("optimizer_steps", 3), ("batches", 12)])
def test_warmup_unit_counts_optimiser_steps_or_batches(unit, warm_opt_steps):
    """3 warm-up units at 4 optimiser steps per batch (2 updates x 2 mini-batches): 3 or 12 optimiser steps."""
    opt = Optimizer(lr=1e-3, warmup_steps=3, warmup_unit=unit, schedule="linear")
    factor = _lr_lambda(opt, lambda: 40, per_batch=4)
    ramp = [factor(s) for s in range(warm_opt_steps)]
    assert ramp == pytest.approx([(s + 1) / warm_opt_steps for s in range(warm_opt_steps)])
    assert factor(warm_opt_steps) == 1.0  # the schedule starts after the warm-up...
    assert factor(40) == 0.0  # ...and the linear decay ends at the stage's last optimiser step


# ------------------------------------------------------------------------------- compiled jobs


TWO_STAGES = "  - {name: s2, datasets: [math], max_response_tokens: 16, steps: 1, prompts_per_step: 4, group_size: 4}\n"


def _spec(tmp_path, extra_algorithm: str, *, stages: str = "", rollout_stop: str = "[]") -> str:
    """The train tests' spec (a local model folder, which compiling only fingerprints), one benchmark
    with stop strings, `rollout.stop`, and any further `stages`."""
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    text = spec_text(model, steps=1, extra_algorithm=extra_algorithm)
    text = text.replace("evaluate_initial: false\n", "evaluate_initial: false\n" + BENCH)
    text = text.replace("  engine: hf\n", f"  engine: hf\n  stop: {rollout_stop}\n")
    return text.replace("group_size: 4}\n", "group_size: 4}\n" + stages, 1)


BENCH = ("benchmarks:\n  b1:\n    domain: math\n    source: {uri: \"builtin://math?n=4\"}\n"
         "    sampling: {max_response_tokens: 16, stop: [\"</answer>\", \"\\n\\n\"]}\n")


def _compile(tmp_path, text: str) -> tuple[dict, dict]:
    (tmp_path / "spec.yaml").write_text(text)
    out = run([sys.executable, "-m", "rlspec.compiler.cli", "compile", "spec.yaml", "-o", "build"], tmp_path)
    assert out.returncode == 0, out.stderr
    jobs = {}
    for f in (tmp_path / "build" / "jobs").glob("*/*.json"):
        doc = json.loads(f.read_text())
        jobs.setdefault(doc["kind"], []).append(doc)
    return jobs, {d["config"]["stage"]: d for d in jobs["train"]}


def test_kl_reference_initial_gives_every_stage_the_initial_model(tmp_path):
    jobs, train = _compile(tmp_path, _spec(tmp_path, "kl: {coef: 0.01, reference: initial}", stages=TWO_STAGES))
    (initial,) = [d["output_dir"] for d in jobs["model"]]
    assert train["s2"]["inputs"]["policy"] == train["s1"]["output_dir"]  # trains on from stage 1...
    assert train["s1"]["inputs"]["reference"] == train["s2"]["inputs"]["reference"] == initial  # ...KL to the start
    dag = json.loads((tmp_path / "build" / "dag.json").read_text())  # the rules' `needs` (Snakemake inputs)
    # s2's policy is s1's output: only the reference makes it wait for the initial model
    assert f"{initial}/done.json" in dag["jobs"]["train"][train["s2"]["id"]]["needs"]
    _, stage_input = _compile(tmp_path / "b", _spec(tmp_path / "b", "kl: {coef: 0.01}", stages=TWO_STAGES))
    assert "reference" not in stage_input["s2"]["inputs"]


def test_stop_strings_reach_the_train_and_bench_jobs(tmp_path):
    jobs, train = _compile(tmp_path, _spec(tmp_path, "", rollout_stop='["</answer>"]'))
    assert train["s1"]["config"]["sampling"]["stop"] == ["</answer>"]
    (bench,) = jobs["bench"]
    assert bench["config"]["sampling"]["stop"] == ["</answer>", "\n\n"]


def _check(tmp_path, text: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "spec.yaml").write_text(text)
    return run([sys.executable, "-m", "rlspec.compiler.cli", "check", "spec.yaml"], tmp_path)


def test_check_refuses_dual_clip_at_most_one_and_empty_entropy_bounds_and_warns_on_an_unused_reference(tmp_path):
    text = _spec(tmp_path, "clip: {dual: 1.0}\nadaptive_entropy: {target: 0.2, step: 0.001, min_coef: 0.1, max_coef: 0.01}\n"
                           "kl: {reference: initial}")
    out = _check(tmp_path, text)
    said = out.stdout + out.stderr
    assert out.returncode != 0
    line = text.splitlines().index(next(l for l in text.splitlines() if "dual: 1.0" in l)) + 1
    assert f"spec.yaml:{line}:" in said and "algorithm.clip.dual: dual-clip constant 1.0 is not above 1" in said
    assert "max_coef 0.01 is below min_coef 0.1" in said
    assert "warning: kl.reference 'initial' with kl.coef 0" in said
    assert _check(tmp_path / "ok", _spec(tmp_path / "ok", "clip: {dual: 3.0}")).returncode == 0


# ------------------------------------------------------------------------------- the real train job


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_train_job_honours_dual_clip_adaptive_entropy_warmup_in_batches_and_the_initial_reference(
        tmp_path, tiny_model_dir):
    """Two stages, the knobs in the top-level `algorithm` (so in both): 2 mini-batches x 2 updates = 4
    optimiser steps per batch, so ratios leave 1 and a dual-clip constant just above 1 binds; warm-up of
    2 batches = 8 optimiser steps; the entropy coefficient starts at 0.05 and follows the rule through
    a kill and resume of stage 2 after its step 2; stage 2's KL reference is the initial model, which
    stage 1 trained away from, so its KL is above 0 at step 1 (with `stage_input` it is 0 there,
    `test_kl_loads_a_reference_model`)."""
    target, step, lr = 2.0, 0.01, 1.0e-3
    text = spec_text(tiny_model_dir, steps=1, every=1, extra_algorithm=(
        "clip: {low: 0.2, high: 0.28, dual: 1.01}\nmini_batch_size: 2\nupdates_per_batch: 2\n"
        f"entropy_coef: 0.05\nadaptive_entropy: {{target: {target}, step: {step}, min_coef: 0.0, max_coef: 1.0}}\n"
        "kl: {coef: 0.1, reference: initial}"))
    text = text.replace("optimizer: {lr: 1.0e-3, weight_decay: 0.0}",
                        "optimizer: {lr: 1.0e-3, weight_decay: 0.0, warmup_steps: 2, warmup_unit: batches}")
    text = text.replace("group_size: 4}\n", "group_size: 4}\n" + TWO_STAGES.replace("steps: 1", "steps: 3"), 1)
    build, _ = compile_and_curate(tmp_path, text)
    jobs = {json.loads(f.read_text())["config"]["stage"]: f for f in (build / "jobs" / "train").glob("*.json")}
    initial = json.loads(next((build / "jobs" / "model").glob("*.json")).read_text())["output_dir"]
    first = run_train(build, jobs["s1"])
    assert first.returncode == 0, first.stderr[-3000:]
    job = jobs["s2"]
    killed = run_train(build, job, {"RLSPEC_FAULT": "train:step:3"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from step-000002" in out.stdout
    assert f"from {initial}/model (kl.reference initial)" in out.stdout
    rows = metrics(build, job)
    assert [r["step"] for r in rows] == [1, 2, 3]

    print("stage 2 rows:", json.dumps(rows))
    assert rows[0]["kl"] > 1e-5  # the reference is the initial model, not this stage's input (KL 0 at step 1)
    assert any(r["dual_clip_frac"] > 0 for r in rows), [r["dual_clip_frac"] for r in rows]
    # the cap binds only on a ratio above c = 1.01
    assert all(r["dual_clip_frac"] == 0 or r["ratio_max_dev"] > 0.01 for r in rows)
    # warm-up of 2 batches = 8 optimiser steps: after step 1 (4 steps) the factor is 5/8, then the peak
    assert rows[0]["lr"] == pytest.approx(lr * 5 / 8) and rows[1]["lr"] == rows[2]["lr"] == pytest.approx(lr)
    # the coefficient starts at 0.05 and moves by the rule, step 3 (after the resume) included
    coef, on = 0.05, True
    for r in rows:
        assert r["entropy_coef"] == pytest.approx(coef) and r["entropy_coef_applied"] == pytest.approx(coef if on else 0)
        on = r["entropy"] < target
        coef = min(max(coef + (step if on else -step), 0.0), 1.0)
    assert len({round(r["entropy_coef"], 6) for r in rows}) == 3
