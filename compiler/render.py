"""Plan -> build folder: Snakefile, rules/*.smk, one JSON per job, resolved spec, manifest, profiles.

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

GENERATED_DIRS = ("jobs", "rules", "envs", "profiles")
RULE_DOCS = {
    "model": "build the from-scratch policy (tokenizer, init, SFT warm-up)",
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
    files["profiles/local/config.yaml"] = env.get_template("profile_local.yaml.j2").render(cores="all")
    files["profiles/slurm/config.yaml"] = env.get_template("profile_slurm.yaml.j2").render(
        jobs=100, status_command=None)

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


def _rule_resources(job) -> dict[str, Any]:
    """Snakemake resource values for one job; keys the executors understand (local and Slurm).

    Every job is one process (a train job starts its own ranks with torchrun), so it is one Slurm
    task. snakemake-executor-plugin-slurm 2.x reads `tasks` of a GPU job as `--ntasks-per-gpu`
    (8 GPUs -> 8 tasks, each with `cpus_per_task` CPUs), so GPU jobs pass no `tasks`; and `gpu`
    becomes `--gpus`, the job's total, while the spec's `gpus` is per node.
    """
    r = job.resources
    out: dict[str, Any] = {"cpus": r["cpus"], "mem_mb": r["mem_mb"], "runtime": r["runtime"],
                           "cpus_per_task": r["cpus"], "nodes": r["nodes"]}
    if r["gpus"]:
        out["gpu"] = r["gpus"] * r["nodes"]
    else:
        out["tasks"] = 1
    if r["slurm_partition"]:
        out["slurm_partition"] = r["slurm_partition"]
    if r["slurm_extra"]:
        out["slurm_extra"] = r["slurm_extra"]
    return out


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
