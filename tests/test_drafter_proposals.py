"""What the drafters propose, as behaviour (drafts are verified losslessly, so a useless
drafter changes no output: only these tests see it).

NgramDrafter: known histories (latest match, longest match, no match, a match whose
continuation runs to the end of the context, the anchor taking part), ragged batches with
select_rows, and random histories against a direct reimplementation of the documented rule.
Through the decoder, every proposal equals that rule applied to the committed context; on a
text it has seen (a target whose greedy continuation is a function of the last token) it
proposes the target's own greedy continuation, and every draft is accepted.

ModelDrafter: through the decoder (rejections, rows finishing at different rounds), every
block is the draft model's own greedy continuation of the committed context and the anchor
(T = 0), or carries the draft model's logits of that context (T > 0). A copy of the target
proposes the target's greedy continuation.
"""
import random

import pytest
import torch
from torch import nn

from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder, TorchTarget
from dspark_ext.drafters.base import ContextUpdate
from tiny_models import TinyTorchLM


def ref_ngram(seq, k, max_n=3, min_n=1):
    """The documented rule on ``seq`` = context + [anchor]: for n from max_n down to min_n,
    look for earlier occurrences of the last n tokens that have a continuation; propose the
    continuation (up to k tokens) of the occurrence with the longest continuation, the most
    recent among those. [] when no n matches."""
    size = len(seq)
    for n in range(max_n, min_n - 1, -1):
        if size <= n:
            continue
        suffix = seq[size - n:]
        best = None
        for i in range(size - n):                    # i + n < size: a continuation exists
            if seq[i:i + n] == suffix:
                cand = (min(size - (i + n), k), i)
                best = cand if best is None or cand > best else best
        if best is not None:
            avail, i = best
            return seq[i + n:i + n + avail]
    return []


def padded(rows):
    n = max([len(r) for r in rows] + [1])
    toks = torch.tensor([r + [-5] * (n - len(r)) for r in rows], dtype=torch.int64)
    lens = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    return toks, lens


def update(drafter, rows, start):
    """Hand row b the tokens ``rows[b]`` at positions start[b]...; padding is garbage."""
    toks, lens = padded(rows)
    pos = torch.tensor(start)[:, None] + torch.arange(toks.shape[1])[None, :]
    drafter.update(ContextUpdate(toks, lens, pos))


def draft(drafter, anchors, positions, k):
    b = len(anchors)
    blk = drafter.draft(torch.tensor(anchors, dtype=torch.int64),
                        torch.tensor(positions, dtype=torch.int64), k, torch.zeros(b),
                        torch.arange(b), torch.ones(b, dtype=torch.int64))
    assert blk.draft_logits is None and blk.draft_tokens.shape == (b, k)
    assert (blk.draft_tokens >= 0).all()
    assert blk.num_valid.dtype == torch.int64
    assert ((0 <= blk.num_valid) & (blk.num_valid <= k)).all()
    return [blk.draft_tokens[i, : int(blk.num_valid[i])].tolist() for i in range(b)]


def propose(seqs, k, **kw):
    """Proposals for each ``seq`` = context + [anchor], all rows in one batch."""
    d = NgramDrafter(**kw)
    d.reset(len(seqs), torch.device("cpu"))
    update(d, [s[:-1] for s in seqs], [0] * len(seqs))
    return draft(d, [s[-1] for s in seqs], [len(s) - 1 for s in seqs], k)


# ---------------------------------------------------------------------------------------------
# NgramDrafter on known histories
# ---------------------------------------------------------------------------------------------

