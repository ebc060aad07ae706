"""The top-k Markov correction (issue 20, item 1): ``markov_sample(..., topk=k)`` against its
float64 reference (candidates, their z, lse, confidence, tokens), the dense path at topk = V,
the law of the drafts by chi-square against the truncated law (negative control: the
untruncated law is rejected), bad inputs, opcheck and torch.compile."""
import math

import numpy as np
import pytest
import torch

import dspark_ext
from dspark_ext import reference_markov as refm

from markov_cases import HEADS, KEY_TIE, make_case, op_args, z_tolerance
from stats import ALPHA, chi_square_pvalue


def native_topk(c, topk, teacher=None):
    return torch.ops.dspark.markov_sample_topk(*op_args(c, teacher), topk)


def reference_topk(c, topk, teacher=None):
    return refm.markov_sample(*op_args(c)[:13], teacher_tokens=teacher, topk=topk)


def assert_tokens_follow_candidate_keys(c, tokens, z, ids):
    """Each token is the candidate with the largest key recomputed in float64 from the native
    z at the candidate's own Philox lane (ties within KEY_TIE excepted)."""
    B, K, k = z.shape
    V = c["base_logits"].shape[-1]
    for s in range(K):
        dense = torch.full((B, V), -math.inf, dtype=torch.float64)
        dense.scatter_(1, ids[:, s], z[:, s].double())
        keys, _ = refm.draft_keys(dense, c["temperature"], c["seed"], c["offset"], s)
        for b in range(B):
            t = int(tokens[b, s])
            best = float(keys[b].max())
            if best == -math.inf:
                assert t == -1
                continue
            assert t in ids[b, s].tolist(), (b, s, t)
            assert keys[b, t] >= best - KEY_TIE, (b, s, t)
            top2 = keys[b].topk(2).values
            if float(top2[0] - top2[1]) >= KEY_TIE:
                assert t == int((keys[b] == keys[b].max()).nonzero()[0, 0])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype,wdtype", [(torch.float32, torch.float32),
                                          (torch.bfloat16, torch.bfloat16),
                                          (torch.float16, torch.float32)], ids=str)
@pytest.mark.parametrize("topk", [1, 5, 64])
def test_matches_reference(head, dtype, wdtype, topk):
    c = make_case(head, B=5, K=4, V=300, r=16, dtype=dtype, wdtype=wdtype, seed=topk)
    tokens, z, ids, lse, conf = native_topk(c, topk)
    assert z.shape == ids.shape == (5, 4, topk) and z.dtype == dtype and ids.dtype == torch.int64
    want = reference_topk(c, topk, teacher=tokens)  # teacher-forced with the native tokens
    assert torch.equal(ids, want.draft_ids)
    assert_tokens_follow_candidate_keys(c, tokens, z, ids)
    rtol, atol = z_tolerance(dtype)
    torch.testing.assert_close(z.double(), want.draft_logits.double(), rtol=rtol, atol=atol)
    torch.testing.assert_close(lse.double(), want.draft_lse, rtol=max(rtol, 1e-5), atol=atol)
    torch.testing.assert_close(conf.double(), want.confidence_logits, rtol=1e-4, atol=1e-4)
    free = reference_topk(c, topk)  # the reference sampling on its own
    agree = (free.draft_tokens == tokens) | (free.margin < KEY_TIE)
    assert bool(agree.all())


def test_candidates_are_the_topk_with_ties_to_the_lower_id():
    c = make_case("vanilla", B=2, K=3, V=40, r=4, conf=None, seed=1)
    base = torch.zeros(2, 3, 40)
    base[0, 0, [3, 7, 9, 30]] = 5.0  # a tie across the k-th place: ids 3, 7 kept
    base[0, 1, 10] = float("nan")    # NaN ranks as -inf
    base[0, 1, 11:14] = torch.tensor([1.0, 3.0, 2.0])
    base[0, 2] = float("-inf")       # everything masked: the lowest ids, token -1
    base[1] = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    c["base_logits"] = base
    tokens, z, ids, lse, conf = native_topk(c, 2)
    assert ids[0, 0].tolist() == [3, 7]
    assert ids[0, 1].tolist() == [12, 13]
    assert ids[0, 2].tolist() == [0, 1]
    assert int(tokens[0, 2]) == -1 and float(lse[0, 2]) == -math.inf
    assert torch.equal(ids[1], torch.sort(base[1], dim=-1, descending=True, stable=True).indices[:, :2])
    assert torch.equal(ids, reference_topk(c, 2, teacher=tokens).draft_ids)


