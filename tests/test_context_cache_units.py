"""ContextKVCache as values (issue 21, mutation testing of drafters/dspark/context_cache.py):
appends of one token and of padded rows (padding zeroed, never visible as context), keys in
another dtype stored in the cache's, capacity grown past every write with the tail kept free,
and max_length after reset, appends and select_rows."""
import math

import pytest
import torch

from dspark_ext.drafters.dspark.context_cache import ContextKVCache


def _kv(layers, b, n, fill=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(layers, b, 1, n, 2, generator=g).to(dtype)
    v = torch.randn(layers, b, 1, n, 2, generator=g).to(dtype)
    return k, v


def test_fresh_state():
    c = ContextKVCache(num_layers=2, num_kv_heads=1, head_dim=2, reserve_tail=3)
    assert c.max_length == 0 and c.batch_size == 0 and c.capacity == 0
    c.reset(2, "cpu", torch.float32)
    assert c.max_length == 0 and c.capacity == 0 and c.lengths.tolist() == [0, 0]
    assert c.context(0)[0].shape == (2, 1, 0, 2)


def test_single_token_append_and_padding():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=3)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 1)
    c.append(k, v, torch.tensor([1, 0]))  # one token, row 1 gets none
    assert c.lengths.tolist() == [1, 0] and c.max_length == 1
    keys, values = c.context(0)
    assert torch.equal(keys[0, :, 0], k[0, 0, :, 0]) and torch.equal(values[0, :, 0], v[0, 0, :, 0])
    assert torch.equal(keys[1, :, 0], torch.zeros(1, 2))  # row 1's padding entry: zero
    # three more, right-padded with NaN: padding never lands as context, and stays finite
    k3, v3 = _kv(1, 2, 3, seed=1)
    k3[0, 0, :, 2] = math.nan
    v3[0, 0, :, 2] = math.nan
    c.append(k3, v3, torch.tensor([2, 3]))
    assert c.lengths.tolist() == [3, 3] and c.max_length == 3
    keys, values = c.context(0)
    assert torch.equal(keys[0, :, 1:3], k3[0, 0, :, :2])
    assert torch.equal(keys[1, :, :3], k3[0, 1, :, :3])  # row 1 was empty: slots 0..2
    assert bool(torch.isfinite(c.keys).all() and torch.isfinite(c.values).all())
    assert c.capacity >= c.max_length + c.reserve_tail


def test_padding_inside_another_rows_length_is_zero():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 3)
    k[0, 0, :, 1:] = math.nan
    c.append(k, v, torch.tensor([1, 3]))
    keys, _ = c.context(0)  # [0, max_length = 3): row 0's slots 1 and 2 are padding
    assert torch.equal(keys[0, :, 1:], torch.zeros(1, 2, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keys_in_another_dtype_are_stored_in_the_caches(dtype):
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=2)
    c.reset(2, "cpu", dtype)
    k, v = _kv(1, 2, 2, dtype=torch.float64)
    c.append(k, v, torch.tensor([2, 1]))
    keys, values = c.context(0)
    assert keys.dtype == values.dtype == dtype
    assert torch.equal(keys[0], k[0, 0].to(dtype)) and torch.equal(values[1, :, :1],
                                                                     v[0, 1, :, :1].to(dtype))


def test_capacity_grows_past_every_padded_write():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 100)
    c.append(k, v, torch.tensor([100, 0]))
    assert c.capacity == 100
    k3, v3 = _kv(1, 2, 3, seed=2)
    c.append(k3, v3, torch.tensor([0, 3]))  # row 0's padding goes to slots 100..102
    assert c.lengths.tolist() == [100, 3] and c.capacity >= 103
    assert torch.equal(c.context(0)[0][1, :, :3], k3[0, 1])
    c.reserve(50)  # never shrinks
    assert c.capacity >= 103


def test_reserve_doubles_from_a_minimum():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(1, "cpu", torch.float32)
    c.reserve(5)
    assert c.capacity == 64
    c.reserve(64)
    assert c.capacity == 64
    c.reserve(65)
    assert c.capacity == 128
    c.reserve(300)
    assert c.capacity == 300


def test_max_length_after_select_rows():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(3, "cpu", torch.float32)
    k, v = _kv(1, 3, 5)
    c.append(k, v, torch.tensor([5, 2, 4]))
    c.select_rows(torch.tensor([1, 2], dtype=torch.int32))
    assert c.lengths.tolist() == [2, 4] and c.max_length == 4
    assert torch.equal(c.context(0)[0][0, :, :2], k[0, 1, :, :2])
    c.select_rows(torch.tensor([], dtype=torch.int64))
    assert c.max_length == 0 and c.batch_size == 0


def test_plan_slots_are_exact():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 3)
    c.append(k, v, torch.tensor([3, 1]))
    plan = c.plan(torch.tensor([1, 2]), 2, 3)  # n = 2 new context tokens, block of 3
    # row 0 (length 3, 1 new): token 0 -> 3, padding token 1 -> 3 + 1 + 3, block -> 4, 5, 6
    # row 1 (length 1, 2 new): tokens -> 1, 2, block -> 3, 4, 5
    assert plan.index.tolist() == [[3, 7, 4, 5, 6], [1, 2, 3, 4, 5]]
    assert plan.span == 7 and plan.lengths.tolist() == [4, 3] and plan.max_length == 4
    assert plan.mask[:, 0, 0].tolist() == [[True] * 7, [True] * 6 + [False]]
    assert c.capacity >= 3 + 2 + 3


def test_write_stores_in_the_caches_dtype_and_returns_the_span():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(1, "cpu", torch.bfloat16)
    plan = c.plan(torch.tensor([1]), 1, 2)
    new_k = torch.randn(1, 1, 3, 2, dtype=torch.float64)
    keys, values = c.write(0, plan, new_k, new_k * 2)
    assert keys.dtype == torch.bfloat16 and keys.shape == (1, 1, plan.span, 2)
    assert torch.equal(keys[0, 0], new_k[0, 0].to(torch.bfloat16))
    assert torch.equal(values[0, 0], (new_k * 2)[0, 0].to(torch.bfloat16))


def test_plan_reserves_room_for_padding_past_the_longest_row():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=0)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 128)
    c.append(k, v, torch.tensor([128, 0]))  # capacity 128, row 0 full
    plan = c.plan(torch.tensor([0, 3]), 3, 2)  # row 0's padding goes to 128 + j + 2
    assert int(plan.index.max()) == 132 and c.capacity > 132
    c.write(0, plan, torch.zeros(2, 1, 5, 2), torch.zeros(2, 1, 5, 2))


def test_plan_grows_a_cache_sized_exactly_for_its_tail():
    c = ContextKVCache(num_layers=1, num_kv_heads=1, head_dim=2, reserve_tail=2)
    c.reset(2, "cpu", torch.float32)
    k, v = _kv(1, 2, 130)
    c.append(k, v, torch.tensor([130, 0]))
    assert c.capacity == 132  # 130 + the tail: no room for padding past the block
    plan = c.plan(torch.tensor([0, 3]), 3, 2)
    assert int(plan.index.max()) == 134 and c.capacity >= 135
    c.write(0, plan, torch.zeros(2, 1, 5, 2), torch.zeros(2, 1, 5, 2))
