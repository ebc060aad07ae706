"""The native verification ops equal the float64 pure-PyTorch reference token for token, under
the same Philox streams, across methods, dtypes, layouts, shapes and mixed greedy rows.
Outputs are poisoned before every run (conftest.py), so an unwritten element fails."""
import math

import pytest
import torch

import dspark_ext
from dspark_ext import reference as ref

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


# How the draft law reaches the op: draft logits, draft probabilities, one-hot drafts.
DRAFT_FORMS = ["draft_logits", "draft_probs", "onehot"]


def probs_of(draft_logits, temps, dtype, bad_entries=False):
    """Draft probabilities softmax(d / T_r) (rows of greedy requests at T = 1), in float64
    rounded once to ``dtype``. ``bad_entries`` plants NaN, negative, +inf and subnormal
    entries (q = 0 under the documented policy) in every row that is long enough."""
    t = torch.where(temps > 0, temps, torch.ones_like(temps)).double()
    q = torch.softmax(draft_logits.double() / t.view(-1, *[1] * (draft_logits.dim() - 1)), -1)
    q = q.to(dtype)
    if bad_entries and q.shape[-1] >= 8:
        q = q.clone()
        q[..., 1] = float("nan")
        q[..., 3] = -0.25
        q[..., 5] = float("inf")
        q[..., 6] = 1e-39 if dtype != torch.float16 else 0.0
    return q


def make_case(batch, k, vocab, dtype, seed=0, onehot=False, view_pad=0, agree=0.7,
              draft="draft_logits"):
    """Target logits, draft logits close to them (so acceptance is neither 0 nor 1), drafts
    sampled from the draft law, per-row lengths, temperatures (some greedy), seeds, offsets.
    ``draft="draft_probs"`` passes the draft law as probabilities (with a few NaN / negative /
    infinite entries); ``onehot`` (or ``draft="onehot"``) passes no draft rows."""
    form = "onehot" if onehot else draft
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, k + 1, vocab + view_pad, generator=g) * 2.0
    target = base[..., view_pad:]  # a view whose rows need not start aligned
    draft = (agree * target[:, :k] + (1 - agree) * 2.0 * torch.randn(batch, k, vocab, generator=g))
    if k > 0 and vocab > 1:
        tokens = torch.distributions.Categorical(logits=draft.float()).sample()
    else:
        tokens = torch.zeros(batch, k, dtype=torch.int64)
    num = torch.randint(0, k + 1, (batch,), generator=g)
    num[0] = k
    temps = torch.tensor([0.0, 0.7, 1.0, 1.3])[torch.arange(batch) % 4].float()
    seeds = torch.randint(-(2**62), 2**62, (batch,), generator=g)
    offsets = torch.randint(0, 2**40, (batch,), generator=g)
    for b in range(batch):  # placeholders beyond num_draft must be ignored
        tokens[b, num[b]:] = -1
    probs = probs_of(draft, temps, dtype, bad_entries=True) if form == "draft_probs" else None
    return dict(target=target.to(dtype),
                draft=draft.to(dtype) if form == "draft_logits" else None, probs=probs,
                tokens=tokens, num=num, temps=temps, seeds=seeds, offsets=offsets)


def assert_same(got, want):
    for name in ("accepted", "out_tokens", "num_emitted", "accept_flags"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.shape == w.shape, (name, g.shape, w.shape)
        assert torch.equal(g.to(torch.int64), w.to(torch.int64)), (name, g, w)


def native_and_reference(c, method):
    probs = c.get("probs")
    got = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"],
                                      c["seeds"], c["offsets"], c["num"], method=method,
                                      draft_probs=probs)
    want = ref.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"], c["seeds"],
                                c["offsets"], c["num"], method=method, draft_probs=probs)
    return got, want


