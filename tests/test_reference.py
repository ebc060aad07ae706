"""Tests of the pure-PyTorch reference (dspark_ext/reference.py), the ground truth of the ops.

The reference itself must be right: Philox known-answer vectors, the stream layout of the
native generator, the uniforms' range, the greedy rule, the flag conventions, padded vs ragged
agreement, and the design §3.3 toy law (token-wise 10/9, block 11/9 accepted tokens) both
enumerated exactly and by Monte Carlo through the reference.
"""

from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import pytest
import torch

from dspark_ext import reference as R
from dspark_ext.reference.laws import _inv_temperature

# ----------------------------------------------------------------------------------------
# Philox and the stream layout
# ----------------------------------------------------------------------------------------

# Random123 known-answer vectors for philox4x32_10: (counter, key, expected output).
PHILOX_KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KATS)
def test_philox_known_answers(counter, key, expected):
    out = R.philox4x32_10(torch.tensor(counter), torch.tensor(key))
    assert out.dtype == torch.int64
    assert out.tolist() == list(expected)


def test_philox_batched_matches_single():
    counters = torch.tensor([c for c, _, _ in PHILOX_KATS])
    keys = torch.tensor([k for _, k, _ in PHILOX_KATS])
    out = R.philox4x32_10(counters, keys)
    assert out.tolist() == [list(e) for _, _, e in PHILOX_KATS]
    # A key broadcasts over a batch of counters.
    out = R.philox4x32_10(counters, torch.tensor(PHILOX_KATS[2][1]))
    assert out[2].tolist() == list(PHILOX_KATS[2][2])


def _native():
    """The built extension (retry once: dspark_ext/__init__.py may be mid-edit by others)."""
    try:
        import dspark_ext._C as C
    except ImportError:
        time.sleep(5)
        import dspark_ext._C as C
    return C


STREAMS = [
    # (seed, offset, position, purpose)
    (0, 0, 0, R.PURPOSE_DRAFT),
    (1, 1, 1, R.PURPOSE_ACCEPT),
    (-1, 2**32, 3, R.PURPOSE_RESIDUAL),
    (-(2**63), 2**63 - 1, 2**24 + 5, R.PURPOSE_ACCEPT),  # position keeps 24 bits
    (0x123456789ABCDEF, 2**40 + 17, 16, R.PURPOSE_RESIDUAL),
    (-987654321, 5 * 2**32 + 3, 0xFFFFFF, R.PURPOSE_DRAFT),
]


@pytest.mark.parametrize("seed,offset,position,purpose", STREAMS)
def test_rng_words_match_native(seed, offset, position, purpose):
    C = _native()
    groups = 9
    native = C.philox_words(seed, offset, position, purpose, groups)
    ref = R.rng_words(torch.tensor([seed]), torch.tensor([offset]), position, purpose, 4 * groups)
    assert ref.shape == (1, 4 * groups)
    assert ref[0].tolist() == list(native)
    # Fewer lanes than a whole group: the prefix.
    assert R.rng_words(seed, offset, position, purpose, 6)[0].tolist() == list(native[:6])


def test_rng_words_batched_rows_are_independent_streams():
    seeds = torch.tensor([s for s, _, _, _ in STREAMS])
    offsets = torch.tensor([o for _, o, _, _ in STREAMS])
    positions = torch.tensor([p for _, _, p, _ in STREAMS])
    words = R.rng_words(seeds, offsets, positions, R.PURPOSE_ACCEPT, 10)
    for b, (s, o, p, _) in enumerate(STREAMS):
        assert words[b].tolist() == R.rng_words(s, o, p, R.PURPOSE_ACCEPT, 10)[0].tolist()


