"""The processes inside the sandbox that run untrusted programs: a worker, a clean zygote, a child per program.

What: ``sandbox.py`` starts ``python3.11 -I -S -c <this source> <config json>`` (in bubblewrap). It reads
requests on its stdin: ``{"op": "test", ...}`` (a program, the stdin texts or call arguments of some of
its tests, limits), answered with what the program produced for each (stdout, the call's encoded
result, an outcome), and ``{"op": "end"}``, which kills the program (a test request with ``"last": true``
does that too, after its tests). It never sees expected outputs: the trusted parent compares.
Why: starting an interpreter per test costs ~7-10 ms; a child forked from a warm one costs ~1 ms, and
keeping that child for all tests of one program brings a test down to ~0.2 ms. But a process forked
from one that has handled earlier programs carries their sources in its memory (a response with no
solution of its own could find a sibling's and run it), so programs are forked from a zygote that
never receives a program, and each program gets namespaces of its own.
How, three roles:
- the worker (pid 1 of the sandbox's pid namespace, so the kernel ignores the program's signals to it)
  speaks the protocol, gives each program's child its code and test inputs over a socket, waits for
  the outcome, and afterwards kills every process of the program. It is not dumpable: programs can
  neither ptrace it nor open its /proc/<pid>/mem, where requests (other programs' code) pass.
- the zygote, forked from the worker at start before any request (so it holds no program), warms
  the modules solutions import and forks one child per program on the worker's order, reporting how
  each ended. It is pid 1 of new user and pid namespaces (a raw clone: ``os.fork`` takes no flags),
  so programs see only it and themselves, cannot signal it (the kernel shields a namespace's init)
  and leave their orphans to it; not dumpable either, so no program can change what later programs
  are forked from. The parent moves it into the program memory cgroup, so everything it forks is
  counted there.
- the program's child first enters new user, IPC and mount namespaces (``private``): SysV and POSIX
  IPC objects die with the program, and /work is a tmpfs of its own (size-capped, its cwd) that
  vanishes with its last process, so nothing is left to clean up and nothing reaches the next
  program. It drops all capabilities, sets rlimits (address space, processes, file size = output cap,
  open files), then runs its tests: per test it gets new stdin/stdout/stderr/result memfds and a CPU
  budget. After a failure, a leftover thread or process, or the last test, the worker SIGKILLs every
  process in the sandbox but itself and the zygote. Without user namespaces (the fallback modes) the
  child runs in a per-program dir the worker removes (iteratively: a 1,000-level tree must not hit
  the recursion limit) and the worker removes SysV objects after each program.
Memory: the parent's cgroup limit covers the whole program (all processes, tmpfs, shm, memfd). When the
parent has no cgroup, it asks for ``memory_poll``: the worker sums the resident memory of the
program's processes every 10 ms and kills it above the limit (see sandbox.py for what that misses).
Protocol: each message is a 4-byte big-endian length followed by UTF-8 JSON.
"""

import atexit
import builtins
import ctypes
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
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
MS_NOSUID, MS_NODEV = 2, 4
PR_SET_DUMPABLE = 4
POLL_S = 0.01  # memory_poll: how often the worker sums the program's resident memory
# Signals that end a process without it having faulted: "killed" (SIGXCPU is our CPU limit: timeout).
KILL_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGVTALRM, signal.SIGPROF}

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_LIBC.unshare.argtypes = [ctypes.c_int]
_GIL_HELD = ctypes.PyDLL(None, use_errno=True)  # raw clone must keep the GIL, as os.fork does
_GIL_HELD.syscall.restype = ctypes.c_long
_GIL_HELD.syscall.argtypes = [ctypes.c_long] * 6


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


