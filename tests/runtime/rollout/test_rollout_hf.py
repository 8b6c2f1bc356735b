"""The transformers engine: left padding and batching change nothing, the KV cache is used, weights
push in place, the global RNG is never touched; plus the settings block's error messages."""

import pytest
import torch

from pydantic import ValidationError

from rlspec.compiler.jobs import EngineSettings
from rlspec.runtime.rollout import SamplingParams

from rollout_helpers import build_engine, perturb, reference_greedy, rollout_settings, sampling

GREEDY = sampling(temperature=0, max_tokens=24, ignore_eos=True)


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
    hf_engine.generate(prompts, sampling(n=4, temperature=1.0, top_p=0.9, max_tokens=16))
    hf_engine.push_weights(policy.state_dict())
    assert torch.equal(torch.rand(5), expected)


def test_settings_errors_name_every_bad_key():
    bad = rollout_settings("hf", temprature=1.0)
    del bad["max_prompt_tokens"]
    with pytest.raises(ValidationError) as err:
        EngineSettings.model_validate(bad)
    assert {e["loc"][0] for e in err.value.errors()} == {"temprature", "max_prompt_tokens"}
    with pytest.raises(ValueError, match="top_k=0"):
        sampling(top_k=0)


def test_sampling_has_no_hidden_defaults():
    """Every call says its own top_p / top_k (the job's values): SamplingParams defaults none of them."""
    with pytest.raises(TypeError):
        SamplingParams(n=2, temperature=0.6, max_tokens=9)  # type: ignore[call-arg]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_seeded_samples_do_not_depend_on_the_split_or_the_batch(tiny_model_dir, prompts, batch_size):
    """The trainer gives rank k the seed `step_seed + start_k * n` for its share of the step's
    prompts: one call over all prompts and two calls over the halves (as 1 and 2 ranks make) give
    the same samples, whatever rows share a batch. Before, one generator served the whole call,
    so the split changed every sample (issue 16)."""
    engine = build_engine(tiny_model_dir, "hf", hf={"batch_size": batch_size})
    params = dict(n=3, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=12)
    whole = engine.generate(prompts, SamplingParams(**params, seed=1000))
    half = len(prompts) // 2
    first = engine.generate(prompts[:half], SamplingParams(**params, seed=1000))
    second = engine.generate(prompts[half:], SamplingParams(**params, seed=1000 + half * 3))
    ids = [[s.token_ids for s in g] for g in whole]
    assert ids == [[s.token_ids for s in g] for g in list(first) + list(second)]
    assert len({tuple(t) for g in ids for t in g}) > len(prompts)  # real sampling, not one repeated answer


def test_sleep_frees_every_weight_and_the_push_after_wake_brings_them_back(tiny_model_dir, policy, prompts):
    """Sleep mode on the transformers engine (real, on CPU): asleep, every parameter's storage is gone
    and nothing may generate or push; woken, the weights hold no values until a push sends all of them
    (a partial push is refused); after the full push and the KV-cache wake the outputs are the awake
    engine's. vLLM's own sleep mode needs CUDA (its cumem allocator); the trainer's calls are the same."""
    seeded = sampling(temperature=1.0, max_tokens=16, seed=3, n=2)
    engine = build_engine(tiny_model_dir, "hf")
    before = [[s.token_ids for s in g] for g in engine.generate(prompts, seeded)]
    full = {n: p.numel() for n, p in engine.model.named_parameters()}
    engine.sleep()
    assert engine.asleep == {"weights", "kv_cache"}
    assert all(p.numel() == 0 for p in engine.model.parameters()) and sum(full.values()) > 0
    with pytest.raises(RuntimeError, match="generate while asleep"):
        engine.generate(prompts, seeded)
    with pytest.raises(RuntimeError, match="push_weights while its weights are asleep"):
        engine.push_weights(policy.state_dict())
    engine.wake_up(["weights"])
    assert {n: p.numel() for n, p in engine.model.named_parameters()} == full
    with pytest.raises(RuntimeError, match=r"generate while asleep \(\['kv_cache'\]\)"):
        engine.generate(prompts, seeded)
    first = next(iter(policy.state_dict().items()))
    with pytest.raises(RuntimeError, match="woken weights without values"):
        engine.push_weights([first])
    engine.push_weights(dict(policy.named_parameters()))  # what the trainer sends: parameters, deduplicated
    engine.wake_up(["kv_cache"])
    assert not engine.asleep
    assert [[s.token_ids for s in g] for g in engine.generate(prompts, seeded)] == before
    # woken without a push, the weights are uninitialised memory: generating is refused
    engine.sleep()
    engine.wake_up(["weights", "kv_cache"])
    with pytest.raises(RuntimeError, match="woken weights not pushed yet"):
        engine.generate(prompts, seeded)
    with pytest.raises(ValueError, match="unknown tags"):
        engine.wake_up(["everything"])
