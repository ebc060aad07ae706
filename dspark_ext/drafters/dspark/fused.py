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

    def refresh(self, weights: Sequence[Tensor], biases: Sequence[Optional[Tensor]]) -> None:
        """Rebuild the concatenation if any part changed since the last call."""
        key = tuple(_key(w) for w in weights) + tuple(_key(b) for b in biases)
        if key != self._key:
            with torch.no_grad():
                self._weight = torch.cat([w.detach() for w in weights], dim=0)
                self._bias = (None if any(b is None for b in biases)
                              else torch.cat([b.detach() for b in biases], dim=0))
            self._key = key

    def current(self) -> Tuple[Tensor, Optional[Tensor]]:
        """The fused weight and bias as of the last :meth:`refresh` (no check: the decode step
        reads them with no data-dependent Python, so it can be compiled or captured)."""
        if self._weight is None:
            raise RuntimeError("FusedLinear.current() before refresh()")
        return self._weight, self._bias

    def get(self, weights: Sequence[Tensor],
            biases: Sequence[Optional[Tensor]]) -> Tuple[Tensor, Optional[Tensor]]:
        """:meth:`refresh`, then :meth:`current`."""
        self.refresh(weights, biases)
        return self.current()
