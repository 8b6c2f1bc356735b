"""Rollout samples (`tracking.samples`): which responses are chosen, the file's schema, and a
killed job's resume.

The first tests drive `rlspec.runtime.grpo.samples` directly with stand-in responses and grades
(objects with the engine's and the grader's attribute names; one process, so the gather is the
world-of-one path). The last runs the real train job on the tiny model, kills it mid-step and
reruns it: the file it leaves is the one the report's sample browser reads.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from conftest import ENV, compile_and_curate, job_dir, run_train, spec_text
from rlspec.compiler.spec import Samples
from rlspec.runtime.grpo.samples import (COLUMNS, OUTCOMES, Sample, SampleLog, choose, outcome, read_samples,
                                         sample_key, shortlist)

SCHEMA = {"stage": str, "step": int, "prompt": str, "response": str, "reward": float, "accuracy": float,
          "outcome": str, "status": str, "length": int, "domain": str}


def candidates(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(key=sample_key(7, 3, i // 4, i % 4), index=i // 4, stage="s1", step=3, prompt="", response=f"r{i}",
                   reward=1.0, accuracy=1.0, outcome=rng.choice(OUTCOMES[:3]) if i % 9 else "error", status="x",
                   length=5, domain="math") for i in range(n)]


@pytest.mark.parametrize("ranks", [2, 3, 5, 8])
def test_the_choice_is_the_same_for_any_rank_split(ranks):
    every = candidates(64)
    whole = choose(every, 10)
    shares = [every[len(every) * r // ranks: len(every) * (r + 1) // ranks] for r in range(ranks)]
    assert choose([c for part in shares for c in shortlist(part, 10)], 10) == whole
    assert choose(list(reversed(every)), 10) == whole  # nor does the order the responses arrive in


def test_the_choice_mixes_outcomes_and_is_seeded():
    every = candidates(64)
    chosen = choose(every, 8)
    assert {c.outcome for c in chosen} == set(OUTCOMES)
    assert sorted(sum(c.outcome == o for c in chosen) for o in OUTCOMES) == [2, 2, 2, 2]
    only_wrong = [c for c in every if c.outcome == "wrong"]
    assert len(choose(only_wrong, 8)) == 8  # one outcome: the count still comes from it
    assert len(choose(every[:3], 8)) == 3  # fewer responses than the count: all of them
    assert sample_key(7, 3, 0, 0) != sample_key(8, 3, 0, 0) != sample_key(7, 4, 0, 0)


@pytest.mark.parametrize("acc,status,finish,want", [
    (1.0, "correct", "stop", "correct"), (0.0, "wrong", "stop", "wrong"), (0.5, "scored", "stop", "wrong"),
    (0.0, "no_answer", "length", "truncated"), (0.0, "error", "length", "error"), (0.0, "sandbox_error", "stop", "error"),
])
def test_outcomes(acc, status, finish, want):
    assert outcome(acc, status, finish) == want


class Tables:
    """Stand-in for the Tracker: records what the sample log hands W&B."""

    def __init__(self):
        self.logged = []

    def log_table(self, key, columns, rows, step):
        self.logged.append((key, columns, rows, step))


def test_the_log_writes_due_steps_and_a_resume_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "samples.jsonl"
    tables = Tables()
    log = SampleLog(path, Samples(every=2, count=3), stage="s1", seed=1, main=True, prompt_text=lambda i: f"p{i}",
                    domain_of=lambda i: "math", tracker=tables)
    for step in (1, 2, 3, 4):
        responses = [SimpleNamespace(text=f"{step}-{n}", token_ids=[1] * n, finish_reason="stop") for n in range(4)]
        grades = [SimpleNamespace(reward=float(n % 2), status="correct" if n % 2 else "wrong") for n in range(4)]
        log.offer(step, [10, 11], responses, grades, [2.0 * g.reward - 1 for g in grades])
        log.write(step)
    rows = read_samples(path)
    assert [r["step"] for r in rows] == [2, 2, 2, 4, 4, 4]
    assert all(list(r) == COLUMNS and all(isinstance(r[k], t) for k, t in SCHEMA.items()) for r in rows)
    assert all(r["reward"] == 2 * r["accuracy"] - 1 and r["prompt"] in ("p10", "p11") for r in rows)
    assert [(k, s, len(rs)) for k, _, rs, s in tables.logged] == [("samples", 2, 3), ("samples", 4, 3)]
    with open(path, "a") as fh:
        fh.write('{"stage": "s1", "step": 4, "prompt": "p1')  # a job killed mid-write
    assert len(read_samples(path)) == 6  # the torn line is not a sample
    log.truncate_after(2)
    assert path.read_text().endswith("\n") and [r["step"] for r in read_samples(path)] == [2, 2, 2]


# The same 4 prompts x 4 responses on 1 rank or on 2 gloo ranks (prompts split 2 + 2, as the trainer
# splits a step's prompts): the file must not differ.
SPLIT = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from types import SimpleNamespace
    from rlspec.compiler.spec import Samples
    from rlspec.runtime.grpo import distributed
    from rlspec.runtime.grpo.samples import SampleLog
    world = int(sys.argv[2])
    d = distributed.init(False, timeout_minutes=2) if world > 1 else SimpleNamespace(rank=0, main=True)
    log = SampleLog(Path(sys.argv[1]), Samples(every=1, count=6), stage="s1", seed=3, main=d.main,
                    prompt_text=lambda i: f"prompt {i}", domain_of=lambda i: "math",
                    tracker=SimpleNamespace(log_table=lambda *a: None))
    mine = [0, 1, 2, 3][2 * d.rank: 2 * d.rank + 4 // world]
    responses = [SimpleNamespace(text=f"{i}/{j}", token_ids=[0] * (i + j + 1), finish_reason="length" if j == 3 else "stop")
                 for i in mine for j in range(4)]
    grades = [SimpleNamespace(reward=float((i + j) % 2), status="error" if (i, j) == (2, 0) else "ok")
              for i in mine for j in range(4)]
    log.offer(1, mine, responses, grades, [g.reward for g in grades])
    log.write(1)
    if world > 1:
        distributed.shutdown()  # as the train program ends: no gloo teardown race at exit
    """)


