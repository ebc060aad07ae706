"""End to end: the scheduler's lengths drive the verification op (design §6 Appendix A, §9).

Paper Appendix A: one request (R = 1), gamma = 2, vocabulary {A, B} = {0, 1}, target
p_0 = (0.7, 0.3) and draft q_0 = (0.5, 0.5) at the first position, so a_1 = sum min(p, q) = 0.8,
and SPS(1, 2, 3) = (1.0, 0.5, 0.45). The confidence of the second position comes from the
Markov head, which reads the first draft token: c_2 = 0.9 when x_1 = A, c_2 = 0 when x_1 = B.
That correlation is what a retrospective search exploits: without the early stop the scheduler
verifies l = 2 exactly when x_1 = A (always accepted, p/q = 1.4) and l = 0 when x_1 = B (the
target samples afresh), so the first output token is A with probability 0.5 + 0.5 * 0.7 = 0.85.
The causal scheduler stops at Theta_1 = 0.9 < Theta_0 = 1 before looking at c_2: l = 0 always,
output law (0.7, 0.3).

Each trial is an independent request: draft tokens are drawn from q, confidences computed from
them, the scheduler (an R = 1 call per trial) picks l, and the verification op
(dspark_ext.rejection_sample, num_draft = l) runs all trials as one batch. The same chi-square
test (ALPHA = 1e-6) must accept the causal and asynchronous schedulers and reject the
unconstrained search (the negative control).
"""
import numpy as np
import pytest
import torch

import dspark_ext
from stats import ALPHA, chi_square_pvalue, joint_counts, product_law
import verify_sim

N_TRIALS = 20_000
P = np.array([[0.7, 0.3], [0.6, 0.4], [0.55, 0.45]])  # target rows 0, 1 and the bonus row
Q = np.array([[0.5, 0.5], [0.5, 0.5]])  # draft rows 0, 1
A1 = 0.8
C2 = {0: 0.9, 1: 0.0}  # the Markov head's c_2 after x_1 = A / B
APPENDIX_SPS = torch.tensor([0.0, 1.0, 0.5, 0.45], dtype=torch.float64)
# A flatter curve under which the causal scheduler does admit, and the second admission depends
# on x_1 (allowed: it decides about x_2, drafted after x_1).
ADMITTING_SPS = torch.tensor([0.0, 1.0, 0.9, 0.7], dtype=torch.float64)


def draft_round(n, seed):
    rng = np.random.default_rng(seed)
    x = verify_sim.draft_tokens(Q, n, rng)
    conf = torch.empty(n, 2, dtype=torch.float64)
    conf[:, 0] = A1
    conf[:, 1] = torch.from_numpy(np.where(x[:, 0] == 0, C2[0], C2[1]))
    return x, conf, rng


def schedule_each(conf, sps, scheduler):
    """One R = 1 scheduling call per trial (each trial is its own step)."""
    op = torch.ops.dspark.schedule_prefix
    lengths = torch.empty(conf.shape[0], dtype=torch.int64)
    if scheduler == "async":
        # Capacity of trial t: the unconstrained search on the confidences of trial t - 2.
        sched = dspark_ext.AsyncScheduler(sps, initial_capacity=0)
        for t in range(conf.shape[0]):
            lengths[t] = sched.step(conf[t:t + 1]).lengths[0]
        return lengths
    early_stop = scheduler == "causal"
    # Only two distinct confidence rows exist; schedule each trial anyway (R = 1 calls).
    for t in range(conf.shape[0]):
        lengths[t] = op(conf[t:t + 1], sps, None, None, None, early_stop)[0][0]
    return lengths


def verify(x, lengths, seed):
    n = x.shape[0]
    target = torch.tensor(np.log(P), dtype=torch.float32).expand(n, 3, 2)
    draft = torch.tensor(np.log(Q), dtype=torch.float32).expand(n, 2, 2)
    res = dspark_ext.rejection_sample(
        target, torch.from_numpy(x), draft, 1.0,
        seed=torch.arange(n, dtype=torch.int64) * 7919 + 101 + seed, offset=9,
        num_draft=lengths)
    assert torch.equal(res.num_emitted, res.accepted + 1)
    assert (res.accepted <= lengths).all()
    return res.out_tokens.numpy(), res.num_emitted.numpy()


def run(scheduler, sps, seed=0):
    x, conf, rng = draft_round(N_TRIALS, seed)
    lengths = schedule_each(conf, sps, scheduler)
    out, emitted = verify(x, lengths, seed)
    return x, lengths.numpy(), out, emitted, rng


def test_appendix_a_causal_is_lossless():
    x, lengths, out, emitted, rng = run("causal", APPENDIX_SPS)
    assert (lengths == 0).all()
    first = np.bincount(out[:, 0], minlength=2)
    assert chi_square_pvalue(first, P[0]) > ALPHA
    completed = verify_sim.complete(out, emitted, P, rng)
    assert chi_square_pvalue(joint_counts(completed, 2), product_law(P)) > ALPHA


def test_appendix_a_global_search_is_biased():
    """Negative control: the same test rejects the scheduler without the early stop."""
    x, lengths, out, emitted, _ = run("global", APPENDIX_SPS)
    # l = 2 exactly when x_1 = A, l = 0 when x_1 = B.
    assert ((lengths == 2) == (x[:, 0] == 0)).all() and set(np.unique(lengths)) == {0, 2}
    first = np.bincount(out[:, 0], minlength=2)
    assert chi_square_pvalue(first, P[0]) < ALPHA
    # ... and the output follows the biased law (0.85, 0.15) of the appendix.
    assert chi_square_pvalue(first, [0.85, 0.15]) > ALPHA
    assert abs(first[0] / first.sum() - 0.85) < 0.015


@pytest.mark.parametrize("scheduler", ["causal", "async"])
def test_admitting_schedulers_are_lossless(scheduler):
    """Under ADMITTING_SPS the causal scheduler verifies l = 2 after x_1 = A and l = 1 after
    x_1 = B (a_2 = 0 is not a candidate): lengths depend on the drafts, the law does not."""
    x, lengths, out, emitted, rng = run(scheduler, ADMITTING_SPS, seed=1)
    if scheduler == "causal":
        assert ((lengths == 2) == (x[:, 0] == 0)).all() and ((lengths == 1) == (x[:, 0] == 1)).all()
    else:
        assert len(np.unique(lengths)) >= 2  # the capacity varies with older trials' drafts
    completed = verify_sim.complete(out, emitted, P, rng)
    for j in range(3):
        assert chi_square_pvalue(np.bincount(completed[:, j], minlength=2), P[j]) > ALPHA, j
    assert chi_square_pvalue(joint_counts(completed, 2), product_law(P)) > ALPHA


def test_async_on_appendix_a_is_lossless():
    """The unconstrained search is safe two steps late: the capacity never sees x_1."""
    x, lengths, out, emitted, rng = run("async", APPENDIX_SPS, seed=2)
    # Capacity 2 after an older A, 0 after an older B; with capacity 2 and a current B the
    # second candidate has a_2 = 0 and is not admitted: l = 1.
    assert set(np.unique(lengths)) == {0, 1, 2}
    first = np.bincount(out[:, 0], minlength=2)
    assert chi_square_pvalue(first, P[0]) > ALPHA
