"""Code grader: test formats, comparison rules, limits and statuses, on the real sandbox."""

import os
import socket

import pytest

from rlspec.runtime.reward import grade_code
from rlspec.runtime.reward.sandbox import close_all, get_sandbox


def py(code: str) -> str:
    return f"<think>```python\nprint('draft')\n```</think>\nHere it is:\n```python\n{code}\n```"


DOUBLE = [{"input": "3\n", "output": "6\n"}, {"input": "21", "output": "42"}]


def test_stdin_stdout_program_passes_and_order_is_kept():
    grades = grade_code([py("print(2 * int(input()))"), py("print(int(input()))"), "</think> no code"], [DOUBLE] * 3)
    assert [g.status for g in grades] == ["pass", "wrong", "no_code"]
    assert grades[0].reward == 1.0 and grades[0].tests_passed == 2
    assert grades[1].failed_test == 0 and grades[1].reward == 0.0


def test_whitespace_insensitive_tokens_and_float_tolerance():
    """The tolerance is on by default (1e-6); None compares numbers exactly, as decimals."""
    tests = [[{"input": "", "output": "1 2\n3"}]]
    assert grade_code([py("print('1   2 3  ')")], tests)[0].status == "pass"
    floats = [[{"input": "", "output": "0.3333333"}]]
    assert grade_code([py("print(1/3)")], floats)[0].status == "pass"
    assert grade_code([py("print(1/3)")], floats, float_tolerance=None)[0].status == "wrong"
    assert grade_code([py("print(1/3)")], floats, float_tolerance=1e-9)[0].status == "wrong"
    as_decimals = [[{"input": "", "output": "1 0.50 -0"}]]
    assert grade_code([py("print('1.0 .5 0')")], as_decimals, float_tolerance=None)[0].status == "pass"


def test_function_call_solution_class_and_top_level_function():
    cases = [{"fn_name": "twoSum", "args": [[2, 7, 11, 15], 9], "expected": [0, 1]},
             {"fn_name": "twoSum", "args": "[3,2,4]\n6", "expected": [1, 2]}]  # LiveCodeBench string form
    solution = """
class Solution:
    def twoSum(self, nums: List[int], target: int) -> List[int]:
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
"""
    top_level = "def twoSum(nums, target):\n    return [0, 1]"
    grades = grade_code([py(solution), py(top_level)], [cases, cases])
    assert grades[0].status == "pass"
    assert grades[1].status == "wrong" and grades[1].failed_test == 1 and grades[1].tests_passed == 1


def test_call_results_compare_as_python_values():
    """Python's ==, as LiveCodeBench's grader: 1 == True; a top-level tuple counts as the list
    expected, a nested one does not ((1, 2) != [1, 2])."""
    cases = [{"fn_name": "f", "args": [], "expected": [[1, 2], True, 0.5]}]
    assert grade_code([py("def f():\n    return ([1, 2], True, 0.5)")], [cases])[0].status == "pass"
    assert grade_code([py("def f():\n    return [[1, 2], 1, 0.5]")], [cases])[0].status == "pass"  # 1 == True
    assert grade_code([py("def f():\n    return ((1, 2), True, 0.5)")], [cases])[0].status == "wrong"


def test_tests_of_one_program_do_not_share_stdin_or_stdout():
    """Tests of a program share its process: each still gets exactly its own input and output."""
    tests = [[{"input": f"{i}\n{i + 1}\n", "output": str(2 * i + 1)} for i in range(20)]]
    code = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))"
    assert grade_code([py(code)], tests)[0].status == "pass"
    buffered = "import sys\nsys.stdout.write(str(sum(map(int, open(0).read().split()))))"  # no newline, fd 0 reopened
    assert grade_code([py(buffered)], tests)[0].status == "pass"


def test_files_a_test_opens_on_stdin_or_stdout_do_not_close_the_next_tests():
    """`open(0)` / `sys.stdout = open(1, "w")` own fds 0/1: freed late, they would close a later
    test's stdin or stdout while it runs."""
    tests = [[{"input": f"{i}\n", "output": str(2 * i)} for i in range(40)]]
    held = ("import sys\ninput = open(0).readline\nout = open(1, 'w')\ndef f(x):\n    return 2 * x\n"
            "out.write(str(f(int(input()))))\nout.flush()\ncycle = []\ncycle.append(cycle)")
    swapped = "import sys\nsys.stdout = open(1, 'w')\nprint(2 * int(open(0).read()))"
    assert [g.status for g in grade_code([py(held), py(swapped)], tests * 2)] == ["pass", "pass"]


def test_output_written_by_atexit_handlers_counts():
    code = "import atexit, sys\nout = []\natexit.register(lambda: sys.stdout.write(' '.join(out)))\nout.append(input())"
    tests = [[{"input": "7", "output": "7"}, {"input": "8", "output": "8"}]]
    assert grade_code([py(code)], tests)[0].status == "pass"


