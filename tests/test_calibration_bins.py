"""ECE binning and the calibration metrics on and near bin edges, against a direct
reimplementation in this file (bin b holds b / B <= p < (b + 1) / B; p = 1 in the last bin),
and STS's grid search against an exhaustive search with that reference ECE."""
import math
import random

import pytest
import torch

from dspark_ext import calibration as cal


def ref_bin(p, bins):
    """The bin of p by comparison with the edges (no multiply-and-floor)."""
    for b in range(bins):
        if p < (b + 1) / bins:
            return b
    return bins - 1


def ref_ece(pred, label, bins=20, binning=ref_bin):
    groups = {}
    for p, y in zip(pred, label):
        groups.setdefault(binning(p, bins), []).append((p, y))
    n = len(pred)
    return sum(len(g) / n * abs(sum(p for p, _ in g) / len(g) - sum(y for _, y in g) / len(g))
               for g in groups.values())


def ref_auc(score, label):
    pos = [s for s, y in zip(score, label) if y]
    neg = [s for s, y in zip(score, label) if not y]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_ece_on_bin_edges_by_hand():
    # 4 bins, dyadic edges (exact): 0.25 belongs to bin 1, 0.5 to bin 2, 1.0 to bin 3.
    pred = [0.25, 0.25 - 1e-9, 0.5, 0.5 - 1e-9, 1.0, 0.75, 0.0]
    label = [1, 0, 0, 1, 1, 0, 0]
    # bins: 0 {0.25-e (0), 0.0 (0)}, 1 {0.25 (1), 0.5-e (1)}, 2 {0.5 (0)}, 3 {1.0 (1), 0.75 (0)}
    by_hand = (abs(0.25 - 1e-9 + 0.0 - 0) + abs(0.25 + 0.5 - 1e-9 - 2) + abs(0.5 - 0)
               + abs(1.0 + 0.75 - 1)) / 7
    assert cal.ece(torch.tensor(pred, dtype=torch.float64), torch.tensor(label), bins=4) == \
        pytest.approx(by_hand, abs=1e-12)
    assert ref_ece(pred, label, 4) == pytest.approx(by_hand, abs=1e-12)


def test_ece_values_sharing_a_bin_with_different_labels():
    # Pairs straddling an edge have opposite labels: floor binning separates them, a binning
    # shifted by one (or rounding to the nearest edge) merges them and the errors cancel.
    pred = [0.049, 0.051, 0.349, 0.351, 0.649, 0.651, 0.94, 0.951, 0.999, 0.5, 0.52]
    label = [1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    want = ref_ece(pred, label)
    assert cal.ece(torch.tensor(pred, dtype=torch.float64), torch.tensor(label)) == \
        pytest.approx(want, abs=1e-12)
    # float32 input: binned as given (no shift across an edge from the float64 cast).
    assert cal.ece(torch.tensor(pred), torch.tensor(label)) == pytest.approx(want, abs=1e-7)
    for wrong in (lambda p, b: min(b - 1, round(p * b)),        # nearest edge
                  lambda p, b: min(b - 1, ref_bin(p, b) + 1),   # shifted up by one
                  lambda p, b: max(0, ref_bin(p, b) - 1),       # shifted down by one
                  lambda p, b: int(p * (b - 1)),                # b - 1 bins
                  lambda p, b: max(0, math.ceil(p * b) - 1)):   # edges in the lower bin
        assert abs(want - ref_ece(pred, label, 20, wrong)) > 0.005  # binning matters


@pytest.mark.parametrize("bins", [4, 8, 20, 32])
def test_ece_near_edges_random(bins):
    rng = random.Random(bins)
    pred, label = [], []
    for _ in range(400):
        edge = rng.randrange(bins + 1) / bins
        p = min(1.0, max(0.0, edge + rng.choice([-1, 1, 0]) * rng.choice([1e-9, 1e-6, 1e-3])))
        if bins & (bins - 1):      # non-dyadic edges: stay off the edge itself (float fuzz)
            p = min(1.0, max(0.0, edge + rng.choice([-1, 1]) * 1e-6))
        pred.append(p)
        label.append(rng.random() < p)
    pred_t = torch.tensor(pred, dtype=torch.float64)
    got = cal.ece(pred_t, torch.tensor(label), bins=bins)
    assert got == pytest.approx(ref_ece(pred, label, bins), abs=1e-12)
    # The reliability bins of position_metrics use the same binning.
    rel = cal.position_metrics(pred_t[:, None], torch.tensor(label)[:, None],
                               bins=bins)[0]["reliability"]
    counts = [0] * bins
    for p in pred:
        counts[ref_bin(p, bins)] += 1
    assert rel["count"] == counts
    for b in range(bins):
        members = [(p, y) for p, y in zip(pred, label) if ref_bin(p, bins) == b]
        if members:
            assert rel["mean_pred"][b] == pytest.approx(sum(p for p, _ in members) / len(members))
            assert rel["observed"][b] == pytest.approx(sum(y for _, y in members) / len(members))
        else:
            assert rel["mean_pred"][b] is None and rel["observed"][b] is None


def test_ece_extremes():
    assert cal.ece(torch.tensor([0.0, 1.0]), torch.tensor([0, 1])) == 0.0
    assert cal.ece(torch.tensor([1.0]), torch.tensor([0])) == 1.0
    assert cal.ece(torch.tensor([0.0]), torch.tensor([1])) == 1.0
    assert cal.ece(torch.tensor([]), torch.tensor([])) is None
    # A perfectly calibrated bin: mean prediction equals the observed rate.
    assert cal.ece(torch.tensor([0.3, 0.3, 0.3, 0.2]), torch.tensor([1, 0, 0, 0]),
                   bins=10) == pytest.approx(0.25 * 0.2 + 0.75 * abs(0.3 - 1 / 3))


def test_auc_and_brier_against_reference():
    rng = random.Random(7)
    score = [rng.choice([0.1, 0.2, 0.2, 0.5, 0.9]) for _ in range(60)]   # many ties
    label = [rng.random() < s for s in score]
    score_t = torch.tensor(score, dtype=torch.float64)
    assert cal.auc(score_t, torch.tensor(label)) == pytest.approx(ref_auc(score, label),
                                                                  abs=1e-12)
    assert cal.brier(score_t, torch.tensor(label)) == pytest.approx(
        sum((s - y) ** 2 for s, y in zip(score, label)) / 60, abs=1e-12)
    assert cal.auc(torch.tensor([0.3, 0.3]), torch.tensor([1, 1])) is None
    assert cal.brier(torch.tensor([]), torch.tensor([])) is None
    assert cal.auc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 1])) == 1.0
    assert cal.auc(torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0, 1, 1])) == 0.0


