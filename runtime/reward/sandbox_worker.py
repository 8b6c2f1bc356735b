"""The long-lived process inside the sandbox that runs untrusted programs, one test at a time.

What: reads requests from its stdin: ``{"op": "test", ...}`` (a program, the stdin texts or call
arguments of some of its tests, limits) answered with what the program produced for each (stdout,
the call's JSON result, an outcome), and ``{"op": "end"}`` which kills the program and wipes its
work dir (a test request with ``"last": true`` does that too, after its tests). It never sees
expected outputs: the trusted parent compares.
Why: starting an interpreter per test costs ~7-10 ms. A child forked from this warm interpreter
costs ~1 ms, and keeping that child for all tests of one program (as the issue allows) brings a
test down to ~0.2 ms, so the full isolation runs at well over a thousand trivial tests a second.
How: this file is standalone (stdlib only, no rlspec imports) because it runs as
``python3.11 -I -S -c <this source> <config json>`` inside bubblewrap, where the venv is not
mounted. Per program it compiles the code once, then forks a child in a new session, in a fresh
work dir, with rlimits (address space, processes, file size, open files). Per test it makes memfds
for stdin/stdout/stderr/result, passes them to the child over a socket, and waits for the child's
"done" (or its death, or the wall-clock limit) on the socket and a pidfd. Any failure, leftover
thread or leftover process retires the child: this worker is pid 1 of its namespace, so
``kill(-1)`` reaches exactly the program and everything it started, and it reaps them all.
Protocol: each message is a 4-byte big-endian length followed by UTF-8 JSON.
"""

import atexit
import builtins
import fcntl
import gc
import io
import json
import math
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

# Warm the modules solutions usually import, so forked children find them loaded.
import bisect, collections, copy, functools, heapq, itertools, random, re, string, typing  # noqa: E401,F401

EXIT_SETUP = 87  # the child could not set itself up: our fault (sandbox_error)
EXIT_BROKEN = 88  # the child's harness failed after the program ran: the program broke it
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


# ------------------------------------------------------------------ inside the program's child


def _limit(kind, value):
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _apply_limits(limits):
    _limit(resource.RLIMIT_AS, limits["memory_mb"] << 20)
    _limit(resource.RLIMIT_NPROC, limits["nproc"])  # fork bombs (enforced: we are not root)
    _limit(resource.RLIMIT_FSIZE, limits["output_bytes"])  # caps stdout and files alike
    _limit(resource.RLIMIT_NOFILE, 64)
    _limit(resource.RLIMIT_CORE, 0)
    _, hard = resource.getrlimit(resource.RLIMIT_STACK)
    stack = 64 << 20 if hard == resource.RLIM_INFINITY else min(64 << 20, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (stack, hard))  # room for deep recursion


def _cpu_limit(seconds):
    """Backstop for the wall clock: this test may use ``seconds`` more CPU (soft limit -> SIGXCPU)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _std_streams():
    """Fresh sys.stdin/stdout/stderr over fds 0/1/2 (a previous test may have left buffers)."""
    streams = (
        io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"),
        io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8"),
        io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.argv = ["solution.py"]
    return streams


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


def _run_one(code, test):
    """Run the program once on fds 0-3; returns the outcome word. Exceptions go to stderr."""
    streams = _std_streams()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    outcome = "ok"
    try:
        exec(code, namespace)
        if test["mode"] == "call":
            args = json.loads(os.pread(0, os.fstat(0).st_size, 0))  # the args travel in the stdin memfd
            os.write(3, _encode(_call(namespace, test["fn"], args)))
    except SystemExit as e:
        outcome = "ok" if e.code in (None, 0) else "exit:1"
    except MemoryError:
        outcome = "memory"
    except BaseException:
        import traceback
        traceback.print_exc()
        outcome = "exit:1"
    _at_exit()
    for stream in (streams[1], sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the interpreter does at exit, for the real and the swapped stdout
        except BaseException:
            pass
    _forget(namespace, streams)
    return outcome


def _at_exit():
    """Run the program's atexit handlers, as interpreter exit would (fast-IO templates print there)."""
    try:
        atexit._run_exitfuncs()
        atexit._clear()
    except BaseException:
        pass