KNOWN = {
    # "1 2 3" occurs twice with two tokens after each: the latest match wins.
    "latest": ([1, 2, 3, 4, 5, 9, 1, 2, 3, 6, 7, 9, 1, 2, 3], 2, [6, 7]),
    # "7 2 3" matches once (early), "2 3" matches later too: the longest n-gram wins.
    "longest": ([7, 2, 3, 4, 4, 9, 8, 2, 3, 5, 5, 9, 7, 2, 3], 2, [4, 4]),
    # Nothing repeats.
    "no_match": ([1, 2, 3, 4, 5, 6], 3, []),
    # The match's continuation runs into the present: it ends with the anchor itself.
    "at_the_end": ([1, 2, 9, 1, 2], 4, [9, 1, 2]),
    # An early match with a full continuation beats a later one cut by the end of the context.
    "longest_continuation": ([1, 2, 5, 6, 7, 8, 1, 2, 9, 1, 2], 4, [5, 6, 7, 8]),
    # A repeating tail: the latest usable occurrence of "5 4 5" is followed by "4 5" only.
    "periodic": ([4, 5, 4, 5, 4, 5], 3, [4, 5]),
    # Only the anchor (6) makes the 2-gram "3 6" that matches.
    "anchor_counts": ([3, 6, 8, 0, 3, 6], 3, [8, 0, 3]),
    # Only one token: no earlier history at all.
    "single": ([4], 2, []),
    # Shorter than max_ngram: the shorter n-grams are still tried.
    "short": ([5, 5], 2, [5]),
    "short3": ([6, 2, 6], 3, [2, 6]),
}


@pytest.mark.parametrize("case", sorted(KNOWN))
def test_ngram_known_histories(case):
    seq, k, want = KNOWN[case]
    assert ref_ngram(seq, k) == want              # the rule itself, by hand
    assert propose([seq], k) == [want]


def test_ngram_known_histories_in_one_batch():
    cases = [KNOWN[c] for c in sorted(KNOWN)]
    k = 4
    got = propose([s for s, _, _ in cases], k)
    assert got == [ref_ngram(s, k) for s, _, _ in cases]


def test_ngram_min_and_max_ngram():
    # Only a 1-gram repeats: min_ngram=2 finds nothing.
    seq = [1, 5, 2, 3, 5]
    assert propose([seq], 2) == [[2, 3]]
    assert propose([seq], 2, min_ngram=2) == [[]]
    # max_ngram=1: the latest 1-gram match (longest continuation first) instead of the
    # 3-gram one.
    seq = [7, 2, 3, 4, 4, 9, 8, 2, 3, 5, 5, 9, 7, 2, 3]
    assert propose([seq], 2, max_ngram=1) == [ref_ngram(seq, 2, max_n=1)] == [[5, 5]]


def test_ngram_ragged_updates_and_select_rows():
    """History fed in ragged pieces, rows dropped and reordered: proposals equal the rule on
    each row's whole history."""
    rng = random.Random(0)
    hist = [[rng.randrange(4) for _ in range(n)] for n in (3, 7, 1, 5)]
    d = NgramDrafter()
    d.reset(4, torch.device("cpu"))
    update(d, hist, [0] * 4)
    for rnd in range(40):
        if rnd in (5, 20):
            keep = [3, 0, 2] if rnd == 5 else [1, 0]
            d.select_rows(torch.tensor(keep))
            hist = [hist[r] for r in keep]
        anchors = [rng.randrange(4) for _ in hist]
        k = rng.choice([1, 3, 6])
        got = draft(d, anchors, [len(h) for h in hist], k)
        assert got == [ref_ngram(h + [a], k) for h, a in zip(hist, anchors)], rnd
        # Commit the anchor and a random part of the proposal, as verification would.
        new = [[a] + g[: rng.randrange(len(g) + 1)] + [rng.randrange(4)]
               for a, g in zip(anchors, got)]
        new = [n if rng.random() < 0.8 else [] for n in new]   # some rows commit nothing
        update(d, new, [len(h) for h in hist])
        hist = [h + n for h, n in zip(hist, new)]
    assert max(len(h) for h in hist) > 64                        # the history buffer grew


