"""A per-request KV cache for plain torch targets (and the worked example in README).

Row ``b`` holds its tokens' keys/values packed at slots ``[0, length[b])`` of every layer, so
rolling back a rejected suffix is only a length change, per row, with no copy. A block of
``n`` tokens is written at slots ``length[b] .. length[b] + n - 1`` of each row.

The model's attention calls :meth:`KVCache.update` once per layer and gets back every key and
value of the row plus the boolean attention mask [B, 1, n, S] (causal over the row's own
tokens, nothing past its length), ready for ``scaled_dot_product_attention``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor


class KVCache:
    """Keys/values [B, H, S, D] per layer with per-row lengths.

    The target adapter (the "caller") owns it: ``begin(lengths_in_block)`` before a model
    forward, ``update(layer, k, v)`` from inside the model, ``commit()`` after, ``truncate``
    to roll back.
    """

    def __init__(self, batch_size: int, device: torch.device):
        self.length = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self._k: List[Optional[Tensor]] = []
        self._v: List[Optional[Tensor]] = []
        # n, slots [B, n], mask [B, 1, n, S], S (the key span)
        self._block: Optional[Tuple[int, Tensor, Tensor, int]] = None

    @property
    def batch_size(self) -> int:
        return self.length.shape[0]

    def begin(self, n: int) -> Tensor:
        """Start a block of ``n`` tokens per row; returns the positions [B, n] (the tokens'
        slots, which are their positions in the row)."""
        slots = self.length[:, None] + torch.arange(n, device=self.length.device)[None, :]
        # Host read of the longest row, once per block: sizes the key tensors.
        needed = int(self.length.max()) + n if self.batch_size else n
        keys = torch.arange(needed, device=self.length.device)
        mask = keys[None, None, :] <= slots[:, :, None]            # causal, own tokens only
        self._block = (n, slots, mask[:, None], needed)
        return slots

    def update(self, layer: int, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Write this block's keys/values ([B, H, n, D]) of ``layer``; returns the row's keys
        and values [B, H, S, D] and the boolean mask [B, 1, n, S] (True = attend)."""
        if self._block is None:
            raise RuntimeError("KVCache.update called outside a block (call begin first)")
        n, slots, mask, needed = self._block
        if k.shape[2] != n or v.shape[2] != n:
            raise ValueError(f"KVCache.update: k/v carry {k.shape[2]} tokens, the block has {n}")
        while len(self._k) <= layer:
            self._k.append(None)
            self._v.append(None)
        self._k[layer] = self._grow(self._k[layer], k, needed)
        self._v[layer] = self._grow(self._v[layer], v, needed)
        rows = torch.arange(self.batch_size, device=k.device)[:, None]
        # Advanced indexing puts the indexed dims first: [B, n, H, D].
        self._k[layer][rows, :, slots] = k.transpose(1, 2)
        self._v[layer][rows, :, slots] = v.transpose(1, 2)
        return self._k[layer][:, :, :needed], self._v[layer][:, :, :needed], mask

    @staticmethod
    def _grow(buf: Optional[Tensor], like: Tensor, needed: int) -> Tensor:
        if buf is not None and buf.shape[2] >= needed:
            return buf
        b, h, _, d = like.shape
        cap = max(needed, 2 * (buf.shape[2] if buf is not None else 0), 64)
        new = like.new_zeros((b, h, cap, d))
        if buf is not None:
            new[:, :, : buf.shape[2]] = buf
        return new

    def commit(self, lengths: Tensor) -> None:
        """End the block: row b keeps ``lengths[b]`` of its block tokens."""
        self.length = self.length + lengths
        self._block = None

    def truncate(self, lengths: Tensor) -> None:
        self.length = torch.minimum(self.length, lengths.to(self.length))

    def select_rows(self, rows: Tensor) -> None:
        self.length = self.length[rows]
        self._k = [None if t is None else t[rows] for t in self._k]
        self._v = [None if t is None else t[rows] for t in self._v]
