"""Per-layer, per-row ragged cache of the context keys/values the drafter's block attends to.

The context (committed tokens' projected target features) is never transformed by the draft
layers, so each layer's K/V of a context token is computed once, when the token is committed,
and kept here. Rows hold different numbers of tokens: row b's keys are slots
``[0, lengths[b])`` of a right-padded buffer ``[layers, B, Hkv, capacity, D]``; slots beyond a
row's length are kept finite (zeros or stale values) so that masked attention over them never
meets a NaN.

The decode path also *borrows* slots ``[lengths[b], lengths[b] + block)`` for the draft block's
own K/V (see :meth:`write_block`): attention then reads one contiguous key range per row with
no concatenation copy of the context. The block is never committed (lengths do not move), so
there is nothing to roll back; the next ``append`` overwrites those slots.

Capacity grows geometrically; growth is the only place a host value is needed (one ``max``
of the lengths per append).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["ContextKVCache"]

_MIN_CAPACITY = 64


class ContextKVCache:
    """Keys/values ``[num_layers, B, Hkv, capacity, D]`` with per-row lengths ``int64 [B]``."""

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, reserve_tail: int):
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.reserve_tail = reserve_tail  # slots kept free after the longest row (the block)
        self.keys = self.values = self.lengths = None
        self.max_length = 0  # host copy of lengths.max() (an upper bound after select_rows)

    @property
    def batch_size(self) -> int:
        return 0 if self.lengths is None else self.lengths.shape[0]

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys.shape[3]

    def reset(self, batch_size: int, device, dtype: torch.dtype) -> None:
        """Empty rows; storage is allocated on the first append."""
        self.lengths = torch.zeros(batch_size, dtype=torch.int64, device=device)
        shape = (self.num_layers, batch_size, self.num_kv_heads, 0, self.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_length = 0

    def reserve(self, needed: int) -> None:
        """Make room for ``needed`` slots per row (doubling, so appends stay amortised O(1))."""
        cap = self.capacity
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap, _MIN_CAPACITY)
        shape = list(self.keys.shape)
        shape[3] = new_cap
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = torch.zeros(shape, dtype=old.dtype, device=old.device)
            grown[:, :, :, :cap] = old
            setattr(self, name, grown)

    def append(self, keys: Tensor, values: Tensor, counts: Tensor) -> None:
        """Append ``counts[b]`` new tokens to row b: ``keys``/``values`` [layers, B, Hkv, n, D]
        right-padded per row (entries at or after ``counts[b]`` are ignored)."""
        n = keys.shape[3]
        if n == 0:
            return
        keys, values = keys.to(self.keys.dtype), values.to(self.values.dtype)
        device = keys.device
        step = torch.arange(n, device=device)
        valid = step[None, :] < counts[:, None]                       # [B, n]
        new_lengths = self.lengths + counts
        # Padding entries are written too (one scatter, no compaction), just past the row's
        # new length: room for max_length + n, zeroed so they stay finite.
        new_max = int(new_lengths.max())  # the one host sync: capacity must be known
        self.reserve(max(self.max_length + n, new_max) + self.reserve_tail)
        slots = (self.lengths[:, None] + step[None, :])                # [B, n]
        index = slots[None, :, None, :, None].expand_as(keys)
        keep = valid[None, :, None, :, None]
        self.keys.scatter_(3, index, torch.where(keep, keys, torch.zeros((), dtype=keys.dtype,
                                                                          device=device)))
        self.values.scatter_(3, index, torch.where(keep, values, torch.zeros(
            (), dtype=values.dtype, device=device)))
        self.lengths = new_lengths
        self.max_length = new_max

    def write_block(self, layer: int, keys: Tensor, values: Tensor) -> Tuple[Tensor, Tensor]:
        """Write a draft block's K/V [B, Hkv, K, D] into the free slots after each row's context
        and return the layer's keys/values over ``[0, max_length + K)`` (views, no copy)."""
        k = keys.shape[2]
        span = self.max_length + k
        keys, values = keys.to(self.keys.dtype), values.to(self.values.dtype)
        slots = self.lengths[:, None] + torch.arange(k, device=keys.device)[None, :]
        index = slots[:, None, :, None].expand_as(keys)
        layer_k, layer_v = self.keys[layer], self.values[layer]
        layer_k.scatter_(2, index, keys)
        layer_v.scatter_(2, index, values)
        return layer_k[:, :, :span], layer_v[:, :, :span]

    def block_mask(self, block: int) -> Tensor:
        """Boolean [B, 1, 1, max_length + block]: row b attends to its context and its block."""
        span = self.max_length + block
        limit = self.lengths + block
        return (torch.arange(span, device=self.lengths.device)[None, :]
                < limit[:, None])[:, None, None, :]

    def select_rows(self, rows: Tensor) -> None:
        """Keep only the rows at ``rows`` (int64 indices, in that order)."""
        rows = rows.to(device=self.lengths.device, dtype=torch.int64)
        self.keys = self.keys.index_select(1, rows)
        self.values = self.values.index_select(1, rows)
        self.lengths = self.lengths.index_select(0, rows)
        self.max_length = int(self.lengths.max()) if rows.numel() else 0

    def context(self, layer: int) -> Tuple[Tensor, Tensor]:
        """Layer ``layer``'s cached keys/values over ``[0, max_length)`` (for inspection)."""
        return (self.keys[layer][:, :, :self.max_length],
                self.values[layer][:, :, :self.max_length])
