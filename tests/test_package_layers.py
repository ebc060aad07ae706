"""The package's layers and protocols (design §11-§13): old module paths are the same module
objects as the new ones; the decoder's new inputs (method=, record_stats=, observers=) and
clear errors (out-of-vocabulary prompts, seeds beyond int64); the rollback rule."""
import importlib

import pytest
import torch

import dspark_ext
from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder
from dspark_ext.decoding import GenerationStats
from dspark_ext.drafters.base import kept_draft_state
from tiny_models import tiny_hf

V = 64

MOVED = [("dspark_ext.reference_markov", "dspark_ext.reference.markov"),
         ("dspark_ext.reference_schedule", "dspark_ext.reference.schedule"),
         ("dspark_ext.reference_drafter", "dspark_ext.reference.drafter"),
         ("dspark_ext.markov", "dspark_ext.ops.markov"),
         ("dspark_ext.sampling", "dspark_ext.ops.sampling"),
         ("dspark_ext._fake", "dspark_ext.ops.verify_fake"),
         ("dspark_ext.targets.hf", "dspark_ext.targets.hf_target"),
         ("dspark_ext.decoding.profile", "dspark_ext.profiling"),
         ("dspark_ext.vllm_plugin", "dspark_ext.integrations.vllm"),
         ("dspark_ext.vllm_plugin.layout", "dspark_ext.integrations.vllm.layout")]


@pytest.mark.parametrize("old,new", MOVED)
def test_old_module_paths_are_the_new_modules(old, new):
    mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert mod.__name__ == new and mod.__spec__.name == new  # its one true name is kept


def test_public_names_unchanged():
    import dspark_ext.hf
    from dspark_ext import reference

    assert dspark_ext.hf.generate is dspark_ext.integrations.hf_generate.generate
    assert dspark_ext.rejection_sample is dspark_ext.ops.verify.rejection_sample
    assert reference.VerifyResult is dspark_ext.VerifyResult  # one definition
    assert dspark_ext.scheduler.schedule_causal is dspark_ext.ops.schedule.schedule_causal


@pytest.fixture(scope="module")
def target():
    m = tiny_hf("qwen3", vocab=V, layers=2, seed=3, max_positions=64)
    m.generation_config.eos_token_id = None
    return m


@pytest.mark.parametrize("bad", [-1, V, V + 100])
def test_out_of_vocabulary_prompt_is_a_clear_error(target, bad):
    dec = SpeculativeDecoder(target, NgramDrafter(), gamma=2)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, bad, 7]])
    with pytest.raises(ValueError, match=rf"input_ids row 1 holds token id {bad} .*\[0, {V}\)"):
        dec.generate(ids, max_new_tokens=4)
    # Padding outside the attention mask may hold anything.
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    dec.generate(ids, attention_mask=mask, max_new_tokens=2)


def test_seed_beyond_int64_is_a_clear_error(target):
    dec = SpeculativeDecoder(target, NgramDrafter(), gamma=2)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="seed must fit in int64"):
        dec.generate(ids, max_new_tokens=2, seed=2 ** 63)
    with pytest.raises(ValueError, match="seed must fit in int64"):
        dec.generate(ids, max_new_tokens=2, seed=2 ** 63 - 1)  # row 1 would overflow
    dec.generate(ids, max_new_tokens=2, seed=2 ** 63 - 2)
    logits = torch.zeros(2, 1, V)
    empty = torch.zeros(2, 0, dtype=torch.int64)
    with pytest.raises(ValueError, match="seed must fit in int64"):
        dspark_ext.rejection_sample(logits, empty, None, 1.0, 2 ** 64, 0)
    with pytest.raises(ValueError, match="offset must fit in int64"):
        dspark_ext.rejection_sample(logits, empty, None, 1.0, 0, -(2 ** 63) - 1)


def test_method_and_its_older_name(target):
    ids = torch.tensor([[1, 2, 3, 1, 2]])
    dec = SpeculativeDecoder(target, NgramDrafter(), gamma=3, method="block")
    assert dec.method == dec.verify == "block"
    a = dec.generate(ids, max_new_tokens=12, temperature=1.0, seed=5, method="token")
    b = dec.generate(ids, max_new_tokens=12, temperature=1.0, seed=5, verify="token")
    assert a.new_tokens == b.new_tokens
    with pytest.raises(ValueError, match="method=.*verify="):
        dec.generate(ids, method="token", verify="block")
    with pytest.raises(ValueError, match="verify"):
        dec.generate(ids, method="tree")


class _Count:
    def __init__(self):
        self.rows = []

    def on_round(self, rows, num_draft, accepted, result, block):
        assert accepted.device.type == "cpu" and accepted.shape == rows.shape
        self.rows.append(rows.tolist())


def test_statistics_and_observers_are_opt_in(target):
    ids = torch.tensor([[1, 2, 3, 1, 2], [7, 8, 9, 7, 8]])
    dec = SpeculativeDecoder(target, ModelDrafter(tiny_hf("qwen3", vocab=V, layers=1, seed=4)),
                             gamma=3)
    full = dec.generate(ids, max_new_tokens=10)
    count = _Count()
    bare = dec.generate(ids, max_new_tokens=10, record_stats=False, observers=[count])
    assert bare.new_tokens == full.new_tokens
    assert bare.stats.num_rounds == 0 and full.stats.num_rounds == len(count.rows) > 0
    assert count.rows == [r.rows.tolist() for r in full.stats.rounds]


def test_generation_stats_gamma_and_its_older_name():
    assert GenerationStats(4).gamma == GenerationStats(draft_len=4).draft_len == 4
    with pytest.raises(TypeError, match="gamma"):
        GenerationStats()
    with pytest.raises(TypeError, match="gamma"):
        GenerationStats(4, draft_len=4)


def test_rollback_rule():
    processed = torch.tensor([4, 4, 4, 0])
    assert kept_draft_state(processed, torch.tensor([0, 2, 4, 3])).tolist() == [1, 3, 4, 0]
    assert kept_draft_state(processed, None).tolist() == [0, 0, 0, 0]


def test_model_drafter_keeps_what_the_rule_allows(target):
    """The draft model runs each committed token once: after a round it refeeds only the last
    draft, and only when all gamma were accepted (keeping less is a silent slow-down)."""
    gamma = 2
    drafter = ModelDrafter(tiny_hf("qwen3", vocab=V, layers=1, seed=8))
    fed = []
    forward = drafter.lm.forward
    drafter.lm.forward = lambda tokens, lengths: (fed.append(int(lengths.sum())),
                                                  forward(tokens, lengths))[1]
    checked = 0
    for seed in range(5):
        fed.clear()
        out = SpeculativeDecoder(target, drafter, gamma=gamma).generate(
            torch.tensor([[1, 2, 3, 4]]), max_new_tokens=40, temperature=1.0, seed=seed)
        accepted = [int(r.accepted[0]) for r in out.stats.rounds]
        refeed = [0] + [int(a == gamma) for a in accepted[:-1]]
        assert sum(fed) == sum(r + gamma for r in refeed)
        checked += 0 < sum(refeed) < len(refeed)  # rounds of both kinds
    assert checked > 0
