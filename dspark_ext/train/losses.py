"""The three DSpark training losses (design §7; paper §3.3, eqs. 9-12), position-weighted.

Per supervised slot k of a block (k = 0 first), with weight ``w_k = exp(-k / decay_gamma)``:

* CE:   -log p_draft(x*_k)                         (the data token)
* L1:   || softmax(draft_k) - softmax(target_k) ||_1   (twice the total-variation distance)
* BCE:  BCE(sigmoid(confidence_k), c*_k),  c*_k = clamp(1 - L1_k / 2, 0, 1), detached: the
  probability that token k survives token-wise verification (Leviathan et al.), which the
  confidence head learns to predict.

Each term is ``sum_k w_k * loss_k / denominator`` with ``denominator = sum of w_k over every
supervised slot of the global batch`` (all micro-batches, all ranks: DeepSpec's all-reduced
denominator), so that splitting a batch across micro-batches or processes gives the same
gradient. Total = ce_weight * CE + l1_weight * L1 + confidence_weight * BCE; the DFlash
baseline is CE only (:meth:`LossConfig.dflash`).

Live acceptance estimates (no gradient): mean c* over supervised slots, and the expected
accepted length per block ``tau = 1 + sum_k prod_{i<=k} c*_i`` (DeepSpec's tau_probabilistic).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LossConfig", "LossTerms", "position_weights", "loss_terms", "combine"]


@dataclass
class LossConfig:
    ce_weight: float = 0.1
    l1_weight: float = 0.9
    confidence_weight: float = 1.0
    decay_gamma: Optional[float] = 4.0   # None or <= 0: no position decay

    @classmethod
    def dflash(cls, decay_gamma: Optional[float] = 4.0) -> "LossConfig":
        """The DFlash baseline: cross-entropy only."""
        return cls(ce_weight=1.0, l1_weight=0.0, confidence_weight=0.0, decay_gamma=decay_gamma)

    @property
    def needs_target_logits(self) -> bool:
        return self.l1_weight > 0 or self.confidence_weight > 0


def position_weights(block_size: int, decay_gamma: Optional[float],
                     device=None) -> Tensor:
    """w_k = exp(-k / decay_gamma), k = 0..block_size-1 (all ones without decay)."""
    k = torch.arange(block_size, dtype=torch.float32, device=device)
    if decay_gamma is None or decay_gamma <= 0:
        return torch.ones_like(k)
    return torch.exp(-k / float(decay_gamma))


class LossTerms(NamedTuple):
    """Numerators (sums of w_k * loss_k over this micro-batch; differentiable) and, without
    gradient, the statistics the progress display shows."""

    ce: Tensor            # [] sum w * CE
    l1: Tensor            # [] sum w * L1 (0 when no target logits)
    confidence: Tensor    # [] sum w * BCE (0 without a confidence head)
    weight_sum: Tensor    # [] sum w over supervised slots (this micro-batch's denominator)
    stats: Dict[str, Tensor]  # sums: c_star, slots, tau, blocks (detached)


def loss_terms(draft_logits: Tensor, target_ids: Tensor, label_mask: Tensor,
               config: LossConfig, target_logits: Optional[Tensor] = None,
               confidence_logits: Optional[Tensor] = None) -> LossTerms:
    """draft_logits [B, N, K, V]; target_ids int64 [B, N, K]; label_mask bool [B, N, K]
    (contiguous supervised prefix per block); target_logits [B, N, K, V] (the target's logits
    predicting the same tokens) or None; confidence_logits [B, N, K] or None."""
    k = draft_logits.shape[-2]
    mask = label_mask.to(torch.float32)
    w = mask * position_weights(k, config.decay_gamma, draft_logits.device)
    logits = draft_logits.float()
    ce = F.cross_entropy(logits.flatten(0, 2), target_ids.flatten(), reduction="none")
    ce_sum = (ce.view_as(w) * w).sum()
    zero = ce_sum.new_zeros(())
    l1_sum, conf_sum = zero, zero
    stats = {"slots": mask.sum(), "blocks": label_mask.any(-1).float().sum()}
    if target_logits is not None:
        # Without an L1 term (DFlash) the distance only feeds c* and the live estimates: no
        # graph for it.
        with torch.set_grad_enabled(torch.is_grad_enabled() and config.l1_weight != 0):
            p_draft = torch.softmax(logits, dim=-1)
            p_target = torch.softmax(target_logits.float(), dim=-1)
            l1 = (p_draft - p_target).abs().sum(-1)                 # [B, N, K]
            l1_sum = (l1 * w).sum()
        c_star = (1.0 - 0.5 * l1.detach()).clamp(0.0, 1.0)
        if confidence_logits is not None:
            bce = F.binary_cross_entropy_with_logits(confidence_logits.float(), c_star,
                                                     reduction="none")
            conf_sum = (bce * w).sum()
        with torch.no_grad():
            stats["c_star"] = (c_star * mask).sum()
            survive = (c_star * mask).cumprod(-1).sum(-1)              # [B, N]
            stats["tau"] = ((1.0 + survive) * label_mask.any(-1)).sum()
    return LossTerms(ce_sum, l1_sum, conf_sum, w.sum().detach(), stats)


def combine(terms: LossTerms, config: LossConfig, denominator: Tensor,
            scale: float = 1.0) -> Dict[str, Tensor]:
    """Normalised losses: each numerator / ``denominator`` (the global weight sum), total =
    the weighted sum times ``scale`` (the world size under DDP, whose gradient averaging
    would otherwise divide by it). Returns {"loss", "ce", "l1", "confidence"}."""
    den = denominator.clamp(min=1e-6)
    ce, l1, conf = terms.ce / den, terms.l1 / den, terms.confidence / den
    total = (config.ce_weight * ce + config.l1_weight * l1
             + config.confidence_weight * conf) * scale
    return {"loss": total, "ce": ce, "l1": l1, "confidence": conf}
