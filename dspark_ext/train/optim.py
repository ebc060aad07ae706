"""AdamW over the drafter's trainable parameters and a linear warm-up + cosine schedule
(DeepSpec's ``CosineAnnealingWarmupLR``: lr rises linearly to the peak over the warm-up
steps, then follows a half cosine down to ``min_lr_ratio * peak`` at ``total_steps``).

The schedule is a ``LambdaLR`` over a pure function of the step, so its state is one integer
and resuming it is exact.
"""
from __future__ import annotations

import math

import torch

__all__ = ["build_optimizer", "warmup_cosine", "lr_factor"]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                    betas=(0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the parameters that require gradients (the frozen embedding and LM head are
    left out). Norm weights and biases get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, min_lr_ratio))
