"""Losslessness of rejection sampling and block verification (design §3.2, §3.3, §9).

Context-free setting: target row k has the same law p_k whatever came before, so a lossless
round, completed with fresh target samples after its last emitted token, yields sequences
distributed as prod_k p_k. The batch dimension provides independent trials (distinct seeds).
Each test has negative controls: deliberately broken verifiers that the same test rejects.
"""
import numpy as np
import pytest
import torch

import dspark_ext
from stats import ALPHA, chi_square_pvalue, joint_counts, product_law
import verify_sim

N_ROWS = 120_000
# (target probabilities [K+1, V], draft probabilities [K, V]) per scenario, as log-probs.
SCENARIOS = {
    # Position-varying laws, drafts often wrong: exercises residuals everywhere.
    "mixed4": (np.log(np.array([
        [0.50, 0.30, 0.15, 0.05],
        [0.10, 0.60, 0.20, 0.10],
        [0.25, 0.25, 0.25, 0.25],
        [0.05, 0.15, 0.30, 0.50],
    ])), np.log(np.array([
        [0.10, 0.20, 0.30, 0.40],
        [0.40, 0.40, 0.10, 0.10],
        [0.70, 0.10, 0.10, 0.10],
    ]))),
    # Small w_1 with a residual of a different shape at row 1: the block verifier's stop at
    # tau < l with w_tau < 1 is frequent, so dropping w_tau is visible.
    "block_stress3": (np.log(np.array([
        [0.10, 0.45, 0.45],
        [0.05, 0.45, 0.50],
        [1 / 3, 1 / 3, 1 / 3],
    ])), np.log(np.array([
        [0.80, 0.10, 0.10],
        [0.90, 0.02, 0.08],
    ]))),
}


def softmax(z, temperature):
    z = z / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def lossless_pvalues(completed, p):
    """p-values of each position's marginal and of the joint law of the completed rounds."""
    vocab = p.shape[1]
    marg = [chi_square_pvalue(np.bincount(completed[:, j], minlength=vocab), p[j])
            for j in range(completed.shape[1])]
    joint = chi_square_pvalue(joint_counts(completed, vocab), product_law(p))
    return marg, joint


DRAFT_FORMS = ["draft_logits", "draft_probs", "onehot"]
# Deliberately wrong uses of the draft-probabilities input (negative controls of the
# draft_probs path): the drafts are sampled from q = softmax(d / T), but the op is handed
# - "probs_as_logits": q as draft_logits (the op then uses softmax(q / T));
# - "untempered_probs": softmax(d) at T = 1 as draft_probs (the temperature left out).
PROBS_BUGS = ("probs_as_logits", "untempered_probs")


def draft_input(draft, d_logits, temperature, n):
    """(draft_logits, draft_probs) tensors [n, K, V] for the op in form ``draft`` (a
    DRAFT_FORMS entry or a PROBS_BUGS control)."""
    k, vocab = d_logits.shape
    rows = lambda a: torch.tensor(a, dtype=torch.float32).expand(n, k, vocab)  # noqa: E731
    if draft == "draft_logits":
        return rows(d_logits), None
    if draft == "draft_probs":
        return None, rows(softmax(d_logits, temperature))
    if draft == "probs_as_logits":
        return rows(softmax(d_logits, temperature)), None
    if draft == "untempered_probs":
        return None, rows(softmax(d_logits, 1.0))
    assert draft == "onehot", draft
    return None, None


def run_native(method, temperature, draft, scenario="mixed4", n=N_ROWS, seed=0):
    t_logits, d_logits = SCENARIOS[scenario]
    k, vocab = d_logits.shape
    p = softmax(t_logits, temperature)
    q = softmax(d_logits, temperature)
    rng = np.random.default_rng(seed)
    # One-hot drafts may come from any rule; use a law unrelated to q to stress it.
    draft_law = np.full((k, vocab), 1.0 / vocab) if draft == "onehot" else q
    x = verify_sim.draft_tokens(draft_law, n, rng)
    target = torch.tensor(t_logits, dtype=torch.float32).expand(n, k + 1, vocab)
    d_rows, q_rows = draft_input(draft, d_logits, temperature, n)
    res = dspark_ext.rejection_sample(
        target, torch.from_numpy(x), d_rows, float(temperature),
        seed=torch.arange(n, dtype=torch.int64) * 7919 + 17 + seed, offset=5, method=method,
        draft_probs=q_rows)
    out = res.out_tokens.numpy()
    emitted = res.num_emitted.numpy()
    assert (emitted == res.accepted.numpy() + 1).all()
    return verify_sim.complete(out, emitted, p, rng), p, res


@pytest.mark.slow
@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("draft", DRAFT_FORMS)
@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_native_op_is_lossless(method, draft, temperature, scenario):
    completed, p, _ = run_native(method, temperature, draft, scenario)
    marg, joint = lossless_pvalues(completed, p)
    assert min(marg) > ALPHA, marg
    assert joint > ALPHA, joint


