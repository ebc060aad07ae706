"""Anchor sampling for the teacher-forced training step (design §7; DeepSpec's
``sample_anchor_positions``).

A position p can anchor a block when its token and the next one are both supervised
(``loss_mask[p]`` and ``loss_mask[p + 1]``): the block at p predicts p + 1, p + 2, ... and
:func:`dspark_ext.drafters.dspark.block_targets` then supervises the contiguous prefix of the
block that stays inside the sequence and the loss mask. Up to ``num_anchors`` anchors are drawn
uniformly without replacement among the candidates, sorted; rows with fewer candidates pad
with dropped blocks (``block_keep`` False, which see and predict nothing).

Each row draws from its own generator seeded by the caller (the trainer derives it from the
run seed, the epoch and the example's index), so a sequence gets the same anchors whatever
batch, micro-batch or process it lands in: what makes 1-process and 2-process runs equal.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["anchor_candidates", "sample_anchors"]


def anchor_candidates(loss_mask: Tensor) -> Tensor:
    """bool [B, S]: positions whose token and next token are supervised (last column False)."""
    sup = loss_mask > 0.5
    out = torch.zeros_like(sup)
    out[:, :-1] = sup[:, :-1] & sup[:, 1:]
    return out


def sample_anchors(loss_mask: Tensor, num_anchors: int,
                   seeds: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """(anchors int64 [B, N], block_keep bool [B, N]) with N = min(num_anchors, the most
    candidates of any row) (at least 1). ``seeds``: one int per row."""
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be >= 1, got {num_anchors}")
    cand = anchor_candidates(loss_mask).cpu()
    b = cand.shape[0]
    if len(seeds) != b:
        raise ValueError(f"seeds must hold one seed per row ({b}), got {len(seeds)}")
    counts = cand.sum(1)
    n = max(1, min(num_anchors, int(counts.max()) if b else 0))
    anchors = torch.zeros(b, n, dtype=torch.int64)
    keep = torch.zeros(b, n, dtype=torch.bool)
    for row in range(b):
        pos = cand[row].nonzero().flatten()
        if pos.numel() == 0:
            continue
        g = torch.Generator().manual_seed(int(seeds[row]))
        take = pos[torch.randperm(pos.numel(), generator=g)[:n]].sort().values
        anchors[row, :take.numel()] = take
        keep[row, :take.numel()] = True
    return anchors.to(loss_mask.device), keep.to(loss_mask.device)
