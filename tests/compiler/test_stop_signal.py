"""The stop signal a train job gets before its Slurm time limit (`--signal=TERM@<lead>`).

Slurm sends it at once when the lead is longer than the limit, and may send it up to a minute early:
a 20-minute lead on a 10-minute job stopped every attempt at its first step on the local Slurm (found
by tests/e2e/test_slurm_preemption.py's author). So the lead is 20 minutes, a quarter of a shorter
limit, and no signal below 2 minutes; SIGTERM, which the job step's inner Snakemake waits out."""

from __future__ import annotations

import pytest

from rlspec.compiler.render import _rule_resources, stop_signal_lead

from conftest import MINI


@pytest.mark.parametrize("time_min, lead", [(10080, 1200), (80, 1200), (30, 450), (10, 150), (7, None), (1, None)])
def test_the_lead_fits_inside_the_limit(time_min, lead):
    assert stop_signal_lead(time_min) == lead
    if lead is not None:
        assert lead <= time_min * 60 / 4


def test_a_train_job_gets_sigterm_and_other_jobs_none(write_spec):
    from rlspec.compiler.plan import build_plan
    from rlspec.compiler.validate import check_file
    path = write_spec(MINI + "resources:\n  train: {time_min: 30}\n  bench: {time_min: 600}\n")
    plan = build_plan(check_file(path).cells, path.parent)
    for job in plan.jobs.values():
        extra = _rule_resources(job).get("slurm_extra", "")
        assert extra == ("--signal=TERM@450" if job.kind == "train" else ""), job.label
