"""Programs must not reach each other: no stealing a sibling's solution, no channel to a later program.

The stealer stands in for a policy that learned to look for its siblings' code instead of solving
the problem: it searches every string it can reach in its own process (objects, frames, and its raw
memory through /proc/self/mem, which holds whatever the process it was forked from had seen), runs
the first source that looks like a solution of its own problem, and answers with its result.
"""

import uuid

import pytest

from rlspec.runtime.reward import grade_code
from rlspec.runtime.reward.sandbox import get_sandbox

STEALER = r'''
import gc, io, json, os, re, sys
TAG = "STEALER-SOURCE"  # in every copy of this source, so it never runs itself
NEEDLE = @NEEDLE@

def _strings():
    found = []
    for o in gc.get_objects():  # containers are tracked; the strings they hold are what we want
        if o is found:
            continue
        items = list(o.items()) if isinstance(o, dict) else list(o) if isinstance(o, (list, tuple)) else ()
        for x in items:
            for y in (x if isinstance(x, tuple) else (x,)):
                if isinstance(y, str):
                    found.append(y)
    frame = sys._getframe()
    while frame:
        found += [v for v in frame.f_locals.values() if isinstance(v, str)]
        frame = frame.f_back
    return found + _memory()

def _memory():
    """Printable runs around the needle anywhere in our own writable memory (freed buffers too)."""
    runs = []
    try:
        maps = open("/proc/self/maps").read().splitlines()
        mem = open("/proc/self/mem", "rb")
    except OSError:
        return runs
    pat = re.compile(rb"[\t\n\r\x20-\x7e]{20,}")
    for line in maps:
        addr, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in addr.split("-"))
        if "rw" not in perms or hi - lo > 256 << 20:
            continue
        try:
            mem.seek(lo)
            blob = mem.read(hi - lo)
        except (OSError, ValueError, OverflowError):
            continue
        start = 0
        while True:
            i = blob.find(NEEDLE.encode(), start)
            if i < 0:
                break
            start = i + 1
            m = pat.search(blob, max(0, i - 4000), i + 4000)
            while m and m.end() <= i:
                m = pat.search(blob, m.end(), i + 4000)
            if m:
                text = m.group().decode()
                runs.append(text)
                for esc in re.findall(r'"code": "((?:[^"\\]|\\.)*)"', text):  # JSON requests
                    try:
                        runs.append(json.loads('"' + esc + '"'))
                    except ValueError:
                        pass
    return runs

def candidates():
    return [s for s in dict.fromkeys(_strings()) if NEEDLE in s and TAG not in s and len(s) < 20000]
'''

STEAL_CALL = STEALER + r'''
def @FN@(*args):
    for src in candidates():
        ns = {}
        try:
            exec("from typing import *\n" + src, ns)
            target = getattr(ns["Solution"](), "@FN@") if "Solution" in ns else ns["@FN@"]
            return target(*args)
        except BaseException:
            continue
    return None
'''

STEAL_STDIO = STEALER + r'''
data = sys.stdin.read()
real = sys.stdout
for src in candidates():
    sys.stdin, sys.stdout = io.StringIO(data), io.StringIO()
    try:
        exec(src, {"__name__": "__main__"})
        out = sys.stdout.getvalue()
    except BaseException:
        continue
    finally:
        sys.stdin, sys.stdout = sys.__stdin__, real
    if out.strip():
        print(out, end="")
        break
'''


def py(code: str) -> str:
    return f"<think>plan</think>\n```python\n{code}\n```"


