"""Evaluation metrics against hand-computed examples; a drafter that is the target itself is
always accepted at T = 0, and the autoregressive baseline emits the same greedy tokens."""
import pytest
import torch

from dspark_ext import ModelDrafter, SpeculativeDecoder
from dspark_ext.calibration import fit_sts
from dspark_ext.decoding import GenerationStats, RoundStats
from dspark_ext.eval import (EvalConfig, autoregressive, calibration, decoding_metrics,
                             merge_stats, recorded_rounds, run_eval, speedup)

import train_cases as tc


def _stats(verified, accepted, z=None, k=3):
    n = len(verified)
    flags = torch.full((n, k), -1, dtype=torch.int8)
    return GenerationStats(draft_len=k, rounds=[RoundStats(
        torch.arange(n), torch.tensor(verified), torch.tensor(accepted), flags,
        None if z is None else torch.tensor(z, dtype=torch.float32))])


def test_decoding_metrics_by_hand():
    m = decoding_metrics(_stats([3, 3, 2, 3], [0, 3, 1, 2]))
    assert m["rounds"] == 4
    assert m["accepted_length"] == pytest.approx((1 + 4 + 2 + 3) / 4)
    assert m["acceptance_rate"] == pytest.approx(6 / 11)
    assert m["mean_verified"] == pytest.approx(11 / 4)
    # k=0: all 4 reached, 3 accepted; k=1: 3 reached (accepted >= 1, verified > 1), 2 accepted;
    # k=2: 2 reached, 1 accepted
    assert m["conditional_acceptance"] == pytest.approx([3 / 4, 2 / 3, 1 / 2])
    # accept@k = #(accepted > k) / #(verified > k)
    assert m["prefix_survival"] == pytest.approx([3 / 4, 2 / 4, 1 / 3])


def test_merge_recorded_rounds_and_speedup():
    a = _stats([3, 2], [1, 2], z=[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    b = _stats([3], [3], z=[[2.0, 0.0, -1.0]])
    merged = merge_stats([a, b])
    assert merged.accepted().tolist() == [1, 2, 3]
    rec = recorded_rounds(merged, temperatures=[1.0, 2.0, 0.5])
    # row 2 (verified 2, all accepted) does not say how many of 3 the target would accept
    assert rec["accept_len"].tolist() == [1, 3]
    expect = torch.sigmoid(torch.tensor([[0.0, 0.5, 4.0], [2.0, 0.0, -2.0]]))
    torch.testing.assert_close(rec["confidence"], expect)
    assert recorded_rounds(_stats([3], [1])) is None  # no confidence head
    assert speedup(30.0, 10.0) == 3.0 and speedup(None, 10.0) is None
    with pytest.raises(ValueError):
        merge_stats([a, _stats([1], [1], k=2)])


def test_calibration_fits_on_one_split_and_reports_on_the_other():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=g)
    acc = (torch.rand(200, 3, generator=g) < torch.sigmoid(2 * z)).long().cumprod(1).sum(1)
    fit = _stats([3] * 100, acc[:100].tolist(), z[:100].tolist())
    held = _stats([3] * 100, acc[100:].tolist(), z[100:].tolist())
    rep = calibration(fit, held)
    assert rep["temperatures"] == fit_sts(*fit.calibration_inputs()).tolist()
    assert rep["num_rounds"] == 100 and rep["fit_rounds"] == 100
    assert rep["temperatures"][0] < 1.0  # the logits were too flat by a factor 2
    assert calibration(fit, _stats([3], [0])) is None


def test_target_as_its_own_drafter_is_always_accepted_at_t0():
    with tc.one_thread():
        target = tc.trained_target()
        prompts = tc.chain_corpus(6, 5, seed=3).tolist()
        cfg = EvalConfig(temperature=0.0, gamma=4, max_new_tokens=12, batch_size=3, sweep=(),
                         sps_points=())
        res = run_eval(target, ModelDrafter(target), prompts, cfg)
        fixed = res["fixed"]
        assert fixed["acceptance_rate"] == 1.0
        assert fixed["conditional_acceptance"] == [1.0] * 4
        assert fixed["prefix_survival"] == [1.0] * 4
        assert fixed["accepted_length"] > 3.0  # 5 but for the rounds cut by max_new_tokens
        assert res["calibration"] is None and res["rounds"] is None
        assert res["baseline"]["tokens"] == fixed["tokens"] == 6 * 12
        sampled = run_eval(target, ModelDrafter(target), prompts,
                           EvalConfig(temperature=1.0, gamma=4, max_new_tokens=12,
                                      batch_size=3, sweep=(), sps_points=(), baseline=False))
        assert sampled["config"]["verify"] == "token"
        assert sampled["fixed"]["acceptance_rate"] == 1.0  # q = p: min(1, p/q) = 1
        base = autoregressive(target, prompts, cfg)
        spec = SpeculativeDecoder(target, ModelDrafter(target), gamma=4).generate(
            prompts, max_new_tokens=12, temperature=0.0, verify="greedy")
        assert base["new_tokens"] == spec.new_tokens
