"""Answer extraction: the part of a model response that the reward looks at.

What: the text after the last closing think tag, the last ``\\boxed{...}`` (or ``\\fbox``) in it
for math, and the last fenced python block in it for code.
Why: the recipe (AceReason-Nemotron) rewards only the final answer; whatever the model wrote
while thinking must not count, and a response that never closed its thinking gets no reward.
How: plain string scanning (no regex backtracking on 32K-token responses): find the tag with
``rfind``, then walk braces to cut out the boxed group with nesting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

THINK_END = "</think>"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def final_text(response: str, think_end: str | None = THINK_END) -> str | None:
    """The text after the last ``think_end``; None when the tag is missing (no answer).

    ``think_end=None`` means the model does not think in tags: the whole response counts.
    """
    if think_end is None:
        return response
    cut = response.rfind(think_end)
    return None if cut < 0 else response[cut + len(think_end):]


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == '{'``, or None if unbalanced."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # an escaped character ("\{", "\}") never opens or closes a group
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def _box_argument(text: str, i: int) -> str | None:
    """Argument of a box command whose name ends at ``i``: ``{...}``, or the token in ``\\boxed 5``."""
    j = i
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        return _braced(text, j)
    if j > i:
        m = re.match(r"[^\s$]+", text[j:])
        return m.group(0) if m else None
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5``."""
    end = len(text)
    while True:
        at, name = max((text.rfind(c, 0, end), c) for c in _BOX_COMMANDS)
        if at < 0:
            return None
        arg = _box_argument(text, at + len(name))
        if arg is not None and arg.strip():
            return arg.strip()
        end = at  # truncated or empty box: look further left


def math_answer(
    response: str,
    think_end: str | None = THINK_END,
    fallbacks: Sequence[str | re.Pattern[str]] = (),
) -> str | None:
    """The answer a math response commits to, or None.

    ``fallbacks`` are regexes tried (in order) on the final text when it has no box; the last
    match of the first pattern that matches wins, its first group (or whole match) is the answer.
    """
    text = final_text(response, think_end)
    if text is None:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in fallbacks:
        matches = list(re.finditer(pattern, text))
        if matches:
            last = matches[-1]
            return (last.group(1) if last.groups() else last.group(0)).strip() or None
    return None


def python_code(response: str, think_end: str | None = THINK_END) -> str | None:
    """The last fenced python block (```python / ```py / bare ```) in the final text, or None."""
    text = final_text(response, think_end)
    if text is None:
        return None
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in ("python", "py", "python3", "")]
    return blocks[-1] if blocks and blocks[-1].strip() else None
