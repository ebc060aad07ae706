"""Sampling one token per row from logits with the library's counter-based Philox streams.

Two streams, disjoint by construction (same per-row key, different counters):

* **target stream** -- the first token after the prompt (the first anchor). It is the
  verification op with zero drafts: a Gumbel-max draw from ``softmax(logits / T)`` (argmax for
  T = 0) at the round's ``offset``, i.e. exactly the bonus-token draw of design §3.
* **draft stream** -- proposers that sample one position at a time (a small autoregressive
  draft model, DFlash without a Markov head). Position ``k`` uses the counter offset
  ``offset + (k + 1) * 2**DRAFT_OFFSET_SHIFT``: verification never uses an offset that large
  (offsets are step counters, checked to stay below ``2**DRAFT_OFFSET_SHIFT``), so a draft
  never reuses a verification uniform, and no two positions or rounds share one. (DSpark's
  Markov head samples inside ``markov_sample`` with its own drafting purpose.)

Both return int64 [...] tokens; -1 where every logit is masked (NaN/inf).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .verify import rejection_sample

DRAFT_OFFSET_SHIFT = 40
MAX_OFFSET = 1 << DRAFT_OFFSET_SHIFT

__all__ = ["DRAFT_OFFSET_SHIFT", "MAX_OFFSET", "draft_offset", "sample_target", "sample_draft"]


def draft_offset(offset: Tensor, position: int) -> Tensor:
    """The counter offset of draft position ``position`` in the round at ``offset``."""
    return offset + ((position + 1) << DRAFT_OFFSET_SHIFT)


def _sample_rows(logits: Tensor, temperature: Tensor, seed: Tensor, offset: Tensor) -> Tensor:
    """logits [N, V]; temperature float32 [N]; seed, offset int64 [N] -> tokens int64 [N]."""
    n = logits.shape[0]
    empty = torch.empty((n, 0), dtype=torch.int64, device=logits.device)
    res = rejection_sample(logits.unsqueeze(1), empty, None, temperature, seed, offset)
    return res.out_tokens[:, 0]


def sample_target(logits: Tensor, temperature: Tensor, seed: Tensor, offset: Tensor) -> Tensor:
    """One token per row from ``logits`` [B, V] at temperature [B] (0 = argmax), target stream."""
    return _sample_rows(logits, temperature, seed, offset)


def sample_draft(logits: Tensor, temperature: Tensor, seed: Tensor, offset: Tensor,
                 first_position: int = 0) -> Tensor:
    """Draft-stream tokens from ``logits`` [B, V] (one position, ``first_position``) or
    [B, K, V] (positions ``first_position .. first_position + K - 1``, sampled independently)
    -> int64 [B] or [B, K]."""
    if logits.dim() == 2:
        return _sample_rows(logits, temperature, seed, draft_offset(offset, first_position))
    b, k, v = logits.shape
    pos = torch.arange(first_position, first_position + k, device=offset.device)
    offs = offset[:, None] + ((pos[None, :] + 1) << DRAFT_OFFSET_SHIFT)
    rep = lambda t: t[:, None].expand(b, k).reshape(-1)  # noqa: E731
    tokens = _sample_rows(logits.reshape(b * k, v), rep(temperature), rep(seed), offs.reshape(-1))
    return tokens.view(b, k)