def _problems():
    """Six problems (four function calls, two stdin/stdout), each with a solution and 2 tests."""
    out = []
    for p in range(4):
        fn = f"solve_{p}_{uuid.uuid4().hex[:6]}"
        k = 7 + p
        solution = f"class Solution:\n    def {fn}(self, xs):\n        return sum(x * {k} for x in xs) + {p}"
        tests = [{"fn_name": fn, "args": [[i, i + 1]], "expected": (2 * i + 1) * k + p} for i in (3, 11)]
        out.append((solution, _stealer(STEAL_CALL, f"def {fn}", fn), tests))
    for p in range(2):
        const = 1_000_003 + 7919 * p  # the statement's modulus: how a stealer recognises a sibling
        solution = f"a, b = map(int, input().split())\nprint((a * b + {p}) % {const})"
        tests = [{"input": f"{a} {a + 5}\n", "output": str((a * (a + 5) + p) % const)} for a in (12345, 99991)]
        out.append((solution, _stealer(STEAL_STDIO, f"% {const})"), tests))
    return out


def _stealer(template: str, needle: str, fn: str = "") -> str:
    return template.replace("@NEEDLE@", repr(needle)).replace("@FN@", fn)


def _grpo_batch(problems, pattern):
    """6 problems x 8 rollouts in group order (as a trainer grades them): 'S' solver, 'T' stealer."""
    responses, tests, roles = [], [], []
    for solution, stealer, cases in problems:
        for role in pattern:
            responses.append(py(solution if role == "S" else stealer))
            tests.append(cases)
            roles.append(role)
    return responses, tests, roles


@pytest.mark.parametrize("workers", [1, 2])
def test_stealers_in_a_grpo_batch_never_pass(workers):
    """One grade_code call: solvers and stealers of the same problems, interleaved; a stealer has
    no solution of its own, so it must never be rewarded, however many siblings solved it. (On the
    worker that forked programs from itself and cached their sources, 24/24 and 23/24 passed.)"""
    responses, tests, roles = _grpo_batch(_problems(), "STSTSTST")
    grades = grade_code(responses, tests, workers=workers, time_limit=5.0)
    solved = [g.status for g, r in zip(grades, roles) if r == "S"]
    stolen = [g for g, r in zip(grades, roles) if r == "T"]
    assert solved == ["pass"] * 24
    assert [g for g in stolen if g.reward > 0] == []


def test_stealers_find_nothing_from_an_earlier_call():
    """The solvers are graded first (an earlier RL step); the stealers come in a later call."""
    problems = _problems()
    solvers = grade_code([py(s) for s, _, _ in problems] * 2, [t for _, _, t in problems] * 2, workers=1)
    assert [g.status for g in solvers] == ["pass"] * 12
    stealers = grade_code([py(t) for _, t, _ in problems], [c for _, _, c in problems], workers=1, time_limit=5.0)
    assert [g for g in stealers if g.reward > 0] == []


def test_the_stealer_works_when_the_solution_is_in_reach():
    """The stealer is not a dud: given a sibling's source in its own memory, it finds and runs it."""
    solution, stealer, cases = _problems()[0]
    planted = f"PLANTED = [{solution!r}]\n" + stealer
    assert grade_code([py(planted)], [cases], workers=1, time_limit=5.0)[0].status == "pass"
    solution, stealer, cases = _problems()[4]
    planted = f"PLANTED = [{solution!r}]\n" + stealer
    assert grade_code([py(planted)], [cases], workers=1, time_limit=5.0)[0].status == "pass"


SHM = r'''
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
KEY, SIZE = 0x5EC12E7, 1 << 16
'''


def test_sysv_shared_memory_does_not_outlive_its_program():
    """A program leaves a SysV segment with a secret; a later program on the same worker looks."""
    secret = "SHM-" + uuid.uuid4().hex[:10]
    writer = SHM + (f"sid = libc.shmget(KEY, SIZE, 0o1666)\naddr = libc.shmat(sid, None, 0)\n"
                    f"ctypes.memmove(addr, {secret.encode()!r}, {len(secret)})\nprint('left')")
    reader = SHM + ("sid = libc.shmget(KEY, SIZE, 0)\nif sid < 0:\n    print('none'); sys.exit(0)\n"
                    f"addr = libc.shmat(sid, None, 0)\nprint(ctypes.string_at(addr, {len(secret)}).decode())")
    grades = grade_code([py(writer), py(reader)], [[{"input": "", "output": "left"}],
                                                   [{"input": "", "output": secret}]], workers=1)
    assert grades[0].status == "pass"  # creating shared memory is allowed: it just dies with it
    assert grades[1].status == "wrong" and grades[1].reward == 0.0


