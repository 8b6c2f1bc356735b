"""Plan -> build folder: Snakefile, rules/*.smk, one JSON per job, resolved spec, manifest, profiles,
and `launch/<id>.txt` per train job (its sbatch options and how it starts its ranks).

The build folder is a pure function of the spec: same spec, byte-identical files (no timestamps,
sorted keys). Job files are content-addressed and only rewritten when their bytes change, so a
recompile never makes Snakemake think a finished job's inputs are newer than its outputs.
`results/` and `logs/` (written by the jobs) are never touched here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jinja2

from .plan import ENVIRONMENTS, ID_LENGTH, KINDS, Plan, canonical
from .validate import Checked

GENERATED_DIRS = ("jobs", "rules", "envs", "profiles", "launch")
RULE_DOCS = {
    "model": "build the from-scratch policy (tokenizer, init, SFT warm-up)",
    "sample": "sample a model k times on a dataset's items (curation's pass rate), once for every dataset that asks",
    "curate": "run a dataset's sources through its filters",
    "filter": "keep the prompts the policy entering a stage finds hard",
    "train": "one GRPO stage",
    "bench": "evaluate one checkpoint on one benchmark",
    "report": "tables and figures for the whole grid",
}
ENV_EXTRAS = {"trainer": "gpu", "rollout": "gpu", "eval": "gpu", "sandbox": "runtime"}


def package_version() -> str:
    try:
        return version("rlspec")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("rlspec.templates", "."), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


# One encoder object: json.dumps builds a new encoder on every call with non-default options, which
# dominated compile time for 1,000-cell grids.
_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str, separators=(", ", ": "))
_KEY = json.JSONEncoder(ensure_ascii=False)


def _compact(data: Any) -> str:
    return _COMPACT.encode(data)


def _json_shallow(data: Any, depth: int = 2, indent: str = "") -> str:
    """JSON whose maps are expanded one key per line down to `depth`, and compact below: as
    readable as indented JSON for a job file, at the C encoder's speed."""
    if depth == 0 or not isinstance(data, dict) or not data:
        return _compact(data)
    inner = indent + "  "
    body = ",\n".join(f"{inner}{_KEY.encode(k)}: {_json_shallow(v, depth - 1, inner)}"
                       for k, v in sorted(data.items()))
    return "{\n" + body + "\n" + indent + "}"


def _json_rows(head: dict[str, Any], key: str, rows: dict[str, Any] | list[Any]) -> str:
    """Valid JSON with one compact line per entry of a big collection: readable and greppable, and
    fast to write for 1,000-cell grids (indented JSON goes through the slow pure-Python encoder)."""
    lines = ["{"] + [f"  {json.dumps(k)}: {_compact(v)}," for k, v in sorted(head.items())]
    if isinstance(rows, dict):
        body = [f"    {json.dumps(k)}: {_compact(v)}" for k, v in rows.items()]
        lines += [f"  {json.dumps(key)}: {{", ",\n".join(body), "  }"]
    else:
        lines += [f"  {json.dumps(key)}: [", ",\n".join(f"    {_compact(v)}" for v in rows), "  ]"]
    return "\n".join(lines) + "\n}\n"


@dataclass(frozen=True)
class RuleView:
    kind: str
    doc: str
    env: str
    resource_keys: list[str]


def spec_hash(dumps: list[dict]) -> str:
    return hashlib.sha256(canonical(dumps).encode()).hexdigest()


