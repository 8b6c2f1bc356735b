"""Every curation filter on small hand-written cases (kept and dropped), and the funnel's accounting.

Model and sandbox filters run for real: `validate_tests` / `weak_tests` in the code sandbox,
pass rates with the HF engine on a tiny model fine-tuned to always answer 7 (see curate_helpers):
measured once as a `sample` job measures (`passrate.sample`), then cut by several datasets'
thresholds (`PassRateCut`), and sampled-and-cut in one step as a stage's `filter` job does (`PassRate`).
"""

from __future__ import annotations

import copy

import pytest
from pydantic import TypeAdapter

from curate_helpers import MATH_SUFFIX, TEMPLATE
from rlspec.compiler.jobs import CurateFilter, Grading, Inference, PassRate, PassRateSampling, Replicas
from rlspec.runtime.data import passrate
from rlspec.runtime.data.filters import FILTERS, Context, FilterError, get_filter
from rlspec.runtime.data.funnel import CurateError, apply_filters, funnel_json, funnel_markdown

CONFIG = {
    "answer": {"think_end": "</think>", "math_fallback_patterns": [], "math": "boxed", "code": "last_python_block"},
    "reward": {"math_timeout_s": 5.0, "code_time_limit_s": 6.0, "code_total_time_limit_s": 60.0, "code_memory_mb": 512},
    "prompt": {"default": {"template": TEMPLATE, "math_suffix": MATH_SUFFIX,
                           "code_suffix": " Answer in a ```python block.", "use_chat_template": False},
               "domains": {}},
    "rollout": {"engine": "hf", "max_prompt_tokens": 96, "hf": {"batch_size": 64},
                "vllm": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.5,
                         "kv_cache_memory_bytes": None, "enforce_eager": True, "max_num_seqs": 8,
                         "quantization": None}},
    "dtype": "float32", "max_model_len": 256, "seed": 0,
}
FILTER = TypeAdapter(CurateFilter)


def ctx(domain="math", **kw) -> Context:
    """A filter's context as a curate job builds it from its typed config (`config` overrides CONFIG)."""
    c = copy.deepcopy(kw.pop("config", CONFIG))
    grading = Grading.model_validate({"reward": c["reward"], "answer": c["answer"], "rewards": {}})
    inference = Inference.model_validate({k: c[k] for k in ("rollout", "dtype", "max_model_len", "prompt")})
    replicas = Replicas(count=1, gpus=0, nodes=1, gpus_per_node=0, cpus=1)  # one CPU engine in this process
    return Context(dataset="d", domain=domain, seed=c["seed"], grading=grading, inference=inference,
                   replicas=replicas, **kw)


def typed(filters: list[dict]) -> list:
    """Filter blocks as a job config holds them (the spec's models, or the compiler's resolved ones)."""
    return [FILTER.validate_python(f) for f in filters]


def math(prompt: str, answer: str = "1", i: int | None = None, **meta) -> dict:
    return {"id": f"m{i if i is not None else abs(hash(prompt)) % 10**6}", "prompt": prompt, "answer": answer,
            "source": "test", "domain": "math", "meta": meta}


def code(prompt: str, tests: list, i: int = 0, **extra) -> dict:
    meta = extra.pop("meta", {})
    return {"id": f"c{i}", "prompt": prompt, "tests": tests, "starter_code": None, "fn_name": None,
            "time_limit_s": None, "release_date": extra.pop("release_date", None), "source": "test", "domain": "code",
            "meta": meta, **extra}


def verdicts(kind: str, records: list[dict], context: Context | None = None, **cfg) -> list:
    return get_filter(kind)(records, FILTER.validate_python({"kind": kind, **cfg}), context or ctx())


def kept(kind: str, records: list[dict], context: Context | None = None, **cfg) -> list[str]:
    return [r["prompt"] for r, v in zip(records, verdicts(kind, records, context, **cfg)) if v is None]


