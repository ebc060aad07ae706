"""The inputs serving engines hold, read without a conversion (issue 20, item 4-5): int32 draft
ids, counts, ragged offsets, seeds and stream offsets; vLLM's inclusive ``cu_num_draft_tokens``
[B] (no leading 0); float64 logits on the CPU; and the opt-in ``draft_lse``. Each gives exactly
the outputs of the int64 / leading-0 / float32 / computed-lse call, which test_verify_exact
checks against the float64 reference."""
import pytest
import torch

import dspark_ext
from dspark_ext import reference as ref

from test_verify_exact import DRAFT_FORMS, assert_same, make_case, to_ragged


def _int32_keys(c):
    """The case with seeds and offsets that fit in int32 (int64 tensors still)."""
    c = dict(c)
    c["seeds"] = c["seeds"] % (2 ** 31) - 2 ** 30
    c["offsets"] = c["offsets"] % (2 ** 31)
    return c


def _draft_args(c, rows=None):
    rows = c["draft"] if rows is None else rows
    if c.get("probs") is not None:
        return None, dict(draft_probs=c["probs"] if rows is None else rows)
    return rows, {}


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("draft", DRAFT_FORMS)
def test_int32_indices_padded(method, draft):
    c = _int32_keys(make_case(6, 5, 257, torch.float32, seed=11, draft=draft))
    d, kw = _draft_args(c, c.get("probs"))
    want = dspark_ext.rejection_sample(c["target"], c["tokens"], d, c["temps"], c["seeds"],
                                       c["offsets"], c["num"], method=method, **kw)
    got = dspark_ext.rejection_sample(c["target"], c["tokens"].int(), d, c["temps"],
                                      c["seeds"].int(), c["offsets"].int(), c["num"].int(),
                                      method=method, **kw)
    assert_same(got, want)
    assert_same(got, ref.rejection_sample(c["target"], c["tokens"], d, c["temps"], c["seeds"],
                                          c["offsets"], c["num"], method=method, **kw))
    g32 = dspark_ext.verify_greedy(c["target"], c["tokens"].int(), c["num"].int())
    assert_same(g32, dspark_ext.verify_greedy(c["target"], c["tokens"], c["num"]))


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("draft", DRAFT_FORMS)
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32], ids=str)
def test_inclusive_offsets_equal_leading_zero(method, draft, index_dtype):
    """vLLM's cu_num_draft_tokens [B] (cu_inclusive=True) is the leading-0 [B + 1] form
    without its first entry; rows with no drafts (equal consecutive ends) included."""
    c = _int32_keys(make_case(7, 4, 129, torch.float32, seed=5, draft=draft))
    c["num"][3] = 0
    for b in range(7):
        c["tokens"][b, c["num"][b]:] = -1
    t_rows, tokens, rows, cu = to_ragged(c)
    d, kw = _draft_args(c, rows)
    k = c["tokens"].shape[1]
    want = dspark_ext.rejection_sample(t_rows, tokens, d, c["temps"], c["seeds"], c["offsets"],
                                       method=method, cu_num_draft=cu, max_num_draft=k, **kw)
    ix = lambda x: x.to(index_dtype)  # noqa: E731
    got = dspark_ext.rejection_sample(t_rows, ix(tokens), d, c["temps"], ix(c["seeds"]),
                                      ix(c["offsets"]), method=method, cu_num_draft=ix(cu[1:]),
                                      max_num_draft=k, cu_inclusive=True, **kw)
    assert_same(got, want)
    # max_num_draft read from the inclusive ends when omitted.
    auto = dspark_ext.rejection_sample(t_rows, tokens, d, c["temps"], c["seeds"], c["offsets"],
                                       method=method, cu_num_draft=cu[1:], cu_inclusive=True,
                                       **kw)
    assert auto.out_tokens.shape[1] == int(c["num"].max()) + 1
    g = dspark_ext.verify_greedy(t_rows, ix(tokens), cu_num_draft=ix(cu[1:]), max_num_draft=k,
                                 cu_inclusive=True)
    assert_same(g, dspark_ext.verify_greedy(t_rows, tokens, cu_num_draft=cu, max_num_draft=k))


