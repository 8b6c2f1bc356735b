"""Job I/O shared by every runtime module: read and verify a compiled job, write outputs atomically.

A job file (`jobs/<kind>/<id>.json`, written by `rlspec compile`) holds the resolved config of one
DAG job and the folders of the jobs it depends on. Its id is the hash of its config and its inputs'
ids, so `load_job` recomputes it: a hand-edited or corrupted job file is refused, not silently run.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlspec.compiler.plan import content_hash

REQUIRED = ("kind", "id", "label", "config", "inputs", "output_dir")


class JobError(Exception):
    """A job file that cannot be run; the message says which file and why."""


@dataclass(frozen=True)
class Job:
    kind: str
    id: str
    label: str
    config: dict[str, Any]
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
    ctx: dict[str, Any] = {}
    if context is not None:
        try:
            ctx = json.loads(Path(context).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise JobError(f"{context}: not a readable context file ({exc})") from None
    return Job(doc["kind"], doc["id"], doc["label"], doc["config"], doc["inputs"], Path(doc["output_dir"]), ctx, path)


def fault_point(name: str) -> None:
    """Fault injection for the crash/resume tests: when RLSPEC_FAULT equals `name` (e.g. "train:step:5"
    or "train:checkpoint:4"), the process SIGKILLs itself right here, as a preempted job would die."""
    if os.environ.get("RLSPEC_FAULT") == name:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON under a temporary name, fsync, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def parse_args(kind: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m rlspec.runtime.{kind}",
                                     description=f"Run one compiled rlspec `{kind}` job.")
    parser.add_argument("--job", required=True, help=f"jobs/{kind}/<id>.json from the build folder")
    parser.add_argument("--context", default=None, help="context.json from the build folder (tracking, grid cells)")
    return parser.parse_args(argv)
