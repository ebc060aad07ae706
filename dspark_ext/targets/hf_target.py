"""Target adapter for Hugging Face causal LMs (transformers >= 5.17; Qwen3, Llama and other
decoder-only models with ``model.model.layers``), on CPU and CUDA, in any dtype.

Only public transformers API is used: a ``DynamicCache``, explicit ``position_ids``, a 2-D
``attention_mask`` over the cache slots, ``cache.crop``, ``cache.batch_select_indices`` and
forward hooks on the decoder layers (the output of layer L equals
``hidden_states[L + 1]``; hook on the embedding for -1).

Requests in one batch accept different numbers of drafts, but a ``DynamicCache`` can only be
cropped for all rows at once. So each row's rejected slots stay in the cache as *holes*,
masked out in every later forward by the 2-D attention mask, while positions continue from
the row's true length; slots that no row uses any more are cropped. The logits therefore
equal those of the row decoded alone (up to floating-point summation order).
"""
from __future__ import annotations

import inspect
from typing import Optional, Sequence

import torch
from torch import Tensor

from .base import TargetStep, check_target_layer_ids
from .hooks import LayerCapture, decoder_layers

__all__ = ["HFTarget", "decoder_layers"]


class HFTarget:
    """Wraps a transformers ``*ForCausalLM`` (eval mode, no gradients)."""

    def __init__(self, model):
        try:
            from transformers import DynamicCache
        except ImportError as e:  # pragma: no cover - optional extra
            raise ImportError("HFTarget needs transformers: pip install 'dspark_ext[hf]'") from e
        self._cache_cls = DynamicCache
        self.model = model
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        self.config = cfg
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.hidden_size = int(cfg.hidden_size)
        self.num_layers = len(decoder_layers(model))
        self.max_positions = getattr(cfg, "max_position_embeddings", None)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._capture = LayerCapture(model, [])
        self.cache = None
        self._valid: Optional[Tensor] = None   # bool [B, S]: slot holds a live token
        self._holes: Optional[bool] = None     # some slot not live (None: not known yet)
        self._length: Optional[Tensor] = None  # int64 [B]: live tokens per row

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    # -- protocol ---------------------------------------------------------------------------
    def reset(self, batch_size: int, target_layer_ids: Optional[Sequence[int]] = None) -> None:
        self._capture.close()
        self._capture = LayerCapture(self.model,
                                     check_target_layer_ids(target_layer_ids, self.num_layers))
        try:
            self.cache = self._cache_cls(config=self.model.config)
        except TypeError:  # older signature
            self.cache = self._cache_cls()
        self._valid = torch.zeros((batch_size, 0), dtype=torch.bool, device=self.device)
        self._holes = None
        self._length = torch.zeros(batch_size, dtype=torch.int64, device=self.device)

    def _call(self, tokens: Tensor, mask: Optional[Tensor], positions: Tensor,
              keep_last: int = 0):
        kwargs = {self._cache_kw: self.cache}
        with torch.no_grad():
            out = self.model(input_ids=tokens,
                             attention_mask=None if mask is None else mask.long(),
                             position_ids=positions, use_cache=True, logits_to_keep=keep_last,
                             **kwargs)
        return out.logits

    def prefill(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        if self._valid is None or self._valid.shape[1] != 0:
            raise RuntimeError("HFTarget.prefill needs a fresh reset() first")
        b, n = tokens.shape
        # Left-pad inside (every row's last prompt token in the last column, so only one
        # logits row per request is computed); the protocol's blocks are right-padded.
        col = torch.arange(n, device=tokens.device)[None, :]
        shift = (n - lengths)[:, None]
        src = col - shift                                   # source index of each column
        live = src >= 0
        left = torch.where(live, tokens.gather(1, src.clamp(min=0)), torch.zeros_like(tokens))
        logits = self._call(left, live, src.clamp(min=0), keep_last=1)
        feats = self._capture.features()
        if feats is not None:  # back to right-padded
            idx = (col + shift).clamp(max=n - 1)
            feats = feats.gather(1, idx[:, :, None].expand(-1, -1, feats.shape[-1]))
        self._valid = live
        self._length = lengths.clone()
        self._holes = None
        return TargetStep(logits, feats)

    def forward(self, tokens: Tensor, lengths: Tensor) -> TargetStep:
        n = tokens.shape[1]
        col = torch.arange(n, device=tokens.device)[None, :]
        positions = self._length[:, None] + col
        # Without holes (always so at batch 1: rejected slots are cropped) the model's own
        # causal mask is the right one, and transformers builds none for a 1-token step;
        # a 2-D mask would cost a [B, 1, n, S] mask per forward.
        holes = self._holes
        if holes is None:
            holes = self._holes = not bool(self._valid.all())  # host read, once per round
        mask = None if not holes else torch.cat(
            [self._valid, torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        logits = self._call(tokens, mask, positions)
        self._valid = torch.cat([self._valid, col < lengths[:, None]], dim=1)
        self._length = self._length + lengths
        self._holes = None
        return TargetStep(logits, self._capture.features())

    def lengths(self) -> Tensor:
        return self._length

    def truncate(self, lengths: Tensor) -> None:
        lengths = torch.minimum(self._length, lengths.to(self._length))
        self._valid = self._valid & (self._valid.cumsum(1) <= lengths[:, None])
        self._length = lengths
        self._crop()

    def _crop(self) -> None:
        self._holes = None
        used = self._valid.any(0)
        # One host read per call: how many trailing slots no row uses any more.
        keep = int(used.nonzero().max()) + 1 if bool(used.any()) else 0
        if keep < self._valid.shape[1]:
            # A negative argument removes that many trailing slots (the form every
            # transformers >= 5.17 accepts; 5.24 rejects positive lengths).
            self.cache.crop(keep - self._valid.shape[1])
            self._valid = self._valid[:, :keep]

    def select_rows(self, rows: Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self._valid = self._valid[rows]
        self._length = self._length[rows]
        self._crop()
