"""Random Markov-drafting problems and the tie-aware comparison used by the markov tests."""
import math

import torch

import dspark_ext
from dspark_ext import reference_markov as refm

HEADS = ("vanilla", "gated", "rnn")
# A native token may differ from the float64 reference only where the two largest sampling
# keys (computed from the native z) are this close: float32 rounding of the keys themselves.
KEY_TIE = 1e-4


def make_case(head="vanilla", B=3, K=4, V=64, r=8, dtype=torch.float32,
              wdtype=torch.float32, d=16, conf="markov", seed=0, temps=None, head_bias=True):
    """Inputs of one markov_sample call. conf: None | 'markov' ([d+r]) | 'hidden' ([d]) |
    'linear' ([1, d+r] nn.Linear layout)."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    c = dict(head=head)
    c["base_logits"] = (rn(B, K, V) * 2.0).to(dtype)
    c["anchor_tokens"] = torch.randint(0, V, (B,), generator=g)
    c["w1"] = (rn(V, r) * 0.7).to(wdtype)
    c["w2"] = (rn(V, r) * (1.5 / math.sqrt(r))).to(wdtype)
    if temps is None:
        temps = [0.0, 0.7, 1.0, 1.3]
    c["temperature"] = torch.tensor([temps[b % len(temps)] for b in range(B)],
                                    dtype=torch.float32)
    c["seed"] = torch.randint(-(2**62), 2**62, (B,), generator=g)
    c["offset"] = torch.randint(0, 2**40, (B,), generator=g)
    c["hidden"] = rn(B, K, d) if (head != "vanilla" or conf) else None
    c["head_weight"] = c["head_bias"] = None
    if head == "gated":
        c["head_weight"] = (rn(r, d + r) / math.sqrt(d + r)).to(wdtype)
        c["head_bias"] = rn(r).to(wdtype) if head_bias else None
    elif head == "rnn":
        c["head_weight"] = (rn(3 * r, 2 * r + d) * (1.5 / math.sqrt(2 * r + d))).to(wdtype)
        c["head_bias"] = rn(3 * r).to(wdtype) if head_bias else None
    c["conf_weight"] = c["conf_bias"] = None
    if conf:
        n = d if conf == "hidden" else d + r
        w = rn(n) / math.sqrt(n)
        c["conf_weight"] = (w.view(1, n) if conf == "linear" else w).to(wdtype)
        c["conf_bias"] = rn(1).to(wdtype)
    return c


def op_args(c, teacher=None):
    return (c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], c["temperature"], c["seed"],
            c["offset"], c["head"], c["hidden"], c["head_weight"], c["head_bias"],
            c["conf_weight"], c["conf_bias"], teacher)


def native(c, teacher=None):
    return torch.ops.dspark.markov_sample(*op_args(c, teacher))


def reference(c, teacher=None, **kw):
    return refm.markov_sample(*op_args(c)[:13], teacher_tokens=teacher, **kw)


def z_tolerance(dtype):
    """(rtol, atol) between native and float64-reference z: float32 accumulation, plus one
    rounding step of the logits dtype where the float32 value sits on a rounding boundary."""
    return {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2**-7, 1e-3),
            torch.float16: (2**-10, 2e-3)}[dtype]


def assert_tokens_follow_keys(c, tokens, z):
    """Each native token is the arg-max of the sampling keys recomputed in float64 from the
    native z (ties within KEY_TIE excepted, and then it is one of the tied keys)."""
    B, K, V = z.shape
    for k in range(K):
        keys, _ = refm.draft_keys(z[:, k], c["temperature"], c["seed"], c["offset"], k)
        best = keys.max(dim=-1).values
        for b in range(B):
            t = int(tokens[b, k])
            if best[b] == -math.inf:
                assert t == -1, (b, k, t)
                continue
            assert 0 <= t < V, (b, k, t)
            assert keys[b, t] >= best[b] - KEY_TIE, (b, k, t, float(keys[b, t]), float(best[b]))
            first = int((keys[b] == best[b]).nonzero()[0, 0])
            top2 = keys[b].topk(min(2, V)).values
            gap = math.inf if V < 2 else float(top2[0] - top2[1])
            if gap >= KEY_TIE:
                assert t == first, (b, k, t, first, gap)


def own_lse(c, z):
    """float64 log-sum-exp of ``z`` [B, K, V] scaled per row as the op samples: 1 / T for
    sampled rows, 1 for greedy ones (T = 0 or 1 / T not finite); NaN and +inf lanes are
    masked (-inf), as the op's masked_scaled does."""
    t = c["temperature"].double()
    inv = torch.where(t > 0, 1.0 / t, torch.ones_like(t))
    inv = torch.where(torch.isfinite(inv) & (t > 0), inv, torch.ones_like(t))
    z = z.double()
    z = torch.where(torch.isfinite(z), z, torch.full_like(z, -math.inf))
    return torch.logsumexp(z * inv[:, None, None], dim=-1)


def assert_close_to_reference(c, out, sampled=True):
    """native outputs vs the float64 reference teacher-forced with the native tokens
    (``sampled``: the tokens were drawn by the op, so they must follow the keys)."""
    tokens, z, lse, conf = out
    want = reference(c, teacher=tokens)
    rtol, atol = z_tolerance(z.dtype)
    torch.testing.assert_close(z.double(), want.draft_logits.double(), rtol=rtol, atol=atol,
                               equal_nan=True)
    if sampled:
        assert_tokens_follow_keys(c, tokens, z)
    # draft_lse is the log-sum-exp of the op's own (rounded) z, scaled as it samples: checked
    # tightly against that; against the reference only as closely as z itself (a lane whose
    # float32 z_f sits on a rounding boundary of a 16-bit dtype may round one step apart).
    torch.testing.assert_close(lse.double(), own_lse(c, z), rtol=1e-5, atol=1e-4,
                               equal_nan=True)
    torch.testing.assert_close(lse.double(), want.draft_lse, rtol=max(rtol, 1e-5), atol=atol,
                               equal_nan=True)
    if c["conf_weight"] is None:
        assert conf.shape == (z.shape[0], 0)
    else:
        torch.testing.assert_close(conf.double(), want.confidence_logits, rtol=1e-4, atol=1e-4)
    return want


def native_wrapper(c, teacher=None):
    head = c["head"]
    kw = {}
    if head == "gated":
        kw = dict(gate_weight=c["head_weight"], gate_bias=c["head_bias"])
    elif head == "rnn":
        kw = dict(joint_weight=c["head_weight"], joint_bias=c["head_bias"])
    return dspark_ext.markov_sample(
        c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], c["temperature"], c["seed"],
        c["offset"], head=head, hidden=c["hidden"], conf_weight=c["conf_weight"],
        conf_bias=c["conf_bias"], teacher_tokens=teacher, **kw)
