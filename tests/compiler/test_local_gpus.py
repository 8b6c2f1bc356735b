"""`rlspec run --profile local` caps Snakemake's `gpu` resource at this machine's GPUs and hands its jobs
the lock folder and device ids from which each takes its own slice (`rlspec.runtime.devices`).

Real Snakemake through the real runner. The GPUs are stand-ins (`RLSPEC_LOCAL_GPUS`: this machine has
none), and in the concurrent run the two jobs are small `python -c` programs that start the way every
rlspec job does (`devices.claim_for_job`, which `runtime.job.load_job` calls) and record what they see.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from rlspec.compiler import runner
from rlspec.compiler.plan import build_plan
from rlspec.compiler.render import render, write_build
from rlspec.compiler.validate import check_file

from conftest import REPO


def compile_to(spec: Path, out: Path) -> None:
    checked = check_file(spec)
    write_build(render(checked, build_plan(checked.cells, spec.parent), spec_file=str(spec)), out)


def test_local_profile_gets_the_gpu_cap(tmp_path):
    compile_to(REPO / "specs/quickstart.yaml", tmp_path / "b")
    cmd = runner.snakemake_command(tmp_path / "b", profile="local", cores=2, dry_run=True, extra=[], gpus=4)
    assert cmd[cmd.index("--resources") + 1] == "gpu=4"
    mine = runner.snakemake_command(tmp_path / "b", profile="local", cores=2, dry_run=True,
                                    extra=["--resources", "gpu=1"], gpus=4)
    assert mine.count("--resources") == 1 and mine[-1] == "gpu=1"  # the user's own cap wins
    # `--resources` takes every word after it: the user's targets must come before it
    targets = runner.snakemake_command(tmp_path / "b", profile="local", cores=2, dry_run=False,
                                       extra=["--until", "curate", "results/model/x/done.json"], gpus=4)
    assert targets[-2:] == ["--resources", "gpu=4"] and targets[-3] == "results/model/x/done.json"
    assert "--resources" not in runner.snakemake_command(tmp_path / "b", profile="local", cores=2, dry_run=True,
                                                         extra=[], gpus=None)
    assert runner.local_gpus("slurm") is None


def test_real_dry_run_passes_the_machines_gpus(tmp_path, capfd, monkeypatch):
    compile_to(REPO / "tests/compiler/data/small-grid.yaml", tmp_path / "b")
    monkeypatch.setenv("RLSPEC_LOCAL_GPUS", "3")
    assert runner.run_snakemake(tmp_path / "b", profile="local", cores=2, dry_run=True) == 0
    out = capfd.readouterr()
    assert "--dry-run --resources gpu=3" in out.out + out.err
    assert "gpu=2" in out.out + out.err  # the train jobs' own request, counted against the cap


JOB = textwrap.dedent("""\
    import json, os, sys, time
    from pathlib import Path
    from types import SimpleNamespace
    from rlspec.runtime import devices
    job = SimpleNamespace(kind="bench", id=sys.argv[1], path=Path("jobs/bench") / (sys.argv[1] + ".json"))
    devices.claim_for_job(job)
    time.sleep(2)  # hold the slice while the other job starts
    Path(sys.argv[2]).write_text(json.dumps({"visible": os.environ["CUDA_VISIBLE_DEVICES"], "t": time.time()}))
    """)


def test_concurrent_local_jobs_get_their_own_gpus(tmp_path, monkeypatch):
    build = tmp_path / "b"
    (build / "profiles" / "local").mkdir(parents=True)
    (build / "profiles" / "local" / "config.yaml").write_text("cores: 2\n")
    (build / "job.py").write_text(JOB)
    ids = ["aaaa", "bbbb"]
    (build / "dag.json").write_text(json.dumps({"jobs": {"bench": {i: {"resources": {"gpu": 2, "nodes": 1}}
                                                                   for i in ids}}}))
    (build / "Snakefile").write_text(textwrap.dedent(f"""\
        rule all:
            input: expand("out/{{id}}.json", id={ids!r})
        rule bench:
            output: "out/{{id}}.json"
            resources: gpu=2
            shell: "{sys.executable} job.py {{wildcards.id}} {{output}}"
        """))
    monkeypatch.setenv("RLSPEC_LOCAL_GPUS", "4")
    assert runner.run_snakemake(build, profile="local", cores=2) == 0
    seen = [json.loads((build / "out" / f"{i}.json").read_text()) for i in ids]
    a, b = (set(s["visible"].split(",")) for s in seen)
    assert len(a) == len(b) == 2 and a.isdisjoint(b)
    assert abs(seen[0]["t"] - seen[1]["t"]) < 1.5  # they did run at the same time