def test_inclusive_offsets_empty_batch():
    t = torch.zeros(0, 5)
    x = torch.zeros(0, dtype=torch.int32)
    out = dspark_ext.verify_greedy(t, x, cu_num_draft=torch.zeros(0, dtype=torch.int32),
                                   max_num_draft=3, cu_inclusive=True)
    assert out.out_tokens.shape == (0, 4) and out.accept_flags.shape == (0,)


@pytest.mark.parametrize("cu,match", [
    ([2, 1, 5], r"cu_num_draft must be non-decreasing \(from 0\), but cu_num_draft\[1\] = 1 < "
                r"cu_num_draft\[0\] = 2"),
    ([-1, 2, 5], r"cu_num_draft\[0\] = -1 < 0"),
    ([2, 4, 6], r"cu_num_draft\[B - 1\] = 6 must equal the number of draft tokens T = 5"),
    ([4, 4, 5], "request 0 has 4 draft tokens, more than max_num_draft = 3"),
])
def test_inclusive_offsets_bad_values(cu, match):
    t = torch.randn(8, 9)
    x = torch.zeros(5, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.dspark.verify_greedy_ragged(t, x, torch.tensor(cu, dtype=torch.int32), 3, True)


def test_inclusive_offsets_must_be_1d():
    t = torch.randn(8, 9)
    with pytest.raises(RuntimeError, match=r"cu_num_draft must be 1-D \[B\] \(inclusive ends"):
        torch.ops.dspark.verify_greedy_ragged(t, torch.zeros(5, dtype=torch.int64),
                                              torch.zeros(3, 1, dtype=torch.int64), 3, True)
    with pytest.raises(RuntimeError, match="cu_num_draft must be int64 or int32"):
        torch.ops.dspark.verify_greedy_ragged(t, torch.zeros(5, dtype=torch.int64),
                                              torch.tensor([2.0, 5.0, 5.0]), 3, True)


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("draft", DRAFT_FORMS)
@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_float64_logits_are_read_as_float32(method, draft, layout):
    """float64 logits (exact tests) give the outputs of the same logits rounded to float32:
    the op's math is float32 for every dtype, each element rounded once on load."""
    c = make_case(5, 4, 300, torch.float64, seed=2, draft=draft)
    c32 = {k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and k != "temps" else v) for k, v in c.items()}
    runs = []
    for case in (c, c32):
        if layout == "padded":
            d, kw = _draft_args(case, case.get("probs"))
            runs.append(dspark_ext.rejection_sample(
                case["target"], case["tokens"], d, case["temps"], case["seeds"],
                case["offsets"], case["num"], method=method, **kw))
        else:
            t_rows, tokens, rows, cu = to_ragged(case)
            d, kw = _draft_args(case, rows)
            runs.append(dspark_ext.rejection_sample(
                t_rows, tokens, d, case["temps"], case["seeds"], case["offsets"],
                method=method, cu_num_draft=cu, max_num_draft=4, **kw))
    assert c["target"].dtype == torch.float64
    assert_same(*runs)


def test_float64_greedy_equals_reference():
    c = make_case(4, 6, 1000, torch.float64, seed=8)
    got = dspark_ext.verify_greedy(c["target"], c["tokens"], c["num"])
    assert_same(got, ref.verify_greedy(c["target"], c["tokens"], c["num"]))


