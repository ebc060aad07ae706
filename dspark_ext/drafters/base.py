"""The drafter protocol: what the decoder asks of every proposer (DSpark, DFlash, n-gram,
a small autoregressive model), and the block a proposer returns.

A round of speculative decoding, as the decoder drives it (design §8, §11):

1. ``drafter.update(ContextUpdate)`` hands over the tokens committed since the last call
   (the prompt at the start; then the anchor and the accepted drafts of every round) with
   their absolute positions, how many drafts of the last ``draft`` call were accepted, and,
   when the drafter asked for them through ``target_layer_ids``, the target's hidden states
   of those tokens.
2. ``drafter.draft(anchor, anchor_position, gamma, temperature, seed, offset)`` proposes
   ``gamma`` tokens that continue ``context + [anchor]``. The anchor is the last committed
   token (sampled from the target, not yet run through it).

Everything is batched: row ``b`` of every tensor belongs to request ``b``; rows have different
context lengths and accept different numbers of drafts. ``select_rows`` drops finished rows.

Losslessness contract (design §3): ``draft_logits[b, k]`` are the logits of the law the drafter
sampled ``draft_tokens[b, k]`` from, *before* temperature (the verification op applies
``temperature[b]`` to them exactly as the drafter did), conditioned on
``draft_tokens[b, :k]``. ``draft_logits=None`` declares one-hot (deterministic) drafts.
Drafts must draw their randomness only from the drafting stream of :mod:`dspark_ext.ops.sampling`
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
    accepted:  int64 [B] or None. None: no draft call precedes these tokens (the prompts
               after ``reset``, or a round in which the decoder skipped drafting and ran a
               plain target step: ``tokens[b, 0]`` is then that round's anchor). Otherwise the update follows a ``draft`` call: row b accepted
               ``accepted[b]`` of its drafts, ``tokens[b, 0]`` is that call's anchor and
               ``tokens[b, 1:lengths[b]]`` its first ``accepted[b]`` drafts
               (``lengths = accepted + 1``).

    The rollback rule (design §11), the same for every drafter: whatever a drafter built
    while drafting, for the anchor and the draft positions after it (an autoregressive
    drafter's KV cache, say), stays valid for the first ``accepted[b] + 1`` of those
    tokens and must be discarded beyond them (:func:`kept_draft_state`). The decoder never
    rolls a drafter back itself.
    """

    tokens: Tensor
    lengths: Tensor
    positions: Tensor
    features: Optional[Tensor] = None
    accepted: Optional[Tensor] = None


def kept_draft_state(processed: Tensor, accepted: Optional[Tensor]) -> Tensor:
    """The rollback rule: of the ``processed`` [B] tokens a drafter ran from the anchor on
    while drafting, how many it keeps after an update with ``accepted`` (int64 [B]; None
    keeps none). Returns int64 [B]: ``min(processed, accepted + 1)``."""
    if accepted is None:
        return torch.zeros_like(processed)
    return torch.minimum(processed, accepted.to(processed) + 1)


def concat_ragged(lengths: Sequence[Tensor], *groups: Sequence[Tensor]):
    """Row-wise concatenation of right-padded batches, in one gather per tensor: row r of the
    result holds ``t_0[r, :lengths[0][r]]``, then ``t_1[r, :lengths[1][r]]``, ... (right-padded;
    the padding repeats entries of the inputs). ``lengths``: int64 [B] per part; each group is
    one tensor per part, ``[B, n_s, ...]`` (all groups share the parts' widths n_s). Returns
    the concatenated tensor of every group, then the summed lengths. For drafters that
    receive several updates with no draft call between them (skipped rounds): merging once
    costs O(total), where merging each update into the last would cost O(total^2)."""
    lens = torch.stack(list(lengths))                          # [S, B]
    widths = [g.shape[1] for g in groups[0]]
    n, parts = sum(widths), len(widths)
    dev = lens.device
    ends = lens.cumsum(0)                                      # row's tokens through part s
    first_col = torch.tensor([sum(widths[:i]) for i in range(parts)], device=dev)
    j = torch.arange(n, device=dev)[None, :]
    part = (ends[:, :, None] <= j[None]).sum(0).clamp(max=parts - 1)      # [B, n]
    start = (ends - lens).t().gather(1, part)                  # row's tokens before it
    src = (first_col[part] + j - start).clamp(0, max(n - 1, 0))
    out = []
    for group in groups:
        both = torch.cat(list(group), dim=1)
        index = src.view(src.shape + (1,) * (both.dim() - 2)).expand(both.shape)
        out.append(both.gather(1, index))
    return (*out, ends[-1])