@pytest.mark.parametrize("batch", [2, 9])  # the small- and the batched dense executor
def test_topk_v_is_the_dense_path(batch):
    c = make_case("gated", B=batch, K=5, V=97, r=8, seed=4)
    dense = torch.ops.dspark.markov_sample(*op_args(c))
    tokens, z, ids, lse, conf = native_topk(c, 97)
    assert torch.equal(tokens, dense[0])
    torch.testing.assert_close(z, dense[1].gather(2, ids), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(lse, dense[2], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(conf, dense[3])


def test_teacher_forced():
    c = make_case("rnn", B=3, K=4, V=50, r=8, seed=6)
    teacher = torch.randint(0, 50, (3, 4), generator=torch.Generator().manual_seed(2))
    tokens, z, ids, lse, conf = native_topk(c, 8, teacher=teacher)
    assert torch.equal(tokens, teacher)
    want = reference_topk(c, 8, teacher=teacher)
    torch.testing.assert_close(z.double(), want.draft_logits.double(), rtol=1e-5, atol=1e-4)


def test_wrapper_returns_the_topk_result():
    c = make_case("vanilla", B=2, K=3, V=30, r=4, conf=None, seed=3)
    out = dspark_ext.markov_sample(c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"],
                                   c["temperature"], c["seed"], c["offset"], topk=4)
    assert isinstance(out, dspark_ext.MarkovTopkResult)
    assert out.draft_ids.shape == (2, 3, 4) and out.confidence_logits is None
    with pytest.raises(TypeError, match="topk must be an int or None"):
        dspark_ext.markov_sample(c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], 1.0,
                                 0, 0, topk=2.0)


@pytest.mark.parametrize("topk,match", [(0, "topk must be >= 1"), (-3, "topk must be >= 1"),
                                        (31, r"topk must lie in \[1, V\] = \[1, 30\]")])
def test_bad_topk(topk, match):
    c = make_case("vanilla", B=2, K=3, V=30, r=4, conf=None)
    with pytest.raises(RuntimeError, match=match):
        native_topk(c, topk)


def test_bad_inputs_share_the_dense_checks():
    c = make_case("vanilla", B=2, K=3, V=30, r=4, conf=None)
    c["anchor_tokens"] = torch.tensor([0, 30])
    with pytest.raises(RuntimeError, match=r"anchor_tokens\[1\] = 30 is outside"):
        native_topk(c, 3)


def _law_problem():
    """One row, one position, V = 12, where the top-4 truncation removes a third of the mass."""
    V = 12
    c = make_case("vanilla", B=1, K=1, V=V, r=4, conf=None, seed=8, temps=[1.0])
    c["base_logits"] = torch.tensor([[[2.0, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 0.5, 0.2, 0.1,
                                       0.0]]])
    return c


def _counts(c, topk, n):
    cb = dict(c)
    cb["base_logits"] = c["base_logits"].expand(n, 1, -1).contiguous()
    cb["anchor_tokens"] = c["anchor_tokens"].expand(n).contiguous()
    cb["temperature"] = c["temperature"].expand(n).contiguous()
    cb["seed"] = torch.arange(n, dtype=torch.int64) * 7919 + 3
    cb["offset"] = torch.full((n,), 11, dtype=torch.int64)
    tokens = native_topk(cb, topk)[0][:, 0]
    return np.bincount(tokens.numpy(), minlength=c["base_logits"].shape[-1])


def test_law_is_the_truncated_law():
    c = _law_problem()
    topk, n = 4, 40000
    counts = _counts(c, topk, n)
    dense = refm.markov_sample(*op_args(c)[:13])  # dense z: the untruncated law
    z = dense.draft_logits[0, 0].double()
    keep = refm.topk_candidates(c["base_logits"][0, 0], topk)
    truncated = torch.full_like(z, -math.inf)
    truncated[keep] = z[keep]
    p_trunc = torch.softmax(truncated, -1).numpy()
    p_full = torch.softmax(z, -1).numpy()
    assert counts[p_trunc == 0].sum() == 0  # never a token outside the candidates
    support = p_trunc > 0
    assert chi_square_pvalue(counts[support], p_trunc[support]) > ALPHA
    # Negative control: the untruncated law (a third of its mass on the ids the truncation
    # removes) is rejected on the same samples.
    assert p_full[~support].sum() > 0.3
    assert chi_square_pvalue(counts, p_full) < ALPHA
    # and so is the law of one candidate fewer (an off-by-one in the selection), renormalised
    # over the same support so that only the shape is compared.
    fewer = torch.full_like(z, -math.inf)
    fewer[keep[:-1]] = z[keep[:-1]]
    p_fewer = torch.softmax(fewer, -1).numpy()[support]
    p_fewer = np.where(p_fewer > 0, p_fewer, 1e-3)
    assert chi_square_pvalue(counts[support], p_fewer / p_fewer.sum()) < ALPHA


def test_opcheck_and_compile():
    c = make_case("gated", B=3, K=2, V=40, r=8, seed=2)
    torch.library.opcheck(torch.ops.dspark.markov_sample_topk.default, op_args(c) + (5,))

    def step(base, anchor):
        return dspark_ext.markov_sample(base, anchor, c["w1"], c["w2"], c["temperature"],
                                        c["seed"], c["offset"], head="gated",
                                        hidden=c["hidden"], gate_weight=c["head_weight"],
                                        gate_bias=c["head_bias"], topk=5)

    got = torch.compile(step, fullgraph=True)(c["base_logits"], c["anchor_tokens"])
    want = step(c["base_logits"], c["anchor_tokens"])
    for g, w in zip(got, want):
        if g is not None:
            assert torch.equal(g, w)
