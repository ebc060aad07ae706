"""Per-position temperature plus bias (Platt scaling of each position's *conditional*
confidence), fitted separately for each decoding temperature: ``c[k] = sigmoid(a_k z_k + b_k)``.

STS only rescales the logit (``1 / T_k``) and fits the cumulative product's ECE. At T = 0 the
head's training label (1 - TV, the acceptance under rejection sampling at T = 1) is not the
greedy acceptance it is scored against, so the logits are off by a *shift* as well as a scale;
a bias per position absorbs it. Each position is fitted on its own conditional label: over
the rounds where position k was verified and every token before it survived, whether token k
survived too. The prefix product of calibrated conditionals is what the scheduler consumes
(:func:`.metrics.prefix_survival`). The fit is a two-parameter logistic regression by damped
Newton steps on the mean log loss plus a small ridge towards the identity (a = 1, b = 0), so
a position with few or one-class rounds stays near the raw head. Data layout: see
:mod:`dspark_ext.calibration`.
"""
from __future__ import annotations

import torch

from .metrics import _as_inputs

__all__ = ["fit_platt", "apply_platt"]


def _loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    s = x @ w
    nll = torch.nn.functional.softplus(s) - y * s  # -log sigmoid(s) if y else -log(1 - ...)
    return nll.mean() + 0.5 * ridge * ((w[0] - 1) ** 2 + w[1] ** 2)


def _fit_one(z: torch.Tensor, y: torch.Tensor, ridge: float, iters: int) -> torch.Tensor:
    x = torch.stack([z, torch.ones_like(z)], dim=1)
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    prior = torch.tensor([1.0, 0.0], dtype=torch.float64)
    loss = _loss(w, x, y, ridge)
    for _ in range(iters):
        p = torch.sigmoid(x @ w)
        grad = x.T @ (p - y) / len(y) + ridge * (w - prior)
        hess = (x.T * (p * (1 - p))) @ x / len(y) + ridge * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:  # damped: halve until the loss does not increase
            cand = w - scale * step
            new = _loss(cand, x, y, ridge)
            if new <= loss:
                break
            scale *= 0.5
        else:
            break
        converged = (loss - new) < 1e-12
        w, loss = cand, new
        if converged:
            break
    return w


def fit_platt(confidence_logits, survived, valid=None, ridge: float = 1e-3,
              iters: int = 50) -> torch.Tensor:
    """Per-position (scale, bias) [K, 2] (float64, CPU) of ``sigmoid(a_k z_k + b_k)`` against
    the conditional label of position k (rounds where k was verified and token k - 1
    survived). A position with no such round keeps (1, 0)."""
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    z, y, m = _as_inputs(confidence_logits, survived, valid)
    k_max = z.shape[1]
    params = torch.zeros(k_max, 2, dtype=torch.float64)
    params[:, 0] = 1.0
    for k in range(k_max):
        sel = m[:, k] & (y[:, k - 1] if k > 0 else torch.ones_like(m[:, k]))
        if bool(sel.any()):
            params[k] = _fit_one(z[sel, k], y[sel, k].to(torch.float64), ridge, iters)
    return params


def apply_platt(confidence_logits: torch.Tensor, params) -> torch.Tensor:
    """Calibrated conditional confidences ``sigmoid(a_k z[..., k] + b_k)`` (the shape and
    floating dtype of ``confidence_logits``); ``params`` is [K, 2] from :func:`fit_platt`."""
    z = confidence_logits if confidence_logits.is_floating_point() else confidence_logits.float()
    p = torch.as_tensor(params, dtype=z.dtype, device=z.device)
    if p.dim() != 2 or p.shape != (z.shape[-1], 2):
        raise ValueError(f"params must be [K, 2] with K = {z.shape[-1]}, got shape "
                         f"{tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError("params must be finite")
    return torch.sigmoid(z * p[:, 0] + p[:, 1])