def render(checked: Checked, plan: Plan, *, spec_file: str, provenance: dict[str, Any] | None = None) -> dict[str, str]:
    """Every file of the build folder, as {relative path: text}. `provenance` (git commits, overrides:
    `compiler/provenance.py`) goes into the manifest and the context; without it they say null."""
    env = _env()
    ver = package_version()
    files: dict[str, str] = {}
    job_docs: dict[str, dict] = {}
    for job in plan.jobs.values():
        doc = job.document(plan.jobs)
        job_docs[job.id] = doc
        files[f"jobs/{job.kind}/{job.id}.json"] = _json_shallow(doc, depth=3) + "\n"

    kinds = [k for k in KINDS if plan.by_kind(k)]
    targets = [plan.report.done] + sorted(j.done for j in plan.jobs.values() if j.kind == "bench")
    dag_jobs = {k: {j.id: {"needs": [plan.jobs[i].done for i in j.input_ids()], "resources": _rule_resources(j)}
                    for j in plan.by_kind(k)} for k in kinds}
    files["dag.json"] = _json_rows({"targets": targets}, "jobs", dag_jobs)

    rule_tpl = env.get_template("rule.smk.j2")
    for kind in kinds:
        keys = sorted({key for j in plan.by_kind(kind) for key in _rule_resources(j) if key != "cpus"})
        files[f"rules/{kind}.smk"] = rule_tpl.render(rule=RuleView(kind, RULE_DOCS[kind], ENVIRONMENTS[kind], keys))
    env_tpl = env.get_template("env.yaml.j2")
    for name in sorted({ENVIRONMENTS[k] for k in kinds}):
        used_by = ", ".join(k for k in kinds if ENVIRONMENTS[k] == name)
        files[f"envs/{name}.yaml"] = env_tpl.render(
            env={"name": name, "kinds": used_by, "extra": ENV_EXTRAS[name]}, version=ver)

    dumps = plan.dumps
    s_hash = spec_hash(dumps)
    files["Snakefile"] = env.get_template("Snakefile.j2").render(
        version=ver, spec_file=Path(spec_file).name, spec_hash=s_hash[:ID_LENGTH], n_cells=len(checked.cells),
        n_jobs=len(plan.jobs), kinds=kinds, id_length=ID_LENGTH)
    launch_tpl = env.get_template("launch.txt.j2")
    for job in plan.by_kind("train"):
        files[f"launch/{job.id}.txt"] = launch_tpl.render(launch=_launch_view(job))
    files["profiles/local/config.yaml"] = env.get_template("profile_local.yaml.j2").render(cores="all")
    files["profiles/slurm/config.yaml"] = env.get_template("profile_slurm.yaml.j2").render(
        jobs=100, status_command=None, retries=RETRIES)

    spec0 = checked.cells[0].spec
    files["spec.resolved.json"] = _json_rows({"name": spec0.name}, "cells", [
        {"label": c.label, "values": c.values, "spec": d} for c, d in zip(checked.cells, dumps)])
    files["context.json"] = _json_rows({
        "name": spec0.name,
        # Relative local data files in the spec are read from here (not part of any job id).
        "spec_dir": str(Path(spec_file).resolve().parent),
        "tracking": spec0.tracking.model_dump(mode="json"),
        "cells": [{"index": c.index, "label": c.label, "values": c.values} for c in checked.cells],
        "provenance": provenance,
    }, "jobs", {j.id: {"kind": j.kind, "label": j.label, "cells": j.cells} for j in plan.jobs.values()})
    files["manifest.json"] = _json_rows({
        "rlspec_version": ver,
        "spec": {"name": spec0.name, "file": Path(spec_file).name, "hash": s_hash},
        "cells": len(checked.cells),
        "provenance": provenance,
    }, "jobs", {j.id: {"kind": j.kind, "label": j.label,
                       "hash": hashlib.sha256(files[f"jobs/{j.kind}/{j.id}.json"].encode()).hexdigest()}
                for j in plan.jobs.values()})
    return files


# Train jobs get SIGTERM this long before their time limit (`sbatch --signal`): the step in flight
# finishes, a checkpoint is written and the job exits; Snakemake's retry (`retries` in the Slurm
# profile) resumes from it. 20 minutes covers a 32K-token step's rollout tail and a checkpoint; a
# `--signal` in the user's `slurm_extra` comes later on the line and wins. TERM, not USR1: the job
# step's task is the plugin's inner Snakemake, which waits for its running job on SIGTERM (USR1
# would kill it, and the step with it); the rule `exec`s the program, so no shell sits between
# them to die first. Slurm may signal up to a minute early, and at once when the lead is longer than
# the limit (which would stop every attempt at its first step): a short job gets a quarter of its
# limit as lead, and none below STOP_SIGNAL_MIN_S.
TRAIN_STOP_SIGNAL_S = 1200
STOP_SIGNAL_MIN_S = 120
RETRIES = 3


