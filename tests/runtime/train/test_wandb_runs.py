"""The W&B runs of a real train job and real bench jobs, read back from W&B's offline files.

A two-cell grid over a benchmark's `k` shares one train job between both cells and gives each
cell its own bench job. The train job (tiny model, 2 steps, samples at step 2) and both bench jobs
run for real with `tracking.mode: offline`; the test then reads every `wandb/offline-run-*/run-*.wandb`
and checks each run's group, tags, config and logged keys, the samples table included.

The reader: wandb 0.31 (installed) ships no Python reader of its run files (`wandb.sdk.internal.
datastore` is gone; its Go core writes them), so `records` below reads the format that module
read: a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then LevelDB-log blocks of 32 KiB whose
chunks (crc32, length, type FULL/FIRST/MIDDLE/LAST) join into serialized
`wandb.proto.wandb_internal_pb2.Record`s, parsed with the installed wandb's own protobuf classes.
A CRC or header mismatch fails the test, so a changed format cannot pass unnoticed.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest

from conftest import compile_and_curate, job_dir, run, run_train, spec_text
from rlspec.runtime.grpo.samples import COLUMNS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

GRID = """\
benchmarks:
  b: {domain: math, source: {uri: "builtin://math?n=4&split=test"}, k: 1, sampling: {max_response_tokens: 16}}
grid:
  axes: [{path: benchmarks.b.k, values: [1, 2]}]
"""
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B run file of version 0"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (crc, length, kind) == (0, 0, 0):  # zero padding to the block's end
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad chunk at byte {pos}"
        pos += 7 + length
        parts += chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record
            parts = b""


def read_run(folder: Path) -> dict:
    """id, group, tags, config, history keys and summary keys of one offline run."""
    (file,) = folder.glob("run-*.wandb")
    out = {"history": set(), "summary": set(), "config": {}}
    for r in records(file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(id=r.run.run_id, group=r.run.run_group, tags=list(r.run.tags), job_type=r.run.job_type)
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            out["history"] |= {(i.nested_key[0] if i.nested_key else i.key) for i in r.history.item}
        elif kind == "summary":
            out["summary"] |= {(i.nested_key[0] if i.nested_key else i.key) for i in r.summary.update}
    return out


def test_train_and_bench_jobs_log_runs_grouped_per_grid_and_tagged_per_cell(tmp_path, tiny_model_dir):
    text = spec_text(tiny_model_dir, steps=2).replace(
        "tracking: {mode: offline}", "tracking: {mode: offline, tags: [ci], samples: {every: 2, count: 4}}") + GRID
    build, train = compile_and_curate(tmp_path, text)
    out = run_train(build, train)
    assert out.returncode == 0, out.stderr[-3000:]
    benches = sorted((build / "jobs" / "bench").glob("*.json"))
    assert len(benches) == 2
    for bench in benches:
        res = run([sys.executable, "-m", "rlspec.runtime.bench", "--job", str(bench.relative_to(build)),
                   "--context", "context.json"], build)
        assert res.returncode == 0, res.stderr[-3000:]
    runs = {r["id"]: r for r in map(read_run, sorted((build / "wandb").glob("offline-run-*")))}
    train_id = train.stem
    assert set(runs) == {train_id, *(b.stem for b in benches)}  # one run per train and bench job

    t = runs[train_id]
    assert t["group"] == "tiny-train" and t["job_type"] == "train"
    assert t["tags"] == ["train", "k=1", "k=2", "ci"]  # the shared job carries both cells
    assert t["config"]["cells"] == ["k=1", "k=2"] and t["config"]["grid"] == {"k": [1, 2]}
    assert t["config"]["job"]["samples"] == {"every": 2, "count": 4}
    assert {"reward_mean", "loss", "grad_norm", "samples"} <= t["history"]
    assert {"reward_first", "reward_last"} <= t["summary"]
    (table,) = (next(build.glob(f"wandb/offline-run-*-{train_id}")) / "files" / "media" / "table").glob("samples_2_*.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == COLUMNS and len(logged["data"]) == 4
    on_disk = (job_dir(build, train) / "samples.jsonl").read_text().splitlines()
    assert [[json.loads(line)[c] for c in COLUMNS] for line in on_disk] == logged["data"]

    tags = sorted(runs[b.stem]["tags"] for b in benches)
    assert tags == [["bench", "k=1", "ci"], ["bench", "k=2", "ci"]]
    for b in benches:
        r = runs[b.stem]
        k = r["config"]["job"]["k"]
        assert r["group"] == "tiny-train" and r["job_type"] == "bench" and r["config"]["grid"] == {"k": [k]}
        assert {f"metrics/avg@{k}/value", f"metrics/avg@{k}/stderr", "problems", "tokens/generated"} <= r["history"]
        assert f"metrics/avg@{k}/value" in r["summary"]
