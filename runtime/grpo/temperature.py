"""Rollout temperature: constant, per-epoch schedule, or an entropy-target controller.

The entropy target (AceReason 1.1) adjusts the temperature so that the mean token entropy of the
temperature-adjusted sampling distribution stays near a target (about 0.3): after each step,
T <- clip(T * exp(gain * (target - H) / target), min, max). Higher T raises entropy, so the update
moves T up when H is below target and down when above. The controller's state is saved in
checkpoints so a resumed run continues with the same temperature.
"""

from __future__ import annotations

import math
from typing import Any


class Temperature:
    def __init__(self, cfg: dict[str, Any]):
        self.kind = cfg["kind"]
        self.cfg = cfg
        self.current = float(cfg.get("initial", cfg.get("value", (cfg.get("values") or [1.0])[0])))

    def at(self, epoch: int) -> float:
        """Temperature for the next rollout."""
        if self.kind == "constant":
            return float(self.cfg["value"])
        if self.kind == "per_epoch":
            values = self.cfg["values"]
            return float(values[min(epoch, len(values) - 1)])
        return self.current

    def observe(self, entropy: float) -> None:
        """Feed the measured mean token entropy of the last rollout (only the entropy target uses it)."""
        if self.kind != "entropy_target" or not math.isfinite(entropy):
            return
        c = self.cfg
        step = math.exp(c["gain"] * (c["target"] - entropy) / c["target"])
        self.current = min(c["max"], max(c["min"], self.current * step))

    def state(self) -> dict[str, Any]:
        return {"current": self.current}

    def load(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])


def per_epoch(value: dict[str, Any], epoch: int) -> int:
    """A constant or per-epoch integer schedule (group size) at `epoch`."""
    if value["kind"] == "constant":
        return int(value["value"])
    values = value["values"]
    return int(values[min(epoch, len(values) - 1)])
