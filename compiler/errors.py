"""Located spec problems: every error or warning points at `file:line:col dotted.path`.

The compiler never lets a traceback reach the user for bad input. Every problem found while
loading, validating or expanding a spec becomes an `Issue`; they are collected, sorted by file and
line, and raised together as one `SpecError` so the user sees all of them at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")

# A path into the spec as the user wrote it: ("stages", 1, "max_response_tokens").
Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Loc:
    """Where a value (or key) stands in a YAML file. Lines and columns are 1-based."""

    file: str
    line: int
    col: int


@dataclass(frozen=True)
class Issue:
    path: Path
    message: str
    loc: Loc | None = None
    severity: Literal["error", "warning"] = "error"

    def render(self) -> str:
        where = f"{self.loc.file}:{self.loc.line}:{self.loc.col}" if self.loc else "<spec>"
        dotted = dotted_path(self.path) or "<root>"
        tag = "" if self.severity == "error" else "warning: "
        return f"{where} {dotted}: {tag}{self.message}"

    def sort_key(self) -> tuple:
        loc = self.loc or Loc("~", 0, 0)
        return (loc.file, loc.line, loc.col, dotted_path(self.path), self.message)


@dataclass
class SpecError(Exception):
    """One or more located errors in a spec (warnings ride along so they are not lost)."""

    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def render(self) -> str:
        return "\n".join(i.render() for i in sorted(self.issues, key=Issue.sort_key))


def dotted_path(path: Path) -> str:
    """("stages", 1, "max_response_tokens") -> "stages[1].max_response_tokens"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{str(part)!r}]"  # a key with spaces or control characters, shown unambiguously
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_dotted(text: str) -> Path:
    """Inverse of `dotted_path`: "stages[1].max_response_tokens" -> ("stages", 1, "max_response_tokens").

    Raises ValueError on malformed text (empty parts, unbalanced brackets). A bracketed part that is
    not an integer is kept as a string (a stage or dataset *name*: `stages[math-8k]`).
    """
    parts: list[str | int] = []
    for chunk in text.split("."):
        if not chunk:
            raise ValueError(f"empty part in path {text!r}")
        head, _, rest = chunk.partition("[")
        if head:
            parts.append(head)
        elif not rest:
            raise ValueError(f"empty part in path {text!r}")
        while rest:
            inner, sep, rest = rest.partition("]")
            if not sep or not inner:
                raise ValueError(f"unbalanced or empty [] in path {text!r}")
            parts.append(int(inner) if inner.lstrip("-").isdigit() else inner)
            if rest:
                if not rest.startswith("["):
                    raise ValueError(f"unexpected text after ] in path {text!r}")
                rest = rest[1:]
    return tuple(parts)
