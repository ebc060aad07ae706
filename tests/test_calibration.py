"""Sequential Temperature Scaling and calibration metrics (design §5, issue 4).

Synthetic rounds with a known miscalibration: the conditional survival of position k is
sigmoid(z_k / T*_k) while the raw head reports sigmoid(z_k); rounds are verified to random
lengths (valid is a prefix mask) and the prefix-survival label is the cumulative product of
per-position Bernoulli draws.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

from dspark_ext import calibration as cal

# Grid of the recovery test: ratio 1.1 between neighbours, the true temperatures on it.
GRID = torch.tensor([1.1 ** i for i in range(-30, 31)], dtype=torch.float64)
T_STAR = torch.tensor([1.1 ** -5, 1.1 ** 6, 1.0, 1.1 ** 9], dtype=torch.float64)


def synthetic(n=100_000, t_star=T_STAR, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = t_star.numel()
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 1.5 + 1.5
    accept = torch.rand(n, k, generator=g, dtype=torch.float64) < torch.sigmoid(z / t_star)
    survived = torch.cumprod(accept.long(), dim=1).bool()
    length = torch.randint(1, k + 1, (n,), generator=g)
    valid = torch.arange(k)[None, :] < length[:, None]
    return z, survived, valid


@pytest.fixture(scope="module")
def fitted():
    z, y, m = synthetic()
    temps = cal.fit_sts(z, y, m, grid=GRID)
    return z, y, m, temps


def test_recovers_known_temperatures(fitted):
    _, _, _, temps = fitted
    steps = (temps.log() - T_STAR.log()).abs() / math.log(1.1)
    # Within the grid resolution: the true grid point or a neighbour.
    assert (steps <= 1.0 + 1e-9).all(), (temps, T_STAR)


def test_ece_after_under_one_percent(fitted):
    z, y, m, temps = fitted
    rep = cal.calibration_report(z, y, m, temps)
    for s in rep["summary"]:
        before, after = s["ece"]
        assert after < 0.01, s
        assert after < before, s
        # mean predicted vs observed per position, after calibration
        assert abs(s["mean_pred"][1] - s["observed"]) < 0.01, s
    assert rep["temperatures"] == temps.tolist()


def test_order_preserved(fitted):
    z, y, m, temps = fitted
    before = cal.position_metrics(torch.sigmoid(z), y, m)
    after = cal.position_metrics(cal.apply_sts(z, temps), y, m)
    for b, a in zip(before, after):
        # Each position's conditional confidence is a monotone map of z_k: AUC unchanged.
        assert a["auc_conditional"] == pytest.approx(b["auc_conditional"], abs=1e-12)
    # Position 0: the cumulative product is the conditional confidence itself.
    assert after[0]["auc"] == pytest.approx(before[0]["auc"], abs=1e-12)


def test_coarse_to_fine_matches_exhaustive():
    z, y, m = synthetic(n=30_000, seed=3)
    fast = cal.fit_sts(z, y, m)
    full = cal.fit_sts(z, y, m, exhaustive=True)
    assert torch.equal(fast, full)


def test_metrics_on_known_values():
    pred = torch.tensor([0.1, 0.4, 0.35, 0.8])
    label = torch.tensor([0, 0, 1, 1])
    assert cal.auc(pred, label) == pytest.approx(0.75)
    assert cal.auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(0.5)
    assert cal.brier(pred, label) == pytest.approx(((pred - label) ** 2).mean().item())
    # bins: 0.1 -> 2, 0.4 -> 8, 0.35 -> 7, 0.8 -> 16; each alone
    assert cal.ece(pred, label) == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)
    assert cal.ece(torch.tensor([1.0]), torch.tensor([1])) == 0.0  # p = 1 lands in the last bin


def _no_nan(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_no_nan(v) for v in obj)
    return True


@pytest.mark.parametrize("case", ["all_survived", "none_survived", "never_reached"])
def test_degenerate_inputs(case, tmp_path):
    z, y, m = synthetic(n=5_000, seed=1)
    if case == "all_survived":
        y = torch.ones_like(y)
    elif case == "none_survived":
        y = torch.zeros_like(y)
    else:
        m = m.clone()
        m[:, 2:] = False  # positions 2, 3 never verified
    temps = cal.fit_sts(z, y, m)
    assert torch.isfinite(temps).all() and (temps > 0).all()
    if case == "never_reached":
        assert temps[2:].tolist() == [1.0, 1.0]
    rep = cal.calibration_report(z, y, m, temps)
    assert _no_nan(rep)
    if case == "never_reached":
        assert rep["after"][3]["n"] == 0 and rep["after"][3]["ece"] is None
    if case != "never_reached":
        assert rep["after"][0]["auc"] is None  # one class only: undefined, not NaN
    path = cal.save_report(rep, str(tmp_path / "calib.json"))
    with open(path) as f:
        text = f.read()
    assert "NaN" not in text
    json.loads(text)
    assert os.path.exists(cal.plot_reliability(rep, str(tmp_path / "rel")))


def test_report_and_plot(fitted, tmp_path):
    z, y, m, temps = fitted
    rep = cal.calibration_report(z[:20_000], y[:20_000], m[:20_000], temps)
    path = cal.plot_reliability(rep, str(tmp_path / "reliability"))
    assert path.endswith((".png", ".svg")) and os.path.getsize(path) > 0
    cal.save_report(rep, str(tmp_path / "calibration.json"))
    with open(tmp_path / "calibration.json") as f:
        back = json.load(f)
    assert len(back["summary"]) == 4 and len(back["before"][0]["reliability"]["count"]) == 20


def test_apply_sts_and_bad_input():
    z = torch.tensor([[0.0, 2.0]])
    c = cal.apply_sts(z, torch.tensor([1.0, 2.0]))
    assert torch.allclose(c, torch.sigmoid(torch.tensor([[0.0, 1.0]])))
    assert torch.allclose(cal.prefix_survival(c), c.cumprod(-1))
    with pytest.raises(ValueError, match="temperatures"):
        cal.apply_sts(z, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="> 0"):
        cal.apply_sts(z, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="survived"):
        cal.fit_sts(z, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="finite"):
        cal.fit_sts(torch.tensor([[float("nan"), 0.0]]), torch.ones(1, 2, dtype=torch.bool))
