"""The contract both engines keep (each test runs on `hf` and on real vLLM): shapes, processed
log-probs, finish reasons, stops, seeds, length limits."""

import pytest
import torch

from rlspec.runtime.rollout import logprob_mismatch, token_logprobs

from rollout_helpers import sampling


def _flat(rollout, attr):
    return [getattr(s, attr) for group in rollout for s in group]


def _recompute(policy, prompt_ids, rollout, sampling, **processing):
    prompts = [p for p, group in zip(prompt_ids, rollout) for _ in group]
    with torch.no_grad():
        return token_logprobs(policy, prompts, _flat(rollout, "token_ids"), **processing)


def _greedy(engine, prompt, max_tokens, **kw):
    return engine.generate([prompt], sampling(temperature=0, max_tokens=max_tokens, ignore_eos=True, **kw))[0][0]


def test_samples_carry_ids_logprobs_reasons_text_and_timing(engine, prompts):
    rollout = engine.generate(prompts[:3], sampling(n=3, temperature=0.8, max_tokens=12))
    assert [len(group) for group in rollout] == [3, 3, 3]
    eos = engine.tokenizer.eos_token_id
    for s in (s for group in rollout for s in group):
        assert 1 <= len(s.token_ids) == len(s.logprobs) <= 12
        assert all(lp <= 0 and lp > float("-inf") for lp in s.logprobs)
        assert s.finish_reason == ("stop" if s.token_ids[-1] == eos else "length")
        assert s.text == engine.tokenizer.decode(s.token_ids, skip_special_tokens=True)
    t = rollout.timing
    assert t.generated_tokens == sum(len(ids) for ids in _flat(rollout, "token_ids")) and t.seconds > 0
    assert t.prompt_tokens == 3 * sum(len(p) for p in prompts[:3])


def test_logprobs_are_those_of_the_processed_sampling_distribution(engine, policy, prompts):
    params = sampling(n=4, temperature=0.7, top_k=40, top_p=0.9, max_tokens=16, seed=3)
    rollout = engine.generate(prompts, params)
    engine_lps = _flat(rollout, "logprobs")
    processed = _recompute(policy, prompts, rollout, params, temperature=0.7, top_k=40, top_p=0.9)
    raw = _recompute(policy, prompts, rollout, params, temperature=1.0)
    assert logprob_mismatch(engine_lps, processed)["max_abs_diff"] < 1e-4
    # and they are measurably *not* the raw model log-probs (vLLM's default)
    assert logprob_mismatch(engine_lps, raw)["mean_abs_diff"] > 0.3


def test_float32_engine_vs_trainer_logprob_mismatch_is_bounded(engine, policy, prompts):
    """The number training logs every step; for float32 on the tiny model it must be ~rounding."""
    rollout = engine.generate(prompts, sampling(n=4, temperature=1.0, max_tokens=32, seed=1))
    trainer = _recompute(policy, prompts, rollout, None, temperature=1.0)
    gap = logprob_mismatch(_flat(rollout, "logprobs"), trainer)
    assert gap["mean_abs_diff"] < 1e-5 and gap["max_abs_diff"] < 1e-4 and gap["kl"] < 1e-9


def test_stop_token_ends_the_sample_and_is_kept(engine, prompts):
    full = _greedy(engine, prompts[0], 24).token_ids
    # the first token that was not seen before position k, so the stop fires exactly there
    k = next(i for i in range(3, len(full)) if full[i] not in full[:i])
    s = _greedy(engine, prompts[0], 24, stop_token_ids=(full[k],))
    assert s.token_ids == full[: k + 1] and s.finish_reason == "stop" and len(s.logprobs) == k + 1


def test_eos_stops_unless_ignored(engine, prompts):
    eos = engine.tokenizer.eos_token_id
    full = _greedy(engine, prompts[0], 24).token_ids  # ignore_eos: runs on past EOS
    assert eos in full[:-1], "premise: the seeded tiny model emits EOS early on this prompt"
    k = full.index(eos)
    natural = engine.generate([prompts[0]], sampling(temperature=0, max_tokens=24))[0][0]
    assert natural.token_ids == full[: k + 1] and natural.finish_reason == "stop"


def test_stop_string_ends_the_sample(engine, prompts):
    full = _greedy(engine, prompts[1], 24)
    decoded = [engine.tokenizer.decode(full.token_ids[: i + 1]) for i in range(len(full.token_ids))]
    # a stop string that first appears when token k is generated
    k = next(i for i in range(3, len(decoded)) if decoded[i][-1:].isalnum() and decoded[i][-1] not in decoded[i - 1])
    stop = decoded[k][-1]
    s = _greedy(engine, prompts[1], 24, stop=(stop,))
    assert s.finish_reason == "stop" and s.token_ids == full.token_ids[: k + 1] and s.text.endswith(stop)


def test_max_tokens_gives_length(engine, prompts):
    rollout = engine.generate(prompts[:2], sampling(n=2, temperature=1.0, max_tokens=5, ignore_eos=True))
    assert all(s.finish_reason == "length" and len(s.token_ids) == 5 for g in rollout for s in g)


def test_seeded_calls_repeat_and_unseeded_calls_differ(engine, prompts):
    seeded = sampling(n=3, temperature=1.0, max_tokens=10, seed=11)
    a, b = (_flat(engine.generate(prompts[:2], seeded), "token_ids") for _ in range(2))
    assert a == b and len({tuple(x) for x in a}) == len(a)  # repeatable, and no two samples alike
    unseeded = sampling(n=3, temperature=1.0, max_tokens=10)
    c, d = (_flat(engine.generate(prompts[:2], unseeded), "token_ids") for _ in range(2))
    assert c != d


def test_string_prompts_are_tokenised_like_token_prompts(engine):
    text = "What is 12 + 7?"
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert _greedy(engine, text, 8).token_ids == _greedy(engine, ids, 8).token_ids


def test_prompts_over_the_limit_are_refused(engine):
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        engine.generate([[5] * 301], sampling(max_tokens=4))
