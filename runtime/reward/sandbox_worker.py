"""The long-lived process inside the sandbox that runs one untrusted test at a time.

What: reads requests (a program, one test's stdin or call arguments, limits) from its stdin and
answers each with what the program produced (stdout, the call's JSON result, exit status). It
never sees expected outputs: the trusted parent compares.
Why: starting an interpreter per test costs ~7-10 ms; forking this warm one costs ~1 ms, so the
sandbox keeps the isolation of a fresh process per test at several hundred tests per second.
How: this file is standalone (stdlib only, no rlspec imports) because it runs as
``python3.11 -I -S -c <this source> <config json>`` inside bubblewrap, where the venv is not
mounted. For each test it makes memfds for stdin/stdout/stderr/result, forks a child that enters
its own session, drops into a fresh work dir, applies rlimits and execs the program; it waits on a
pidfd with the wall-clock limit, then kills every other process in the sandbox (the pid namespace
makes ``kill(-1)`` reach exactly the program's leftovers, and makes this worker their init, so
it can reap them) and wipes the work dir.
Protocol: each message is a 4-byte big-endian length followed by UTF-8 JSON.
"""

import builtins
import gc
import io
import json
import math
import os
import resource
import select
import signal
import struct
import sys
import time

# Warm the modules solutions usually import, so each forked test finds them loaded.
import bisect, collections, copy, functools, heapq, itertools, random, re, string, typing  # noqa: E401,F401

EXIT_MEMORY = 86  # the child caught MemoryError
EXIT_HARNESS = 87  # the harness itself failed before the program ran
CALL_PRELUDE = "from typing import *\nfrom collections import *\nimport math, heapq, bisect, itertools, functools, re, string\n"


def read_msg(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_msg(fd, obj):
    body = json.dumps(obj).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data):]


# ------------------------------------------------------------------------- inside the child


def _limit(kind, value):
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _apply_limits(req):
    _limit(resource.RLIMIT_CPU, math.ceil(req["time"]) + 1)  # backstop; the wall clock rules
    _limit(resource.RLIMIT_AS, req["memory_mb"] << 20)
    _limit(resource.RLIMIT_NPROC, req["nproc"])  # fork bombs (enforced: we are not root)
    _limit(resource.RLIMIT_FSIZE, req["output_bytes"])  # caps stdout and files alike
    _limit(resource.RLIMIT_NOFILE, 64)
    _limit(resource.RLIMIT_CORE, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    stack = 64 << 20 if hard == resource.RLIM_INFINITY else min(64 << 20, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (stack, hard))  # room for deep recursion


def std_streams():
    """sys.stdin/stdout/stderr objects over fds 0/1/2, built once in the worker.

    The worker itself never uses them (its fds 0/1 are /dev/null); each child dup2s its memfds onto
    0/1/2 and installs them. Building them per child would cost a codec lookup every test.
    """
    return (
        io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"),
        io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8"),
        io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True),
    )


def _call(namespace, name, args):
    """LeetCode style: a method of ``class Solution`` if there is one, else a top-level function."""
    cls = namespace.get("Solution")
    fn = getattr(cls(), name) if cls is not None and hasattr(cls, name) else namespace[name]
    return fn(*args)


def _encode(value):
    """JSON for the parent; tuples become lists, sets sorted lists (LeetCode compares them so)."""
    def default(v):
        if isinstance(v, (set, frozenset)):
            return sorted(v, key=repr)
        raise TypeError(f"{type(v).__name__} is not JSON serialisable")
    return json.dumps(value, default=default).encode()


