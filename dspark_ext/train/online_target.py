"""The frozen target inside the training loop: nothing about it is ever written to disk.

One no-grad forward of the Hugging Face causal LM over the training sequences yields

* ``features`` [B, S, F]: the hidden states of the drafter's ``target_layer_ids``, read by
  forward hooks after decoder layer L (-1 = the embedding output; design §7), concatenated;
* ``last_hidden`` [B, S, d]: the final normed hidden state, the LM head's input.

The LM head is applied only where the losses need the target's distribution
(:meth:`OnlineTarget.logits_at`, the N*K supervised slots), never to all S positions: with a
150k vocabulary that is what keeps the online target's memory at O(S * d) (the paper's
"hidden state communication" trick, done locally).

Sequences are right-padded; causal attention means padding after a row's end never changes
its positions, so no attention mask is needed unless the caller passes one.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ..targets.base import check_target_layer_ids
from ..targets.hooks import LayerCapture, decoder_layers

__all__ = ["OnlineTarget", "TargetBatch", "cache_bytes", "lm_head_at"]


class TargetBatch(NamedTuple):
    features: Tensor      # [B, S, len(layers) * d]
    last_hidden: Tensor   # [B, S, d] (normed; input of the LM head)


class OnlineTarget:
    """Wraps a transformers ``*ForCausalLM``; freezes it (eval mode, no gradients)."""

    def __init__(self, model, target_layer_ids: Sequence[int]):
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.num_layers = len(decoder_layers(model))
        self.layers = check_target_layer_ids(target_layer_ids, self.num_layers)
        if not self.layers:
            raise ValueError("target_layer_ids must name at least one target layer")
        self.base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.lm_head = model.get_output_embeddings()
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        self.config = cfg
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self._capture = LayerCapture(model, self.layers)

    def close(self) -> None:
        self._capture.close()

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def embed_weight(self) -> Tensor:
        return self.model.get_input_embeddings().weight

    @property
    def lm_head_weight(self) -> Tensor:
        return self.lm_head.weight

    @torch.no_grad()
    def __call__(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None,
                 indices=None) -> TargetBatch:
        """``indices`` (the examples' positions in the data set) are for cached targets;
        the online target computes everything from the tokens."""
        self._capture.clear()
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        feats = self._capture.features()
        return TargetBatch(feats, last)

    def logits_at(self, last_hidden: Tensor, positions: Tensor) -> Tensor:
        """The target's logits at ``positions`` int64 [B, ...] (indices into S): [B, ..., V]."""
        return lm_head_at(self.lm_head, last_hidden, positions, self.softcap)

    @torch.no_grad()
    def full_logits(self, input_ids: Tensor) -> Tensor:
        """Logits at every position (tests; small models only)."""
        out = self(input_ids)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return self.logits_at(out.last_hidden, pos)


@torch.no_grad()
def lm_head_at(lm_head, last_hidden: Tensor, positions: Tensor,
               softcap: Optional[float] = None) -> Tensor:
    """``lm_head`` applied to ``last_hidden`` [B, S, d] at ``positions`` int64 [B, ...]
    (clamped into [0, S)): [B, ..., V]; Gemma-style final soft-capping when ``softcap``."""
    b, s, d = last_hidden.shape
    flat = positions.reshape(b, -1).clamp(0, s - 1)
    h = last_hidden.gather(1, flat[:, :, None].expand(-1, -1, d))
    logits = lm_head(h)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits.view(*positions.shape, -1)


def cache_bytes(num_tokens: int, num_feature_layers: int, hidden_size: int,
                bytes_per_value: int = 2) -> int:
    """Disk an offline hidden-state cache (DeepSpec's ``prepare_target_cache``: the feature
    layers and the last hidden state of every token, bf16) would need for ``num_tokens``
    tokens: what running the target online saves."""
    return int(num_tokens) * (num_feature_layers + 1) * int(hidden_size) * bytes_per_value
