"""Known-value tests of the calibration report, the per-position Platt fit, the bootstrap ECE
interval and the reliability diagrams (issue 21: kills the mutants that the recovery tests of
test_calibration.py / test_calibration_platt.py let through). Tiny synthetic data."""
import json
import struct
import xml.etree.ElementTree as ET

import pytest
import torch

from dspark_ext import calibration as cal
from dspark_ext import plotting
from dspark_ext.calibration import platt as platt_mod


def _rounds(n, k, scale=1.0, bias=0.0, seed=0):
    """n rounds of k positions; conditional survival sigmoid(scale z + bias), all verified."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 1.5
    ok = torch.rand(n, k, generator=g, dtype=torch.float64) < torch.sigmoid(scale * z + bias)
    return z, torch.cumprod(ok.long(), 1).bool(), torch.ones(n, k, dtype=torch.bool)


# ---------------------------------------------------------------- calibration_report / save

def test_report_fields_and_bins(tmp_path):
    z, y, m = _rounds(300, 3, seed=1)
    m[::3, 2] = False
    rep = cal.calibration_report(z, y, m, [1.1, 0.7, 2.0], bins=5)
    assert (rep["num_rounds"], rep["positions"], rep["bins"]) == (300, 3, 5)
    assert rep["temperatures"] == [1.1, 0.7, 2.0]  # float64, not rounded through float32
    assert rep["before"] == cal.position_metrics(torch.sigmoid(z), y, m, 5)
    t = torch.tensor([1.1, 0.7, 2.0], dtype=torch.float64)
    assert rep["after"] == cal.position_metrics(cal.apply_sts(z, t), y, m, 5)
    for b in rep["before"] + rep["after"]:
        assert len(b["reliability"]["count"]) == 5
    for k, s in enumerate(rep["summary"]):
        b, a = rep["before"][k], rep["after"][k]
        assert s == {"ece": (b["ece"], a["ece"]), "auc": (b["auc"], a["auc"]),
                     "brier": (b["brier"], a["brier"]),
                     "mean_pred": (b["mean_pred"], a["mean_pred"]),
                     "position": k, "n": b["n"], "observed": b["observed"]}
    assert rep["summary"][2]["n"] == 200
    path = cal.save_report(rep, str(tmp_path / "r.json"))
    assert path == str(tmp_path / "r.json")
    text = open(path).read()
    assert text == json.dumps(rep, indent=1)  # one space per level
    assert json.loads(text)["bins"] == 5


# ---------------------------------------------------------------- Platt

def _objective(w, z, y, ridge):
    s = w[0] * z + w[1]
    return (torch.nn.functional.softplus(s) - y * s).mean() + 0.5 * ridge * (
        (w[0] - 1) ** 2 + w[1] ** 2)


def _argmin(z, y, ridge):
    """The regularised logistic fit by plain Newton in the test (autograd derivatives)."""
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for _ in range(100):
        g = torch.autograd.functional.jacobian(lambda v: _objective(v, z, y, ridge), w)
        h = torch.autograd.functional.hessian(lambda v: _objective(v, z, y, ridge), w)
        w = w - torch.linalg.solve(h, g)
    return w


@pytest.mark.parametrize("ridge", [1e-3, 0.3, 5.0])
def test_platt_is_the_regularised_minimum(ridge):
    z, y, m = _rounds(400, 2, scale=2.5, bias=1.0, seed=3)
    p = cal.fit_platt(z, y, m, ridge=ridge)
    assert torch.allclose(p[0], _argmin(z[:, 0], y[:, 0].double(), ridge), atol=1e-6)
    sel = y[:, 0]  # position 1: the conditional label, rounds where token 0 survived
    assert torch.allclose(p[1], _argmin(z[sel, 1], y[sel, 1].double(), ridge), atol=1e-6)


def test_platt_one_newton_step_from_the_identity():
    """iters=1: one Newton step of the regularised loss from (1, 0) (here a full step
    lowers the loss, so no damping)."""
    z, y, m = _rounds(400, 1, scale=1.3, bias=0.4, seed=4)
    ridge = 0.5
    zz, yy = z[:, 0], y[:, 0].double()
    w0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.autograd.functional.jacobian(lambda v: _objective(v, zz, yy, ridge), w0)
    h = torch.autograd.functional.hessian(lambda v: _objective(v, zz, yy, ridge), w0)
    w1 = w0 - torch.linalg.solve(h, g)
    assert _objective(w1, zz, yy, ridge) < _objective(w0, zz, yy, ridge)
    p = cal.fit_platt(z, y, m, ridge=ridge, iters=1)
    assert torch.allclose(p[0], w1, atol=1e-10)
    assert not torch.allclose(p[0], _argmin(zz, yy, ridge), atol=1e-6)  # one step is not all


@pytest.mark.parametrize("labels, ridge", [([1, 0, 1, 0, 1, 0], 1e-3),
                                           ([1, 1, 0, 0, 0, 1], 1.0)])
def test_platt_damps_an_overshooting_step(labels, ridge):
    """Labels against a confident head: the full Newton step raises the loss, the fit
    halves it; every accepted step lowers the loss (ridge term included), and the result is
    the minimum."""
    z = torch.tensor([-8.0, -4.0, 4.0, 8.0, 6.0, -2.0] * 4, dtype=torch.float64)
    y = torch.tensor(labels * 4, dtype=torch.float64)
    w0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.autograd.functional.jacobian(lambda v: _objective(v, z, y, ridge), w0)
    h = torch.autograd.functional.hessian(lambda v: _objective(v, z, y, ridge), w0)
    full = w0 - torch.linalg.solve(h, g)
    assert _objective(full, z, y, ridge) > _objective(w0, z, y, ridge)  # the case under test
    w1 = platt_mod._fit_one(z, y, ridge, 1)
    assert _objective(w1, z, y, ridge) < _objective(w0, z, y, ridge)
    scale = float((w0 - w1)[0] / (w0 - full)[0])
    assert any(scale == pytest.approx(0.5 ** j, rel=1e-9) for j in range(1, 21))  # halved
    # the largest halving that does not raise the loss
    assert _objective(w0 - 2 * scale * (w0 - full), z, y, ridge) > _objective(w0, z, y, ridge)
    assert torch.allclose(w0 - w1, scale * (w0 - full), atol=1e-12)
    w = platt_mod._fit_one(z, y, ridge, 200)  # stationary: the regularised minimum
    grad = torch.autograd.functional.jacobian(lambda v: _objective(v, z, y, ridge), w)
    assert float(grad.abs().max()) < 1e-8


def test_platt_keeps_the_identity_where_it_is_optimal():
    """z = 0 everywhere and half the rounds survive: (1, 0) is the exact minimum."""
    z = torch.zeros(8, 1, dtype=torch.float64)
    y = torch.tensor([1, 0] * 4, dtype=torch.bool)[:, None]
    assert cal.fit_platt(z, y).tolist() == [[1.0, 0.0]]


def test_platt_valid_mask_and_iters():
    z, y, m = _rounds(300, 2, scale=2.0, seed=5)
    m[150:, :] = False
    y2 = y.clone()
    y2[150:] = ~y2[150:]  # labels outside valid are ignored
    assert torch.equal(cal.fit_platt(z, y2, m), cal.fit_platt(z[:150], y[:150]))
    with pytest.raises(ValueError, match="iters"):
        cal.fit_platt(z, y, m, iters=0)
    assert cal.fit_platt(z, y, m, iters=1).shape == (2, 2)


def test_apply_platt_values_dtypes_and_errors():
    params = torch.tensor([[2.0, -0.5], [0.5, 0.25], [1.5, 0.0]], dtype=torch.float64)
    z = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    out = cal.apply_platt(z, params)
    assert out.dtype == torch.float64
    assert torch.allclose(out, torch.sigmoid(torch.tensor([[1.5, -0.75, 0.75]],
                                                          dtype=torch.float64)))
    zi = torch.tensor([[1, -2, 3]])
    oi = cal.apply_platt(zi, params)
    assert oi.dtype == torch.float32
    assert torch.allclose(oi, torch.sigmoid(torch.tensor([[1.5, -0.75, 4.5]])))
    assert cal.apply_platt(z.float(), params).dtype == torch.float32
    z3 = torch.zeros(2, 4, 3)
    assert cal.apply_platt(z3, params).shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"K = 3, got shape \(2, 2\)"):
        cal.apply_platt(z3, torch.ones(2, 2))
    with pytest.raises(ValueError, match="^params must be finite$"):
        cal.apply_platt(z, params * float("inf"))


# ---------------------------------------------------------------- bootstrap

def _ece_direct(p, y, bins):
    tot = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        tot += abs(float((p[sel] - y[sel]).sum()))
    return tot / len(p)


def _interval_direct(p, y, m, samples, seed, bins):
    """Every position in turn draws ``samples`` resamples (n indices each) from one seeded
    generator; lo / hi are the 2.5% / 97.5% quantiles of their ECEs."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(p.shape[1]):
        pk, yk = p[m[:, k], k], y[m[:, k], k].double()
        n = len(pk)
        idx = torch.randint(0, n, (samples, n), generator=g)
        e = torch.tensor([_ece_direct(pk[i], yk[i], bins) for i in idx], dtype=torch.float64)
        q = torch.quantile(e, torch.tensor([0.025, 0.975], dtype=torch.float64))
        out.append((_ece_direct(pk, yk, bins), float(q[0]), float(q[1])))
    return out


