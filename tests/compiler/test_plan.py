"""The job DAG: content-addressed jobs shared across grid cells, budgets, determinism, purity."""

from __future__ import annotations

import json
import subprocess
import sys

from rlspec.compiler.plan import build_plan, totals
from rlspec.compiler.render import render, write_build
from rlspec.compiler.validate import check_file

from conftest import MINI, SPECS

THREE_STAGES = MINI + """\
  - name: s3
    datasets: [math]
    max_response_tokens: 2048
    steps: 10
    prompts_per_step: 8
    group_size: 4
"""


def kinds(plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in plan.jobs.values():
        out[job.kind] = out.get(job.kind, 0) + 1
    return out


def test_grid_varying_stage_two_runs_stage_one_once(write_spec):
    # 3 x 3 grid over stage 2 only: stage 1 is shared (1 job), stage 2 has 9 variants.
    spec = MINI + ("grid:\n  axes:\n    - path: stages[s2].max_response_tokens\n      values: [1536, 2048, 2047]\n"
                   "    - path: stages[s2].algorithm.optimizer.lr\n      values: [1.0e-6, 2.0e-6, 4.0e-6]\n")
    plan = build_plan(check_file(write_spec(spec)).cells)
    trains = [j for j in plan.jobs.values() if j.kind == "train"]
    assert len(plan.cells) == 9
    assert len(trains) == 1 + 9
    s1 = [j for j in trains if j.config.stage == "s1"]
    assert len(s1) == 1 and sorted(s1[0].cells) == list(range(9))
    # every s2 job starts from the one s1 checkpoint
    assert all(j.inputs["policy"] == s1[0].id for j in trains if j.config.stage == "s2")
    # initial-model benchmarks and curation are shared too
    assert kinds(plan)["curate"] == 1
    assert kinds(plan)["bench"] == 1 + 1 + 9  # initial, after s1, after each s2


def test_varying_last_stage_shares_the_prefix(write_spec):
    spec = THREE_STAGES + "grid:\n  axes:\n    - path: stages[2].algorithm.updates_per_batch\n      values: [1, 2, 4]\n"
    plan = build_plan(check_file(write_spec(spec)).cells)
    trains = [j for j in plan.jobs.values() if j.kind == "train"]
    assert len(trains) == 2 + 3


def test_seed_axis_shares_deterministic_curation(write_spec):
    spec = MINI + "grid:\n  axes:\n    - {path: seed, values: [1, 2, 3]}\n"
    plan = build_plan(check_file(write_spec(spec)).cells)
    assert kinds(plan)["curate"] == 1  # curation without shuffling or sampling does not depend on the seed
    assert kinds(plan)["train"] == 2 * 3
    assert len([j for j in plan.jobs.values() if j.kind == "bench" and "initial" in j.label]) == 1


def test_product_zip_and_exclude(write_spec):
    axes = "  axes:\n    - {path: seed, values: [1, 2]}\n    - {path: 'stages[0].steps', values: [5, 6]}\n"
    product = check_file(write_spec(MINI + "grid:\n" + axes, "p.yaml"))
    zipped = check_file(write_spec(MINI + "grid:\n  mode: zip\n" + axes, "z.yaml"))
    excluded = check_file(write_spec(MINI + "grid:\n" + axes + "  exclude:\n    - {seed: 2, steps: 6}\n", "e.yaml"))
    assert [c.label for c in product.cells] == ["seed=1,steps=5", "seed=1,steps=6", "seed=2,steps=5", "seed=2,steps=6"]
    assert [c.label for c in zipped.cells] == ["seed=1,steps=5", "seed=2,steps=6"]
    assert [c.label for c in excluded.cells] == ["seed=1,steps=5", "seed=1,steps=6", "seed=2,steps=5"]


def test_job_id_is_hash_of_config_and_inputs(write_spec):
    plan = build_plan(check_file(write_spec(MINI)).cells)
    trains = [j for j in plan.jobs.values() if j.kind == "train"]
    s1, s2 = trains
    assert s2.inputs["policy"] == s1.id
    # change only stage 1: stage 2's config is unchanged but its input id changes, so its id changes
    plan2 = build_plan(check_file(write_spec(MINI.replace("    steps: 10\n", "    steps: 11\n", 1), "b.yaml")).cells)
    t1, t2 = [j for j in plan2.jobs.values() if j.kind == "train"]
    assert t2.config == s2.config and t2.id != s2.id and t1.id != s1.id


def test_budget_arithmetic(write_spec):
    plan = build_plan(check_file(write_spec(MINI)).cells)
    s1 = next(j for j in plan.jobs.values() if j.kind == "train" and j.config.stage == "s1")
    est = s1.estimate
    assert est["rollout_tokens"] == 8 * 4 * 1024 * 10  # prompts/step x group x max tokens x steps
    assert est["responses"] == 8 * 4 * 10
    # defaults: 2500 generated tok/s/GPU at 60% mean length; train tokens at 8000 tok/s/GPU
    gen = 8 * 4 * 10 * 1024 * 0.6 / 2500 / 3600
    assert abs(est["generation_gpu_hours"] - round(gen, 3)) < 1e-9
    t = totals(plan)
    assert t["grid"]["rollout_tokens"] == 8 * 4 * 10 * (1024 + 2048)


def test_per_epoch_group_size_budget(write_spec):
    text = MINI.replace("      - uri: builtin://math?n=100\n", "      - uri: builtin://math?n=100\n    expected_size: 64\n")
    text = text.replace("    steps: 10\n    prompts_per_step: 8\n    group_size: 4\n",
                        "    epochs: 2\n    prompts_per_step: 8\n    group_size: {kind: per_epoch, values: [4, 8]}\n", 1)
    plan = build_plan(check_file(write_spec(text)).cells)
    s1 = next(j for j in plan.jobs.values() if j.kind == "train" and j.config.stage == "s1")
    assert s1.estimate["steps"] == 16  # 64 prompts / 8 per step x 2 epochs
    assert s1.estimate["responses"] == 8 * (4 * 8 + 8 * 8)


def test_compile_is_deterministic(tmp_path):
    spec = SPECS / "ablations" / "hard-prompts.yaml"
    outs = []
    for name in ("a", "b"):
        checked = check_file(spec)
        plan = build_plan(checked.cells, spec.parent)
        write_build(render(checked, plan, spec_file=str(spec)), tmp_path / name)
        outs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
    assert len(outs[0]) > 40


def test_recompile_keeps_unchanged_files(tmp_path, write_spec):
    path = write_spec(MINI)
    checked = check_file(path)
    files = render(checked, build_plan(checked.cells), spec_file=str(path))
    first = write_build(files, tmp_path / "b")
    job = next((tmp_path / "b" / "jobs" / "train").iterdir())
    mtime = job.stat().st_mtime_ns
    second = write_build(files, tmp_path / "b")
    assert first["written"] == len(files) and second == {"written": 0, "unchanged": len(files), "removed": 0}
    assert job.stat().st_mtime_ns == mtime
    # a smaller plan removes stale job files but never results/
    (tmp_path / "b" / "results" / "x").mkdir(parents=True)
    one = check_file(write_spec(MINI.split("  - name: s2")[0], "one.yaml"))
    third = write_build(render(one, build_plan(one.cells), spec_file="one.yaml"), tmp_path / "b")
    assert third["removed"] >= 1 and (tmp_path / "b" / "results" / "x").is_dir()


def test_compiler_imports_no_heavy_runtime():
    code = ("import sys, rlspec.compiler.cli, rlspec.compiler.plan, rlspec.compiler.render, rlspec.compiler.runner, "
            "rlspec.compiler.show, rlspec.compiler.schema\n"
            "from rlspec.compiler.cli import main\n"
            "main(['plan', 'specs/quickstart.yaml', '--json'])\n"
            "heavy = [m for m in ('torch', 'transformers', 'deepspeed', 'vllm', 'wandb', 'rlspec.runtime', 'datasets')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SPECS.parent)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"] == "quickstart"


def test_quickstart_ablations_share_their_prefix():
    onpolicy = build_plan(check_file(SPECS / "ablations" / "quickstart-onpolicy.yaml").cells)
    trains = [j for j in onpolicy.jobs.values() if j.kind == "train"]
    assert len(onpolicy.cells) == 2 and len(trains) == 3 + 1  # math stages once, code stage per cell
    shared = {j.config.stage for j in trains if len(j.cells) == 2}
    assert shared == {"math-short", "math-long"}
    # both code-stage jobs start from the one shared math-long checkpoint
    math_long = next(j for j in trains if j.config.stage == "math-long")
    assert {j.inputs["policy"] for j in trains if j.config.stage == "code"} == {math_long.id}
    length = build_plan(check_file(SPECS / "ablations" / "quickstart-length.yaml").cells)
    assert sum(1 for j in length.jobs.values() if j.kind == "train") == 1 + 2 + 2