def synthetic(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 2 + 1
    survived = torch.cumprod((torch.rand(n, k, generator=g, dtype=torch.float64)
                              < torch.sigmoid(z / 2)).long(), 1).bool()
    length = torch.randint(0, k + 1, (n,), generator=g)
    valid = torch.arange(k)[None, :] < length[:, None]
    return z, survived, valid


def test_position_metrics_against_reference():
    z, y, m = synthetic(300, 3, seed=2)
    c = torch.sigmoid(z)
    got = cal.position_metrics(c, y, m)
    a = torch.cumprod(c, 1)
    for k, pos in enumerate(got):
        rows = [i for i in range(300) if m[i, k]]
        pk = [float(a[i, k]) for i in rows]
        yk = [bool(y[i, k]) for i in rows]
        cond = [i for i in rows if k == 0 or y[i, k - 1]]
        assert pos["position"] == k and pos["n"] == len(rows)
        assert pos["ece"] == pytest.approx(ref_ece(pk, yk), abs=1e-12)
        assert pos["auc"] == pytest.approx(ref_auc(pk, yk), abs=1e-12)
        assert pos["brier"] == pytest.approx(sum((p - t) ** 2 for p, t in zip(pk, yk))
                                             / len(pk), abs=1e-12)
        assert pos["mean_pred"] == pytest.approx(sum(pk) / len(pk), abs=1e-12)
        assert pos["observed"] == pytest.approx(sum(yk) / len(yk), abs=1e-12)
        assert pos["n_conditional"] == len(cond)
        cc = [float(c[i, k]) for i in cond]
        yc = [bool(y[i, k]) for i in cond]
        assert pos["auc_conditional"] == pytest.approx(ref_auc(cc, yc), abs=1e-12)
        assert pos["mean_pred_conditional"] == pytest.approx(sum(cc) / len(cc), abs=1e-12)
        assert pos["observed_conditional"] == pytest.approx(sum(yc) / len(yc), abs=1e-12)


def ref_sts(z, y, m, grid, bins=20):
    """STS by exhaustive search with the reference ECE; ties (within 1e-12) go to the
    temperature closest to 1 in log scale; a position never verified keeps 1."""
    n, k_max = z.shape
    temps = []
    prefix = [1.0] * n
    for k in range(k_max):
        rows = [i for i in range(n) if m[i, k]]
        best_t = 1.0
        if rows:
            scores = []
            for t in grid:
                pred = [prefix[i] / (1 + math.exp(-float(z[i, k]) / t)) for i in rows]
                scores.append(ref_ece(pred, [bool(y[i, k]) for i in rows], bins))
            low = min(scores)
            best_t = min((t for t, e in zip(grid, scores) if e <= low + 1e-12),
                         key=lambda t: abs(math.log(t)))
        temps.append(best_t)
        prefix = [prefix[i] / (1 + math.exp(-float(z[i, k]) / best_t)) for i in range(n)]
    return temps


@pytest.mark.parametrize("bins", [20, 7])
def test_fit_sts_equals_exhaustive_reference(bins):
    z, y, m = synthetic(250, 3, seed=bins)
    m[:, 2] = False                                  # position 2 never verified
    grid = [1.15 ** i for i in range(-12, 13)]
    got = cal.fit_sts(z, y, m, grid=grid, bins=bins, exhaustive=True)
    assert got.tolist() == pytest.approx(ref_sts(z, y, m, grid, bins), rel=1e-12)
    assert float(got[2]) == 1.0


def test_float32_and_bool_inputs_are_computed_in_float64():
    g = torch.Generator().manual_seed(4)
    pred = torch.rand(20_000, generator=g)                      # float32
    label = torch.rand(20_000, generator=g) < pred              # bool
    p64, y64 = pred.double().tolist(), label.tolist()
    assert cal.ece(pred, label) == pytest.approx(ref_ece(p64, y64), abs=1e-12)
    assert cal.brier(pred, label) == pytest.approx(
        sum((p - y) ** 2 for p, y in zip(p64, y64)) / len(p64), abs=1e-12)
    assert cal.ece(pred, label.long()) == cal.ece(pred, label)
    # position_metrics of float32 confidences: the cumulative product in float64 too.
    c = torch.rand(5000, 2, generator=g)
    y = torch.ones(5000, 2, dtype=torch.bool)
    got = cal.position_metrics(c, y)[1]
    a = (c.double()[:, 0] * c.double()[:, 1]).tolist()
    assert got["mean_pred"] == pytest.approx(sum(a) / len(a), abs=1e-12)
    assert got["brier"] == pytest.approx(sum((x - 1) ** 2 for x in a) / len(a), abs=1e-12)


def test_reliability_bins_empty_and_single():
    rel = cal.position_metrics(torch.tensor([[0.1], [0.2], [0.5]], dtype=torch.float64),
                               torch.tensor([[1], [0], [1]]), bins=4)[0]
    assert rel["reliability"]["count"] == [2, 0, 1, 0]
    assert rel["reliability"]["mean_pred"] == pytest.approx([0.15, None, 0.5, None])
    assert rel["reliability"]["observed"] == [0.5, None, 1.0, None]
    # bins reach the ECE too
    assert rel["ece"] == pytest.approx(ref_ece([0.1, 0.2, 0.5], [1, 0, 1], 4), abs=1e-12)
    assert rel["ece"] != pytest.approx(ref_ece([0.1, 0.2, 0.5], [1, 0, 1], 20), abs=1e-6)
    # A position never verified: every metric undefined, no reliability bins.
    never = cal.position_metrics(torch.full((3, 2), 0.5), torch.ones(3, 2, dtype=torch.bool),
                                 torch.tensor([[True, False]] * 3))[1]
    assert never["n"] == 0 and never["reliability"] is None and never["ece"] is None


def test_prefix_survival_and_shapes():
    c = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cal.prefix_survival(c), torch.cumprod(c, dim=2))
    with pytest.raises(ValueError, match=r"confidence must be 2-D \[N, K\], got shape \(4,\)"):
        cal.position_metrics(torch.rand(4), torch.ones(4, dtype=torch.bool))


