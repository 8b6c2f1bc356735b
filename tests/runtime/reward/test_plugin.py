"""User reward functions (`reward: {python: file.py:function}`): real modules, real worker processes.

Each test writes a reward module to a temp folder and grades through `scoring.score`, the entry
point training, filters and benchmarks use: a float, a veRL dict, a TRL list, a function that raises,
one that hangs (killed at its timeout; the batch goes on), weighted terms, and proof that the
function never runs in the calling process.
"""

from __future__ import annotations

import ast
import os
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
