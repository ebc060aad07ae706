"""Bad input to the decoder gives a clear error (or documented behaviour); target features
captured by hooks equal output_hidden_states; the DSpark drafter's cached context equals a
from-scratch recomputation after decoding rounds with rejections."""
import pytest
import torch

from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder
from dspark_ext.drafters.base import ContextUpdate
from dspark_ext.targets.hf import HFTarget
from dspark_cases_decoder import make_dspark_for
from tiny_models import tiny_hf

V = 64


@pytest.fixture(scope="module")
def target():
    m = tiny_hf("qwen3", vocab=V, layers=3, seed=1, max_positions=64)
    m.generation_config.eos_token_id = None
    return m


def test_vocab_mismatch(target):
    with pytest.raises(ValueError, match="vocab_size"):
        SpeculativeDecoder(target, ModelDrafter(tiny_hf("qwen3", vocab=V + 8, layers=1)))


def test_hidden_size_mismatch(target):
    other = tiny_hf("qwen3", vocab=V, hidden=48, layers=3, heads=4)
    with pytest.raises(ValueError, match="hidden size"):
        SpeculativeDecoder(target, make_dspark_for(other))


@pytest.mark.parametrize("ids,match", [([0, 5], "out of range"), ([0, 2], "final layer"),
                                       ([1, 0], "strictly increasing")])
def test_target_layer_ids(target, ids, match):
    drafter = make_dspark_for(target, layers=[0, 1])
    drafter.config.target_layer_ids = ids  # as a hand-edited checkpoint would say
    with pytest.raises(ValueError, match=match):
        SpeculativeDecoder(target, drafter)


def test_prompt_errors(target):
    dec = SpeculativeDecoder(target, NgramDrafter(), gamma=2)
    with pytest.raises(ValueError, match="no prompts"):
        dec.generate(torch.zeros((0, 4), dtype=torch.int64))
    with pytest.raises(ValueError, match="no tokens"):
        dec.generate(torch.zeros((2, 0), dtype=torch.int64))
    ids = torch.ones((2, 4), dtype=torch.int64)
    with pytest.raises(ValueError, match=r"rows \[1\] have no tokens"):
        dec.generate(ids, torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="contiguous"):
        dec.generate(ids, torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="position limit"):
        dec.generate(ids, max_new_tokens=61)
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate(ids, max_new_tokens=-1)
    with pytest.raises(ValueError, match="temperature"):
        dec.generate(ids, temperature=-0.5)
    with pytest.raises(ValueError, match="temperature"):
        dec.generate(ids, temperature=float("nan"))
    with pytest.raises(ValueError, match="greedy"):
        dec.generate(ids, temperature=0.7, verify="greedy")
    with pytest.raises(ValueError, match="verify"):
        dec.generate(ids, verify="tree")
    with pytest.raises(ValueError, match="eos_token_id"):
        dec.generate(ids, eos_token_id=V)
    with pytest.raises(ValueError, match="top_p"):
        dec.generate(ids, temperature=1.0, top_p=0.0)


def test_gamma_limits(target):
    with pytest.raises(ValueError, match="max_draft"):
        SpeculativeDecoder(target, make_dspark_for(target, block_size=4)).generate(
            [[1, 2]], gamma=5)
    with pytest.raises(ValueError, match="gamma"):
        SpeculativeDecoder(target, NgramDrafter()).generate([[1, 2]], gamma=0)


def test_max_new_tokens_zero_returns_prompt(target):
    ids = torch.tensor([[0, 3, 4], [5, 6, 7]])
    out = SpeculativeDecoder(target, NgramDrafter()).generate(
        ids, torch.tensor([[0, 1, 1], [1, 1, 1]]), max_new_tokens=0)
    assert torch.equal(out.sequences, ids) and out.new_tokens == [[], []]
    assert out.stats.num_rounds == 0


def test_hooks_equal_output_hidden_states(target):
    layers = [-1, 0, 1]
    t = HFTarget(target)
    t.reset(2, layers)
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    lengths = torch.tensor([4, 2])
    pre = t.prefill(tokens, lengths)
    with torch.no_grad():
        ref0 = target(tokens[:1], output_hidden_states=True).hidden_states
        ref1 = target(tokens[1:, :2], output_hidden_states=True).hidden_states
    want0 = torch.cat([ref0[i + 1] for i in layers], -1)[0]
    want1 = torch.cat([ref1[i + 1] for i in layers], -1)[0]
    torch.testing.assert_close(pre.features[0], want0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pre.features[1, :2], want1, atol=1e-5, rtol=1e-5)
    # A block after the prompt, then a rollback and another block: still the hidden states of
    # the committed sequence.
    t.forward(torch.tensor([[9, 10], [11, 12]]), torch.tensor([2, 2]))
    t.truncate(torch.tensor([5, 2]))          # row 0 keeps token 9, row 1 keeps nothing
    step = t.forward(torch.tensor([[13], [14]]), torch.tensor([1, 1]))
    with torch.no_grad():
        full0 = target(torch.tensor([[3, 4, 5, 6, 9, 13]]), output_hidden_states=True)
        full1 = target(torch.tensor([[7, 8, 14]]), output_hidden_states=True)
    for row, full in ((0, full0), (1, full1)):
        want = torch.cat([full.hidden_states[i + 1][0, -1] for i in layers], -1)
        torch.testing.assert_close(step.features[row, 0], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step.logits[row, 0], full.logits[0, -1], atol=1e-5,
                                   rtol=1e-5)