def _forget(namespace, streams):
    """Free what this test made now, while fds 0-3 are still its own: a file it opened on them
    (``open(0)``, ``sys.stdout = open(1, "w")``) closes its fd when freed, and freed during the
    next test it would close that test's stdin or stdout."""
    try:
        sys.stdin, sys.stdout, sys.stderr = streams
        namespace.clear()  # breaks the cycles through the program's functions' globals
        gc.collect()
    except BaseException:
        pass


def program_child(sock, code, limits, workdir):
    """Never returns: serve tests of one program until the worker closes the socket."""
    try:
        _serve_tests(sock, code, limits, workdir)
    finally:
        os._exit(EXIT_BROKEN)  # never fall back into the worker's loop


def _serve_tests(sock, code, limits, workdir):
    try:
        os.setsid()
        os.chdir(workdir)
        os.dup2(sock.fileno(), 9)
        os.closerange(0, 9)
        os.closerange(10, 1 << 16)  # the worker's protocol pipes and everything else
        for _ in range(4):  # hold fds 0-3, so fds received per test never land on them
            os.open(os.devnull, os.O_RDWR)
        channel = socket.socket(fileno=9)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        _apply_limits(limits)
    except BaseException:
        os._exit(EXIT_SETUP)
    recv_fds, send, dup2, close, listdir = socket.recv_fds, channel.send, os.dup2, os.close, os.listdir
    while True:
        msg, fds, _, _ = recv_fds(channel, 1 << 16, 4)
        if not msg:
            os._exit(0)
        test = json.loads(msg)
        # The program may have closed fds 0-3, so received fds can land there: lift them first.
        lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for fd in fds:
            close(fd)
        for target, fd in enumerate(lifted):
            dup2(fd, target)
            close(fd)
        _cpu_limit(test["time"])
        outcome = _run_one(code, test)
        try:
            threads = len(listdir("/proc/self/task"))
        except BaseException:
            threads = -1  # cannot tell: treat as unhealthy
        send(f'{{"outcome": "{outcome}", "threads": {threads}}}'.encode())


# --------------------------------------------------------------------------- in the worker


