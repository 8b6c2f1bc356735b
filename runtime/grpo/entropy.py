"""The entropy-bonus coefficient of a train stage: fixed, or Skywork-OR1's adaptive control.

What: `EntropyController` holds the coefficient the next step's loss uses (`applied`: the bonus is
`- applied x token entropy`), moves it after every step from the entropy that step measured, and
saves and restores its state with the checkpoint, so a resumed run continues the same sequence.

Why: a fixed bonus either does nothing or blows entropy up; Skywork-OR1 keeps the policy's entropy
near a target by nudging the coefficient and switching the bonus off while entropy is above target.

How (the rule of Skywork-OR1's `EntController.update`, SkyworkAI/Skywork-OR1
verl/trainer/ppo/core_algos.py lines 56-74 at commit 64e96af, called once per train step in verl/trainer/ppo/ray_trainer.py
line 1169 with the step's entropy, and applied as `entropy_coeff * entropy_loss_enabled` in
verl/workers/actor/dp_actor.py line 284):
- the coefficient starts at `algorithm.entropy_coef`, and step 1 applies it (their
  `entropy_loss_enabled` starts at 1);
- after a step with entropy H: coefficient += step if H < target else -= step, then clamped to
  [min_coef, max_coef];
- the next step applies the bonus only if H < target (else its coefficient is 0 for that step,
  while the stored value still moves).
Skywork measures H as -mean(log p) of the sampled tokens under the old policy (a Monte-Carlo
estimate of the entropy); rlspec passes the exact token entropy of its first optimisation pass
(the `entropy` metric), the same quantity without sampling noise.
"""

from __future__ import annotations

from typing import Any

from rlspec.compiler.spec import AdaptiveEntropy


class EntropyController:
    """The entropy coefficient: `initial` forever when `rule` is None, else Skywork-OR1's control."""

    def __init__(self, initial: float, rule: AdaptiveEntropy | None):
        self.rule = rule
        self.coef = initial
        self.bonus_on = True

    @property
    def applied(self) -> float:
        """The coefficient this step's loss uses (0 while the bonus is switched off)."""
        return self.coef if self.bonus_on else 0.0

    def observe(self, entropy: float) -> None:
        """Move the coefficient after a step whose policy entropy was `entropy` (nats per token)."""
        if self.rule is None:
            return
        r = self.rule
        below = entropy < r.target
        self.coef = min(max(self.coef + (r.step if below else -r.step), r.min_coef), r.max_coef)
        self.bonus_on = below

    def metrics(self) -> dict[str, float]:
        """`entropy_coef` (the controller's value this step) and `entropy_coef_applied` (what the
        loss used: 0 while the bonus is off), as Skywork-OR1 logs `entropy_coeff` and its realised value."""
        return {"entropy_coef": self.coef, "entropy_coef_applied": self.applied}

    def state(self) -> dict[str, Any]:
        return {"coef": self.coef, "bonus_on": self.bonus_on}

    def load(self, state: dict[str, Any]) -> None:
        self.coef = float(state["coef"])
        self.bonus_on = bool(state["bonus_on"])
