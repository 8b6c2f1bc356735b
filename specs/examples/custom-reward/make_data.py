"""Write the example's own data: `train.parquet` and `test.parquet`, one arithmetic chain per row.

    python specs/examples/custom-reward/make_data.py      # rewrites both files (deterministic)

Columns: `question` (the text, with its instruction), `answer` (the number as text), `data_source`
and `extra_info` (veRL's names: rlspec hands them to a veRL-signature reward function as they are).
Any parquet with a question column and an answer column would do; this one is made here so the
example needs no download. Train and test never share a question.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def chain(rng: random.Random) -> tuple[str, int]:
    """Two or three single-digit steps whose running value stays a single digit (the tiny policy's
    warm-up data is chains of that kind)."""
    value = rng.randint(1, 9)
    text = str(value)
    for _ in range(rng.randint(1, 2)):
        step = rng.randint(1, 9)
        if value + step <= 9 and (rng.random() < 0.5 or value - step < 0):
            value, text = value + step, f"{text} + {step}"
        elif value - step >= 0:
            value, text = value - step, f"{text} - {step}"
        else:
            step = rng.randint(0, 9 - value)
            value, text = value + step, f"{text} + {step}"
    return f"What is {text}? Answer in \\boxed{{}}.", value


def main() -> None:
    rng = random.Random(0)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < 400:  # about 1,000 distinct chains exist
        question, value = chain(rng)
        if question not in seen:
            seen.add(question)
            rows.append({"question": question, "answer": str(value), "data_source": "example/arith",
                         "extra_info": {"index": len(rows)}})
    for name, part in (("train", rows[:320]), ("test", rows[320:])):
        pq.write_table(pa.Table.from_pylist(part), HERE / f"{name}.parquet")


if __name__ == "__main__":
    main()