def test_two_gloo_ranks_write_what_one_rank_writes(tmp_path):
    prog = tmp_path / "split.py"
    prog.write_text(SPLIT)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(prog), str(one), "1"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), str(prog), str(two), "2"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_samples(one)
    assert len(rows) == 6 and {r["outcome"] for r in rows} == set(OUTCOMES)
    assert read_samples(two) == rows


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_train_job_writes_samples_and_a_resume_rewrites_none_twice(tmp_path, tiny_model_dir):
    """steps 4, checkpoint every 2, samples every step; killed inside step 4 (lines of step 3 are past
    the checkpoint), a torn line added, then rerun. ±1 rewards show that `reward` is the training
    reward and `accuracy` the grader's score."""
    text = spec_text(tiny_model_dir, steps=4, every=2,
                     extra_algorithm="reward_values: {correct: 1.0, incorrect: -1.0}").replace(
        "tracking: {mode: offline}", "tracking: {mode: offline, samples: {every: 1, count: 5}}")
    build, job = compile_and_curate(tmp_path, text)
    killed = run_train(build, job, {"RLSPEC_FAULT": "train:step:4"})
    assert killed.returncode != 0
    path = job_dir(build, job) / "samples.jsonl"
    before = read_samples(path)
    assert [r["step"] for r in before] == [1] * 5 + [2] * 5 + [3] * 5
    with open(path, "a") as fh:
        fh.write('{"stage": "s1", "step": 4, "prom')
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    assert path.read_text().endswith("}\n")
    rows = read_samples(path)
    assert [r["step"] for r in rows] == [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5
    assert rows[:15] == before  # the resumed step 3 chose and sampled the same responses
    for r in rows:
        assert list(r) == COLUMNS and all(isinstance(r[k], t) for k, t in SCHEMA.items()), r
        assert r["stage"] == "s1" and r["domain"] == "math" and "<|im_start|>user" in r["prompt"]
        assert r["outcome"] in OUTCOMES and 0 < r["length"] <= 16
        assert r["reward"] == pytest.approx(2 * r["accuracy"] - 1)
        failed = r["status"] in ("error", "sandbox_error")
        assert (r["outcome"] == "error") == failed
        assert r["outcome"] != "truncated" or r["length"] == 16  # cut off at max_response_tokens
        assert r["outcome"] != "correct" or r["accuracy"] >= 1.0
        assert r["outcome"] != "wrong" or r["accuracy"] < 1.0
    metrics = [json.loads(line) for line in (job_dir(build, job) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