def test_rng_layout_matches_counter_definition():
    seed, offset, position, purpose = -5, 2**33 + 7, 12, R.PURPOSE_RESIDUAL
    useed = seed % 2**64
    key = torch.tensor([useed & 0xFFFFFFFF, useed >> 32])
    words = R.rng_words(seed, offset, position, purpose, 11)[0]
    for lane in range(11):
        counter = torch.tensor(
            [lane // 4, offset & 0xFFFFFFFF, offset >> 32, (purpose << 24) | position]
        )
        assert int(words[lane]) == int(R.philox4x32_10(counter, key)[lane % 4])


def test_purposes_and_positions_are_disjoint():
    draws = {
        (purpose, position): tuple(R.rng_words(7, 3, position, purpose, 8)[0].tolist())
        for purpose in (R.PURPOSE_DRAFT, R.PURPOSE_ACCEPT, R.PURPOSE_RESIDUAL)
        for position in range(4)
    }
    assert len(set(draws.values())) == len(draws)


def test_uniforms_open_interval_and_float32_exact():
    u = R.uniforms(torch.arange(-8, 8), torch.arange(16) * 2**31, 2, R.PURPOSE_ACCEPT, 257)
    assert u.dtype == torch.float64
    assert bool(((u > 0) & (u < 1)).all())
    assert torch.equal(u.to(torch.float32).to(torch.float64), u)
    # Extremes of the word range: 2^-24 and 1 - 2^-24, both float32-exact.
    ext = R.uniform_from_words(torch.tensor([0, 0xFFFFFFFF]))
    assert ext.tolist() == [2.0**-24, 1.0 - 2.0**-24]
    # Roughly uniform: the mean of 16*257 draws is 1/2 within 6 standard errors.
    assert abs(float(u.mean()) - 0.5) < 6 * math.sqrt(1 / 12 / u.numel())


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------


def _equal(a: R.VerifyResult, b: R.VerifyResult) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _to_ragged(target, draft_tokens, draft_logits, lengths):
    """Padded inputs -> ragged (target [T+B, V], tokens [T], draft [T, V], cu [B+1])."""
    t_rows, tok, d_rows = [], [], []
    for b, l in enumerate(lengths):
        t_rows.append(target[b, : l + 1])
        tok.append(draft_tokens[b, :l])
        if draft_logits is not None:
            d_rows.append(draft_logits[b, :l])
    cu = torch.tensor([0] + list(itertools.accumulate(lengths)), dtype=torch.int64)
    draft = torch.cat(d_rows) if draft_logits is not None else None
    return torch.cat(t_rows), torch.cat(tok), draft, cu


def _random_problem(batch, k, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, k + 1, vocab, generator=g) * 2
    draft = target[:, :k] + torch.randn(batch, k, vocab, generator=g)
    tokens = torch.randint(0, vocab, (batch, k), generator=g)
    lengths = torch.randint(0, k + 1, (batch,), generator=g)
    return target, tokens, draft, lengths


# ----------------------------------------------------------------------------------------
# Greedy
# ----------------------------------------------------------------------------------------


def test_greedy_reproduces_argmax_decoding():
    batch, k, vocab = 5, 4, 11
    g = torch.Generator().manual_seed(0)
    target = torch.randn(batch, k + 1, vocab, generator=g)
    best = target.argmax(-1)
    tokens = best[:, :k].clone()
    # Row b agrees with the target for exactly b positions (b == k: all of them).
    for b in range(batch):
        if b < k:
            tokens[b, b] = (best[b, b] + 1) % vocab
    res = R.verify_greedy(target, tokens)
    assert res.accepted.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(res.num_emitted, res.accepted + 1)
    for b in range(batch):
        a = b
        assert res.out_tokens[b, :a].tolist() == tokens[b, :a].tolist()
        assert int(res.out_tokens[b, a]) == int(best[b, a])  # correction or bonus
        assert res.out_tokens[b, a + 1 :].tolist() == [-1] * (k - a)
        expected_flags = [1] * a + ([0] if a < k else []) + [-1] * (k - a - 1)
        assert res.accept_flags[b].tolist() == expected_flags[:k]
    assert res.accept_flags.dtype == torch.int8


def test_greedy_ties_lowest_index_and_masking():
    vocab = 6
    target = torch.zeros(1, 3, vocab)
    target[0, 0, 2] = target[0, 0, 4] = 5.0  # tie: 2 wins
    target[0, 1, 0] = float("nan")  # NaN never wins
    target[0, 1, 1] = float("inf")  # +inf is masked too
    target[0, 1, 3] = 1.0
    target[0, 2] = float("-inf")  # fully masked row -> -1
    res = R.verify_greedy(target, torch.tensor([[2, 3]]))
    assert res.accepted.tolist() == [2]
    assert res.out_tokens.tolist() == [[2, 3, -1]]
    res = R.verify_greedy(target, torch.tensor([[4, 3]]))
    assert res.out_tokens.tolist() == [[2, -1, -1]]
    assert res.accept_flags.tolist() == [[0, -1]]


def test_temperature_zero_rows_are_greedy_in_sampling_ops():
    target, tokens, draft, lengths = _random_problem(6, 3, 9, seed=1)
    tokens[:, 0] = target[:, 0].argmax(-1)  # make some acceptances happen
    greedy = R.verify_greedy(target, tokens, lengths)
    for method in ("token", "block"):
        res = R.rejection_sample(target, tokens, draft, torch.zeros(6), torch.arange(6),
                                 torch.zeros(6, dtype=torch.int64), lengths, method=method)
        assert _equal(res, greedy)


# ----------------------------------------------------------------------------------------
# Sampling: structure of the outputs
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["token", "block"])
def test_draft_equal_to_target_accepts_everything(method):
    target, tokens, _, _ = _random_problem(4, 5, 13, seed=2)
    res = R.rejection_sample(target, tokens, target[:, :5].clone(), torch.full((4,), 0.8),
                             torch.arange(4) - 2, torch.full((4,), 2**35), method=method)
    assert res.accepted.tolist() == [5] * 4
    assert torch.equal(res.out_tokens[:, :5], tokens)
    assert bool((res.out_tokens[:, 5] >= 0).all())
    assert bool((res.accept_flags == 1).all())


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("onehot", [False, True])
def test_flags_and_padding_conventions(method, onehot):
    batch, k, vocab = 12, 4, 7
    target, tokens, draft, lengths = _random_problem(batch, k, vocab, seed=3)
    temps = torch.tensor([0.0, 0.5, 1.0, 2.0] * 3)
    res = R.rejection_sample(target, tokens, None if onehot else draft, temps,
                             torch.arange(batch) * 1000 - 7, torch.arange(batch), lengths,
                             method=method)
    for b in range(batch):
        l, a = int(lengths[b]), int(res.accepted[b])
        flags = res.accept_flags[b].tolist()
        assert 0 <= a <= l and int(res.num_emitted[b]) == a + 1
        assert res.out_tokens[b, :a].tolist() == tokens[b, :a].tolist()
        assert 0 <= int(res.out_tokens[b, a]) < vocab
        assert res.out_tokens[b, a + 1 :].tolist() == [-1] * (k - a)
        assert flags[l:] == [-1] * (k - l)
        if method == "block" and temps[b] > 0:
            # Every stop test i = 1..l is run; tau is the last one that passed.
            assert all(f in (0, 1) for f in flags[:l])
            assert a == max([i + 1 for i in range(l) if flags[i] == 1], default=0)
        else:
            expected = [1] * a + ([0] if a < l else []) + [-1] * (l - a - 1)
            assert flags[:l] == expected[:l]


