"""Hostile model-written programs against the real sandbox (bubblewrap, rlimits, uid 65534).

Each test runs the hostile program, then a benign program, then a probe, on one worker in one
call. Every test checks: the hostile verdict is never ``pass``; the benign program still passes;
no process of the sandbox user outlives the call (counted on the host before and after); the
probe, running next on the same worker, finds the work area empty (the hostile program's work dir
is gone).
"""

import os
import socket
import uuid
from pathlib import Path

import pytest

from rlspec.runtime.reward import grade_code
from rlspec.runtime.reward.grade import CODE_STATUSES
from rlspec.runtime.reward.sandbox import close_all

MARK = "EXPECTED-" + uuid.uuid4().hex[:8]  # an expected output no program can guess
SECRET = "fake-secret-" + uuid.uuid4().hex[:8]
BENIGN = ("print(sum(map(int, input().split())))", {"input": "40 2", "output": "42"})
# Its cwd is empty, and (where programs share a parent dir, in the fallback modes) so is the parent.
PROBE = ("import os\ncwd = os.getcwd()\nleft = os.listdir('.')\nif cwd != '/work':\n"
         "    left += [d for d in os.listdir('..') if d != os.path.basename(cwd)]\n"
         "print('clean' if not left else sorted(left))",
         {"input": "", "output": "clean"})


def py(code: str) -> str:
    return f"</think>\n```python\n{code}\n```"


def sandbox_processes() -> set[int]:
    """Host pids running as the sandbox user (65534)."""
    pids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if "\nUid:\t65534\t" in status.read_text():
                pids.add(int(status.parent.name))
        except OSError:
            pass  # exited while we looked
    return pids


@pytest.fixture(scope="module", autouse=True)
def warm_sandbox():
    """Start the one-worker sandbox first, so its own processes are in every 'before' count."""
    assert grade_code([py(BENIGN[0])], [[BENIGN[1]]], workers=1)[0].status == "pass"


def run_hostile(code: str, case: dict | None = None, **limits):
    case = case or {"input": "", "output": "42"}
    limits = {"time_limit": 1.0, "memory_mb": 512, "workers": 1, **limits}
    limits["time_limit"] = [limits["time_limit"], 10.0, 10.0]  # the bystanders get a generous clock
    before = len(sandbox_processes())
    grades = grade_code([py(code), py(BENIGN[0]), py(PROBE[0])], [[case], [BENIGN[1]], [PROBE[1]]], **limits)
    after = len(sandbox_processes())
    hostile, benign, probe = grades
    assert hostile.status in CODE_STATUSES and hostile.status != "pass" and hostile.reward == 0.0, hostile
    assert benign.status == "pass", benign
    assert probe.status == "pass", probe  # the hostile program's work dir and files are gone
    assert after <= before, f"{after - before} sandbox processes outlived the call"
    return hostile


def test_fork_bomb():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert run_hostile(code).status == "timeout"


def test_orphaned_daemon_process_is_killed():
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        while True: time.sleep(0.01)\n    os._exit(0)\nprint(41)")
    assert run_hostile(code).status == "wrong"


def test_memory_bomb():
    grade = run_hostile("x = []\nwhile True:\n    x.append(bytearray(10 ** 7))", time_limit=5.0)
    assert grade.status == "memory"  # (a generous clock: filling 512 MB is slow on a busy box)


def test_infinite_loop():
    assert run_hostile("while True:\n    pass").status == "timeout"


def test_sleep_forever():
    assert run_hostile("import time\ntime.sleep(10 ** 6)").status == "timeout"


def test_ignoring_sigterm():
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)"
    assert run_hostile(code).status == "timeout"


def test_one_gigabyte_of_output():
    code = "import sys\nchunk = '4' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    grade = run_hostile(code, output_bytes=8 << 20)
    assert grade.status == "runtime_error" and "more than" in grade.detail


