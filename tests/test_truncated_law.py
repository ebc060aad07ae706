"""top_k / top_p sample the truncated law (README: "distributed as sampling the truncated
law"), through SpeculativeDecoder.generate and through transformers' custom_generate.

Exact part: truncate_logits on hand-computed cases (ties at the top-k and top-p boundaries,
a top-p boundary hit exactly, top_p = 1, top_k >= V, temperature before top-p, top-k before
top-p, greedy rows mixed in) and against transformers' own warpers on random logits.

Statistical part: many requests of a tiny-vocabulary target decode NEW tokens each with drafts
that are both accepted and rejected; chi-square of the joint counts against the exact
truncated law, enumerated over every prefix with a float64 reimplementation of the
truncation in this file. Negative controls that must be rejected from the same samples: the
untruncated law, top-p keeping one token too few, top-k keeping k - 1.
"""
import itertools

import numpy as np
import pytest
import torch

import dspark_ext.hf
from dspark_ext import ModelDrafter, SpeculativeDecoder, TorchTarget
from dspark_ext.decoding.warp import check_top_k_top_p, truncate_logits
from stats import ALPHA, chi_square_pvalue, joint_counts
from tiny_models import TinyTorchLM, tiny_hf

NEG = float("-inf")


def kept(out: torch.Tensor):
    """Indices of the finite entries of a 1-D logits row."""
    return torch.isfinite(out).nonzero().flatten().tolist()


def t1(b=1, value=1.0):
    return torch.full((b,), value)


# ---------------------------------------------------------------------------------------------
# Exact cases
# ---------------------------------------------------------------------------------------------

# Dyadic probabilities: softmax(log p) is exact in float32, so the boundary cases are exact.
DYADIC = torch.tensor([0.125, 0.5, 0.125, 0.25]).log()  # sorted: 1 (.5), 3 (.25), 0, 2 (.125)


def test_top_p_boundary_hit_exactly():
    # Mass of {1, 3} is exactly 0.75: the smallest set with mass >= top_p, nothing more.
    assert kept(truncate_logits(DYADIC[None], t1(), None, 0.75)[0]) == [1, 3]
    # Just above: the next token is needed.
    assert len(kept(truncate_logits(DYADIC[None], t1(), None, 0.7500001)[0])) == 3
    # Just below 0.5: the top token alone; at 0.5 exactly still the top token alone.
    assert kept(truncate_logits(DYADIC[None], t1(), None, 0.4999)[0]) == [1]
    assert kept(truncate_logits(DYADIC[None], t1(), None, 0.5)[0]) == [1]
    assert kept(truncate_logits(DYADIC[None], t1(), None, 0.5001)[0]) == [1, 3]
    # A tiny top_p never removes the arg-max.
    assert kept(truncate_logits(DYADIC[None], t1(), None, 1e-6)[0]) == [1]


def test_top_p_tie_at_the_boundary():
    # 0.875 < top_p: exactly one of the two tied 0.125 tokens is needed (transformers keeps
    # one too); which one is a deterministic function of the logits.
    out = truncate_logits(DYADIC[None], t1(), None, 0.8)[0]
    k = kept(out)
    assert len(k) == 3 and {1, 3} <= set(k) and len({0, 2} & set(k)) == 1
    assert torch.equal(out, truncate_logits(DYADIC[None], t1(), None, 0.8)[0])
    # A tie inside the kept set keeps both tied tokens.
    assert kept(truncate_logits(DYADIC[None], t1(), None, 0.9)[0]) == [0, 1, 2, 3]
    # Kept values are the input logits, unchanged (no renormalisation in logit space).
    assert torch.equal(out[k], DYADIC[k])


def test_top_k_ties_kept():
    # Ties at the k-th value are all kept, as transformers' TopKLogitsWarper does.
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.5]])
    assert kept(truncate_logits(logits, t1(), 2, None)[0]) == [1, 2, 3]
    assert kept(truncate_logits(logits, t1(), 1, None)[0]) == [1]
    assert kept(truncate_logits(logits, t1(), 4, None)[0]) == [0, 1, 2, 3]


