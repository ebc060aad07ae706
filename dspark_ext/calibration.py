"""Confidence calibration for the prefix scheduler (SPEC §5; paper §3.2.1).

The drafter's confidence head emits one logit ``z[k]`` per draft position; ``sigmoid(z[k])``
estimates the *conditional* probability that draft token k survives verification given that
tokens < k did. The scheduler needs the absolute magnitude of the prefix-survival probability
``a[k] = prod_{i<=k} c[i]``, so the head is calibrated post hoc with **Sequential Temperature
Scaling** (STS): for k = 0..K-1 in order, a 1-D grid search picks the temperature ``T_k``
that minimises the ECE of the cumulative product ``prod_{i<=k} sigmoid(z_i / T_i)`` against
the prefix-survival label, the temperatures ``T_{<k}`` already fixed. Temperature scaling is
order-preserving for each position's conditional confidence.

Data layout (held-out verification rounds, N rounds of K positions):

* ``confidence_logits`` float [N, K]: the head's logits ``z``;
* ``survived`` bool [N, K]: draft token k of the round was accepted (hence all tokens < k were:
  the prefix-survival label, ``accepted > k``);
* ``valid`` bool [N, K]: position k was proposed and verified in that round (``num_draft > k``).
  Rows of ``valid`` must be prefixes (True then False); labels outside ``valid`` are ignored.

Metrics (per position, over valid rounds): ECE with 20 equal-width bins
(``sum_b n_b/n |mean pred_b - mean label_b|``), AUC (Mann-Whitney, ties counted half), Brier
score, mean prediction and observed rate. A position with no valid round (never reached), or
whose labels are all equal (AUC undefined), reports ``None`` for the undefined metrics, never
NaN. :func:`calibration_report` gathers before/after metrics into a JSON-ready dict and
:func:`plot_reliability` draws the reliability diagrams (PNG with matplotlib, else SVG).

>>> T = fit_sts(z_val, survived_val, valid_val)           # [K] temperatures
>>> c = apply_sts(z_live, T)                               # calibrated conditional confidences
>>> a = c.cumprod(-1)                                      # prefix survival, what schedules
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = [
    "ECE_BINS",
    "default_grid",
    "fit_sts",
    "apply_sts",
    "prefix_survival",
    "ece",
    "auc",
    "brier",
    "position_metrics",
    "calibration_report",
    "save_report",
    "plot_reliability",
]

ECE_BINS = 20
# Evaluations of (grid points x valid rounds) per chunk of the vectorised grid search: bounds
# the temporary memory (float64) at about 8 bytes * 4 arrays * this.
_CHUNK_ELEMS = 1 << 23


def default_grid() -> torch.Tensor:
    """The default STS grid: 241 temperatures geometrically spaced over [0.05, 20] (ratio
    1.0253 between neighbours, i.e. a resolution of about 2.5%), 1.0 included exactly."""
    g = torch.logspace(math.log10(0.05), math.log10(20.0), 241, dtype=torch.float64)
    g[torch.argmin((g - 1.0).abs())] = 1.0
    return g


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


def apply_sts(confidence_logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """Calibrated conditional confidences ``sigmoid(z[..., k] / T[k])`` (same shape and dtype as
    ``confidence_logits``, floating point). Their cumulative product along the last dimension
    (:func:`prefix_survival`) is what :func:`dspark_ext.schedule_prefix` consumes (it takes the
    conditional confidences and forms the product itself)."""
    z = confidence_logits if confidence_logits.is_floating_point() else confidence_logits.float()
    t = torch.as_tensor(temperatures, dtype=z.dtype, device=z.device)
    if t.dim() != 1 or t.shape[0] != z.shape[-1]:
        raise ValueError(f"temperatures must be 1-D [K] with K = {z.shape[-1]}, got shape "
                         f"{tuple(t.shape)}")
    if not bool((t > 0).all()):
        raise ValueError("temperatures must be > 0")
    return torch.sigmoid(z / t)


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


# ---------------------------------------------------------------------------------------------
# Sequential Temperature Scaling
# ---------------------------------------------------------------------------------------------


def _grid_ece(prefix: torch.Tensor, z: torch.Tensor, label: torch.Tensor, grid: torch.Tensor,
              bins: int) -> torch.Tensor:
    """ECE of ``prefix * sigmoid(z / T)`` against ``label`` for every T of ``grid`` (vectorised
    over rounds and grid points, chunked over the grid). Per bin, n_b/n |mean pred - mean
    label| = |sum (pred - label)| / n, so one weighted bincount per chunk suffices."""
    n = z.numel()
    out = torch.empty(grid.numel(), dtype=torch.float64)
    chunk = max(1, _CHUNK_ELEMS // max(n, 1))
    lab = label.to(torch.float64)
    for g0 in range(0, grid.numel(), chunk):
        t = grid[g0:g0 + chunk]
        g = t.numel()
        pred = prefix[None, :] * torch.sigmoid(z[None, :] / t[:, None])  # [g, n]
        idx = (_bin_index(pred, bins) + bins * torch.arange(g)[:, None]).reshape(-1)
        s = torch.bincount(idx, weights=(pred - lab[None, :]).reshape(-1), minlength=g * bins)
        out[g0:g0 + g] = s.abs().reshape(g, bins).sum(1) / n
    return out


def _search(prefix, z, label, grid, bins, exhaustive: bool) -> torch.Tensor:
    """ECE at every grid point (inf where not evaluated). Coarse-to-fine unless exhaustive:
    every ``stride``-th point first (about 40 of them), then every point within two strides
    of the best coarse one."""
    size = grid.numel()
    e = torch.full((size,), torch.inf, dtype=torch.float64)
    if exhaustive or size <= 64:
        e[:] = _grid_ece(prefix, z, label, grid, bins)
        return e
    stride = -(-size // 40)
    coarse = torch.arange(0, size, stride)
    if int(coarse[-1]) != size - 1:
        coarse = torch.cat([coarse, torch.tensor([size - 1])])
    e[coarse] = _grid_ece(prefix, z, label, grid[coarse], bins)
    best = int(torch.argmin(e))
    fine = torch.arange(max(0, best - 2 * stride), min(size, best + 2 * stride + 1))
    fine = fine[torch.isinf(e[fine])]
    if fine.numel():
        e[fine] = _grid_ece(prefix, z, label, grid[fine], bins)
    return e


def fit_sts(confidence_logits, survived, valid=None, grid: Optional[Sequence[float]] = None,
            bins: int = ECE_BINS, exhaustive: bool = False) -> torch.Tensor:
    """Sequential Temperature Scaling (SPEC §5): temperatures [K] (float64, CPU).

    For k = 0..K-1 in order, over the rounds where position k was verified, picks the grid
    temperature minimising the ECE of ``prod_{i<=k} sigmoid(z_i / T_i)`` against
    ``survived[:, k]`` with ``T_{<k}`` fixed. Among temperatures with the same ECE (within
    1e-12) the one closest to 1 (in log scale) wins, so a degenerate position (all labels
    equal) moves as little as the data allows; a position never verified keeps T = 1.
    Vectorised over rounds and grid points (no Python loop over rounds). The grid (sorted
    ascending) is searched coarse-to-fine: about 40 evenly strided points, then every point
    within two strides of the best (``exhaustive=True`` evaluates every point; the ECE of a
    well-populated position is unimodal in log T at the coarse scale, so both agree there)."""
    z, y, m = _as_inputs(confidence_logits, survived, valid)
    grid_t = default_grid() if grid is None else torch.as_tensor(grid, dtype=torch.float64)
    if grid_t.dim() != 1 or grid_t.numel() == 0 or not bool((grid_t > 0).all()):
        raise ValueError("grid must be a non-empty 1-D sequence of positive temperatures")
    grid_t = torch.sort(grid_t).values
    n_rounds, k_max = z.shape
    temps = torch.ones(k_max, dtype=torch.float64)
    prefix = torch.ones(n_rounds, dtype=torch.float64)  # prod_{i<k} sigmoid(z_i / T_i)
    log_dist = grid_t.log().abs()
    for k in range(k_max):
        sel = m[:, k]
        if bool(sel.any()):
            e = _search(prefix[sel], z[sel, k], y[sel, k], grid_t, bins, exhaustive)
            ok = e <= e.min() + 1e-12
            best = int(torch.argmin(torch.where(ok, log_dist, torch.inf)))
            temps[k] = grid_t[best]
        prefix = prefix * torch.sigmoid(z[:, k] / temps[k])
    return temps


# ---------------------------------------------------------------------------------------------
# Report and plot
# ---------------------------------------------------------------------------------------------


def calibration_report(confidence_logits, survived, valid, temperatures,
                       bins: int = ECE_BINS) -> Dict:
    """Before (T = 1) / after (``temperatures``) metrics per position, JSON-ready."""
    z, y, m = _as_inputs(confidence_logits, survived, valid)
    t = torch.as_tensor(temperatures, dtype=torch.float64)
    before = position_metrics(torch.sigmoid(z), y, m, bins)
    after = position_metrics(apply_sts(z, t), y, m, bins)
    summary = []
    for b, a in zip(before, after):
        summary.append({k: (b[k], a[k]) for k in ("ece", "auc", "brier", "mean_pred")}
                       | {"position": b["position"], "n": b["n"], "observed": b["observed"]})
    return {
        "num_rounds": int(z.shape[0]),
        "positions": int(z.shape[1]),
        "bins": bins,
        "temperatures": t.tolist(),
        "summary": summary,
        "before": before,
        "after": after,
    }


def save_report(report: Dict, path: str) -> str:
    """Write :func:`calibration_report`'s dict as JSON; returns the path."""
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return path


