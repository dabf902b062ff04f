"""The run plan: how many steps a run takes, and when the periodic actions fall. Computed here, once.

``--epochs`` is converted to steps from the expected number of kept (subsampled) tokens per epoch and the centres
per step, and the total is rounded up to a multiple of ``--steps-per-call`` K (``--steps`` sets it directly, also
rounded up); the metrics report the epochs actually completed. ``--stop-at-step`` ends a run early (with a
checkpoint) without changing the plan, and so the schedule, so that ``--resume`` continues the same run. Calls run
K steps each: the periodic actions (``--checkpoint-every``, ``--eval-every``) happen after the call in which their
step falls.

>>> plan = RunPlan.from_flags(epochs=2.0, steps=None, steps_per_call=8, kept_tokens_per_epoch=1000.0,
...                           centres_per_step=30)
>>> plan.steps_per_epoch, plan.total_steps, plan.end_step(start_step=0, stop_at_step=40)
(33.333333333333336, 72, 40)
>>> plan.due(every=10, first=16, last=24), plan.due(every=10, first=40, last=48)
(True, False)
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["RunPlan"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """``total_steps`` (a multiple of ``steps_per_call``) and the expected ``steps_per_epoch``."""

    steps_per_call: int
    total_steps: int
    steps_per_epoch: float

    @classmethod
    def from_flags(cls, *, epochs: float, steps: int | None, steps_per_call: int, kept_tokens_per_epoch: float,
                   centres_per_step: int) -> RunPlan:
        """``--epochs`` / ``--steps`` / ``--steps-per-call`` for a corpus of ``kept_tokens_per_epoch`` expected
        centres per epoch, ``centres_per_step`` per step."""
        steps_per_epoch = kept_tokens_per_epoch / centres_per_step
        total = steps if steps is not None else max(1, math.ceil(epochs * steps_per_epoch))
        return cls(steps_per_call, math.ceil(total / steps_per_call) * steps_per_call, steps_per_epoch)

    @property
    def epochs(self) -> float:
        """The epochs the planned steps cover, expected."""
        return self.total_steps / self.steps_per_epoch

    def end_step(self, start_step: int, stop_at_step: int | None) -> int:
        """Where this run stops: the plan's end, or ``--stop-at-step`` (never before where it starts)."""
        return self.total_steps if stop_at_step is None else min(self.total_steps, max(stop_at_step, start_step))

    @staticmethod
    def due(every: int, first: int, last: int) -> bool:
        """Whether an action every ``every`` steps (0: never) falls in the call that ran steps ``first + 1 ..
        last``."""
        return bool(every) and last // every != first // every
