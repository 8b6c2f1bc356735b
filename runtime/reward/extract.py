"""Answer extraction: the part of a model response that the reward looks at.

What: the text after the last closing think tag; in it, for math, the answer the response commits
to (``math_answer``), and for code, the last fenced python block (``python_code``).
Why: the recipe (AceReason-Nemotron) rewards only the final answer; whatever the model wrote
while thinking must not count, and a response that never closed its thinking gets no reward.
How: plain string scanning, linear in the response length whatever it contains (no regex
backtracking, no rescanning per box on 32K-token responses): find the tag with ``rfind``, match
every brace pair once, then read the boxes off that table.

Math answers, in order (``math_answer``):
1. boxes. ``boxes="last_box"`` (the paper's rule): the content of the last well-formed, non-empty
   ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5``. ``boxes="all_boxes"``: the final group of
   boxes, for answers boxed one by one (roots, set members, tuple entries): walking left from the
   last box, an earlier box joins the group while the text between it and the group is shorter
   than 10 characters, or is shorter than 70 characters, contains a separator (``and``, ``or``,
   ``,``, ``;``) and no sentence break (a newline, or a period before a space), and the box differs
   from its right neighbour; repeats next to each other count once, and the group is joined with
   ``, `` in reading order (``$x = \\boxed{1}$ and $x = \\boxed{2}$`` -> ``1, 2``). This is
   math-verify's rule for several boxes (``latex2sympy2_extended.extract_boxed_content``) plus the
   sentence break, so that a corrected earlier attempt ("... \\boxed{3}. That fails the check, so
   after recomputing, it is \\boxed{5}") does not count; math-verify joins with a bare comma, which
   turns \\boxed{12} and \\boxed{345} into the number 12,345, hence the space. A boxed set in a
   group joins it as its members (``\\boxed{\\{1, 2\\}}`` and ``\\boxed{3}`` -> ``1, 2, 3``), as math-verify
   merges them. Hedging pays nothing: two boxed candidates form a two-element answer, which never
   equals one reference.
2. ``fallbacks``: the spec's regexes, tried in order on the final text when it has no box.
3. ``unboxed=True`` (off by default: the paper's rule is boxed-only): the answer stated without a
   box, see ``stated_answer``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

THINK_END = "</think>"
BOX_MODES = ("last_box", "all_boxes")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)
_BARE_TOKEN = re.compile(r"[^\s$]+")
_LANG = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")
_GROUP_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")
_SENTENCE_BREAK = re.compile(r"\n|\.\s")
_SET_BRACES = re.compile(r"^\\\{(.*)\\\}$", re.DOTALL)  # a boxed set joins a group as its members
_GROUP_CLOSE, _GROUP_NEAR = 10, 70  # characters between boxes of one group (math-verify's rule)


def final_text(response: str, think_end: str | None = THINK_END) -> str | None:
    """The text after the last ``think_end``; None when the tag is missing (no answer).

    ``think_end=None`` means the model does not think in tags: the whole response counts.
    """
    if think_end is None:
        return response
    cut = response.rfind(think_end)
    return None if cut < 0 else response[cut + len(think_end):]


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its ``}``. Escaped braces (``\\{``) are no group; an
    unclosed ``{`` has no entry. One pass over the special characters only."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_OR_ESCAPE.finditer(text):
        ch = m.group(0)
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


class _Box:
    """One box command in a text: where it starts and ends, and its (stripped) content."""

    __slots__ = ("start", "end", "content")

    def __init__(self, start: int, end: int, content: str):
        self.start, self.end, self.content = start, end, content


def _box_at(text: str, m: re.Match, pairs: dict[int, int]) -> _Box | None:
    """The box whose command ``m`` matched: ``{...}`` or the bare token of ``\\boxed 5``; None
    when it is truncated or empty."""
    j = m.end()
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        close = pairs.get(j)
        if close is None:
            return None
        content, end = text[j + 1:close], close + 1
    elif j > m.end():
        token = _BARE_TOKEN.match(text, j)
        if token is None:
            return None
        content, end = token.group(0), token.end()
    else:
        return None
    content = content.strip()
    return _Box(m.start(), end, content) if content else None


def _boxes_right_to_left(text: str):
    """Every box command, the rightmost first (inner boxes included): a ``_Box``, or None where
    the box is truncated or empty."""
    commands = list(_BOX_COMMAND.finditer(text))
    if not commands:
        return
    pairs = _brace_pairs(text)
    for m in reversed(commands):
        yield _box_at(text, m, pairs)


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5``."""
    return next((box.content for box in _boxes_right_to_left(text) if box is not None), None)


def final_box_group(text: str) -> str | None:
    """The final group of boxes, joined with ``, `` (see the module docstring), or None.

    The group starts at the last well-formed box; walking left, it ends at the first box that does
    not join it, is truncated, or encloses it.
    """
    group: list[_Box] = []
    for box in _boxes_right_to_left(text):
        if not group:
            if box is not None:
                group.append(box)
            continue
        if box is None or box.end > group[-1].start or not _joins(text, box, group[-1]):
            break
        if box.content != group[-1].content:
            group.append(box)
        else:
            group[-1] = box  # a repeat right next to it counts once; distances run from the repeat
    if len(group) < 2:
        return group[0].content if group else None
    return ", ".join(_SET_BRACES.sub(r"\1", box.content) for box in reversed(group))


def _joins(text: str, left: _Box, right: _Box) -> bool:
    between = text[left.end:right.start]
    if len(between) < _GROUP_CLOSE:
        return True
    return (left.content != right.content and len(between) < _GROUP_NEAR and bool(_GROUP_SEPARATOR.search(between))
            and not _SENTENCE_BREAK.search(between))


