"""The DSpark drafter's cached weight copies (issue 21, mutation testing): the fused Q/K/V
and gate/up projections and the Markov op's float32 copies of float16 weights are rebuilt
exactly when a part changes (storage, in-place update, dtype, shape) and never otherwise."""
import pytest
import torch

from dspark_ext.drafters.dspark.fused import FusedLinear
from dspark_ext.drafters.dspark.heads import OpWeightCache


def test_fused_linear_concatenates_and_caches():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(3, 4, generator=g, requires_grad=True) for _ in range(2)]
    bs = [torch.randn(3, generator=g), torch.randn(3, generator=g)]
    f = FusedLinear()
    w, b = f.get(ws, bs)
    assert torch.equal(w, torch.cat(ws, 0)) and torch.equal(b, torch.cat(bs, 0))
    assert not w.requires_grad and w.shape == (6, 4)
    w2, b2 = f.get(ws, bs)
    assert w2 is w and b2 is b  # nothing changed: the same copy
    with torch.no_grad():
        ws[1].add_(1.0)  # an in-place update bumps the version
    w3, _ = f.get(ws, bs)
    assert w3 is not w and torch.equal(w3[3:], ws[1].detach())
    bs[0].mul_(2.0)
    _, b4 = f.get(ws, bs)
    assert torch.equal(b4[:3], bs[0])
    other = [ws[0], torch.randn(3, 4, generator=g)]  # another tensor in a part's place
    w5, _ = f.get(other, bs)
    assert torch.equal(w5[3:], other[1])
    half = [t.detach().half() for t in other]
    w6, _ = f.get(half, bs)
    assert w6.dtype == torch.float16
    w7, b7 = f.get(other, [bs[0], None])  # a part without bias: no fused bias
    assert b7 is None and torch.equal(w7, torch.cat(other, 0))
    _, b8 = f.get(other, [None, None])
    assert b8 is None
    wide = [torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)]
    assert f.get(wide, [None, None])[0].shape == (5, 4)


def test_fused_linear_refresh_and_current():
    f = FusedLinear()
    with pytest.raises(RuntimeError) as e:
        f.current()
    assert str(e.value) == "FusedLinear.current() before refresh()"
    ws = [torch.ones(2, 3), torch.zeros(1, 3)]
    f.refresh(ws, [None, None])
    w, b = f.current()
    assert torch.equal(w, torch.cat(ws)) and b is None
    ws[0].add_(1.0)
    assert f.current()[0] is w  # current() does not look at the parts
    f.refresh(ws, [None, None])
    assert torch.equal(f.current()[0][:2], ws[0])


def test_fused_linear_sees_a_reshaped_view():
    base = torch.arange(12.0)
    f = FusedLinear()
    a = f.get([base.view(3, 4)], [None])[0]
    b = f.get([base.view(4, 3)], [None])[0]  # same storage and version, another shape
    assert a.shape == (3, 4) and b.shape == (4, 3)


def test_op_weight_cache():
    c = OpWeightCache()
    f32 = torch.randn(2, 3, requires_grad=True)
    bf = torch.randn(2, 3).bfloat16()
    out = c.get([f32, None, bf])
    assert out[1] is None and out[0].dtype == torch.float32 and out[2].dtype == torch.bfloat16
    assert not out[0].requires_grad and torch.equal(out[0], f32.detach())
    h = torch.randn(2, 3).half()
    first = c.get([h, None, f32])
    assert first[0].dtype == torch.float32 and torch.equal(first[0], h.float())
    assert first[1] is None and first[2].dtype == torch.float32
    again = c.get([h, None, f32])
    assert again[0] is first[0]  # converted once
    h.add_(1.0)
    upd = c.get([h, None, f32])
    assert upd[0] is not first[0] and torch.equal(upd[0], h.float())
    h2 = h.clone()
    assert c.get([h2, None, f32])[0] is not upd[0]  # another storage
    assert c.get([h.view(3, 2), None, f32])[0].shape == (3, 2)
