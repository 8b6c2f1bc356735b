"""grade_code never raises for what a response contains, and its statuses say what happened."""

import os
import subprocess
from pathlib import Path

import pytest

from rlspec.runtime.reward import grade_code
from rlspec.runtime.reward.grade import CODE_STATUSES
from rlspec.runtime.reward.sandbox_worker import remove_tree

ANSWER = [{"input": "", "output": "42"}]


def py(code: str) -> str:
    return f"</think>\n```python\n{code}\n```"


@pytest.mark.parametrize("response", [
    None, 42, b"</think>```python\nprint(42)\n```", "", "\x00" * 1000, "</think>```python\n```",
    py("print(42)\x00"), py("print('\ud800')"), py("\ud800 = 1"), py("x = '" + "é" * 10_000 + "'\nprint(42"),
    py("(" * 500 + ")" * 500), py("[" * 100_000), py("def f(:\n" * 1000), py("print(42)") * 2000,
])
def test_malformed_responses_get_a_grade_never_an_exception(response):
    grade = grade_code([response, py("print(42)")], [ANSWER, ANSWER], workers=1)
    assert grade[0].status in CODE_STATUSES and grade[0].status != "sandbox_error", grade[0]
    assert grade[1].status == "pass"


@pytest.mark.parametrize("code", [
    "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00 42 \\x80')",  # not UTF-8, NUL bytes
    "import sys\nsys.stdout.write('\\x00' * (1 << 20))",
    "import sys\nsys.stdout.write('4' * (64 << 20))",  # more than the output cap
    "import sys\nsys.stderr.buffer.write(b'\\xff' * (8 << 20))",
    "import os\nos.write(1, bytes(range(256)) * 1000)",
])
def test_hostile_output_gets_a_grade(code):
    grade = grade_code([py(code)], [ANSWER], workers=1, output_bytes=8 << 20)[0]
    assert grade.status in ("wrong", "runtime_error"), grade


@pytest.mark.parametrize("body", [
    "frozenset({1})", "10 ** 5000", "'\\ud800'", "float('inf')", "(float('nan'),)", "tuple(range(10 ** 6))",
    "nest(300)", "nest(5000)", "{'\\x00set': [[1]]}", "{'\\x00bytes': 'zz'}", "[{'\\x00dict': 5}]",
])
def test_odd_return_values_get_a_grade(body):
    """Deep nesting, huge values, and dicts forging the type tags of the trip back."""
    case = [{"fn_name": "f", "args": [], "expected": [1]}]
    nest = "def nest(n):\n    v = []\n    for _ in range(n):\n        v = [v]\n    return v\n"
    grade = grade_code([py(f"{nest}def f():\n    return {body}")], [case], workers=1)[0]
    assert grade.status in ("wrong", "runtime_error"), grade


def test_a_program_that_sigkills_itself_is_killed_not_timed_out():
    code = "import os, signal\nprint(42, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    grade = grade_code([py(code)], [ANSWER], workers=1, time_limit=5.0)[0]
    assert grade.status == "killed" and "SIGKILL" in grade.detail and grade.elapsed < 2.0


@pytest.mark.parametrize("sig, status", [("SIGTERM", "killed"), ("SIGUSR1", "killed"),
                                         ("SIGSEGV", "runtime_error"), ("SIGABRT", "runtime_error")])
def test_other_signals_are_labelled_by_what_they_mean(sig, status):
    """Ended from outside (by itself here) is killed; a fault is a runtime error."""
    code = f"import os, signal, time\nsignal.signal(signal.{sig}, signal.SIG_DFL)\n" \
           f"os.kill(os.getpid(), signal.{sig})\ntime.sleep(1)\nprint(42)"
    assert grade_code([py(code)], [ANSWER], workers=1, time_limit=5.0)[0].status == status


def test_a_child_process_killed_by_its_parent_is_its_business():
    code = ("import os, signal, time\npid = os.fork()\nif pid == 0:\n    time.sleep(10)\n    os._exit(0)\n"
            "os.kill(pid, signal.SIGKILL)\nos.waitpid(pid, 0)\nprint(42)")
    assert grade_code([py(code)], [ANSWER], workers=1)[0].status == "pass"


def test_a_correct_program_that_builds_a_deep_directory_tree_passes_and_so_does_the_next():
    """1,000 nested dirs (and a 3,000-deep one, made unreadable on the way) must not crash the
    cleanup (Python's recursion limit) and fail the program that made them."""
    deep = ("import os\nfor i in range({n}):\n    os.mkdir('d')\n    os.chdir('d')\n    open('f', 'w').write('x')\n"
            "for i in range({n}):\n    os.chdir('..')\n    if i % 500 == 499:\n        os.chmod('d', 0)\nprint(42)")
    grades = grade_code([py(deep.format(n=1000)), py(deep.format(n=3000)), py("print(6 * 7)")], [ANSWER] * 3,
                        workers=1, time_limit=10.0)
    assert [g.status for g in grades] == ["pass"] * 3


def test_remove_tree_needs_no_recursion(tmp_path):
    """The fallback modes' cleanup (per-program dirs on the host), on a 2,000-level tree with
    unreadable and unwritable dirs, files and symlinks (the link target must survive)."""
    keep = tmp_path / "keep"
    keep.write_text("x")
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for i in range(2000):
            os.mkdir("d", dir_fd=fd)
            os.symlink(keep, "link", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            if i % 500 == 499:
                os.chmod(fd, 0)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    try:
        remove_tree(str(top))
        assert not top.exists() and Path(keep).read_text() == "x"
    finally:  # never leave a tree that deep behind: pytest's own cleanup recurses
        subprocess.run(["rm", "-rf", str(top)], check=False)
