"""The asynchronous scheduler of design §6 (paper §5.2) across decoding steps."""
from __future__ import annotations

from collections import deque
from typing import Optional

import torch

from ..ops.schedule import (ScheduleResult, SpsLike, schedule_capacity, schedule_causal,
                            schedule_global)

__all__ = ["AsyncScheduler"]


class AsyncScheduler:
    """The asynchronous scheduler of §5.2 across steps.

    ``step(confidence)`` returns this step's lengths: the top-K_cap current candidates, where
    K_cap is the number of drafts the unconstrained search admitted on the confidences passed
    ``delay`` (default 2) steps earlier. The first ``delay`` steps use ``initial_capacity``, or
    the causal scheduler when it is None. Capacities stay on the device (no host sync).

    >>> sched = AsyncScheduler(sps_table)
    >>> for step in ...: lengths = sched.step(confidences).lengths
    """

    def __init__(self, sps: SpsLike, *, delay: int = 2, initial_capacity: Optional[int] = None,
                 max_batch_tokens: Optional[int] = None):
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        self.sps = sps
        self.delay = delay
        self.initial_capacity = initial_capacity
        self.max_batch_tokens = max_batch_tokens
        self._capacities: deque = deque()

    def reset(self) -> None:
        self._capacities.clear()

    def step(self, confidence: torch.Tensor,
             max_len: Optional[torch.Tensor] = None) -> ScheduleResult:
        if len(self._capacities) >= self.delay:
            res = schedule_capacity(confidence, self.sps, self._capacities.popleft(), max_len,
                                    max_batch_tokens=self.max_batch_tokens)
        elif self.initial_capacity is not None:
            res = schedule_capacity(confidence, self.sps, self.initial_capacity, max_len,
                                    max_batch_tokens=self.max_batch_tokens)
        else:
            res = schedule_causal(confidence, self.sps, max_len,
                                  max_batch_tokens=self.max_batch_tokens)
        cap = schedule_global(confidence, self.sps, max_len,
                              max_batch_tokens=self.max_batch_tokens).num_admitted
        self._capacities.append(cap)
        return res
