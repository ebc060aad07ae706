"""The decoding loop and the emitter on a tiny plain-torch target (issue 21, mutation
testing): what each round hands the drafter, the skip path, outputs and padding, argument
errors, observers and profiling, and the emitter's cut of a round (count, -1, EOS, room)."""
import time

import pytest
import torch

from dspark_ext import NgramDrafter, SpeculativeDecoder, TorchTarget
from dspark_ext.decoding.emit import Emitter
from dspark_ext.drafters.base import DraftBlock
from dspark_ext.targets.kv_cache import KVCache
from test_drafter_proposals import greedy_continuation, small_torch_lm

V = 16
PROMPTS = [[3, 4, 5, 6], [9, 10], [1, 2, 1]]


# ------------------------------------------------------------------ emitter

def test_emitter_cuts_a_round():
    calls = []
    e = Emitter(4, 5, torch.tensor([7, 9], dtype=torch.int32), calls.append)
    assert e.eos.dtype == torch.int64
    assert e.room(torch.tensor([0, 3])).tolist() == [5, 5]
    rows = torch.tensor([0, 1, 2, 3])
    toks = torch.tensor([[1, 2, 3], [4, 7, 5], [6, -1, 8], [9, 9, 9]])
    done = e.emit(rows, toks, torch.tensor([2, 3, 3, 1]))
    assert e.new_tokens == [[1, 2], [4, 7], [6], [9]]  # count, EOS kept, -1 dropped, EOS
    assert done.tolist() == [False, True, True, True]
    assert calls == [{0: [1, 2], 1: [4, 7], 2: [6], 3: [9]}]
    assert e.room(torch.tensor([0, 1, 2, 3])).tolist() == [3, 3, 4, 4]
    # a later round for row 0 only: max_new_tokens cuts it
    done = e.emit(torch.tensor([0]), torch.tensor([[10, 11, 12, 13]]), torch.tensor([4]))
    assert e.new_tokens[0] == [1, 2, 10, 11, 12] and done.tolist() == [True]
    assert calls[-1] == {0: [10, 11, 12]}
    assert e.room(torch.tensor([0])).tolist() == [0]


def test_emitter_edges():
    e = Emitter(2, 3, None, None)
    done = e.emit(torch.tensor([1, 0]), torch.tensor([[7, -1], [5, 6]]), torch.tensor([1, 2]))
    assert e.new_tokens == [[5, 6], [7]] and done.tolist() == [False, False]
    # token id 0 is a token like any other
    z = Emitter(1, 5, None, None)
    assert z.emit(torch.tensor([0]), torch.tensor([[0, 0]]), torch.tensor([2])).tolist() \
        == [False]
    assert z.new_tokens == [[0, 0]]
    # a -1 past the count is padding, not a masked row
    done = e.emit(torch.tensor([1]), torch.tensor([[8, -1]]), torch.tensor([1]))
    assert e.new_tokens[1] == [7, 8] and done.tolist() == [False]
    # EOS past the count is not seen; EOS at the count's last token is
    f = Emitter(1, 9, torch.tensor([3]), None)
    assert f.emit(torch.tensor([0]), torch.tensor([[1, 3]]), torch.tensor([1])).tolist() \
        == [False]
    assert f.emit(torch.tensor([0]), torch.tensor([[1, 3]]), torch.tensor([2])).tolist() \
        == [True]
    assert f.new_tokens == [[1, 1, 3]]
    # a -1 before an EOS ends the row at the -1
    g = Emitter(1, 9, torch.tensor([3]), None)
    assert g.emit(torch.tensor([0]), torch.tensor([[2, -1, 3]]), torch.tensor([3])).tolist() \
        == [True]
    assert g.new_tokens == [[2]]
    # width 0 (nothing verified, nothing emitted)
    h = Emitter(1, 2, torch.tensor([3]), None)
    assert h.emit(torch.tensor([0]), torch.zeros(1, 0, dtype=torch.int64),
                  torch.tensor([0])).tolist() == [False]
    assert h.new_tokens == [[]]
    # max_new_tokens reached exactly
    k = Emitter(1, 2, None, None)
    assert k.emit(torch.tensor([0]), torch.tensor([[4, 5]]), torch.tensor([2])).tolist() == [True]


# ------------------------------------------------------------------ the loop

