"""ModelDrafter's state across calls and rounds (issue 21, mutation testing): a second
``generate`` with the same drafter, skipped rounds, the rollback rule seen as the tokens the
draft model is fed, and the draft stream at T > 0."""
import torch

from dspark_ext import ModelDrafter, SpeculativeDecoder, TorchTarget
from dspark_ext.ops.sampling import sample_draft
from test_decoder_loop import PROMPTS, V, Recording
from test_drafter_proposals import greedy_continuation, small_torch_lm, update


def _pair(copy):
    target_lm = small_torch_lm(seed=1, layers=2)
    draft_lm = target_lm if copy else small_torch_lm(seed=6)
    target = TorchTarget(target_lm, vocab_size=V, hidden_size=16, num_layers=2)
    feeds = Recording(TorchTarget(draft_lm, vocab_size=V, hidden_size=16,
                              num_layers=2 if copy else 1))
    return target_lm, target, ModelDrafter(feeds), feeds


def test_vocab_and_a_second_call_with_the_same_drafter():
    lm, target, d, _ = _pair(copy=True)
    assert d.vocab_size == V and d.max_draft is None and d.target_layer_ids is None
    dec = SpeculativeDecoder(target, d, gamma=3)
    for prompts in (PROMPTS, [[7, 8], [12, 13, 14, 15]]):  # reset between the calls
        out = dec.generate(prompts, max_new_tokens=9)
        st = out.stats
        assert (st.accepted() == st.verified()).all()  # a copy of the target: all accepted
        for r, p in enumerate(prompts):
            assert out.new_tokens[r] == greedy_continuation(lm, p, 9)


def test_rollback_feeds_only_what_was_not_run():
    """Each round's first draft forward feeds the pending committed tokens plus the anchor:
    nothing after a rejection (the cache kept the anchor and the accepted drafts), the last
    draft when every draft was accepted (it was never run)."""
    _, target, d, feeds = _pair(copy=False)
    gamma = 3
    out = SpeculativeDecoder(target, d, gamma=gamma).generate([[3, 4, 5, 6]],
                                                              max_new_tokens=20)
    st = out.stats
    widths = [w for w, _ in feeds.calls]
    firsts = widths[::gamma]  # gamma forwards per round, the first one per round
    assert len(firsts) == st.num_rounds
    want = [1] + [2 if int(r.accepted[0]) == gamma else 1 for r in st.rounds[:-1]]
    assert firsts == want
    assert 1 in want[1:]  # a rejection happened
    assert all(w == 1 for i, w in enumerate(widths) if i % gamma)  # then one token per position


def test_skipped_rounds_feed_the_plain_steps():
    """Skipped rounds (no draft call) hand the drafter the anchor only; with a copy of the
    target every drafted round after them still has all its drafts accepted, whichever
    rows remain."""
    lm, target, d, _ = _pair(copy=True)

    class Skip:
        n = 0

        def reset(self):
            self.n = 0

        def draft_this_round(self, rows):
            self.n += 1
            return self.n % 3 == 0

        def __call__(self, block, max_len):
            return max_len

    cont0 = greedy_continuation(lm, PROMPTS[0], 5)
    eos = cont0[4]  # row 0 ends at its fifth token, the others later or at the limit
    assert eos not in cont0[:4]
    out = SpeculativeDecoder(target, d, gamma=2, length_policy=Skip()).generate(
        PROMPTS, max_new_tokens=12, eos_token_id=eos)
    st = out.stats
    assert any(not r.drafted for r in st.rounds) and any(r.drafted for r in st.rounds)
    assert len({len(r.rows) for r in st.rounds}) > 1  # rows left at different rounds
    for r in st.rounds:
        assert (r.accepted == r.verified).all()
    for r, p in enumerate(PROMPTS):
        want = greedy_continuation(lm, p, 12)
        if eos in want:
            want = want[: want.index(eos) + 1]
        assert out.new_tokens[r] == want


def test_draft_stream_at_temperature():
    lm = small_torch_lm(seed=6)
    d = ModelDrafter(TorchTarget(lm, vocab_size=V, hidden_size=16, num_layers=1))
    d.reset(2, torch.device("cpu"))
    update(d, [[3, 4, 5], [9, 10]], [0, 0])
    t, seed, off = torch.tensor([1.0, 0.7]), torch.tensor([5, 9]), torch.tensor([3, 4])
    blk = d.draft(torch.tensor([6, 11]), torch.tensor([3, 2]), 4, t, seed, off)
    for k in range(4):
        assert torch.equal(blk.draft_tokens[:, k],
                           sample_draft(blk.draft_logits[:, k], t, seed, off, k))
