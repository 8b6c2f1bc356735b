"""The 7B spec's first train job on Slurm, as a golden file: the sbatch call that the real
snakemake-executor-plugin-slurm makes for it, the job step's srun that the real slurm-jobstep
plugin makes inside the allocation, and the per-node launch that the train job then runs.

No Slurm here: stand-ins record instead of submitting. `sbatch` and `srun` (written into the test's
folder) save their arguments and exit 1; `sacctmgr` confirms the account; `scontrol show hostnames`
lists 8 nodes. Everything else is real: `rlspec compile`, Snakemake with `--executor slurm` on the
compiled workflow (the rule's resources read from dag.json), the plugin's submit code, then the
`--wrap` command it built, run as the batch script would run it (`--executor slurm-jobstep`), and
`rlspec.runtime.grpo.distributed.launch_command` in the environment that job step gives the train
job. The test also checks that the build folder's `launch/<id>.txt` shows the same sbatch options.

Needs the plugin: `./install.sh --dev` puts it in `.venv/slurm-plugin` (a folder of its own, so
that no other Snakemake call of the suite finds it and probes for a cluster), or
`pip install -e .[slurm]`; skipped without it.
Regenerate after an intended change: RLSPEC_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/compiler/test_launch_golden.py
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

GOLDEN = Path(__file__).parent / "golden" / "launch" / "acereason-nemotron-7b.txt"
PLUGIN_DIR = REPO / ".venv" / "slurm-plugin"
SPEC = REPO / "specs" / "acereason-nemotron-7b.yaml"
STAGE = "train math-8k"
RECORDER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
        f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
    sys.exit(1)
    """)
SCONTROL = textwrap.dedent("""\
    #!/bin/sh
    [ "$1 $2" = "show hostnames" ] && for i in 1 2 3 4 5 6 7 8; do echo gpu00$i; done
    """)


def stand_ins(folder: Path) -> Path:
    folder.mkdir()
    for name, text in {"sbatch": RECORDER.format(python=sys.executable), "srun": RECORDER.format(python=sys.executable),
                       "sacctmgr": "#!/bin/sh\necho acct\n", "scontrol": SCONTROL}.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def recorded(log: Path, tool: str) -> list[str]:
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    found = [c[1:] for c in calls if c[0] == tool]
    assert len(found) == 1, f"expected one {tool} call, got {calls}"
    return found[0]


@pytest.fixture
def plugin_path(monkeypatch) -> str:
    """The plugin's folder on this test's sys.path (and its subprocesses' PYTHONPATH) only."""
    extra = str(PLUGIN_DIR) if PLUGIN_DIR.is_dir() else ""
    if extra:
        monkeypatch.syspath_prepend(extra)
    pytest.importorskip("snakemake_executor_plugin_slurm")
    pytest.importorskip("snakemake_executor_plugin_slurm_jobstep")
    return os.pathsep.join(x for x in (extra, os.environ.get("PYTHONPATH", "")) if x)


def normalise(text: str, build: Path) -> str:
    text = text.replace(str(build), "<build>").replace(sys.executable, "python")
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<run uuid>", text)


