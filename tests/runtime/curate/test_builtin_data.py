"""The builtin generators: deterministic, held-out test split, varied, short, and correct.

Correctness is checked with the real graders: every worked math answer is graded correct by the
math reward, every reference program passes its own tests in the real sandbox, and no trivially
wrong program passes them (what the `weak_tests` filter would drop).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from rlspec.runtime.data.builtin import BuiltinError, generate, parse_uri
from rlspec.runtime.data.ngrams import NgramIndex
from rlspec.compiler.jobs import Grading
from rlspec.compiler.spec import AnswerExtraction, RewardSettings
from rlspec.runtime.scoring import score

GRADING = Grading(reward=RewardSettings(code_memory_mb=512), answer=AnswerExtraction(), rewards={})


@pytest.mark.parametrize("kind", ["math", "code"])
def test_same_uri_same_records_and_seed_changes_them(kind):
    uri = f"builtin://{kind}?n=50&difficulty=2&seed=3"
    assert generate(uri) == generate(uri)
    assert [r["prompt"] for r in generate(uri)] != [r["prompt"] for r in generate(uri.replace("seed=3", "seed=4"))]


@pytest.mark.parametrize("kind,difficulty", [("math", 2), ("code", 1), ("code", 3)])
def test_test_split_shares_no_problem_with_train(kind, difficulty):
    train = generate(f"builtin://{kind}?n=2000&difficulty={difficulty}")
    test = generate(f"builtin://{kind}?n=200&difficulty={difficulty}&split=test&seed=0")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}


def test_math_held_out_benchmark_does_not_decontaminate_whole_templates():
    """Fixed wording is short, so 9-grams only match real duplicates (there are none by construction)."""
    train = generate("builtin://math?n=3000&difficulty=3")
    test = generate("builtin://math?n=300&difficulty=3&split=test")
    index = NgramIndex(9, [("held", r["id"], r["prompt"]) for r in test])
    assert sum(m is not None for m in index.first_matches([r["prompt"] for r in train])) == 0


@pytest.mark.parametrize("kind", ["math", "code"])
def test_varied_enough_that_no_template_dominates(kind):
    records = generate(f"builtin://{kind}?n=1000&difficulty=3")
    templates = Counter(r["meta"]["template"] for r in records)
    assert len(templates) >= (10 if kind == "math" else 40)
    assert templates.most_common(1)[0][1] < 0.15 * len(records)
    assert len({r["prompt"] for r in records}) > 0.9 * len(records)


def test_difficulty_knob_adds_harder_templates_and_bigger_numbers():
    easy = generate("builtin://math?n=400&difficulty=1")
    hard = generate("builtin://math?n=400&difficulty=4")
    assert {r["meta"]["template"] for r in easy} == {"m_compare", "m_next", "m_add", "m_sub", "m_mul"}
    assert {"m_linear", "m_product_sum", "m_fraction"} <= {r["meta"]["template"] for r in hard}
    biggest = lambda rs: max(abs(int(r["answer"])) for r in rs if "/" not in r["answer"])  # noqa: E731
    assert biggest(hard) > biggest(easy)


def test_prompts_and_answers_are_short():
    for r in generate("builtin://math?n=500&difficulty=2&worked=true"):
        assert len(r["prompt"]) <= 90 and len(r["response"]) <= 80, r
    for r in generate("builtin://code?n=500&difficulty=3&worked=true"):
        assert len(r["prompt"]) <= 110 and len(r["response"]) <= 150, r


def test_worked_math_answers_are_graded_correct():
    records = generate("builtin://math?n=300&difficulty=4&worked=true")
    grades = score(records, [r["response"] for r in records], GRADING)
    assert [g.status for g in grades] == ["correct"] * len(records)
    assert all(r["response"].endswith(f"\\boxed{{{r['answer']}}}") for r in records)


def test_reference_programs_pass_their_tests_in_the_sandbox():
    records = generate("builtin://code?n=60&difficulty=3&worked=true")
    grades = score(records, [r["response"] for r in records], GRADING)
    assert [g.status for g in grades] == ["pass"] * len(records), [g.detail for g in grades if g.status != "pass"]
    modes = Counter(r["meta"]["template"].rsplit(".", 1)[1] for r in records)
    assert modes["stdin"] > 10 and modes["call"] > 10  # both test formats


def test_tasks_selects_templates_and_chains_compose_small_facts():
    records = generate("builtin://math?n=300&difficulty=2&tasks=chain&worked=true")
    assert {r["meta"]["template"] for r in records} == {"m_chain"}
    for r in records:
        steps = r["response"].split("</think>")[0].split(", ")
        assert 2 <= len(steps) <= 3, r  # difficulty d: d to d + 1 operations
        for step in steps:  # each step is one single-digit fact and every partial result stays in 0..20
            a, op, b, _, c = step.split()
            assert 1 <= int(b) <= 9 and 0 <= int(c) <= 20 and int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert steps[-1].split()[-1] == r["answer"]
    grades = score(records, [r["response"] for r in records], GRADING)
    assert {g.status for g in grades} == {"correct"}
    modes = {m: {r["meta"]["template"].rsplit(".", 1)[1] for r in generate(f"builtin://code?n=50&mode={m}")}
             for m in ("stdin", "call", "both")}
    assert modes == {"stdin": {"stdin"}, "call": {"call"}, "both": {"stdin", "call"}}
    mixed = generate("builtin://code?n=200&difficulty=1&tasks=flip,gcd")  # named tasks, whatever their level
    assert {r["meta"]["template"].split(".")[1] for r in mixed} == {"flip", "gcd"}
    # the held-out split stays content-disjoint and 9-gram clean with a single template
    test = generate("builtin://math?n=200&difficulty=2&tasks=chain&split=test")
    train = generate("builtin://math?n=3000&difficulty=2&tasks=chain")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    index = NgramIndex(9, [("held", r["id"], r["prompt"]) for r in test])
    assert sum(m is not None for m in index.first_matches([r["prompt"] for r in train])) == 0


def test_shortcut_answers_skip_the_work_and_are_graded_as_such():
    """`shortcut=` mimics unfiltered warm-up data: some answers skip the work — a guessed number with no
    steps (math) or the example's output printed (code) — and the graders mark every one wrong.
    The problems themselves do not change."""
    full = generate("builtin://math?n=400&difficulty=2&tasks=chain&worked=true")
    mixed = generate("builtin://math?n=400&difficulty=2&tasks=chain&worked=true&shortcut=0.4")
    assert [r["prompt"] for r in full] == [r["prompt"] for r in mixed]
    direct = [r for r in mixed if r["response"].startswith("</think>")]
    assert 0.3 < len(direct) / len(mixed) < 0.5
    assert all(re.fullmatch(r"</think>\n\\boxed\{\d+\}", r["response"]) for r in direct)
    assert {g.status for g in score(direct, [r["response"] for r in direct], GRADING)} == {"wrong"}
    code = generate("builtin://code?n=80&difficulty=1&worked=true&shortcut=1")
    grades = score(code, [r["response"] for r in code], GRADING)
    assert all("input()" not in r["response"] and "xs)" not in r["response"].split("return")[-1] for r in code)
    assert sum(g.status == "pass" for g in grades) == 0  # hard-coding the example never passes the tests


def test_without_worked_there_is_no_response():
    assert all("response" not in r for r in generate("builtin://math?n=5"))


@pytest.mark.parametrize("uri,message", [
    ("builtin://physics?n=3", "unknown builtin generator"),
    ("builtin://math?n=3&level=2", "unknown parameter(s) ['level']"),
    ("builtin://math?n=three", "not an integer"),
    ("builtin://math?difficulty=9", "outside [1, 5]"),
    ("builtin://code?split=dev", "use one of ['train', 'test']"),
    ("builtin://math?tasks=chain,algebra", "unknown task(s) ['algebra']"),
    ("builtin://code?tasks=chain", "unknown task(s) ['chain']"),
    ("builtin://code?mode=repl", "use one of ['both', 'stdin', 'call']"),
    ("builtin://math?mode=call", "applies to builtin://code only"),
    ("builtin://math?shortcut=2&worked=true", "outside [0, 1]"),
    ("builtin://math?shortcut=0.3", "add worked=true"),
    ("builtin://math?shortcut=some&worked=true", "not a number"),
])
def test_bad_uris_say_what_is_wrong(uri, message):
    with pytest.raises(BuiltinError, match=re.escape(message)):
        parse_uri(uri)
