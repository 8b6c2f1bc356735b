"""Shared fixtures for the rollout tests: one tiny real model per session, real engines on it.

The model is built once (a few seconds) with rlspec.runtime.tinymodel; engines are session-scoped
because vLLM's import and start-up cost ~8 s. Tests that change an engine's weights put the
original weights back before they finish.
"""

from __future__ import annotations

import os

# Before anything imports torch or vLLM: no hub, one thread (the CPU is shared), engine in-process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import pytest
import torch

from rlspec.runtime import tinymodel

from rollout_helpers import build_engine


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return tinymodel.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tinymodel.TinyModelConfig())


@pytest.fixture(scope="session")
def hf_engine(tiny_model_dir):
    engine = build_engine(tiny_model_dir, "hf")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir):
    pytest.importorskip("vllm")
    engine = build_engine(tiny_model_dir, "vllm")
    yield engine
    engine.close()


@pytest.fixture(params=["hf", "vllm"])
def engine(request):
    """Each engine in turn, for tests of the shared contract."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def policy(tiny_model_dir):
    """A fresh transformers copy of the tiny model: the 'trainer' side."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def prompts(tiny_model_dir):
    """Token-id prompts: short ones of different lengths, and two longer than one 128-token KV block
    (those are the ones a stale prefix cache gets wrong)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["What is 2 + 3?", "Please reason step by step: 17 * 4", "1",
             " ".join(f"{i} + {i + 1} =" for i in range(40)), " ".join(f"What is {i}?" for i in range(30))]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert max(len(p) for p in ids) > 128 and len({len(p) for p in ids}) == len(ids)
    return ids
