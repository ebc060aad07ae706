"""Top-k / top-p truncation of the target's law, applied to the target logits before
verification (masked logits are probability zero in every op). Speculative sampling is then
lossless with respect to the truncated law, whatever the drafts: the same per-position
function of the target logits that plain sampling applies. Order as in transformers:
temperature, then top-k, then top-p (nucleus over softmax(logits / T))."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def check_top_k_top_p(top_k: Optional[int], top_p: Optional[float]) -> None:
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def truncate_logits(logits: Tensor, temperature: Tensor, top_k: Optional[int],
                    top_p: Optional[float]) -> Tensor:
    """logits [B, ..., V], temperature [B] -> logits with -inf outside the kept set (greedy
    rows untouched: truncation never removes the arg-max)."""
    if top_k is None and (top_p is None or top_p >= 1.0):
        return logits
    out = logits.float()
    v = out.shape[-1]
    if top_k is not None and top_k < v:
        kth = out.topk(top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        t = temperature.clamp(min=1e-6).view(-1, *([1] * (out.dim() - 1)))
        probs, order = torch.softmax(out / t, dim=-1).sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p (the top one is kept).
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    greedy = (temperature == 0).view(-1, *([1] * (out.dim() - 1)))
    return torch.where(greedy, logits.float(), out).to(logits.dtype)
