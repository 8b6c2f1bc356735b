"""Fixtures for compiler tests: small specs written to a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"

# A small valid spec; tests edit its text to introduce one error at a known line.
MINI = """\
name: mini
seed: 3
model:
  path: org/model
  max_context: 4096
datasets:
  math:
    domain: math
    sources:
      - uri: builtin://math?n=100
    filters:
      - kind: dedup_exact
      - kind: decontaminate
benchmarks:
  held:
    domain: math
    source: {uri: "builtin://math?n=20&split=test"}
    k: 4
    sampling: {max_response_tokens: 1024}
stages:
  - name: s1
    datasets: [math]
    max_response_tokens: 1024
    steps: 10
    prompts_per_step: 8
    group_size: 4
  - name: s2
    datasets: [math]
    max_response_tokens: 2048
    steps: 10
    prompts_per_step: 8
    group_size: 4
"""


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text, name="spec.yaml") -> path of a spec file in a fresh folder."""
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path
    return write


def shipped_specs() -> list[Path]:
    return sorted(SPECS.rglob("*.yaml"))