@pytest.mark.parametrize("max_n,min_n", [(3, 1), (2, 2), (4, 2)])
def test_ngram_random_histories_match_the_rule(max_n, min_n):
    rng = random.Random(max_n * 10 + min_n)
    seqs = [[rng.randrange(3 if i % 2 else 5) for _ in range(rng.randrange(1, 30))]
            for i in range(200)]
    for k in (1, 3, 5):
        got = propose(seqs, k, max_ngram=max_n, min_ngram=min_n)
        want = [ref_ngram(s, k, max_n, min_n) for s in seqs]
        assert got == want
        assert sum(map(len, want)) > 0 and sum(1 for w in want if not w) > 0


def test_ngram_update_at_capacity():
    """A row whose history exactly fills the buffer while another row's update is wider: the
    padding of the wider update never lands in the full row."""
    d = NgramDrafter()
    d.reset(2, torch.device("cpu"))
    rng = random.Random(3)
    hist = [[rng.randrange(6) for _ in range(60)], []]
    update(d, hist, [0, 0])
    new = [[1, 2, 3, 4], [rng.randrange(6) for _ in range(8)]]
    update(d, new, [60, 0])                           # row 0 reaches 64 tokens, no growth
    hist = [h + n for h, n in zip(hist, new)]
    anchors = [rng.randrange(6), rng.randrange(6)]
    got = draft(d, anchors, [64, 8], 5)
    assert got == [ref_ngram(h + [a], 5) for h, a in zip(hist, anchors)]
    # The last committed tokens of row 0 are what the 3-gram "3 4 anchor" is made of.
    assert propose([hist[0] + [anchors[0]]], 5) == got[:1]


def test_ngram_empty_batch():
    d = NgramDrafter()
    d.reset(0, torch.device("cpu"))
    d.update(ContextUpdate(torch.zeros((0, 3), dtype=torch.int64),
                           torch.zeros(0, dtype=torch.int64),
                           torch.zeros((0, 3), dtype=torch.int64)))
    assert draft(d, [], [], 3) == []


def test_ngram_max_draft_and_bad_args():
    with pytest.raises(ValueError, match="min_ngram"):
        NgramDrafter(max_ngram=1, min_ngram=2)
    with pytest.raises(ValueError, match="min_ngram"):
        NgramDrafter(min_ngram=0)
    assert NgramDrafter(max_draft=5).max_draft == 5 and NgramDrafter().max_draft is None


# ---------------------------------------------------------------------------------------------
# Through the decoder
# ---------------------------------------------------------------------------------------------


class Recorder:
    """Delegates to ``inner`` and records every block with the request ids of its rows."""

    def __init__(self, inner):
        self.inner = inner
        self.vocab_size, self.target_layer_ids = inner.vocab_size, None
        self.max_draft = inner.max_draft

    def reset(self, b, device):
        self.ids, self.blocks = list(range(b)), []
        self.inner.reset(b, device)

    def update(self, ctx):
        self.inner.update(ctx)

    def draft(self, anchor, pos, k, temperature, seed, offset):
        blk = self.inner.draft(anchor, pos, k, temperature, seed, offset)
        self.blocks.append((list(self.ids), anchor.tolist(), pos.tolist(), blk))
        return blk

    def select_rows(self, rows):
        self.ids = [self.ids[r] for r in rows.tolist()]
        self.inner.select_rows(rows)


def rounds(rec, prompts, new_tokens):
    """(request, committed context, anchor, row of the block, block) for every row of every
    recorded block; the context comes from the final output, not from the drafter."""
    for ids, anchors, positions, blk in rec.blocks:
        for i, r in enumerate(ids):
            done = positions[i] - len(prompts[r])        # new tokens committed before anchor
            assert new_tokens[r][done] == anchors[i]
            yield r, prompts[r] + new_tokens[r][:done], anchors[i], i, blk


