"""Reward functions of the user's (`reward: {python: file.py:function}`), run outside the job's process.

What: ``grade_python(fn, items, spec_dir=..., workers=...)`` calls the user's function once per item
and returns one ``Grade`` per item, in order: ``scored`` with the function's reward, or reward 0 with
status ``error`` when it raised, returned something that is not a reward, or ran past
``fn.timeout_s`` (the detail starts with ``timeout`` or ``raised``; the train job counts ``error``
against ``algorithm.health.max_grader_error_rate``). An item is a ``RewardItem`` (``item_for`` builds
it from a record and a response, for the veRL or the TRL signature).

Why: the function is code the job does not control. It may raise, hang in C code, leak memory or
crash the interpreter, and it must never do so inside the trainer (CUDA contexts, DeepSpeed's process
group, open files): a user's bug costs a response's reward, never the job.

How: the job starts one host process per reward setting with ``subprocess`` (``python -m
rlspec.runtime.reward.plugin``: a fresh interpreter, as the ``spawn`` context gives, but one that does
not re-import the job's ``__main__``, so it holds nothing of the trainer). The host imports nothing
of the user's; it runs a ``KillPool`` whose workers, forked from that clean host, import the module
once and call the function one item at a time; a worker past the timeout is killed and replaced,
and its item gets ``timeout``. Requests and answers are pickled over the host's stdin and a private
copy of its stdout (the user's prints go to stderr, the job's log). Hosts live as long as the job,
and never longer: the stdin pipe cannot say when the job died (a process forked from the job, such as
a DataLoader or KillPool worker, keeps its write end open, and a busy host does not read it), so the
host polls ``os.getppid()`` from a watchdog thread and exits once it no longer is the job that started
it; its workers set PR_SET_PDEATHSIG, so they die with the host however it ends (even SIGKILL). The
host itself does not use PDEATHSIG: that fires when the *thread* that forked it exits, and hosts are
started from grading threads that come and go.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import math
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .grade import Grade, default_workers

MAX_WORKERS = 8  # more processes than this rarely pays for a Python reward; each costs an interpreter
STARTUP_S = 60.0  # the host's own start-up (imports) allowed on top of the items' time
WATCH_S = 0.25  # how often a host checks that its job is alive: it exits at most this long after the job


@dataclass(frozen=True)
class RewardItem:
    """What one call of the user's function receives (pickled to the worker)."""

    args: tuple
    kwargs: dict[str, Any]


def item_for(record: dict[str, Any], response: str, signature: str) -> RewardItem:
    """The call for one (record, response) pair.

    veRL: ``f(data_source=, solution_str=, ground_truth=, extra_info=)``: the source's `data_source`
    column (else the record's source, else its domain), the whole response, the record's `answer`
    (code records: their `tests`), and the source's `extra_info` column (else all its other columns).
    TRL: ``f(prompts=[...], completions=[...], **columns)``, one response per call: the prompt as the
    dataset gave it (a message list, or the text), the completion (an assistant message in a list for
    message-list prompts, else the text), and every other column as a one-item list."""
    meta = dict(record.get("meta") or {})
    truth = record.get("answer") if record.get("answer") is not None else record.get("tests")
    if signature == "verl":
        extra = meta.get("extra_info")
        return RewardItem((), {"data_source": meta.get("data_source") or record.get("source") or record.get("domain"),
                               "solution_str": response, "ground_truth": truth,
                               "extra_info": extra if isinstance(extra, dict) else meta})
    messages = record.get("messages")
    prompt = messages if messages else record.get("prompt")
    completion = [{"role": "assistant", "content": response}] if messages else response
    columns = {**meta, **{k: v for k, v in record.items() if k not in ("prompt", "messages", "meta")}}
    return RewardItem((), {"prompts": [prompt], "completions": [completion], **{k: [v] for k, v in columns.items()}})


