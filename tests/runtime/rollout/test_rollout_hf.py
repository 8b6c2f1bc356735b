"""The transformers engine: left padding and batching change nothing, the KV cache is used, weights
push in place, the global RNG is never touched; plus the settings block's error messages."""

import pytest
import torch

from rlspec.runtime.rollout import RolloutSettings, Sampling, make_engine

from rollout_helpers import build_engine, perturb, reference_greedy, rollout_settings

GREEDY = Sampling(temperature=0, max_tokens=24, ignore_eos=True)


def _greedy_ids(engine, prompts):
    return [group[0].token_ids for group in engine.generate(prompts, GREEDY)]


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_left_padded_batches_give_the_unpadded_greedy_output(tiny_model_dir, policy, prompts, batch_size):
    engine = build_engine(tiny_model_dir, "hf", hf={"batch_size": batch_size})
    expected = [reference_greedy(policy, p, GREEDY.max_tokens) for p in prompts]
    assert _greedy_ids(engine, prompts) == expected


def test_generation_uses_the_kv_cache(hf_engine, prompts):
    widths = []
    hook = hf_engine.model.model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        hf_engine.generate(prompts[:3], GREEDY)
    finally:
        hook.remove()
    # one pass over the padded prompts, then one new token per step
    assert widths[0] == max(len(p) for p in prompts[:3]) and set(widths[1:]) == {1}
    assert len(widths) == GREEDY.max_tokens


def test_pushed_weights_are_used(tiny_model_dir, policy, prompts):
    engine = build_engine(tiny_model_dir, "hf")
    before = _greedy_ids(engine, prompts)
    perturb(policy, 0.05, seed=7)
    engine.push_weights(policy.state_dict())
    expected = [reference_greedy(policy, p, GREEDY.max_tokens) for p in prompts]
    assert _greedy_ids(engine, prompts) == expected != before
    with pytest.raises(KeyError, match="not_a_weight"):
        engine.push_weights({"not_a_weight": torch.zeros(1)})


def test_sampling_never_touches_the_global_rng(hf_engine, policy, prompts):
    torch.manual_seed(4)
    expected = torch.rand(5)
    torch.manual_seed(4)
    hf_engine.generate(prompts, Sampling(n=4, temperature=1.0, top_p=0.9, max_tokens=16))
    hf_engine.push_weights(policy.state_dict())
    assert torch.equal(torch.rand(5), expected)


def test_settings_errors_name_every_bad_key():
    bad = rollout_settings("hf", temprature=1.0)
    del bad["top_k"]
    with pytest.raises(ValueError, match=r"unknown keys \['temprature'\], missing keys \['top_k'\]"):
        RolloutSettings.from_dict(bad)
    with pytest.raises(ValueError, match="must agree"):
        make_engine("unused", engine="hf", dtype="float32", seed=0, max_model_len=64,
                    settings=rollout_settings("vllm"))
    with pytest.raises(ValueError, match="top_k=0"):
        Sampling(top_k=0)


def test_make_sampling_takes_top_p_and_top_k_from_the_spec(tiny_model_dir):
    engine = build_engine(tiny_model_dir, "hf", top_p=0.95, top_k=20)
    assert engine.make_sampling(n=2, temperature=0.6, max_tokens=9) == Sampling(
        n=2, temperature=0.6, max_tokens=9, top_p=0.95, top_k=20)
    assert engine.make_sampling(n=1, temperature=1.0, max_tokens=9, top_p=1.0).top_p == 1.0
