"""Projections fused for decoding (design §7): one GEMM for Q/K/V and one for gate/up, built
from the checkpoint's own parameters.

The modules keep DeepSpec's separate parameters (``q_proj``, ``k_proj``, ``v_proj``,
``gate_proj``, ``up_proj``): checkpoints load unchanged and training differentiates through
them. The decode path reads a concatenated copy instead, rebuilt only when one of the parts
changed. A part is identified by its storage and its version counter, which in-place updates
(optimiser steps, ``load_state_dict``, ``.to()``) bump, so a stale fused copy is never used.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor


def _key(t: Optional[Tensor]):
    return None if t is None else (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))


class FusedLinear:
    """``cat(weights)`` [sum(out), in] and ``cat(biases)`` (or None), cached."""

    def __init__(self):
        self._key = None
        self._weight: Optional[Tensor] = None
        self._bias: Optional[Tensor] = None

    def get(self, weights: Sequence[Tensor],
            biases: Sequence[Optional[Tensor]]) -> Tuple[Tensor, Optional[Tensor]]:
        key = tuple(_key(w) for w in weights) + tuple(_key(b) for b in biases)
        if key != self._key:
            with torch.no_grad():
                self._weight = torch.cat([w.detach() for w in weights], dim=0)
                self._bias = (None if any(b is None for b in biases)
                              else torch.cat([b.detach() for b in biases], dim=0))
            self._key = key
        return self._weight, self._bias
