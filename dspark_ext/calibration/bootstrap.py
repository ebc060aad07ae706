"""Per-position ECE of the prefix-survival prediction with a bootstrap 95% interval, so a
1.5% ECE can be told from noise. Positions with fewer than ``min_rounds`` verified rounds
are reported (ECE and interval) but not judged (``judged`` False). Rounds are resampled
with replacement, ``samples`` times, from a generator seeded by ``seed`` (deterministic).
"""
from __future__ import annotations

from typing import Dict, List

import torch

from .metrics import ECE_BINS, _as_inputs, _bin_index

__all__ = ["ece_with_interval"]


def _ece_rows(pred: torch.Tensor, label: torch.Tensor, bins: int) -> torch.Tensor:
    """ECE of each row of pred / label [B, n] (one bincount over all rows)."""
    b, n = pred.shape
    idx = (_bin_index(pred, bins) + bins * torch.arange(b)[:, None]).reshape(-1)
    s = torch.bincount(idx, weights=(pred - label).reshape(-1), minlength=b * bins)
    return s.abs().reshape(b, bins).sum(1) / n


def ece_with_interval(prefix_pred, survived, valid=None, samples: int = 1000,
                      min_rounds: int = 500, seed: int = 0,
                      bins: int = ECE_BINS) -> List[Dict]:
    """One dict per position: position, n, ece, lo, hi (2.5% / 97.5% bootstrap quantiles;
    None without rounds), judged (n >= min_rounds). ``prefix_pred`` [N, K]: the predicted
    prefix-survival probability (e.g. ``prefix_survival(apply_platt(z, params))``)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if min_rounds < 1:
        raise ValueError(f"min_rounds must be >= 1, got {min_rounds}")
    p, y, m = _as_inputs(prefix_pred, survived, valid)
    if bool(((p < 0) | (p > 1))[m].any()):
        raise ValueError("prefix_pred must lie in [0, 1] at every valid position")
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(p.shape[1]):
        pk, yk = p[m[:, k], k], y[m[:, k], k].to(torch.float64)
        n = pk.numel()
        row = {"position": k, "n": n, "ece": None, "lo": None, "hi": None,
               "judged": n >= min_rounds}
        if n:
            row["ece"] = float(_ece_rows(pk[None], yk[None], bins)[0])
            draws = []
            for s0 in range(0, samples, 256):
                idx = torch.randint(0, n, (min(256, samples - s0), n), generator=g)
                draws.append(_ece_rows(pk[idx], yk[idx], bins))
            e = torch.cat(draws)
            row["lo"], row["hi"] = (float(v) for v in torch.quantile(
                e, torch.tensor([0.025, 0.975], dtype=torch.float64)))
        out.append(row)
    return out