SHAPES = [(3, 0, 1), (3, 3, 1), (4, 1, 7), (5, 7, 7), (4, 7, 4096), (3, 16, 4096), (3, 1, 32000)]


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch,k,vocab", SHAPES)
@pytest.mark.parametrize("draft", DRAFT_FORMS)
def test_rejection_sample_matches_reference(method, dtype, batch, k, vocab, draft):
    c = make_case(batch, k, vocab, dtype, seed=vocab + k, view_pad=1, draft=draft)
    got, want = native_and_reference(c, method)
    assert_same(got, want)
    assert ((got.out_tokens >= -1) & (got.out_tokens < vocab)).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_qwen_sized_vocab_view(method, dtype):
    c = make_case(2, 7, 151936, dtype, seed=5, view_pad=3, agree=0.9)
    got, want = native_and_reference(c, method)
    assert_same(got, want)


@pytest.mark.parametrize("method", ["token", "block"])
def test_mostly_accepted_drafts(method):
    """Drafts equal to the target: everything is accepted and the bonus row is sampled."""
    c = make_case(6, 7, 300, torch.float32, seed=9)
    c["draft"] = c["target"][:, :7].contiguous()
    got, want = native_and_reference(c, method)
    assert_same(got, want)
    sampled = c["temps"] > 0
    assert torch.equal(got.accepted[sampled], c["num"][sampled])


def _flatten(rows, num):
    return None if rows is None else torch.cat([rows[b, :n] for b, n in enumerate(num)])


def to_ragged(c):
    """The same requests in the ragged layout (flattened rows, cu_num_draft offsets); with
    ``c["probs"]`` the draft rows returned are the flattened probabilities."""
    num = c["num"].tolist()
    cu = torch.tensor([0] + torch.tensor(num).cumsum(0).tolist(), dtype=torch.int64)
    t_rows = torch.cat([c["target"][b, : n + 1] for b, n in enumerate(num)])
    tokens = torch.cat([c["tokens"][b, :n] for b, n in enumerate(num)])
    draft = _flatten(c.get("probs") if c.get("probs") is not None else c["draft"], num)
    return t_rows, tokens, draft, cu


