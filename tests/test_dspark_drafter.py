"""DSparkDrafter's decode path (update / draft / select_rows) against the float64 from-scratch
reference (dspark_ext.reference_drafter), for every head variant."""
import pytest
import torch

from dspark_ext.drafters.base import ContextUpdate, Drafter
from dspark_ext.reference_drafter import reference_context_kv, reference_draft

from dspark_cases import (ATOL, BLOCK, FEATURES, VARIANTS, VOCAB, History, check_block,
                          make_model, row_args, state_of)

def _round_trip(variant, temperature, **overrides):
    model = make_model(variant, **overrides)
    hist = History(3)
    model.reset(3, "cpu")
    gen = torch.Generator().manual_seed(5)
    for rnd, counts in enumerate([[5, 3, 1], [2, 0, 3], [0, 4, 1]]):
        model.update(hist.update(counts))
        anchor = torch.randint(0, VOCAB, (3,), generator=gen)
        num_tokens = BLOCK if rnd != 1 else BLOCK - 1
        t, s, o = row_args(3, temperature, offset=rnd)
        out = model.draft(anchor, hist.lengths, num_tokens, t, s, o)
        assert out.draft_tokens.shape == (3, num_tokens)
        assert out.draft_logits.shape == (3, num_tokens, VOCAB)
        check_block(model, hist, out, anchor, num_tokens, t, s, o)
    return model, hist


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_draft_matches_reference_greedy(variant):
    _round_trip(variant, 0.0)


@pytest.mark.parametrize("variant", ["vanilla_conf_markov", "rnn_conf_markov"])
def test_draft_matches_reference_sampled(variant):
    _round_trip(variant, 0.9)


def test_linear_rope_and_attention_bias_match_reference():
    _round_trip("gated_conf", 0.0, rope_type="linear", rope_factor=2.0, attention_bias=True)


def test_is_a_drafter():
    model = make_model("vanilla")
    assert isinstance(model, Drafter)
    assert model.vocab_size == VOCAB and model.max_draft == BLOCK
    assert model.target_layer_ids == [-1, 1]