# ---------------------------------------------------------------------------------------------- text cues

CUES = {
    "multipart": (["(a) Find x if 2x = 4. (b) Find y if y + 1 = 3.",
                   "1. Compute 3 + 4.\n2. Compute 5 * 6.",
                   "Part (a): solve it. Part (b): check it."],
                  ["Find f(a) + f(b) if f(x) = x^2, a = 1, b = 2.", "Compute 1.5 + 2.5."]),
    "multiple_choice": (["What is 2 + 2? (A) 3 (B) 4 (C) 5", "Which of the following is prime: 4, 6, 7?",
                         "$\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2$ How many?"],
                        ["What is 2 + 2?", "Let A be a set with 3 elements. How many subsets does A have?",
                         "(a) Find x. (b) Find y."]),
    "true_false": (["True or false: 7 is prime.", "Is it true that 2 + 2 = 4?", "Answer yes or no: is 9 odd?"],
                   ["Is 17 the answer to 10 + 7? Give the sum."]),
    "proof": (["Prove that the square root of 2 is irrational.", "Show that n^2 + n is even for every n."],
              ["Find the smallest n with n^2 > 50.", "Approve 3 of 5 requests; how many ways?"]),
    "figure_reference": (["In the figure below, find the area of the triangle.", "As shown in the diagram, AB = 3.",
                          "See Figure 2. What is x?"],
                         ["Find the area of a triangle with sides 3, 4, 5.", "Figure out 3 + 4.",
                          "Find the size of the image of f(x) = x^2 on [0, 2].", "In the graph G every vertex has degree 3."]),
}


@pytest.mark.parametrize("kind", sorted(CUES))
def test_statement_cue_filters(kind):
    dropped, kept_prompts = CUES[kind]
    records = [math(p, i=i) for i, p in enumerate(dropped + kept_prompts)]
    assert kept(kind, records) == kept_prompts
    assert all(v and ": " in v for v in verdicts(kind, records)[:len(dropped)])


def test_answer_cues():
    records = [math("Pick one.", "B"), math("Decide.", "yes"), math("Explain.", "proof"), math("Compute.", "12")]
    assert kept("multiple_choice", records) == ["Decide.", "Explain.", "Compute."]
    assert kept("true_false", records) == ["Pick one.", "Explain.", "Compute."]
    assert kept("proof", records) == ["Pick one.", "Decide.", "Compute."]


def test_language_keeps_english_and_short_formulas_drops_confident_other_languages():
    records = [math("A farmer has 12 cows and buys 5 more. How many cows does the farmer have now?", i=1),
               math("Compute 7 plus 5.", i=2),  # too few words to judge: kept
               math("Un granjero tiene 12 vacas y compra 5 más. ¿Cuántas vacas tiene ahora el granjero?", i=3),
               math("Ein Bauer hat 12 Kühe und kauft 5 weitere. Wie viele Kühe hat der Bauer jetzt?", i=4),
               math("Soit $f(x) = x^2 + 1$. Déterminer la valeur de $f(3)$ lorsque la fonction est définie.", i=5)]
    v = verdicts("language", records, keep=["en"])
    assert [x is None for x in v] == [True, True, False, False, False]
    assert v[2].startswith("language not one of ['en']: es")
    assert kept("language", records, keep=["en", "es"])[2].startswith("Un granjero")


def test_length_in_chars_and_tokens(seven_model):
    records = [math("Hi?", i=1), math("What is 2 + 3?", i=2), math("What is " + " + ".join(["1"] * 40) + "?", i=3)]
    assert kept("length", records, min=10, max=60, unit="chars") == ["What is 2 + 3?"]
    v = verdicts("length", records, min=10, max=None, unit="chars")
    assert v[0] == "3 chars < min 10" and v[1:] == [None, None]
    tokens = ctx(inputs={"policy": str(seven_model.parent)})  # a from-scratch policy: <model job>/model
    assert kept("length", records, tokens, min=2, max=20, unit="tokens") == ["Hi?", "What is 2 + 3?"]
    with pytest.raises(FilterError, match="no 'policy' input model"):
        verdicts("length", records, min=2, max=20, unit="tokens")


