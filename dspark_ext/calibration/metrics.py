"""Calibration metrics per draft position (design §5): ECE with equal-width bins, AUC, Brier
score, reliability bins, over the valid rounds of a held-out set. Undefined metrics (no
valid round, or one label class for AUC) are ``None``, never NaN."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["ECE_BINS", "ece", "auc", "brier", "position_metrics", "prefix_survival"]

ECE_BINS = 20


def _as_inputs(confidence_logits, survived, valid):
    z = torch.as_tensor(confidence_logits).detach().to("cpu", torch.float64)
    if z.dim() != 2:
        raise ValueError(f"confidence_logits must be 2-D [N, K], got shape {tuple(z.shape)}")
    y = torch.as_tensor(survived).detach().to("cpu")
    if y.shape != z.shape:
        raise ValueError(f"survived must have the shape of confidence_logits {tuple(z.shape)}, "
                         f"got {tuple(y.shape)}")
    if valid is None:
        m = torch.ones_like(z, dtype=torch.bool)
    else:
        m = torch.as_tensor(valid).detach().to("cpu").bool()
        if m.shape != z.shape:
            raise ValueError(f"valid must have the shape of confidence_logits {tuple(z.shape)}, "
                             f"got {tuple(m.shape)}")
    if not torch.isfinite(z[m]).all():
        raise ValueError("confidence_logits must be finite at every valid position")
    return z, y.bool() & m, m

def prefix_survival(confidence: torch.Tensor) -> torch.Tensor:
    """``a[..., k] = prod_{i<=k} c[..., i]`` (non-increasing in k for c in [0, 1])."""
    return torch.cumprod(confidence, dim=-1)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _bin_index(pred: torch.Tensor, bins: int) -> torch.Tensor:
    return torch.clamp((pred * bins).long(), 0, bins - 1)


def ece(pred, label, bins: int = ECE_BINS) -> Optional[float]:
    """Expected calibration error, ``bins`` equal-width bins over [0, 1]; None when empty."""
    p = torch.as_tensor(pred, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(label).reshape(-1).to(torch.float64)
    if p.numel() == 0:
        return None
    idx = _bin_index(p, bins)
    sp = torch.bincount(idx, weights=p, minlength=bins)
    sy = torch.bincount(idx, weights=y, minlength=bins)
    return float((sp - sy).abs().sum() / p.numel())


def _reliability_bins(pred, label, bins: int = ECE_BINS):
    p = torch.as_tensor(pred, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(label).reshape(-1).to(torch.float64)
    idx = _bin_index(p, bins)
    n = torch.bincount(idx, minlength=bins)
    sp = torch.bincount(idx, weights=p, minlength=bins)
    sy = torch.bincount(idx, weights=y, minlength=bins)
    keep = n > 0
    return {
        "count": n.tolist(),
        "mean_pred": [float(v) if k else None for v, k in zip((sp / n.clamp(min=1)).tolist(),
                                                              keep.tolist())],
        "observed": [float(v) if k else None for v, k in zip((sy / n.clamp(min=1)).tolist(),
                                                             keep.tolist())],
    }


def auc(score, label) -> Optional[float]:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), tied scores count half);
    None when only one class is present."""
    s = np.asarray(torch.as_tensor(score, dtype=torch.float64).reshape(-1))
    y = np.asarray(torch.as_tensor(label).reshape(-1)).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks of tied scores (1-based).
    uniq, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    avg_rank = first + (counts + 1) / 2.0
    ranks = avg_rank[inv]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def brier(pred, label) -> Optional[float]:
    """Mean squared error of the predicted probability; None when empty."""
    p = torch.as_tensor(pred, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(label).reshape(-1).to(torch.float64)
    if p.numel() == 0:
        return None
    return float(((p - y) ** 2).mean())


def position_metrics(confidence: torch.Tensor, survived, valid=None,
                     bins: int = ECE_BINS) -> List[Dict]:
    """Per-position metrics of conditional confidences ``confidence`` [N, K] (in [0, 1]).

    For position k, over the rounds where k was verified: ``ece``, ``auc``, ``brier``,
    ``mean_pred`` and ``observed`` of the cumulative product against the prefix-survival
    label, the reliability bins, and ``auc_conditional`` / ``observed_conditional``: the
    per-position conditional confidence c_k against token k's acceptance among the rounds
    whose tokens < k were all accepted (paper Fig. 2). Undefined values are None."""
    c = torch.as_tensor(confidence).detach().to("cpu", torch.float64)
    if c.dim() != 2:
        raise ValueError(f"confidence must be 2-D [N, K], got shape {tuple(c.shape)}")
    _, y, m = _as_inputs(torch.zeros_like(c), survived, valid)
    a = torch.cumprod(c, dim=1)
    out = []
    for k in range(c.shape[1]):
        sel = m[:, k]
        pk, yk = a[sel, k], y[sel, k]
        cond = sel & (y[:, k - 1] if k > 0 else torch.ones_like(sel))
        n = int(sel.sum())
        out.append({
            "position": k,
            "n": n,
            "ece": ece(pk, yk, bins),
            "auc": auc(pk, yk),
            "brier": brier(pk, yk),
            "mean_pred": float(pk.mean()) if n else None,
            "observed": float(yk.double().mean()) if n else None,
            "n_conditional": int(cond.sum()),
            "auc_conditional": auc(c[cond, k], y[cond, k]),
            "mean_pred_conditional": float(c[cond, k].mean()) if bool(cond.any()) else None,
            "observed_conditional": (float(y[cond, k].double().mean())
                                     if bool(cond.any()) else None),
            "reliability": _reliability_bins(pk, yk, bins) if n else None,
        })
    return out