@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("onehot", [False, True])
def test_padded_and_ragged_layouts_agree(method, onehot):
    batch, k, vocab = 7, 3, 10
    target, tokens, draft, lengths = _random_problem(batch, k, vocab, seed=4)
    lengths[0], lengths[1] = 0, k
    temps = torch.tensor([1.0, 0.0, 0.7, 1.0, 1.5, 1.0, 0.3])
    seed, offset = torch.arange(batch) - 3, torch.arange(batch) + 2**33
    d = None if onehot else draft
    padded = R.rejection_sample(target, tokens, d, temps, seed, offset, lengths, method=method)
    rt, rtok, rd, cu = _to_ragged(target, tokens, d, lengths.tolist())
    ragged = R.rejection_sample_ragged(rt, rtok, rd, cu, k, temps, seed, offset, method=method)
    assert torch.equal(padded.accepted, ragged.accepted)
    assert torch.equal(padded.out_tokens, ragged.out_tokens)
    assert torch.equal(padded.num_emitted, ragged.num_emitted)
    flat = torch.cat([padded.accept_flags[b, :l] for b, l in enumerate(lengths.tolist())])
    assert torch.equal(flat, ragged.accept_flags)
    g_pad = R.verify_greedy(target, tokens, lengths)
    g_rag = R.verify_greedy_ragged(rt, rtok, cu, k)
    assert torch.equal(g_pad.out_tokens, g_rag.out_tokens)


