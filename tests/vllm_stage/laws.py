"""Exact float64 laws of vLLM's sampling, by definition, for the chi-square tests."""
import numpy as np


def target_law(logits, temperature=1.0, top_k=None, top_p=1.0):
    """softmax(top_k_top_p(z / T)) of one logits row: top-k keeps the values >= the k-th
    largest (``None`` or >= V: no top-k); top-p keeps, in ascending order, the tokens whose
    cumulative probability exceeds 1 - p, and always the largest (vLLM's
    ``apply_top_k_top_p``). Temperature 0: one-hot at the argmax."""
    z = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        law = np.zeros(z.size)
        law[np.argmax(z)] = 1.0
        return law
    z = z / temperature
    keep = np.ones(z.size, dtype=bool)
    if top_k is not None and top_k < z.size:
        keep = z >= np.sort(z)[::-1][top_k - 1]
    probs = np.where(keep, np.exp(z - z.max()), 0.0)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(probs, kind="stable")
        cum = np.cumsum(probs[order])
        assert np.min(np.abs(cum - (1 - top_p))) > 1e-3, "top-p boundary too close to call"
        drop = cum <= 1 - top_p
        drop[-1] = False
        probs[order[drop]] = 0.0
        probs /= probs.sum()
    return probs
