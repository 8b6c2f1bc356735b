"""Job I/O shared by every runtime module: read and verify a compiled job, write outputs atomically.

A job file (`jobs/<kind>/<id>.json`, written by `rlspec compile`) holds the resolved config of one
DAG job and the folders of the jobs it depends on. Its id is the hash of its config and its inputs'
ids, so `load_job` recomputes it: a hand-edited or corrupted job file is refused, not silently run.
The config is validated against its kind's typed model (`rlspec.compiler.jobs`) and handed to the
program as that model: programs read attributes, and a config that lacks a field is refused here.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rlspec.runtime import devices
from rlspec.runtime.atomic import write_json_atomic  # noqa: F401  (re-exported: every program writes done.json with it)

from rlspec.compiler.hashing import content_hash
from rlspec.compiler.jobs import CONFIGS

REQUIRED = ("kind", "id", "label", "config", "inputs", "output_dir")


class JobError(Exception):
    """A job file that cannot be run; the message says which file and why."""


@dataclass(frozen=True)
class Job:
    kind: str
    id: str
    label: str
    config: Any  # the kind's model from rlspec.compiler.jobs (ModelJob, TrainJob, ...)
    inputs: dict[str, Any]
    output_dir: Path
    context: dict[str, Any]
    path: Path


def _input_ids(inputs: dict[str, Any]) -> dict[str, Any]:
    def jid(p: str) -> str:
        return Path(p).name
    return {role: ([jid(p) for p in v] if isinstance(v, list) else jid(v)) for role, v in inputs.items()}


def load_job(path: str | Path, kind: str, context: str | Path | None = None) -> Job:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{path}: job file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"{path}: not a readable job file ({exc})") from None
    if not isinstance(doc, dict):
        raise JobError(f"{path}: a job file holds a JSON object")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise JobError(f"{path}: missing keys {', '.join(missing)}; recompile with `rlspec compile`")
    if doc["kind"] != kind:
        raise JobError(f"{path}: this is a {doc['kind']!r} job, not {kind!r}; run `python -m rlspec.runtime.{doc['kind']}`")
    expected = content_hash({"kind": doc["kind"], "config": doc["config"], "inputs": _input_ids(doc["inputs"])})
    if expected != doc["id"]:
        raise JobError(f"{path}: content does not match its id {doc['id']} (hash {expected}); the file was edited "
                       "after compilation -- change the spec and recompile instead")
    try:
        config = CONFIGS[kind].model_validate(doc["config"])
    except ValidationError as exc:
        raise JobError(f"{path}: its config does not match the {kind} job contract of this rlspec version "
                       f"({exc.error_count()} problems; first: {_first_error(exc)}); recompile with `rlspec compile`") from None
    ctx: dict[str, Any] = {}
    if context is not None:
        try:
            ctx = json.loads(Path(context).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise JobError(f"{context}: not a readable context file ({exc})") from None
    job = Job(doc["kind"], doc["id"], doc["label"], config, doc["inputs"], Path(doc["output_dir"]), ctx, path)
    try:  # before the program imports anything that starts CUDA (local runs only: runtime/devices.py)
        devices.claim_for_job(job)
    except devices.DeviceError as exc:
        raise JobError(f"{path}: {exc}") from None
    return job


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def spec_dir(job: Job) -> Path | None:
    """The spec's folder (from the build's context.json): relative local paths in a job config are
    relative to it."""
    found = job.context.get("spec_dir")
    return Path(found) if found else None


def model_dir(job: Job, role: str = "policy") -> Path:
    """The model folder (weights and tokenizer) of input `role`: every job that loads a model reads
    it here, whether a `model` job built, fetched or linked it, or a train job wrote it."""
    return input_model(job.inputs, role)


def input_model(inputs: dict[str, Any], role: str) -> Path:
    """`<inputs[role]>/model`, refused with the reason when the role or the folder is missing."""
    if role not in inputs:
        raise JobError(f"the job has no {role!r} input model; recompile with `rlspec compile`")
    path = Path(inputs[role]) / "model"
    if not (path / "config.json").is_file():
        raise JobError(f"input model {path} is missing (no config.json); did the job that writes it finish?")
    return path


def fault_point(name: str) -> None:
    """Fault injection for the crash/resume tests: when RLSPEC_FAULT equals `name` (e.g. "train:step:5"
    or "train:checkpoint:4"), the process SIGKILLs itself right here, as a preempted job would die."""
    if os.environ.get("RLSPEC_FAULT") == name:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def parse_args(kind: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m rlspec.runtime.{kind}",
                                     description=f"Run one compiled rlspec `{kind}` job.")
    parser.add_argument("--job", required=True, help=f"jobs/{kind}/<id>.json from the build folder")
    parser.add_argument("--context", default=None, help="context.json from the build folder (tracking, grid cells)")
    return parser.parse_args(argv)
