"""The one metrics.jsonl reader (`runtime/metricsfile.py`) and how the report's collect step uses it:
a torn last line (a killed or still running trainer) is skipped quietly, a bad line elsewhere is
corruption: `read_metrics` raises, the report keeps the other rows and says which line it left out."""

from __future__ import annotations

import pytest

from rlspec.runtime.metricsfile import MetricsFileError, read_metrics, scan_metrics
from rlspec.runtime.reporting.collect import collect

ROWS = '{"step": 1, "reward_mean": 0.25}\n{"step": 2, "reward_mean": 0.5}\n'


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(ROWS + '{"step": 3, "rew')
    assert read_metrics(path) == [{"step": 1, "reward_mean": 0.25}, {"step": 2, "reward_mean": 0.5}]
    assert scan_metrics(path)[1] == []


def test_whole_file_and_blank_lines_and_no_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(ROWS.replace("\n", "\n\n", 1))
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert read_metrics(tmp_path / "not-yet.jsonl") == []  # the job has not logged a step yet


def test_corrupt_line_before_the_last_raises(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "rew\n{"step": 3}\n')
    with pytest.raises(MetricsFileError, match=r"metrics.jsonl: line\(s\) 2 not JSON"):
        read_metrics(path)
    assert scan_metrics(path) == ([{"step": 1}, {"step": 3}], [2])


def test_report_keeps_the_other_rows_and_warns(tmp_path):
    """collect() on a tiny build folder: plain values in (no job file), as the report program calls it."""
    folder = "results/train/abc"
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n{"step"')
    res = collect(tmp_path, [folder], name="g", cells=[], metrics={}, references={}, labels={"abc": "train s1"})
    assert res.train["abc"] == {"rows": [{"step": 1}, {"step": 2}], "done": None}
    assert res.warnings == [f"{tmp_path / folder / 'metrics.jsonl'}: line 2 is not JSON, skipped"]
    assert res.missing == [{"kind": "train", "id": "abc", "label": "train s1"}]