def stop_signal_lead(time_min: int) -> int | None:
    """Seconds before a train job's limit that Slurm sends the stop signal; None: too short a limit."""
    lead = min(TRAIN_STOP_SIGNAL_S, time_min * 60 // 4)
    return lead if lead >= STOP_SIGNAL_MIN_S else None


def _rule_resources(job) -> dict[str, Any]:
    """Snakemake resource values for one job; keys the executors understand (local and Slurm).

    One node: every job is one process (a train job starts its own ranks with torchrun), so it is
    one Slurm task. snakemake-executor-plugin-slurm 2.x reads `tasks` of a GPU job as
    `--ntasks-per-gpu` (8 GPUs -> 8 tasks, each with `cpus_per_task` CPUs), so GPU jobs pass no
    `tasks`; `gpu` becomes `--gpus`, the job's total.
    Several nodes (train jobs: one torchrun per node): `gres` = `gpu:<per node>` (`--gres` counts
    per node; `--gpus=64` over 8 nodes may be spread unevenly, and the plugin's job step would ask
    for all 64 on its one node), and one task per node (`--ntasks-per-node=1` in `slurm_extra`, the
    one task flag the plugin does not set itself) with `cpus_per_task` = the node's CPUs.
    """
    r = job.resources
    out: dict[str, Any] = {"cpus": r["cpus"], "mem_mb": r["mem_mb"], "runtime": r["runtime"],
                           "cpus_per_task": r["cpus"], "nodes": r["nodes"]}
    extra = r["slurm_extra"]
    lead = stop_signal_lead(r["runtime"])
    if job.kind == "train" and lead is not None:  # the trainer checkpoints on it and exits; the retry resumes
        extra = " ".join(x for x in (f"--signal=TERM@{lead}", extra) if x)
    if r["nodes"] > 1:
        if r["gpus"]:
            out["gres"] = f"gpu:{r['gpus']}"
        extra = " ".join(x for x in ("--ntasks-per-node=1", extra) if x)
    elif r["gpus"]:
        out["gpu"] = r["gpus"]
    if not r["gpus"]:
        out["tasks"] = r["nodes"]  # one per node (`--ntasks`; with several nodes also --ntasks-per-node=1)
    if r["slurm_partition"]:
        out["slurm_partition"] = r["slurm_partition"]
    if extra:
        out["slurm_extra"] = extra
    return out


def sbatch_options(res: dict[str, Any]) -> str:
    """The sbatch flags snakemake-executor-plugin-slurm 2.x builds from one job's resources, in its
    order (`get_submit_command`, then `set_gres_string`); the flags of the run (job name, log file,
    comment, `-D`, the account) aside. tests/compiler/test_launch_golden.py runs the installed
    plugin's submit code and compares."""
    gpu_job = "gpu" in res or "gpu" in res.get("gres", "")
    flags = [f"-p {res['slurm_partition']}"] if "slurm_partition" in res else []
    flags += [f"-t {res['runtime']}", f"--mem {res['mem_mb']}", f"--nodes={res['nodes']}"]
    if not gpu_job:
        flags.append(f"--ntasks={res['tasks']}")
    flags.append(f"--cpus-per-task={res['cpus_per_task']}")
    if "slurm_extra" in res:
        flags.append(res["slurm_extra"])
    if "gres" in res:
        flags.append(f"--gres={res['gres']}")
    if "gpu" in res:
        flags.append(f"--gpus={res['gpu']}")
    return " ".join(flags)


def _launch_view(job) -> dict[str, Any]:
    """What `launch/<id>.txt` says about one train job: its sbatch options and the command that
    starts its ranks (`rlspec.runtime.grpo.distributed`, with the allocation's values symbolic)."""
    from rlspec.runtime.grpo.distributed import PROGRAM, local_torchrun, slurm_torchrun
    r, ranks = job.resources, job.config.ranks
    argv = ["--job", f"jobs/train/{job.id}.json", "--context", "context.json"]
    if ranks == 1:
        how, cmd = "one rank: the job step runs the trainer itself", ["python", "-m", PROGRAM, *argv]
    elif r["nodes"] == 1:
        how = f"{ranks} ranks on one node: the trainer runs itself again under torchrun"
        cmd = local_torchrun(ranks, argv, port="<free port>", python="python")
    else:
        how = (f"{ranks} ranks on {r['nodes']} nodes: the trainer (the job step, on the first node) starts one "
               f"torchrun per node through srun")
        cmd = slurm_torchrun(ranks, argv, nodes=r["nodes"], head="$HEAD", job_id="$SLURM_JOB_ID",
                             cpus_per_task=r["cpus"], gpus_per_node=ranks // r["nodes"] if r["gpus"] else 0,
                             port="$PORT", python="python")
    return {"label": job.label, "id": job.id, "sbatch": sbatch_options(_rule_resources(job)), "how": how,
            "multinode": r["nodes"] > 1, "command": _shell_lines(cmd, PROGRAM)}


def _shell_lines(cmd: list[str], program: str) -> str:
    """A long command as readable shell: a line break before torchrun and before the program."""
    lines: list[list[str]] = [[]]
    for i, arg in enumerate(cmd):
        if lines[-1] not in ([], ["python"]) and (arg == "python" or cmd[i:i + 2] == ["-m", program]):
            lines.append([])
        lines[-1].append(arg)
    return " \\\n    ".join(" ".join(line) for line in lines)


def write_build(files: dict[str, str], out: Path) -> dict[str, int]:
    """Write the build folder. Unchanged files keep their bytes and mtime; generated files that the
    new plan no longer has are removed (never results/ or logs/). Returns counts."""
    out.mkdir(parents=True, exist_ok=True)
    written = unchanged = removed = 0
    for rel, text in files.items():
        path = out / rel
        data = text.encode()
        if path.is_file() and path.read_bytes() == data:
            unchanged += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a killed compile never leaves a half-written file
        written += 1
    wanted = {out / rel for rel in files}
    for d in GENERATED_DIRS:
        root = out / d
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return {"written": written, "unchanged": unchanged, "removed": removed}