def test_no_op_cases():
    logits = torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(0))
    temp = torch.tensor([0.5, 1.0, 2.0])
    for top_k, top_p in [(None, None), (None, 1.0), (7, None), (50, None), (7, 1.0),
                         (100, 1.0)]:
        out = truncate_logits(logits, temp, top_k, top_p)
        assert torch.equal(out, logits), (top_k, top_p)
    # Nothing to truncate: the logits themselves come back (no copy on the hot path).
    assert truncate_logits(logits, temp, None, 1.0) is logits
    assert truncate_logits(logits, temp, None, None) is logits
    # top_k = V - 1 removes exactly the smallest entry of each row.
    out = truncate_logits(logits, temp, 6, None)
    assert torch.equal(torch.isinf(out), logits == logits.min(-1, keepdim=True).values)


def test_top_p_one_keeps_tiny_probabilities():
    # With top_k set, top_p = 1 must still keep every top-k token, even those whose mass is
    # below float32 resolution (the cumulative mass before them rounds to 1.0).
    logits = torch.tensor([[0.0, -20.0, -25.0, -30.0, -40.0, -50.0]])
    assert kept(truncate_logits(logits, t1(), 5, 1.0)[0]) == [0, 1, 2, 3, 4]
    assert kept(truncate_logits(logits, t1(), 5, 0.999)[0]) == [0]


def test_temperature_applies_before_top_p():
    # softmax(logits / 2) is DYADIC's law; at T = 1 the law is sharper (p^2 renormalised:
    # 0.25 / 0.34375 = 0.727 for the top token), so fewer tokens reach the same mass.
    logits = (2 * DYADIC)[None]
    assert kept(truncate_logits(logits, t1(1, 2.0), None, 0.75)[0]) == [1, 3]
    assert kept(truncate_logits(logits, t1(1, 1.0), None, 0.7)[0]) == [1]
    assert kept(truncate_logits(logits, t1(1, 1.0), None, 0.75)[0]) == [1, 3]
    # Per-row temperatures: each row uses its own.
    two = torch.cat([logits, logits])
    out = truncate_logits(two, torch.tensor([1.0, 2.0]), None, 0.74)
    assert kept(out[0]) == [1, 3] and kept(out[1]) == [1, 3]
    out = truncate_logits(two, torch.tensor([1.0, 2.0]), None, 0.72)
    assert kept(out[0]) == [1] and kept(out[1]) == [1, 3]


def test_top_k_applies_before_top_p():
    # Law 0.4, 0.3, 0.2, 0.1. After top_k = 2 the law is 4/7, 3/7: top_p = 0.55 then keeps one
    # token (4/7 >= 0.55); top-p over the untruncated law would keep two (0.4 < 0.55).
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1]]).log()
    assert kept(truncate_logits(logits, t1(), 2, 0.55)[0]) == [0]
    assert kept(truncate_logits(logits, t1(), None, 0.55)[0]) == [0, 1]
    assert kept(truncate_logits(logits, t1(), 2, 0.6)[0]) == [0, 1]
    # top_k = 3: law 4/9, 3/9, 2/9; 7/9 >= 0.75 keeps two, where the untruncated law's
    # 0.7 < 0.75 would keep three; 7/9 < 0.8 keeps three.
    assert kept(truncate_logits(logits, t1(), 3, 0.75)[0]) == [0, 1]
    assert kept(truncate_logits(logits, t1(), None, 0.75)[0]) == [0, 1, 2]
    assert kept(truncate_logits(logits, t1(), 3, 0.8)[0]) == [0, 1, 2]


def test_greedy_rows_untouched():
    logits = torch.stack([DYADIC, DYADIC.flip(0), DYADIC])[:, None, :].expand(3, 2, 4)
    temp = torch.tensor([0.0, 1.0, 0.0])
    for top_k, top_p in [(1, None), (None, 0.3), (2, 0.5)]:
        out = truncate_logits(logits, temp, top_k, top_p)
        assert torch.equal(out[0], logits[0]) and torch.equal(out[2], logits[2])
        assert kept(out[1, 0]) == [2] and kept(out[1, 1]) == [2]  # DYADIC flipped: top is 2


