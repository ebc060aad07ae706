"""The skip rule of design §6: before a round, decide whether drafting can pay at all.

The prefix scheduler chooses how many drafts to verify once they exist; by then the drafter's
cost is spent. Where speculation cannot pay (a compute-bound batch, a drafter the target
disagrees with), the cheapest round is a plain target step with no draft at all. The gate
decides that from what earlier rounds measured, so the decision never looks at the current
round's drafts or verdict (the lengths stay lossless; skipping changes only how fast tokens
come):

* after each drafted round, with its calibrated confidences ``c`` [R, K], the expected rate of
  a drafted round is ``max_L tau(L) / (t_step(R + L) + t_draft(R))`` -- the causal scheduler
  run over the *effective* curve ``1 / (1 / SPS(B) + t_draft(R))``, which adds the drafter's
  time to every step -- and the rate of a plain step is ``R * SPS(R)``;
* the next round drafts iff the first is larger;
* while it says "skip", the rounds are plain steps; every ``interval`` skipped rounds one
  round drafts again (a probe) to refresh the confidences. A probe that still says "skip"
  doubles the interval (up to ``max_interval``), one that says "draft" resets it.

The verdict is a device scalar read on the host at the start of the next round (after the
round's verdict copy, so on CUDA it costs no extra wait).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor

from ..ops.schedule import schedule_causal

__all__ = ["DraftGate", "DraftTime"]

# Seconds of one draft call over R rows: a constant, or a function of R.
DraftTime = Union[float, Callable[[int], float]]


class DraftGate:
    def __init__(self, draft_time: DraftTime, probe_every: int = 4, max_interval: int = 64):
        if not callable(draft_time):
            t = float(draft_time)
            if not t >= 0.0:
                raise ValueError(f"draft_time must be seconds >= 0 (or a function of the rows), "
                                 f"got {draft_time!r}")
        if not isinstance(probe_every, int) or probe_every < 1:
            raise ValueError(f"probe_every must be an int >= 1, got {probe_every!r}")
        if not isinstance(max_interval, int) or max_interval < probe_every:
            raise ValueError(f"max_interval must be an int >= probe_every = {probe_every}, got "
                             f"{max_interval!r}")
        self.draft_time = draft_time
        self.probe_every, self.max_interval = probe_every, max_interval
        self.reset()

    def reset(self) -> None:
        self._verdict: Optional[Tensor] = None   # bool []: the last drafted round's answer
        self._interval = self.probe_every
        self._skipped = 0
        self._probing = False
        self.skipped_rounds = 0                  # plain steps taken (for reports)

    def _seconds(self, rows: int) -> float:
        t = self.draft_time(rows) if callable(self.draft_time) else self.draft_time
        return float(t)

    def observe(self, confidence: Tensor, table: Tensor, max_len: Optional[Tensor]) -> None:
        """After a drafted round: ``confidence`` [R, K] calibrated (float64), ``table`` the
        target's SPS by batch tokens (float64 [>= R * (K + 1) + 1])."""
        rows = confidence.shape[0]
        if rows == 0:
            return
        effective = 1.0 / (1.0 / table + self._seconds(rows))
        spec = schedule_causal(confidence, effective, max_len).throughput
        self._verdict = spec > rows * table[rows]

    def observe_round(self, drafted: bool, tokens: int, seconds: float) -> None:
        """Measured round times: not used here (the SPS curve and draft_time model them;
        :class:`~dspark_ext.scheduler.MeasuredGate` measures instead)."""

    def draft_this_round(self, rows: int) -> bool:
        if self._verdict is None:
            return True
        pays = bool(self._verdict)
        if self._probing:  # the last round was a probe: adapt the interval
            self._probing = False
            self._interval = self.probe_every if pays else min(2 * self._interval,
                                                               self.max_interval)
        if pays:
            self._skipped = 0
            return True
        if self._skipped < self._interval:
            self._skipped += 1
            self.skipped_rounds += 1
            return False
        self._skipped = 0
        self._probing = True
        return True
