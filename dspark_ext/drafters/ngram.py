"""Prompt-lookup (n-gram) drafting: no model, no weights, works with any target.

For each row, the last ``n`` tokens of ``context + [anchor]`` (n from ``max_ngram`` down to
``min_ngram``) are looked up in the earlier history; the tokens that followed the match with
the longest continuation (up to K tokens; among those, the most recent) are proposed. Drafts are one-hot (``draft_logits=None``), so verification stays
lossless at any temperature. A row without a match proposes nothing (``num_valid = 0``) and
the round costs it one target token, as plain decoding would.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import ContextUpdate, DraftBlock


class NgramDrafter:
    vocab_size: Optional[int] = None
    target_layer_ids = None
    target_hidden_size = None

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1,
                 max_draft: Optional[int] = None):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram, self.min_ngram = int(max_ngram), int(min_ngram)
        self.max_draft = max_draft
        self._hist: Optional[Tensor] = None   # int64 [B, cap] committed tokens, right-padded
        self._len: Optional[Tensor] = None

    def reset(self, batch_size: int, device: torch.device) -> None:
        # History lives on the CPU: the lookup is integer work on short rows.
        self._hist = torch.full((batch_size, 64), -1, dtype=torch.int64)
        self._len = torch.zeros(batch_size, dtype=torch.int64)

    def update(self, ctx: ContextUpdate) -> None:
        tokens, lengths = ctx.tokens.cpu(), ctx.lengths.cpu()
        need = int((self._len + lengths).max()) if lengths.numel() else 0
        if need > self._hist.shape[1]:
            grown = torch.full((self._hist.shape[0], max(need, 2 * self._hist.shape[1])), -1,
                               dtype=torch.int64)
            grown[:, : self._hist.shape[1]] = self._hist
            self._hist = grown
        col = torch.arange(tokens.shape[1])[None, :]
        live = col < lengths[:, None]
        dst = (self._len[:, None] + col).clamp(max=self._hist.shape[1] - 1)
        rows = torch.arange(tokens.shape[0])[:, None].expand_as(dst)
        self._hist[rows[live], dst[live]] = tokens[live]
        self._len = self._len + lengths

    def draft(self, anchor: Tensor, anchor_position: Tensor, gamma: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        b = anchor.shape[0]
        n_hist = self._len + 1                                    # history + anchor
        width = int(n_hist.max()) if b else 1
        hist = torch.full((b, width + gamma), -1, dtype=torch.int64)
        hist[:, : min(width, self._hist.shape[1])] = self._hist[:, :width]
        rows = torch.arange(b)
        hist[rows, self._len] = anchor.cpu()
        out = torch.zeros((b, gamma), dtype=torch.int64)
        found = torch.zeros(b, dtype=torch.int64)
        unmatched = torch.ones(b, dtype=torch.bool)
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if width <= n:
                continue
            # suffix [B, n]: the last n tokens of each row's history.
            idx = (n_hist[:, None] - n + torch.arange(n)[None, :]).clamp(min=0)
            suffix = hist.gather(1, idx)
            win = hist[:, :width].unfold(1, n, 1)                 # [B, width - n + 1, n]
            start = torch.arange(win.shape[1])[None, :]
            # A match needs a continuation inside the committed history (not the suffix itself).
            ok = (win == suffix[:, None, :]).all(-1) & (start + n < n_hist[:, None]) \
                & (n_hist[:, None] > n)
            # Prefer the match with the longest continuation (up to K tokens), then the most
            # recent: the latest match of a repeating tail is often followed by only a
            # token or two before the present.
            avail_all = (n_hist[:, None] - (start + n)).clamp(min=0, max=gamma)
            score = torch.where(ok, avail_all * (win.shape[1] + 1) + start, -1)
            top = score.max(1).values
            best = torch.where(top >= 0, top % (win.shape[1] + 1), -1)
            take = unmatched & (top >= 0)
            if bool(take.any()):
                src = best[:, None] + n + torch.arange(gamma)[None, :]
                cont = hist.gather(1, src.clamp(min=0, max=hist.shape[1] - 1))
                avail = (n_hist - (best + n)).clamp(min=0, max=gamma)
                out[take] = cont[take]
                found[take] = avail[take]
                unmatched &= ~take
        out = torch.where(out < 0, 0, out)
        dev = anchor.device
        return DraftBlock(out.to(dev), num_valid=found.to(dev))

    def select_rows(self, rows: Tensor) -> None:
        rows = rows.cpu()
        self._hist, self._len = self._hist[rows], self._len[rows]