def _draft_kwargs(c, rows):
    """(draft_logits, extra keyword arguments) passing ``rows`` in the case's draft form."""
    if c.get("probs") is not None:
        return None, dict(draft_probs=rows)
    return rows, {}


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("draft", DRAFT_FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ragged_layout_equals_padded(method, draft, dtype):
    c = make_case(7, 5, 513, dtype, seed=3, draft=draft)
    t_rows, tokens, draft_rows, cu = to_ragged(c)
    k = c["tokens"].shape[1]
    padded = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"],
                                         c["seeds"], c["offsets"], c["num"], method=method,
                                         **_draft_kwargs(c, c.get("probs"))[1])
    d_logits, kw = _draft_kwargs(c, draft_rows)
    ragged = dspark_ext.rejection_sample(t_rows, tokens, d_logits, c["temps"], c["seeds"],
                                         c["offsets"], method=method, cu_num_draft=cu,
                                         max_num_draft=k, **kw)
    assert torch.equal(padded.accepted, ragged.accepted)
    assert torch.equal(padded.out_tokens, ragged.out_tokens)
    assert torch.equal(padded.num_emitted, ragged.num_emitted)
    flat = torch.cat([padded.accept_flags[b, :n] for b, n in enumerate(c["num"].tolist())])
    assert torch.equal(flat, ragged.accept_flags)
    want = ref.rejection_sample_ragged(t_rows, tokens, d_logits, cu, k, c["temps"], c["seeds"],
                                       c["offsets"], method=method, **kw)
    assert_same(ragged, want)


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_draft_probs_give_the_tokens_of_draft_logits(method, layout):
    """draft_probs = softmax(d / T) and draft_logits = d draw from the same Philox streams, so
    they emit the same tokens (the q values differ only by float32 rounding, which moves no
    decision for these seeds)."""
    c = make_case(48, 7, 1000, torch.float32, seed=31)
    q = probs_of(c["draft"], c["temps"], torch.float32)
    args = (c["temps"], c["seeds"], c["offsets"])
    if layout == "padded":
        from_logits = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], *args,
                                                  c["num"], method=method)
        from_probs = dspark_ext.rejection_sample(c["target"], c["tokens"], None, *args,
                                                 c["num"], method=method, draft_probs=q)
    else:
        t_rows, tokens, d_rows, cu = to_ragged(c)
        kw = dict(method=method, cu_num_draft=cu, max_num_draft=7)
        from_logits = dspark_ext.rejection_sample(t_rows, tokens, d_rows, *args, **kw)
        from_probs = dspark_ext.rejection_sample(t_rows, tokens, None, *args,
                                                 draft_probs=_flatten(q, c["num"].tolist()),
                                                 **kw)
    assert_same(from_probs, from_logits)
    sampled = c["temps"] > 0
    # Not a vacuous check: the sampled rows both accept and reject.
    assert 0 < int((from_logits.accepted[sampled] < c["num"][sampled]).sum()) < int(sampled.sum())


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("bad", [math.nan, -0.5, math.inf, -math.inf, 0.0, 1e-40])
def test_invalid_draft_prob_at_the_draft_token_rejects(method, bad):
    """Documented policy: a NaN, infinite, negative, zero or subnormal draft probability is
    q = 0, so a draft token there is never accepted (q(x) = 0 => reject), and the correction
    comes from max(p - q, 0) with q = 0 at that entry."""
    n, vocab = 400, 6
    g = torch.Generator().manual_seed(2)
    t = torch.randn(n, 2, vocab, generator=g)
    q = torch.softmax(torch.randn(n, 1, vocab, generator=g), -1)
    q[:, 0, 2] = bad
    x = torch.full((n, 1), 2)
    res = dspark_ext.rejection_sample(t, x, None, 1.0, torch.arange(n), 0, method=method,
                                      draft_probs=q)
    assert (res.accepted == 0).all()
    assert ((res.out_tokens[:, 0] >= 0) & (res.out_tokens[:, 0] < vocab)).all()
    want = ref.rejection_sample(t, x, None, torch.ones(n), torch.arange(n),
                                torch.zeros(n, dtype=torch.int64), method=method, draft_probs=q)
    assert_same(res, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch,k,vocab", SHAPES + [(2, 16, 151936)])
def test_greedy_matches_reference(dtype, batch, k, vocab):
    g = torch.Generator().manual_seed(k * 31 + vocab)
    # Small integer logits: many ties, which must go to the lowest index.
    target = torch.randint(-3, 4, (batch, k + 1, vocab), generator=g).to(dtype)
    tokens = target[:, :k].float().argmax(-1)
    flip = torch.rand(batch, k, generator=g) < 0.2
    tokens = torch.where(flip, torch.randint(0, vocab, (batch, k), generator=g), tokens)
    num = torch.randint(0, k + 1, (batch,), generator=g)
    got = dspark_ext.verify_greedy(target, tokens, num)
    assert_same(got, ref.verify_greedy(target, tokens, num))
    t_rows, flat_tokens, _, cu = to_ragged(dict(target=target, tokens=tokens, draft=None, num=num))
    rag = dspark_ext.verify_greedy(t_rows, flat_tokens, cu_num_draft=cu, max_num_draft=k)
    assert_same(rag, ref.verify_greedy_ragged(t_rows, flat_tokens, cu, k))
    assert torch.equal(rag.out_tokens, got.out_tokens)


def test_rows_do_not_depend_on_batch_composition():
    c = make_case(6, 7, 999, torch.float32, seed=4)
    full = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"],
                                       c["seeds"], c["offsets"], c["num"])
    for b in range(6):
        one = dspark_ext.rejection_sample(c["target"][b:b + 1], c["tokens"][b:b + 1],
                                          c["draft"][b:b + 1], c["temps"][b:b + 1],
                                          c["seeds"][b:b + 1], c["offsets"][b:b + 1],
                                          c["num"][b:b + 1])
        assert torch.equal(one.out_tokens[0], full.out_tokens[b])


