"""A process pool that can kill one stuck item without losing the others.

What: ``KillPool(fn, workers, init)`` runs ``fn(item)`` in forked worker processes (after ``init()``) and returns one
``(status, value)`` per item, in input order; an item that runs past ``hard_timeout`` seconds is
reported ``("timeout", None)`` and its worker is killed and replaced.
Why: sympy can hang inside C code where no signal handler runs, and ``concurrent.futures`` has no
way to kill one task. Each task runs on the worker's main thread, so libraries that time themselves
out with SIGALRM (math-verify) work there, and the caller's own SIGALRM is never touched.
How: each worker gets a chunk of items over a pipe and answers item by item, so the parent always
knows which item is running; when a worker misses its deadline the parent SIGKILLs it, blames the
running item and hands the rest of the chunk to a fresh worker. Workers are forked lazily and kept
for later calls (a fork costs ~10 ms; RL calls this every step).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

# An item's outcome: ("ok", fn's return value) | ("timeout", None) | ("error", message).
Outcome = tuple[str, Any]


def _serve(conn, fn: Callable[[Any], Any], init: Callable[[], None] | None) -> None:
    """Worker loop: answer each item of each chunk as soon as it is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if init is not None:
        try:
            init()
        except Exception:
            pass  # warming up is best effort
        conn.send(("ready",))  # item clocks start only now: init may take seconds
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        for index, item in chunk:
            try:
                conn.send((index, "ok", fn(item)))
            except Exception as exc:  # a bad item must not take the worker down
                conn.send((index, "error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, fn: Callable[[Any], Any], init: Callable[[], None] | None):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fn, init), daemon=True)
        self.proc.start()
        child.close()
        self.inflight: deque[tuple[int, Any]] = deque()
        self.ready = init is None
        self.deadline = float("inf")
        self.hard_timeout = 0.0

    def send(self, chunk: list[tuple[int, Any]], hard_timeout: float) -> None:
        self.inflight.extend(chunk)
        self.hard_timeout = hard_timeout
        self.deadline = time.monotonic() + hard_timeout
        self.conn.send(chunk)

    def kill(self) -> None:
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        self.conn.close()


class KillPool:
    """Persistent forked workers running ``fn``; see the module docstring."""

    def __init__(self, fn: Callable[[Any], Any], workers: int, init: Callable[[], None] | None = None):
        self.fn, self.init, self.size, self.pid = fn, init, workers, os.getpid()
        self.workers: list[_Worker] = []

    def map(self, items: Sequence[Any], hard_timeout: float, chunk: int = 0) -> list[Outcome]:
        """``fn`` over ``items`` in input order; each item gets ``hard_timeout`` seconds."""
        self._ensure_workers()
        queue = deque(enumerate(items))
        chunk = chunk or max(1, min(32, len(items) // (4 * self.size) or 1))
        results: list[Outcome | None] = [None] * len(items)
        left = len(items)
        while left:
            self._feed_idle(queue, chunk, hard_timeout)
            left -= self._collect(results, queue)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []

    def _ensure_workers(self) -> None:
        if self.pid != os.getpid():  # we were forked: those workers belong to our parent
            self.workers, self.pid = [], os.getpid()
        self.workers = [w for w in self.workers if w.proc.is_alive()]
        while len(self.workers) < self.size:
            self.workers.append(_Worker(self.fn, self.init))

    def _feed_idle(self, queue: deque, chunk: int, hard_timeout: float) -> None:
        for w in self.workers:
            if w.ready and not w.inflight and queue:
                w.send([queue.popleft() for _ in range(min(chunk, len(queue)))], hard_timeout)

    def _collect(self, results: list, queue: deque) -> int:
        """Wait for answers, a worker becoming ready, or the earliest deadline; returns how many
        items finished."""
        watched = [w for w in self.workers if w.inflight or not w.ready]
        deadlines = [w.deadline for w in watched if w.inflight]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = wait([w.conn for w in watched], timeout)
        done = 0
        for w in watched:
            if w.conn in ready and not w.ready:
                self._await_ready(w)
            elif w.conn in ready:
                done += self._receive(w, results, queue)
            elif time.monotonic() >= w.deadline:
                done += self._replace(w, results, queue, ("timeout", None))
        return done

    def _await_ready(self, w: _Worker) -> None:
        try:
            w.ready = w.conn.recv() == ("ready",)
        except (EOFError, OSError):  # died while warming up: start another
            w.kill()
            self.workers[self.workers.index(w)] = _Worker(self.fn, self.init)

    def _receive(self, w: _Worker, results: list, queue: deque) -> int:
        try:
            index, status, value = w.conn.recv()
        except (EOFError, OSError):  # the worker died (segfault, OOM killer)
            return self._replace(w, results, queue, ("error", "grading worker died"))
        w.inflight.popleft()
        results[index] = (status, value)
        w.deadline = time.monotonic() + w.hard_timeout  # the next item's clock starts now
        return 1

    def _replace(self, w: _Worker, results: list, queue: deque, outcome: Outcome) -> int:
        """Kill ``w``, give its running item ``outcome``, requeue the rest, start a new worker."""
        w.kill()
        index, _ = w.inflight.popleft()
        results[index] = outcome
        queue.extendleft(reversed(w.inflight))
        self.workers[self.workers.index(w)] = _Worker(self.fn, self.init)
        return 1
