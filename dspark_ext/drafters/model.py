"""Autoregressive drafting with any small causal LM (what HF assisted generation does, but
batched): the draft model keeps its own KV cache through a target adapter
(:class:`~dspark_ext.targets.HFTarget` for transformers models,
:class:`~dspark_ext.targets.TorchTarget` for plain torch ones).

A round feeds the tokens committed since the last round plus the anchor in one forward, then
one forward per further draft position (gamma forwards in all). After verification the
cache keeps what the rollback rule of :class:`~dspark_ext.drafters.base.ContextUpdate`
allows (the anchor and the accepted drafts it ran); a committed token it never ran (the
last draft, when all gamma were accepted) is fed at the start of the next round.
Tokens are sampled on the draft stream of :mod:`dspark_ext.ops.sampling` at the verification
temperature, and the raw logits are returned as ``draft_logits`` (the law sampled from).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..ops.sampling import sample_draft
from ..targets.adapt import as_target
from .base import ContextUpdate, DraftBlock, append_ragged, kept_draft_state


class ModelDrafter:
    target_layer_ids = None
    target_hidden_size = None
    max_draft: Optional[int] = None

    def __init__(self, model):
        self.lm = as_target(model)
        self.vocab_size = self.lm.vocab_size
        self._pending: Optional[Tensor] = None      # int64 [B, P] committed, not yet run
        self._pending_len: Optional[Tensor] = None
        self._processed: Optional[Tensor] = None    # int64 [B]: tokens run from the anchor on
        self._fresh = True

    def reset(self, batch_size: int, device: torch.device) -> None:
        self.lm.reset(batch_size, None)
        self._fresh = True
        self._pending = torch.zeros((batch_size, 0), dtype=torch.int64, device=device)
        self._pending_len = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self._processed = torch.zeros(batch_size, dtype=torch.int64, device=device)

    def update(self, ctx: ContextUpdate) -> None:
        # Padding may hold any value (ContextUpdate); the model must only see valid ids.
        pad = (torch.arange(ctx.tokens.shape[1], device=ctx.tokens.device)[None, :]
               >= ctx.lengths[:, None])
        ctx = ctx._replace(tokens=ctx.tokens.masked_fill(pad, 0))
        if self._fresh:  # the prompts
            self.lm.prefill(ctx.tokens, ctx.lengths)
            self._fresh = False
            return
        # The rollback rule: keep the cache of the anchor and the accepted drafts it ran; the
        # committed tokens after those (at most the last draft) are fed next round.
        kept = kept_draft_state(self._processed, ctx.accepted)
        self.lm.truncate(self.lm.lengths() - self._processed + kept)
        rest = ctx.lengths - kept
        width = int(rest.max()) if rest.numel() else 0
        col = torch.arange(width, device=rest.device)[None, :]
        idx = (kept[:, None] + col).clamp(max=max(ctx.tokens.shape[1] - 1, 0))
        fresh = ctx.tokens.gather(1, idx) if width else ctx.tokens[:, :0]
        # No draft since the last update (a skipped round): its pending tokens stay first.
        self._pending, self._pending_len = append_ragged(self._pending, self._pending_len,
                                                         fresh, rest)
        self._processed = torch.zeros_like(rest)

    def draft(self, anchor: Tensor, anchor_position: Tensor, gamma: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        b, dev = anchor.shape[0], anchor.device
        p = self._pending_len
        first = torch.cat([self._pending, torch.zeros((b, 1), dtype=torch.int64, device=dev)], 1)
        first[torch.arange(b, device=dev), p] = anchor
        step = self.lm.forward(first, p + 1)
        logits = step.logits[torch.arange(b, device=dev), p]
        tokens, all_logits = [], []
        for k in range(gamma):
            if k > 0:
                logits = self.lm.forward(tokens[-1][:, None], torch.ones_like(p)).logits[:, 0]
            all_logits.append(logits)
            tokens.append(sample_draft(logits, temperature, seed, offset, k))
        # The cache now holds, from the anchor on, the anchor and drafts 0..gamma-2.
        self._processed = torch.full_like(p, gamma)
        self._pending = self._pending[:, :0]
        self._pending_len = torch.zeros_like(p)
        return DraftBlock(torch.stack(tokens, 1), torch.stack(all_logits, 1))

    def select_rows(self, rows: Tensor) -> None:
        self.lm.select_rows(rows)
        self._pending, self._pending_len = self._pending[rows], self._pending_len[rows]
        self._processed = self._processed[rows]
