"""The top-k Markov correction as a drafter option (issue 20, item 2): the config field in
vLLM's naming (``markov_topk``, and the older ``dspark_draft_topk`` read and written back under
its own name), DeepSpec configs without it unchanged, the drafter's blocks (candidate logits
and ids), and decoding with it lossless by chi-square with a negative control."""
import numpy as np
import pytest
import torch

from dspark_ext import FixedLength, SpeculativeDecoder
from dspark_ext.drafters.dspark import ConfigError, DSparkConfig

from dspark_cases import History, make_config, make_model, row_args
from stats import ALPHA
from test_decoder_lossless import NEW, PROMPT, ROWS, TEMP, hf_law, hf_lm, pvalue  # noqa: F401


def test_config_field_round_trips():
    cfg = make_config("vanilla_conf_markov", markov_topk=5)
    d = cfg.to_dict()
    assert d["markov_topk"] == 5 and "dspark_draft_topk" not in d
    assert DSparkConfig.from_dict(d).markov_topk == 5
    assert DSparkConfig.from_dict(d).draft_topk == 5


def test_configs_without_the_field_are_unchanged():
    d = make_config("vanilla_conf_markov").to_dict()
    assert "markov_topk" not in d
    back = DSparkConfig.from_dict(d)
    assert back.markov_topk is None and back.draft_topk is None
    assert back.to_dict() == d
    d0 = dict(d, markov_topk=0)  # explicit 0 (vLLM: the full-vocabulary projection) kept as is
    assert DSparkConfig.from_dict(d0).draft_topk is None
    assert DSparkConfig.from_dict(d0).to_dict() == d0


def test_legacy_name_is_read_and_written_back():
    d = dict(make_config("vanilla_conf_markov").to_dict(), dspark_draft_topk=7)
    cfg = DSparkConfig.from_dict(d)
    assert cfg.draft_topk == 7
    assert cfg.to_dict() == d
    cfg.markov_topk = 9
    out = cfg.to_dict()
    assert out["dspark_draft_topk"] == 9 and "markov_topk" not in out
    both = dict(d, markov_topk=4)  # the current name wins
    assert DSparkConfig.from_dict(both).draft_topk == 4


@pytest.mark.parametrize("fields,match", [
    (dict(markov_topk=97), r"markov_topk must lie in \[1, vocab_size = 96\]"),
    (dict(markov_topk=-1), r"markov_topk must lie in \[1, vocab_size = 96\]"),
    (dict(markov_topk=True), "markov_topk"),
])
def test_bad_values(fields, match):
    with pytest.raises((ConfigError, TypeError), match=match):
        d = dict(make_config("vanilla_conf_markov").to_dict(), **fields)
        DSparkConfig.from_dict(d)


def test_needs_a_markov_head():
    with pytest.raises(ConfigError, match="markov_topk requires a Markov head"):
        make_config("dflash", markov_topk=4)


@pytest.mark.parametrize("variant", ["vanilla_conf_markov", "gated_conf", "rnn_conf_markov"])
def test_drafter_blocks_hold_the_candidates(variant):
    dense = make_model(variant, seed=2)
    topk = make_model(variant, seed=2, markov_topk=6)
    batch = 3
    for model in (dense, topk):
        model.reset(batch, torch.device("cpu"))
    hist = History(batch)
    upd = hist.update([5, 3, 7])
    dense.update(upd)
    topk.update(upd)
    anchor = torch.tensor([4, 9, 17])
    temp, seed, offset = row_args(batch, temperature=1.0)
    a = dense.draft(anchor, hist.lengths, 4, temp, seed, offset)
    b = topk.draft(anchor, hist.lengths, 4, temp, seed, offset)
    assert a.draft_ids is None and a.draft_logits.shape[-1] == 96
    assert b.draft_ids.shape == b.draft_logits.shape == (batch, 4, 6)
    torch.testing.assert_close(b.base_logits, a.base_logits)
    assert torch.equal(b.draft_ids, torch.sort(a.base_logits, dim=-1, descending=True,
                                               stable=True).indices[..., :6])
    assert bool((b.draft_ids == b.draft_tokens[..., None]).any(-1).all())
    # Position 0's confidence reads only the anchor; later ones the (different) drafts.
    torch.testing.assert_close(b.confidence_logits[:, 0], a.confidence_logits[:, 0])


class ShuffledIds:
    """Negative control: a DSpark drafter whose candidates' ids reach verification in the
    wrong order (everything else delegated)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def draft(self, *args, **kwargs):
        blk = self.inner.draft(*args, **kwargs)
        return blk._replace(draft_ids=blk.draft_ids.roll(1, dims=-1))


def _topk_drafter(hf_lm):
    from dspark_cases_decoder import make_dspark_for
    d = make_dspark_for(hf_lm, markov=True, block_size=3, seed=3)
    d.config.markov_topk = 3  # of V = 6: half the vocabulary truncated away at every position
    return d


def _decode(target, drafter, verify):
    dec = SpeculativeDecoder(target, drafter, gamma=3, verify=verify,
                             length_policy=FixedLength())
    out = dec.generate([PROMPT] * ROWS, max_new_tokens=NEW, temperature=TEMP, seed=77)
    toks = np.array(out.new_tokens)
    assert toks.shape == (ROWS, NEW)
    return toks, out.stats


@pytest.mark.slow
@pytest.mark.parametrize("verify", ["token", "block"])
def test_decoding_with_topk_is_lossless(hf_lm, hf_law, verify):
    toks, st = _decode(hf_lm, _topk_drafter(hf_lm), verify)
    assert 0 < float(st.accepted().double().mean()) < 3
    assert pvalue(toks, hf_law) > ALPHA


@pytest.mark.slow
def test_negative_control_shuffled_ids(hf_lm, hf_law):
    toks, _ = _decode(hf_lm, ShuffledIds(_topk_drafter(hf_lm)), "token")
    assert pvalue(toks, hf_law) < ALPHA