def test_input_errors_say_what_is_wrong():
    z = torch.zeros(3, 2)
    y = torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError,
                       match=r"^confidence_logits must be 2-D \[N, K\], got shape \(3,\)$"):
        cal.fit_sts(torch.zeros(3), y)
    with pytest.raises(ValueError, match=r"^valid must have the shape of confidence_logits "
                                         r"\(3, 2\), got \(3, 1\)$"):
        cal.fit_sts(z, y, torch.ones(3, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^survived must have the shape of confidence_logits "
                                         r"\(3, 2\), got \(2, 2\)$"):
        cal.fit_sts(z, y[:2])
    with pytest.raises(ValueError, match="^confidence_logits must be finite at every valid "
                                         "position$"):
        cal.fit_sts(torch.tensor([[0.0, float("inf")]]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^temperatures must be 1-D \[K\] with K = 2, got "
                                         r"shape \(3,\)$"):
        cal.apply_sts(torch.zeros(4, 3, 2), torch.ones(3))
    with pytest.raises(ValueError, match="^temperatures must be > 0$"):
        cal.apply_sts(z, torch.tensor([1.0, -1.0]))
    for grid in ([], [[1.0]], [1.0, 0.0]):
        with pytest.raises(ValueError, match="^grid must be a non-empty 1-D sequence of "
                                             "positive temperatures$"):
            cal.fit_sts(z, y, grid=grid)
    # apply_sts on 3-D logits and integer logits: K is the last dimension, float result.
    t = torch.tensor([1.0, 2.0])
    assert torch.allclose(cal.apply_sts(torch.ones(4, 3, 2), t),
                          torch.sigmoid(torch.tensor([1.0, 0.5])).expand(4, 3, 2))
    out = cal.apply_sts(torch.tensor([[2, 4]]), torch.tensor([0.5, 2.0]))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.sigmoid(torch.tensor([[4.0, 2.0]])))
    # Temperatures in the logits' precision (a float64 fit applied to float64 logits).
    z64 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    assert torch.equal(cal.apply_sts(z64, [1.1, 0.3]),
                       torch.sigmoid(z64 / torch.tensor([1.1, 0.3], dtype=torch.float64)))