def test_context_cache_matches_recomputation():
    model, hist = _round_trip("gated_conf", 0.0)
    refs = [reference_context_kv(state_of(model), model.config, hist.features[b],
                                 hist.positions[b]) for b in range(3)]
    assert torch.equal(model.cache.lengths, hist.lengths)
    for layer in range(model.config.num_hidden_layers):
        keys, values = model.cache.context(layer)
        for b in range(3):
            n = len(hist.positions[b])
            rk, rv = refs[b][layer]
            torch.testing.assert_close(keys[b, :, :n].double(), rk, atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(values[b, :, :n].double(), rv, atol=ATOL, rtol=ATOL)
            assert torch.isfinite(model.cache.keys[layer, b]).all()  # padding stays finite


def test_cache_grows_geometrically():
    model = make_model("dflash")
    hist = History(2)
    model.reset(2, "cpu")
    capacities = []
    for _ in range(12):
        model.update(hist.update([20, 7]))
        capacities.append(model.cache.capacity)
    assert len(set(capacities)) <= 4  # 64 -> 128 -> 256 ... not one reallocation per round
    t, s, o = row_args(2)
    anchor = torch.tensor([1, 2])
    out = model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    check_block(model, hist, out, anchor, BLOCK, t, s, o)


def test_select_rows():
    model, hist = _round_trip("rnn_conf_markov", 0.0)
    rows = [2, 0]
    model.select_rows(torch.tensor(rows))
    hist.select(rows)
    model.update(hist.update([2, 1]))
    anchor = torch.tensor([4, 9])
    t, s, o = row_args(2)
    out = model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    check_block(model, hist, out, anchor, BLOCK, t, s, o)


def test_seeded_sampling_reproducible_and_row_independent():
    model = make_model("vanilla_conf_markov")
    hist = History(3)
    model.reset(3, "cpu")
    model.update(hist.update([6, 2, 4]))
    anchor = torch.tensor([3, 5, 7])
    t, s, o = row_args(3, 1.0)
    first = model.draft(anchor, hist.lengths, BLOCK, t, s, o).draft_tokens
    again = model.draft(anchor, hist.lengths, BLOCK, t, s, o).draft_tokens
    assert torch.equal(first, again)
    other_seed = model.draft(anchor, hist.lengths, BLOCK, t, s + 100, o).draft_tokens
    assert not torch.equal(first, other_seed)
    # Row 1 alone (same context, seed, offset) draws the same tokens as inside the batch.
    alone = make_model("vanilla_conf_markov")
    alone.reset(1, "cpu")
    alone.update(ContextUpdate(torch.zeros(1, 2, dtype=torch.int64), torch.tensor([2]),
                               hist.positions[1][None], hist.features[1][None]))
    solo = alone.draft(anchor[1:2], hist.lengths[1:2], BLOCK, t[1:2], s[1:2], o[1:2])
    assert torch.equal(solo.draft_tokens[0], first[1])


def test_dflash_sampled_tokens_follow_the_draft_stream():
    model = make_model("dflash")
    hist = History(2)
    model.reset(2, "cpu")
    model.update(hist.update([3, 5]))
    anchor = torch.tensor([1, 2])
    t, s, o = row_args(2, 0.8)
    out = model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    state = state_of(model)
    for b in range(2):
        ref = reference_draft(state, model.config, hist.features[b], hist.positions[b],
                              int(anchor[b]), len(hist.positions[b]), BLOCK, 0.8, int(s[b]),
                              int(o[b]))
        assert torch.equal(out.draft_tokens[b], ref.draft_tokens)


def test_fp16_model_uses_cached_float32_head_weights():
    model = make_model("gated_conf").to(torch.float16)
    hist = History(2)
    model.reset(2, "cpu")
    model.update(hist.update([3, 2]))
    anchor = torch.tensor([1, 2])
    t, s, o = row_args(2)
    out = model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    assert out.draft_logits.dtype == torch.float16
    cached = model.markov_head._op_cache._tensors[0]
    model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    assert model.markov_head._op_cache._tensors[0] is cached  # not converted every round
    with torch.no_grad():
        model.markov_head.markov_w2.weight.mul_(2.0)
    out2 = model.draft(anchor, hist.lengths, BLOCK, t, s, o)
    assert model.markov_head._op_cache._tensors[0] is not cached  # invalidated by the change
    assert not torch.equal(out.draft_logits, out2.draft_logits)


def test_bad_draft_inputs():
    model = make_model("vanilla")
    anchor = torch.tensor([1, 2])
    t, s, o = row_args(2)
    with pytest.raises(RuntimeError, match="reset"):
        model.draft(anchor, anchor, 1, t, s, o)
    model.reset(2, "cpu")
    hist = History(2)
    model.update(hist.update([2, 2]))
    pos = hist.lengths
    for bad in (0, BLOCK + 1, 2.0):
        with pytest.raises(ValueError, match="num_tokens"):
            model.draft(anchor, pos, bad, t, s, o)
    with pytest.raises(ValueError, match="anchor must be 1-D"):
        model.draft(anchor[None], pos, 1, t, s, o)
    with pytest.raises(ValueError, match="anchor_position must be torch.int64"):
        model.draft(anchor, pos.float(), 1, t, s, o)
    with pytest.raises(ValueError, match="temperature must be 1-D"):
        model.draft(anchor, pos, 1, t[:1], s, o)
    with pytest.raises(ValueError, match="seed"):
        model.draft(anchor, pos, 1, t, s.int(), o)
    with pytest.raises(ValueError, match="features is required"):
        model.update(ContextUpdate(torch.zeros(2, 1, dtype=torch.int64), torch.ones(2,
                     dtype=torch.int64), torch.zeros(2, 1, dtype=torch.int64), None))
    with pytest.raises(ValueError, match=f"F = len\\(target_layer_ids\\) \\* hidden_size = "
                                         f"{FEATURES}"):
        model.update(ContextUpdate(torch.zeros(2, 1, dtype=torch.int64), torch.ones(2,
                     dtype=torch.int64), torch.zeros(2, 1, dtype=torch.int64),
                     torch.zeros(2, 1, FEATURES + 1)))
    with pytest.raises(ValueError, match="positions must be"):
        model.update(ContextUpdate(torch.zeros(2, 1, dtype=torch.int64), torch.ones(2,
                     dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64),
                     torch.zeros(2, 1, FEATURES)))
