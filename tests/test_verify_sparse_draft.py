"""Sparse draft rows in verification (issue 20, items 1 and 3): ``rejection_sample(...,
draft_ids=...)`` reads draft rows over a subset of the vocabulary (top-k Markov candidates,
or a reduced draft vocabulary's map as a broadcast view) as the dense rows they stand for:
exactly the outputs of the dense call and of the float64 reference; lossless by chi-square
with the drafts drawn by ``markov_sample(topk=...)``, with a negative control; bad inputs."""
import math

import numpy as np
import pytest
import torch

import dspark_ext
from dspark_ext import reference as ref
from dspark_ext import reference_markov as refm
from dspark_ext.reference.verify import densify_draft_rows

from stats import ALPHA, chi_square_pvalue
from test_verify_engine_dtypes import assert_same


def sparse_case(batch, k, vocab, width, probs, seed=0):
    """Target logits [B, K+1, V], sparse draft rows [B, K, W] with distinct random ids per
    row, drafts sampled from the sparse law, lengths, temperatures, seeds."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(vocab, generator=g)[:width]
                       for _ in range(batch * k)]).view(batch, k, width)
    rows = torch.randn(batch, k, width, generator=g) * 2
    # The target puts most of its mass near the draft's law on the draft's ids.
    target = torch.randn(batch, k + 1, vocab, generator=g) * 0.5 - 3.0
    target[:, :k].scatter_(2, ids, rows + 0.5 * torch.randn(batch, k, width, generator=g))
    temps = torch.tensor([0.0, 0.8, 1.0, 1.4])[torch.arange(batch) % 4]
    t = torch.where(temps > 0, temps, torch.ones_like(temps)).view(-1, 1, 1)
    pick = torch.distributions.Categorical(logits=rows / t).sample()
    tokens = ids.gather(2, pick[..., None])[..., 0]
    if probs:
        rows = torch.softmax(rows / t, -1)
    num = torch.randint(0, k + 1, (batch,), generator=g)
    num[0] = k
    return dict(target=target, rows=rows, ids=ids, tokens=tokens, num=num, temps=temps,
                seeds=torch.arange(batch) * 131 + 5, offsets=torch.full((batch,), 3))


def _kw(c, probs, rows=None, ids=None):
    rows = c["rows"] if rows is None else rows
    return (None, dict(draft_probs=rows, draft_ids=ids)) if probs else (rows, dict(draft_ids=ids))


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("probs", [False, True], ids=["logits", "probs"])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32], ids=str)
def test_sparse_rows_equal_their_dense_rows(method, probs, index_dtype):
    c = sparse_case(8, 5, 400, 37, probs, seed=1)
    dense = densify_draft_rows(c["rows"], c["ids"], 400, probs)
    d, kw = _kw(c, probs, ids=c["ids"].to(index_dtype))
    args = (c["target"], c["tokens"])
    tail = (c["temps"], c["seeds"], c["offsets"], c["num"])
    got = dspark_ext.rejection_sample(*args, d, *tail, method=method, **kw)
    dd, dkw = _kw(c, probs, rows=dense)
    want = dspark_ext.rejection_sample(*args, dd, *tail, method=method, **dkw)
    assert_same(got, want)
    assert_same(got, ref.rejection_sample(*args, d, *tail, method=method,
                                          **{**kw, "draft_ids": c["ids"]}))
    assert int(got.accepted.sum()) > 0 and int((got.accepted < c["num"]).sum()) > 0


@pytest.mark.parametrize("method", ["token", "block"])
def test_sparse_rows_ragged(method):
    c = sparse_case(6, 4, 300, 20, False, seed=2)
    num = c["num"].tolist()
    cu = torch.tensor([0] + np.cumsum(num).tolist())
    t_rows = torch.cat([c["target"][b, : n + 1] for b, n in enumerate(num)])
    flat = lambda x: torch.cat([x[b, :n] for b, n in enumerate(num)])  # noqa: E731
    kw = dict(method=method, cu_num_draft=cu, max_num_draft=4)
    tail = (c["temps"], c["seeds"], c["offsets"])
    got = dspark_ext.rejection_sample(t_rows, flat(c["tokens"]), flat(c["rows"]), *tail,
                                      draft_ids=flat(c["ids"]), **kw)
    padded = dspark_ext.rejection_sample(c["target"], c["tokens"], c["rows"], *tail, c["num"],
                                         method=method, draft_ids=c["ids"])
    assert torch.equal(got.out_tokens, padded.out_tokens)
    assert torch.equal(got.accepted, padded.accepted)


@pytest.mark.parametrize("method", ["token", "block"])
def test_reduced_vocabulary_map_as_a_broadcast_view(method):
    """A reduced draft vocabulary: draft logits [B, K, Vd] over the ids d2t [Vd], passed as
    d2t.expand(B, K, Vd) (no copy); the same outputs as the dense rows."""
    batch, k, vocab, vd = 6, 4, 500, 120
    g = torch.Generator().manual_seed(3)
    d2t = torch.sort(torch.randperm(vocab, generator=g)[:vd]).values.int()
    target = torch.randn(batch, k + 1, vocab, generator=g) * 2
    rows = 0.8 * target[:, :k, d2t.long()] + 0.5 * torch.randn(batch, k, vd, generator=g)
    pick = torch.distributions.Categorical(logits=rows).sample()
    tokens = d2t.long()[pick]
    view = d2t.expand(batch, k, vd)
    assert view.stride()[:2] == (0, 0)
    got = dspark_ext.rejection_sample(target, tokens, rows, 1.0, torch.arange(batch), 7,
                                      method=method, draft_ids=view)
    dense = densify_draft_rows(rows, view, vocab, False)
    want = dspark_ext.rejection_sample(target, tokens, dense, 1.0, torch.arange(batch), 7,
                                       method=method)
    assert_same(got, want)


def test_draft_lse_with_sparse_rows():
    """markov_sample's top-k draft_lse is the lse of the candidate rows: passing it gives the
    tokens of the computed pass."""
    batch, k, vocab = 8, 5, 3000
    g = torch.Generator().manual_seed(4)
    temps = torch.tensor([0.0, 0.7, 1.0, 1.3] * 2)
    out = dspark_ext.markov_sample(torch.randn(batch, k, vocab, generator=g) * 2,
                                   torch.randint(0, vocab, (batch,), generator=g),
                                   torch.randn(vocab, 16, generator=g) * 0.3,
                                   torch.randn(vocab, 16, generator=g) * 0.3, temps,
                                   seed=torch.arange(batch), offset=2, topk=64)
    target = torch.randn(batch, k + 1, vocab, generator=g)
    target[:, :k].scatter_add_(2, out.draft_ids, 2.0 * out.draft_logits)
    args = (target, out.draft_tokens, out.draft_logits, temps, torch.arange(batch) + 9, 4)
    plain = dspark_ext.rejection_sample(*args, draft_ids=out.draft_ids)
    given = dspark_ext.rejection_sample(*args, draft_ids=out.draft_ids, draft_lse=out.draft_lse)
    assert_same(given, plain)
    assert int(plain.accepted.sum()) > 0


def _lossless_counts(n, drafts_from_dense, method):
    """First emitted token of n rounds (K = 1, V = 10): drafts by markov_sample(topk=3),
    verified against its candidate rows. ``drafts_from_dense``: the negative control, the
    drafts drawn from the untruncated law (q mismatched)."""
    vocab, topk = 10, 3
    base = torch.tensor([[[2.0, 1.6, 1.5, 1.4, 1.0, 0.8, 0.5, 0.2, 0.0, -0.5]]]).expand(n, 1, -1)
    w1 = torch.eye(vocab, 4) * 0.5
    w2 = torch.randn(vocab, 4, generator=torch.Generator().manual_seed(6)) * 0.3
    anchor = torch.zeros(n, dtype=torch.int64)
    seeds = torch.arange(n, dtype=torch.int64) * 7919 + 1
    out = dspark_ext.markov_sample(base.contiguous(), anchor, w1, w2, 1.0, seeds, 0, topk=topk)
    tokens = out.draft_tokens
    if drafts_from_dense:
        tokens = dspark_ext.markov_sample(base.contiguous(), anchor, w1, w2, 1.0, seeds,
                                          0).draft_tokens
    target_logits = torch.tensor([0.5, 1.5, 0.2, 1.0, 0.0, 0.3, 0.9, -0.2, 0.1, 0.4])
    target = target_logits.expand(n, 2, vocab).contiguous()
    res = dspark_ext.rejection_sample(target, tokens, out.draft_logits, 1.0, seeds + 3, 11,
                                      method=method, draft_ids=out.draft_ids)
    first = res.out_tokens[:, 0].numpy()
    return np.bincount(first, minlength=vocab), torch.softmax(target_logits.double(), 0).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["token", "block"])
def test_topk_drafts_verify_losslessly(method):
    counts, p = _lossless_counts(60_000, False, method)
    assert chi_square_pvalue(counts, p) > ALPHA


@pytest.mark.slow
@pytest.mark.parametrize("method", ["token", "block"])
def test_mismatched_law_is_rejected(method):
    """Negative control: drafts drawn from the dense law, verified as if from the top-k law,
    give a first token that is not the target's."""
    counts, p = _lossless_counts(60_000, True, method)
    assert chi_square_pvalue(counts, p) < ALPHA