def test_answer_parseable():
    records = [math("q", a, i=i) for i, a in enumerate(["42", "-3/4", "\\frac{1}{2}", "2^{1/2}", "(1, 2)", "", "x ="])]
    v = verdicts("answer_parseable", records)
    assert [x is None for x in v] == [True, True, True, True, True, False, False]
    assert v[5] == "no reference answer"


# ---------------------------------------------------------------------------------------------- code


def test_min_tests_date_cutoff_interactive_special_judge():
    records = [code("Add two numbers.", [{"input": "1 2", "output": "3"}] * 3, 0, release_date="2024-07-31"),
               code("Interactive problem: guess the number. Flush the output.", [{"input": "", "output": ""}], 1,
                    release_date="2024-08-01"),
               code("Print any valid permutation of a checker board's rows.", [{"input": "3", "output": "1 2 3"}] * 2, 2),
               code("Echo.", [{"input": "a", "output": "a"}] * 2, 3, meta={"interactive": True, "checker": "spj.cpp"})]
    assert kept("min_tests", records, min=2) == [records[i]["prompt"] for i in (0, 2, 3)]
    assert verdicts("min_tests", records, min=2)[1] == "1 test(s) < min 2"
    step = apply_filters(records, typed([{"kind": "date_cutoff", "before": "2024-08-01", "after": None}]), ctx("code"))[1][0]
    assert step.reasons == {"released on or after 2024-08-01": 1, "no release date": 2}
    v = verdicts("date_cutoff", records, before="2024-08-01", after=None)
    assert v == [None, "released on or after 2024-08-01: 2024-08-01", "no release date", "no release date"]
    assert verdicts("date_cutoff", records, before=None, after="2024-08-01")[:2] == [
        "released before 2024-08-01: 2024-07-31", None]
    assert [x is None for x in verdicts("interactive", records)] == [True, False, True, False]
    assert [x is None for x in verdicts("special_judge", records)] == [True, True, False, False]
    assert verdicts("special_judge", records)[3] == "marked 'checker' in its metadata"


def test_validate_tests_runs_the_reference_solution_in_the_sandbox():
    tests = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]
    records = [code("Add.", tests, 0, meta={"solution": "a, b = map(int, input().split())\nprint(a + b)"}),
               code("Add.", tests, 1, meta={"solution": "a, b = map(int, input().split())\nprint(a * b + 1)"}),
               code("Add.", tests, 2, meta={"solution": "while True:\n    pass"}),
               code("Add.", tests, 3),
               code("Call.", [{"fn_name": "f", "args": [2], "expected": 4}], 4,
                    meta={"solution": ["class Solution:\n    def f(self, x):\n        return x * 2"]})]
    context = ctx("code", config={**CONFIG, "reward": {**CONFIG["reward"], "code_time_limit_s": 1.0}})
    v = verdicts("validate_tests", records, context)
    assert v[0] is None and v[4] is None
    assert v[1].startswith("reference solution fails its tests: wrong")
    assert v[2].startswith("reference solution fails its tests: timeout")
    assert v[3].startswith("no reference solution")


