"""What a curation filter sees besides its own config: `Context`, and the error a filter raises.

A `curate`, `sample` or stage `filter` job builds one from its typed job config: the seed, how
answers are graded and sampled (when a filter needs that), how sampling is spread over engine
replicas, the input folders (models) and the spec's folder (relative paths). Filters get their own
settings as the spec's (or the compiler's resolved) filter model and read everything else here;
this module imports no filter, so filters and the model-based filters (`passrate.py`) share it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlspec.compiler.jobs import DataSource, Grading, Inference, Replicas

Verdicts = list["str | None"]


class FilterError(ValueError):
    """A filter that cannot run; the message says what is missing."""


@dataclass
class Context:
    dataset: str
    domain: str
    seed: int | None
    grading: Grading | None  # set when the job's filters grade answers
    inference: Inference | None  # set when they sample from a model
    replicas: Replicas | None = None  # the sampling jobs' (sample, filter) engine replicas
    inputs: dict[str, Any] = field(default_factory=dict)
    spec_dir: Path | None = None
    _tokenizer: Any = None

    def read(self, source: DataSource, domain: str, prompts_only: bool = False,
             place: str | None = None) -> list[dict[str, Any]]:
        """`place`: the source's spec path (datasets.NAME.sources[i]), named in mapping errors."""
        from .sources import read_source
        return read_source(source, domain, spec_dir=self.spec_dir, seed=self.seed, prompts_only=prompts_only,
                           place=place)

    def model_dir(self, role: str) -> Path:
        """The model folder of input `role` (weights and tokenizer; see `rlspec.compiler.jobs`)."""
        from rlspec.runtime.job import JobError, input_model
        try:
            return input_model(self.inputs, role)
        except JobError as exc:
            raise FilterError(str(exc)) from None

    def tokenizer(self):
        """The policy's tokenizer (`model.tokenizer` when set: the model job put it there), loaded once."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            path = self.model_dir("policy")
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError) as exc:
                raise FilterError(f"cannot load the tokenizer in {path} ({type(exc).__name__}: {exc})") from None
        return self._tokenizer

    def needs(self, what: str):
        """`grading` or `inference`, which the compiler sets whenever a filter of the job needs it."""
        value = getattr(self, what)
        if value is None:
            raise FilterError(f"the job config has no {what} block; recompile with `rlspec compile`")
        return value