class ContextSnapshots:
    """Delegates to a DSparkDrafter and keeps, per request, its cached context K/V: taken
    when the request leaves the batch (before select_rows compacts the cache) and at the end.
    At every compaction, the rows that stay must hold what they held before it."""

    def __init__(self, inner, single_token_request=None, oracle_request=None, target=None):
        self.inner = inner
        self.single = single_token_request  # this request verifies no draft (1 token / round)
        # This request (run at T = 0) drafts the target's greedy continuation: all accepted.
        self.oracle, self.target = oracle_request, target
        self.compactions = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reset(self, b, device):
        self.ids, self.final = list(range(b)), {}
        self.tokens = {r: [] for r in range(b)}
        self.inner.reset(b, device)

    def update(self, ctx):
        for i, rid in enumerate(self.ids):
            self.tokens[rid] += ctx.tokens[i, : int(ctx.lengths[i])].tolist()
        self.inner.update(ctx)

    def draft(self, anchor, pos, k, temperature, seed, offset):
        blk = self.inner.draft(anchor, pos, k, temperature, seed, offset)
        if self.oracle in self.ids:
            i = self.ids.index(self.oracle)
            seq = torch.tensor([self.tokens[self.oracle] + [int(anchor[i])]])
            for _ in range(k):
                seq = torch.cat([seq, self.target(seq).logits[:, -1:].argmax(-1)], 1)
            tokens = blk.draft_tokens.clone()
            tokens[i] = seq[0, -k:]
            blk = blk._replace(draft_tokens=tokens)
        if self.single in self.ids:
            valid = torch.full((len(self.ids),), k, dtype=torch.int64)
            valid[self.ids.index(self.single)] = 0
            blk = blk._replace(num_valid=valid)
        return blk

    def rows(self):
        self.inner.flush_context()  # the last update is otherwise folded into the next draft
        cache = self.inner.cache
        layers = [cache.context(i) for i in range(self.inner.config.num_hidden_layers)]
        out = []
        for row in range(len(self.ids)):
            n = int(cache.lengths[row])
            out.append([(k[row, :, :n].clone(), v[row, :, :n].clone()) for k, v in layers])
        return out

    def select_rows(self, rows):
        before = self.rows()
        kept = rows.tolist()
        for old, rid in enumerate(self.ids):
            if old not in kept:
                self.final[rid] = before[old]
        self.inner.select_rows(rows)
        self.ids = [self.ids[r] for r in kept]
        self.compactions += 1
        for new, old in enumerate(kept):           # compaction moves rows, changes nothing
            for (k0, v0), (k1, v1) in zip(before[old], self.rows()[new]):
                assert torch.equal(k0, k1) and torch.equal(v0, v1)

    def finish(self):
        for rid, state in zip(self.ids, self.rows()):
            self.final[rid] = state
        return self.final


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6])
def test_dspark_context_after_rounds_equals_recompute(target, seed):
    """After several rounds with rejections, each request's cached context K/V (taken when it
    leaves the batch, or at the end) equals what a fresh drafter computes from that request's
    committed sequence's target features, whichever round each request finishes in."""
    # Request 0 gains one token per round (11 rounds); request 1 (greedy, drafting the
    # target's own continuation) five (3 rounds); request 2 samples with real rejections.
    drafter = ContextSnapshots(make_dspark_for(target, block_size=4, seed=5),
                               single_token_request=0, oracle_request=1, target=target)
    dec = SpeculativeDecoder(target, drafter, gamma=4)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15]]
    out = dec.generate(prompts, max_new_tokens=12, temperature=torch.tensor([1.0, 0.0, 1.0]),
                       seed=seed)
    final = drafter.finish()
    assert sorted(final) == [0, 1, 2]
    st = out.stats
    assert st.num_rounds == 11 and drafter.compactions >= 1
    assert [len(r.rows) for r in st.rounds][:3] == [3, 3, 3] and len(st.rounds[3].rows) < 3
    assert int((st.accepted() < st.verified()).sum()) > 0                # rejections happened
    ht = HFTarget(target)
    for rid, prompt in enumerate(prompts):
        # Decoding stops before the last emitted token is fed to the target: the committed
        # context is the prompt plus all but the last new token.
        seq = prompt + out.new_tokens[rid][:-1]
        fresh = make_dspark_for(target, block_size=4, seed=5)
        fresh.reset(1, torch.device("cpu"))
        ht.reset(1, fresh.target_layer_ids)
        toks, lens = torch.tensor([seq]), torch.tensor([len(seq)])
        feats = ht.prefill(toks, lens).features
        fresh.update(ContextUpdate(toks, lens, torch.arange(len(seq))[None], feats))
        fresh.flush_context()
        assert [k.shape[1] for k, _ in final[rid]] == [len(seq)] * len(final[rid]), rid
        for layer, (k_old, v_old) in enumerate(final[rid]):
            k_new, v_new = fresh.cache.context(layer)
            torch.testing.assert_close(k_old, k_new[0, :, :len(seq)], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(v_old, v_new[0, :, :len(seq)], atol=1e-4, rtol=1e-4)
