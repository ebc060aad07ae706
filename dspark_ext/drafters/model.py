"""Autoregressive drafting with any small causal LM (what HF assisted generation does, but
batched): the draft model keeps its own KV cache through a target adapter
(:class:`~dspark_ext.targets.HFTarget` for transformers models,
:class:`~dspark_ext.targets.TorchTarget` for plain torch ones).

A round feeds the tokens committed since the last round plus the anchor in one forward, then
one forward per further draft position (K forwards in all). After verification the cache
keeps the longest prefix of what it was fed that was committed; a committed token it never
saw (the last draft, when all K were accepted) is fed at the start of the next round.
Tokens are sampled on the draft stream of :mod:`dspark_ext.sampling` at the verification
temperature, and the raw logits are returned as ``draft_logits`` (the law sampled from).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..sampling import sample_draft
from .base import ContextUpdate, DraftBlock


class ModelDrafter:
    target_layer_ids = None
    max_draft: Optional[int] = None

    def __init__(self, model):
        from ..decoding.decoder import as_target
        self.lm = as_target(model)
        self.vocab_size = self.lm.vocab_size
        self._pending: Optional[Tensor] = None      # int64 [B, P] committed, not yet fed
        self._pending_len: Optional[Tensor] = None
        self._fed: Optional[Tensor] = None          # int64 [B, F] fed since the anchor
        self._fed_count: Optional[Tensor] = None    # int64 [B]: F per row
        self._fresh = True

    def reset(self, batch_size: int, device: torch.device) -> None:
        self.lm.reset(batch_size, None)
        self._fresh = True
        self._pending = torch.zeros((batch_size, 0), dtype=torch.int64, device=device)
        self._pending_len = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self._fed = torch.zeros((batch_size, 0), dtype=torch.int64, device=device)
        self._fed_count = torch.zeros(batch_size, dtype=torch.int64, device=device)

    def update(self, ctx: ContextUpdate) -> None:
        # Padding may hold any value (ContextUpdate); the model must only see valid ids.
        pad = (torch.arange(ctx.tokens.shape[1], device=ctx.tokens.device)[None, :]
               >= ctx.lengths[:, None])
        ctx = ctx._replace(tokens=ctx.tokens.masked_fill(pad, 0))
        if self._fresh:  # the prompts
            self.lm.prefill(ctx.tokens, ctx.lengths)
            self._fresh = False
            return
        # Keep the longest fed prefix that was committed; the rest of the committed tokens
        # are fed next round.
        m = min(self._fed.shape[1], ctx.tokens.shape[1])
        col = torch.arange(m, device=ctx.tokens.device)[None, :]
        same = (self._fed[:, :m] == ctx.tokens[:, :m]) & (col < ctx.lengths[:, None])
        matched = same.long().cumprod(1).sum(1)
        start = self.lm.lengths() - self._fed_count
        self.lm.truncate(start + matched)
        rest = ctx.lengths - matched
        width = int(rest.max()) if rest.numel() else 0
        idx = (matched[:, None] + torch.arange(width, device=rest.device)[None, :])
        idx = idx.clamp(max=max(ctx.tokens.shape[1] - 1, 0))
        self._pending = ctx.tokens.gather(1, idx) if width else ctx.tokens[:, :0]
        self._pending_len = rest
        self._fed = self._fed[:, :0]
        self._fed_count = torch.zeros_like(rest)

    def draft(self, anchor: Tensor, anchor_position: Tensor, num_tokens: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        b, dev = anchor.shape[0], anchor.device
        p = self._pending_len
        first = torch.cat([self._pending, torch.zeros((b, 1), dtype=torch.int64, device=dev)], 1)
        first[torch.arange(b, device=dev), p] = anchor
        step = self.lm.forward(first, p + 1)
        logits = step.logits[torch.arange(b, device=dev), p]
        tokens, all_logits = [], []
        for k in range(num_tokens):
            if k > 0:
                logits = self.lm.forward(tokens[-1][:, None], torch.ones_like(p)).logits[:, 0]
            all_logits.append(logits)
            tokens.append(sample_draft(logits, temperature, seed, offset, k))
        # What the cache now holds after the anchor: the anchor and drafts 0..K-2.
        self._fed = torch.stack([anchor] + tokens[:-1], dim=1)
        self._fed_count = torch.full_like(p, num_tokens)
        self._pending = self._pending[:, :0]
        self._pending_len = torch.zeros_like(p)
        return DraftBlock(torch.stack(tokens, 1), torch.stack(all_logits, 1))

    def select_rows(self, rows: Tensor) -> None:
        self.lm.select_rows(rows)
        self._pending, self._pending_len = self._pending[rows], self._pending_len[rows]
        self._fed, self._fed_count = self._fed[rows], self._fed_count[rows]
