"""The decoder is lossless at T > 0 (design §8, §9): a tiny-vocabulary target whose exact law
over the first three generated tokens is computed by enumeration; many requests (the batch
rows, distinct seeds) decode three tokens each; chi-square against that law for token and
block verification, fixed / threshold / scheduler policies, and DSpark, small-LM and n-gram
drafters. Negative controls: the KV cache not rolled back after a rejection, and drafts whose
logits reach verification without the temperature they were sampled at."""
import itertools

import numpy as np
import pytest
import torch

from dspark_ext import (FixedLength, ModelDrafter, NgramDrafter, Scheduled, SpeculativeDecoder,
                        SPSProfile, StaticThreshold, TorchTarget)
from stats import ALPHA, chi_square_pvalue, joint_counts
from tiny_models import TinyTorchLM, tiny_hf

V = 6
NEW = 3
ROWS = 6000
TEMP = 0.6
PROMPT = [1, 2, 3, 1]


def exact_law(logits_fn):
    """P(x1, x2, x3 | PROMPT) at TEMP for every x in V^3 (float64 [V^3])."""
    prefixes = torch.tensor([PROMPT + [a, b] for a, b in itertools.product(range(V), repeat=2)])
    with torch.no_grad():
        logits = logits_fn(prefixes).double() / TEMP
    logp = torch.log_softmax(logits, -1)
    n = len(PROMPT)
    law = np.zeros(V ** NEW)
    for i, (a, b) in enumerate(itertools.product(range(V), repeat=2)):
        for c in range(V):
            law[(a * V + b) * V + c] = float(torch.exp(
                logp[i, n - 1, a] + logp[i, n, b] + logp[i, n + 1, c]))
    return law / law.sum()


@pytest.fixture(scope="module")
def torch_lm():
    return TinyTorchLM(vocab=V, hidden=16, heads=2, seed=4)


def torch_target(lm):
    return TorchTarget(lm, vocab_size=V, hidden_size=16, num_layers=2)


@pytest.fixture(scope="module")
def torch_law(torch_lm):
    return exact_law(torch_lm.full_logits)


@pytest.fixture(scope="module")
def hf_lm():
    m = tiny_hf("qwen3", vocab=V, hidden=32, layers=3, seed=2, scale=1.5)
    m.generation_config.eos_token_id = None
    return m


@pytest.fixture(scope="module")
def hf_law(hf_lm):
    return exact_law(lambda ids: hf_lm(ids).logits)


class Wrapped:
    """A drafter that delegates to ``inner`` and rewrites its blocks in ``draft``."""

    def __init__(self, inner):
        self.inner = inner
        self.vocab_size, self.target_layer_ids, self.max_draft = inner.vocab_size, None, None

    def reset(self, b, device):
        self.inner.reset(b, device)

    def update(self, ctx):
        self.inner.update(ctx)

    def select_rows(self, rows):
        self.inner.select_rows(rows)


class ConfidentDrafter(Wrapped):
    """A small LM drafter with a confidence head: z_k = logit of q_k's top probability (a
    function of x_{<k} only, as a confidence head must be)."""

    def draft(self, *args):
        blk = self.inner.draft(*args)
        top = torch.softmax(blk.draft_logits.float(), -1).max(-1).values.clamp(1e-4, 1 - 1e-4)
        return blk._replace(confidence_logits=torch.log(top / (1 - top)))


class TemperatureForgotten(Wrapped):
    """Negative control: drafts sampled at T, logits handed to verification as if T = 1."""

    def draft(self, anchor, pos, k, temperature, seed, offset):
        blk = self.inner.draft(anchor, pos, k, temperature, seed, offset)
        return blk._replace(draft_logits=blk.draft_logits * temperature[:, None, None])


def run(target, drafter, gamma=2, verify="token", policy=None, seed=1000):
    dec = SpeculativeDecoder(target, drafter, gamma=gamma, verify=verify,
                             length_policy=policy)
    out = dec.generate([PROMPT] * ROWS, max_new_tokens=NEW, temperature=TEMP, seed=seed)
    toks = np.array(out.new_tokens)
    assert toks.shape == (ROWS, NEW)
    return toks, out.stats


