"""Reading target-layer hidden states out of a transformers model with forward hooks
(design §7: layer L is the output of decoder layer L, equal to ``hidden_states[L + 1]``; -1 is
the embedding output). Used by the decoding adapter and by training's online target."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a transformers causal LM (hooks read layer L after layer L)."""
    for get in (lambda m: m.model.layers, lambda m: m.get_decoder().layers):
        try:
            layers = get(model)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise TypeError(f"{type(model).__name__}: cannot find the decoder layers (expected "
                    "model.model.layers or model.get_decoder().layers)")


class LayerCapture:
    """Hooks on ``layers`` (validated ids) of ``model``; :meth:`features` returns the last
    forward's outputs of those layers concatenated in that order, [B, n, len(layers) * d]."""

    def __init__(self, model, layers: List[int]):
        self.layers = list(layers)
        self._captured: dict = {}
        decoder = decoder_layers(model)
        self._hooks = []
        for layer in self.layers:
            module = model.get_input_embeddings() if layer == -1 else decoder[layer]
            self._hooks.append(module.register_forward_hook(self._hook(layer)))

    def _hook(self, layer: int):
        def capture(module, args, output):
            self._captured[layer] = output[0] if isinstance(output, (tuple, list)) else output
        return capture

    def features(self) -> Optional[Tensor]:
        """None when no layer is captured; the captured outputs are released."""
        if not self.layers:
            return None
        feats = torch.cat([self._captured[i] for i in self.layers], dim=-1)
        self._captured.clear()
        return feats

    def clear(self) -> None:
        self._captured.clear()

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._captured.clear()
