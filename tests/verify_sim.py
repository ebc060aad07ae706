"""Vectorised NumPy model of one verification round, with deliberate bugs.

Used only for the negative controls of the losslessness tests (design §9): the same chi-square
test that accepts the native op must reject each broken variant. The correct variant (bug=None)
is checked to pass too, so a rejection is due to the bug and not to the model.

p: [K+1, V] target probabilities, q: [K, V] draft probabilities (context-free: row k is the
same whatever was sampled before, so the lossless law of a completed round is prod_k p_k).
"""
import numpy as np

TOKEN_BUGS = (None, "no_max", "resample_target")
BLOCK_BUGS = (None, "no_w_tau", "stop_at_first_failure")


def _sample_rows(weights, rng):
    """One inverse-CDF draw per row of (possibly unnormalised, possibly signed) weights."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def draft_tokens(q, n, rng):
    return np.stack([_sample_rows(np.broadcast_to(q[k], (n, q.shape[1])), rng)
                     for k in range(q.shape[0])], axis=1)


def token_round(p, q, x, rng, bug=None):
    assert bug in TOKEN_BUGS
    n, k_max = x.shape
    out = np.full((n, k_max + 1), -1, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    rows = np.arange(n)
    for k in range(k_max):
        ratio = p[k][x[:, k]] / q[k][x[:, k]]
        acc = alive & (rng.random(n) < ratio)
        rej = alive & ~acc
        out[acc, k] = x[acc, k]
        if bug == "resample_target":
            residual = p[k]
        elif bug == "no_max":
            # p - q without clamping, shifted to be a valid (but wrong) distribution.
            residual = (p[k] - q[k]) - (p[k] - q[k]).min() + 1e-3
        else:
            residual = np.maximum(p[k] - q[k], 0.0)
        if rej.any():
            out[rej, k] = _sample_rows(np.broadcast_to(residual, (rej.sum(), p.shape[1])), rng)
        alive = acc
    if alive.any():
        out[alive, k_max] = _sample_rows(np.broadcast_to(p[k_max], (alive.sum(), p.shape[1])),
                                         rng)
    del rows
    return out


def block_round(p, q, x, rng, bug=None):
    assert bug in BLOCK_BUGS
    n, l = x.shape
    vocab = p.shape[1]
    w = np.ones((n, l + 1))
    for i in range(1, l + 1):
        w[:, i] = np.minimum(1.0, w[:, i - 1] * p[i - 1][x[:, i - 1]] / q[i - 1][x[:, i - 1]])
    h = np.ones((n, l + 1))
    for i in range(1, l):
        res = np.maximum(w[:, i:i + 1] * p[i][None, :] - q[i][None, :], 0.0)
        z = res.sum(axis=1)
        den = z + 1.0 - w[:, i]
        h[:, i] = np.where(den > 0, np.minimum(1.0, z / np.where(den > 0, den, 1.0)), 1.0)
    if l > 0:
        h[:, l] = w[:, l]
    eta = rng.random((n, l + 1))
    passed = eta <= h
    passed[:, 0] = True
    if bug == "stop_at_first_failure":
        tau = np.zeros(n, dtype=np.int64)
        going = np.ones(n, dtype=bool)
        for i in range(1, l + 1):
            going &= passed[:, i]
            tau[going] = i
    else:
        idx = np.arange(l + 1)[None, :]
        tau = np.where(passed, idx, 0).max(axis=1)
    out = np.full((n, l + 1), -1, dtype=np.int64)
    for i in range(l):
        sel = tau > i
        out[sel, i] = x[sel, i]
    full = tau == l
    if full.any():
        out[full, l] = _sample_rows(np.broadcast_to(p[l], (full.sum(), vocab)), rng)
    part = ~full
    if part.any():
        t = tau[part]
        w_t = np.ones(part.sum()) if bug == "no_w_tau" else w[part, t]
        res = np.maximum(w_t[:, None] * p[t] - q[t], 0.0)
        empty = res.sum(axis=1) <= 0
        res[empty] = p[t][empty]
        out[np.nonzero(part)[0], t] = _sample_rows(res, rng)
    return out


def complete(out, num_emitted, p, rng):
    """Continue each row with fresh target samples after what the round emitted, so that a
    lossless round yields a sequence distributed as prod_k p_k."""
    out = out.copy()
    n, width = out.shape
    for j in range(width):
        missing = num_emitted <= j
        if missing.any():
            out[missing, j] = _sample_rows(np.broadcast_to(p[j], (missing.sum(), p.shape[1])), rng)
    return out
