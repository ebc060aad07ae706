"""Opt-in observers of the decoding round (design §8): the loop calls each observer's
``on_round`` once per round with the round's outcome and knows nothing of what they keep.

:class:`StatsRecorder` (on by default, ``generate(record_stats=False)`` turns it off) keeps
per-round statistics (:class:`~dspark_ext.decoding.stats.GenerationStats`); it copies the
verified lengths, the per-position flags and the confidence logits to the host, which are
host synchronisations on CUDA. Profiling is opt-in too (``generate(profile=True)``): a
:class:`~dspark_ext.profiling.PhaseTimer` times the phases the loop and the drafters mark.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ..drafters.base import DraftBlock
from ..ops import VerifyResult
from .stats import GenerationStats, RoundStats


@runtime_checkable
class RoundObserver(Protocol):
    def on_round(self, rows: Tensor, num_draft: Tensor, accepted: Tensor,
                 result: VerifyResult, block: DraftBlock) -> None:
        """rows: request indices (host) of the round's rows; num_draft: drafts verified per
        row (device); accepted: drafts accepted per row (host); result: the verdict;
        block: the drafter's proposals (width 0 when the round skipped drafting)."""


class StatsRecorder:
    """Records every round into :attr:`stats`."""

    def __init__(self, gamma: int):
        self.stats = GenerationStats(gamma)

    def on_round(self, rows: Tensor, num_draft: Tensor, accepted: Tensor,
                 result: VerifyResult, block: DraftBlock) -> None:
        flags = torch.full((rows.numel(), self.stats.gamma), -1, dtype=torch.int8)
        flags[:, : result.accept_flags.shape[1]] = result.accept_flags.cpu()
        conf = block.confidence_logits
        self.stats.rounds.append(RoundStats(rows.clone(), num_draft.cpu(), accepted, flags,
                                            None if conf is None else conf.float().cpu(),
                                            drafted=block.draft_tokens.shape[1] > 0))
