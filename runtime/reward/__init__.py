"""Rewards for RL on reasoning models: a timeout-safe math grader and an isolated code sandbox.

``grade_math(responses, references)`` and ``grade_code(responses, tests)`` each return one
``Grade`` per response, in input order, using every core by default::

    from rlspec.runtime.reward import grade_code, grade_math
    grade_math(["<think>...</think> so $\\boxed{\\frac12}$"], ["0.5"])[0].status        # "correct"
    grade_code(["</think>```python\\nprint(2 * int(input()))\\n```"], [[{"input": "3", "output": "6"}]])

Modules: ``extract`` (what counts as the answer), ``exact`` (the fast path: forms it decides
exactly as math-verify would, deferring the rest), ``mathgrade`` (screening, exact path + math-verify in
``killpool``, a process pool that kills one stuck item), ``latexnum`` (LaTeX arithmetic the exact
path can evaluate), ``codegrade`` (test formats, comparison), ``sandbox`` and ``sandbox_worker``
(isolation of model-written code: a clean zygote, a fresh process and namespaces per program),
``memcg`` (a memory cgroup per sandbox worker, so a program's limit covers all its processes).
Statuses (``grade.py``): math ``refused`` is an answer over a parsing limit (the policy's doing),
``error`` one the grader could not grade; code ``killed`` is a program ended by a signal.
Neither grader raises for a response. Benchmarks: ``perf/math_grader.py``, ``perf/math_agreement.py``,
``perf/sandbox.py``.
"""

from .codegrade import grade_code
from .grade import Grade
from .mathgrade import grade_math

__all__ = ["Grade", "grade_math", "grade_code"]
