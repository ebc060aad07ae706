"""A few hundred steps on a tiny target with learnable structure lower all three losses and
raise the acceptance the speculative decoder measures (DSpark); DFlash trains on CE alone."""
import pytest

from dspark_ext import SpeculativeDecoder
from dspark_ext.train import LossConfig, OnlineTarget, TrainConfig, Trainer

import train_cases as tc


def _tau(target, drafter) -> float:
    prompts = tc.chain_corpus(8, 6, seed=77)
    dec = SpeculativeDecoder(target, drafter.eval(), verify="greedy")
    out = dec.generate(prompts, max_new_tokens=24, temperature=0.0)
    drafter.train()
    return out.stats.accepted_length()


def _mean(records, key):
    return sum(r[key] for r in records) / len(records)


@pytest.mark.slow
def test_dspark_training_reduces_losses_and_raises_acceptance(tmp_path):
    with tc.one_thread():
        target = tc.trained_target()
        drafter = tc.fresh_drafter(target)
        before = _tau(target, drafter)
        cfg = TrainConfig(out_dir=str(tmp_path), steps=300, micro_batch=4, lr=3e-3,
                          progress=False, save_final=False, log_every=100)
        recs = Trainer(OnlineTarget(target, tc.LAYER_IDS), drafter, tc.examples(64, 48),
                       cfg).train()
        after = _tau(target, drafter)
    head, tail = recs[:20], recs[-20:]
    for key in ("ce", "l1", "confidence"):
        assert _mean(tail, key) < 0.9 * _mean(head, key), key
    assert _mean(tail, "c_star_mean") > _mean(head, "c_star_mean") + 0.2
    assert _mean(tail, "tau_estimate") > _mean(head, "tau_estimate") + 0.5
    assert after > before + 0.8, (before, after)


@pytest.mark.slow
def test_dflash_baseline_trains_on_cross_entropy(tmp_path):
    with tc.one_thread():
        target = tc.trained_target()
        drafter = tc.fresh_drafter(target, markov=False, confidence=False)
        cfg = TrainConfig(out_dir=str(tmp_path), steps=60, micro_batch=4, lr=3e-3,
                          loss=LossConfig.dflash(), progress=False, save_final=False)
        recs = Trainer(OnlineTarget(target, tc.LAYER_IDS), drafter, tc.examples(32, 48),
                       cfg).train()
    assert drafter.markov_head is None and drafter.confidence_head is None
    assert all(r["confidence"] == 0 and abs(r["loss"] - r["ce"]) < 1e-9 for r in recs)
    assert _mean(recs[-10:], "ce") < 0.9 * _mean(recs[:10], "ce")
    # the L1 distance and c* are still measured (live estimates), outside the loss
    assert _mean(recs[-10:], "c_star_mean") > _mean(recs[:10], "c_star_mean")
