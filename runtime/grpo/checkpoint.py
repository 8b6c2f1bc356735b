"""Checkpoints written atomically: a killed job never leaves one that looks complete.

Two kinds, under the train job's folder:
- resumable: `checkpoints/step-000040/` holds DeepSpeed's own checkpoint (model, optimiser and
  LR-scheduler state, all ranks) and `trainer.json` (step, sampler, temperature controller, RNG
  states, metrics position). It is written as `step-000040.tmp-<pid>/` and renamed only when every
  rank has finished writing; the rename is the commit point. `latest()` ignores anything that is not
  a committed folder, so resume always starts from a complete checkpoint. Only the newest
  `algorithm.keep_checkpoints` are kept: they exist to resume, and the newest is the one resume reads.
- snapshots (`stages[].evaluate_every`): `snapshots/step-000050/model/` is an HF-format model
  (weights in the inference dtype, tokenizer) that the bench job of that step reads. Staged as a
  hidden sibling (`.step-000050.tmp<pid>/`) and renamed; the rename is the commit point. All are
  kept (the workflow's bench jobs need each one), and a resumed job keeps those it wrote: it only
  rewrites, atomically, the snapshots after its resumed checkpoint as it replays those steps.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlspec.compiler.jobs import snapshot_folder
from rlspec.runtime.atomic import replace_dir_atomic, temp_path
from rlspec.runtime.job import fault_point

from .distributed import all_gather_objects, barrier

TAG = "ds"


def _name(step: int) -> str:
    return f"step-{step:06d}"


def latest(root: Path) -> Path | None:
    """The newest committed checkpoint folder, or None."""
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name
                  and (p / "trainer.json").is_file())
    return done[-1] if done else None


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])


def save(root: Path, step: int, ds_engine, trainer_state: dict[str, Any], *, main: bool, keep: int) -> Path:
    """Write checkpoint `step` (every rank must call this) and delete all but the newest `keep`."""
    final = root / _name(step)
    # every rank writes into the same temporary folder, named by rank 0
    tmp_name = all_gather_objects(f"{_name(step)}.tmp-{os.getpid()}" if main else None)[0]
    tmp = root / tmp_name
    if main:
        tmp.mkdir(parents=True, exist_ok=True)
    barrier()
    ds_engine.save_checkpoint(str(tmp), tag=TAG, save_latest=False)
    torch.save(rng_state(), tmp / f"rng-rank{torch.distributed.get_rank()}.pt")
    barrier()
    fault_point(f"train:checkpoint:{step}")  # tests: die with a half-written checkpoint
    if main:
        with open(tmp / "trainer.json", "w") as fh:
            json.dump(trainer_state, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        replace_dir_atomic(tmp, final)
        for old in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load(path: Path, ds_engine) -> dict[str, Any]:
    """Restore DeepSpeed state and this rank's RNG; returns the trainer state."""
    ds_engine.load_checkpoint(str(path), tag=TAG, load_module_strict=True, load_optimizer_states=True,
                              load_lr_scheduler_states=True)
    set_rng_state(torch.load(path / f"rng-rank{torch.distributed.get_rank()}.pt", weights_only=False))
    return json.loads((path / "trainer.json").read_text())


def clean_partial(root: Path) -> None:
    """Remove temporary folders left by a killed write."""
    if root.is_dir():
        for p in root.iterdir():
            if ".tmp-" in p.name:
                shutil.rmtree(p, ignore_errors=True)


def save_snapshot(train_dir: Path, step: int, model, state: dict[str, torch.Tensor], tokenizer,
                  dtype: torch.dtype) -> Path:
    """Write the HF-format snapshot of `step` (main rank only; `state` is the full state dict),
    staged under a hidden name and renamed into place; returns its folder."""
    final = train_dir / snapshot_folder(step)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(".step-*.tmp*"):  # left by a killed write; never read by a bench job
        shutil.rmtree(stale, ignore_errors=True)
    staging = temp_path(final)
    write_model(staging / "model", model, state, tokenizer, dtype)
    fault_point(f"train:snapshot:{step}")  # tests: die with a written but uncommitted snapshot
    replace_dir_atomic(staging, final)
    return final


def write_model(folder: Path, model, state: dict[str, torch.Tensor], tokenizer, dtype: torch.dtype) -> None:
    """An HF model folder: config, weights cast to `dtype`, tokenizer. The saved config has the KV
    cache on (the folder is for inference); the training model's own setting is restored."""
    training_cache = model.config.use_cache
    model.config.use_cache = True
    try:
        model.save_pretrained(folder, state_dict={k: v.to(dtype) for k, v in state.items()})
    finally:
        model.config.use_cache = training_cache
    tokenizer.save_pretrained(folder)