@pytest.mark.slow
@pytest.mark.parametrize("method", ["token", "block"])
@pytest.mark.parametrize("bug", PROBS_BUGS)
def test_draft_probs_negative_controls_are_rejected(method, bug):
    """The test above, on the draft-probabilities path, rejects the wrong law: q handed over
    as logits, or without the temperature."""
    completed, p, _ = run_native(method, 0.6, bug, "mixed4")
    marg, joint = lossless_pvalues(completed, p)
    assert min(min(marg), joint) < ALPHA, (bug, marg, joint)


# Each negative control runs on the scenario where its bug matters.
CONTROL_SCENARIO = {"token": "mixed4", "block": "block_stress3"}


def run_sim(method, bug, n=N_ROWS, seed=1):
    rng = np.random.default_rng(seed)
    t_logits, d_logits = SCENARIOS[CONTROL_SCENARIO[method]]
    p = softmax(t_logits, 1.0)
    q = softmax(d_logits, 1.0)
    x = verify_sim.draft_tokens(q, n, rng)
    round_fn = verify_sim.token_round if method == "token" else verify_sim.block_round
    out = round_fn(p, q, x, rng, bug=bug)
    emitted = (out >= 0).sum(axis=1)
    return verify_sim.complete(out, emitted, p, rng), p


@pytest.mark.slow
@pytest.mark.parametrize("method,bug", [("token", None), ("block", None)])
def test_model_without_bug_passes(method, bug):
    completed, p = run_sim(method, bug)
    marg, joint = lossless_pvalues(completed, p)
    assert min(marg) > ALPHA and joint > ALPHA, (marg, joint)


@pytest.mark.slow
@pytest.mark.parametrize("method,bug", [
    ("token", "no_max"),
    ("token", "resample_target"),
    ("block", "no_w_tau"),
    ("block", "stop_at_first_failure"),
])
def test_negative_controls_are_rejected(method, bug):
    completed, p = run_sim(method, bug)
    marg, joint = lossless_pvalues(completed, p)
    assert min(min(marg), joint) < ALPHA, (bug, marg, joint)


@pytest.mark.slow
@pytest.mark.parametrize("draft", DRAFT_FORMS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_block_accepts_at_least_as_many_as_token(draft, scenario):
    tok = run_native("token", 1.0, draft, scenario, seed=3)[2].accepted.double()
    blk = run_native("block", 1.0, draft, scenario, seed=4)[2].accepted.double()
    se = float(torch.sqrt(tok.var() / tok.numel() + blk.var() / blk.numel()))
    assert blk.mean() >= tok.mean() - 5 * se, (blk.mean(), tok.mean(), se)


@pytest.mark.slow
def test_toy_law_expected_accepted_tokens():
    """design §3.3: target (1/3, 2/3), draft (2/3, 1/3), gamma = 2: token-wise expects 10/9
    accepted tokens, block verification 11/9."""
    n = 200_000
    t = torch.log(torch.tensor([1 / 3, 2 / 3])).expand(n, 3, 2)
    d = torch.log(torch.tensor([2 / 3, 1 / 3])).expand(n, 2, 2)
    gen = torch.Generator().manual_seed(11)
    x = torch.multinomial(torch.tensor([2 / 3, 1 / 3]), 2 * n, replacement=True,
                          generator=gen).view(n, 2)
    seeds = torch.arange(n, dtype=torch.int64) + 1000
    for method, expect in (("token", 10 / 9), ("block", 11 / 9)):
        acc = dspark_ext.rejection_sample(t, x, d, 1.0, seeds, 0, method=method).accepted.double()
        se = float(acc.std() / n ** 0.5)
        assert abs(float(acc.mean()) - expect) < 5 * se, (method, float(acc.mean()), expect, se)


@pytest.mark.slow
def test_greedy_rows_mixed_with_sampled_rows_stay_greedy():
    n = 4096
    t_logits, d_logits = SCENARIOS["mixed4"]
    k, vocab = d_logits.shape
    t = torch.tensor(t_logits, dtype=torch.float32).expand(n, k + 1, vocab)
    d = torch.tensor(d_logits, dtype=torch.float32).expand(n, k, vocab)
    x = torch.randint(0, vocab, (n, k), generator=torch.Generator().manual_seed(2))
    temp = torch.where(torch.arange(n) % 2 == 0, 0.0, 1.0).float()
    res = dspark_ext.rejection_sample(t, x, d, temp, torch.arange(n), 0)
    greedy = dspark_ext.verify_greedy(t[0::2], x[0::2])
    assert torch.equal(res.out_tokens[0::2], greedy.out_tokens)
    assert torch.equal(res.accepted[0::2], greedy.accepted)
