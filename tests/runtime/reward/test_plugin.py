"""User reward functions (`reward: {python: file.py:function}`): real modules, real worker processes.

Each test writes a reward module to a temp folder and grades through `scoring.score`, the entry
point training, filters and benchmarks use: a float, a veRL dict, a TRL list, a function that raises,
one that hangs (killed at its timeout; the batch goes on), weighted terms, and proof that the
function never runs in the calling process. The last tests start a job in a subprocess, SIGKILL it (or
its host) and check that no host or worker outlives it.
"""

from __future__ import annotations

import ast
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlspec.compiler.hashing import file_sha256
from rlspec.compiler.jobs import Grading, PythonReward, RewardFn
from rlspec.compiler.spec import AnswerExtraction, RewardSettings
from rlspec.runtime import scoring

REWARDS = '''
import os, time

CALLS = []

def exact(data_source, solution_str, ground_truth, extra_info=None):
    CALLS.append(os.getpid())
    return 1.0 if solution_str.strip() == str(ground_truth) else 0.0

def as_dict(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": 0.5 if ground_truth in solution_str else 0.0, "source": data_source, "idx": extra_info.get("index")}

def boom(data_source, solution_str, ground_truth, extra_info=None):
    if "bad" in solution_str:
        raise RuntimeError("cannot grade " + solution_str)
    return 1.0

def hang(data_source, solution_str, ground_truth, extra_info=None):
    if "slow" in solution_str:
        while True:
            time.sleep(0.05)
    return 1.0

def pid(data_source, solution_str, ground_truth, extra_info=None):
    return float(os.getpid())

def wrong_type(data_source, solution_str, ground_truth, extra_info=None):
    return "yes"

def trl_len(prompts, completions, **columns):
    return [float(len(c[0]["content"]) if isinstance(c, list) else len(c)) + 100 * len(columns["answer"][0])
            for c in completions]

def printer(data_source, solution_str, ground_truth, extra_info=None):
    print("noise on stdout that must not break the answers")
    return 1.0
'''


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rewards") / "rewards.py"
    path.write_text(REWARDS)
    return path


def grading(path: Path, *terms: tuple[str, str, float], timeout: float = 10.0, domain: str = "qa") -> Grading:
    fns = [RewardFn(name=name, grader=None, weight=weight,
                    python=PythonReward(path=path.name, function=name, sha256=file_sha256(path), signature=sig,
                                        timeout_s=timeout))
           for name, sig, weight in [(t[0], t[1], t[2]) for t in terms]]
    return Grading(reward=RewardSettings(), answer=AnswerExtraction(), rewards={domain: fns})


def records(*answers, **meta):
    return [{"id": str(i), "prompt": f"q{i}", "answer": a, "domain": "qa", "meta": dict(meta)}
            for i, a in enumerate(answers)]