def test_dtype_kept():
    logits = DYADIC[None].to(torch.bfloat16)
    out = truncate_logits(logits, t1(), 2, 0.9)
    assert out.dtype == torch.bfloat16 and kept(out[0]) == [1, 3]


def test_matches_transformers_warpers():
    """Random logits (no near-ties at either boundary): the kept set equals what
    transformers' Temperature -> TopK -> TopP warpers keep."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(400, 12, generator=g, dtype=torch.float64).float() * 2
    for temp, top_k, top_p in [(0.7, None, 0.8), (1.3, 5, None), (1.0, 6, 0.6),
                               (0.5, 3, 0.95), (2.0, None, 0.3)]:
        ours = truncate_logits(logits, torch.full((400,), temp), top_k, top_p)
        ref = TemperatureLogitsWarper(temp)(None, logits.clone())
        if top_k is not None:
            ref = TopKLogitsWarper(top_k)(None, ref)
        if top_p is not None:
            ref = TopPLogitsWarper(top_p)(None, ref)
        assert torch.equal(torch.isfinite(ours), torch.isfinite(ref)), (temp, top_k, top_p)


def test_argument_checks():
    check_top_k_top_p(None, None)
    check_top_k_top_p(1, 1.0)
    for bad in [(0, None), (2.0, None), (None, 0.0), (None, 1.5), (None, -0.1)]:
        name, value = ("top_k", bad[0]) if bad[0] is not None else ("top_p", bad[1])
        with pytest.raises(ValueError, match=f"{name} must be .*got {value!r}$"):
            check_top_k_top_p(*bad)


# ---------------------------------------------------------------------------------------------
# The law of generated tokens
# ---------------------------------------------------------------------------------------------

V = 6
NEW = 4          # round 1 verifies two drafts (the cap keeps one token for the bonus)
ROWS = 6000
TEMP = 0.8
PROMPT = [1, 2, 3, 1]
GAMMA = 3


def ref_truncated(logits, temp, top_k, top_p, too_few=False):
    """float64 truncated law of one logits row, written independently of warp.py: keep the
    top_k largest logits (ties kept), renormalise softmax(logits / T) over them, then walk the
    tokens from the most likely down, keeping each while the mass kept so far is < top_p.
    ``too_few``: the negative control, which drops the last kept token (if more than one)."""
    z = np.asarray(logits, dtype=np.float64) / temp
    keep = np.ones(len(z), dtype=bool)
    if top_k is not None and top_k < len(z):
        kth = np.sort(z)[::-1][top_k - 1]
        keep = z >= kth
        if too_few:
            # top-k keeping k - 1: drop the smallest kept one
            keep[np.flatnonzero(keep)[np.argmin(z[keep])]] = False
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        mass, chosen = 0.0, []
        for i in order:
            if p[i] == 0 or mass >= top_p:
                break
            chosen.append(i)
            mass += p[i]
        if too_few and len(chosen) > 1:
            chosen = chosen[:-1]
        keep = np.zeros(len(z), dtype=bool)
        keep[chosen] = True
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    return p


def boundary_margin(logits, temp, top_k, top_p):
    """How far top_p is from every cumulative mass of the (top-k renormalised) law: the
    float32 op and the float64 reference must not round to different sides."""
    if top_p is None:
        return np.inf
    p = ref_truncated(logits, temp, top_k, None)
    cum = np.cumsum(np.sort(p)[::-1])
    return float(np.abs(cum - top_p).min())


def exact_law(logits_fn, top_k, top_p, too_few=False):
    """P(x_1..x_NEW | PROMPT) for every x in V^NEW, each position truncated (float64)."""
    prefixes = list(itertools.product(range(V), repeat=NEW - 1))
    with torch.no_grad():
        logits = logits_fn(torch.tensor([PROMPT + list(p) for p in prefixes])).double()
    n = len(PROMPT)
    law = np.zeros(V ** NEW)
    margin = np.inf
    cache = {}
    for i, pre in enumerate(prefixes):
        for j in range(NEW):
            key = pre[:j]
            if key not in cache:
                row = logits[i, n - 1 + j].numpy()
                cache[key] = ref_truncated(row, TEMP, top_k, top_p, too_few)
                margin = min(margin, boundary_margin(row, TEMP, top_k, top_p))
    for x in itertools.product(range(V), repeat=NEW):
        prob = 1.0
        for j in range(NEW):
            prob *= cache[x[:j]][x[j]]
        law[int(np.ravel_multi_index(x, (V,) * NEW))] = prob
    assert margin > 2e-5, margin  # float32 softmax and cached-vs-full logits err by ~1e-6
    return law / law.sum()


def untruncated(logits_fn):
    return exact_law(logits_fn, None, None)


CASES = [(3, None), (None, 0.7), (4, 0.8)]
IDS = ["top_k", "top_p", "top_k_and_top_p"]


@pytest.fixture(scope="module")
def torch_lm():
    return TinyTorchLM(vocab=V, hidden=16, heads=2, seed=4)


def torch_target(lm, layers=2):
    return TorchTarget(lm, vocab_size=V, hidden_size=16, num_layers=layers)


def small_lm():
    return ModelDrafter(torch_target(TinyTorchLM(vocab=V, hidden=16, heads=2, layers=1,
                                                 seed=11), layers=1))


def check_law(toks, logits_fn, top_k, top_p):
    counts = joint_counts(toks, V)
    p = chi_square_pvalue(counts, exact_law(logits_fn, top_k, top_p))
    assert p > ALPHA, p
    # Negative controls, from the same samples.
    assert chi_square_pvalue(counts, untruncated(logits_fn)) < ALPHA
    p_few = chi_square_pvalue(counts, exact_law(logits_fn, top_k, top_p, too_few=True))
    assert p_few < ALPHA, p_few


@pytest.mark.parametrize("top_k,top_p", CASES, ids=IDS)
def test_generate_samples_truncated_law(torch_lm, top_k, top_p):
    dec = SpeculativeDecoder(torch_target(torch_lm), small_lm(), gamma=GAMMA)
    out = dec.generate([PROMPT] * ROWS, max_new_tokens=NEW, temperature=TEMP, seed=77,
                       top_k=top_k, top_p=top_p)
    toks = np.array(out.new_tokens)
    assert toks.shape == (ROWS, NEW)
    acc, ver = out.stats.accepted(), out.stats.verified()
    assert int(ver.sum()) > 0 and 0 < float(acc.sum()) < float(ver.sum())  # mixed verdicts
    check_law(toks, torch_lm.full_logits, top_k, top_p)


@pytest.fixture(scope="module")
def hf_lm():
    m = tiny_hf("qwen3", vocab=V, hidden=32, layers=2, seed=2, scale=1.5)
    m.generation_config.eos_token_id = None
    return m


@pytest.mark.parametrize("top_k,top_p", CASES, ids=IDS)
def test_custom_generate_samples_truncated_law(hf_lm, top_k, top_p):
    drafter = ModelDrafter(tiny_hf("qwen3", vocab=V, hidden=32, layers=1, seed=9))
    ids = torch.tensor([PROMPT] * ROWS)
    kwargs = {} if top_k is None else {"top_k": top_k}
    if top_p is not None:
        kwargs["top_p"] = top_p
    seq = hf_lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                         temperature=TEMP, max_new_tokens=NEW, pad_token_id=0,
                         custom_generate=dspark_ext.hf.generate, drafter=drafter,
                         gamma=GAMMA, seed=5, **kwargs)
    toks = seq[:, len(PROMPT):].numpy()
    assert toks.shape == (ROWS, NEW)
    check_law(toks, lambda x: hf_lm(x).logits, top_k, top_p)