class Scripted:
    """Proposes ``anchor + 1, anchor + 2, ...`` (mod V) and records what the decoder hands
    over; ``skip`` turns the policy's skip rule on for the rounds it lists."""

    vocab_size = V
    target_layer_ids = None
    target_hidden_size = None

    def __init__(self, max_draft=None):
        self.max_draft = max_draft
        self.updates, self.drafts, self.selected = [], [], []

    def reset(self, b, device):
        self.b = b

    def update(self, ctx):
        self.updates.append(ctx)

    def draft(self, anchor, pos, gamma, temperature, seed, offset):
        self.drafts.append((anchor.clone(), pos.clone(), gamma, temperature.clone(),
                            seed.clone(), offset.clone()))
        k = torch.arange(1, gamma + 1)[None, :]
        return DraftBlock((anchor[:, None] + k) % V)

    def select_rows(self, rows):
        self.selected.append(rows.tolist())


def _target(layers=2, **kw):
    lm = small_torch_lm(seed=1, layers=layers)
    return lm, TorchTarget(lm, vocab_size=V, hidden_size=16, num_layers=layers, **kw)


def test_greedy_rounds_hand_the_drafter_what_was_committed():
    lm, target = _target()
    d = Scripted()
    out = SpeculativeDecoder(target, d, gamma=3).generate(PROMPTS, max_new_tokens=7)
    for r, p in enumerate(PROMPTS):
        assert out.new_tokens[r] == greedy_continuation(lm, p, 7)
    assert out.num_new_tokens.tolist() == [7, 7, 7]
    assert out.num_new_tokens.dtype == torch.int64
    first = d.updates[0]  # the prompts, at positions 0.., no draft before them
    assert first.lengths.tolist() == [4, 2, 3] and first.accepted is None
    assert first.positions[0].tolist() == [0, 1, 2, 3]
    assert first.tokens[1, :2].tolist() == [9, 10]
    st = out.stats
    assert st.gamma == 3 and st.num_rounds == len(d.drafts) == len(d.updates) - 1
    for i, (anchor, pos, gamma, temp, seed, offset) in enumerate(d.drafts):
        assert gamma == 3 and offset.tolist() == [i + 1] * len(anchor)  # round number
        assert temp.tolist() == [0.0] * len(anchor) and seed.dtype == torch.int64
        upd = d.updates[i + 1]
        acc = st.rounds[i].accepted
        assert upd.accepted.tolist() == acc.tolist()
        assert upd.lengths.tolist() == (acc + 1).tolist()
        assert upd.tokens[:, 0].tolist() == anchor.tolist()  # the anchor first
        assert upd.positions[:, 0].tolist() == pos.tolist()
        assert (upd.positions[:, 1:] - upd.positions[:, :-1] == 1).all()
    assert d.drafts[0][1].tolist() == [4, 2, 3]  # the anchor sits right after the prompt
    assert d.drafts[0][4].tolist() == [0, 1, 2]  # seed 0: rows 0, 1, 2
    # every round verifies min(gamma, room - 1) drafts
    n = 1
    for rnd in st.rounds:
        assert rnd.verified.tolist() == [min(3, 7 - n - 1)] * len(rnd.rows)
        n += int(rnd.accepted[0]) + 1


