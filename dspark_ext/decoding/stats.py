"""Per-round statistics of speculative decoding, in the forms design §5 metrics and the
calibration module consume.

Each round records, for every request still running (``rows`` = request indices):
``verified`` l [R], ``accepted`` [R], ``flags`` int8 [R, K] (1 accepted / 0 rejected / -1 not
tested; block verification: the stop-test outcome), ``confidence_logits`` [R, K] or None.
Everything is on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor


@dataclass
class RoundStats:
    rows: Tensor
    verified: Tensor
    accepted: Tensor
    flags: Tensor
    confidence_logits: Optional[Tensor] = None
    drafted: bool = True  # False: the round skipped drafting (a plain target step)


class GenerationStats:
    """All rounds of one ``generate`` call. ``gamma`` is K, the width of ``flags`` (the
    keyword ``draft_len`` is its older name)."""

    def __init__(self, gamma: Optional[int] = None, rounds: Optional[List[RoundStats]] = None,
                 timings: Optional[Dict[str, float]] = None, *,
                 draft_len: Optional[int] = None):
        if (gamma is None) == (draft_len is None):
            raise TypeError("GenerationStats needs gamma (or its older name draft_len), once")
        self.gamma = int(gamma if gamma is not None else draft_len)
        self.rounds: List[RoundStats] = [] if rounds is None else list(rounds)
        self.timings: Dict[str, float] = {} if timings is None else dict(timings)

    @property
    def draft_len(self) -> int:
        return self.gamma

    def __repr__(self) -> str:
        return f"GenerationStats(gamma={self.gamma}, rounds={len(self.rounds)})"

    @property
    def num_rounds(self) -> int:
        return len(self.rounds)

    def _cat(self, name: str) -> Tensor:
        parts = [getattr(r, name) for r in self.rounds]
        if not parts:
            return torch.zeros((0, self.gamma) if name in ("flags", "confidence_logits")
                               else (0,), dtype=torch.int64)
        return torch.cat(parts)

    def verified(self) -> Tensor:
        return self._cat("verified")

    def accepted(self) -> Tensor:
        return self._cat("accepted")

    def accepted_length(self) -> float:
        """tau: mean tokens per round including the correction/bonus token (design §5)."""
        a = self.accepted()
        return float(a.double().mean() + 1) if a.numel() else float("nan")

    def calibration_inputs(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(confidence_logits [N, K], survived [N, K], valid [N, K])`` over every
        (request, round): survived = draft k accepted, valid = draft k verified; exactly what
        :func:`dspark_ext.fit_sts` and :func:`calibration.calibration_report` take."""
        drafted = [r for r in self.rounds if r.drafted]  # skipped rounds have no confidences
        if any(r.confidence_logits is None for r in drafted):
            raise ValueError("the drafter has no confidence head: no confidence logits")
        if not drafted:
            empty = torch.zeros((0, self.gamma), dtype=torch.bool)
            return torch.zeros((0, self.gamma)), empty, empty
        z = torch.cat([r.confidence_logits for r in drafted]).float()
        k = torch.arange(self.gamma)[None, :]
        survived = k < torch.cat([r.accepted for r in drafted])[:, None]
        valid = k < torch.cat([r.verified for r in drafted])[:, None]
        return z, survived, valid

    def conditional_acceptance(self) -> Tensor:
        """Per position k: among verified drafts whose positions < k were all accepted, the
        fraction where k was accepted (paper Fig. 2). float64 [K] (NaN where none)."""
        k = torch.arange(self.gamma)[None, :]
        acc, ver = self.accepted()[:, None], self.verified()[:, None]
        reached = (k <= acc) & (k < ver)
        ok = (k < acc) & reached
        return ok.sum(0).double() / reached.sum(0).double()

    def prefix_survival(self) -> Tensor:
        """accept@k = #(accepted > k) / #(verified > k), float64 [K]."""
        k = torch.arange(self.gamma)[None, :]
        acc, ver = self.accepted()[:, None], self.verified()[:, None]
        return (acc > k).sum(0).double() / (ver > k).sum(0).double()

    def summary(self) -> Dict[str, object]:
        return {"rounds": self.num_rounds,
                "accepted_length": self.accepted_length(),
                "mean_verified": float(self.verified().double().mean()) if self.rounds else 0.0,
                "conditional_acceptance": self.conditional_acceptance().tolist(),
                "prefix_survival": self.prefix_survival().tolist(),
                "timings": dict(self.timings)}
