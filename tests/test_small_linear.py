"""dspark::small_linear (the drafter's few-row decode GEMMs) computes F.linear: every tiling
case of the CPU kernel (rows in pairs and alone, weight rows in fours and the rest, K in
eights and the tail), the fallbacks (more rows, bfloat16, K < 8), bad inputs, opcheck and
torch.compile."""
import pytest
import torch
import torch.nn.functional as F

import dspark_ext  # noqa: F401  (registers the op)
from dspark_ext.ops import small_linear
from dspark_ext.ops.linear import SMALL_LINEAR_MAX_ROWS


def case(shape, n, k, bias=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, k, generator=g).to(dtype)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 8, 15, 16, 17, 40])
@pytest.mark.parametrize("n,k", [(4, 8), (7, 13), (256, 256), (1030, 64), (5, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_linear(rows, n, k, bias):
    x, w, b = case((rows,), n, k, bias, seed=rows + n + k)
    torch.testing.assert_close(small_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


def test_leading_dims_strides_and_dtypes():
    x, w, b = case((2, 5), 36, 40)
    torch.testing.assert_close(small_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    xt = torch.randn(40, 6).t()                       # a non-contiguous [6, 40] view
    torch.testing.assert_close(small_linear(xt, w, b), F.linear(xt, w, b), rtol=1e-5,
                               atol=1e-4)
    wt = torch.randn(40, 36).t()                      # a non-contiguous weight
    torch.testing.assert_close(small_linear(x, wt), F.linear(x, wt), rtol=1e-5, atol=1e-4)
    xb, wb, bb = case((7,), 20, 32, dtype=torch.bfloat16)   # bfloat16: at::linear
    assert torch.equal(small_linear(xb, wb, bb), F.linear(xb, wb, bb))
    assert small_linear(torch.zeros(0, 40), w).shape == (0, 36)
    assert SMALL_LINEAR_MAX_ROWS == 16


def test_bad_inputs():
    x, w, b = case((3,), 8, 16)
    with pytest.raises(RuntimeError, match="weight must be \\[out_features, in_features\\]"):
        small_linear(x, w[0])
    with pytest.raises(RuntimeError, match="must equal weight.size\\(1\\)"):
        small_linear(x[:, :15], w)
    with pytest.raises(RuntimeError, match="share one floating dtype"):
        small_linear(x, w.double())
    with pytest.raises(RuntimeError, match="share one floating dtype"):
        small_linear(x.long(), w.long())
    with pytest.raises(RuntimeError, match="bias must be \\[out_features\\] = \\[8\\]"):
        small_linear(x, w, b[:5])
    with pytest.raises(RuntimeError, match="bias must have x's dtype"):
        small_linear(x, w, b.double())
    with pytest.raises(RuntimeError, match="at least 1 dimension"):
        small_linear(torch.tensor(1.0), w)


def test_opcheck_and_compile():
    x, w, b = case((7,), 12, 24)
    torch.library.opcheck(torch.ops.dspark.small_linear.default, (x, w, b))
    torch.library.opcheck(torch.ops.dspark.small_linear.default, (x, w, None))
    f = torch.compile(lambda x, w, b: small_linear(x, w, b) * 2, fullgraph=True)
    torch.testing.assert_close(f(x, w, b), 2 * F.linear(x, w, b), rtol=1e-5, atol=1e-4)