def test_float_reward(reward_file):
    grades = scoring.score(records("5", "7"), ["5", "8"], grading(reward_file, ("exact", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=2)
    assert [g.reward for g in grades] == [1.0, 0.0]
    assert {g.status for g in grades} == {"scored"}


def test_dict_reward_and_extra_info(reward_file):
    recs = records("5", "7", data_source="openai/gsm8k", extra_info={"index": 3})
    grades = scoring.score(recs, ["it is 5", "nope"], grading(reward_file, ("as_dict", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert [g.reward for g in grades] == [0.5, 0.0]
    assert "source='openai/gsm8k'" in grades[0].detail and "idx=3" in grades[0].detail


def test_raising_reward_is_an_error_not_a_crash(reward_file):
    grades = scoring.score(records("a", "b", "c"), ["ok", "bad one", "fine"], grading(reward_file, ("boom", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert [g.reward for g in grades] == [1.0, 0.0, 1.0]
    assert grades[1].status == "error" and grades[1].detail.startswith("raised") and "cannot grade" in grades[1].detail


def test_hanging_reward_times_out_and_the_batch_goes_on(reward_file):
    g = grading(reward_file, ("hang", "verl", 1.0), timeout=1.0)
    grades = scoring.score(records("a", "b", "c"), ["x", "slow", "y"], g, spec_dir=str(reward_file.parent), workers=1)
    assert [x.reward for x in grades] == [1.0, 0.0, 1.0]
    assert grades[1].status == "error" and grades[1].detail.startswith("timeout")
    # the worker that hung was replaced: the same host grades the next batch
    again = scoring.score(records("a"), ["z"], g, spec_dir=str(reward_file.parent), workers=1)
    assert again[0].reward == 1.0


def test_not_a_number_is_an_error(reward_file):
    grades = scoring.score(records("a"), ["x"], grading(reward_file, ("wrong_type", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert grades[0].status == "error" and "return a float" in grades[0].detail


def test_trl_signature_gets_completions_and_columns(reward_file):
    grades = scoring.score(records("ab"), ["xyz"], grading(reward_file, ("trl_len", "trl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert grades[0].reward == 3 + 200  # len("xyz") + 100 * len(answer)
    msgs = [{**records("ab")[0], "messages": [{"role": "user", "content": "q"}]}]
    grades = scoring.score(msgs, ["xyzw"], grading(reward_file, ("trl_len", "trl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert grades[0].reward == 4 + 200  # a conversational prompt gets the completion as an assistant message


def test_weighted_terms_sum_and_keep_the_error_status(reward_file):
    g = grading(reward_file, ("exact", "verl", 1.0), ("boom", "verl", 0.25))
    grades = scoring.score(records("5", "5"), ["5", "bad"], g, spec_dir=str(reward_file.parent), workers=1)
    assert grades[0].reward == 1.25 and grades[0].status == "scored"
    assert grades[1].reward == 0.0 and grades[1].status == "error"
    assert "exact=" in grades[1].detail and "boom=" in grades[1].detail


def test_prints_do_not_corrupt_the_answers(reward_file):
    grades = scoring.score(records("a", "b"), ["x", "y"], grading(reward_file, ("printer", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=1)
    assert [g.reward for g in grades] == [1.0, 1.0]


def test_reward_runs_in_another_process(reward_file):
    """The runtime check: the function reports its pid, which is never the caller's."""
    grades = scoring.score(records("a", "b"), ["x", "y"], grading(reward_file, ("pid", "verl", 1.0)),
                           spec_dir=str(reward_file.parent), workers=2)
    pids = {int(g.reward) for g in grades}
    assert os.getpid() not in pids and all(p > 0 for p in pids)


def test_no_runtime_module_imports_the_reward_in_process():
    """The static check: the only place that imports a reward file is `plugin.load_function`, and
    only the host's workers call it (`call` <- KillPool in `_serve`)."""
    root = Path(scoring.__file__).parent
    users = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "spec_from_file_location", "load_function", "exec_module", "run_path"):
                users.append((path.relative_to(root).as_posix(), getattr(node.func, "attr", getattr(node.func, "id", ""))))
    assert sorted(set(users)) == [("reward/plugin.py", "exec_module"), ("reward/plugin.py", "load_function"),
                                  ("reward/plugin.py", "spec_from_file_location")]
    plugin = ast.parse((root / "reward" / "plugin.py").read_text())
    callers = {fn.name for fn in ast.walk(plugin) if isinstance(fn, ast.FunctionDef)
               for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "load_function"}
    assert callers == {"call", "_warm"}  # both run only inside KillPool workers of the host


def test_edited_reward_file_is_refused(tmp_path):
    path = tmp_path / "r.py"
    path.write_text("def f(data_source, solution_str, ground_truth, extra_info=None):\n    return 1.0\n")
    g = grading(path, ("f", "verl", 1.0))
    path.write_text("def f(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.5\n")
    grades = scoring.score(records("a"), ["x"], g, spec_dir=str(tmp_path), workers=1)
    assert grades[0].status == "error" and "changed since the spec was compiled" in grades[0].detail


def test_unknown_domain_without_reward_says_what_to_do():
    g = Grading(reward=RewardSettings(), answer=AnswerExtraction(), rewards={})
    with pytest.raises(ValueError, match="give the datasets of that domain a `reward` block"):
        scoring.score(records("a"), ["x"], g)


def test_the_shipped_example_rewards_as_compiled():
    """specs/examples/custom-reward.yaml, compiled: 1.0 x correct + 0.2 x formatted, in workers."""
    from rlspec.compiler.plan import build_plan
    from rlspec.compiler.validate import check_file
    spec = Path(__file__).resolve().parents[3] / "specs" / "examples" / "custom-reward.yaml"
    plan = build_plan(check_file(spec).cells, spec.parent)
    [train] = [j for j in plan.jobs.values() if j.kind == "train"]
    record = {"id": "0", "prompt": "What is 2 + 3?", "answer": "5", "domain": "arith",
              "meta": {"data_source": "example/arith", "extra_info": {"index": 0}}}
    responses = ["2 + 3 = 5</think>\n\\boxed{5}", "2 + 3 = 6</think>\n\\boxed{6}", "5"]
    grades = scoring.score([record] * 3, responses, train.config.grading, spec_dir=str(spec.parent), workers=1)
    assert [g.reward for g in grades] == [1.2, 0.2, 0.0]
    assert grades[0].status == "scored" and "boxed=True" in grades[0].detail


# ------------------------------------------------------------------------------------------
# hosts and their workers die with the job that started them
# ------------------------------------------------------------------------------------------

ORPHAN_REWARD = '''
import os, time
from pathlib import Path

def f(data_source, solution_str, ground_truth, extra_info=None):
    if solution_str.startswith("hang:"):  # say we are busy, then stay busy
        Path(solution_str[5:]).write_text(str(os.getpid()))
        time.sleep(600)
    return float(os.getpid())
'''

# The job ("owner"): grades one item so that a host and a worker exist, prints their pids, then
# stays alive in the state `mode` names until the test kills it.
OWNER = '''
import os, sys, threading, time
from pathlib import Path
from rlspec.compiler.hashing import file_sha256
from rlspec.compiler.jobs import PythonReward
from rlspec.runtime.reward import plugin

mode, reward, mark = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
fn = PythonReward(path=str(reward), function="f", sha256=file_sha256(reward), signature="verl", timeout_s=120.0)

def grade(response):
    [g] = plugin.grade_python(fn, [plugin.item_for({"id": "0", "prompt": "q", "answer": "a"}, response, "verl")],
                              workers=1)
    [host] = plugin._HOSTS.values()
    return host.proc.pid, g

if mode == "thread":  # the host is created by a thread that ends before the job dies
    first = []
    t = threading.Thread(target=lambda: first.append(grade("x")))
    t.start()
    t.join()
    time.sleep(1.0)  # a host that died with its creating thread would be gone by now
    (host, g), (again, _) = first[0], grade("x")
    print("host", host, "again", again, flush=True)
else:
    host, g = grade("x")
print("host", host, "worker", int(g.reward), flush=True)
if mode == "fd":  # a process forked from the job keeps the host's stdin open; the host is idle
    sibling = os.fork()
    if sibling == 0:
        time.sleep(600)
        os._exit(0)
    print("sibling", sibling, flush=True)
    time.sleep(600)
else:  # the host is busy: its worker runs an item for up to 120 s
    grade("hang:" + mark)
'''


def _alive(pid: int) -> bool:
    """Running, as /proc says; a zombie has exited (only its parent's wait is missing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.add(int(stat.parent.name))
    return kids


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    """The pids still running after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


class _Owner:
    """A job in its own session (so that cleanup can kill all it started, should a test fail)."""

    def __init__(self, tmp_path: Path, mode: str):
        reward, script, self.mark, self.log = (tmp_path / "reward.py", tmp_path / "owner.py", tmp_path / "busy",
                                               tmp_path / "owner.log")
        reward.write_text(ORPHAN_REWARD)
        script.write_text(OWNER)
        with self.log.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), mode, str(reward), str(self.mark)],
                                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.out = b""

    def pid_after(self, word: str, timeout: float = 120.0) -> int:
        """The number the owner prints after `word`; fails with its log if it never does."""
        deadline = time.monotonic() + timeout
        while word.encode() not in self.out.split() or not self.out.endswith(b"\n"):
            assert time.monotonic() < deadline and self.proc.poll() is None, (
                f"the owner never printed {word!r} (exit {self.proc.poll()}); stdout {self.out!r}; "
                f"log:\n{self.log.read_text()}")
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                self.out += os.read(self.proc.stdout.fileno(), 4096)
        words = self.out.decode().split()
        return int(words[words.index(word) + 1])

    def busy_worker(self, timeout: float = 60.0) -> int:
        """The pid of the worker once it runs the slow item (it writes the mark file then)."""
        deadline = time.monotonic() + timeout
        while not (self.mark.exists() and self.mark.read_text()):
            assert time.monotonic() < deadline, f"the worker never started the slow item; log:\n{self.log.read_text()}"
            time.sleep(0.05)
        return int(self.mark.read_text())

    def cleanup(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # what a broken host would leave: host, workers, sibling
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdout.close()


@pytest.mark.parametrize("mode", ["busy", "fd", "thread"])
def test_host_and_workers_die_with_a_killed_job(tmp_path, mode):
    """SIGKILL the job: its host and the host's worker exit within seconds, whether the host was busy
    grading (it reads no EOF then), idle with its stdin held open by a process forked from the job (no
    EOF comes at all), or created by a thread that had ended (PDEATHSIG alone would tie the host to
    that thread, and kill it when the thread ends)."""
    owner = _Owner(tmp_path, mode)
    try:
        host, worker = owner.pid_after("host"), owner.pid_after("worker")
        if mode == "fd":
            owner.pid_after("sibling")  # forked: it holds the host's stdin
        else:
            assert owner.busy_worker() == worker
        if mode == "thread":
            assert owner.pid_after("again") == host, "the host died when the thread that created it ended"
        pids = {host} | _children(host)
        assert worker in pids and all(_alive(p) for p in pids)
        os.kill(owner.proc.pid, signal.SIGKILL)
        owner.proc.wait()
        left = _wait_gone(pids, 5.0)
        assert not left, f"processes {sorted(left)} of the killed job's reward host are still running"
    finally:
        owner.cleanup()


def test_workers_die_with_a_killed_host(tmp_path):
    """SIGKILL the host itself while its worker is busy: the worker exits within seconds."""
    owner = _Owner(tmp_path, "busy")
    try:
        host = owner.pid_after("host")
        worker = owner.busy_worker()
        workers = _children(host)
        assert worker in workers
        os.kill(host, signal.SIGKILL)
        left = _wait_gone(workers, 5.0)
        assert not left, f"workers {sorted(left)} outlived their SIGKILLed host"
    finally:
        owner.cleanup()