def test_results_depend_only_on_the_row():
    """Batch composition does not change a row's outcome (per-row streams, design §2)."""
    target, tokens, draft, lengths = _random_problem(6, 3, 8, seed=5)
    temps, seed, offset = torch.full((6,), 1.0), torch.arange(6) + 11, torch.full((6,), 4)
    full = R.rejection_sample(target, tokens, draft, temps, seed, offset, lengths, method="block")
    for b in (0, 3, 5):
        one = R.rejection_sample(target[b : b + 1], tokens[b : b + 1], draft[b : b + 1],
                                 temps[b : b + 1], seed[b : b + 1], offset[b : b + 1],
                                 lengths[b : b + 1], method="block")
        assert torch.equal(one.out_tokens[0], full.out_tokens[b])


def test_float32_working_dtype_agrees_here():
    target, tokens, draft, lengths = _random_problem(8, 3, 16, seed=6)
    zeros = torch.zeros(8, dtype=torch.int64)
    args = (target, tokens, draft, torch.full((8,), 1.0), torch.arange(8), zeros, lengths)
    for method in ("token", "block"):
        r64 = R.rejection_sample(*args, method=method)
        r32 = R.rejection_sample(*args, method=method, dtype=torch.float32)
        assert torch.equal(r64.out_tokens, r32.out_tokens)


def test_masked_draft_and_target_tokens():
    """A draft token the target masks is never accepted; masked tokens are never emitted."""
    vocab = 5
    target = torch.zeros(3, 2, vocab)
    target[:, :, 1] = float("nan")
    target[:, :, 4] = float("-inf")
    draft = torch.zeros(3, 1, vocab)
    tokens = torch.tensor([[1], [4], [2]])
    for method in ("token", "block"):
        for d in (draft, None):
            res = R.rejection_sample(target, tokens, d, torch.ones(3), torch.tensor([1, 2, 3]),
                                     torch.zeros(3, dtype=torch.int64), method=method)
            assert res.accepted[:2].tolist() == [0, 0]
            emitted = res.out_tokens[res.out_tokens >= 0]
            assert not bool(((emitted == 1) | (emitted == 4)).any())


def test_scaled_overflow_is_masked():
    """A finite logit whose float32 product with 1/T overflows is masked, as in the kernel."""
    logits = torch.tensor([3.0e38, 1.0, float("nan"), -float("inf"), 2.0])
    s = R.masked_scaled(logits, _inv_temperature(0.5))
    assert s.tolist() == [-math.inf, 2.0, -math.inf, -math.inf, 4.0]
    # Read as float32 (the kernel's input precision), then widened exactly.
    assert R.masked_scaled(logits, 1.0)[0] == float(torch.tensor(3.0e38, dtype=torch.float32))


@pytest.mark.parametrize("method", ["token", "block"])
def test_residual_without_mass_falls_back_to_target(method):
    """Draft == target and the draft token masked in both: the token is rejected (p = 0), the
    residual max(p - q, 0) has no mass, so the correction is sampled from p (never -1)."""
    vocab, batch = 5, 32
    g = torch.Generator().manual_seed(7)
    target = torch.randn(batch, 3, vocab, generator=g)
    target[:, 0, 2] = float("nan")
    draft = target[:, :2].clone()
    tokens = torch.full((batch, 2), 2)
    res = R.rejection_sample(target, tokens, draft, torch.ones(batch), torch.arange(batch),
                             torch.zeros(batch, dtype=torch.int64), method=method)
    assert res.accepted.tolist() == [0] * batch
    first = res.out_tokens[:, 0]
    assert bool(((first >= 0) & (first != 2)).all())
    assert len(set(first.tolist())) > 1  # a sample of p, not a fixed fallback token


