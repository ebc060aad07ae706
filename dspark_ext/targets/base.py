"""The target protocol: what the decoder needs from the model it speeds up.

Every target keeps its own KV cache, with one slot sequence per request. The decoder drives
it with right-padded blocks (row ``b``'s tokens are ``tokens[b, :lengths[b]]``):

* ``prefill(tokens, lengths)`` runs the prompts; returns the logits at each row's last prompt
  token and the hidden states of the requested layers for every prompt token.
* ``forward(tokens, lengths)`` appends one block per row (the anchor and the drafts to
  verify) at each row's next positions and returns logits and features for every position.
* ``truncate(lengths)`` keeps only the first ``lengths[b]`` tokens of row ``b`` (the decoder
  passes the length before the last block plus the anchor and the accepted drafts); the rest
  is forgotten, so the next block continues right after them (positions included).
  ``lengths()`` is each row's current token count.
* ``select_rows(rows)`` drops finished requests.

Features are the hidden states of ``target_layer_ids`` (design §7: layer L is read after decoder
layer L, -1 is the embedding output; the final normed output is never a feature),
concatenated along the last dimension in that order.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor


class TargetStep(NamedTuple):
    """logits [B, n, V]; features [B, n, len(target_layer_ids) * hidden_size] or None."""

    logits: Tensor
    features: Optional[Tensor] = None


@runtime_checkable
class Target(Protocol):
    """Attributes: ``vocab_size``, ``hidden_size``, ``num_layers`` (decoder layers),
    ``max_positions`` (position limit, or None), ``device``, ``dtype``."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    max_positions: Optional[int]
    device: torch.device
    dtype: torch.dtype

    def reset(self, batch_size: int, target_layer_ids: Optional[Sequence[int]] = None) -> None:
        """Drop every request and set the layers whose features forward/prefill return."""

    def prefill(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        """Prompts -> logits [B, 1, V] at each row's last token, features [B, L, F]."""

    def forward(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        """Append a block per row -> logits [B, n, V], features [B, n, F]."""

    def lengths(self) -> Tensor:
        """int64 [B]: tokens held per row (prompt and every block since, after truncation)."""

    def truncate(self, lengths: Tensor) -> None:
        """Keep the first ``lengths[b]`` tokens of row b (never more than it holds)."""

    def select_rows(self, rows: Tensor) -> None:
        """Keep only the requests at ``rows`` (int64 indices)."""


def check_target_layer_ids(layers: Optional[Sequence[int]], num_layers: int) -> list:
    """Validate ``target_layer_ids`` against a target with ``num_layers`` decoder layers."""
    if layers is None:
        return []
    out = [int(x) for x in layers]
    for x in out:
        if x == num_layers - 1:
            raise ValueError(
                f"target_layer_ids names the target's final layer {x}: its output is the "
                "input of the final norm and LM head, which the drafter must not see "
                f"(allowed: -1 .. {num_layers - 2})")
        if not -1 <= x < num_layers - 1:
            raise ValueError(f"target_layer_ids entry {x} is out of range for a target with "
                             f"{num_layers} layers (allowed: -1 .. {num_layers - 2})")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"target_layer_ids must be strictly increasing, got {out}")
    return out


check_feature_layers = check_target_layer_ids  # the name before the glossary (design §13)
