"""Stop strings (`rollout.stop`, `benchmarks.<b>.sampling.stop`) on both engines (hf and real vLLM CPU).

Each test first generates greedily without the stop string (EOS ignored, so the continuation is
long), picks a stop string from that continuation's text, and generates again with it: the sample
must end at the token where the text first contains the stop string, keep the stop string in its
text, say "stop", and carry exactly the first tokens and log-probs of the unstopped run.
"""

import pytest

from rlspec.runtime.rollout.base import cut_after_stop

from rollout_helpers import build_engine, sampling

MAX_TOKENS = 32


@pytest.fixture(scope="module", params=["hf", "vllm"])
def engine(request, tiny_model_dir):
    """Each engine on the tiny model, built for this module: a vLLM engine another module built and
    closed (test_rollout_vllm.py) tears down vLLM's process-wide parallel groups, which the session's
    engine then misses ("pipeline model parallel group is not initialized")."""
    if request.param == "vllm":
        pytest.importorskip("vllm")
    built = build_engine(tiny_model_dir, request.param)
    yield built
    built.close()


def _greedy(engine, prompt, **kw):
    return engine.generate([prompt], sampling(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True, **kw))[0][0]


def _prefix_texts(engine, ids):
    """The decoded text after each token (what a stop-string check sees as generation goes)."""
    return [engine.tokenizer.decode(ids[: i + 1], skip_special_tokens=True) for i in range(len(ids))]


def _spanning_stop(texts, *, mid_token: bool):
    """(k, stop): a two-character stop string made of the last character of token k-1 and the first
    of token k, seen nowhere before token k. With `mid_token`, token k has more characters after it."""
    for k in range(1, len(texts)):
        prev, cur = texts[k - 1], texts[k]
        piece = cur[len(prev):]
        if not cur.startswith(prev) or not piece or len(prev) <= len(texts[k - 2] if k >= 2 else ""):
            continue  # need a clean prefix and a non-empty token k-1 and token k
        if mid_token != (len(piece) >= 2):
            continue
        if "\ufffd" in cur:  # a partial UTF-8 character so far: vLLM's detokenizer holds it back
            continue
        stop = prev[-1] + piece[0]
        if stop not in prev and stop.isprintable():
            return k, stop
    return None


@pytest.mark.parametrize("mid_token", [False, True], ids=["ends-with-token", "inside-token"])
def test_stop_string_spanning_two_tokens_ends_the_sample(engine, prompts, mid_token):
    for prompt in prompts:  # the first prompt whose continuation has such a pair of tokens
        full = _greedy(engine, prompt)
        texts = _prefix_texts(engine, full.token_ids)
        found = _spanning_stop(texts, mid_token=mid_token)
        if found:
            break
    assert found, "premise: some greedy continuation has two adjacent printable tokens"
    k, stop = found
    assert stop not in texts[k][len(texts[k - 1]):], "premise: the stop string spans tokens k-1 and k"
    s = _greedy(engine, prompt, stop=(stop,))
    assert s.finish_reason == "stop"
    assert s.token_ids == full.token_ids[: k + 1]
    assert s.logprobs == pytest.approx(full.logprobs[: k + 1], abs=1e-5)
    assert s.text.endswith(stop) and s.text == texts[k][: texts[k].index(stop) + len(stop)]
    if mid_token:  # token k carries characters past the stop string: the text drops them, the ids keep them
        assert len(s.text) < len(texts[k])


def test_the_first_of_several_stop_strings_wins_and_absent_ones_change_nothing(engine, prompts):
    full = _greedy(engine, prompts[1])
    texts = _prefix_texts(engine, full.token_ids)
    k, stop = _spanning_stop(texts, mid_token=False) or _spanning_stop(texts, mid_token=True)
    never = "\x07never\x07"  # a string no continuation contains
    s = _greedy(engine, prompts[1], stop=(never, stop))
    assert s.finish_reason == "stop" and s.token_ids == full.token_ids[: k + 1] and s.text.endswith(stop)
    untouched = _greedy(engine, prompts[1], stop=(never,))
    assert untouched.finish_reason == "length" and untouched.token_ids == full.token_ids
    assert untouched.text == full.text


def test_cut_after_stop_keeps_the_earliest_stop_string():
    assert cut_after_stop("x <answer>4</answer> tail </answer>", ["</answer>"]) == "x <answer>4</answer>"
    assert cut_after_stop("a END b STOP", ["STOP", "END"]) == "a END"
    assert cut_after_stop("no stop here", ["</answer>"]) == "no stop here"
    assert cut_after_stop("anything", []) == "anything"