def grade_python(fn: Any, items: list[RewardItem], *, spec_dir: str | Path | None = None,
                 workers: int | None = None) -> list[Grade]:
    """One Grade per item; `fn` is the job's `PythonReward`. Never raises for an item."""
    if not items:
        return []
    path = resolve(fn.path, spec_dir)
    changed = _changed(path, fn.sha256)
    if changed:
        return [Grade(0.0, "error", detail=changed) for _ in items]
    size = max(1, min(MAX_WORKERS, default_workers(workers), len(items)))
    host = _host(str(path), fn.function, fn.signature, size)
    try:
        outcomes = host.map(items, fn.timeout_s)
    except _HostFailed as exc:  # the host itself died or stalled: restart it once
        _HOSTS.pop(host.key, None)
        host.close()
        try:
            outcomes = _host(str(path), fn.function, fn.signature, size).map(items, fn.timeout_s)
        except _HostFailed:
            return [Grade(0.0, "error", detail=f"raised: the reward host failed ({exc})") for _ in items]
    return [_grade(outcome, fn) for outcome in outcomes]


def resolve(path: str, spec_dir: str | Path | None) -> Path:
    """A reward file's path: absolute, or relative to the spec's folder; a job that is not handed
    the folder reads it from the build's `context.json` (every job runs in the build folder)."""
    p = Path(path)
    if p.is_absolute():
        return p
    if spec_dir is None:
        try:
            import json
            spec_dir = json.loads(Path("context.json").read_text(encoding="utf-8")).get("spec_dir")
        except (OSError, ValueError):
            spec_dir = None
    return Path(spec_dir) / p if spec_dir else p


_SEEN: dict[str, str] = {}


def _changed(path: Path, sha256: str | None) -> str | None:
    """Why the file cannot be used (missing, or not the file compiled), or None."""
    from rlspec.compiler.hashing import file_sha256
    key = str(path)
    if key not in _SEEN:
        if not path.is_file():
            return f"raised: reward file {path} does not exist"
        _SEEN[key] = file_sha256(path)
    if sha256 is not None and _SEEN[key] != sha256:
        return (f"raised: reward file {path} changed since the spec was compiled (sha256 {_SEEN[key][:12]}, "
                f"compiled {sha256[:12]}); recompile so the job id says which function ran")
    return None


def _grade(outcome: tuple[str, Any], fn: Any) -> Grade:
    status, value = outcome
    if status == "timeout":
        return Grade(0.0, "error", detail=f"timeout: {fn.function} ran past {fn.timeout_s:g} s; its worker was killed")
    if status == "error":
        return Grade(0.0, "error", detail=f"raised: {fn.function}: {str(value)[:300]}")
    reward, detail = value
    return Grade(reward, "scored", detail=detail)


# ------------------------------------------------------------------------------------------
# the job's side of a host
# ------------------------------------------------------------------------------------------


class _HostFailed(RuntimeError):
    pass


