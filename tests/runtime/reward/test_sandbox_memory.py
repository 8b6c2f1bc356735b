"""The memory limit holds for the whole program: all its processes, memfds, SysV shm and files.

Each hostile program puts 1.5-3x its limit (``memory_mb=128``) where ``RLIMIT_AS`` does not see it
in one process, and would print "ok" if it got there; the limit must stop it first, and label it.
A program that stays inside the limit still passes, and so does the next program on the worker.
"""

import pytest

from rlspec.runtime.reward import grade_code
from rlspec.runtime.reward import memcg
from rlspec.runtime.reward.sandbox import _SANDBOXES, get_sandbox

LIMIT_MB = 128

CHILDREN = r'''
import os, sys
n, each = {n}, {mb} << 20
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        block = bytearray(each)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        import time; time.sleep(0.5)  # hold it while the others allocate
        os._exit(0)
    kids.append(pid)
ok = all(os.waitpid(p, 0)[1] == 0 for p in kids)
print("ok") if ok else sys.exit(1)
'''

MEMFD = r'''
import os
chunk = b"x" * (8 << 20)
fds = []
for _ in range({n}):
    fd = os.memfd_create("hoard")
    os.write(fd, chunk)
    os.write(fd, chunk)  # 16 MB per memfd: RLIMIT_FSIZE (the output cap) is per file
    fds.append(fd)
print("ok")
'''

SYSV = r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
size = 64 << 20
for _ in range({n}):
    sid = libc.shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, size)
    libc.shmdt(ctypes.c_void_p(addr))  # unmapped: no longer in the address space, still in memory
print("ok")
'''

FILES = r'''
chunk = b"x" * (8 << 20)
for i in range({n}):
    with open(f"f{{i}}", "wb") as f:
        f.write(chunk)
        f.write(chunk)
print("ok")
'''


def py(code: str) -> str:
    return f"</think>\n```python\n{code}\n```"


def grade_with_bystander(code: str, **limits):
    """The hostile program, then a benign one, on one worker."""
    tests = [[{"input": "", "output": "ok"}], [{"input": "", "output": "42"}]]
    hostile, benign = grade_code([py(code), py("print(6 * 7)")], tests, workers=1, memory_mb=LIMIT_MB,
                                 time_limit=[10.0, 10.0], output_bytes=16 << 20, **limits)
    assert benign.status == "pass", benign
    return hostile


@pytest.fixture(scope="module", autouse=True)
def cgroups_here():
    """This machine lets us make memory cgroups (root, v1 memory controller): the tests mean it."""
    grade_code([py("print(1)")], [[{"input": "", "output": "1"}]], workers=1)
    assert get_sandbox(1).memory_limit.startswith("cgroup")


@pytest.mark.parametrize("name, code", [
    ("16 forked children x 24 MB", CHILDREN.format(n=16, mb=24)),
    ("24 memfds x 16 MB", MEMFD.format(n=24)),
    ("6 SysV segments x 64 MB, unmapped", SYSV.format(n=6)),
    ("12 files x 16 MB in its tmpfs (below the tmpfs cap)", FILES.format(n=12)),
])
def test_more_than_the_limit_outside_one_address_space_is_stopped(name, code):
    grade = grade_with_bystander(code)
    assert grade.status == "memory", (name, grade)
    assert grade.reward == 0.0


@pytest.mark.parametrize("code", [CHILDREN.format(n=4, mb=8), MEMFD.format(n=3), SYSV.format(n=1)])
def test_the_same_programs_within_the_limit_pass(code):
    assert grade_with_bystander(code).status == "pass"


def test_shared_memory_a_program_leaves_is_freed_before_the_next_starts():
    """One program fills SysV shm up to just under the limit and exits; the next one on the
    worker needs most of the limit itself: it must find it free (IPC namespaces die lazily)."""
    near = SYSV.replace("size = 64 << 20", "size = 100 << 20").format(n=1)
    needs = "block = bytearray(90 << 20)\nblock[::4096] = b'x' * len(block[::4096])\nprint('ok')"
    grades = grade_code([py(near), py(needs)] * 3, [[{"input": "", "output": "ok"}]] * 6, workers=1,
                        memory_mb=LIMIT_MB, time_limit=10.0)
    assert [g.status for g in grades] == ["pass"] * 6


def test_without_cgroups_the_worker_polls_the_whole_programs_memory(monkeypatch):
    """Stand-in for a machine without a writable memory cgroup: ``ProgramCgroup.create`` returns
    None, so the sandbox falls back to the worker summing the resident memory of the program's
    processes. Forked children are caught that way (unmapped memfds and shm are not: see sandbox.py)."""
    monkeypatch.setattr(memcg.ProgramCgroup, "create", classmethod(lambda cls, name: None))
    workers = 3  # a sandbox of its own (the shared ones are keyed by their settings)
    try:
        tests = [[{"input": "", "output": "ok"}], [{"input": "", "output": "42"}]]
        code = CHILDREN.format(n=12, mb=32)
        grades = grade_code([py(code), py("print(6 * 7)")], tests, workers=workers, memory_mb=LIMIT_MB, time_limit=10.0)
        assert get_sandbox(workers).memory_limit == "rss-poll"
        assert grades[0].status == "memory" and grades[1].status == "pass"
    finally:
        for key in [k for k in _SANDBOXES if k[0] == workers]:
            _SANDBOXES.pop(key).close()