# ------------------------------------------------------------------ unboxed fallback

_STATEMENT = re.compile(r"\b(?:final\s+)?answers?\b(?:\s+(?:is|are))?\s*[:=]?[ \t]*", re.IGNORECASE)
_MATH_SPAN = re.compile(r"\$\$((?:\\\$|[^$])+?)\$\$|\$((?:\\\$|[^$])+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_LIST_WORD = re.compile(r"\b(?:and|or)\b")
_TRAILING_NUMBER = re.compile(
    r"(?<![\w.])(-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)\s*(%|\\%|percent)?\s*[.!]?\s*$", re.IGNORECASE)
_CURRENCY = re.compile(r"^\\?\$(?=\d)")  # "$1,234.00" outside math is money, not a math span
_MAX_STATED = 200  # characters: a longer "answer" is prose, not an answer


def stated_answer(text: str) -> str | None:
    """The final answer a text states without a box (the ``unboxed`` fallback), or None.

    Only for a text with no box command at all: a truncated or empty box is no answer. Markdown
    ``**`` is ignored. In order:
    1. after the last "answer(s) is/are" / "answer:" / "final answer is" (any case): the math span
       that starts right there (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``), else the rest
       of the sentence (up to ". " or the line's end) read as a line (below), or as it is when it
       is bare or a list ("9 and 10");
    2. else the last non-empty line, read as a line: the math span it ends with; else the number
       it ends with, with a percent sign if one follows ("So the total is 42." -> 42); else what
       follows its last "=" if that is bare; else the line if bare; else its last math span.
    Bare means at most 60 characters and no word of three or more letters outside a LaTeX command.
    A trailing ``.``, ``,``, ``;`` or ``!`` is dropped.
    """
    if _BOX_COMMAND.search(text):
        return None
    text = text.replace("**", "")
    statements = list(_STATEMENT.finditer(text))
    if statements:
        answer = _statement(text, statements[-1].end())
        if answer:
            return answer
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _line_answer(lines[-1]) if lines else None


def _statement(text: str, at: int) -> str | None:
    span = _MATH_SPAN.match(text, at)
    if span:
        return _clean(next(g for g in span.groups() if g is not None))
    end = _SENTENCE_END.search(text, at)
    sentence = _clean(text[at:end.start() if end else len(text)])
    if sentence and _bare(_LIST_WORD.sub("", sentence)):
        return sentence
    return _line_answer(sentence) if sentence else None


def _line_answer(line: str) -> str | None:
    spans = list(_MATH_SPAN.finditer(line))
    if spans and not line[spans[-1].end():].strip(" .,;!"):
        return _clean(next(g for g in spans[-1].groups() if g is not None))
    number = _TRAILING_NUMBER.search(line)
    if number:
        return number.group(1) + ("\\%" if number.group(2) else "")
    if "=" in line and _bare(_clean(line.rsplit("=", 1)[1])):
        return _clean(line.rsplit("=", 1)[1])
    if _bare(_clean(line)):
        return _clean(line)
    return _clean(next(g for g in spans[-1].groups() if g is not None)) if spans else None


def _clean(s: str | None) -> str | None:
    s = _CURRENCY.sub("", (s or "").strip().rstrip(".,;!").strip())
    return s if s and len(s) <= _MAX_STATED else None


def _bare(s: str | None) -> bool:
    return bool(s) and len(s) <= 60 and not _WORD.search(s)


# ------------------------------------------------------------------------ public API


def math_answer(
    response: str,
    think_end: str | None = THINK_END,
    fallbacks: Sequence[str | re.Pattern[str]] = (),
    *,
    boxes: str = "last_box",
    unboxed: bool = False,
) -> str | None:
    """The answer a math response commits to, or None (see the module docstring).

    ``fallbacks`` are regexes tried (in order) on the final text when it has no box; the last
    match of the first pattern that matches wins, its first group (or whole match) is the answer.
    """
    if boxes not in BOX_MODES:
        raise ValueError(f"boxes={boxes!r}: must be one of {BOX_MODES}")
    text = final_text(response, think_end)
    if text is None:
        return None
    boxed = last_boxed(text) if boxes == "last_box" else final_box_group(text)
    if boxed is not None:
        return boxed
    for pattern in fallbacks:
        matches = list(re.finditer(pattern, text))
        if matches:
            last = matches[-1]
            return (last.group(1) if last.groups() else last.group(0)).strip() or None
    return stated_answer(text) if unboxed else None


def python_code(response: str, think_end: str | None = THINK_END) -> str | None:
    """The last fenced python block (```python / ```py / bare ```) in the final text, or None."""
    text = final_text(response, think_end)
    if text is None:
        return None
    blocks = [body for lang, body in fenced_blocks(text) if lang.lower() in ("python", "py", "python3", "")]
    return blocks[-1] if blocks and blocks[-1].strip() else None


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ``` fence: the info string runs to the end of the opening line, the
    body to the next ```. One left-to-right pass with `str.find`: a regex scanning `[^\n]*` from
    every ``` was quadratic (150 KB of "```p " without a newline took 8 s in the trainer)."""
    out, at = [], 0
    while (start := text.find("```", at)) >= 0:
        newline = text.find("\n", start + 3)
        if newline < 0:
            break  # no later fence can have an opening line either
        end = text.find("```", newline + 1)
        if end < 0:
            break
        out.append((_LANG.match(text, start + 3, newline).group(1), text[newline + 1:end]))
        at = end + 3
    return out
