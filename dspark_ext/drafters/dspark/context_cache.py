"""Per-layer, per-row ragged cache of the context keys/values the drafter's block attends to.

The context (committed tokens' projected target features) is never transformed by the draft
layers, so each layer's K/V of a context token is computed once, when the token is committed,
and kept here. Rows hold different numbers of tokens: row b's keys are slots
``[0, lengths[b])`` of a right-padded buffer ``[layers, B, Hkv, capacity, D]``; slots beyond a
row's length are kept finite (zeros or stale values) so that masked attention over them never
meets a NaN.

A decode step (:meth:`plan`, :meth:`write`, :meth:`commit`) writes the newly committed
tokens' K/V and *borrows* the slots right after them for the draft block's own K/V, in one
scatter per layer: attention then reads one contiguous key range per row with no
concatenation copy of the context. The block is never committed (lengths move past the new
context only), so there is nothing to roll back; the next step overwrites those slots.

Capacity grows geometrically; growth is the only place a host value is needed (one ``max``
of the lengths per append).
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch
from torch import Tensor

__all__ = ["ContextKVCache", "StepPlan"]


class StepPlan(NamedTuple):
    """Where one decode step writes (:meth:`ContextKVCache.plan`): ``index`` int64 [B, n + K],
    the slot of each [new context ; block] token of every row; ``span`` the key range the
    block attends over; ``mask`` bool [B, 1, 1, span]; ``lengths`` / ``max_length`` the
    rows' context lengths once the step is committed."""

    index: Tensor
    span: int
    mask: Tensor
    lengths: Tensor
    max_length: int

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

    def plan(self, counts: Tensor, n: int, block: int) -> StepPlan:
        """Plan a decode step that appends ``counts[b]`` of ``n`` new context tokens to row b and
        borrows ``block`` slots right after them (design §7).

        Row b's new token j goes to slot ``lengths[b] + j`` when ``j < counts[b]``; a padding
        entry goes past the block (``lengths[b] + j + block``), where the mask never looks;
        block slot k goes to ``lengths[b] + counts[b] + k``. Every row's writes are thus a
        permutation of ``[lengths[b], lengths[b] + n + block)``: one scatter per layer writes
        context and block together, and no write lands on a live slot."""
        new_lengths = self.lengths + counts
        new_max = int(new_lengths.max()) if new_lengths.numel() else 0  # host read: the span
        self.reserve(max(self.max_length + n, new_max) + max(block, self.reserve_tail))
        base, cnt = self.lengths[:, None], counts[:, None]
        j = torch.arange(n, device=base.device)[None, :]
        k = torch.arange(block, device=base.device)[None, :]
        ctx_slots = torch.where(j < cnt, base + j, base + j + block)
        index = torch.cat([ctx_slots, base + cnt + k], dim=1)
        span = new_max + block
        mask = (torch.arange(span, device=base.device)[None, :]
                < (new_lengths + block)[:, None])[:, None, None, :]
        return StepPlan(index, span, mask, new_lengths, new_max)

    def write(self, layer: int, plan: StepPlan, keys: Tensor,
              values: Tensor) -> Tuple[Tensor, Tensor]:
        """Scatter layer ``layer``'s new keys/values [B, Hkv, n + K, D] to ``plan.index`` and
        return the layer's keys/values over ``[0, plan.span)`` (views, no copy)."""
        index = plan.index[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[3])
        layer_k, layer_v = self.keys[layer], self.values[layer]
        layer_k.scatter_(2, index, keys.to(layer_k.dtype))
        layer_v.scatter_(2, index, values.to(layer_v.dtype))
        return layer_k[:, :, :plan.span], layer_v[:, :, :plan.span]

    def commit(self, plan: StepPlan) -> None:
        """The step's context tokens are now part of each row (its block slots are not)."""
        self.lengths = plan.lengths
        self.max_length = plan.max_length

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
