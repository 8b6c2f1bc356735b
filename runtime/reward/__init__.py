"""Rewards for RL on reasoning models: a timeout-safe math grader and an isolated code sandbox.

``grade_math(responses, references)`` and ``grade_code(responses, tests)`` each return one
``Grade`` per response, in input order, using every core by default. See ``mathgrade`` and
``codegrade`` for how, and ``sandbox`` for the isolation of model-written code.
"""

from .codegrade import grade_code
from .grade import Grade
from .mathgrade import grade_math

__all__ = ["Grade", "grade_math", "grade_code"]
