"""The skip rule from measured round times (design §6): draft or run a plain target step,
whichever the rounds themselves showed to emit tokens faster.

:class:`DraftGate` predicts from the SPS curve and a drafter time given up front; both are
measured once, before decoding, and on a shared or busy machine they can be off by tens of
percent, which is enough to pick the losing side near the crossover. This gate needs no
model: the decoder reports every round's wall time and emitted tokens, and the gate keeps a
running rate (tokens per second, exponentially smoothed) for drafted rounds and for plain
steps. It plays the faster one; every ``interval`` rounds it plays the other once (a probe)
to refresh that rate. A probe that confirms the choice doubles the interval (up to
``max_interval``); one that reverses it switches and resets the interval. The first two
rounds measure both.

Lossless like every length policy: a round's decision depends only on earlier rounds (their
times and counts), never on its own drafts or randomness. Round times are taken on the host
around the whole round, which ends with the verdict's device-to-host copy, so on CUDA they
include the device work too.
"""
from __future__ import annotations

from typing import Dict, Optional

__all__ = ["MeasuredGate"]


class MeasuredGate:
    def __init__(self, probe_every: int = 4, max_interval: int = 64, smoothing: float = 0.3):
        if not isinstance(probe_every, int) or probe_every < 1:
            raise ValueError(f"probe_every must be an int >= 1, got {probe_every!r}")
        if not isinstance(max_interval, int) or max_interval < probe_every:
            raise ValueError(f"max_interval must be an int >= probe_every = {probe_every}, got "
                             f"{max_interval!r}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        self.probe_every, self.max_interval, self.smoothing = probe_every, max_interval, smoothing
        self.reset()

    def reset(self) -> None:
        self.rates: Dict[bool, Optional[float]] = {True: None, False: None}  # tokens / s
        self._interval = self.probe_every
        self._since = 0          # rounds played on the preferred side since the last probe
        self._probing = False    # the round just decided is a probe
        self._choice = True      # the side the round just decided plays
        self.skipped_rounds = 0  # plain steps taken (for reports)

    def _preferred(self) -> bool:
        drafted, plain = self.rates[True], self.rates[False]
        return drafted >= plain

    def draft_this_round(self, rows: int) -> bool:
        if self.rates[True] is None or self.rates[False] is None:
            choice, self._probing = self.rates[True] is None, False  # measure both sides first
        elif self._since >= self._interval:
            choice, self._probing = not self._preferred(), True
        else:
            choice, self._probing = self._preferred(), False
        self._choice = choice
        if not choice:
            self.skipped_rounds += 1
        return choice

    def observe_round(self, drafted: bool, tokens: int, seconds: float) -> None:
        """The round just played: whether it drafted, the tokens it emitted, its wall time."""
        if seconds <= 0.0 or tokens <= 0:
            return
        rate, old = tokens / seconds, self.rates[drafted]
        before = None if self.rates[True] is None or self.rates[False] is None \
            else self._preferred()
        self.rates[drafted] = rate if old is None else old + self.smoothing * (rate - old)
        if self._probing:
            self._probing = False
            self._since = 0
            self._interval = (min(2 * self._interval, self.max_interval)
                              if self._preferred() == before else self.probe_every)
        else:
            self._since += 1

    def observe(self, confidence, table, max_len) -> None:
        """Calibrated confidences of a drafted round: not needed here (the rates say it)."""
