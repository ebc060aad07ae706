"""HFTarget on a tiny random Qwen3 (issue 21, mutation testing): ragged prompts, holes left
by rows that accepted fewer drafts, truncation and cropping, dropped rows, features and the
adapter's attributes; every logit is compared with the row run alone, without a cache."""
import pytest
import torch

from dspark_ext.targets.hf_target import HFTarget
from tiny_models import tiny_hf

ATOL = 2e-5


@pytest.fixture(scope="module")
def model():
    return tiny_hf(layers=3, max_positions=256)


def _alone(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq])).logits[0]


def _hidden(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq]), output_hidden_states=True).hidden_states


def test_attributes(model):
    t = HFTarget(model)
    assert (t.vocab_size, t.hidden_size, t.num_layers, t.max_positions) == (64, 32, 3, 256)
    assert isinstance(t.vocab_size, int) and isinstance(t.hidden_size, int)
    assert t.device == torch.device("cpu") and t.dtype == torch.float32
    assert t.config is model.config.get_text_config()
    assert t.cache is None and t.lengths() is None


def test_prefill_needs_a_fresh_reset(model):
    t = HFTarget(model)
    with pytest.raises(RuntimeError) as e:
        t.prefill(torch.tensor([[1, 2]]), torch.tensor([2]))
    assert str(e.value) == "HFTarget.prefill needs a fresh reset() first"
    t.reset(1)
    t.prefill(torch.tensor([[1, 2]]), torch.tensor([2]))
    with pytest.raises(RuntimeError, match="fresh reset"):
        t.prefill(torch.tensor([[1, 2]]), torch.tensor([2]))


def test_ragged_rounds_equal_each_row_alone(model):
    t = HFTarget(model)
    prompts = [[3, 4, 5, 6, 7], [9, 10], [11, 12, 13]]
    t.reset(3)
    toks = torch.tensor([[3, 4, 5, 6, 7], [9, 10, 0, 0, 0], [11, 12, 13, 0, 0]])
    step = t.prefill(toks, torch.tensor([5, 2, 3]))
    assert step.logits.shape == (3, 1, 64) and step.features is None
    for r, p in enumerate(prompts):
        torch.testing.assert_close(step.logits[r, 0], _alone(model, p)[-1], atol=ATOL, rtol=0)
    assert t.lengths().tolist() == [5, 2, 3]
    seqs = [list(p) for p in prompts]
    # round 1: three tokens each, rows keep 3, 1, 2 (holes for rows 1 and 2)
    blk = torch.tensor([[20, 21, 22], [23, 24, 25], [26, 27, 28]])
    out = t.forward(blk, torch.tensor([3, 3, 3]))
    for r in range(3):
        torch.testing.assert_close(out.logits[r], _alone(model, seqs[r] + blk[r].tolist())[-3:],
                                   atol=ATOL, rtol=0)
    assert t.lengths().tolist() == [8, 5, 6]
    t.truncate(torch.tensor([8, 3, 4], dtype=torch.int32))
    assert t.lengths().tolist() == [8, 3, 4] and t.lengths().dtype == torch.int64
    seqs = [seqs[0] + [20, 21, 22], seqs[1] + [23], seqs[2] + [26]]
    # round 2: rows see only their live tokens, positions continue from the true length
    blk = torch.tensor([[30, 31], [32, 33], [34, 35]])
    out = t.forward(blk, torch.tensor([2, 1, 2]))  # row 1 verifies one token only
    for r in range(3):
        n = 1 if r == 1 else 2
        want = _alone(model, seqs[r] + blk[r, :n].tolist())[-n:]
        torch.testing.assert_close(out.logits[r, :n], want, atol=ATOL, rtol=0)
    assert t.lengths().tolist() == [10, 4, 6]
    seqs = [seqs[0] + [30, 31], seqs[1] + [32], seqs[2] + [34, 35]]
    t.truncate(torch.tensor([99, 99, 99]))  # never lengthens a row
    assert t.lengths().tolist() == [10, 4, 6]
    # drop row 0 (the longest): its trailing slots are cropped
    t.select_rows(torch.tensor([2, 1]))
    assert t.lengths().tolist() == [6, 4]
    assert t.cache.get_seq_length() == 10  # row 2's live tokens reach slot 9
    seqs = [seqs[2], seqs[1]]
    out = t.forward(torch.tensor([[40], [41]]), torch.tensor([1, 1]))
    for r in range(2):
        torch.testing.assert_close(out.logits[r, 0], _alone(model, seqs[r] + [40 + r])[-1],
                                   atol=ATOL, rtol=0)
    assert t.lengths().tolist() == [7, 5]


