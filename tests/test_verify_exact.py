"""The native verification ops equal the float64 pure-PyTorch reference token for token, under
the same Philox streams, across methods, dtypes, layouts, shapes and mixed greedy rows.
Outputs are poisoned before every run (conftest.py), so an unwritten element fails."""
import pytest
import torch

import dspark_ext
from dspark_ext import reference as ref

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def make_case(batch, k, vocab, dtype, seed=0, onehot=False, view_pad=0, agree=0.7):
    """Target logits, draft logits close to them (so acceptance is neither 0 nor 1), drafts
    sampled from the draft law, per-row lengths, temperatures (some greedy), seeds, offsets."""
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
    return dict(target=target.to(dtype), draft=None if onehot else draft.to(dtype),
                tokens=tokens, num=num, temps=temps, seeds=seeds, offsets=offsets)


def assert_same(got, want):
    for name in ("accepted", "out_tokens", "num_emitted", "accept_flags"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.shape == w.shape, (name, g.shape, w.shape)
        assert torch.equal(g.to(torch.int64), w.to(torch.int64)), (name, g, w)


def native_and_reference(c, method):
    got = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"],
                                      c["seeds"], c["offsets"], c["num"], method=method)
    want = ref.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"], c["seeds"],
                                c["offsets"], c["num"], method=method)
    return got, want


SHAPES = [(3, 0, 1), (3, 3, 1), (4, 1, 7), (5, 7, 7), (4, 7, 4096), (3, 16, 4096), (3, 1, 32000)]


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch,k,vocab", SHAPES)
@pytest.mark.parametrize("onehot", [False, True], ids=["draft_logits", "onehot"])
def test_rejection_sample_matches_reference(method, dtype, batch, k, vocab, onehot):
    c = make_case(batch, k, vocab, dtype, seed=vocab + k, onehot=onehot, view_pad=1)
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


def to_ragged(c):
    """The same requests in the ragged layout (flattened rows, cu_num_draft offsets)."""
    num = c["num"].tolist()
    cu = torch.tensor([0] + torch.tensor(num).cumsum(0).tolist(), dtype=torch.int64)
    t_rows = torch.cat([c["target"][b, : n + 1] for b, n in enumerate(num)])
    tokens = torch.cat([c["tokens"][b, :n] for b, n in enumerate(num)])
    draft = None
    if c["draft"] is not None:
        draft = torch.cat([c["draft"][b, :n] for b, n in enumerate(num)])
    return t_rows, tokens, draft, cu


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("onehot", [False, True], ids=["draft_logits", "onehot"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ragged_layout_equals_padded(method, onehot, dtype):
    c = make_case(7, 5, 513, dtype, seed=3, onehot=onehot)
    t_rows, tokens, draft, cu = to_ragged(c)
    k = c["tokens"].shape[1]
    padded = dspark_ext.rejection_sample(c["target"], c["tokens"], c["draft"], c["temps"],
                                         c["seeds"], c["offsets"], c["num"], method=method)
    ragged = dspark_ext.rejection_sample(t_rows, tokens, draft, c["temps"], c["seeds"],
                                         c["offsets"], method=method, cu_num_draft=cu,
                                         max_num_draft=k)
    assert torch.equal(padded.accepted, ragged.accepted)
    assert torch.equal(padded.out_tokens, ragged.out_tokens)
    assert torch.equal(padded.num_emitted, ragged.num_emitted)
    flat = torch.cat([padded.accept_flags[b, :n] for b, n in enumerate(c["num"].tolist())])
    assert torch.equal(flat, ragged.accept_flags)
    want = ref.rejection_sample_ragged(t_rows, tokens, draft, cu, k, c["temps"], c["seeds"],
                                       c["offsets"], method=method)
    assert_same(ragged, want)


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