def _markov_drafts(batch, k, vocab, temps, seed=0):
    """Drafts, draft logits and draft_lse from markov_sample, and target logits near them."""
    g = torch.Generator().manual_seed(seed)
    r = 16
    base = torch.randn(batch, k, vocab, generator=g) * 2
    out = dspark_ext.markov_sample(base, torch.randint(0, vocab, (batch,), generator=g),
                                   torch.randn(vocab, r, generator=g) * 0.3,
                                   torch.randn(vocab, r, generator=g) * 0.3, temps,
                                   seed=torch.arange(batch) + 7, offset=3)
    target = torch.cat([0.7 * out.draft_logits + 0.6 * torch.randn(batch, k, vocab, generator=g),
                        torch.randn(batch, 1, vocab, generator=g)], 1)
    return target, out


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_draft_lse_from_markov_sample_equals_computed(method, layout):
    """markov_sample's draft_lse handed to rejection_sample gives the tokens of the op's own
    log-sum-exp pass (greedy rows mixed in: their lse is never read)."""
    batch, k, vocab = 8, 6, 2000
    temps = torch.tensor([0.0, 0.6, 1.0, 1.4] * 2)
    target, out = _markov_drafts(batch, k, vocab, temps)
    num = torch.tensor([6, 0, 3, 6, 1, 5, 6, 2])
    seeds, offsets = torch.arange(batch) * 31, torch.full((batch,), 9)
    if layout == "padded":
        args = (target, out.draft_tokens, out.draft_logits, temps, seeds, offsets, num)
        plain = dspark_ext.rejection_sample(*args, method=method)
        given = dspark_ext.rejection_sample(*args, method=method, draft_lse=out.draft_lse)
    else:
        c = dict(target=target, tokens=out.draft_tokens, draft=out.draft_logits, num=num)
        t_rows, tokens, rows, cu = to_ragged(c)
        lse = torch.cat([out.draft_lse[b, :n] for b, n in enumerate(num.tolist())])
        kw = dict(method=method, cu_num_draft=cu, max_num_draft=k)
        plain = dspark_ext.rejection_sample(t_rows, tokens, rows, temps, seeds, offsets, **kw)
        given = dspark_ext.rejection_sample(t_rows, tokens, rows, temps, seeds, offsets,
                                            draft_lse=lse, **kw)
    assert_same(given, plain)
    assert int(plain.accepted.sum()) > 0 and int((plain.accepted < num).sum()) > 0


def test_draft_lse_is_read():
    """Negative control: an lse off by log(4) (q four times too small: every draft looks
    four times as likely to pass) changes the outcome, so the input is what the op uses."""
    batch, k, vocab = 16, 6, 500
    temps = torch.ones(batch)
    target, out = _markov_drafts(batch, k, vocab, temps, seed=3)
    args = (target, out.draft_tokens, out.draft_logits, temps, torch.arange(batch), 0)
    plain = dspark_ext.rejection_sample(*args)
    wrong = dspark_ext.rejection_sample(*args, draft_lse=out.draft_lse + 1.3863)
    assert int(wrong.accepted.sum()) > int(plain.accepted.sum())


def test_draft_lse_bad_inputs():
    batch, k, vocab = 3, 4, 50
    target, out = _markov_drafts(batch, k, vocab, torch.ones(batch))
    x, d, lse = out.draft_tokens, out.draft_logits, out.draft_lse
    t1, s, o = torch.ones(batch), torch.arange(batch), torch.zeros(batch, dtype=torch.int64)
    op = torch.ops.dspark.rejection_sample
    with pytest.raises(RuntimeError, match="draft_lse is only read next to draft_logits"):
        op(target, x, None, t1, s, o, None, False, draft_probs=torch.softmax(d, -1),
           draft_lse=lse)
    with pytest.raises(RuntimeError, match="draft_lse is only read next to draft_logits"):
        op(target, x, None, t1, s, o, None, False, draft_lse=lse)
    with pytest.raises(RuntimeError, match=r"draft_lse must have shape \[3, 4\], got \[3, 3\]"):
        op(target, x, d, t1, s, o, None, False, draft_lse=lse[:, :3])
    with pytest.raises(RuntimeError, match="draft_lse must be float32, got Double"):
        op(target, x, d, t1, s, o, None, False, draft_lse=lse.double())
    for bad in (float("nan"), float("inf")):
        wrong = lse.clone()
        wrong[1, 2] = bad
        with pytest.raises(RuntimeError, match=r"draft_lse\[6\] is .*finite or -inf"):
            op(target, x, d, t1, s, o, None, False, draft_lse=wrong)
    masked = lse.clone()
    masked[0, 0] = float("-inf")  # a fully masked row's lse is accepted
    op(target, x, d, t1, s, o, None, False, draft_lse=masked)
    with pytest.raises(RuntimeError, match=r"draft_lse must have shape \[5\]"):
        torch.ops.dspark.rejection_sample_ragged(
            target.reshape(-1, vocab)[:8], x.reshape(-1)[:5], d.reshape(-1, vocab)[:5],
            torch.tensor([0, 2, 3, 5]), 4, t1, s, o, False, draft_lse=lse.reshape(-1)[:4])