def plot_reliability(report: Dict, path_stem: str) -> str:
    """Reliability diagrams (one panel per position, before and after STS) of a
    :func:`calibration_report`. Writes ``path_stem + '.png'`` with matplotlib when it is
    installed, else a hand-written ``path_stem + '.svg'``; returns the file written."""
    panels = [(b, a) for b, a in zip(report["before"], report["after"])]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_svg(panels, report["temperatures"], path_stem + ".svg")
    cols = min(4, max(1, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for i, (b, a) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for m, name, color in ((b, "before", "tab:red"), (a, "after", "tab:blue")):
            if m["reliability"] is None:
                continue
            pts = [(x, o) for x, o in zip(m["reliability"]["mean_pred"],
                                          m["reliability"]["observed"]) if x is not None]
            if pts:
                xs, ys = zip(*pts)
                ece_v = m["ece"]
                ax.plot(xs, ys, marker="o", ms=3, color=color,
                        label=f"{name} ECE {ece_v * 100:.1f}%")
        ax.set_title(f"position {b['position']} (T={report['temperatures'][i]:.2f})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.supxlabel("predicted prefix survival")
    fig.supylabel("observed")
    fig.tight_layout()
    out = path_stem + ".png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_svg(panels, temps, path: str) -> str:
    size, pad, cols = 200, 30, min(4, max(1, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    w, h = cols * (size + pad) + pad, rows * (size + pad + 15) + pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="10">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, (b, a) in enumerate(panels):
        x0 = pad + (i % cols) * (size + pad)
        y0 = pad + 15 + (i // cols) * (size + pad + 15)
        parts.append(f'<rect x="{x0}" y="{y0}" width="{size}" height="{size}" fill="none" '
                     f'stroke="black"/>')
        parts.append(f'<line x1="{x0}" y1="{y0 + size}" x2="{x0 + size}" y2="{y0}" '
                     f'stroke="grey" stroke-dasharray="4"/>')
        parts.append(f'<text x="{x0}" y="{y0 - 4}">position {b["position"]} '
                     f'T={temps[i]:.2f}</text>')
        for m, color, dy in ((b, "red", 12), (a, "blue", 24)):
            if m["reliability"] is None:
                continue
            pts = [(x, o) for x, o in zip(m["reliability"]["mean_pred"],
                                          m["reliability"]["observed"]) if x is not None]
            coords = " ".join(f"{x0 + x * size:.1f},{y0 + size - o * size:.1f}" for x, o in pts)
            if coords:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}"/>')
            parts.append(f'<text x="{x0 + 4}" y="{y0 + dy}" fill="{color}">'
                         f'ECE {m["ece"] * 100:.1f}%</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path