def test_stop_at_first_failure_or_run_everything():
    tests = [[{"input": str(i), "output": str(2 * i if i != 1 else -1)} for i in range(4)]]
    stop = grade_code([py("print(2 * int(input()))")], tests)[0]
    assert (stop.failed_test, stop.tests_passed) == (1, 1)
    full = grade_code([py("print(2 * int(input()))")], tests, stop_on_failure=False)[0]
    assert (full.failed_test, full.tests_passed, full.status) == (1, 3, "wrong")


def test_runtime_error_syntax_error_and_exit_codes():
    grades = grade_code([py("raise ValueError('boom')"), py("def f(:"), py("import sys; print(42); sys.exit(0)"),
                         py("import sys; print(42); sys.exit(3)"), py("print(42)\nexit()\nprint(43)"), py("print(42); quit(0)")],
                        [[{"input": "", "output": "42"}]] * 6)
    assert [g.status for g in grades] == ["runtime_error", "runtime_error", "pass", "runtime_error", "pass", "pass"]
    assert "ValueError: boom" in grades[0].detail and "SyntaxError" in grades[1].detail


def test_per_test_and_total_time_limits():
    slow = py("import time; time.sleep(0.3); print(1)")
    tests = [[{"input": "", "output": "1"}] * 3]
    assert grade_code([slow], tests, time_limit=1.0)[0].status == "pass"
    assert grade_code([slow], tests, time_limit=0.1)[0].status == "timeout"
    over_total = grade_code([slow], tests, time_limit=1.0, total_time_limit=0.5)[0]
    assert over_total.status == "timeout" and over_total.tests_passed <= 1  # 0 only on a very busy box
    per_problem = grade_code([slow, slow], tests * 2, time_limit=[0.1, 1.0])
    assert [g.status for g in per_problem] == ["timeout", "pass"]


def test_memory_limit_gives_memory_status():
    grade = grade_code([py("x = bytearray(600 << 20)")], [[{"input": "", "output": ""}]], memory_mb=256)[0]
    assert grade.status == "memory"


def test_realistic_programs_pass():
    recursion = "import sys\nsys.setrecursionlimit(10**6)\ndef f(n): return 0 if n == 0 else f(n - 1) + 1\nprint(f(100000))"
    big_input = "import sys\ndata = sys.stdin.buffer.read().split()\nprint(sum(map(int, data)))"
    n = 200_000
    grades = grade_code([py(recursion), py(big_input)],
                        [[{"input": "", "output": "100000"}], [{"input": " ".join(["7"] * n), "output": str(7 * n)}]])
    assert [g.status for g in grades] == ["pass", "pass"]


def test_empty_test_list_is_never_a_pass():
    assert grade_code([py("print(1)")], [[]])[0].status == "sandbox_error"


def test_unknown_case_shape_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="one list of cases per response"):
        grade_code([py("print(1)")], [])
    with pytest.raises(ValueError, match="needs 'input'"):
        grade_code([py("print(1)")], [[{"stdin": "1"}]])


def test_sandbox_uses_bubblewrap_here():
    """This machine allows user namespaces, so the default must not fall back."""
    assert get_sandbox(1).isolation == "bwrap"


def _fallback_grades(isolation: str, port: int):
    programs = [py("print(2 * int(input()))"), py("import os\nprint(os.getuid())"),
                py(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint(42)"),
                py("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")]
    tests = [[{"input": "4", "output": "8"}], [{"input": "", "output": "65534"}], [{"input": "", "output": "42"}],
             [{"input": "", "output": ""}]]
    return grade_code(programs, tests, isolation=isolation, workers=1, time_limit=1.0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallbacks drop to uid 65534 only when started as root")
@pytest.mark.parametrize("isolation", ["unshare", "none"])
def test_fallback_isolation_modes_do_what_the_docs_say(isolation):
    """Without bubblewrap: "unshare" still blocks the network; "none" does not (documented)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        grades = _fallback_grades(isolation, server.getsockname()[1])
    assert [g.status for g in grades[:2]] == ["pass", "pass"]  # works, and runs as nobody
    assert grades[2].status == ("runtime_error" if isolation == "unshare" else "pass")
    assert grades[3].status == "timeout"  # the fork bomb is contained by RLIMIT_NPROC + the kill


def test_a_forked_child_process_gets_its_own_sandbox():
    """Trainers fork (data loaders, pools): the child must not wait on its parent's workers."""
    assert grade_code([py("print(1)")], [[{"input": "", "output": "1"}]])[0].status == "pass"
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = grade_code([py("print(2)")], [[{"input": "", "output": "2"}]], workers=1)[0].status == "pass"
            close_all()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
