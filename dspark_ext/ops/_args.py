"""Argument conversion shared by the op wrappers: per-row scalars become tensors on the
logits' device, so every op sees one shape of input (design §1, §2)."""
from __future__ import annotations

from typing import Union

import torch

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def per_row(value: Union[torch.Tensor, int, float], batch: int, dtype: torch.dtype,
            device: torch.device, name: str) -> torch.Tensor:
    """A tensor as given (the op checks its shape and dtype), or a Python number broadcast
    to ``[batch]``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if dtype == torch.int64 and isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{name} must fit in int64, got {value}")
        return torch.full((batch,), value, dtype=dtype, device=device)
    raise TypeError(f"{name} must be a tensor or a Python number, got {type(value).__name__}")


def per_row_seed(seed: Union[torch.Tensor, int], batch: int,
                 device: torch.device) -> torch.Tensor:
    """An int ``seed`` gives row r the seed ``seed + r`` (distinct streams: one shared key
    would correlate the rows' samples); a tensor is used as given."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        if not INT64_MIN <= seed <= INT64_MAX - max(batch - 1, 0):
            raise ValueError(f"seed must fit in int64 (seed + row index for an int seed), "
                             f"got {seed}")
        return seed + torch.arange(batch, dtype=torch.int64, device=device)
    return per_row(seed, batch, torch.int64, device, "seed")
