"""Top-k / top-p on the target logits, with vLLM's own masking function.

vLLM's sampler (``apply_sampling_constraints`` in ``vllm/v1/sample/rejection_sampler.py``, and
``Sampler.sample`` for the bonus row) divides every row by its request's temperature (greedy
rows by 1) and then calls ``apply_top_k_top_p`` (``vllm/v1/sample/ops/topk_topp_sampler.py``),
which sets the logits outside the top-k / top-p nucleus to ``-inf``. The order matters for
top-p: the nucleus is that of ``softmax(logits / T)``.

:func:`mask_top_k_top_p` does the same to every row, bonus rows included, and returns the
masked, *already tempered* logits with the temperatures the op must then use: 1 for sampled
requests, 0 (greedy) for greedy ones. The op treats ``-inf`` as probability zero, so its law
is exactly vLLM's ``softmax(top_k_top_p(logits / T))``; greedy rows keep their argmax (the
kept set always contains it).
"""
from __future__ import annotations

from typing import Tuple

import torch

from .layout import expand_to_rows


def needs_masking(sampling_metadata) -> bool:
    """Whether any request of the batch uses top-k or top-p (vLLM leaves the tensors ``None``
    otherwise)."""
    return sampling_metadata.top_k is not None or sampling_metadata.top_p is not None


def mask_top_k_top_p(logits: torch.Tensor, temperature: torch.Tensor, sampling_metadata,
                     rows_per_request: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(masked logits [N + B, V] float32, op temperatures [B])``.

    ``temperature`` is vLLM's per-request float32 ``[B]`` (0 = greedy); ``rows_per_request``
    ``[B]`` is ``l_r + 1``, the request's rows in ``logits``.
    """
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

    total = logits.shape[0]
    greedy = temperature == 0
    divisor = torch.where(greedy, torch.ones_like(temperature), temperature)
    scaled = logits.to(torch.float32) / expand_to_rows(divisor, rows_per_request, total)[:, None]
    top_k = sampling_metadata.top_k
    top_p = sampling_metadata.top_p
    top_k = None if top_k is None else expand_to_rows(top_k, rows_per_request, total)
    top_p = None if top_p is None else expand_to_rows(top_p, rows_per_request, total)
    masked = apply_top_k_top_p(scaled, top_k, top_p)
    op_temperature = torch.where(greedy, torch.zeros_like(temperature),
                                 torch.ones_like(temperature))
    return masked, op_temperature
