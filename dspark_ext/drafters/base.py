"""The drafter protocol: what the decoder asks of every proposer (DSpark, DFlash, n-gram,
a small autoregressive model), and the block a proposer returns.

A round of speculative decoding, as the decoder drives it (SPEC §8):

1. ``drafter.update(ContextUpdate)`` hands over the tokens committed since the last call
   (the prompt at the start; then the anchor and the accepted drafts of every round) with
   their absolute positions and, when the drafter asked for them through
   ``target_layer_ids``, the target's hidden states of those tokens.
2. ``drafter.draft(anchor, anchor_position, num_tokens, temperature, seed, offset)`` proposes
   ``num_tokens`` tokens that continue ``context + [anchor]``. The anchor is the last
   committed token (sampled from the target, not yet run through it).

Everything is batched: row ``b`` of every tensor belongs to request ``b``; rows have different
context lengths and accept different numbers of drafts. ``select_rows`` drops finished rows.

Losslessness contract (SPEC §3): ``draft_logits[b, k]`` are the logits of the law the drafter
sampled ``draft_tokens[b, k]`` from, *before* temperature (the verification op applies
``temperature[b]`` to them exactly as the drafter did), conditioned on
``draft_tokens[b, :k]``. ``draft_logits=None`` declares one-hot (deterministic) drafts.
Drafts must draw their randomness only from the drafting stream of :mod:`dspark_ext.sampling`
(never from the verification streams), keyed by the row's seed and the round's offset.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor


class ContextUpdate(NamedTuple):
    """Tokens committed since the drafter's last update, right-padded per row.

    tokens:    int64 [B, n]; row b's new tokens are ``tokens[b, :lengths[b]]`` (the rest is
               padding, any value).
    lengths:   int64 [B], 0..n (0: nothing new for that row).
    positions: int64 [B, n], absolute position of each token (0 = the first prompt token).
    features:  [B, n, F] or None: the target's hidden states of the drafter's
               ``target_layer_ids``, concatenated in that order (F = len(ids) * hidden size),
               for each new token; None when the drafter asks for none.
    """

    tokens: Tensor
    lengths: Tensor
    positions: Tensor
    features: Optional[Tensor] = None


class DraftBlock(NamedTuple):
    """One block of proposals.

    draft_tokens:      int64 [B, K].
    draft_logits:      [B, K, V] logits of the law each draft was sampled from (before
                       temperature), or None for one-hot drafts.
    base_logits:       [B, K, V] backbone logits before a Markov head (DSpark), or None.
    confidence_logits: float32 [B, K] confidence-head logits (sigmoid = conditional survival
                       c_k, SPEC §4), or None when the drafter has no confidence head.
    hidden:            [B, K, d] the drafter's last hidden states of the block, or None.
    num_valid:         int64 [B] or None: row b proposes only ``draft_tokens[b, :num_valid[b]]``
                       (an n-gram drafter without a match proposes nothing); None = all K.
    """

    draft_tokens: Tensor
    draft_logits: Optional[Tensor] = None
    base_logits: Optional[Tensor] = None
    confidence_logits: Optional[Tensor] = None
    hidden: Optional[Tensor] = None
    num_valid: Optional[Tensor] = None


@runtime_checkable
class Drafter(Protocol):
    """What :class:`dspark_ext.SpeculativeDecoder` needs from a proposer.

    Attributes:
      vocab_size:       the vocabulary the drafts index (must equal the target's), or None
                        when the drafter works on token ids alone (n-gram lookup).
      target_layer_ids: target layers whose hidden states ``update`` must receive (SPEC §7:
                        layer L is read after decoder layer L, -1 = embedding output), or None.
      max_draft:        the largest ``num_tokens`` ``draft`` accepts, or None for no limit.
    """

    vocab_size: Optional[int]
    target_layer_ids: Optional[Sequence[int]]
    max_draft: Optional[int]

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Forget every request; the next ``update`` carries each row's prompt."""

    def update(self, ctx: ContextUpdate) -> None:
        """Append newly committed tokens (and their target features) to every row."""

    def draft(self, anchor: Tensor, anchor_position: Tensor, num_tokens: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        """Propose ``num_tokens`` tokens after ``anchor`` (int64 [B]) at ``anchor_position``
        (int64 [B]); ``temperature`` float32 [B] (0 = greedy row), ``seed`` / ``offset``
        int64 [B] (the round's Philox key and counter)."""

    def select_rows(self, rows: Tensor) -> None:
        """Keep only the requests at ``rows`` (int64 indices, in that order)."""