class Worker:
    def __init__(self, config):
        self.root = config["root"]
        self.pidns = config["pidns"]
        self.count = 0
        self.compiled = {}  # (mode, source) -> code object or the SyntaxError text
        self.program = None  # (program id, mode, source) the live child serves
        self.child = None  # (pid, socket)

    def handle(self, req):
        if req["op"] == "end":
            self.retire()
            return {"ended": True}
        return {"results": self.batch(req)}

    def batch(self, req):
        """Run the request's tests in order; stop after the first one that did not end cleanly
        (only the parent can tell a wrong answer) or when the total time left is used up."""
        results, deadline = [], time.monotonic() + req["total_left"]
        for payload in req["payloads"]:
            seconds = min(req["time"], deadline - time.monotonic())
            if seconds <= 0:
                results.append({"outcome": "total_timeout", "stdout": "", "result": "", "stderr": "", "elapsed": 0.0})
                break
            results.append(self.test(req, payload, seconds))
            if results[-1]["outcome"] != "ok":
                break
        if req["last"] and len(results) == len(req["payloads"]):
            self.retire()  # the program's last test: saves the parent an "end" round trip
        return results

    def compile(self, mode, source):
        """Compile here, once per program, so no child pays for the compiler's page faults.

        The source is untrusted, but this process is inside the sandbox too; a compiler crash or
        hang only costs this worker, which the parent then replaces.
        """
        key = (mode, source)
        if key not in self.compiled:
            src = source if mode == "stdio" else CALL_PRELUDE + source
            try:
                self.compiled[key] = compile(src, "solution.py", "exec")
            except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
                self.compiled[key] = f"{type(e).__name__}: {e}"
            if len(self.compiled) > 64:
                self.compiled.pop(next(iter(self.compiled)))
        return self.compiled[key]

    def test(self, req, payload, seconds):
        """One test: ``payload`` is the stdin text, or the JSON of the call's arguments."""
        program = (req["program"], req["mode"], req["code"])
        if program != self.program:
            self.retire()
            self.program = program
        code = self.compile(req["mode"], req["code"])
        if isinstance(code, str):
            return {"outcome": "exit:1", "stdout": "", "result": "", "stderr": code, "elapsed": 0.0}
        if self.child is None:
            self.child = self._fork(code, req)
        fds = [os.memfd_create(name) for name in ("stdin", "stdout", "stderr", "result")]
        try:
            os.write(fds[0], payload.encode())
            os.lseek(fds[0], 0, os.SEEK_SET)
            start = time.monotonic()
            order = json.dumps({"mode": req["mode"], "fn": req.get("fn"), "time": seconds}).encode()
            socket.send_fds(self.child[1], [order], fds)
            outcome = self._await(seconds)
            return _report(fds, outcome, time.monotonic() - start, req["output_bytes"])
        finally:
            for fd in fds:
                os.close(fd)

    def _fork(self, code, req):
        self.count += 1
        workdir = os.path.join(self.root, f"p{self.count}")
        os.mkdir(workdir, 0o700)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            mine.close()
            program_child(theirs, code, req, workdir)
        theirs.close()
        return pid, mine

    def _await(self, limit):
        """The child's outcome for this test; retires the child unless it is clean and healthy."""
        pid, sock = self.child
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([sock, pidfd], [], [], limit)
        finally:
            os.close(pidfd)
        if not ready:
            self.retire()
            return "timeout"
        reply = sock.recv(1 << 16) if sock in ready else b""
        if not reply:  # the child died: its exit status is the outcome
            _, wstatus = os.waitpid(pid, 0)
            self.child = None
            self.retire()
            return _death(wstatus)
        outcome, threads = _parse_reply(reply)
        if outcome != "ok" or threads != 1 or self._strays(pid):
            self.retire()  # leftover threads or processes must not run into the next test
        return outcome

    def _strays(self, child):
        """Whether any process other than us and the child exists (only knowable in a pid ns)."""
        if not self.pidns:
            return False
        return any(p.isdigit() and p not in ("1", str(child)) for p in os.listdir("/proc"))

    def retire(self):
        """Kill the program's child and everything it started, reap them, wipe the work area."""
        if self.child is not None:
            pid, sock = self.child
            sock.close()
            self.child = None
            _kill(-pid)
            if not self.pidns:
                _kill(pid)
                _reap(pid)
        if self.pidns:  # everything in our namespace but us is the program's
            _kill(-1)
            _reap_all()
        self.program = None
        for entry in os.listdir(self.root):
            _remove(os.path.join(self.root, entry))


def _parse_reply(reply):
    """The child's (outcome, threads). The program can write to the child's socket too, so a
    reply that is not what the harness sends counts as a failure, never as a crash of ours."""
    try:
        data = json.loads(reply)
        outcome, threads = data["outcome"], data["threads"]
        if isinstance(outcome, str) and type(threads) is int:
            return outcome[:40], threads
    except (ValueError, KeyError, TypeError):
        pass
    return "bad_reply", -1


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _reap_all():
    """As pid 1, wait for every process (orphans are ours) until none is left."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            reaped, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if reaped == 0:
            if time.monotonic() > deadline:
                return
            _kill(-1)
            time.sleep(0.0005)


def _report(fds, outcome, elapsed, cap):
    def read(fd, limit):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", "replace") if limit else ""
    return {"outcome": outcome, "stdout": read(fds[1], cap), "result": read(fds[3], cap),
            "stderr": read(fds[2], 1 << 20)[-2000:], "elapsed": elapsed}


def _remove(path):
    """Remove a file or a tree, including dirs the program made unreadable."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    for entry in os.listdir(path):
        _remove(os.path.join(path, entry))
    os.rmdir(path)


def _death(wstatus):
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout"  # RLIMIT_CPU: SIGXCPU at the soft limit
        return "output_limit" if sig == signal.SIGXFSZ else f"signal:{signal.Signals(sig).name}"
    code = os.WEXITSTATUS(wstatus)
    return {0: "ok", EXIT_SETUP: "harness_error", EXIT_BROKEN: "broke_the_harness"}.get(code, f"exit:{code}")


def _site_builtins():
    """``exit()`` and ``quit()`` come from the site module, which ``-S`` skips; solutions use them."""
    def leave(code=None):
        raise SystemExit(code)
    for name in ("exit", "quit"):
        if not hasattr(builtins, name):
            setattr(builtins, name, leave)


def main():
    _site_builtins()
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
        write_msg(proto_out, worker.handle(req))


if __name__ == "__main__":
    main()