def test_truncate_crops_slots_no_row_uses(model):
    t = HFTarget(model)
    t.reset(2)
    t.prefill(torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2]))
    t.forward(torch.tensor([[8, 9, 10], [11, 12, 13]]), torch.tensor([3, 3]))
    assert t.cache.get_seq_length() == 6
    t.truncate(torch.tensor([4, 3]))  # row 0 keeps slot 3, row 1 slots 0-1 and 3
    assert t.cache.get_seq_length() == 4
    t.truncate(torch.tensor([3, 2]))
    assert t.cache.get_seq_length() == 3  # back to the prompts: slot 2 is row 0's
    out = t.forward(torch.tensor([[14], [15]]), torch.tensor([1, 1]))
    torch.testing.assert_close(out.logits[0, 0], _alone(model, [3, 4, 5, 14])[-1],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(out.logits[1, 0], _alone(model, [6, 7, 15])[-1],
                               atol=ATOL, rtol=0)
    t.truncate(torch.tensor([0, 0]))
    assert t.cache.get_seq_length() == 0 and t.lengths().tolist() == [0, 0]


def test_batch_of_one_has_no_holes(model):
    t = HFTarget(model)
    t.reset(1)
    t.prefill(torch.tensor([[3, 4]]), torch.tensor([2]))
    t.forward(torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    t.truncate(torch.tensor([3]))  # rejected slots are cropped at once
    assert t.cache.get_seq_length() == 3
    out = t.forward(torch.tensor([[8]]), torch.tensor([1]))
    torch.testing.assert_close(out.logits[0, 0], _alone(model, [3, 4, 5, 8])[-1],
                               atol=ATOL, rtol=0)


def test_features_right_padded(model):
    t = HFTarget(model)
    t.reset(2, [-1, 1])
    step = t.prefill(torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2]))
    assert step.features.shape == (2, 3, 64)
    for r, p in enumerate([[3, 4, 5], [6, 7]]):
        h = _hidden(model, p)
        want = torch.cat([h[0], h[2]], -1)[0]
        torch.testing.assert_close(step.features[r, : len(p)], want, atol=ATOL, rtol=0)
    out = t.forward(torch.tensor([[8, 9], [10, 11]]), torch.tensor([2, 1]))
    h = _hidden(model, [3, 4, 5, 8, 9])
    torch.testing.assert_close(out.features[0], torch.cat([h[0], h[2]], -1)[0, 3:],
                               atol=ATOL, rtol=0)
    h = _hidden(model, [6, 7, 10])
    torch.testing.assert_close(out.features[1, 0], torch.cat([h[0], h[2]], -1)[0, 2],
                               atol=ATOL, rtol=0)
    t.reset(1)  # the hooks of the last reset are removed
    assert t.prefill(torch.tensor([[3]]), torch.tensor([1])).features is None
    with pytest.raises(ValueError, match="final layer 2"):
        t.reset(1, [2])


def test_lengths_after_reset_and_two_blocks_without_truncation(model):
    t = HFTarget(model)
    t.reset(2)
    assert t.lengths().tolist() == [0, 0] and t.lengths().dtype == torch.int64
    t.prefill(torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2]))
    t.forward(torch.tensor([[8, 9], [10, 0]]), torch.tensor([2, 1]))  # row 1: a hole
    out = t.forward(torch.tensor([[11], [12]]), torch.tensor([1, 1]))  # no truncate between
    torch.testing.assert_close(out.logits[0, 0], _alone(model, [3, 4, 5, 8, 9, 11])[-1],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(out.logits[1, 0], _alone(model, [6, 7, 10, 12])[-1],
                               atol=ATOL, rtol=0)


def test_without_transformers(model, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError) as e:
        HFTarget(model)
    assert str(e.value) == "HFTarget needs transformers: pip install 'dspark_ext[hf]'"


def test_text_config_and_missing_position_limit():
    """A config with a text sub-config (multimodal models) is read through
    ``get_text_config``; a plain config without ``max_position_embeddings`` gives None."""
    import types
    m = tiny_hf(layers=1)
    real = m.config

    class Outer:
        def get_text_config(self):
            return real

    m.config = Outer()
    t = HFTarget(m)
    assert t.config is real and t.hidden_size == 32 and t.max_positions == 512
    m.config = types.SimpleNamespace(hidden_size=32)
    t = HFTarget(m)
    assert t.hidden_size == 32 and t.max_positions is None and t.config is m.config


class _Named(torch.nn.Module):
    """A causal LM whose forward names its cache argument as the subclass does (no
    ``**kwargs``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.model = inner, inner.config, inner.model

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()


class _PastKeyValues(_Named):
    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=True, logits_to_keep=0):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, cache=past_key_values,
                          use_cache=use_cache, logits_to_keep=logits_to_keep)


class _Cache(_Named):
    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                use_cache=True, logits_to_keep=0):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, cache=cache, use_cache=use_cache,
                          logits_to_keep=logits_to_keep)


@pytest.mark.parametrize("cls", [_PastKeyValues, _Cache])
def test_cache_argument_by_name(model, cls):
    """Older transformers call the cache ``past_key_values``, newer ones ``cache``."""
    t = HFTarget(cls(model))
    t.reset(1)
    t.prefill(torch.tensor([[3, 4]]), torch.tensor([2]))
    out = t.forward(torch.tensor([[5]]), torch.tensor([1]))
    torch.testing.assert_close(out.logits[0, 0], _alone(model, [3, 4, 5])[-1], atol=ATOL,
                               rtol=0)
