"""``small_linear``: ``F.linear`` for a few rows of x, the drafter's decode-step GEMMs.

At 7-16 rows MKL's sgemm is compute-bound far below an AVX2 core's peak (~30 GFLOP/s for the
bundled drafter's LM head), and those GEMMs were most of a DSpark round on a CPU
(bench/RESULTS.md, issue 17). The CPU kernel (``csrc/cpu/small_linear_cpu.cpp``) reads each
weight row once and keeps it in L1 while every row of x meets it; more rows, other dtypes,
CUDA and builds without AVX2 + FMA run ``at::linear``. Either way the result is
``F.linear(x, weight, bias)`` up to float32 summation order. No autograd (decode only).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["small_linear", "SMALL_LINEAR_MAX_ROWS"]

SMALL_LINEAR_MAX_ROWS = 16  # csrc/small_linear_args.h: rows the CPU kernel tiles by hand


def small_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """y = x weight^T + bias: x [..., K], weight [N, K], bias [N] or None -> [..., N]."""
    return torch.ops.dspark.small_linear(x, weight, bias)


@torch.library.register_fake("dspark::small_linear")
def _small_linear_fake(x, weight, bias):
    return x.new_empty(x.shape[:-1] + (weight.shape[0],))
