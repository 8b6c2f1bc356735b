"""Sequence-aware attention for training forwards: each sequence attends only to itself, causally.

What: `NAME` ("rlspec_varlen") is an attention implementation registered with transformers
(`AttentionInterface` and `AttentionMaskInterface`); `enable(model)` switches a loaded model to it.
Inputs come in two layouts:
- packed (`algorithm.pack_sequences`): one row of concatenated sequences, no attention mask, position
  ids restarting at 0 at every sequence start; each sequence is one segment;
- padded: rows right-padded, with a 2D attention mask; each row's unpadded prefix is one segment
  (padding positions get zeros: with right padding no real token attends to them, so they never
  reach a real token's output).
Every segment goes through `torch.nn.functional.scaled_dot_product_attention(is_causal=True,
enable_gqa=...)` on its own keys and values (grouped-query heads are never expanded).

Why: transformers' SDPA path turns either layout into a dense (length x length) mask, so the fused
kernels that need `is_causal` and no mask (flash attention on GPU, the flash CPU kernel here) are not
used and attention scores are materialised: with packing that is (sum of lengths)^2 per head, which made
a packed micro-batch slower and larger than the padded one (measured on this CPU: 4 sequences of ~4K
tokens, 21M-parameter Qwen2, forward + backward with checkpointing: padded 2.72 GiB / 76 s, packed
3.31 GiB / 182 s with SDPA's mask). Per segment, attention costs the sum of squared lengths and never
holds a score matrix; the same sequences give the same outputs as the masked computation (fp32, 1e-6).
On GPU the same call picks SDPA's flash kernel per segment: no flash-attn package is needed.

How: the mask function returns the 2D padding mask (or None when nothing is padded), as transformers'
flash-attention mask does, so no 4D mask is ever built; the attention function finds the segments from
`position_ids` (packed) or the mask's row lengths (padded). A padded mask that is not a right-padded
prefix (left padding, holes) is refused: the training batches never produce one. Decoding with a KV
cache (query shorter than keys) is not a training shape and is refused too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "rlspec_varlen"


def segments_from_positions(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of every sequence of a packed row: a sequence starts where the position id is 0."""
    pos = position_ids.reshape(-1)
    starts = (pos == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        raise ValueError("a packed row must start a sequence at position 0 (position ids restart at 0 per sequence)")
    ends = starts[1:] + [pos.numel()]
    return list(zip(starts, ends))


def _prefix_lengths(mask: torch.Tensor) -> list[int]:
    """Per row, the length of the unpadded prefix of a right-padded 2D mask (refuses any other shape)."""
    m = mask.bool()
    lengths = m.sum(dim=-1)
    width = m.shape[-1]
    prefix = torch.arange(width, device=m.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, m):
        raise ValueError(f"{NAME} attention takes right-padded rows (ones then zeros); this mask is not")
    return lengths.tolist()


def _causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float | None) -> torch.Tensor:
    # grouped-query attention natively (`enable_gqa`, flash kernels included): K and V are never
    # expanded to all query heads, so the backward keeps them at the KV heads' size
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=k.shape[1] != q.shape[1])


def varlen_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: q (B, H, L, D), k/v (B, Hkv, L, D) -> (B, L, H, D), None."""
    if dropout and module.training:
        raise ValueError(f"{NAME} attention has no dropout; the model's attention_dropout must be 0 for training")
    batch, _, length, _ = query.shape
    if key.shape[2] != length:
        raise ValueError(f"{NAME} attention serves training forwards only (query {length} != keys {key.shape[2]})")
    out = torch.zeros_like(query)
    position_ids = kwargs.get("position_ids")
    if attention_mask is None and position_ids is not None and batch == 1:
        spans = [(0, s, e) for s, e in segments_from_positions(position_ids)]
    elif attention_mask is None:
        spans = [(row, 0, length) for row in range(batch)]
    else:
        spans = [(row, 0, n) for row, n in enumerate(_prefix_lengths(attention_mask[:, -length:])) if n]
    for row, s, e in spans:
        out[row:row + 1, :, s:e] = _causal(query[row:row + 1, :, s:e], key[row:row + 1, :, s:e],
                                           value[row:row + 1, :, s:e], scaling)
    return out.transpose(1, 2).contiguous(), None


def padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                 mask_function=None, attention_mask: torch.Tensor | None = None, **kwargs):
    """transformers' mask-function contract: the 2D padding mask, or None when no position is padded
    (the attention function applies causality and the packed boundaries itself)."""
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:]
    return None if bool(attention_mask.all()) else attention_mask


def register() -> str:
    """Register `NAME` with transformers (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, padding_mask)
    return NAME


def enable(model: torch.nn.Module) -> None:
    """Switch a loaded HF model (and its sub-configs) to `NAME` attention."""
    register()
    model.set_attn_implementation(NAME)