class _Host:
    def __init__(self, key: tuple, path: str, function: str, signature: str, workers: int):
        self.key, self.workers = key, workers
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Our pid, so that the host can tell it was orphaned even if we die before it starts watching.
        self.proc = subprocess.Popen([sys.executable, "-m", "rlspec.runtime.reward.plugin", path, function, signature,
                                      str(workers), str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def map(self, items: list[RewardItem], timeout_s: float) -> list[tuple[str, Any]]:
        if self.proc.poll() is not None:
            raise _HostFailed(f"exit status {self.proc.returncode}")
        try:
            pickle.dump((items, timeout_s), self.proc.stdin)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _HostFailed(str(exc)) from None
        # KillPool bounds every item; this bound only catches a host that stopped answering.
        deadline = time.monotonic() + STARTUP_S + (2 * timeout_s + 1) * math.ceil(len(items) / self.workers)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise _HostFailed("no answer" if left <= 0 else f"exit status {self.proc.returncode}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                try:
                    return pickle.load(self.proc.stdout)
                except (EOFError, pickle.UnpicklingError) as exc:
                    raise _HostFailed(f"unreadable answer ({exc})") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_HOSTS: dict[tuple, _Host] = {}


def _host(path: str, function: str, signature: str, workers: int) -> _Host:
    key = (os.getpid(), path, function, signature, workers)
    if key not in _HOSTS or _HOSTS[key].proc.poll() is not None:
        _HOSTS[key] = _Host(key, path, function, signature, workers)
    return _HOSTS[key]


@atexit.register
def _close_hosts() -> None:
    for host in list(_HOSTS.values()):
        if host.key[0] == os.getpid():
            host.close()
    _HOSTS.clear()


# ------------------------------------------------------------------------------------------
# the host and its workers (separate processes)
# ------------------------------------------------------------------------------------------

_FUNCTIONS: dict[tuple[str, str], Any] = {}


def load_function(path: str, function: str) -> Any:
    """The user's function, imported once per worker; the file's folder is on `sys.path` so it may
    import its neighbours."""
    key = (path, function)
    if key not in _FUNCTIONS:
        folder = str(Path(path).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(f"rlspec_reward_{abs(hash(path))}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(module, function, None)
        if not callable(fn):
            raise AttributeError(f"{path} has no function {function!r}")
        _FUNCTIONS[key] = fn
    return _FUNCTIONS[key]


def call(path: str, function: str, signature: str, item: RewardItem) -> tuple[float, str]:
    """(reward, detail) of one call, or an exception saying why the result is not a reward."""
    result = load_function(path, function)(*item.args, **item.kwargs)
    detail = ""
    if signature == "trl":
        if not isinstance(result, (list, tuple)) or len(result) != 1:
            raise TypeError(f"returned {_show(result)}; a TRL reward returns a list with one float per completion")
        result = result[0]
    elif isinstance(result, dict):
        if "score" not in result:
            raise TypeError(f"returned a dict without `score` (keys: {', '.join(map(str, result))[:200]})")
        detail = ", ".join(f"{k}={_show(v)}" for k, v in result.items() if k != "score")[:300]
        result = result["score"]
    if isinstance(result, bool) or not isinstance(result, (int, float)) and not hasattr(result, "__float__"):
        raise TypeError(f"returned {_show(result)}; return a float (or, veRL style, a dict with `score`)")
    value = float(result)
    if not math.isfinite(value):
        raise ValueError(f"returned {value}; a reward must be a finite number")
    return value, detail


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _warm(path: str, function: str, host: int | None = None) -> None:
    """A worker's start: die with the host `host` (its parent), then import the user's module."""
    if host is not None:
        _die_with_parent(host)
    load_function(path, function)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends, however it ends (PR_SET_PDEATHSIG); a parent that
    already ended before the call would never send it, so check for that too. The parent must fork
    us from a thread that lives as long as it does (the host's main thread does)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _watch_owner(owner: int) -> None:
    """The host's watchdog thread: exit as soon as the job that started us is gone (we were
    re-parented). os._exit ends the host whatever its main thread is doing (reading a request no
    one will send, or waiting on a busy worker); its workers then get their PDEATHSIG."""
    while os.getppid() == owner:
        time.sleep(WATCH_S)
    os._exit(1)


def _serve(argv: list[str]) -> None:
    """The host: answer each pickled (items, timeout) request with one outcome per item."""
    import functools

    from .killpool import KillPool
    path, function, signature, workers = argv[0], argv[1], argv[2], int(argv[3])
    owner = int(argv[4]) if len(argv) > 4 else os.getppid()
    threading.Thread(target=_watch_owner, args=(owner,), name="owner-watchdog", daemon=True).start()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the user's prints go to the job's log, not into the answers
    sys.stdout = sys.stderr
    pool = KillPool(functools.partial(call, path, function, signature), workers,
                    init=functools.partial(_warm, path, function, os.getpid()))
    requests = sys.stdin.buffer
    while True:
        try:
            items, timeout_s = pickle.load(requests)
        except EOFError:
            pool.close()
            return
        pickle.dump(pool.map(items, timeout_s, chunk=1), answers)
        answers.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
