"""The example's reward: plain Python, no rlspec import. rlspec runs it in worker processes.

`correct` has veRL's signature (one response; a float or a dict with `score`); `formatted` has TRL's
(lists in, a list of floats out). The spec weights them: 1.0 x correct + 0.2 x formatted.
"""

import re

BOX = re.compile(r"\\boxed\{([^{}]*)\}")


def correct(data_source, solution_str, ground_truth, extra_info=None):
    """1 when the last \\boxed{} after the think block holds the answer; the dict's other keys are logged."""
    final = solution_str.rsplit("</think>", 1)[-1]
    boxes = BOX.findall(final)
    return {"score": float(bool(boxes) and boxes[-1].strip() == str(ground_truth)), "boxed": bool(boxes)}


def formatted(prompts, completions, **columns):
    """1 for a closed think block followed by a box, else 0."""
    return [float("</think>" in c and BOX.search(c.rsplit("</think>", 1)[-1]) is not None) for c in completions]
