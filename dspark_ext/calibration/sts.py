"""Sequential Temperature Scaling (design §5; paper §3.2.1): for k = 0..K-1 in order, a 1-D
grid search picks the temperature ``T_k`` that minimises the ECE of the cumulative product
``prod_{i<=k} sigmoid(z_i / T_i)`` against the prefix-survival label, ``T_{<k}`` fixed.
Temperature scaling is order-preserving for each position's conditional confidence. The
data layout is described in :mod:`dspark_ext.calibration`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .metrics import ECE_BINS, _as_inputs, _bin_index

__all__ = ["default_grid", "fit_sts", "apply_sts"]

# Evaluations of (grid points x valid rounds) per chunk of the vectorised grid search: bounds
# the temporary memory (float64) at about 8 bytes * 4 arrays * this.
_CHUNK_ELEMS = 1 << 23


def default_grid() -> torch.Tensor:
    """The default STS grid: 241 temperatures geometrically spaced over [0.05, 20] (ratio
    1.0253 between neighbours, i.e. a resolution of about 2.5%), 1.0 included exactly."""
    g = torch.logspace(math.log10(0.05), math.log10(20.0), 241, dtype=torch.float64)
    g[torch.argmin((g - 1.0).abs())] = 1.0
    return g

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
    """Sequential Temperature Scaling (design §5): temperatures [K] (float64, CPU).

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
