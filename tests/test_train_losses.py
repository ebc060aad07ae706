"""The three DSpark losses and their statistics against values computed by hand."""
import math

import pytest
import torch

from dspark_ext.train import LossConfig, combine, loss_terms, position_weights

LN = math.log
# One block, K = 2, V = 2. Draft: p_0 = (0.25, 0.75), p_1 = (0.5, 0.5); target: (0.5, 0.5),
# (0.9, 0.1); data tokens 1, 0; confidences sigmoid(0) = 0.5, sigmoid(ln 4) = 0.8.
DRAFT = torch.tensor([[[[0.0, LN(3.0)], [0.0, 0.0]]]])
TARGET = torch.tensor([[[[0.0, 0.0], [LN(9.0), 0.0]]]])
IDS = torch.tensor([[[1, 0]]])
CONF = torch.tensor([[[0.0, LN(4.0)]]])
W1 = math.exp(-0.25)
CE = (-LN(0.75), -LN(0.5))
L1 = (0.5, 0.8)
CSTAR = (0.75, 0.6)
BCE = (LN(2.0), -(0.6 * LN(0.8) + 0.4 * LN(0.2)))


def _terms(mask=(True, True), config=None, conf=CONF, draft=DRAFT):
    return loss_terms(draft, IDS, torch.tensor([[list(mask)]]), config or LossConfig(), TARGET,
                      conf)


def test_position_weights():
    torch.testing.assert_close(position_weights(3, 4.0),
                               torch.tensor([1.0, math.exp(-0.25), math.exp(-0.5)]))
    assert torch.equal(position_weights(3, None), torch.ones(3))


def test_each_loss_matches_hand_computed_values():
    t = _terms()
    den = 1 + W1
    assert float(t.weight_sum) == pytest.approx(den)
    assert float(t.ce) == pytest.approx(CE[0] + W1 * CE[1], rel=1e-6)
    assert float(t.l1) == pytest.approx(L1[0] + W1 * L1[1], rel=1e-6)
    assert float(t.confidence) == pytest.approx(BCE[0] + W1 * BCE[1], rel=1e-6)
    parts = combine(t, LossConfig(), t.weight_sum)
    expect = (0.1 * (CE[0] + W1 * CE[1]) + 0.9 * (L1[0] + W1 * L1[1])
              + (BCE[0] + W1 * BCE[1])) / den
    assert float(parts["loss"]) == pytest.approx(expect, rel=1e-6)
    assert float(parts["l1"]) == pytest.approx((L1[0] + W1 * L1[1]) / den, rel=1e-6)
    # live estimates: mean c* and tau = 1 + c0 + c0 c1
    assert float(t.stats["c_star"] / t.stats["slots"]) == pytest.approx(sum(CSTAR) / 2)
    assert float(t.stats["tau"] / t.stats["blocks"]) == pytest.approx(1 + 0.75 + 0.75 * 0.6)


def test_unsupervised_slots_do_not_count_and_scale_multiplies():
    t = _terms(mask=(True, False))
    assert float(t.weight_sum) == pytest.approx(1.0)
    assert float(t.ce) == pytest.approx(CE[0], rel=1e-6)
    assert float(t.confidence) == pytest.approx(BCE[0], rel=1e-6)
    one = combine(t, LossConfig(), torch.tensor(2.0))["loss"]
    two = combine(t, LossConfig(), torch.tensor(2.0), scale=2.0)["loss"]
    assert float(two) == pytest.approx(2 * float(one))
    assert float(one) == pytest.approx((0.1 * CE[0] + 0.9 * L1[0] + BCE[0]) / 2, rel=1e-6)


def test_dflash_is_cross_entropy_only():
    cfg = LossConfig.dflash()
    t = loss_terms(DRAFT, IDS, torch.tensor([[[True, True]]]), cfg)
    assert not cfg.needs_target_logits
    parts = combine(t, cfg, t.weight_sum)
    assert float(parts["loss"]) == pytest.approx((CE[0] + W1 * CE[1]) / (1 + W1), rel=1e-6)
    assert float(t.l1) == 0 and float(t.confidence) == 0


def test_confidence_target_is_detached():
    """The BCE trains the confidence head only: no gradient reaches the draft logits."""
    draft = DRAFT.clone().requires_grad_(True)
    conf = CONF.clone().requires_grad_(True)
    t = _terms(config=LossConfig(0.0, 0.0, 1.0), conf=conf, draft=draft)
    combine(t, LossConfig(0.0, 0.0, 1.0), t.weight_sum)["loss"].backward()
    assert draft.grad is None or float(draft.grad.abs().sum()) == 0.0
    # d BCE / dz = sigmoid(z) - c*, weighted and normalised
    expect = torch.tensor([[[0.5 - 0.75, W1 * (0.8 - 0.6)]]]) / (1 + W1)
    torch.testing.assert_close(conf.grad, expect)
