"""Agreement: how often grade_math and math-verify alone give the expected verdict, same pairs, same run.

Pairs: tests/runtime/reward/data/math_agreement.jsonl (gold, prediction = a model's final text,
expected verdict, source), written for rlspec from math-verify's own test suite and public grading
bug reports; expected verdicts are mathematical truth. Graders:
- math-verify alone: ``verify(parse($gold$), parse(prediction))``, its recommended use;
- grade_math with the paper's knobs (``boxes="last_box"``, no unboxed fallback): answers stated
  without a box or spread over several boxes are ``no_answer`` / only the last box, by design;
- grade_math with the lenient knobs (``boxes="all_boxes"``, ``unboxed_fallback=True``), which read
  every answer form the corpus has, as math-verify does.
Goal (issue 15): lenient grade_math agrees at least as often as math-verify. The corpus was also
used while building the grader (a development set, not a held-out one): read the figures so.

    .venv/bin/python perf/math_agreement.py   # prints a table, writes perf/results/math_agreement.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from math_verify import parse, verify  # noqa: E402

from rlspec.runtime.reward import grade_math  # noqa: E402
from rlspec.runtime.reward.mathgrade import wrap_reference  # noqa: E402

HERE = Path(__file__).parent
CORPUS = HERE.parent / "tests" / "runtime" / "reward" / "data" / "math_agreement.jsonl"
READINGS = {"paper knobs": {"boxes": "last_box", "unboxed_fallback": False},
            "lenient knobs": {"boxes": "all_boxes", "unboxed_fallback": True}}


def source_group(source: str) -> str:
    return "math-verify test suite" if source.startswith("Math-Verify tests") else (
        "rlspec RL answer forms" if source.startswith("rlspec") else "public bug reports")


def misses(rows: list[dict], verdicts: list[bool]) -> list[dict]:
    return [{"gold": r["gold"], "prediction": r["prediction"][:120], "expected": r["expected"], "source": r["source"]}
            for r, v in zip(rows, verdicts) if v != (r["expected"] == "correct")]


def by_group(rows: list[dict], verdicts: list[bool]) -> dict[str, str]:
    total, right = Counter(), Counter()
    for r, v in zip(rows, verdicts):
        total[source_group(r["source"])] += 1
        right[source_group(r["source"])] += v == (r["expected"] == "correct")
    return {g: f"{right[g]}/{total[g]}" for g in sorted(total)}


def main() -> None:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    golds, predictions = [r["gold"] for r in rows], [r["prediction"] for r in rows]
    graders = {"math-verify alone": [verify(parse(wrap_reference(g)), parse(p)) for g, p in zip(golds, predictions)]}
    for name, knobs in READINGS.items():
        graders[f"grade_math, {name}"] = [g.status == "correct" for g in grade_math(predictions, golds, think_end=None, **knobs)]
    agreement = {name: sum(v == (r["expected"] == "correct") for v, r in zip(verdicts, rows)) for name, verdicts in graders.items()}
    ours, theirs = agreement["grade_math, lenient knobs"], agreement["math-verify alone"]
    result = {
        "peer": "math-verify 0.9 alone: verify(parse($gold$), parse(prediction)), same pairs, same run",
        "ours": round(100 * ours / len(rows), 1), "theirs": round(100 * theirs / len(rows), 1),
        "unit": "% of pairs given the expected verdict", "ratio": round(ours / theirs, 3), "date": dt.date.today().isoformat(),
        "details": {"pairs": len(rows), "sources": dict(Counter(source_group(r["source"]) for r in rows)),
                    "agreement": {name: f"{n}/{len(rows)}" for name, n in agreement.items()},
                    "by_source": {name: by_group(rows, verdicts) for name, verdicts in graders.items()},
                    "misses": {name: misses(rows, verdicts) for name, verdicts in graders.items()},
                    "load_average": os.getloadavg()},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "math_agreement.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    for name, n in agreement.items():
        print(f"{name:32s} {n:4d}/{len(rows)} = {100 * n / len(rows):5.1f}%   {by_group(rows, graders[name])}")


if __name__ == "__main__":
    main()
