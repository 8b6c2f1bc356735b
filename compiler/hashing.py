"""Content hashes of job configs: the one definition the compiler and the runtime jobs share.

A job's id is `content_hash({"kind", "config", "inputs"})`. The plan computes it when it creates a
job; `rlspec.runtime.job.load_job` recomputes it to refuse an edited job file. This module imports
nothing but the standard library, so a job can check its id without loading the compiler.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_LENGTH = 16

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(data: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates as ISO strings."""
    return _CANONICAL.encode(data)


def content_hash(data: Any, length: int = ID_LENGTH) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()[:length]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SMALL_FILE = 1 << 20  # inside a folder fingerprint, files up to this size are hashed byte for byte


def folder_fingerprint(root) -> str | None:
    """A local model folder's identity: names and sizes of its files, bytes of the small ones
    (configs, tokenizer). Weights count by size, so fingerprinting a 14B folder stays instant; the
    `model` job recomputes it and refuses a folder that changed since compile time."""
    from pathlib import Path
    root = Path(root)
    if not root.is_dir():
        return None
    entries = []
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        size = p.stat().st_size
        entries.append([p.relative_to(root).as_posix(), size, file_sha256(p) if size <= SMALL_FILE else None])
    return content_hash(entries, 64)
