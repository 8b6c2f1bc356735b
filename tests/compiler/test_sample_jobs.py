"""Pass-rate `sample` jobs in the plan: one content-addressed job per (items, filters, model,
sampling, engine), shared by every dataset that asks for those samples, chained when a dataset has
several `pass_rate` filters; each dataset's curate job keeps only its thresholds (`PassRateCut`)."""

from __future__ import annotations

from rlspec.compiler.jobs import PassRateCut
from rlspec.compiler.plan import build_plan
from rlspec.compiler.validate import check_file

from conftest import SPECS

SOURCES = '[{uri: "builtin://math?n=100"}]'
SPEC = """\
name: samples
seed: 3
model:
  path: org/model
  max_context: 4096
datasets:
{datasets}
benchmarks:
  held:
    domain: math
    source: {{uri: "builtin://math?n=20&split=test"}}
    k: 4
    sampling: {{max_response_tokens: 1024}}
stages:
  - name: s1
    datasets: [{names}]
    max_response_tokens: 1024
    steps: 10
    prompts_per_step: 8
    group_size: 4
"""


def plan_of(write_spec, datasets: dict[str, str]):
    blocks = "".join(f"  {name}:\n    domain: math\n    sources: {SOURCES}\n    filters: {filters}\n"
                     for name, filters in datasets.items())
    return build_plan(check_file(write_spec(SPEC.format(datasets=blocks, names=", ".join(datasets)))).cells)


def curate_of(plan, dataset: str):
    [job] = [j for j in plan.by_kind("curate") if j.config.dataset == dataset]
    return job


def test_the_7b_spec_samples_r1_once_for_code_and_once_for_math():
    plan = build_plan(check_file(SPECS / "acereason-nemotron-7b.yaml").cells, SPECS)
    samples = {j.config.domain: j for j in plan.by_kind("sample")}
    assert len(plan.by_kind("sample")) == 2 and set(samples) == {"math", "code"}
    teacher = plan.jobs[samples["code"].inputs["teacher"]]
    assert teacher.kind == "model" and "DeepSeek-R1" in teacher.label and "Distill" not in teacher.label
    assert samples["code"].config.sampling.model == "teacher" and samples["code"].config.sampling.k == 8
    code, capped, math = (curate_of(plan, name) for name in ("code", "code-capped", "math"))
    assert code.inputs == capped.inputs == {"upstream": samples["code"].id}
    assert math.inputs == {"upstream": samples["math"].id}
    assert all(j.config.sources == [] for j in (code, capped, math))
    # the two code datasets differ only in their name and their pass-rate thresholds
    a, b = code.config.model_dump(), capped.config.model_dump()
    assert (a.pop("dataset"), b.pop("dataset")) == ("code", "code-capped")
    assert a["filters"][0] == {"kind": "pass_rate", "min": 0.125, "max": 1.0, "majority": False,
                               "min_response_tokens": None}
    assert b["filters"][0] == {**a["filters"][0], "min": 0.375}
    a["filters"][0] = b["filters"][0] = None
    assert a == b
    assert math.config.filters[0] == PassRateCut(kind="pass_rate", min=0.0, max=1.0, majority=True,
                                                 min_response_tokens=2000)
    # the sample job carries no thresholds: sampling settings only
    assert "min" not in samples["code"].config.sampling.model_dump()
    assert plan.cells[0].curate["code"] == code.id


def test_datasets_that_differ_before_the_pass_rate_get_their_own_sample_jobs(write_spec):
    pass_rate = "{kind: pass_rate, k: 4, max: 0.5}"
    plan = plan_of(write_spec, {"a": f"[{{kind: dedup_exact}}, {pass_rate}]",
                                "b": f"[{{kind: proof}}, {pass_rate}]",
                                "c": "[{kind: dedup_exact}, {kind: pass_rate, k: 4, min: 0.25}]"})
    samples = plan.by_kind("sample")
    assert len(samples) == 2
    by_first = {j.config.filters[0].kind: j for j in samples}
    assert set(by_first) == {"dedup_exact", "proof"}
    shared = by_first["dedup_exact"].id
    assert curate_of(plan, "a").inputs["upstream"] == curate_of(plan, "c").inputs["upstream"] == shared
    assert curate_of(plan, "b").inputs["upstream"] == by_first["proof"].id
    assert all(j.inputs["policy"] == plan.cells[0].initial for j in samples)  # `policy: initial`: the model job


def test_a_dataset_with_two_pass_rates_chains_sample_sample_curate(write_spec):
    plan = plan_of(write_spec, {"a": "[{kind: dedup_exact}, {kind: pass_rate, k: 4, max: 0.75}, {kind: proof}, "
                                     "{kind: pass_rate, policy: org/teacher, k: 2, min: 0.5}]"})
    first, second = plan.by_kind("sample")
    curate = curate_of(plan, "a")
    assert curate.inputs == {"upstream": second.id}
    assert second.inputs["upstream"] == first.id and "upstream" not in first.inputs
    assert first.config.sources and second.config.sources == [] and curate.config.sources == []
    assert [f.kind for f in first.config.filters] == ["dedup_exact"]
    assert second.config.filters[0] == PassRateCut(kind="pass_rate", min=0.0, max=0.75, majority=False,
                                                   min_response_tokens=None)
    assert [f.kind for f in second.config.filters] == ["pass_rate", "proof"]
    assert (first.config.sampling.model, second.config.sampling.model) == ("policy", "teacher")
    assert curate.config.filters == [PassRateCut(kind="pass_rate", min=0.5, max=1.0, majority=False,
                                                 min_response_tokens=None)]