def test_target_law():
    row = torch.tensor([0.0, math.log(2.0), float("nan"), math.log(3.0)])
    law = R.target_law(row, 1.0)
    assert law.dtype == torch.float64
    assert torch.allclose(law, torch.tensor([1 / 6, 2 / 6, 0.0, 3 / 6], dtype=torch.float64))
    law = R.target_law(row, 0.5)  # squares the odds
    assert torch.allclose(law, torch.tensor([1 / 14, 4 / 14, 0.0, 9 / 14], dtype=torch.float64))
    assert R.target_law(row, 0.0).tolist() == [0.0, 0.0, 0.0, 1.0]


def test_bad_arguments_raise():
    target, tokens, draft, _ = _random_problem(2, 2, 5, seed=8)
    ones, seed = torch.ones(2), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="temperature"):
        R.rejection_sample(target, tokens, draft, torch.tensor([1.0, -1.0]), seed, seed)
    with pytest.raises(ValueError, match="method"):
        R.rejection_sample(target, tokens, draft, ones, seed, seed, method="tree")
    with pytest.raises(ValueError, match="num_draft"):
        R.rejection_sample(target, tokens, draft, ones, seed, seed, torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="cu_num_draft"):
        R.verify_greedy_ragged(target[0], tokens[0], torch.tensor([0, 1, 1]), 2)


# ----------------------------------------------------------------------------------------
# design §3.3 toy law: target (1/3, 2/3), draft (2/3, 1/3) at every position, gamma = 2
# ----------------------------------------------------------------------------------------

TOY_P = (Fraction(1, 3), Fraction(2, 3))
TOY_Q = (Fraction(2, 3), Fraction(1, 3))
TOY_GAMMA = 2


def exact_accepted_law(p, q, gamma, method, block_without_residual=False):
    """Exact law {accepted count: probability} of one chain with the same p, q at every
    position, by enumerating the draft tokens and integrating the uniforms analytically.

    Token-wise: position k passes with probability min(1, p/q); the count is the first
    failure. Block (design §3.3): tau = i with probability h_i * prod_{j>i} (1 - h_j), h_l = w_l.
    ``block_without_residual`` is a deliberately wrong variant (h_i = 0 for i < l, i.e.
    ignoring the residual mass) used as a negative control.
    """
    law = {n: Fraction(0) for n in range(gamma + 1)}
    vocab = range(len(p))
    for xs in itertools.product(vocab, repeat=gamma):
        weight = math.prod((q[x] for x in xs), start=Fraction(1))
        if method == "token":
            alive = Fraction(1)
            for k, x in enumerate(xs):
                a = min(Fraction(1), p[x] / q[x])
                law[k] += weight * alive * (1 - a)
                alive *= a
            law[gamma] += weight * alive
            continue
        w, hs = Fraction(1), []
        for i, x in enumerate(xs, start=1):
            w = min(Fraction(1), w * p[x] / q[x])
            if i < gamma:
                z = sum(max(w * p[y] - q[y], Fraction(0)) for y in vocab)
                den = z + 1 - w
                h = Fraction(1) if den <= 0 else min(Fraction(1), z / den)
                hs.append(Fraction(0) if block_without_residual else h)
            else:
                hs.append(w)
        fail_after = Fraction(1)
        for i in range(gamma, 0, -1):  # tau = i: test i passes, every later test fails
            law[i] += weight * fail_after * hs[i - 1]
            fail_after *= 1 - hs[i - 1]
        law[0] += weight * fail_after
    assert sum(law.values()) == 1
    return law


def _mean_var(law):
    mean = sum(n * pr for n, pr in law.items())
    return mean, sum((n - mean) ** 2 * pr for n, pr in law.items())


@pytest.mark.parametrize("method", ["token", "block"])
def test_draft_probs_give_the_decisions_of_draft_logits(method):
    """draft_probs = softmax(d / T) and draft_logits = d: the same law (up to the float32
    rounding of q that draft_probs_law applies), the same streams, the same tokens."""
    target, tokens, draft, lengths = _random_problem(8, 4, 9, seed=13)
    temps = torch.tensor([0.0, 0.7, 1.0, 1.3] * 2)
    seeds, offsets = torch.arange(8) * 101, torch.arange(8)
    t = torch.where(temps > 0, temps, torch.ones_like(temps)).double()
    q = torch.softmax(draft.double() / t[:, None, None], -1)
    a = R.rejection_sample(target, tokens, draft, temps, seeds, offsets, lengths, method)
    b = R.rejection_sample(target, tokens, None, temps, seeds, offsets, lengths, method,
                           draft_probs=q)
    assert _equal(a, b)
    t_rows, tok, q_rows, cu = _to_ragged(target, tokens, q, lengths.tolist())
    c = R.rejection_sample_ragged(t_rows, tok, None, cu, 4, temps, seeds, offsets, method,
                                  draft_probs=q_rows)
    assert torch.equal(c.out_tokens, b.out_tokens)


