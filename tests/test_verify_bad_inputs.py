"""Bad input gets a clear error naming the argument (design §9), never a crash or garbage."""
import math

import pytest
import torch

import dspark_ext

B, K, V = 3, 4, 11


def padded(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(B, K + 1, V, generator=g).to(dtype)
    d = torch.randn(B, K, V, generator=g).to(dtype)
    x = torch.randint(0, V, (B, K), generator=g)
    return t, x, d


def sample(t, x, d, **kw):
    """rejection_sample with draft rows ``d``: draft logits, or probabilities when
    ``draft_probs=True``."""
    args = dict(temperature=torch.ones(t.shape[0]), seed=torch.arange(t.shape[0]),
                offset=torch.zeros(t.shape[0], dtype=torch.int64))
    args.update(kw)
    probs = args.get("draft_probs", False)
    return torch.ops.dspark.rejection_sample(t, x, None if probs else d, args["temperature"],
                                             args["seed"], args["offset"],
                                             args.get("num_draft"), args.get("block", False),
                                             draft_probs=d if probs else None)


@pytest.mark.parametrize("draft", ["draft_logits", "draft_probs"])
@pytest.mark.parametrize("bad,match", [
    (lambda t, x, d: (t[0], x, d), "target_logits must be 3-D"),
    (lambda t, x, d: (t.int(), x, d.int()),
     "target_logits must be float32, bfloat16, float16 or float64"),
    (lambda t, x, d: (t, x[:, :-1], d), r"draft_tokens must be \[B, K\]"),
    (lambda t, x, d: (t, x[:-1], d), r"draft_tokens must be \[B, K\]"),
    (lambda t, x, d: (t, x.short(), d), "draft_tokens must be int64 or int32"),
    (lambda t, x, d: (t, x.float(), d), "draft_tokens must be int64 or int32"),
    (lambda t, x, d: (t, x, d[:, :, :-1]), r"{draft} must be \[B, K, V\]"),
    (lambda t, x, d: (t, x, d[:, :-1]), r"{draft} must be \[B, K, V\]"),
    (lambda t, x, d: (t, x, d[0]), r"{draft} must be \[B, K, V\]"),
    (lambda t, x, d: (t, x, d.half()), "{draft} must have the dtype of target_logits"),
    (lambda t, x, d: (t, x, d.transpose(1, 2).contiguous().transpose(1, 2)),
     "{draft} must be contiguous in its last"),
    (lambda t, x, d: (t.transpose(1, 2).contiguous().transpose(1, 2), x, d),
     "target_logits must be contiguous in its last"),
    (lambda t, x, d: (t[:, :0], x[:, :0], d[:, :0]), "K\\+1 >= 1"),
    (lambda t, x, d: (t[..., :0], x, d[..., :0]), "vocabulary dimension"),
])
def test_shape_dtype_layout_errors(bad, match, draft):
    t, x, d = padded()
    if draft == "draft_probs":
        d = torch.softmax(d, -1)
    t, x, d = bad(t, x, d)
    with pytest.raises(RuntimeError, match=match.format(draft=draft)):
        sample(t, x, d, draft_probs=draft == "draft_probs")


def test_draft_logits_and_draft_probs_together():
    t, x, d = padded()
    q = torch.softmax(d, -1)
    with pytest.raises(RuntimeError, match="pass either draft_logits or draft_probs, not both"):
        torch.ops.dspark.rejection_sample(t, x, d, torch.ones(B), torch.arange(B),
                                          torch.zeros(B, dtype=torch.int64), None, False,
                                          draft_probs=q)
    tr, xr, dr, cu = ragged()
    with pytest.raises(RuntimeError, match="rejection_sample_ragged: pass either"):
        torch.ops.dspark.rejection_sample_ragged(
            tr, xr, dr, cu, 3, torch.ones(3), torch.arange(3), torch.zeros(3, dtype=torch.int64),
            False, draft_probs=torch.softmax(dr, -1))
    with pytest.raises(ValueError, match="not both"):
        dspark_ext.rejection_sample(t, x, d, 1.0, 0, 0, draft_probs=q)
    with pytest.raises(TypeError, match="draft_probs must be a tensor or None"):
        dspark_ext.rejection_sample(t, x, None, 1.0, 0, 0, draft_probs=q.tolist())
    from dspark_ext import reference as ref
    with pytest.raises(ValueError, match="not both"):
        ref.rejection_sample(t, x, d, torch.ones(B), torch.arange(B), torch.zeros(B),
                             draft_probs=q)


@pytest.mark.parametrize("value", [-1, V, 10**12, -(2**40)])
def test_draft_token_out_of_vocab(value):
    t, x, d = padded()
    x[1, 2] = value
    with pytest.raises(RuntimeError, match=r"draft_tokens of request 1 position 2 is .*outside \[0, 11\)"):
        sample(t, x, d)
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.dspark.verify_greedy(t, x, None)


def test_placeholder_beyond_num_draft_is_ignored():
    t, x, d = padded()
    num = torch.tensor([4, 2, 0])
    x[1, 2:] = -1
    x[2, :] = -1
    res = sample(t, x, d, num_draft=num)
    assert (res[0] <= num).all() and (res[2] == res[0] + 1).all()
    g = torch.ops.dspark.verify_greedy(t, x, num)
    assert (g[0] <= num).all()


@pytest.mark.parametrize("num", [[5, 0, 0], [-1, 0, 0]])
def test_num_draft_out_of_range(num):
    t, x, d = padded()
    with pytest.raises(RuntimeError, match=r"num_draft\[0\] = .* must lie in \[0, K\]"):
        sample(t, x, d, num_draft=torch.tensor(num))


def test_num_draft_shape_dtype():
    t, x, d = padded()
    with pytest.raises(RuntimeError, match="num_draft must have 3 elements"):
        sample(t, x, d, num_draft=torch.tensor([1, 1]))
    with pytest.raises(RuntimeError, match="num_draft must be int64 or int32"):
        sample(t, x, d, num_draft=torch.tensor([1, 1, 1], dtype=torch.int16))


@pytest.mark.parametrize("temp", [-0.5, math.nan, math.inf, -math.inf])
def test_bad_temperature(temp):
    t, x, d = padded()
    with pytest.raises(RuntimeError, match=r"temperature\[1\] must be finite and >= 0"):
        sample(t, x, d, temperature=torch.tensor([1.0, temp, 0.0]))


def test_sampling_vector_errors():
    t, x, d = padded()
    with pytest.raises(RuntimeError, match="temperature must be Float"):
        sample(t, x, d, temperature=torch.ones(B, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="seed must have 3 elements"):
        sample(t, x, d, seed=torch.arange(2))
    with pytest.raises(RuntimeError, match="offset must be 1-D"):
        sample(t, x, d, offset=torch.zeros(B, 1, dtype=torch.int64))


def test_wrapper_argument_errors():
    t, x, d = padded()
    with pytest.raises(ValueError, match="method must be one of"):
        dspark_ext.rejection_sample(t, x, d, 1.0, 0, 0, method="tree")
    with pytest.raises(TypeError, match="temperature must be a tensor"):
        dspark_ext.rejection_sample(t, x, d, "hot", 0, 0)


def ragged(lengths=(2, 0, 3)):
    g = torch.Generator().manual_seed(1)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int64)
    tt = int(cu[-1])
    t = torch.randn(tt + len(lengths), V, generator=g)
    d = torch.randn(tt, V, generator=g)
    x = torch.randint(0, V, (tt,), generator=g)
    return t, x, d, cu


def ragged_sample(t, x, d, cu, max_num):
    n = cu.shape[0] - 1
    return torch.ops.dspark.rejection_sample_ragged(
        t, x, d, cu, max_num, torch.ones(n), torch.arange(n), torch.zeros(n, dtype=torch.int64),
        False)


@pytest.mark.parametrize("cu,match", [
    ([0, 3, 2, 5], "cu_num_draft must be non-decreasing"),
    ([1, 2, 2, 5], r"cu_num_draft\[0\] must be 0"),
    ([0, 2, 2, 4], r"cu_num_draft\[B\] = 4 must equal the number of draft tokens T = 5"),
])
def test_ragged_offset_errors(cu, match):
    t, x, d, _ = ragged()
    with pytest.raises(RuntimeError, match=match):
        ragged_sample(t, x, d, torch.tensor(cu), 3)


def test_ragged_shape_errors():
    t, x, d, cu = ragged()
    with pytest.raises(RuntimeError, match="more than max_num_draft"):
        ragged_sample(t, x, d, cu, 2)
    with pytest.raises(RuntimeError, match=r"target_logits must have T \+ B"):
        ragged_sample(t[:-1], x, d, cu, 3)
    with pytest.raises(RuntimeError, match=r"draft_logits must be \[T, V\]"):
        ragged_sample(t, x, d[:-1], cu, 3)
    n = cu.shape[0] - 1
    for bad, match in ((d[:-1], r"draft_probs must be \[T, V\]"),
                       (d[None], r"draft_probs must be \[T, V\]"),
                       (d.half(), "draft_probs must have the dtype of target_logits")):
        with pytest.raises(RuntimeError, match=match):
            torch.ops.dspark.rejection_sample_ragged(
                t, x, None, cu, 3, torch.ones(n), torch.arange(n),
                torch.zeros(n, dtype=torch.int64), False, draft_probs=bad)
    with pytest.raises(RuntimeError, match="max_num_draft must lie in"):
        ragged_sample(t, x, d, cu, -1)
    with pytest.raises(RuntimeError, match="cu_num_draft must be 1-D"):
        ragged_sample(t, x, d, cu[None], 3)
    with pytest.raises(ValueError, match="not both"):
        dspark_ext.rejection_sample(t, x, d, 1.0, 0, 0, torch.zeros(3, dtype=torch.int64),
                                    cu_num_draft=cu)


def test_empty_batch_and_zero_k():
    t, x, d = padded()
    res = sample(t[:0], x[:0], d[:0])
    assert res[0].shape == (0,) and res[1].shape == (0, K + 1) and res[3].shape == (0, K)
    res = sample(t[:, :1], x[:, :0], d[:, :0])
    assert (res[0] == 0).all() and (res[2] == 1).all() and ((res[1] >= 0) & (res[1] < V)).all()
    g = torch.ops.dspark.verify_greedy(t[:, :1], x[:, :0], None)
    assert torch.equal(g[1][:, 0], t[:, 0].argmax(-1))
    t2, x2, d2, _ = ragged((0, 0))
    res = ragged_sample(t2, x2, d2, torch.tensor([0, 0, 0]), 0)
    assert res[1].shape == (2, 1) and (res[2] == 1).all()
    res = ragged_sample(t2[:0], x2, d2, torch.tensor([0]), 0)
    assert res[0].shape == (0,)


class TestNonFiniteLogits:
    """Documented policy: NaN, +inf and -inf logits are masked (probability 0). A draft token
    at a masked target logit is rejected; output tokens come only from unmasked logits; a
    fully masked target row emits -1."""

    @pytest.mark.parametrize("method", ["token", "block"])
    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_masked_tokens_never_emitted(self, method, bad):
        n = 2000
        t = torch.zeros(n, 3, 5)
        t[:, :, 1] = bad
        t[:, :, 3] = bad
        d = torch.zeros(n, 2, 5)
        x = torch.full((n, 2), 1)  # every draft sits on a masked target logit
        res = dspark_ext.rejection_sample(t, x, d, 1.0, torch.arange(n), 0, method=method)
        assert (res.accepted == 0).all()
        first = res.out_tokens[:, 0]
        assert ((first == 0) | (first == 2) | (first == 4)).all()

    def test_fully_masked_row_emits_minus_one(self):
        t = torch.full((2, 2, 6), math.nan)
        t[1, 0, 2] = 0.0
        x = torch.full((2, 1), 2)
        res = dspark_ext.rejection_sample(t, x, None, 1.0, 3, 0)
        assert res.out_tokens[0, 0] == -1 and res.num_emitted[0] == 1
        g = dspark_ext.verify_greedy(t, x)
        assert g.out_tokens[0, 0] == -1 and g.accepted[1] == 1 and g.out_tokens[1, 1] == -1

    @pytest.mark.parametrize("method", ["token", "block"])
    def test_invalid_draft_probs_are_zero(self, method):
        """Draft probabilities: NaN, +-inf, negative, zero and subnormal entries are q = 0
        (never renormalised): a token there is emitted only as a correction, with the
        target's probability; the draft token (q > 0) behaves as with a clean row."""
        n = 3000
        t = torch.zeros(n, 2, 8)
        q = torch.tensor([0.5, math.nan, -0.3, math.inf, -math.inf, 0.0, 1e-40, 0.5])
        x = torch.full((n, 1), 0)
        res = dspark_ext.rejection_sample(t, x, None, 1.0, torch.arange(n), 0, method=method,
                                          draft_probs=q.expand(n, 1, 8))
        clean = torch.tensor([0.5, 0, 0, 0, 0, 0, 0, 0.5])
        want = dspark_ext.rejection_sample(t, x, None, 1.0, torch.arange(n), 0, method=method,
                                           draft_probs=clean.expand(n, 1, 8))
        assert torch.equal(res.out_tokens, want.out_tokens)
        # p = 1/8 < q(0) = 1/2: about 1/4 accepted; corrections spread over the q = 0 ids.
        assert 0.2 < res.accepted.double().mean() < 0.3
        assert set(res.out_tokens[:, 0].tolist()) >= {0, 1, 2, 3, 4, 5, 6}

    def test_masked_draft_logit_rejects(self):
        n = 500
        t = torch.zeros(n, 2, 4)
        d = torch.zeros(n, 1, 4)
        d[:, 0, 2] = math.nan
        x = torch.full((n, 1), 2)
        res = dspark_ext.rejection_sample(t, x, d, 1.0, torch.arange(n), 0)
        assert (res.accepted == 0).all()