def _bad_case():
    c = sparse_case(3, 2, 50, 6, False, seed=5)
    op = torch.ops.dspark.rejection_sample
    tail = (c["temps"], c["seeds"], c["offsets"], None, False)
    return c, lambda rows, **kw: op(c["target"], c["tokens"], rows, *tail, **kw)


def test_bad_draft_ids():
    c, call = _bad_case()
    with pytest.raises(RuntimeError, match=r"draft_ids must have the shape of draft_logits"):
        call(c["rows"], draft_ids=c["ids"][:, :, :5])
    with pytest.raises(RuntimeError, match="draft_ids must be int64 or int32"):
        call(c["rows"], draft_ids=c["ids"].float())
    with pytest.raises(RuntimeError, match=r"must be \[B, K, V\] = \[3, 2, 50\] \(with "
                                           r"draft_ids: \[B, K, W\]\)"):
        call(c["rows"][:, :1], draft_ids=c["ids"][:, :1])
    with pytest.raises(RuntimeError, match="one-hot drafts have no draft rows"):
        call(None, draft_ids=c["ids"])
    bad = c["ids"].clone()
    bad[0, 1, 2] = 50
    with pytest.raises(RuntimeError, match=r"draft_ids of request 0 position 1 column 2 is 50"):
        call(c["rows"], draft_ids=bad)
    dup = c["ids"].clone()
    dup[1, 0, 3] = dup[1, 0, 0]
    with pytest.raises(RuntimeError, match=r"request 1 position 0 holds id \d+ twice"):
        call(c["rows"], draft_ids=dup)
    wide = torch.zeros(3, 2, 51)
    with pytest.raises(RuntimeError, match="1 to V = 50 columns, got 51"):
        call(wide, draft_ids=torch.arange(51).expand(3, 2, 51))
    strided = torch.arange(12).view(1, 1, 12)[..., ::2].expand(3, 2, 6)
    with pytest.raises(RuntimeError, match="draft_ids must be contiguous in its last"):
        call(c["rows"], draft_ids=strided)


def test_positions_past_num_draft_are_not_checked():
    c, _ = _bad_case()
    ids = c["ids"].clone()
    ids[1, 1] = -5  # request 1 verifies one draft only
    res = dspark_ext.rejection_sample(c["target"], c["tokens"], c["rows"], c["temps"],
                                      c["seeds"], c["offsets"], torch.tensor([2, 1, 0]),
                                      draft_ids=ids)
    assert int(res.num_emitted[1]) >= 1


def test_opcheck_and_compile():
    c = sparse_case(3, 2, 40, 5, False, seed=7)
    op = torch.ops.dspark.rejection_sample.default
    torch.library.opcheck(op, (c["target"], c["tokens"], c["rows"], c["temps"], c["seeds"],
                               c["offsets"], c["num"], True), {"draft_ids": c["ids"]})

    def step(t, x, d, ids):
        return dspark_ext.rejection_sample(t, x, d, 1.0, torch.arange(3), 0,
                                           draft_ids=ids).out_tokens

    args = (c["target"], c["tokens"], c["rows"], c["ids"].int())
    assert torch.equal(torch.compile(step, fullgraph=True)(*args), step(*args))