class Bigram(nn.Module):
    """A target whose logits depend on the last token only (the cache is not needed)."""

    def __init__(self, vocab, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=g) * 3)

    def forward(self, tokens, positions, cache):
        return self.table[tokens]

    def greedy(self, token, n):
        out = []
        for _ in range(n):
            token = int(self.table[token].argmax())
            out.append(token)
        return out


def test_ngram_through_decoder_follows_the_rule():
    lm = TinyTorchLM(vocab=5, hidden=16, heads=2, seed=2)
    target = TorchTarget(lm, vocab_size=5, hidden_size=16, num_layers=2)
    rec = Recorder(NgramDrafter(max_ngram=2))
    rng = random.Random(1)
    prompts = [[rng.randrange(5) for _ in range(n)] for n in (6, 2, 9, 4)]
    out = SpeculativeDecoder(target, rec, gamma=3).generate(
        prompts, max_new_tokens=20, temperature=1.0, seed=4)
    seen = 0
    for r, ctx, anchor, i, blk in rounds(rec, prompts, out.new_tokens):
        want = ref_ngram(ctx + [anchor], 3, max_n=2)
        got = blk.draft_tokens[i, : int(blk.num_valid[i])].tolist()
        assert got == want, (r, ctx, anchor)
        seen += len(want) > 0
    assert seen > 10
    st = out.stats
    assert int((st.accepted() < st.verified()).sum()) > 0     # rejections happened


def test_ngram_proposes_the_greedy_continuation_of_a_seen_text():
    lm = Bigram(12, seed=3)
    target = TorchTarget(lm, vocab_size=12, hidden_size=1, num_layers=1)
    # Prompts are the target's own greedy text, long enough to contain its cycle (12 tokens
    # can't all be distinct successors for 13 steps), so every later n-gram match is
    # followed by the greedy continuation.
    prompts = [[s] + lm.greedy(s, 13) for s in (0, 5, 7)]
    k, new = 4, 21
    rec = Recorder(NgramDrafter())
    out = SpeculativeDecoder(target, rec, gamma=k).generate(prompts, max_new_tokens=new)
    for r, p in enumerate(prompts):
        assert out.new_tokens[r] == lm.greedy(p[-1], new)
    for r, ctx, anchor, i, blk in rounds(rec, prompts, out.new_tokens):
        n = int(blk.num_valid[i])
        assert n == k                                         # a full proposal every round
        assert blk.draft_tokens[i].tolist() == lm.greedy(anchor, k)
    st = out.stats
    assert (st.accepted() == st.verified()).all() and st.num_rounds == -(-(new - 1) // (k + 1))


def small_torch_lm(seed, layers=1):
    return TinyTorchLM(vocab=16, hidden=16, heads=2, layers=layers, seed=seed)


def greedy_continuation(lm, seq, n):
    seq = torch.tensor([seq])
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, lm.full_logits(seq)[0, -1].argmax().view(1, 1)], 1)
    return seq[0, -n:].tolist()


PROMPTS = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [1, 2, 1, 2, 1, 2, 1, 2], [15]]


@pytest.mark.parametrize("copy", [True, False], ids=["copy_of_target", "other_model"])
def test_model_drafter_proposes_its_greedy_continuation(copy):
    """T = 0: each block is the draft model's greedy continuation of the committed context
    plus the anchor, K tokens (its own KV cache rolled back right after rejections); a copy
    of the target proposes the target's greedy continuation, all accepted."""
    target_lm = small_torch_lm(seed=1, layers=2)
    draft_lm = target_lm if copy else small_torch_lm(seed=6)
    target = TorchTarget(target_lm, vocab_size=16, hidden_size=16, num_layers=2)
    rec = Recorder(ModelDrafter(TorchTarget(draft_lm, vocab_size=16, hidden_size=16,
                                            num_layers=2 if copy else 1)))
    k = 3
    out = SpeculativeDecoder(target, rec, gamma=k).generate(PROMPTS, max_new_tokens=14)
    for r, ctx, anchor, i, blk in rounds(rec, PROMPTS, out.new_tokens):
        assert blk.draft_tokens[i].tolist() == greedy_continuation(draft_lm, ctx + [anchor], k)
    st = out.stats
    if copy:
        assert (st.accepted() == st.verified()).all()
        for r, p in enumerate(PROMPTS):
            assert out.new_tokens[r] == greedy_continuation(target_lm, p, 14)
    else:
        assert int((st.accepted() < st.verified()).sum()) > 0
        assert len({len(ids) for ids, *_ in rec.blocks}) > 1   # rows left at different rounds