def test_sequences_and_padding():
    _, target = _target()
    dec = SpeculativeDecoder(target, Scripted(), gamma=2)
    left = torch.tensor([[0, 3, 4], [5, 6, 7]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    out = dec.generate(left, mask, max_new_tokens=3)
    assert out.sequences[:, :3].tolist() == left.tolist()  # as given, padding included
    assert out.sequences[:, 3:].tolist() == out.new_tokens
    out = dec.generate(torch.tensor([3, 4]), max_new_tokens=2)  # 1-D prompt
    assert out.sequences.shape == (1, 4) and out.sequences[0, :2].tolist() == [3, 4]
    out = dec.generate([[3, 4], [5]], max_new_tokens=2)  # lists: right-padded with 0
    assert out.sequences[1, :2].tolist() == [5, 0] and out.sequences.dtype == torch.int64
    out = dec.generate(torch.tensor([[3, 4]], dtype=torch.int32), max_new_tokens=2)
    assert out.sequences.dtype == torch.int64
    zero = dec.generate(left, mask, max_new_tokens=0)
    assert zero.sequences.tolist() == left.tolist() and zero.new_tokens == [[], []]
    assert zero.stats.num_rounds == 0
    # an EOS ends row 0 early: the others' tails are padded with the first EOS id
    lm = target._forward
    cont = [greedy_continuation(lm, p, 4) for p in ([9, 10], [5, 6])]
    eos = next(t for t in cont[0] if t not in cont[1])
    other = next(t for t in range(V) if t not in cont[0] + cont[1])
    out = dec.generate([[9, 10], [5, 6]], max_new_tokens=4, eos_token_id=[eos, other])
    n0 = cont[0].index(eos) + 1
    assert n0 < 4 and out.new_tokens == [cont[0][:n0], cont[1]]
    assert out.sequences[0].tolist() == [9, 10] + cont[0][:n0] + [eos] * (4 - n0)
    out = dec.generate([[9, 10], [5, 6]], max_new_tokens=4, eos_token_id=[eos],
                       pad_token_id=1)
    assert out.sequences[0].tolist() == [9, 10] + cont[0][:n0] + [1] * (4 - n0)


def test_sequences_padding_rules():
    seq = SpeculativeDecoder._sequences
    toks = torch.tensor([[3, 4], [5, 0]])
    new = [[7], [8, 9, 10]]
    eos = torch.tensor([12, 13])
    assert seq(None, toks, None, new, 3, None, None).tolist() == [[3, 4, 7, 0, 0],
                                                                  [5, 0, 8, 9, 10]]
    assert seq(None, toks, None, new, 3, None, eos).tolist()[0] == [3, 4, 7, 12, 12]
    assert seq(None, toks, None, new, 3, 11, eos).tolist()[0] == [3, 4, 7, 11, 11]
    raw = torch.tensor([[1, 3, 4], [5, 6, 0]], dtype=torch.int32)
    out = seq(raw, toks, None, new, 3, 0, None)
    assert out.dtype == torch.int64 and out[:, :3].tolist() == raw.tolist()
    assert seq(torch.tensor([3, 4]), toks[:1], None, [[1]], 1, None, None).tolist() == [
        [3, 4, 1]]
    assert seq(None, toks, None, [[], []], 0, None, None).tolist() == toks.tolist()


def test_skipped_rounds_are_plain_target_steps():
    lm, target = _target()

    class Skip:
        def __init__(self):
            self.asked, self.resets = [], 0

        def reset(self):
            self.resets += 1

        def draft_this_round(self, rows):
            self.asked.append(rows)
            return len(self.asked) % 2 == 0  # skip every other round

        def __call__(self, block, max_len):
            return max_len

    pol, d = Skip(), Scripted()
    out = SpeculativeDecoder(target, d, gamma=2, length_policy=pol).generate(
        PROMPTS, max_new_tokens=6)
    for r, p in enumerate(PROMPTS):
        assert out.new_tokens[r] == greedy_continuation(lm, p, 6)
    assert pol.resets == 1 and pol.asked[0] == 3
    st = out.stats
    skipped = [r for r in st.rounds if not r.drafted]
    assert skipped and all(r.verified.tolist() == [0] * len(r.rows) for r in skipped)
    assert len(d.drafts) == len(st.rounds) - len(skipped)
    for rnd, upd in zip(st.rounds, d.updates[1:]):
        if rnd.drafted:
            assert upd.accepted is not None
        else:
            assert upd.accepted is None and upd.lengths.tolist() == [1] * len(rnd.rows)


def test_policy_is_told_every_round():
    lm, target = _target()

    class Told:
        def __init__(self):
            self.rounds = []

        def reset(self):
            pass

        def observe_round(self, drafted, tokens, seconds):
            self.rounds.append((drafted, tokens, seconds))

        def draft_this_round(self, rows):
            return len(self.rounds) % 2 == 1  # round 1 skips, round 2 drafts, ...

        def __call__(self, block, max_len):
            return max_len

    pol = Told()
    t0 = time.perf_counter()
    out = SpeculativeDecoder(target, Scripted(), gamma=2, length_policy=pol).generate(
        PROMPTS, max_new_tokens=6)
    elapsed = time.perf_counter() - t0
    st = out.stats
    assert sum(s for _, _, s in pol.rounds) <= elapsed  # each round's own wall time
    assert len(pol.rounds) == st.num_rounds
    for (drafted, tokens, seconds), rnd in zip(pol.rounds, st.rounds):
        assert drafted == rnd.drafted and seconds >= 0
        assert tokens == int(rnd.accepted.sum()) + len(rnd.rows)  # accepted + 1 per row
    assert [d for d, _, _ in pol.rounds][:2] == [False, True]


def test_policy_precedence_and_reset():
    _, target = _target()

    class Count:
        def __init__(self, n):
            self.n, self.resets = n, 0

        def reset(self):
            self.resets += 1

        def __call__(self, block, max_len):
            return torch.minimum(max_len, torch.full_like(max_len, self.n))

    ctor, call = Count(1), Count(2)
    dec = SpeculativeDecoder(target, Scripted(), gamma=3, length_policy=ctor)
    assert dec.length_policy is ctor
    out = dec.generate(PROMPTS, max_new_tokens=8)
    assert ctor.resets == 1 and int(out.stats.verified().max()) == 1
    out = dec.generate(PROMPTS, max_new_tokens=8, length_policy=call)
    assert call.resets == 1 and int(out.stats.verified().max()) == 2 and ctor.resets == 1


def test_rows_leave_the_batch_together():
    lm, target = _target()
    d = Scripted()
    eos = greedy_continuation(lm, PROMPTS[1], 2)[1]  # row 1 ends after two tokens
    out = SpeculativeDecoder(target, d, gamma=2).generate(PROMPTS, max_new_tokens=8,
                                                          eos_token_id=eos)
    assert out.new_tokens[1][-1] == eos
    assert d.selected and all(len(s) < 3 for s in d.selected)
    for rnd in out.stats.rounds:
        if len(rnd.rows) < 3:
            assert 1 not in rnd.rows.tolist()


def test_observers_record_stats_and_profile():
    _, target = _target()

    class Obs:
        def __init__(self):
            self.calls = []

        def on_round(self, rows, num_draft, accepted, res, block):
            self.calls.append((rows.tolist(), num_draft.tolist(), accepted.tolist()))

    obs = Obs()
    dec = SpeculativeDecoder(target, Scripted(), gamma=2)
    out = dec.generate(PROMPTS, max_new_tokens=5, observers=[obs], record_stats=False)
    assert out.stats.num_rounds == 0 and out.stats.gamma == 2 and obs.calls
    ref = dec.generate(PROMPTS, max_new_tokens=5)
    assert len(obs.calls) == ref.stats.num_rounds and out.new_tokens == ref.new_tokens
    assert [c[2] for c in obs.calls] == [r.accepted.tolist() for r in ref.stats.rounds]
    prof = dec.generate(PROMPTS, max_new_tokens=5, profile=True)
    assert set(prof.stats.timings) == {"prefill", "draft", "target_forward", "verify_op",
                                       "bookkeeping"}
    assert all(v >= 0 for v in prof.stats.timings.values())
    assert ref.stats.timings == {}


def test_sampled_rows_get_their_seed_and_temperature():
    _, target = _target()
    d = Scripted()
    SpeculativeDecoder(target, d, gamma=2).generate(
        PROMPTS, max_new_tokens=4, temperature=torch.tensor([0.0, 1.0, 0.5]), seed=40)
    _, _, _, temp, seed, _ = d.drafts[0]
    assert temp.tolist() == [0.0, 1.0, 0.5] and seed.tolist() == [40, 41, 42]
    a = SpeculativeDecoder(target, NgramDrafter(), gamma=2).generate(
        PROMPTS, max_new_tokens=6, temperature=1.0, seed=5)
    b = SpeculativeDecoder(target, NgramDrafter(), gamma=2).generate(
        PROMPTS, max_new_tokens=6, temperature=1.0, seed=5)
    assert a.new_tokens == b.new_tokens


# ------------------------------------------------------------------ arguments

def _raises(exc, text, fn, *a, **kw):
    with pytest.raises(exc) as e:
        fn(*a, **kw)
    assert str(e.value) == text


def test_pair_checks():
    _, target = _target(layers=3)
    d = Scripted()
    d.vocab_size = 17
    _raises(ValueError, "drafter vocab_size 17 != target vocab_size 16",
            SpeculativeDecoder, target, d)
    d = Scripted()
    d.vocab_size = None  # token ids only: nothing to compare
    SpeculativeDecoder(target, d)
    d = Scripted()
    d.target_layer_ids = [0, 2]
    with pytest.raises(ValueError, match="final layer 2"):
        SpeculativeDecoder(target, d)
    d.target_layer_ids, d.target_hidden_size = [0, 1], 8
    _raises(ValueError, "drafter expects target features of hidden size 8, the target has "
            "hidden_size 16", SpeculativeDecoder, target, d)
    d.target_hidden_size = 16.0
    SpeculativeDecoder(target, d)
    d.target_layer_ids, d.target_hidden_size = None, 8  # no features asked: not checked
    SpeculativeDecoder(target, d)


def test_gamma_and_argument_errors():
    _, target = _target()
    dec = SpeculativeDecoder(target, Scripted())
    assert dec._gamma(None) == 4 and dec.verify == "token" and dec.method == "token"
    assert dec._gamma(1) == 1
    assert SpeculativeDecoder(target, Scripted(max_draft=3))._gamma(None) == 3
    assert SpeculativeDecoder(target, Scripted(max_draft=3), gamma=2)._gamma(None) == 2
    assert SpeculativeDecoder(target, Scripted(), gamma=2)._gamma(5) == 5
    assert SpeculativeDecoder(target, Scripted(max_draft=3))._gamma(3) == 3
    for bad in (0, True, 2.0, -1):
        _raises(ValueError, f"gamma must be an int >= 1, got {bad!r}", dec._gamma, bad)
    _raises(ValueError, "gamma 4 exceeds the drafter's max_draft 3",
            SpeculativeDecoder(target, Scripted(max_draft=3))._gamma, 4)
    for bad in (-1, 2.0):
        _raises(ValueError, f"max_new_tokens must be an int >= 0, got {bad!r}", dec.generate,
                PROMPTS, max_new_tokens=bad)
    _raises(ValueError, "method 'greedy' (verify='greedy') needs temperature 0 on every row; "
            "use 'token' or 'block' for sampling", dec.generate, PROMPTS, method="greedy",
            temperature=torch.tensor([0.0, 0.0, 0.1]))
    assert SpeculativeDecoder(target, Scripted(), verify="block").method == "block"
    assert SpeculativeDecoder(target, Scripted(), method="greedy").verify == "greedy"
    with pytest.raises(ValueError, match="top_k"):
        dec.generate(PROMPTS, top_k=0)
    with pytest.raises(ValueError, match="token id 16"):
        dec.generate([[16]])
    _, short = _target(max_positions=10)
    sd = SpeculativeDecoder(short, Scripted())
    assert len(sd.generate(PROMPTS, max_new_tokens=6).new_tokens[0]) == 6  # 4 + 6 = 10
    _raises(ValueError, "prompt length 4 + max_new_tokens 7 exceeds the target's position "
            "limit 10", sd.generate, PROMPTS, max_new_tokens=7)


def test_accepts_a_torch_model_through_as_target():
    _, target = _target()
    dec = SpeculativeDecoder(target, Scripted())
    assert dec.target is target


# ------------------------------------------------------------------ what the target and the
# drafter see

class Recording:
    """A Target adapter around ``inner`` that records every forward's width and lengths."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prefill(self, tokens, lengths):
        return self.inner.prefill(tokens, lengths)

    def forward(self, tokens, lengths):
        self.calls.append((tokens.shape[1], lengths.tolist()))
        return self.inner.forward(tokens, lengths)

    def truncate(self, lengths):
        self.inner.truncate(lengths)


class Oracle(Scripted):
    """Proposes the target's own greedy continuation of each row's committed context."""

    def __init__(self, lm, **kw):
        super().__init__(**kw)
        self.lm = lm

    def reset(self, b, device):
        self.ctx = [[] for _ in range(b)]

    def update(self, ctx):
        super().update(ctx)
        for r in range(len(self.ctx)):
            self.ctx[r] += ctx.tokens[r, : int(ctx.lengths[r])].tolist()

    def draft(self, anchor, pos, gamma, temperature, seed, offset):
        super().draft(anchor, pos, gamma, temperature, seed, offset)
        return DraftBlock(torch.tensor([greedy_continuation(self.lm, c + [int(a)], gamma)
                                        for c, a in zip(self.ctx, anchor)]))

    def select_rows(self, rows):
        super().select_rows(rows)
        self.ctx = [self.ctx[r] for r in rows.tolist()]


def test_target_forwards_the_verified_width_and_lengths():
    lm, inner = _target()
    target = Recording(inner)

    class PerRow:
        """Row r verifies (r + round) % 3 drafts, as int32; records the blocks it sees."""

        def __init__(self):
            self.shapes, self.n = [], 0

        def reset(self):
            pass

        def __call__(self, block, max_len):
            self.shapes.append(tuple(block.draft_tokens.shape))
            self.n += 1
            want = (torch.arange(max_len.shape[0]) + self.n) % 3
            return torch.minimum(want, max_len).to(torch.int32)

    pol = PerRow()
    out = SpeculativeDecoder(target, Oracle(lm), gamma=3, length_policy=pol).generate(
        PROMPTS, max_new_tokens=9)
    for r, p in enumerate(PROMPTS):
        assert out.new_tokens[r] == greedy_continuation(lm, p, 9)
    st = out.stats
    assert len(target.calls) == st.num_rounds and pol.shapes[0] == (3, 3)
    for (width, lengths), rnd in zip(target.calls, st.rounds):
        assert width == int(rnd.verified.max()) + 1  # the anchor and the verified drafts
        assert lengths == (rnd.verified + 1).tolist()
        assert (rnd.accepted == rnd.verified).all()  # the oracle: every verified one
    assert len({tuple(r.verified.tolist()) for r in st.rounds}) > 1


def test_skipped_round_updates_are_one_token_wide():
    lm, target = _target()

    class Never:
        def reset(self):
            pass

        def draft_this_round(self, rows):
            return False

        def __call__(self, block, max_len):
            return max_len

    d = Scripted()
    out = SpeculativeDecoder(target, d, gamma=2, length_policy=Never()).generate(
        PROMPTS, max_new_tokens=3)
    assert d.drafts == [] and out.new_tokens[0] == greedy_continuation(lm, PROMPTS[0], 3)
    for upd in d.updates[1:]:
        assert upd.tokens.shape == upd.positions.shape == (3, 1)
    prof = SpeculativeDecoder(target, d, gamma=2, length_policy=Never()).generate(
        PROMPTS, max_new_tokens=3, profile=True)
    assert set(prof.stats.timings) == {"prefill", "draft", "target_forward", "verify_op",
                                       "bookkeeping"}


def test_drafter_features_reach_every_update():
    lm, target = _target(layers=3)
    d = Oracle(lm)
    d.target_layer_ids, d.target_hidden_size = [0, 1], 16
    SpeculativeDecoder(target, d, gamma=2).generate(PROMPTS[:1], max_new_tokens=4)
    ctx = []
    for upd in d.updates:
        n = int(upd.lengths[0])
        ctx += upd.tokens[0, :n].tolist()
        cache = KVCache(1, torch.device("cpu"))
        with torch.no_grad():
            _, hidden = lm(torch.tensor([ctx]), cache.begin(len(ctx)), cache)
        want = torch.cat([hidden[1], hidden[2]], -1)[0, len(ctx) - n:]
        assert upd.features.shape[-1] == 32
        torch.testing.assert_close(upd.features[0, :n], want, atol=1e-5, rtol=1e-5)


def test_a_drafter_with_only_the_methods():
    lm, target = _target()

    class Bare:
        def reset(self, b, device):
            pass

        def update(self, ctx):
            pass

        def draft(self, anchor, pos, gamma, temperature, seed, offset):
            return DraftBlock((anchor[:, None] + torch.arange(1, gamma + 1)) % V)

        def select_rows(self, rows):
            pass

    dec = SpeculativeDecoder(target, Bare())
    assert dec._gamma(None) == 4
    out = dec.generate(PROMPTS, max_new_tokens=5)
    assert out.new_tokens[0] == greedy_continuation(lm, PROMPTS[0], 5)
    half = Bare()
    half.target_layer_ids = [0]  # features, no declared size: not checked
    SpeculativeDecoder(target, half)


@pytest.mark.parametrize("trunc", [{"top_k": 1}, {"top_p": 1e-6}])
def test_truncation_reaches_the_first_token_and_every_round(trunc):
    """top_k = 1 (or a tiny top_p) at T = 1 leaves the argmax alone: greedy output."""
    lm, target = _target()
    prompts = PROMPTS + [[7], [8, 9, 10], [11, 12]]
    out = SpeculativeDecoder(target, NgramDrafter(), gamma=2).generate(
        prompts, max_new_tokens=6, temperature=1.0, seed=3, **trunc)
    for r, p in enumerate(prompts):
        assert out.new_tokens[r] == greedy_continuation(lm, p, 6)
    free = SpeculativeDecoder(target, NgramDrafter(), gamma=2).generate(
        prompts, max_new_tokens=6, temperature=1.0, seed=3)
    assert [t[0] for t in free.new_tokens] != [t[0] for t in out.new_tokens]  # T = 1 differs
