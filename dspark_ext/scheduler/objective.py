"""Baselines of the prefix scheduler and its objective (design §6): fixed lengths, a static
threshold on the prefix survival, and the expected throughput of any lengths."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..ops.schedule import SpsLike, sps_tensor

__all__ = ["fixed_length", "static_threshold", "expected_throughput"]


def fixed_length(num_requests: int, gamma: int, max_len: Optional[torch.Tensor] = None,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """Every request verifies ``gamma`` drafts (capped by ``max_len``): int64 [R]."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    out = torch.full((num_requests,), gamma, dtype=torch.int64,
                     device=device if max_len is None else max_len.device)
    return out if max_len is None else torch.minimum(out, max_len)


def static_threshold(confidence: torch.Tensor, threshold: float,
                     max_len: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Verify the drafts whose prefix survival ``a[r, j]`` is at least ``threshold``
    (a prefix, since a is non-increasing): int64 [R]."""
    a = torch.cumprod(confidence.to(torch.float64), dim=-1)
    out = (a >= threshold).sum(-1).to(torch.int64)
    return out if max_len is None else torch.minimum(out, max_len)


def expected_throughput(confidence: torch.Tensor, lengths: torch.Tensor,
                        sps: SpsLike) -> Dict[str, float]:
    """The scheduler's objective for arbitrary ``lengths``: batch tokens B, expected tokens
    tau (with the bonus tokens) and Theta = tau * SPS(B) (host floats)."""
    a = torch.cumprod(confidence.to(torch.float64), dim=-1)
    k = a.shape[-1]
    mask = torch.arange(k, device=a.device)[None, :] < lengths[:, None]
    tau = float(a.shape[0] + (a * mask).sum())
    batch = int(a.shape[0] + lengths.sum())
    table = sps_tensor(sps, confidence, None)
    return {"batch_tokens": batch, "expected_tokens": tau,
            "throughput": tau * float(table[batch])}