def test_bootstrap_matches_a_direct_resampling():
    g = torch.Generator().manual_seed(6)
    p = torch.rand(40, 2, generator=g, dtype=torch.float64)
    y = torch.rand(40, 2, generator=g) < 0.5
    m = torch.ones(40, 2, dtype=torch.bool)
    m[25:, 1] = False
    rep = cal.ece_with_interval(p, y, m, samples=300, seed=3, bins=4, min_rounds=25)
    ref = _interval_direct(p, y & m, m, 300, 3, 4)
    for k, (row, (e, lo, hi)) in enumerate(zip(rep, ref)):
        assert set(row) == {"position", "n", "ece", "lo", "hi", "judged"}
        assert row["position"] == k and row["n"] == (40, 25)[k]
        assert row["judged"]  # n >= min_rounds, n == min_rounds included
        assert row["ece"] == pytest.approx(e, abs=1e-12)
        assert row["lo"] == pytest.approx(lo, abs=1e-12)
        assert row["hi"] == pytest.approx(hi, abs=1e-12)


def test_bootstrap_defaults_and_limits():
    g = torch.Generator().manual_seed(7)
    p = torch.rand(500, 1, generator=g, dtype=torch.float64)
    y = torch.rand(500, 1, generator=g) < p
    rep = cal.ece_with_interval(p, y, samples=3)
    assert rep == cal.ece_with_interval(p, y, samples=3, seed=0, min_rounds=500, bins=20)
    assert rep[0]["judged"]  # exactly the default 500 rounds
    assert not cal.ece_with_interval(p[:499], y[:499], samples=3)[0]["judged"]
    one = cal.ece_with_interval(p[:30], y[:30], samples=1, min_rounds=1)[0]
    assert one["lo"] == one["hi"] and one["judged"]
    edges = torch.tensor([[0.0], [1.0], [0.5]], dtype=torch.float64)
    assert cal.ece_with_interval(edges, torch.tensor([[False], [True], [True]]),
                                 samples=2)[0]["ece"] == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="samples"):
        cal.ece_with_interval(p, y, samples=0)
    with pytest.raises(ValueError, match="min_rounds"):
        cal.ece_with_interval(p, y, min_rounds=0)
    with pytest.raises(ValueError, match=r"^prefix_pred must lie in \[0, 1\] at every valid "):
        cal.ece_with_interval(-edges, torch.zeros(3, 1, dtype=torch.bool))


def test_bootstrap_default_sample_count():
    """The default 1000 resamples: the interval equals the direct one with 1000 draws."""
    g = torch.Generator().manual_seed(8)
    p = torch.rand(12, 1, generator=g, dtype=torch.float64)
    y = torch.rand(12, 1, generator=g) < 0.5
    m = torch.ones(12, 1, dtype=torch.bool)
    row = cal.ece_with_interval(p, y, bins=20)[0]
    _, lo, hi = _interval_direct(p, y, m, 1000, 0, 20)[0]
    assert (row["lo"], row["hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_default_grid():
    g = cal.default_grid()
    assert g.dtype == torch.float64 and g.shape == (241,)
    assert float(g[0]) == pytest.approx(0.05, rel=1e-12)
    assert float(g[-1]) == pytest.approx(20.0, rel=1e-12)
    assert int((g == 1.0).sum()) == 1 and int(torch.argmin((g - 1.0).abs())) == 120
    ratio = g[1:] / g[:-1]
    ratio = torch.cat([ratio[:119], ratio[121:]])  # the two neighbours of the exact 1.0
    assert torch.allclose(ratio, torch.full_like(ratio, (400.0) ** (1 / 240)), rtol=1e-9)
