"""Per-position temperature plus bias, the bootstrap ECE interval and the module split (tiny
synthetic data, no downloads)."""
import pytest
import torch

from dspark_ext.bundled.calibrate import choose, module_split
from dspark_ext.calibration import (apply_platt, ece_with_interval, fit_platt, fit_sts,
                                    prefix_survival)


def _rounds(n, k, scale, bias, seed=0):
    """Rounds whose conditional acceptance at each position is sigmoid(scale z + bias)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 1.5
    ok = torch.rand(n, k, generator=g, dtype=torch.float64) < torch.sigmoid(scale * z + bias)
    survived = torch.cumprod(ok.long(), dim=1).bool()
    return z, survived, torch.ones(n, k, dtype=torch.bool)


def test_platt_recovers_scale_and_bias_per_position():
    z, y, m = _rounds(20000, 3, 2.0, -1.0)
    p = fit_platt(z, y, m)
    assert p.shape == (3, 2)
    assert torch.allclose(p[:, 0], torch.full((3,), 2.0, dtype=torch.float64), atol=0.2)
    assert torch.allclose(p[:, 1], torch.full((3,), -1.0, dtype=torch.float64), atol=0.2)


def test_platt_transfers_where_sts_cannot():
    """A shifted head (the T = 0 label mismatch): a bias fixes it, a temperature cannot."""
    zf, yf, mf = _rounds(20000, 2, 1.0, -1.5, seed=1)
    zs, ys, ms = _rounds(20000, 2, 1.0, -1.5, seed=2)
    platt = ece_with_interval(prefix_survival(apply_platt(zs, fit_platt(zf, yf, mf))), ys, ms)
    sts = fit_sts(zf, yf, mf)
    sts_rep = ece_with_interval(prefix_survival(torch.sigmoid(zs / sts)), ys, ms)
    assert all(r["ece"] < 0.015 for r in platt)
    assert sts_rep[0]["ece"] > platt[0]["ece"]
    assert choose({"platt": platt, "sts": sts_rep}) == "platt"


def test_platt_keeps_identity_without_rounds():
    z = torch.zeros(4, 3)
    y = torch.zeros(4, 3, dtype=torch.bool)  # nobody survives position 0
    p = fit_platt(z, y, torch.ones(4, 3, dtype=torch.bool))
    assert p[1:].tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_platt_errors_name_the_argument():
    z, y, m = _rounds(10, 3, 1.0, 0.0)
    with pytest.raises(ValueError, match="ridge"):
        fit_platt(z, y, m, ridge=0)
    with pytest.raises(ValueError, match="params"):
        apply_platt(z, torch.ones(2, 2))


def test_bootstrap_interval_and_judging():
    z, y, m = _rounds(1200, 2, 1.0, 0.0)
    bad = torch.full_like(z, 0.95)  # far too confident
    rep = ece_with_interval(bad, y, m, samples=200, min_rounds=500)
    assert [r["judged"] for r in rep] == [True, True]
    for r in rep:
        assert r["lo"] <= r["ece"] <= r["hi"] and r["lo"] > 0.2
    assert rep == ece_with_interval(bad, y, m, samples=200, min_rounds=500)  # seeded
    few = ece_with_interval(bad[:100], y[:100], m[:100], samples=50, min_rounds=500)
    assert not few[0]["judged"] and few[0]["ece"] is not None
    with pytest.raises(ValueError, match="prefix_pred"):
        ece_with_interval(bad + 1, y, m)


def test_module_split_keeps_modules_apart():
    prompts = [{"module": m} for m in "aaabbbbcdd"]
    fit, score = module_split(prompts)
    assert {p["module"] for p in fit} == {"a", "b"}
    assert {p["module"] for p in score} == {"c", "d"}
    with pytest.raises(ValueError, match="prompts"):
        module_split([{"module": "a"}])
