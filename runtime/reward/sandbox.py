"""Isolation for model-written code: long-lived bubblewrap'd workers, a fresh process per program.

What: ``Sandbox(workers=N)`` keeps N worker processes (``sandbox_worker.py``) and runs one request
at a time on each; ``Sandbox.map(fn, items)`` hands items to ``fn(worker, item)`` on one
thread per worker. ``get_sandbox()`` returns a shared one, started on first use.
Why: RL graders run tens of thousands of untrusted programs per step. Each must be unable to
reach the network, the host's files, secrets in the environment, the parent, other tests or other
programs (a response must not find a sibling's solution, nor leave anything for a later program),
and must not be able to outlive its limits; and the checks must be cheap.
How (isolation="bwrap", the default):
- the worker runs as uid/gid 65534 (when we are root, since root ignores RLIMIT_NPROC) under
  ``bwrap --unshare-all``: own user, pid, network (loopback only), ipc, uts and cgroup
  namespaces; a read-only view of /usr only (none of the host's /home, /root, /etc, /work or data);
  ``--die-with-parent`` so nothing survives us; the environment is replaced by ``PATH`` and ``LANG``;
- programs are forked from a zygote that never receives a program (``sandbox_worker.py``), each into
  its own user, IPC and mount namespaces with a size-capped tmpfs of its own as /work (its cwd, the
  only writable place), with no capabilities and with rlimits; the worker and the zygote are not
  dumpable, so no program can ptrace them or read their memory. After a failure, a leftover thread
  or process, or the program's last test, the worker SIGKILLs every process of the program;
- memory: each worker gets a memory cgroup (``memcg.py``) holding its zygote, so the limit covers
  the whole program: all its processes, tmpfs files, SysV shm and memfds. The kernel's OOM kills are
  counted, so a program it killed is labelled ``memory``. Where no cgroup can be made (not root, no
  memory controller) the fallback is enforced by the worker: it sums the resident memory of the
  program's processes (mapped shm included) every 10 ms and kills the program above the limit, on
  top of RLIMIT_AS per process, RLIMIT_NPROC, RLIMIT_FSIZE (caps each file and memfd) and the
  tmpfs size. What that fallback misses: memfds and SysV segments the program filled and unmapped
  (bounded only per file by RLIMIT_FSIZE, for SysV not at all) and memory used between two polls;
- expected outputs never enter the sandbox: the worker returns what the program printed or
  returned, and the caller compares.
What the program gets: Debian's ``/usr/bin/python3.11 -I -S`` (standard library only, no
site-packages; ``exit``/``quit`` are provided), an empty writable cwd, stdin, and no network.
Fallbacks, used by isolation="auto" only when bwrap cannot start (user namespaces disabled):
- "unshare" (root only): ``unshare --net --pid --ipc --fork --mount-proc`` then the worker drops to
  65534 itself. Blocked: network (own netns), other processes (own pid ns), files only root may
  write; NOT blocked: reading world-readable host files, writing world-writable ones (/tmp).
- "none": rlimits + uid 65534 (if root) + scrubbed env only. The network is NOT blocked: use it only
  on hosts whose firewall blocks egress. Leftover processes are killed by process group only.
In both, programs get their own IPC and mount namespaces when the host allows user namespaces;
otherwise they run in a per-program dir the worker removes, and the worker removes the SysV IPC
objects of the sandbox user after each program.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import memcg
from .sandbox_worker import remove_tree

log = logging.getLogger(__name__)

NOBODY = 65534
PYTHON = "/usr/bin/python3.11"  # Debian's: starts in ~15 ms; pyenv's shim takes ~30 ms more
WORKER_SOURCE = (Path(__file__).parent / "sandbox_worker.py").read_text()
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
BWRAP_MOUNTS = [
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
]
SHMEM_LEFT = 1 << 20  # bytes of shmem an ended program may leave charged when the next one starts
_CGROUP_IDS = iter(range(1 << 62))


class _Spawner:
    """Starts processes from one daemon thread that lives until the interpreter ends.

    bwrap --die-with-parent uses PR_SET_PDEATHSIG, which fires when the *thread* that started bwrap
    exits. Grading threads come and go, and executor threads are joined before atexit handlers
    run, so neither may start a worker; a daemon thread outlives both.
    """

    def __init__(self) -> None:
        self.pid, self.lock = -1, threading.Lock()  # the thread starts on first use, and again after a fork

    def _ensure_thread(self) -> None:
        if self.pid != os.getpid():
            self.pid, self.jobs = os.getpid(), queue.Queue()
            threading.Thread(target=self._serve, args=(self.jobs,), name="sandbox-spawner", daemon=True).start()

    @staticmethod
    def _serve(jobs: queue.Queue) -> None:
        while True:
            args, kwargs, done, result = jobs.get()
            try:
                result.append(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                result.append(exc)
            done.set()

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        done, result = threading.Event(), []
        with self.lock:
            self._ensure_thread()
        self.jobs.put((args, kwargs, done, result))
        done.wait()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]


_SPAWNER = _Spawner()


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, protocol broken): not the program's fault."""