def append_ragged(a: Tensor, a_len: Tensor, b: Tensor, b_len: Tensor):
    """:func:`concat_ragged` of two parts: ``(c [B, n_a + n_b, ...], a_len + b_len)``."""
    return concat_ragged([a_len, b_len], [a, b])


class DraftBlock(NamedTuple):
    """One block of proposals.

    draft_tokens:      int64 [B, K].
    draft_logits:      [B, K, V] logits of the law each draft was sampled from (before
                       temperature), or None for one-hot drafts.
    base_logits:       [B, K, V] backbone logits before a Markov head (DSpark), or None.
    confidence_logits: float32 [B, K] confidence-head logits (sigmoid = conditional survival
                       c_k, design §4), or None when the drafter has no confidence head.
    hidden:            [B, K, d] the drafter's last hidden states of the block, or None.
    num_valid:         int64 [B] or None: row b proposes only ``draft_tokens[b, :num_valid[b]]``
                       (an n-gram drafter without a match proposes nothing); None = all K.
    draft_ids:         int64 [B, K, W] or None: ``draft_logits`` is then [B, K, W] and its
                       column j is vocabulary id ``draft_ids[b, k, j]``, every other id at logit
                       -inf (a top-k Markov correction's candidates); None = dense [B, K, V].
    """

    draft_tokens: Tensor
    draft_logits: Optional[Tensor] = None
    base_logits: Optional[Tensor] = None
    confidence_logits: Optional[Tensor] = None
    hidden: Optional[Tensor] = None
    num_valid: Optional[Tensor] = None
    draft_ids: Optional[Tensor] = None


@runtime_checkable
class Drafter(Protocol):
    """What :class:`dspark_ext.SpeculativeDecoder` needs from a proposer.

    Attributes:
      vocab_size:       the vocabulary the drafts index (must equal the target's), or None
                        when the drafter works on token ids alone (n-gram lookup).
      target_layer_ids: target layers whose hidden states ``update`` must receive (design §7:
                        layer L is read after decoder layer L, -1 = embedding output), or None.
      target_hidden_size: the hidden size of each target feature the drafter expects (its
                        input is ``len(target_layer_ids) * target_hidden_size`` wide), or
                        None when it takes no features.
      max_draft:        the largest ``gamma`` ``draft`` accepts, or None for no limit.
    """

    vocab_size: Optional[int]
    target_layer_ids: Optional[Sequence[int]]
    target_hidden_size: Optional[int]
    max_draft: Optional[int]

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Forget every request; the next ``update`` carries each row's prompt."""

    def update(self, ctx: ContextUpdate) -> None:
        """Append newly committed tokens (and their target features) to every row, rolling
        back draft-time state by the rule of :class:`ContextUpdate`."""

    def draft(self, anchor: Tensor, anchor_position: Tensor, gamma: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        """Propose ``gamma`` tokens after ``anchor`` (int64 [B]) at ``anchor_position``
        (int64 [B]); ``temperature`` float32 [B] (0 = greedy row), ``seed`` / ``offset``
        int64 [B] (the round's Philox key and counter)."""

    def select_rows(self, rows: Tensor) -> None:
        """Keep only the requests at ``rows`` (int64 indices, in that order)."""
