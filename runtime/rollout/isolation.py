"""Keep an in-process inference engine from changing the trainer's process state.

What: `RngStream` is a private random stream (Python, NumPy, torch CPU and CUDA) swapped in around
every engine call; `preserved_process_state()` restores what engine start-up changes globally:
`torch.set_num_threads` (vLLM's CPU worker replaces it with a no-op), the torch thread count, the
CPU affinity and environment variables (vLLM sets `LD_PRELOAD`, `VLLM_WORKER_MULTIPROC_METHOD`, ...).

Why: with the engine in the trainer's process (vLLM's in-process mode, the HF engine) the engine
would otherwise re-seed the global RNG to its own seed at start-up (the trainer's dropout, data
order and init then depend on when the engine was built), draw from the global RNG while sampling
(the trainer's stream then depends on how many tokens were sampled), and make later subprocesses
(code sandboxes) inherit vLLM's preloaded libraries. A trainer must give the same numbers with or
without a rollout engine beside it; `tests/runtime/rollout` checks exactly that.

How: `with preserved_process_state(), stream: ...` around construction; `with stream:` around calls.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def _capture_rng() -> tuple:
    # CUDA: the rank's own device only (the trainer has called `torch.cuda.set_device`): capturing
    # every device would create a context on each GPU from each rank (issue 13)
    cuda = torch.cuda.get_rng_state(torch.cuda.current_device()) if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _restore_rng(state: tuple) -> None:
    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, torch.cuda.current_device())


class RngStream:
    """A private RNG state: entering swaps it in for the caller's, leaving swaps it back out.

    Draws made inside continue this stream from call to call, so an engine's unseeded samples
    differ between calls, while the caller's stream is exactly where it was.
    """

    def __init__(self, seed: int):
        saved = _capture_rng()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed(seed)  # the current device only, as captured
        self._state = _capture_rng()
        self._caller: list[tuple] = []  # a stack, so nested use is harmless
        _restore_rng(saved)

    def __enter__(self) -> RngStream:
        self._caller.append(_capture_rng())
        _restore_rng(self._state)
        return self

    def __exit__(self, *exc) -> None:
        self._state = _capture_rng()
        _restore_rng(self._caller.pop())


@contextlib.contextmanager
def preserved_process_state(keep_env: tuple[str, ...] = ()):
    """Undo, on exit, changes to torch threading, CPU affinity and the environment (except the
    variables named in `keep_env`, which the caller sets on purpose)."""
    set_num_threads, num_threads = torch.set_num_threads, torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    env = dict(os.environ)
    try:
        yield
    finally:
        torch.set_num_threads = set_num_threads
        if torch.get_num_threads() != num_threads:
            torch.set_num_threads(num_threads)
        if affinity is not None and os.sched_getaffinity(0) != affinity:
            os.sched_setaffinity(0, affinity)
        _restore_env(env, keep_env)


def _restore_env(saved: dict[str, str], keep: tuple[str, ...]) -> None:
    for key in set(os.environ) - set(saved) - set(keep):
        del os.environ[key]
    for key, value in saved.items():
        if key not in keep and os.environ.get(key) != value:
            os.environ[key] = value