def test_weak_tests_flag_tests_a_trivial_program_passes():
    records = [code("Sum.", [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"}], 0),
               code("Is it even?", [{"input": "4\n", "output": "Yes\n"}, {"input": "8\n", "output": "Yes\n"}], 1),
               code("Copy.", [{"input": "abc\n", "output": "abc\n"}], 2),
               code("Double.", [{"fn_name": "f", "args": [0], "expected": 0}], 3),
               code("Double.", [{"fn_name": "f", "args": [3], "expected": 6}, {"fn_name": "f", "args": [1], "expected": 2}], 4)]
    v = verdicts("weak_tests", records, ctx("code"))
    assert v == [None, "tests accept a trivially wrong program: prints Yes",
                 "tests accept a trivially wrong program: echoes the input",
                 "tests accept a trivially wrong program: returns 0", None]


# ---------------------------------------------------------------------------------------------- duplicates


def test_dedup_exact_folds_case_spacing_punctuation_and_checks_each_field():
    records = [math("What is 2+2?", i=1, url="x/1"), math("what  is 2 + 2", i=2, url="x/2"),
               math("A new question.", i=3, url="x/1"), math("Another one.", i=4, url=None),
               math("Another one!", i=5), math("What is 2*2?", i=6)]
    assert verdicts("dedup_exact", records, fields=["prompt"]) == [
        None, "same prompt as an earlier record: m1", None, None, "same prompt as an earlier record: m4", None]
    assert verdicts("dedup_exact", records, fields=["prompt", "url"])[2] == "same url as an earlier record: m1"


def test_dedup_near_catches_respaced_and_renumbered_copies():
    base = ("A train leaves the station at 9 am travelling at 60 km per hour towards a city that is 300 km away. "
            "At what time does it arrive at the city if it never stops on the way?")
    respaced = base.replace(" ", "   ").replace("km per", "km\nper").replace("?", " ?")
    renumbered = base.replace("9 am", "7 am").replace("60", "75").replace("300", "450")
    different = ("A baker makes 40 loaves of bread each morning and sells three quarters of them before noon. "
                 "How many loaves are left for the afternoon customers in the shop?")
    records = [math(t, i=i) for i, t in enumerate([base, respaced, renumbered, different])]
    v = verdicts("dedup_near", records, threshold=0.8, num_perm=128, shingle=3)
    assert v == [None, "near-duplicate of an earlier record: m0", "near-duplicate of an earlier record: m0", None]


def test_decontaminate_catches_a_lightly_reworded_benchmark_question(tmp_path):
    question = ("Let $p$ be the least prime number for which there exists a positive integer $n$ such that "
                "$n^{4}+1$ is divisible by $p^{2}$. Find the least positive integer $m$ such that $m^{4}+1$ is "
                "divisible by $p^{2}$.")
    (tmp_path / "aime.jsonl").write_text('{"problem": %s, "answer": "110"}\n' % __import__("json").dumps(question))
    reworded = ("Suppose p denotes the least prime number for which there exists a positive integer n such that "
                "n^4 + 1 is divisible by p^2.  Determine the least positive integer m such that m^4+1 is divisible "
                "by p^2 .")
    records = [math(reworded, "110", i=0), math("Find the least positive integer m with m > 3.", i=1),
               math("What is the least prime number?", i=2)]
    cfg = {"n": 9, "extra_files": [], "benchmarks": {"aime24": {"domain": "math", "source": {
        "uri": "aime.jsonl", "fields": {"prompt": "problem"}, "split": "train", "sha256": None}}}}
    v = verdicts("decontaminate", records, ctx(spec_dir=tmp_path), **cfg)
    assert v[0].startswith("9-gram overlap with aime24: item aime.jsonl-0: 'the least prime number for which there exists")
    assert v[1:] == [None, None]
    (tmp_path / "more.csv").write_text("prompt\nwhat is the least prime number\n")
    v = verdicts("decontaminate", records, ctx(spec_dir=tmp_path), **{**cfg, "benchmarks": {}, "extra_files": [{"path": "more.csv", "sha256": None}]})
    assert v == [None, None, "9-gram overlap with more.csv: item more.csv-0: 'What is the least prime number?'"]


def test_decontaminate_unreadable_benchmark_names_it(tmp_path):
    cfg = {"n": 9, "extra_files": [], "benchmarks": {"lcb": {"domain": "code", "source": {"uri": "missing.jsonl",
                                                                                         "sha256": None}}}}
    with pytest.raises(FilterError, match=r"benchmark 'lcb': missing.jsonl: file not found"):
        verdicts("decontaminate", [math("x")], ctx(spec_dir=tmp_path), **cfg)


# ---------------------------------------------------------------------------------------------- pass rate


def sampling(**kw) -> PassRateSampling:
    """A `sample` job's sampling block (its `model` is the input role `teacher`)."""
    return PassRateSampling.model_validate({"model": "teacher", "k": 4, "max_response_tokens": 16, "temperature": 0.6,
                                            "top_p": 0.95, "stop": [], **kw})


def cut(records: list[dict], **kw) -> list:
    """A curation `pass_rate` filter as its curate job holds it: thresholds only (`PassRateCut`)."""
    cfg = FILTER.validate_python({"kind": "pass_rate", "min": 0.0, "max": 1.0, "majority": False,
                                  "min_response_tokens": None, **kw})
    return get_filter("pass_rate")(records, cfg, ctx())


def teacher(seven_model) -> dict:
    """The inputs of a sample job whose teacher is `seven_model` (a model job's `model/`)."""
    return {"teacher": str(seven_model.parent)}


def test_pass_rate_is_sampled_once_and_each_cut_keeps_its_band_with_the_hf_engine(seven_model):
    records = [math("What is 3 + 4?", "7", i=0), math("What is 2 + 2?", "4", i=1), math("What is 10 - 3?", "7", i=2),
               math("Compute " + " + ".join(["1"] * 60) + ".", "60", i=3)]
    passrate.sample(records, sampling(), ctx(inputs=teacher(seven_model)))
    measured = records[0]["meta"]["pass_rate"]
    assert (measured["k"], measured["correct"], measured["rate"], measured["majority_ok"]) == (4, 4, 1.0, True)
    assert measured["policy"] == seven_model.parent.as_posix() and measured["correct_tokens"] > 0
    assert records[3]["meta"]["pass_rate"]["unsampled"].startswith("prompt too long for the rollout:")
    v = cut(records, max=0.5)
    assert v[0] == "pass rate above max 0.5: 4/4" and v[2] == "pass rate above max 0.5: 4/4"
    assert v[1] is None and records[1]["meta"]["pass_rate"]["rate"] == 0.0
    assert v[3].startswith("prompt too long for the rollout:")
    hard_for_a_teacher = cut(records[:3], min=0.125, max=1.0)
    assert hard_for_a_teacher == [None, "pass rate below min 0.125: 0/4", None]
    too_easy = cut(records[:1], max=1.0, majority=True, min_response_tokens=100)
    assert too_easy[0].startswith("answered in fewer than 100 tokens:")
    assert cut(records[1:2], majority=True) == ["majority answer is wrong: 0/4 correct"]


def test_pass_rate_sampling_stops_at_the_stop_strings(seven_model):
    """The stage's stop strings reach the pass-rate sampling: cut before its answer, the teacher solves nothing."""
    records = [math("What is 3 + 4?", "7", i=0)]
    passrate.sample(records, sampling(stop=["boxed"]), ctx(inputs=teacher(seven_model)))
    assert cut(records, min=0.125) == ["pass rate below min 0.125: 0/4"]


def test_a_cut_on_records_without_a_measurement_says_recompile():
    with pytest.raises(FilterError, match=r"record 'm1' carries no pass-rate measurement .*recompile"):
        cut([math("x", i=1)], max=0.5)
    with pytest.raises(FilterError, match="carries no pass-rate measurement"):  # an older version's measurement
        cut([math("x", i=1, pass_rate={"policy": "p", "k": 4, "correct": 1, "rate": 0.25})], max=0.5)


@pytest.mark.slow
def test_pass_rate_with_the_vllm_engine(seven_model, monkeypatch):
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    config = copy.deepcopy(CONFIG)
    config["rollout"]["engine"] = "vllm"
    config["rollout"]["vllm"]["kv_cache_memory_bytes"] = 64 << 20
    records = [math("What is 3 + 4?", "7", i=0), math("What is 2 + 2?", "4", i=1)]
    passrate.sample(records, sampling(), ctx(config=config, inputs=teacher(seven_model)))
    assert cut(records, max=0.5) == ["pass rate above max 0.5: 4/4", None]


def stage_filter(**kw) -> PassRate:
    """A stage's `filter_before` as its filter job holds it: sampling and thresholds in one block."""
    return PassRate.model_validate({
        "kind": "pass_rate", "model": "policy", "k": 4, "min": 0.0, "max": 0.5, "max_response_tokens": 16,
        "temperature": 0.6, "top_p": 0.95, "majority": False, "min_response_tokens": None, "stop": [], **kw})


def test_stage_filter_pass_rate_samples_the_policy_and_cuts_in_one_step(seven_model):
    records = [math("What is 3 + 4?", "7", i=0)]
    v = get_filter("pass_rate")(records, stage_filter(), ctx(inputs={"policy": str(seven_model.parent)}))
    assert v == ["pass rate above max 0.5: 4/4"] and records[0]["meta"]["pass_rate"]["correct"] == 4
    with pytest.raises(FilterError, match="no 'policy' input model"):
        get_filter("pass_rate")([math("x", i=1)], stage_filter(), ctx())


# ---------------------------------------------------------------------------------------------- funnel


def test_funnel_counts_add_up_and_examples_explain_drops():
    records = [math(f"What is {i} + {i}? Add the two numbers carefully.", str(2 * i), i=i) for i in range(20)]
    records += [math("What is 1 + 1? Add the two numbers carefully.", "2", i=100), math("Short", "1", i=101),
                math("Prove that 1 + 1 = 2 by adding the two numbers carefully.", "2", i=102)]
    filters = [{"kind": "length", "min": 10, "max": None, "unit": "chars"},
               {"kind": "dedup_exact", "fields": ["prompt"]}, {"kind": "proof"}]
    out, steps = apply_filters(records, typed(filters), ctx())
    assert len(out) == 20
    assert [(s.records_in, s.kept, s.dropped) for s in steps] == [(23, 22, 1), (22, 21, 1), (21, 20, 1)]
    for before, after in zip(steps, steps[1:]):
        assert after.records_in == before.kept and before.records_in == before.kept + before.dropped
    assert steps[0].reasons == {"N chars < min N": 1} and steps[1].examples[0]["id"] == "m100"
    funnel = funnel_json("d", "math", [{"uri": "test", "records": 23}], steps, len(out))
    assert funnel["input"] == 23 and funnel["output"] == 20
    md = funnel_markdown(funnel)
    assert "| 2 | dedup_exact | 22 | 21 | 1 |" in md and "same prompt as an earlier record: m1" in md


def test_a_filter_that_leaves_nothing_names_dataset_and_filter():
    with pytest.raises(CurateError, match=r"dataset 'd', filter 2 \(proof\): no records left \(1 in, all dropped; "
                                          r"top reasons: a proof \(1\)\)") as err:
        apply_filters([math("Prove it.", i=1)], typed([{"kind": "multipart"}, {"kind": "proof"}]), ctx())
    assert [s.filter for s in err.value.steps] == ["multipart", "proof"]


def test_unknown_filter_lists_the_valid_ones():
    with pytest.raises(FilterError, match=r"unknown filter kind 'dedupe'; valid kinds: answer_parseable, date_cutoff"):
        get_filter("dedupe")


def test_every_spec_filter_kind_is_registered():
    from rlspec.compiler.spec import Filter
    import typing
    kinds = {t.model_fields["kind"].annotation.__args__[0] for t in typing.get_args(typing.get_args(Filter)[0])}
    assert kinds == set(FILTERS)