def test_the_7b_train_job_through_the_real_slurm_plugin(tmp_path, plugin_path):
    build, log = tmp_path / "b", tmp_path / "slurm.jsonl"
    out = subprocess.run([sys.executable, "-m", "rlspec.compiler.cli", "compile", str(SPEC), "-o", str(build)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    dag = json.loads((build / "dag.json").read_text())
    context = json.loads((build / "context.json").read_text())
    job_id = next(j for j, v in context["jobs"].items() if v["label"] == STAGE)
    for need in dag["jobs"]["train"][job_id]["needs"]:  # the jobs before it have finished
        (build / need).parent.mkdir(parents=True)
        (build / need).write_text("{}")
    env = {**os.environ, "PATH": f"{stand_ins(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}",
           "FAKE_SLURM_LOG": str(log), "PYTHONPATH": plugin_path}

    subprocess.run([sys.executable, "-m", "snakemake", "--executor", "slurm", "--jobs", "1", "--slurm-status-command",
                    "squeue", "--default-resources", "slurm_account=acct", "--", f"results/train/{job_id}/done.json"],
                   cwd=build, env=env, capture_output=True, text=True, timeout=300)
    sbatch = recorded(log, "sbatch")
    wrap = next(a for a in sbatch if a.startswith("--wrap="))[len("--wrap="):]
    assert "--executor slurm-jobstep" in wrap and f"--target-jobs 'train:id={job_id}'" in wrap
    options = [a for a in sbatch if not a.startswith("--wrap=")]

    # The batch script: the wrapped Snakemake with the job-step executor, inside "job 123456".
    step_env = {**env, "SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu[001-008]"}
    # the submitting Snakemake's marker file, which it removed when it stopped
    Path(re.search(r"--wait-for-files '([^']+)'", wrap).group(1)).touch()
    subprocess.run(["sh", "-c", wrap], cwd=build, env=step_env, capture_output=True, text=True, timeout=300)
    step = recorded(log, "srun")
    program = next(i for i, a in enumerate(step) if "python" in a)
    assert f"train:id={job_id}" in " ".join(step[program:]), step  # Snakemake again, which runs the rule
    step_flags = step[:program]

    # The train job inside that step: what srun gives it, per the step's flags.
    from rlspec.runtime.grpo import distributed
    cpus = next(a.split("=")[1] for a in step_flags if a.startswith("--cpus-per-task="))
    job_step = {"PATH": env["PATH"], "SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu[001-008]",
                "SLURM_CPUS_PER_TASK": cpus}
    ranks = json.loads((build / f"jobs/train/{job_id}.json").read_text())["config"]["ranks"]
    launch = distributed.launch_command(ranks, ["--job", f"jobs/train/{job_id}.json", "--context", "context.json"],
                                        job_step, gpus=True)

    text = normalise("\n".join([
        f"# {STAGE} of specs/acereason-nemotron-7b.yaml ({ranks} ranks); regenerate: see {Path(__file__).name}",
        "# sbatch, by snakemake-executor-plugin-slurm (the --wrap command: Snakemake with --executor slurm-jobstep):",
        shlex.join(["sbatch", *options, "--wrap=<snakemake>"]),
        "# in the allocation (job 123456, nodes gpu[001-008]), the job step, by the slurm-jobstep plugin:",
        shlex.join(["srun", *step_flags, "<snakemake: python -m rlspec.runtime.train ...>"]),
        "# the train job in that step starts its ranks (rlspec.runtime.grpo.distributed.launch_command):",
        shlex.join(launch),
    ]) + "\n", build)
    if os.environ.get("RLSPEC_REGEN_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "differs from the golden file; regenerate if intended (module docstring)"

    shown = (build / "launch" / f"{job_id}.txt").read_text()
    plugin_flags = " ".join(options[options.index("-p"):]).replace(f" -D {build}", "")
    assert f"\nsbatch {plugin_flags}\n" in shown, (plugin_flags, shown)


class _Resources(dict):
    """Stands in for Snakemake's evaluated resources of a job (`.get` and attribute access, the two
    ways the plugin reads them)."""

    __getattr__ = dict.__getitem__


SHAPES = {  # spec resources (as compiler/plan.py resolves them) -> one job of each shape
    "cpu": {"gpus": 0, "cpus": 2, "mem_mb": 8192, "runtime": 30, "nodes": 1, "slurm_partition": "", "slurm_extra": ""},
    "one-node gpus": {"gpus": 8, "cpus": 32, "mem_mb": 524288, "runtime": 480, "nodes": 1, "slurm_partition": "gpu",
                      "slurm_extra": "--constraint=h100"},
    "multi-node gpus": {"gpus": 8, "cpus": 64, "mem_mb": 1048576, "runtime": 10080, "nodes": 16,
                        "slurm_partition": "gpu", "slurm_extra": "--qos=long"},
    "multi-node cpus": {"gpus": 0, "cpus": 4, "mem_mb": 4096, "runtime": 60, "nodes": 2, "slurm_partition": "",
                        "slurm_extra": ""},
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_build_folders_sbatch_options_are_the_plugins(shape, plugin_path):
    """`compiler.render.sbatch_options` (what launch/<id>.txt shows) against the plugin's own
    `get_submit_command` + `set_gres_string` on the same resources, for each shape of job."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from rlspec.compiler.render import _rule_resources, sbatch_options
    res = _rule_resources(SimpleNamespace(kind="train" if SHAPES[shape]["gpus"] else "bench", resources=SHAPES[shape]))
    job = SimpleNamespace(resources=_Resources(res), threads=res["cpus"])
    params = {"run_uuid": "U", "slurm_logfile": "L", "comment_str": "C", "account": "", "workdir": "",
              "partition": f" -p {res['slurm_partition']}" if "slurm_partition" in res else ""}
    call = get_submit_command(job, params) + set_gres_string(job)
    prefix = "sbatch --parsable --job-name U --output L --export=ALL --comment C "
    assert call.startswith(prefix)
    assert " ".join(call[len(prefix):].split()) == sbatch_options(res)