KEYS = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
def keyctl(*args):
    return libc.syscall(KEYCTL, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
RINGS = (-4, -5)  # the user and user-session keyrings: per user, not per process
'''


def test_kernel_keyrings_carry_nothing_to_a_later_program():
    """A program leaves a key readable by its user in the per-user keyrings; a later program of
    the same uid looks. User keyrings are per user namespace, and each program has its own."""
    secret = "KEY-" + uuid.uuid4().hex[:10]
    writer = KEYS + (f"ok = []\nfor r in RINGS:\n    k = libc.syscall(ADD_KEY, b'user', b'rlspec-leak', {secret.encode()!r}, "
                     f"ctypes.c_long({len(secret)}), ctypes.c_long(r))\n"
                     "    ok.append(k > 0 and keyctl(5, k, 0x3f3f0000) == 0)  # KEYCTL_SETPERM: user may read\n"
                     "print(all(ok))")
    reader = KEYS + (
        "buf = ctypes.create_string_buffer(256)\nfound = 'none'\nfor r in RINGS:\n"
        "    k = keyctl(10, r, b'user', b'rlspec-leak', 0)  # KEYCTL_SEARCH\n"
        "    if k > 0 and keyctl(11, k, buf, 256) > 0:  # KEYCTL_READ\n        found = buf.value.decode()\nprint(found)")
    grades = grade_code([py(writer), py(reader)], [[{"input": "", "output": "True"}],
                                                   [{"input": "", "output": secret}]], workers=1)
    assert grades[0].status == "pass"  # the program may use keyrings: they are its own
    assert grades[1].status == "wrong"


PEEK = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
me, got = os.readlink("/proc/self"), []  # our pid in /proc's namespace (the sandbox's)
for p in sorted(os.listdir("/proc")):
    if not p.isdigit() or p == me:
        continue
    try:  # an address it maps, and the bytes there
        lo = int(open(f"/proc/{p}/maps").readline().split("-")[0], 16)
        with open(f"/proc/{p}/mem", "rb") as f:
            f.seek(lo)
            got.append(len(f.read(64)))
    except OSError:
        pass
    try:
        got.append(len(open(f"/proc/{p}/environ", "rb").read()) + 1)
    except OSError:
        pass
for pid in range(1, 64):  # PTRACE_ATTACH on every pid of its own namespace but itself
    if pid != os.getpid() and libc.ptrace(16, pid, None, None) == 0:
        got.append(pid)
        libc.ptrace(17, pid, None, None)
print(42 if got else 0)
'''


def test_no_program_can_read_or_ptrace_the_worker_or_the_zygote():
    """/proc/<worker>/mem, /proc/<pid>/environ, ptrace: all refused for every process it can name."""
    grade = grade_code([py(PEEK)], [[{"input": "", "output": "42"}]], workers=1)[0]
    assert grade.status == "wrong"


def test_a_program_cannot_stop_or_kill_the_zygote():
    """SIGSTOP and SIGKILL to every pid it can name (its pid namespace: its own processes and the
    zygote, their init, which the kernel shields). Later programs on that worker still run, and the
    worker was not restarted to get there."""
    code = ("import os, signal\nfor pid in range(1, 64):\n    for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
            "        try:\n            if pid != os.getpid():\n                os.kill(pid, sig)\n"
            "        except OSError:\n            pass\nprint('done')")
    box = get_sandbox(1)
    grade_code([py("print(1)")], [[{"input": "", "output": "1"}]], workers=1)
    before = box.workers[0].proc.pid
    grades = grade_code([py(code)] + [py("print(6 * 7)")] * 3, [[{"input": "", "output": "done"}]] +
                        [[{"input": "", "output": "42"}]] * 3, workers=1, time_limit=2.0)
    assert [g.status for g in grades] == ["pass"] * 4
    assert box.workers[0].proc.pid == before
