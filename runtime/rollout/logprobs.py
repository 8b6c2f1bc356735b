"""Log-probs of the sampling distribution, the trainer's recomputation, and their mismatch.

What: `process_logits` turns raw logits into log-probs of the distribution a sampler actually draws
from (temperature, then top-k, then top-p, renormalised: vLLM's and transformers' order).
`token_logprobs` recomputes, with a HF model, the log-probs of given completions the way the
trainer does. `logprob_mismatch` compares engine and trainer log-probs for the same tokens.

Why: GRPO treats rollout log-probs as the old policy's. If the engine's numbers differ from the
trainer's (stale weights, a different dtype or kernel, top-p renormalisation) the importance ratio
is silently off. Measuring the gap every step turns that into a logged number; a test bounds it.

How: `mismatch = logprob_mismatch([s.logprobs for s in samples], token_logprobs(model, prompts,
completions, temperature=T))` gives {"mean_abs_diff", "max_abs_diff", "kl"}.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# At temperature 0 (greedy) there is no temperature to apply; both engines then report the
# model's untempered log-probs, as vLLM does.
GREEDY_LOGPROB_TEMPERATURE = 1.0


def process_logits(logits: torch.Tensor, temperature: float, top_k: int = -1, top_p: float = 1.0) -> torch.Tensor:
    """Log-probs (float32, last dim) of the sampling distribution; filtered tokens get -inf."""
    temp = temperature if temperature > 0 else GREEDY_LOGPROB_TEMPERATURE
    scores = logits.float() / temp
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        scores = _top_p_filter(scores, top_p)
    return torch.log_softmax(scores, dim=-1)


def _top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches `top_p`."""
    sorted_scores, order = torch.sort(scores, dim=-1, descending=False)
    cum = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
    drop_sorted = cum <= 1 - top_p
    drop_sorted[..., -1] = False  # the most likely token always survives
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def token_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    *,
    temperature: float,
    top_k: int = -1,
    top_p: float = 1.0,
    batch_size: int = 64,
) -> list[torch.Tensor]:
    """Per-token log-probs of each completion given its prompt under `model` (a HF causal LM),
    processed like the sampler did. Gradients flow if the caller has them enabled."""
    out: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch_size):
        chunk = range(start, min(start + batch_size, len(prompts)))
        out.extend(_chunk_logprobs(model, [prompts[i] for i in chunk], [completions[i] for i in chunk],
                                   temperature, top_k, top_p))
    return out


def _chunk_logprobs(model, prompts, completions, temperature, top_k, top_p) -> list[torch.Tensor]:
    # Right padding: real tokens start at position 0, so default position ids are right.
    rows = [list(p) + list(c) for p, c in zip(prompts, completions)]
    width = max(len(r) for r in rows)
    device = next(model.parameters()).device
    input_ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, device=device)
        mask[i, : len(r)] = 1
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    result = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        # logits at position t predict token t+1
        lp = process_logits(logits[i, len(p) - 1 : len(p) + len(c) - 1], temperature, top_k, top_p)
        result.append(lp.gather(-1, input_ids[i, len(p) : len(p) + len(c), None]).squeeze(-1))
    return result


def logprob_mismatch(engine_lps: Sequence, trainer_lps: Sequence) -> dict[str, float]:
    """Gap between engine and trainer log-probs of the same tokens (per-sample sequences).

    `kl` estimates KL(engine || trainer) on the engine's own samples with the non-negative,
    unbiased k3 estimator mean(exp(r) - 1 - r), r = trainer - engine (Schulman, "Approximating
    KL divergence"); it is 0 exactly when the two agree on every token.
    """
    engine = _flatten(engine_lps)
    trainer = _flatten(trainer_lps).to(engine.device)
    if engine.shape != trainer.shape:
        raise ValueError(f"engine has {engine.numel()} log-probs, trainer {trainer.numel()}: not the same tokens")
    if engine.numel() == 0:
        return {"mean_abs_diff": 0.0, "max_abs_diff": 0.0, "kl": 0.0}
    r = trainer - engine
    return {
        "mean_abs_diff": r.abs().mean().item(),
        "max_abs_diff": r.abs().max().item(),
        "kl": (torch.expm1(r) - r).mean().item(),
    }


def _flatten(seqs: Sequence) -> torch.Tensor:
    parts = [torch.as_tensor(s, dtype=torch.float64).detach().reshape(-1).cpu() for s in seqs]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
