"""Rounds that skip drafting (design §6, the skip rule): the decoder runs a plain target step
when the length policy says no draft would pay. Greedy output still equals autoregressive
output with every drafter; the sampled law is still exact (chi-square, with a negative
control: a plain step that reuses the previous round's random stream); drafters receive two
updates in a row correctly; :class:`DraftGate` decides from the SPS curve and the drafter's
time as documented."""
import numpy as np
import pytest
import torch

from dspark_ext import FixedLength, Scheduled, SpeculativeDecoder, SPSProfile
from dspark_ext.drafters.base import append_ragged, concat_ragged
from dspark_ext.scheduler import DraftGate, MeasuredGate

import test_decoder_lossless as lossless
from test_decoder_greedy import DRAFTERS, NEW, hf_target, make_drafter, prompts  # noqa: F401


class SkipPattern(FixedLength):
    """Fixed length, but rounds whose number is in ``skip`` (1-based) draft nothing."""

    def __init__(self, skip, gamma=None):
        super().__init__(gamma)
        self.skip = set(skip)
        self.round = 0
        self.asked = []

    def reset(self):
        self.round = 0

    def draft_this_round(self, rows):
        self.round += 1
        self.asked.append(rows)
        return self.round not in self.skip


@pytest.mark.parametrize("drafter_kind", DRAFTERS)
def test_greedy_with_skipped_rounds_equals_generate(hf_target, drafter_kind):  # noqa: F811
    ids, mask = prompts(3, seed=4)
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0)
    policy = SkipPattern({1, 2, 4, 7, 8, 9})
    dec = SpeculativeDecoder(hf_target, make_drafter(drafter_kind, hf_target), gamma=4,
                             length_policy=policy)
    out = dec.generate(ids, mask, max_new_tokens=NEW)
    assert torch.equal(out.sequences, ref)
    st = out.stats
    drafted = [r.drafted for r in st.rounds]
    assert drafted[:4] == [False, False, True, False]
    skipped = [r for r in st.rounds if not r.drafted]
    assert all(int(r.verified.sum()) == 0 and r.confidence_logits is None for r in skipped)
    assert any(int(r.verified.sum()) > 0 for r in st.rounds if r.drafted)
    if drafter_kind == "dspark":  # skipped rounds are left out of the calibration rounds
        z, _, valid = st.calibration_inputs()
        assert z.shape[0] == sum(len(r.rows) for r in st.rounds if r.drafted)


