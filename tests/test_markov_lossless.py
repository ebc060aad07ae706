"""The draft tokens follow exactly the autoregressive law of design §4 (chi-square, design §9):
with a tiny vocabulary, the empirical joint law of (x_0, x_1, x_2) over many independent rows
(one seed each) matches the product of the conditionals p_k(x_k | prefix), computed from the
float64 reference in teacher-forced mode for every one of the V^K sequences. Negative control:
the law whose bias at position k comes from the wrong previous token (x_{k-2}, the anchor for
k = 1) must be rejected by the same test on the same samples."""
import itertools
import math

import numpy as np
import pytest
import torch

from markov_cases import make_case, native
from stats import ALPHA, chi_square_pvalue, joint_counts

V, K, R, N = 4, 3, 4, 30000


def make_problem(head):
    c = make_case(head, 1, K, V, R, d=4, conf=None, seed=21, temps=[0.9])
    # strong transitions: the bias depends a lot on the previous token
    c["w1"] = torch.eye(V, R) * 2.0
    c["w2"] = torch.roll(torch.eye(V, R), 1, dims=0) * 2.0 + 0.3 * torch.randn(
        V, R, generator=torch.Generator().manual_seed(5))
    if head == "rnn":  # out = tanh(1.5 e + s + ...): bias from the previous token and the state
        w = c["head_weight"] * 0.3
        eye = torch.eye(R)
        w[R:2 * R, R:2 * R] += eye  # candidate <- e
        w[2 * R:, R:2 * R] += 1.5 * eye  # output <- e
        w[2 * R:, :R] += eye  # output <- s
        c["head_weight"] = w
        c["w2"] = c["w2"] * 2.0
    return c


def batch_of(c, n):
    """n independent copies of the one-row problem, one Philox seed each."""
    out = dict(c)
    for key in ("base_logits", "anchor_tokens", "temperature", "hidden"):
        if c[key] is not None:
            out[key] = c[key].expand(n, *c[key].shape[1:]).contiguous()
    out["seed"] = torch.arange(n, dtype=torch.int64) * 1_000_003 + 77
    out["offset"] = torch.full((n,), 12345, dtype=torch.int64)
    return out


def sequence_law(c, conditioning):
    """Probability of each of the V^K sequences (in joint_counts order) when position k is
    conditioned on the teacher sequence conditioning(x) (the bias of z_k comes from its
    element k-1)."""
    from dspark_ext import reference_markov as refm

    seqs = torch.tensor(list(itertools.product(range(V), repeat=K)), dtype=torch.int64)
    cond = torch.stack([conditioning(s) for s in seqs])
    cb = batch_of(c, len(seqs))
    want = refm.markov_sample(cb["base_logits"], cb["anchor_tokens"], cb["w1"], cb["w2"],
                              cb["temperature"], cb["seed"], cb["offset"], cb["head"],
                              cb["hidden"], cb["head_weight"], cb["head_bias"],
                              teacher_tokens=cond)
    t = float(c["temperature"][0])
    logp = torch.log_softmax(want.draft_logits.double() / t, dim=-1)  # [S, K, V]
    per_pos = logp.gather(2, seqs.unsqueeze(2)).squeeze(2)
    law = per_pos.sum(1).exp().numpy()
    return law / law.sum()


def right(seq):
    return seq


def wrong(seq):
    # position k conditioned on x_{k-2} (the anchor for k = 1): teacher = [x_0(unused), a, x_0]
    return torch.cat([seq[:1], torch.tensor([-2]), seq[:1]])


@pytest.mark.parametrize("head", ["vanilla", "rnn"])
def test_joint_law_matches_product_of_conditionals(head):
    c = make_problem(head)
    tokens = native(batch_of(c, N))[0]
    assert ((tokens >= 0) & (tokens < V)).all()
    counts = joint_counts(tokens.numpy(), V)
    law = sequence_law(c, right)
    assert chi_square_pvalue(counts, law) > ALPHA
    # negative control: the same samples reject the law with the wrong previous token
    a = int(c["anchor_tokens"][0])
    bad = sequence_law(c, lambda s: torch.where(wrong(s) == -2, torch.tensor(a), wrong(s)))
    assert np.abs(bad - law).sum() > 0.05  # the control is a materially different law
    assert chi_square_pvalue(counts, bad) < ALPHA