def pvalue(toks, law):
    return chi_square_pvalue(joint_counts(toks, V), law)


def small_lm(seed=11):
    return ModelDrafter(TorchTarget(TinyTorchLM(vocab=V, hidden=16, heads=2, layers=1,
                                                seed=seed), vocab_size=V, hidden_size=16,
                                    num_layers=1))


def sps():
    # Verifying is cheap up to a point, then costly: the scheduler picks varied lengths.
    return SPSProfile.from_step_time(lambda b: 1.0 + max(0, b - ROWS * 2) * 1e-3, ROWS * 3)


@pytest.mark.slow
@pytest.mark.parametrize("verify", ["token", "block"])
@pytest.mark.parametrize("policy", ["fixed", "threshold", "causal", "async"])
def test_small_lm_drafter_lossless(torch_lm, torch_law, verify, policy):
    pol = {"fixed": FixedLength(), "threshold": StaticThreshold(0.3),
           "causal": Scheduled(sps()), "async": Scheduled(sps(), mode="async")}[policy]
    drafter = ConfidentDrafter(small_lm()) if policy != "fixed" else small_lm()
    toks, st = run(torch_target(torch_lm), drafter, verify=verify, policy=pol)
    assert 0 < float(st.accepted().double().mean()) < 2  # drafts both accepted and rejected
    if policy != "fixed":
        assert len(set(st.verified().tolist())) > 1      # lengths really vary
    assert pvalue(toks, torch_law) > ALPHA


@pytest.mark.slow
@pytest.mark.parametrize("verify", ["token", "block"])
def test_ngram_drafter_lossless(torch_lm, torch_law, verify):
    toks, st = run(torch_target(torch_lm), NgramDrafter(max_ngram=2), gamma=3, verify=verify)
    assert int(st.verified().sum()) > 0
    assert pvalue(toks, torch_law) > ALPHA


@pytest.mark.slow
@pytest.mark.parametrize("verify,policy,markov", [("token", "fixed", True),
                                                  ("block", "fixed", True),
                                                  ("token", "threshold", True),
                                                  ("block", "causal", True),
                                                  ("token", "fixed", False)])
def test_dspark_drafter_lossless(hf_lm, hf_law, verify, policy, markov):
    from dspark_cases_decoder import make_dspark_for
    drafter = make_dspark_for(hf_lm, markov=markov, block_size=3, seed=3)
    pol = {"fixed": FixedLength(), "threshold": StaticThreshold(0.2),
           "causal": Scheduled(sps())}[policy]
    toks, st = run(hf_lm, drafter, gamma=3, verify=verify, policy=pol)
    assert 0 < float(st.accepted().double().mean()) < 3
    assert pvalue(toks, hf_law) > ALPHA


@pytest.mark.slow
def test_negative_control_no_rollback(torch_lm, torch_law):
    target = torch_target(torch_lm)
    target.truncate = lambda lengths: None          # rejected drafts stay in the KV cache
    toks, _ = run(target, small_lm())
    assert pvalue(toks, torch_law) < ALPHA


@pytest.mark.slow
def test_negative_control_temperature_forgotten(torch_lm, torch_law):
    toks, _ = run(torch_target(torch_lm), TemperatureForgotten(small_lm()))
    assert pvalue(toks, torch_law) < ALPHA


@pytest.mark.slow
def test_seeds_batch_independent(torch_lm):
    """The same per-request seed gives the same tokens whatever batch the request runs in."""
    dec = SpeculativeDecoder(torch_target(torch_lm), small_lm(), gamma=3)
    seeds = torch.arange(40, dtype=torch.int64) * 7919 + 5
    full = dec.generate([PROMPT] * 40, max_new_tokens=8, temperature=TEMP, seed=seeds)
    part = dec.generate([PROMPT] * 10, max_new_tokens=8, temperature=TEMP, seed=seeds[15:25])
    assert part.new_tokens == full.new_tokens[15:25]
    again = dec.generate([PROMPT] * 40, max_new_tokens=8, temperature=TEMP, seed=seeds)
    assert again.new_tokens == full.new_tokens
