"""Length policies: how many of the drafter's K proposals each row sends to the target.

A policy is called once per round with the drafter's :class:`DraftBlock` and the per-row cap
``max_len`` (int64 [B]: K, the drafter's own ``num_valid`` and the tokens the row may still
emit) and returns ``lengths`` int64 [B] with ``0 <= lengths <= max_len``.

* :class:`FixedLength` -- verify gamma drafts (the classic setting).
* :class:`StaticThreshold` -- verify the prefix whose calibrated survival a_k =
  prod_{i<=k} sigmoid(z_i / T_i) stays at or above a threshold (paper Fig. 5).
* :class:`Scheduled` -- the hardware-aware prefix scheduler (design §6): Algorithm 1 with the
  early stop (``mode="causal"``) or the asynchronous scheduler (``mode="async"``) over an
  :class:`~dspark_ext.scheduler.SPSProfile` measured on the target. It couples the rows of a
  batch: a row's length depends on the other rows' confidences (still lossless).

Every policy here is lossless: lengths depend only on the drafter's outputs of the round
(causal variant) or of earlier rounds (async capacity), never on the target's verdict.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .. import scheduler as _sched
from ..calibration import apply_sts
from ..drafters.base import DraftBlock


def _confidences(block: DraftBlock, temperatures: Optional[Tensor], who: str) -> Tensor:
    z = block.confidence_logits
    if z is None:
        raise ValueError(f"{who} needs a drafter with a confidence head (the drafter returned "
                         "confidence_logits=None); use FixedLength instead")
    z = z.float()
    if temperatures is None:
        return torch.sigmoid(z)
    return apply_sts(z, torch.as_tensor(temperatures, dtype=torch.float32,
                                        device=z.device)[: z.shape[-1]])


class FixedLength:
    """Verify ``gamma`` drafts per row (None: all K the drafter proposed)."""

    def __init__(self, gamma: Optional[int] = None):
        if gamma is not None and gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def reset(self) -> None:
        pass

    def __call__(self, block: DraftBlock, max_len: Tensor) -> Tensor:
        if self.gamma is None:
            return max_len
        return _sched.fixed_length(max_len.shape[0], self.gamma, max_len)


class StaticThreshold:
    """Verify the drafts whose prefix survival a_k (STS-calibrated when ``temperatures`` [K]
    are given) is at least ``threshold``."""

    def __init__(self, threshold: float, temperatures: Optional[Sequence[float]] = None):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.temperatures = None if temperatures is None else torch.as_tensor(
            temperatures, dtype=torch.float32)

    def reset(self) -> None:
        pass

    def __call__(self, block: DraftBlock, max_len: Tensor) -> Tensor:
        c = _confidences(block, self.temperatures, "StaticThreshold")
        return _sched.static_threshold(c, self.threshold, max_len)


class Scheduled:
    """The prefix scheduler over ``sps`` (an :class:`SPSProfile`, or a table indexed by batch
    tokens), with STS ``temperatures`` [K] applied to the confidence logits.

    ``draft_time`` (seconds of one draft call, a constant or a function of the rows) turns on
    the skip rule (:class:`~dspark_ext.scheduler.DraftGate`): a round drafts only when the
    confidences of the last drafted round say that a drafted round, drafter included, beats
    a plain target step; otherwise the decoder runs plain steps, probing again every
    ``probe_every`` rounds (doubling while it keeps losing). ``draft_time="measured"``: the
    skip rule from the rounds' own measured times instead
    (:class:`~dspark_ext.scheduler.MeasuredGate`: drafted rounds against plain steps, in
    tokens per second), robust to an SPS curve or drafter time measured on a busy machine.
    Without it every round drafts."""

    def __init__(self, sps: Union["_sched.SPSProfile", Tensor],
                 temperatures: Optional[Sequence[float]] = None, mode: str = "causal",
                 max_batch_tokens: Optional[int] = None,
                 draft_time: Optional["_sched.DraftTime"] = None, probe_every: int = 4):
        if mode not in ("causal", "async"):
            raise ValueError(f"mode must be 'causal' or 'async', got {mode!r}")
        self.sps = sps
        self.mode = mode
        self.max_batch_tokens = max_batch_tokens
        self.temperatures = None if temperatures is None else torch.as_tensor(
            temperatures, dtype=torch.float32)
        self._tables: dict = {}
        self._async: Optional[_sched.AsyncScheduler] = None
        if draft_time is None:
            self.gate = None
        elif isinstance(draft_time, str):
            if draft_time != "measured":
                raise ValueError(f"draft_time must be seconds, a function of the rows or "
                                 f"'measured', got {draft_time!r}")
            self.gate = _sched.MeasuredGate(probe_every)
        else:
            self.gate = _sched.DraftGate(draft_time, probe_every)

    def reset(self) -> None:
        self._async = None
        if self.gate is not None:
            self.gate.reset()

    def draft_this_round(self, rows: int) -> bool:
        """Asked by the decoder before each round (see the class docstring)."""
        return True if self.gate is None else self.gate.draft_this_round(rows)

    def observe_round(self, drafted: bool, tokens: int, seconds: float) -> None:
        """Told by the decoder after each round: whether it drafted, the tokens it emitted
        and its wall time."""
        if self.gate is not None:
            self.gate.observe_round(drafted, tokens, seconds)

    def _table(self, rows: int, k: int, device: torch.device) -> Tensor:
        if isinstance(self.sps, Tensor):
            return self.sps.to(device)
        size = rows * (k + 1)
        if self.max_batch_tokens is not None:
            size = min(size, self.max_batch_tokens)
        key = (size, device)
        if key not in self._tables:
            self._tables[key] = self.sps.table(size, device=device)
        return self._tables[key]

    def __call__(self, block: DraftBlock, max_len: Tensor) -> Tensor:
        c = _confidences(block, self.temperatures, "Scheduled").to(torch.float64)
        table = self._table(c.shape[0], c.shape[1], c.device)
        if self.gate is not None:
            self.gate.observe(c, table, max_len)
        if self.mode == "causal":
            return _sched.schedule_causal(c, table, max_len,
                                          max_batch_tokens=self.max_batch_tokens).lengths
        if self._async is None:
            self._async = _sched.AsyncScheduler(table, max_batch_tokens=self.max_batch_tokens)
        # The async capacity is a count over the whole batch: rows finishing between rounds
        # only make it conservative (fewer candidates than when it was computed).
        return self._async.step(c, max_len).lengths