def run_child(req, code, streams, workdir, fds):
    """Never returns. Everything the program can reach was bound before it runs."""
    exit_, write = os._exit, os.write
    try:
        os.setsid()
        os.chdir(workdir)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(len(fds), 1 << 16)  # protocol pipes and everything else
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        _apply_limits(req)
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.argv = ["solution.py"]
    except BaseException:
        exit_(EXIT_HARNESS)
    status = 0
    try:
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(code, namespace)
        if req["mode"] == "call":
            write(3, _encode(_call(namespace, req["fn"], req["args"])))
    except SystemExit as e:
        status = 0 if e.code in (None, 0) else 1
    except MemoryError:
        status = EXIT_MEMORY
    except BaseException:
        import traceback
        traceback.print_exc()
        status = 1
    for stream in (streams[1], sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the interpreter does at exit, for the real and the swapped stdout
        except BaseException:
            pass
    exit_(status)


# ------------------------------------------------------------------------ in the worker


class Worker:
    def __init__(self, config):
        self.root = config["root"]
        self.pidns = config["pidns"]
        self.count = 0
        self.streams = std_streams()
        self.compiled = {}  # (mode, source) -> code object or the SyntaxError text

    def compile(self, req):
        """Compile here, once per program: a child's first compile costs ~1 ms of page faults.

        The source is untrusted, but this process is inside the sandbox too; a compiler crash or
        hang only costs this worker, which the parent then replaces.
        """
        key = (req["mode"], req["code"])
        if key not in self.compiled:
            src = req["code"] if req["mode"] == "stdio" else CALL_PRELUDE + req["code"]
            try:
                self.compiled[key] = compile(src, "solution.py", "exec")
            except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
                self.compiled[key] = f"{type(e).__name__}: {e}"
            if len(self.compiled) > 64:
                self.compiled.pop(next(iter(self.compiled)))
        return self.compiled[key]

    def run(self, req):
        code = self.compile(req)
        if isinstance(code, str):
            return {"status": "exit:1", "stdout": "", "result": "", "stderr": code, "elapsed": 0.0}
        self.count += 1
        workdir = os.path.join(self.root, f"t{self.count}")
        os.mkdir(workdir, 0o700)
        fds = [os.memfd_create(name) for name in ("stdin", "stdout", "stderr", "result")]
        try:
            os.write(fds[0], req.get("input", "").encode())
            os.lseek(fds[0], 0, os.SEEK_SET)
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                run_child(req, code, self.streams, workdir, fds)
            timed_out, wstatus = self._wait(pid, req["time"])
            elapsed = time.monotonic() - start
            self._sweep(pid)
            return self._report(fds, timed_out, wstatus, elapsed, req["output_bytes"])
        finally:
            for fd in fds:
                os.close(fd)
            self._wipe()

    def _wait(self, pid, limit):
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], limit)
        finally:
            os.close(pidfd)
        if not ready:
            self._kill_all(pid)
        _, wstatus = os.waitpid(pid, 0)
        return not ready, wstatus

    def _kill_all(self, pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        if self.pidns:  # everything in our namespace but us and its init is the program's
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass

    def _sweep(self, pid):
        """Kill what the program left behind (daemons, escaped sessions) and reap it all.

        In a pid namespace this worker is pid 1: every orphan is reparented to it, and
        ``kill(-1)`` reaches every process but itself, so an empty ``waitpid`` means a clean slate.
        """
        self._kill_all(pid)
        if not self.pidns:
            return
        deadline = time.monotonic() + 2.0
        while True:
            try:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # nobody left
            if reaped == 0:
                if time.monotonic() > deadline:
                    return
                self._kill_all(pid)
                time.sleep(0.0005)

    def _report(self, fds, timed_out, wstatus, elapsed, cap):
        out = _read_all(fds[1], cap)
        result = _read_all(fds[3], cap)
        err = _read_all(fds[2], 1 << 20)[-2000:]
        return {
            "status": _status(timed_out, wstatus),
            "stdout": out.decode("utf-8", "replace"),
            "result": result.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace"),
            "elapsed": elapsed,
        }

    def _wipe(self):
        """Remove everything the program wrote under the work root, unreadable dirs included."""
        for entry in os.listdir(self.root):
            _remove(os.path.join(self.root, entry))


def _read_all(fd, cap):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, cap) if cap else b""


def _remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    for entry in os.listdir(path):
        _remove(os.path.join(path, entry))
    os.rmdir(path)


def _status(timed_out, wstatus):
    if timed_out:
        return "timeout"
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout"  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one
        return "output_limit" if sig == signal.SIGXFSZ else f"signal:{signal.Signals(sig).name}"
    code = os.WEXITSTATUS(wstatus)
    return {0: "ok", EXIT_MEMORY: "memory", EXIT_HARNESS: "harness_error"}.get(code, f"exit:{code}")


def main():
    config = json.loads(sys.argv[1])
    if config.get("drop_to"):  # no user namespace: become nobody ourselves
        uid, gid = config["drop_to"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    worker = Worker(config)
    gc.freeze()  # children then never touch (and copy) the worker's objects when they collect
    write_msg(proto_out, {"ready": True})
    while True:
        req = read_msg(proto_in)
        if req is None:
            return
        write_msg(proto_out, worker.run(req))


if __name__ == "__main__":
    main()
