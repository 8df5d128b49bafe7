"""Learning-rate schedules by optimizer step: WSD (warmup, stable, decay), cosine and constant.

`lr(s)` is the rate used for optimizer step s (0-based) of a run of T steps:
- warmup over W steps: peak x (s + 1) / W, so step W - 1 runs at the peak;
- WSD: peak until the decay starts at step T - D, then min + (peak - min) x f(p) with p = (s - (T - D) + 1) / D, so
  the last step runs at exactly `min_lr`; f is 1 - p (linear), (1 + cos(pi p)) / 2 (cosine) or 1 - sqrt(p);
- cosine: after warmup, min + (peak - min) x (1 + cos(pi p)) / 2 with p = (s - W + 1) / (T - W);
- constant: the peak after warmup (long-context CPT runs at a constant rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["wsd", "cosine", "constant"]
DecayStyle = Literal["linear", "cosine", "minus_sqrt"]


def _decay_factor(style: DecayStyle, progress: float) -> float:
    if style == "linear":
        return 1.0 - progress
    if style == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - math.sqrt(progress)


@dataclass(frozen=True)
class LRSchedule:
    kind: ScheduleKind
    peak: float
    min_lr: float
    total_steps: int
    warmup_steps: int
    decay_steps: int = 0  # WSD only
    decay_style: DecayStyle = "linear"

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if self.warmup_steps < 0 or self.decay_steps < 0:
            raise ValueError("warmup and decay steps must be >= 0")
        if self.warmup_steps + self.decay_steps > self.total_steps:
            raise ValueError(
                f"warmup ({self.warmup_steps} steps) + decay ({self.decay_steps} steps) is longer than the run "
                f"({self.total_steps} steps)"
            )
        if self.kind == "cosine" and self.warmup_steps >= self.total_steps:
            raise ValueError(f"cosine needs steps after warmup ({self.warmup_steps} of {self.total_steps})")

    @property
    def decay_start(self) -> int:
        return self.total_steps - self.decay_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps + 1) / (self.total_steps - self.warmup_steps))
            return self.min_lr + (self.peak - self.min_lr) * _decay_factor("cosine", progress)
        if self.decay_steps == 0 or step < self.decay_start:
            return self.peak
        progress = min(1.0, (step - self.decay_start + 1) / self.decay_steps)
        return self.min_lr + (self.peak - self.min_lr) * _decay_factor(self.decay_style, progress)
