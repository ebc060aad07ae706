"""Target adapter for any plain torch model given as a callable.

The model's forward takes ``(tokens [B, n], positions [B, n], cache)`` and returns either
the logits [B, n, V] or ``(logits, hidden_states)``, where ``hidden_states`` is a sequence
laid out like Hugging Face's ``output_hidden_states`` (index 0 = embedding output, index
L + 1 = output of decoder layer L), needed only when a drafter asks for features. ``cache``
is a :class:`~dspark_ext.targets.kv_cache.KVCache` that this adapter owns; the model's
attention calls ``k, v, mask = cache.update(layer_idx, k, v)``. See README ("Any torch
model") for a worked example.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .base import TargetStep, check_target_layer_ids
from .kv_cache import KVCache


class TorchTarget:
    def __init__(self, forward: Callable, *, vocab_size: int, hidden_size: int,
                 num_layers: int, max_positions: Optional[int] = None,
                 device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32):
        if not callable(forward):
            raise TypeError("forward must be callable (tokens, positions, cache) -> logits")
        self._forward = forward
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.max_positions = max_positions
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self._layers: list = []
        self.cache: Optional[KVCache] = None

    def reset(self, batch_size: int, target_layer_ids: Optional[Sequence[int]] = None) -> None:
        self._layers = check_target_layer_ids(target_layer_ids, self.num_layers)
        self.cache = KVCache(batch_size, self.device)

    def _run(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        if self.cache is None:
            raise RuntimeError("TorchTarget: call reset(batch_size, target_layer_ids) first")
        positions = self.cache.begin(tokens.shape[1])
        out = self._forward(tokens, positions, self.cache)
        self.cache.commit(lengths)
        logits, hidden = (out, None) if isinstance(out, Tensor) else (out[0], out[1])
        if logits.dim() != 3 or logits.shape[:2] != tokens.shape:
            raise ValueError(f"forward returned logits of shape {tuple(logits.shape)}, expected "
                             f"[{tokens.shape[0]}, {tokens.shape[1]}, vocab]")
        features = None
        if self._layers:
            if hidden is None:
                raise ValueError("the drafter needs target features but forward returned no "
                                 "hidden states: return (logits, hidden_states)")
            features = torch.cat([hidden[i + 1] for i in self._layers], dim=-1)
        return TargetStep(logits, features)

    def prefill(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        step = self._run(tokens, lengths)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        return TargetStep(step.logits[rows, last][:, None], step.features)

    def forward(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        return self._run(tokens, lengths)

    def lengths(self) -> Tensor:
        return self.cache.length

    def truncate(self, lengths: Tensor) -> None:
        self.cache.truncate(lengths)

    def select_rows(self, rows: Tensor) -> None:
        self.cache.select_rows(rows)