def test_writing_outside_the_work_dir(tmp_path):
    targets = ["/usr/evil", "/evil", "/tmp/rlspec-evil-" + MARK, str(tmp_path / "evil"), "/dev/shm/evil", "/dev/evil",
               "/root/evil", "/work/main/evil"]
    code = (f"wrote = []\nfor p in {targets!r}:\n    try:\n        open(p, 'w').write('x')\n        wrote.append(p)\n"
            "    except OSError:\n        pass\nprint(42 if wrote else 0)")
    assert run_hostile(code).status == "wrong"
    assert not any(Path(p).exists() for p in targets if not p.startswith("/dev/"))


def test_deleting_files_it_can_see(tmp_path):
    victim = Path("/tmp") / f"rlspec-victim-{MARK}"
    victim.write_text("keep me")
    try:
        code = ("import os\ngone = 0\n"
                f"for d in ['/usr/bin', '/usr/lib/python3.11', '/bin', '/tmp']:\n"
                "    try:\n        names = os.listdir(d)\n    except OSError:\n        continue\n"
                "    for n in names[:200]:\n        try:\n            os.unlink(os.path.join(d, n)); gone += 1\n"
                "        except OSError:\n            pass\n"
                f"try:\n    os.unlink({str(victim)!r}); gone += 1\nexcept OSError:\n    pass\n"
                "print(42 if gone else 0)")
        assert run_hostile(code).status == "wrong"
        assert victim.read_text() == "keep me" and Path("/usr/bin/python3.11").exists()
    finally:
        victim.unlink()


def test_reading_environment_secrets(monkeypatch):
    monkeypatch.setenv("RLSPEC_TEST_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    code = ("import os\nfound = [v for v in os.environ.values() if v.startswith('fake-secret')]\n"
            "for p in os.listdir('/proc'):\n    try:\n        found.append(open(f'/proc/{p}/environ').read())\n"
            "    except Exception:\n        pass\nprint(next((f for f in found if 'fake-secret' in f), 'none'))")
    grade = run_hostile(code, {"input": "", "output": SECRET})
    assert grade.status == "wrong"


def test_socket_to_a_local_listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hi')\nprint(42)"
        assert run_hostile(code).status == "runtime_error"
        with pytest.raises(socket.timeout):
            server.accept()  # nobody ever connected


def test_signalling_its_parent():
    """It prints the right answer only if it managed to kill, stop or terminate its parent."""
    code = ("import os, signal, time\nparent = os.getppid()\n"
            "for sig in (signal.SIGTERM, signal.SIGSTOP, signal.SIGKILL):\n    os.kill(parent, sig)\ntime.sleep(0.1)\n"
            "try:\n    state = open(f'/proc/{parent}/stat').read().split()[2]\nexcept OSError:\n    state = 'gone'\n"
            "print(42 if state in ('gone', 'T', 'Z') else 0)")
    assert run_hostile(code).status in ("wrong", "runtime_error")


def test_killing_every_process_it_can():
    """kill(-1) reaches nobody: not the worker (namespace init), not the host."""
    code = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\n    print(42)\nexcept OSError:\n    print(0)"
    assert run_hostile(code).status == "wrong"


def test_exit_after_a_partial_answer():
    code = "import os, sys\nprint(4, end='')\nsys.stdout.flush()\nos._exit(0)"
    grade = run_hostile(code)
    assert grade.status == "wrong" and "token 0 differs" in grade.detail  # it printed "4", not "42"


def test_ctypes_segfault():
    grade = run_hostile("import ctypes\nctypes.string_at(0)")
    assert grade.status == "runtime_error" and "SIGSEGV" in grade.detail


def test_deep_recursion():
    code = "import sys\nsys.setrecursionlimit(10 ** 9)\ndef f(n):\n    return f(n + 1) + 1\nprint(f(0))"
    assert run_hostile(code).status in ("runtime_error", "memory", "timeout")


def test_daemon_thread_outliving_main():
    code = ("import threading, time, sys\ndef late():\n    time.sleep(0.05)\n    print(2)\n    sys.stdout.flush()\n"
            "threading.Thread(target=late, daemon=True).start()\nprint(4, end='')")
    assert run_hostile(code).status == "wrong"


