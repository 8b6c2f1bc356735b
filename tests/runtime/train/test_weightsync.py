"""The trainer's weight push under ZeRO-3, on 2 real gloo ranks (torchrun on this machine).

ZeRO-3 partitions every parameter over the ranks. `weightsync.push_weights` gathers them in
buckets of bounded size (never the whole model at once, issue 13) and the engine reads them lazily.
Here each rank trains one AdamW step under DeepSpeed ZeRO-3 (so the weights differ from the files),
pushes into its own transformers engine with a bucket far smaller than the model, and checks that
the engine's state dict is exactly the full, gathered policy: every tensor, bit for bit, tied ones
included. The gloo ranks stand in for NCCL ranks on GPUs; the vLLM engine's reload of the same
lazy iterator is covered by the 2-rank ZeRO-3 train job test (its samples would differ otherwise).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlspec.runtime import tinymodel

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}

PROGRAM = textwrap.dedent("""\
    import json, sys
    import torch
    from rlspec.runtime.grpo import distributed, weightsync
    from rlspec.compiler.jobs import EngineSettings
    from rlspec.runtime.rollout import make_engine

    model_dir, out = sys.argv[1], sys.argv[2]
    d = distributed.init(False, timeout_minutes=5)
    import deepspeed
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": 2,
           "zero_optimization": {"stage": 3}, "zero_allow_untested_optimizer": True,
           "zero_force_ds_cpu_optimizer": False}
    ds, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    ids = torch.randint(5, 200, (1, 12), generator=torch.Generator().manual_seed(d.rank))
    ds.backward(ds(input_ids=ids, labels=ids).loss)
    ds.step()
    settings = EngineSettings.model_validate({"engine": "hf", "max_prompt_tokens": 64,
        "vllm": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.5, "kv_cache_memory_bytes": 64 << 20,
                 "enforce_eager": True, "max_num_seqs": 8, "pipeline_parallel_size": 1, "quantization": None},
        "hf": {"batch_size": 8}})
    engine = make_engine(model_dir, settings, dtype="float32", seed=0, max_model_len=128)
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    stats = weightsync.push_weights(ds.module, engine, zero3=True, bucket_bytes=64 * 1024)
    with deepspeed.zero.GatheredParameters(list(ds.module.parameters()), modifier_rank=None):
        full = {k: v.detach().clone() for k, v in ds.module.state_dict().items()}
    got = engine.model.state_dict()
    largest = max(p.ds_numel * p.element_size() for p in ds.module.parameters())
    json.dump({"stats": stats, "largest": largest,
               "keys_equal": sorted(full) == sorted(got),
               "mismatched": [k for k in full if not torch.equal(full[k], got[k])],
               "changed": sum(not torch.equal(before[k], got[k]) for k in got), "tensors": len(got)},
              open(f"{out}.{d.rank}.json", "w"))
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bucketed_zero3_push_leaves_the_engine_with_the_full_state_dict(tmp_path):
    model_dir = tinymodel.build_tiny_model(tmp_path / "model", tinymodel.TinyModelConfig(seed=5))
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(prog), str(model_dir),
           str(tmp_path / "result")]
    out = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    for rank in (0, 1):
        r = json.loads((tmp_path / f"result.{rank}.json").read_text())
        assert r["keys_equal"] and r["mismatched"] == [], r
        assert r["changed"] > 0 and r["changed"] <= r["tensors"]  # the optimiser step moved the weights
        stats = r["stats"]
        assert stats["buckets"] > 1  # the whole model was never gathered at once
        assert stats["max_bucket_bytes"] <= max(64 * 1024, r["largest"])