def test_offset_advances_the_streams():
    c = make_case(64, 3, 50, torch.float32, seed=8)
    c["temps"].fill_(1.0)
    args = (c["target"], c["tokens"], c["draft"], c["temps"], c["seeds"])
    a = dspark_ext.rejection_sample(*args, 0, c["num"])
    b = dspark_ext.rejection_sample(*args, 1, c["num"])
    again = dspark_ext.rejection_sample(*args, 0, c["num"])
    assert torch.equal(a.out_tokens, again.out_tokens)
    assert not torch.equal(a.out_tokens, b.out_tokens)


@pytest.mark.slow
def test_index_math_beyond_2_31_elements():
    """B*(K+1)*V > 2^31 elements: 64-bit offsets are needed to reach the last request. The
    buffers are reserved but untouched (the OS maps zero pages on read), so only the last
    request's rows take memory; the other rows verify 0 drafts and read one zero row each."""
    batch, k, vocab = 833, 16, 151936
    assert batch * (k + 1) * vocab > 2**31
    target = torch.empty(batch, k + 1, vocab, dtype=torch.bfloat16)
    draft = torch.empty(batch, k, vocab, dtype=torch.bfloat16)
    last = make_case(1, k, vocab, torch.bfloat16, seed=12, agree=0.9)
    target[-1] = last["target"][0]
    draft[-1] = last["draft"][0]
    tokens = torch.full((batch, k), -1, dtype=torch.int64)
    tokens[-1] = last["tokens"][0]
    num = torch.zeros(batch, dtype=torch.int64)
    num[-1] = last["num"][0]
    for method in ("token", "block"):
        got = dspark_ext.rejection_sample(target, tokens, draft, 1.0, 77, 3, num, method=method)
        alone = dspark_ext.rejection_sample(target[-1:], tokens[-1:], draft[-1:], 1.0,
                                            torch.tensor([77 + batch - 1]), 3, num[-1:],
                                            method=method)
        assert torch.equal(got.out_tokens[-1], alone.out_tokens[0])
        assert got.accepted[-1] == alone.accepted[0]
        assert (got.accepted[:-1] == 0).all() and (got.out_tokens[:-1, 0] >= 0).all()
    g = dspark_ext.verify_greedy(target, tokens, num)
    assert torch.equal(g.out_tokens[-1], dspark_ext.verify_greedy(target[-1:], tokens[-1:],
                                                                  num[-1:]).out_tokens[0])


@pytest.mark.parametrize("method", ["token", "block"])
def test_log2_scale_overflow_masks_logit_and_tiny_temperature_is_greedy(method):
    """The kernels scale logits by log2(e)/T in float32 (verify_math.h): a finite logit whose
    product with it overflows (but not its product with 1/T) is masked, and a temperature
    whose log2(e)/T overflows is greedy; the reference applies the same rules."""
    c = make_case(4, 3, 50, torch.float32, seed=21)
    c["target"] = c["target"].clone()
    c["target"][:, :, 7] = 2.5e38  # finite, and finite times 1/T = 1, but not times log2(e)
    c["temps"] = torch.tensor([1.0, 1.0, 4.0e-39, 0.0])  # row 2: 1/T finite, log2(e)/T not
    assert ref.verify_scale(1.0) * 2.5e38 > torch.finfo(torch.float32).max
    got, want = native_and_reference(c, method)
    assert_same(got, want)
    sampled = got.out_tokens[:2]
    assert not bool((sampled == 7).any())  # masked in the sampled rows
    for b in (2, 3):  # greedy rows: the huge logit is their argmax
        emitted = got.out_tokens[b, : int(got.num_emitted[b])]
        assert emitted.numel() > 0 and bool((emitted == 7).all())
