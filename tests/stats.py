"""Chi-square goodness of fit for the losslessness tests (design §9), without scipy.

Bins with an expected count below 5 are merged (smallest first) into one bin; the p-value is
the regularised upper incomplete gamma function Q(df/2, x/2) from torch.special.
"""
import numpy as np
import torch

# Per-assertion false-failure rate below 1e-6 (design §9).
ALPHA = 1e-6


def chi_square_pvalue(observed, expected_probs):
    observed = np.asarray(observed, dtype=np.float64).ravel()
    probs = np.asarray(expected_probs, dtype=np.float64).ravel()
    n = observed.sum()
    assert n > 0, "no observations"
    assert abs(probs.sum() - 1.0) < 1e-9, probs.sum()
    expected = probs * n
    # Observations in a zero-probability cell are an outright failure.
    if np.any((expected == 0) & (observed > 0)):
        return 0.0
    keep = expected >= 5
    obs = list(observed[keep])
    exp = list(expected[keep])
    if (~keep).any() and expected[~keep].sum() > 0:
        obs.append(observed[~keep].sum())
        exp.append(expected[~keep].sum())
    obs, exp = np.array(obs), np.array(exp)
    if len(obs) < 2:
        return 1.0
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


def joint_counts(tokens, vocab):
    """Counts of each full token sequence (rows of `tokens`, values in [0, vocab))."""
    tokens = np.asarray(tokens)
    codes = np.zeros(tokens.shape[0], dtype=np.int64)
    for j in range(tokens.shape[1]):
        codes = codes * vocab + tokens[:, j]
    return np.bincount(codes, minlength=vocab ** tokens.shape[1])


def product_law(probs_per_position):
    law = np.array([1.0])
    for p in probs_per_position:
        law = np.outer(law, p).ravel()
    return law