def test_draft_probs_law_policy():
    """Used as given; NaN, +-inf, negative, zero and subnormal (float32) entries are 0."""
    x = torch.tensor([0.5, math.nan, -1.0, math.inf, -math.inf, 0.0, 1e-40, 2.0, 2.0**-126])
    assert R.draft_probs_law(x).tolist() == [0.5, 0, 0, 0, 0, 0, 0, 2.0, 2.0**-126]
    assert R.draft_probs_law(x.to(torch.bfloat16)).dtype == torch.float64


def test_toy_law_exact_enumeration():
    token_mean, _ = _mean_var(exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, "token"))
    block_mean, _ = _mean_var(exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, "block"))
    assert token_mean == Fraction(10, 9)
    assert block_mean == Fraction(11, 9)
    # Negative control: block verification that ignores the residual mass is token-wise.
    wrong = exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, "block", block_without_residual=True)
    assert _mean_var(wrong)[0] == Fraction(10, 9)


# 6400 rows: the two methods' means are ~10 standard errors apart, so both the 5-sigma check
# and its negative control have a false-failure rate below 1e-6.
TOY_ROWS = 6400


def _toy_batch(rows):
    g = torch.Generator().manual_seed(2024)
    p = torch.tensor([float(x) for x in TOY_P])
    q = torch.tensor([float(x) for x in TOY_Q])
    target = p.log().expand(rows, TOY_GAMMA + 1, 2).contiguous()
    draft = q.log().expand(rows, TOY_GAMMA, 2).contiguous()
    tokens = torch.multinomial(q, rows * TOY_GAMMA, replacement=True, generator=g)
    seed = torch.randint(-(2**62), 2**62, (rows,), generator=g)
    offset = torch.randint(0, 2**40, (rows,), generator=g)
    return target, tokens.view(rows, TOY_GAMMA), draft, torch.ones(rows), seed, offset


@pytest.mark.slow
@pytest.mark.parametrize("method,other", [("token", "block"), ("block", "token")])
def test_toy_law_monte_carlo(method, other):
    """The reference's mean accepted count is the exact one within 5 standard errors, and
    (negative control) is rejected against the other method's exact mean."""
    target, tokens, draft, temps, seed, offset = _toy_batch(TOY_ROWS)
    res = R.rejection_sample(target, tokens, draft, temps, seed, offset, method=method)
    mean = float(res.accepted.double().mean())
    exact_mean, exact_var = _mean_var(exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, method))
    se = math.sqrt(float(exact_var) / TOY_ROWS)
    assert abs(mean - float(exact_mean)) < 5 * se
    wrong_mean, _ = _mean_var(exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, other))
    assert abs(mean - float(wrong_mean)) > 5 * se
    # The whole law of the count, not just its mean: every frequency within 5 sigma.
    law = exact_accepted_law(TOY_P, TOY_Q, TOY_GAMMA, method)
    counts = torch.bincount(res.accepted, minlength=TOY_GAMMA + 1).tolist()
    for n, pr in law.items():
        sigma = math.sqrt(float(pr * (1 - pr)) * TOY_ROWS)
        assert abs(counts[n] - float(pr) * TOY_ROWS) < 5 * sigma + 1e-9


def test_reference_module_names_every_op():
    """dspark_ext.reference is the one place to find the ground truth of each op."""
    from dspark_ext import reference, reference_markov, reference_schedule

    assert reference.markov_sample is reference_markov.markov_sample
    assert reference.schedule_causal is reference_schedule.schedule_causal
    for name in ("verify_greedy", "verify_greedy_ragged", "rejection_sample",
                 "rejection_sample_ragged", "schedule_global", "schedule_capacity"):
        assert callable(getattr(reference, name))
