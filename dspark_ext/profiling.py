"""Per-phase wall-clock timing of decoding rounds, off unless a :class:`PhaseTimer` is active.

Code marks its phases with ``with phase("draft"):``; nested phases are recorded separately
(``markov`` inside ``draft``), and :meth:`PhaseTimer.exclusive` subtracts children. On CUDA
the timer synchronises at phase edges (only while profiling: the decoder never does).
"""
from __future__ import annotations

import contextvars
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, Optional

import torch

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("dspark_phase_timer", default=None)


class PhaseTimer:
    def __init__(self, sync_cuda: bool = True):
        self.totals: Dict[str, float] = defaultdict(float)
        self.parents: Dict[str, Optional[str]] = {}
        self._stack: list = []
        self.sync_cuda = sync_cuda and torch.cuda.is_available()
        self._token = None

    def __enter__(self) -> "PhaseTimer":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def _sync(self) -> None:
        if self.sync_cuda and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def exclusive(self) -> Dict[str, float]:
        """Seconds per phase, children's time subtracted from their parents'."""
        out = dict(self.totals)
        for child, parent in self.parents.items():
            if parent is not None:
                out[parent] -= self.totals[child]
        return out


@contextmanager
def phase(name: str):
    timer: Optional[PhaseTimer] = _ACTIVE.get()
    if timer is None:
        yield
        return
    timer._sync()
    timer.parents.setdefault(name, timer._stack[-1] if timer._stack else None)
    timer._stack.append(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timer._sync()
        timer.totals[name] += time.perf_counter() - t0
        timer._stack.pop()
