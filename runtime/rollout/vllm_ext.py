"""vLLM worker extension: load weights sent as one safetensors blob (multiprocess engines).

What: `WeightSync` is mixed into vLLM's worker class (`LLM(worker_extension_cls=...)`) and adds
one RPC method, `load_safetensors_blob`.

Why: when the engine core runs in its own process, `collective_rpc` arguments are serialised and
tensors arrive as nested lists; a safetensors blob is compact, safe to deserialise (no pickle) and
needs no insecure-serialisation flag.

How: the engine calls `llm.collective_rpc("load_safetensors_blob", args=(blob,))`; the worker
decodes the blob and hands it to its own `reload_weights`, which re-runs the CPU weight repacking.
This module must stay importable without vLLM (the worker imports it by name).
"""

from __future__ import annotations


class WeightSync:
    def load_safetensors_blob(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        self.reload_weights(weights_iterator=list(weights.items()))
        return len(weights)
