"""Rollout temperature: a constant or per-epoch schedule, or an entropy-target controller.

The entropy target (AceReason 1.1) adjusts the temperature so that the mean token entropy of the
temperature-adjusted sampling distribution stays near a target (about 0.3): after each step,
T <- clip(T * exp(gain * (target - H) / target), min, max). Higher T raises entropy, so the update
moves T up when H is below target and down when above. The controller's state is saved in
checkpoints so a resumed run continues with the same temperature. Schedules come from the spec's
own models (`ConstantTemperature.at(epoch)`, ...): one implementation for temperature and group size.
"""

from __future__ import annotations

import math
from typing import Any

from rlspec.compiler.spec import EntropyTargetTemperature, Temperature


class TemperatureController:
    def __init__(self, schedule: Temperature):
        self.schedule = schedule
        self.current = schedule.initial if isinstance(schedule, EntropyTargetTemperature) else schedule.at(0)

    def at(self, epoch: int) -> float:
        """Temperature for the next rollout."""
        if isinstance(self.schedule, EntropyTargetTemperature):
            return self.current
        return float(self.schedule.at(epoch))

    def observe(self, entropy: float) -> None:
        """Feed the measured mean token entropy of the last rollout (only the entropy target uses it)."""
        c = self.schedule
        if not isinstance(c, EntropyTargetTemperature) or not math.isfinite(entropy):
            return
        step = math.exp(c.gain * (c.target - entropy) / c.target)
        self.current = min(c.max, max(c.min, self.current * step))

    def state(self) -> dict[str, Any]:
        return {"current": self.current}

    def load(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])