class WorkerDied(SandboxError):
    """The worker vanished mid-test: the program killed or stopped it (or something killed us)."""


class Worker:
    """One sandboxed worker process and its memory cgroup; restarts itself after it dies."""

    def __init__(self, isolation: str, python: str, work_mb: int):
        self.isolation, self.python, self.work_mb = isolation, python, work_mb
        self.proc: subprocess.Popen | None = None
        self.hostdir: str | None = None
        self.lock = threading.Lock()
        self.cgroup: memcg.ProgramCgroup | None = None
        self.oom_seen = 0
        self.program: int | None = None

    def request(self, req: dict, hard_timeout: float) -> dict:
        """Send one request; raises WorkerDied if the worker does not answer within ``hard_timeout``.

        A test request gets the program's memory limit (the cgroup's, or ``memory_poll`` without
        one); the reply says ``oom`` when the kernel's OOM killer ended a process of the program.
        """
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            try:
                if req["op"] == "test":
                    req = self._limit_memory(req)
                self._send(req)
                reply = self._recv(time.monotonic() + hard_timeout)
            except (WorkerDied, OSError, ValueError) as exc:
                self.stop()  # dead, or frozen by the program (SIGSTOP): start afresh next time
                raise WorkerDied(str(exc) or "sandbox worker died") from exc
            reply["oom"] = self._oom_killed() if _program_ended_or_failed(req, reply) else False
            if reply.get("restart"):
                self.stop()  # the program broke the zygote: the next program gets a fresh sandbox
            return reply

    def _limit_memory(self, req: dict) -> dict:
        """The request, with the program's memory limit in force; SandboxError if it cannot be."""
        if self.cgroup is None:
            return {**req, "memory_poll": True}
        try:
            if req["program"] != self.program:  # a new program: what the last one left must be gone
                if not self.cgroup.wait_shmem_below(SHMEM_LEFT, timeout=2.0):
                    raise OSError(f"{self.cgroup.shmem()} bytes of shared memory outlived a program")
                self.program = req["program"]
            self.cgroup.set_limit(req["memory_mb"] << 20)
        except OSError as exc:  # not the program's fault: start afresh, in a new cgroup
            self.stop()
            self.cgroup.remove()
            self.cgroup = None
            raise SandboxError(f"sandbox memory cgroup: {exc}") from exc
        return req

    def _oom_killed(self) -> bool:
        if self.cgroup is None:
            return False
        kills = self.cgroup.oom_kills()
        killed, self.oom_seen = kills > self.oom_seen, kills
        return killed

    @property
    def memory_limit(self) -> str:
        """How the whole-program memory limit is enforced: ``cgroup-v1|2`` or ``rss-poll``."""
        return self.cgroup.kind if self.cgroup is not None else "rss-poll"

    def start(self) -> None:
        cmd, config = self._command()
        config["work_mb"] = self.work_mb
        argv = [*cmd, self.python, "-I", "-S", "-c", WORKER_SOURCE, json.dumps(config)]
        as_nobody = os.geteuid() == 0 and self.isolation == "bwrap"
        self.proc = _SPAWNER.popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
            env=ENV, cwd="/", start_new_session=True, close_fds=True,
            **({"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_nobody else {}),
        )
        try:
            hello = self._recv(time.monotonic() + 30)
        except (WorkerDied, ValueError) as exc:
            self.stop()
            raise SandboxError(f"sandbox worker failed to start ({self.isolation}): {' '.join(cmd[:1])}") from exc
        if not hello.get("ready"):
            self.stop()
            raise SandboxError(f"sandbox worker failed to start ({self.isolation}): {hello.get('error', hello)!r}")
        self._adopt_zygote(hello["zygote"])

    def _adopt_zygote(self, nspid: int) -> None:
        """Put the worker's zygote (so every program it forks) in this worker's memory cgroup."""
        if self.cgroup is None:
            self.cgroup = memcg.ProgramCgroup.create(f"{memcg.tag()}-{next(_CGROUP_IDS)}")
        if self.cgroup is None:
            return
        pid = memcg.host_pid(self.proc.pid, nspid) if self.isolation != "none" else nspid
        if pid is None:
            self.stop()
            raise SandboxError("sandbox worker started, but its zygote cannot be found in /proc")
        self.cgroup.adopt(pid)
        try:  # the programs' OOM victim at the limit, never the zygote (programs raise their own)
            Path(f"/proc/{pid}/oom_score_adj").write_text("-900")
        except OSError:
            pass  # lowering it needs root; then a program at its limit may take the zygote along
        self.cgroup.limit, self.oom_seen, self.program = None, self.cgroup.oom_kills(), None

    def _command(self) -> tuple[list[str], dict]:
        if self.isolation == "bwrap":
            # /work stays an empty read-only dir here: each program mounts a tmpfs of its own on it.
            work = ["--dir", "/work", "--remount-ro", "/", "--chdir", "/work"]
            # --as-pid-1: the worker is the namespace's init, so it reaps the program's orphans,
            # and signals from the program to it (SIGKILL, SIGSTOP) are ignored by the kernel.
            bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1"]
            return [*bwrap, *BWRAP_MOUNTS, *work], {"root": "/work", "pidns": True, "private": True}
        self.hostdir = self.hostdir or tempfile.mkdtemp(prefix="rlspec-sandbox-")
        drop = [NOBODY, NOBODY] if os.geteuid() == 0 else None
        if drop:
            os.chown(self.hostdir, NOBODY, NOBODY)
        config = {"root": self.hostdir, "pidns": self.isolation == "unshare", "drop_to": drop, "private": "try"}
        if self.isolation == "unshare":
            return ["unshare", "--net", "--pid", "--ipc", "--fork", "--mount-proc", "--kill-child"], config
        return [], config

    def _send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        data = memoryview(struct.pack(">I", len(body)) + body)
        while data:
            data = data[os.write(self.proc.stdin.fileno(), data):]

    def _recv(self, deadline: float) -> dict:
        (size,) = struct.unpack(">I", self._read(4, deadline))
        return json.loads(self._read(size, deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        fd, chunks = self.proc.stdout.fileno(), []
        while n:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise WorkerDied("sandbox worker did not answer in time")
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise WorkerDied("sandbox worker closed its pipe")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        """Kill the sandbox from the inside out, so the launcher reaps everything it started.

        Killing bwrap itself first would orphan the worker onto the host's pid 1, which in
        containers often never reaps, leaving zombies behind.
        """
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        inner = _children(proc.pid) if self.isolation != "none" else [proc.pid]
        for pid in inner:  # the worker, init of its namespace: its death takes everything inside
            _kill(pid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(-proc.pid)
            proc.wait()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # a healthy worker exits on EOF
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.stop()
            self.proc.stdout.close()
        if self.hostdir:
            try:
                remove_tree(self.hostdir)  # not shutil.rmtree: it recurses, and programs build deep trees
            except OSError:
                pass
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None


def _program_ended_or_failed(req: dict, reply: dict) -> bool:
    """When the OOM count must be read: a kill it shows is charged to the program that ends or
    fails now (a program keeps running after an OOM kill only of a process of its own)."""
    results = reply.get("results", [])
    return req["op"] == "end" or bool(req.get("last")) or any(r["outcome"] != "ok" for r in results)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    """SIGKILL a process (or a process group, for negative ``pid``) that may already be gone."""
    try:
        if pid < 0:
            os.killpg(-pid, 9)
        else:
            os.kill(pid, 9)
    except OSError:
        pass


def probe(isolation: str, python: str = PYTHON) -> bool:
    """Whether a worker with this isolation can start here."""
    worker = Worker(isolation, python, 16)
    try:
        worker.start()
        return True
    except (SandboxError, OSError):
        return False
    finally:
        worker.close()


def choose_isolation(isolation: str, python: str = PYTHON) -> str:
    if isolation != "auto":
        return isolation
    for kind in ("bwrap", "unshare", "none"):
        if kind == "unshare" and os.geteuid() != 0:
            continue
        if kind == "none" or probe(kind, python):
            if kind != "bwrap":
                log.warning("sandbox: bubblewrap unavailable; falling back to isolation=%r (see sandbox.py)", kind)
            return kind
    raise AssertionError("unreachable")


class Sandbox:
    """N sandboxed workers; ``map`` runs ``fn(worker, item)`` over items, one thread per worker."""

    def __init__(self, workers: int, isolation: str = "auto", python: str = PYTHON, work_mb: int = 256):
        self.isolation = choose_isolation(isolation, python)
        self.workers = [Worker(self.isolation, python, work_mb) for _ in range(workers)]
        self.pid = os.getpid()

    @property
    def memory_limit(self) -> str:
        """How the whole-program memory limit is enforced (``cgroup-v1|2``, ``rss-poll``), once started."""
        return self.workers[0].memory_limit

    def map(self, fn: Callable[[Worker, Any], Any], items: Iterable[Any]) -> list[Any]:
        todo = list(enumerate(items))
        results: list[Any] = [None] * len(todo)
        errors: list[BaseException] = []
        feed, lock = iter(todo), threading.Lock()

        def drain(worker: Worker) -> None:
            try:
                while not errors:
                    with lock:
                        nxt = next(feed, None)
                    if nxt is None:
                        return
                    results[nxt[0]] = fn(worker, nxt[1])
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(w,), daemon=True) for w in self.workers[: max(1, len(todo))]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def close(self) -> None:
        for w in self.workers:
            w.close()


_SANDBOXES: dict[tuple, Sandbox] = {}
_SANDBOX_LOCK = threading.Lock()


def get_sandbox(workers: int, isolation: str = "auto", python: str = PYTHON, work_mb: int = 256) -> Sandbox:
    """A shared sandbox for these settings, started on first use and reused by later calls."""
    key = (workers, isolation, python, work_mb)
    with _SANDBOX_LOCK:
        box = _SANDBOXES.get(key)
        if box is None or box.pid != os.getpid():
            box = _SANDBOXES[key] = Sandbox(workers, isolation, python, work_mb)
        return box


@atexit.register
def close_all() -> None:
    """Stop every shared sandbox (tests and benchmarks call this; so does interpreter exit)."""
    with _SANDBOX_LOCK:
        for box in _SANDBOXES.values():
            if box.pid == os.getpid():  # a forked child must not close its parent's workers
                box.close()
        _SANDBOXES.clear()