def test_reading_the_test_expectations():
    code = ("import os, sys, gc\nseen = []\n"
            "for p in os.listdir('/proc'):\n    for f in ('cmdline', 'environ'):\n        try:\n"
            "            seen.append(open(f'/proc/{p}/{f}', 'rb').read().decode('latin-1'))\n        except Exception:\n            pass\n"
            "for fd in range(64):\n    try:\n        os.lseek(fd, 0, 0); seen.append(os.read(fd, 1 << 20).decode('latin-1'))\n    except OSError:\n        pass\n"
            "for root in ('/work', '/tmp', '/dev/shm'):\n    for d, _, files in os.walk(root):\n        for f in files:\n"
            "            try:\n                seen.append(open(os.path.join(d, f), encoding='latin-1').read())\n            except OSError:\n                pass\n"
            "seen += [o for o in gc.get_objects() if isinstance(o, str)]\nframe = sys._getframe()\n"
            "while frame:\n    seen += [repr(v) for v in frame.f_locals.values()]\n    frame = frame.f_back\n"
            "hits = [s for s in seen if 'EXPECTED-' in s]\nprint(hits[0][hits[0].index('EXPECTED-'):][:17] if hits else 'none')")
    assert run_hostile(code, {"input": "", "output": MARK}).status == "wrong"


def test_reading_expectations_from_the_call_harness():
    code = ("import gc, sys\ndef f():\n    frame, seen = sys._getframe(), []\n    while frame:\n"
            "        seen += list(frame.f_locals.values()) + list(frame.f_globals.values())\n        frame = frame.f_back\n"
            "    seen += gc.get_objects()\n    return next((s for s in seen if isinstance(s, str) and s.startswith('EXPECTED-')), 'none')")
    assert run_hostile(code, {"fn_name": "f", "args": [], "expected": MARK}).status == "wrong"


def test_monkey_patching_stdout_to_fake_output():
    code = ("import sys, builtins\nclass Fake:\n    def write(self, s):\n        return len(s)\n    def flush(self):\n        pass\n"
            "sys.stdout = sys.__stdout__ = Fake()\nbuiltins.print = lambda *a, **k: None\nprint(42)")
    assert run_hostile(code).status == "wrong"


def test_return_value_that_equals_everything():
    code = ("class Anything:\n    def __eq__(self, other):\n        return True\n"
            "class Solution:\n    def f(self):\n        return Anything()")
    assert run_hostile(code, {"fn_name": "f", "args": [], "expected": [1, 2]}).status == "runtime_error"


def test_forging_the_harness_reply():
    """The program writes a fake "test done, all fine" to its harness socket, then keeps going."""
    code = ("import os, socket, time\nfor fd in range(3, 64):\n    try:\n        s = socket.socket(fileno=os.dup(fd))\n"
            "        s.send(b'garbage{')\n        s.send(b'{\"outcome\": \"ok\", \"threads\": 1}')\n    except OSError:\n        pass\n"
            "time.sleep(0.2)\nprint(42)")
    grade = run_hostile(code)
    assert grade.status in ("runtime_error", "wrong")  # answered before its output existed, or garbled


def test_closing_every_file_descriptor():
    """Breaking its own harness is the program's failure (runtime_error), not the sandbox's."""
    code = "import os\nprint(42, flush=True)\nos.closerange(0, 1024)"
    grade = run_hostile(code, {"input": "", "output": "41"})
    assert grade.status in ("runtime_error", "wrong")
    two_tests = grade_code([py(code)], [[{"input": "", "output": "42"}] * 2], workers=1)[0]
    assert two_tests.status == "runtime_error" and two_tests.tests_passed <= 1


def _descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_finally_the_grader_still_works_and_closing_leaves_no_process():
    """Last in this file (pytest keeps file order): the shared sandbox still grades after all the
    hostile programs above, and closing it ends every sandbox-user process we started."""
    assert grade_code([py(BENIGN[0])], [[BENIGN[1]]], workers=1)[0].status == "pass"
    close_all()
    assert not _descendants(os.getpid()) & sandbox_processes()