def test_model_drafter_logits_are_its_law_of_the_context():
    """T > 0: draft_logits[k] are the draft model's logits given the committed context, the
    anchor and drafts < k (the law the drafts were sampled from), whatever was rejected."""
    target = TorchTarget(small_torch_lm(seed=1, layers=2), vocab_size=16, hidden_size=16,
                         num_layers=2)
    draft_lm = small_torch_lm(seed=6)
    rec = Recorder(ModelDrafter(TorchTarget(draft_lm, vocab_size=16, hidden_size=16,
                                            num_layers=1)))
    out = SpeculativeDecoder(target, rec, gamma=3).generate(
        PROMPTS, max_new_tokens=14, temperature=1.0, seed=9, eos_token_id=0)
    checked = 0
    for r, ctx, anchor, i, blk in rounds(rec, PROMPTS, out.new_tokens):
        seq = torch.tensor([ctx + [anchor] + blk.draft_tokens[i].tolist()])
        with torch.no_grad():
            want = draft_lm.full_logits(seq)[0, len(ctx):len(ctx) + blk.draft_tokens.shape[1]]
        torch.testing.assert_close(blk.draft_logits[i], want, atol=1e-5, rtol=1e-5)
        checked += 1
    assert checked > 10
    assert int((out.stats.accepted() < out.stats.verified()).sum()) > 0


def test_model_drafter_keeps_only_the_committed_prefix_it_was_fed():
    """Called directly with committed tokens that differ from what it fed (any verifier may
    commit other tokens): the drafter keeps the longest fed prefix that was committed, feeds
    the rest, and proposes the greedy continuation of the whole committed context."""
    lm = small_torch_lm(seed=6)
    d = ModelDrafter(TorchTarget(lm, vocab_size=16, hidden_size=16, num_layers=1))
    ctx = [[3, 4, 5, 6], [9, 10]]
    d.reset(2, torch.device("cpu"))
    update(d, ctx, [0, 0])
    zeros, seeds, offs = torch.zeros(2), torch.arange(2), torch.ones(2, dtype=torch.int64)
    anchors = [7, 11]
    blk = d.draft(torch.tensor(anchors), torch.tensor([4, 2]), 3, zeros, seeds, offs)
    fed = [[a] + blk.draft_tokens[i].tolist() for i, a in enumerate(anchors)]
    x = (fed[0][1] + 1) % 16
    # Row 0: the anchor, then a token other than draft 0, then draft 1 again (a match after
    # a mismatch is not a kept prefix). Row 1: the anchor and every draft.
    committed = [[fed[0][0], x, fed[0][2]], fed[1][:4]]
    update(d, committed, [4, 2])
    ctx = [c + n for c, n in zip(ctx, committed)]
    anchors = [2, 13]
    blk = d.draft(torch.tensor(anchors), torch.tensor([len(c) for c in ctx]), 3, zeros, seeds,
                  offs)
    for i in range(2):
        assert blk.draft_tokens[i].tolist() == greedy_continuation(lm, ctx[i] + [anchors[i]], 3)
        seq = torch.tensor([ctx[i] + [anchors[i]] + blk.draft_tokens[i].tolist()])
        with torch.no_grad():
            want = lm.full_logits(seq)[0, len(ctx[i]):len(ctx[i]) + 3]
        torch.testing.assert_close(blk.draft_logits[i], want, atol=1e-5, rtol=1e-5)