def test_dspark_two_updates_equal_one(hf_target):  # noqa: F811
    """The context of two updates with no draft between them is what one update of both
    gives: the same block logits."""
    from dspark_ext.drafters.base import ContextUpdate
    from dspark_cases_decoder import make_dspark_for
    g = torch.Generator().manual_seed(0)
    d = make_dspark_for(hf_target, block_size=4, seed=2)
    f = d.config.feature_size
    feats = torch.randn(2, 7, f, generator=g)
    toks = torch.randint(0, 60, (2, 7), generator=g)
    pos = torch.arange(7)[None].expand(2, 7)
    args = (torch.tensor([3, 5]), torch.tensor([7, 7]), 4, torch.zeros(2),
            torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    d.reset(2, "cpu")
    d.update(ContextUpdate(toks, torch.tensor([7, 7]), pos, feats))
    one = d.draft(*args)
    d.reset(2, "cpu")
    d.update(ContextUpdate(toks[:, :3], torch.tensor([3, 2]), pos[:, :3], feats[:, :3]))
    # Row 1 committed only 2 of the first 3; the second update carries the rest.
    rest = torch.stack([torch.cat([toks[0, 3:], toks[0, :1]]), toks[1, 2:]])
    rest_f = torch.stack([torch.cat([feats[0, 3:], feats[0, :1]]), feats[1, 2:]])
    rest_p = torch.stack([torch.cat([pos[0, 3:], pos[0, :1]]), pos[1, 2:]])
    d.update(ContextUpdate(rest, torch.tensor([4, 5]), rest_p, rest_f))
    two = d.draft(*args)
    torch.testing.assert_close(two.base_logits, one.base_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(two.draft_tokens, one.draft_tokens)
    # Seven updates of one token each (ragged: row 1 commits nothing in some of them).
    d.reset(2, "cpu")
    taken = [0, 0]
    for step in range(9):
        cnt = [1 if taken[0] < 7 else 0, 1 if taken[1] < 7 and step % 4 != 1 else 0]
        idx = torch.tensor([[min(taken[0], 6)], [min(taken[1], 6)]])
        d.update(ContextUpdate(toks.gather(1, idx), torch.tensor(cnt), pos.gather(1, idx),
                               feats.gather(1, idx[:, :, None].expand(-1, -1, f))))
        taken = [t + c for t, c in zip(taken, cnt)]
    assert taken == [7, 7]
    many = d.draft(*args)
    torch.testing.assert_close(many.base_logits, one.base_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(many.draft_tokens, one.draft_tokens)


def test_fused_round_equals_separate_context_pass(hf_target):  # noqa: F811
    """The fused draft (context K/V computed in the block's pass) gives the logits and tokens
    of the unfused computation (context K/V appended first by flush_context)."""
    from dspark_ext.drafters.base import ContextUpdate
    from dspark_cases_decoder import make_dspark_for
    g = torch.Generator().manual_seed(1)
    for head in ("vanilla", "rnn"):
        d = make_dspark_for(hf_target, block_size=5, seed=3, head=head)
        f = d.config.feature_size
        outs = []
        for flush in (False, True):
            d.reset(3, "cpu")
            g.manual_seed(1)
            for rnd, counts in enumerate(([6, 2, 4], [3, 1, 2], [1, 3, 0])):
                n = max(counts)
                feats = torch.randn(3, n, f, generator=g)
                lens = torch.tensor(counts)
                base = d.cache.lengths + sum(c for _, c, _ in d._pending)
                pos = base[:, None] + torch.arange(n)[None]
                d.update(ContextUpdate(torch.zeros(3, n, dtype=torch.int64), lens, pos, feats))
                if flush:
                    d.flush_context()
                anchor = torch.randint(0, 60, (3,), generator=g)
                t = torch.tensor([0.0, 0.8, 1.3])
                outs.append(d.draft(anchor, base + lens, 5, t, torch.arange(3) + 7,
                                    torch.full((3,), rnd)))
        fused, separate = outs[:3], outs[3:]
        for a, b in zip(fused, separate):
            torch.testing.assert_close(a.draft_logits, b.draft_logits, atol=1e-5, rtol=1e-5)
            assert torch.equal(a.draft_tokens, b.draft_tokens)


def test_append_ragged_matches_lists():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        b, na, nb = 4, int(torch.randint(0, 4, (1,), generator=g)), \
            int(torch.randint(0, 4, (1,), generator=g))
        a = torch.randint(0, 99, (b, na, 2), generator=g)
        c = torch.randint(0, 99, (b, nb, 2), generator=g)
        la = torch.randint(0, na + 1, (b,), generator=g)
        lc = torch.randint(0, nb + 1, (b,), generator=g)
        out, lens = append_ragged(a, la, c, lc)
        assert out.shape == (b, na + nb, 2)
        for r in range(b):
            want = a[r, :la[r]].tolist() + c[r, :lc[r]].tolist()
            assert int(lens[r]) == len(want)
            assert out[r, :len(want)].tolist() == want


def test_concat_ragged_many_parts_matches_lists():
    """Skipped rounds queue several updates; one merge gives every group the per-row
    concatenation (tensors of different trailing shapes share the index)."""
    g = torch.Generator().manual_seed(1)
    ri = lambda lo, hi, shape=(1,): torch.randint(lo, hi, shape, generator=g)  # noqa: E731
    for _ in range(30):
        b, parts = 3, int(ri(1, 6))
        widths = [int(ri(0, 4)) for _ in range(parts)]
        lens = [ri(0, w + 1, (b,)) for w in widths]
        xs = [ri(0, 99, (b, w, 2)) for w in widths]
        ys = [ri(0, 99, (b, w)) for w in widths]
        x, y, total = concat_ragged(lens, xs, ys)
        assert x.shape == (b, sum(widths), 2) and y.shape == (b, sum(widths))
        for r in range(b):
            want_x = sum((t[r, :int(n[r])].tolist() for t, n in zip(xs, lens)), [])
            want_y = sum((t[r, :int(n[r])].tolist() for t, n in zip(ys, lens)), [])
            assert int(total[r]) == len(want_x)
            assert x[r, :len(want_x)].tolist() == want_x
            assert y[r, :len(want_y)].tolist() == want_y


# -------------------------------------------------------------------- losslessness


class StaleOffsetDecoder(SpeculativeDecoder):
    """Negative control: a skipped round's plain step reuses the previous round's offset, so
    its randomness repeats the last round's."""

    def _round(self, s, call, offset):
        if 1 < int(offset[0]) and not getattr(call.policy, "peek", lambda: True)():
            offset = offset - 1
        return super()._round(s, call, offset)


class PeekableSkip(SkipPattern):
    def peek(self):
        return (self.round + 1) not in self.skip


def _skip_run(decoder_cls, verify):
    target = lossless.torch_target(lossless.TinyTorchLM(vocab=lossless.V, hidden=16, heads=2,
                                                        seed=4))
    policy = PeekableSkip({2})  # round 1 drafts, round 2 is a plain step
    dec = decoder_cls(target, lossless.small_lm(), gamma=1, verify=verify,
                      length_policy=policy)
    out = dec.generate([lossless.PROMPT] * lossless.ROWS, max_new_tokens=lossless.NEW,
                       temperature=lossless.TEMP, seed=1000)
    toks = np.array(out.new_tokens)
    assert [r.drafted for r in out.stats.rounds][:2] == [True, False]
    return toks


@pytest.mark.slow
@pytest.mark.parametrize("verify", ["token", "block"])
def test_skipped_rounds_lossless(torch_lm, torch_law, verify):
    assert lossless.pvalue(_skip_run(SpeculativeDecoder, verify), torch_law) > lossless.ALPHA


@pytest.mark.slow
def test_negative_control_stale_offset_on_skip(torch_lm, torch_law):
    assert lossless.pvalue(_skip_run(StaleOffsetDecoder, "token"), torch_law) < lossless.ALPHA


@pytest.fixture(scope="module")
def torch_lm():
    return lossless.TinyTorchLM(vocab=lossless.V, hidden=16, heads=2, seed=4)


@pytest.fixture(scope="module")
def torch_law(torch_lm):
    return lossless.exact_law(torch_lm.full_logits)


# -------------------------------------------------------------------- the gate


def _table(step_time, n):
    return SPSProfile.from_step_time(step_time, n).table(n)


def test_gate_drafts_where_verification_is_free_and_skips_where_it_is_not():
    c = torch.full((4, 3), 0.8, dtype=torch.float64)
    flat = _table(lambda b: 1.0, 64)                 # latency-bound: drafts are free
    linear = _table(lambda b: 0.1 * b, 64)           # compute-bound: every token costs
    gate = DraftGate(draft_time=0.05)
    gate.observe(c, flat, None)
    assert gate.draft_this_round(4)
    gate.observe(c, linear, None)
    assert not gate.draft_this_round(4)
    # The drafter's own time decides between the two.
    slow = DraftGate(draft_time=10.0)
    slow.observe(c, flat, None)
    assert not slow.draft_this_round(4)


def test_gate_probes_with_a_doubling_interval():
    c = torch.full((2, 3), 0.5, dtype=torch.float64)
    linear = _table(lambda b: 0.1 * b, 32)
    gate = DraftGate(draft_time=0.0, probe_every=2, max_interval=4)
    assert gate.draft_this_round(2)                  # nothing observed yet: draft
    gate.observe(c, linear, None)
    pattern = []
    for _ in range(14):
        d = gate.draft_this_round(2)
        pattern.append(d)
        if d:                                        # a probe: still losing
            gate.observe(c, linear, None)
    # skip 2, probe, skip 4, probe, skip 4 (capped), probe, ...
    assert pattern == [False, False, True, False, False, False, False, True,
                       False, False, False, False, True, False]
    assert gate.skipped_rounds == 11
    gate.reset()
    assert gate.draft_this_round(2) and gate.skipped_rounds == 0


def test_gate_bad_arguments():
    with pytest.raises(ValueError, match="draft_time"):
        DraftGate(draft_time=-1.0)
    with pytest.raises(ValueError, match="probe_every"):
        DraftGate(draft_time=0.1, probe_every=0)
    with pytest.raises(ValueError, match="max_interval"):
        DraftGate(draft_time=0.1, probe_every=4, max_interval=2)


def test_scheduled_with_draft_time_skips_on_a_compute_bound_curve(hf_target):  # noqa: F811
    """End to end: a compute-bound SPS curve and a costly drafter make the scheduler run
    plain steps (probing now and then); greedy output is unchanged."""
    from dspark_cases_decoder import make_dspark_for
    ids, mask = prompts(2, seed=9)
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0)
    sps = SPSProfile.from_step_time(lambda b: 0.01 * b, 64)
    policy = Scheduled(sps, draft_time=0.05, probe_every=2)
    dec = SpeculativeDecoder(hf_target, make_dspark_for(hf_target, block_size=4), gamma=4,
                             length_policy=policy)
    out = dec.generate(ids, mask, max_new_tokens=NEW)
    assert torch.equal(out.sequences, ref)
    drafted = [r.drafted for r in out.stats.rounds]
    assert drafted[0] and drafted.count(False) > drafted.count(True)
    assert policy.gate.skipped_rounds == drafted.count(False)


def _play(gate, rate_draft, rate_plain, rounds, tokens=10):
    """Rounds against a gate whose drafted / plain rounds emit ``tokens`` at these rates."""
    seq = []
    for _ in range(rounds):
        d = gate.draft_this_round(4)
        seq.append(d)
        gate.observe_round(d, tokens, tokens / (rate_draft if d else rate_plain))
    return seq


def test_measured_gate_plays_the_faster_side_and_probes_the_other():
    g = MeasuredGate(probe_every=2, max_interval=8)
    seq = _play(g, 2.0, 1.0, 40)
    assert seq[:2] == [True, False]                  # both sides measured first
    plain = [i for i, d in enumerate(seq) if not d]
    gaps = [b - a for a, b in zip(plain, plain[1:])]
    assert gaps == sorted(gaps) and gaps[-1] == 9    # probes at doubling intervals, capped
    assert g.rates == {True: 2.0, False: 1.0} and g.skipped_rounds == len(plain)
    # Plain steps become faster: within a few probes the gate switches and stays there.
    seq = _play(g, 2.0, 6.0, 40)
    switch = seq.index(False)
    assert switch <= 9 and seq[switch + 12:].count(True) <= 4   # only probes left
    assert seq[-16:].count(False) >= 14
    g.reset()
    assert g.rates == {True: None, False: None} and _play(g, 1.0, 5.0, 30).count(False) >= 24


def test_measured_gate_ignores_empty_rounds_and_checks_arguments():
    g = MeasuredGate()
    g.draft_this_round(1)
    g.observe_round(True, 0, 0.1)
    g.observe_round(True, 5, 0.0)
    assert g.rates[True] is None
    with pytest.raises(ValueError, match="probe_every"):
        MeasuredGate(probe_every=0)
    with pytest.raises(ValueError, match="max_interval"):
        MeasuredGate(probe_every=4, max_interval=3)
    with pytest.raises(ValueError, match="smoothing"):
        MeasuredGate(smoothing=0.0)
    with pytest.raises(ValueError, match="'measured'"):
        Scheduled(SPSProfile.from_step_time(lambda b: 0.01, 8), draft_time="timed")


def test_scheduled_with_measured_times_keeps_greedy_output(hf_target):  # noqa: F811
    """The decoder reports every round's time and tokens to the measured gate; whatever it
    decides, greedy output equals the target's own."""
    from dspark_cases_decoder import make_dspark_for
    ids, mask = prompts(3, seed=4)
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0)
    policy = Scheduled(SPSProfile.from_step_time(lambda b: 0.01, 64), draft_time="measured",
                       probe_every=1)
    dec = SpeculativeDecoder(hf_target, make_dspark_for(hf_target, block_size=4), gamma=4,
                             length_policy=policy)
    out = dec.generate(ids, mask, max_new_tokens=NEW)
    assert torch.equal(out.sequences, ref)
    drafted = [r.drafted for r in out.stats.rounds]
    assert drafted[:2] == [True, False]              # it measured both sides
    assert policy.gate.rates[True] > 0 and policy.gate.rates[False] > 0