def _libc_call(name, *args):
    if getattr(_LIBC, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _dumpable(flag):
    _libc_call("prctl", PR_SET_DUMPABLE, flag, 0, 0, 0)


def fork_into_namespaces(flags):
    """``os.fork()`` whose child starts in new namespaces (os.fork takes no clone flags): the
    interpreter's own before/after-fork steps around a raw clone. Raises OSError if refused."""
    if SYS_CLONE is None:
        raise OSError(0, f"no clone syscall number for {os.uname().machine}")
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _GIL_HELD.syscall(SYS_CLONE, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def _map_own_ids(uid, gid):
    """In a new user namespace: be ``uid``/``gid`` there too (unmapped ids cannot mount or own files)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


# ------------------------------------------------------------------ inside the program's child


def _private_namespaces(work_root, work_mb):
    """Own user, IPC and mount namespaces, and a fresh tmpfs as /work; then no capabilities at all."""
    uid, gid = os.getuid(), os.getgid()
    _libc_call("unshare", CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWNS)
    _map_own_ids(uid, gid)
    options = f"size={work_mb}m,nr_inodes=65536,mode=0700".encode()
    _libc_call("mount", b"tmpfs", work_root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options)
    _drop_capabilities()


def _drop_capabilities():
    """capset() with empty sets: the new user namespace gave us every capability in it."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _libc_call("capset", header, data)


def _limit(kind, value):
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _apply_limits(limits):
    _limit(resource.RLIMIT_AS, limits["memory_mb"] << 20)
    _limit(resource.RLIMIT_NPROC, limits["nproc"])  # fork bombs (enforced: we are not root)
    _limit(resource.RLIMIT_FSIZE, limits["output_bytes"])  # caps stdout, files and each memfd alike
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


_SCALARS = frozenset({type(None), bool, int, float, str})
# Types JSON would lose, sent as one-key objects; a real dict with such a key is sent as pairs.
TAGS = {tuple: "\x00tuple", set: "\x00set", frozenset: "\x00frozenset", dict: "\x00dict", bytes: "\x00bytes",
        complex: "\x00complex"}


def _tagged(value):
    """``value`` as JSON that keeps its Python type (the parent reverses it, at JSON speed).
    Anything but plain values (a class of the program's, which could claim to equal anything)
    is refused."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind in (list, tuple, set, frozenset):
        items = list(value) if set(map(type, value)) <= _SCALARS else [_tagged(v) for v in value]
        return items if kind is list else {TAGS[kind]: items}
    if kind is dict:
        if all(type(k) is str and not k.startswith("\x00") for k in value):
            return {k: _tagged(v) for k, v in value.items()}
        return {TAGS[dict]: [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    if kind is bytes:
        return {TAGS[bytes]: value.hex()}
    if kind is complex:
        return {TAGS[complex]: [value.real, value.imag]}
    raise TypeError(f"a {kind.__name__} cannot be sent back: return plain values (numbers, strings, lists, ...)")


def _encode(value):
    return json.dumps(_tagged(value)).encode()


def _compile(source, mode):
    """The program's code object, or the error text (compiled here, in the program's own process)."""
    try:
        if mode == "call":
            source = CALL_PRELUDE.encode() + source
        return compile(source, "solution.py", "exec")
    except BaseException as e:  # SyntaxError, ValueError (NUL bytes), MemoryError, RecursionError
        return f"{type(e).__name__}: {e}"


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


def program_child(sock_fd, order, config):
    """Never returns: set up, then serve tests of one program until the worker closes the socket."""
    try:
        channel = _setup_child(sock_fd, order, config)
    except BaseException:
        os._exit(EXIT_SETUP)
    if order.get("probe"):
        os._exit(0)
    try:
        _serve_tests(channel)
    finally:
        os._exit(EXIT_BROKEN)  # never fall back into the zygote's loop


def _setup_child(sock_fd, order, config):
    signal.set_wakeup_fd(-1)  # the zygote's, about to be closed
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    os.dup2(sock_fd, 9)
    os.closerange(0, 9)
    os.closerange(10, 1 << 16)  # the zygote's channel to the worker, and everything else
    for _ in range(4):  # hold fds 0-3, so fds received per test never land on them
        os.open(os.devnull, os.O_RDWR)
    # Its own /proc/self must stay usable (uid_map below among it); the zygote it came from stays not
    # dumpable, and holds nothing a program could want.
    _dumpable(1)
    _oom_first()
    if config["private"]:
        _private_namespaces(config["root"], config["work_mb"])
        workdir = config["root"]
    else:
        workdir = order["workdir"]
    os.chdir(workdir)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    _apply_limits(order["limits"])
    channel = socket.socket(fileno=9)
    channel.send(json.dumps({"pid": _outer_pid()}).encode())  # set up: the worker may send tests
    return channel


def _oom_first():
    """The OOM killer's first choice, at the cgroup's limit (not the zygote, which the parent
    shields) and on a host short of memory (not the trainer). Raising it needs no privilege."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass


def _outer_pid():
    """Our pid as the worker sees it (the zygote's fork returned our pid in its own namespace):
    /proc belongs to the worker's pid namespace."""
    return int(os.readlink("/proc/self"))


def _serve_tests(channel):
    recv_fds, send, dup2, close, listdir = socket.recv_fds, channel.send, os.dup2, os.close, os.listdir
    code = None
    while True:
        msg, fds, _, _ = recv_fds(channel, 1 << 16, 5)
        if not msg:
            os._exit(0)
        test = json.loads(msg)
        if code is None and len(fds) == 5:  # the first test brings the program's source
            code_fd = fds.pop()
            code = _compile(os.pread(code_fd, os.fstat(code_fd).st_size, 0), test["mode"])
            close(code_fd)
        # The program may have closed fds 0-3, so received fds can land there: lift them first.
        lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for fd in fds:
            close(fd)
        for target, fd in enumerate(lifted):
            dup2(fd, target)
            close(fd)
        if isinstance(code, str) or code is None:
            os.write(2, (code or "no code").encode())
            outcome = "exit:1"
        else:
            _cpu_limit(test["time"])
            outcome = _run_one(code, test)
        try:
            threads = len(listdir("/proc/self/task"))
        except BaseException:
            threads = -1  # cannot tell: treat as unhealthy
        send(f'{{"outcome": "{outcome}", "threads": {threads}}}'.encode())


# --------------------------------------------------------------------------- in the zygote


def zygote(ctrl, config):
    """Never returns: fork a child per program on the worker's order, report how each child ended.

    An order is a JSON message with one fd attached, the child's end of its socket to the worker;
    it carries limits and paths, never code. Replies: ``{"spawned": pid}`` and ``{"exited": pid,
    "status": wait status}``. As pid 1 of its own pid namespace (when it has one) it also reaps the
    orphans programs leave, and no program can signal it.
    """
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd is what matters
    children = set()
    gc.freeze()  # children then never touch (and copy) the zygote's objects when they collect
    while True:
        ready, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
        if wake_r in ready:
            _drain(wake_r)
            _reap(children, ctrl)
        if ctrl.fileno() not in ready:
            continue
        msg, fds, _, _ = socket.recv_fds(ctrl, 1 << 16, 1)
        if not msg:
            os._exit(0)  # the worker is gone
        pid = os.fork()
        if pid == 0:
            program_child(fds[0], json.loads(msg), config)
        for received in fds:
            os.close(received)
        children.add(pid)
        ctrl.send(json.dumps({"spawned": pid}).encode())


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap(children, ctrl):
    """Wait for every ended process; report the programs' children, drop the orphans."""
    for pid, status in reaped():
        if pid in children:
            children.discard(pid)
            ctrl.send(json.dumps({"exited": pid, "status": status}).encode())


def reaped():
    """(pid, wait status) of each child of ours that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


# --------------------------------------------------------------------------- in the worker


class Worker:
    def __init__(self, config, ctrl, zygote_pid):
        self.root = config["root"]
        self.pidns = config["pidns"]
        self.private = config["private"]
        self.ctrl, self.zygote = ctrl, zygote_pid
        self.count = 0
        self.program = None  # program id the live child serves
        self.child = None  # (pid as the zygote knows it, pid as we see it, socket)
        self.exits = {}  # pid (the zygote's) -> wait status, as the zygote reported
        self.broken = False  # the zygote died or stopped answering: the parent must restart us

    def handle(self, req):
        if req["op"] == "end":
            self.retire()
            return {"ended": True, "restart": self.broken}
        return {"results": self.batch(req), "restart": self.broken}

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

    def test(self, req, payload, seconds):
        """One test: ``payload`` is the stdin text, or the JSON of the call's arguments."""
        if req["program"] != self.program:
            self.retire()
            self.program = req["program"]
        fresh = self.child is None
        if fresh:
            self.child = self._spawn(req)
            if self.child is None:
                return {"outcome": "harness_error", "stdout": "", "result": "", "elapsed": 0.0,
                        "stderr": "the zygote could not start the program's process"}
        fds = [os.memfd_create(name) for name in ("stdin", "stdout", "stderr", "result")]
        if fresh:
            fds.append(os.memfd_create("code"))
            os.write(fds[4], req["code"].encode("utf-8", "surrogatepass"))
        try:
            os.write(fds[0], payload.encode("utf-8", "surrogatepass"))
            os.lseek(fds[0], 0, os.SEEK_SET)
            start = time.monotonic()
            order = json.dumps({"mode": req["mode"], "fn": req.get("fn"), "time": seconds}).encode()
            socket.send_fds(self.child[2], [order], fds)
            outcome = self._await(seconds, req)
            return _report(fds, outcome, time.monotonic() - start, req["output_bytes"])
        finally:
            for fd in fds:
                os.close(fd)

    def _spawn(self, req):
        """This program's child, set up and waiting for its first test; None if that failed."""
        order = {"limits": {k: req[k] for k in ("memory_mb", "nproc", "output_bytes")}}
        if not self.private:
            self.count += 1
            order["workdir"] = os.path.join(self.root, f"p{self.count}")
            os.mkdir(order["workdir"], 0o700)
        child = self.spawn(order)
        if child is None:
            self.broken = True
        return child

    def spawn(self, order):
        """Have the zygote fork a child; (its pid, the pid we see, our socket to it) once it has set
        itself up, else None (its exit status stays in ``exits``)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.ctrl, [json.dumps(order).encode()], [theirs.fileno()])
            reply = self._from_zygote(time.monotonic() + 10, "spawned")
            if reply:
                self.exits.pop(reply["spawned"], None)  # a report for an earlier process of that pid
        except OSError:
            reply = None
        finally:
            theirs.close()
        hello = self._child_hello(mine, reply["spawned"]) if reply else None
        if hello is None:
            mine.close()
            return None
        return reply["spawned"], hello, mine

    def _child_hello(self, sock, pid):
        """The pid we see for a new child, once it says it is ready; None if it exited instead."""
        deadline = time.monotonic() + 10
        while pid not in self.exits and time.monotonic() < deadline:
            ready, _, _ = select.select([sock, self.ctrl], [], [], deadline - time.monotonic())
            if sock in ready:
                msg = sock.recv(1 << 16)
                return json.loads(msg)["pid"] if msg else None
            if self.ctrl in ready:
                self._zygote_message(0)
                if self.broken:
                    return None
        return None

    def _zygote_message(self, timeout):
        """One message from the zygote within ``timeout`` s (0: only if one is waiting), or None.
        Exit reports are recorded in ``exits``; the zygote's death marks us broken."""
        if self.broken or not select.select([self.ctrl], [], [], max(0.0, timeout))[0]:
            return None
        msg = self.ctrl.recv(1 << 16)
        if not msg:
            self.broken = True
            return None
        data = json.loads(msg)
        if "exited" in data:
            self.exits[data["exited"]] = data["status"]
        return data

    def _from_zygote(self, deadline, want):
        """The zygote's next message with key ``want`` (others are recorded on the way), or None."""
        while True:
            data = self._zygote_message(deadline - time.monotonic())
            if data is None or want in data:
                return data

    def _await(self, limit, req):
        """The child's outcome for this test; retires the child unless it is clean and healthy."""
        pid, _, sock = self.child
        deadline = time.monotonic() + limit
        poll = req.get("memory_poll")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.retire()
                return "timeout"
            ready, _, _ = select.select([sock, self.ctrl], [], [], min(left, POLL_S) if poll else left)
            if self.ctrl in ready:
                self._zygote_message(0)
                if self.broken:
                    self.retire()
                    return "broke_the_harness"  # the zygote died: the parent restarts the sandbox
            if sock in ready or pid in self.exits:
                return self._finish(sock.recv(1 << 16) if sock in ready else b"", deadline)
            if poll and self._resident() > req["memory_mb"] << 20:
                self.retire()
                return "memory"

    def _finish(self, reply, deadline):
        pid = self.child[0]
        if not reply:  # the child died (or closed its socket): its exit status is the outcome
            while pid not in self.exits and self._from_zygote(deadline, "exited"):
                pass
            status = self.exits.get(pid)  # retire() takes it out
            self.retire()
            return "timeout" if status is None else _death(status)
        outcome, threads = _parse_reply(reply)
        if outcome != "ok" or threads != 1 or len(self._program_pids()) > 1:
            self.retire()  # leftover threads or processes must not run into the next test
        return outcome

    def _program_pids(self):
        """Every process of the program (with a pid namespace: all but us and the zygote)."""
        if not self.pidns:
            return {self.child[1]} if self.child else set()
        return {int(p) for p in os.listdir("/proc") if p.isdigit()} - {1, self.zygote}

    def _resident(self):
        """Bytes resident in the program's processes, shared memory they map included."""
        total = 0
        for pid in self._program_pids():
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * resource.getpagesize()
            except (OSError, IndexError, ValueError):
                pass  # it exited meanwhile
        return total

    def retire(self):
        """Kill the program's child and everything it started; return once all are gone."""
        _kill(self.zygote, signal.SIGCONT)  # it must reap the child (a program cannot stop it in
        pid = None                          # its own pid namespace, but can in the fallbacks)
        if self.child is not None:
            pid, seen, sock = self.child
            sock.close()
            self.child = None
            _kill(-seen)
            _kill(seen)
        if self.pidns:
            for p in self._program_pids():
                _kill(p)
        deadline = time.monotonic() + 2.0
        while pid is not None and pid not in self.exits and self._from_zygote(deadline, "exited"):
            pass
        if pid is not None and self.exits.pop(pid, None) is None:
            self.broken = True  # the zygote did not reap it: start afresh rather than guess
        if self.pidns:
            self._kill_all(deadline)
        self.program = None
        if not self.private:
            for entry in os.listdir(self.root):
                remove_tree(os.path.join(self.root, entry))
            remove_sysv_ipc()

    def _kill_all(self, deadline):
        """SIGKILL every process of the program until none is left (the zygote reaps them)."""
        while time.monotonic() < deadline:
            left = self._program_pids()
            for p in left:
                _kill(p)
            for pid, _ in reaped():  # without a zygote of its own namespace, orphans come to us, pid 1
                self.broken = self.broken or pid == self.zygote
            if not left:
                return
            self._zygote_message(0.001)  # exit reports of the children it reaped, or a short wait
        self.broken = True


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


def _kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _report(fds, outcome, elapsed, cap):
    def read(fd, limit):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", "replace") if limit else ""
    return {"outcome": outcome, "stdout": read(fds[1], cap), "result": read(fds[3], cap),
            "stderr": read(fds[2], 1 << 20)[-2000:], "elapsed": elapsed}


def remove_tree(path):
    """Remove a file or a tree, including dirs the program made unreadable, without recursion:
    a stack of the names still to visit per level, and a dir fd per level of the current path."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    fds, pending, names = [os.open(path, os.O_RDONLY | os.O_DIRECTORY)], [None], [None]
    pending[0] = os.listdir(fds[0])
    while fds:
        fd = fds[-1]
        if not pending[-1]:  # this level is empty now: close it and remove it from its parent
            os.close(fds.pop())
            pending.pop()
            name = names.pop()
            if fds:
                os.rmdir(name, dir_fd=fds[-1])
            continue
        name = pending[-1].pop()
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if (st.st_mode & 0o170000) != 0o040000:  # anything but a directory
            os.unlink(name, dir_fd=fd)
            continue
        os.chmod(name, 0o700, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        fds.append(child)
        names.append(name)
        pending.append(os.listdir(child))
    os.rmdir(path)


def remove_sysv_ipc():
    """Without an IPC namespace per program: remove the SysV objects we own (the program's)."""
    uid, ipc_rmid = os.getuid(), 0
    for kind, uid_column in (("shm", 7), ("sem", 4), ("msg", 7)):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            if int(row[uid_column]) != uid:
                continue
            if kind == "sem":
                _LIBC.semctl(int(row[1]), 0, ipc_rmid)
            else:
                getattr(_LIBC, f"{kind}ctl")(int(row[1]), ipc_rmid, None)


def _death(wstatus):
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig == signal.SIGXCPU:
            return "timeout"  # RLIMIT_CPU: SIGXCPU at the soft limit
        if sig == signal.SIGXFSZ:
            return "output_limit"
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return f"killed:{name}" if sig in KILL_SIGNALS else f"signal:{name}"
    code = os.WEXITSTATUS(wstatus)
    return {0: "ok", EXIT_SETUP: "harness_error", EXIT_BROKEN: "broke_the_harness"}.get(code, f"exit:{code}")


def _site_builtins():
    """``exit()`` and ``quit()`` come from the site module, which ``-S`` skips; solutions use them."""
    def leave(code=None):
        raise SystemExit(code)
    for name in ("exit", "quit"):
        if not hasattr(builtins, name):
            setattr(builtins, name, leave)


def start_zygote(config):
    """Fork the zygote now, before any request: it holds nothing but this module and its imports.

    With ``private`` it is pid 1 of new user and pid namespaces, where programs can neither see
    nor signal it. Returns (our socket to it, its pid, whether it got those namespaces).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    uid, gid = os.getuid(), os.getgid()
    own_ns = bool(config["private"])
    try:
        pid = fork_into_namespaces(CLONE_NEWUSER | CLONE_NEWPID) if own_ns else os.fork()
    except OSError:
        own_ns, pid = False, os.fork()
    if pid == 0:
        try:
            ours.close()
            if own_ns:
                _dumpable(1)  # /proc/self/uid_map must be ours to write
                _map_own_ids(uid, gid)
                _dumpable(0)
                _drop_capabilities()
            fd = theirs.detach()
            if fd != 3:
                os.dup2(fd, 3)
            null = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(null, std)
            os.closerange(4, 1 << 16)  # the parent's protocol pipes among them
            zygote(socket.socket(fileno=3), config)
        finally:
            os._exit(EXIT_BROKEN)
    theirs.close()
    return ours, pid, own_ns


def probe_private(worker):
    """Whether a program's child can get its own namespaces here (nested user namespaces allowed)."""
    child = worker.spawn({"probe": True, "limits": {"memory_mb": 256, "nproc": 4, "output_bytes": 1 << 20}})
    if child is not None:  # it exits right after saying hello
        child[2].close()
        worker._from_zygote(time.monotonic() + 10, "exited")
        return worker.exits.pop(child[0], None) == 0
    return False


def _start(config):
    """The worker with its zygote; programs get their own namespaces if the host allows it."""
    wanted = config["private"]
    config["private"] = wanted in (True, "try")
    ctrl, pid, own_ns = start_zygote(config)
    worker = Worker(config, ctrl, pid)
    if not config["private"] or (own_ns and probe_private(worker)):
        return worker
    ctrl.close()  # its children would try namespaces they cannot get: start one that does not
    _kill(pid)
    os.waitpid(pid, 0)
    if wanted is True:
        return None
    config["private"] = False
    ctrl, pid, _ = start_zygote(config)
    return Worker(config, ctrl, pid)


def main():
    _site_builtins()
    config = json.loads(sys.argv[1])
    if config.get("drop_to"):  # no user namespace: become nobody ourselves
        uid, gid = config["drop_to"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    _dumpable(0)  # after setuid, which would reset it
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    worker = _start(config)
    if worker is None:
        write_msg(proto_out, {"ready": False, "error": "no nested user namespaces inside the sandbox"})
        return
    write_msg(proto_out, {"ready": True, "zygote": worker.zygote, "private": worker.private})
    while True:
        req = read_msg(proto_in)
        if req is None:
            return
        write_msg(proto_out, worker.handle(req))


if __name__ == "__main__":
    main()
