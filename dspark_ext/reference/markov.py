"""Pure-PyTorch reference of Markov-head drafting (design §4): the ground truth of
``dspark::markov_sample``.

A readable loop over the K positions, vectorised over the batch, computing in ``dtype``
(float64 by default) with the *concatenated* head inputs of the paper and design §4:

* vanilla: ``e_k = W1[x_{k-1}]``, ``bias_k = W2 e_k``;
* gated:   ``g = sigmoid(Wg [h_k; e_k] + bg)``, ``bias_k = W2 (g * e_k)``;
* rnn:     ``a = Wj [s_{k-1}; e_k; h_k] + bj`` split into gate / candidate / output,
  ``s_k = sigmoid(gate) s_{k-1} + (1 - sigmoid(gate)) tanh(cand)``, ``bias_k = W2 tanh(out)``;
* confidence: ``c_k = w . [h_k; e_k] + b`` (or ``w . h_k + b``), returned as a logit.

``z_k = base_logits[:, k] + bias_k`` is rounded to the dtype of ``base_logits`` (what the op
writes) and the token is drawn from those rounded values: ``argmax(s + G)`` with
``s = masked_scaled(z_k, 1/T)`` and Gumbel noise ``G = -log(-log u)`` from the same Philox
stream as the kernels (purpose ``PURPOSE_DRAFT``, position k, lane v), or ``argmax(z_k)`` for
T = 0 (lowest index on ties, -1 when every logit is masked; a -1 token gives a zero embedding
next). The native op accumulates in float32, so tokens agree except where the two largest keys
are within float32 rounding: ``margin`` reports that gap per position.

Top-k Markov correction (``topk=k``, vLLM's ``dspark_draft_topk``): at each position the
candidates are the k largest base logits (ties to the lower vocabulary id, NaN as -inf), the
bias is added to those only and every other logit is -inf; everything else is the dense law
above on that truncated z (same Philox lanes, so ``topk=V`` is the dense path). The outputs
are the candidates' z and their ids, in candidate order (base logit descending).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .laws import _inv_temperature, masked_scaled
from .philox import PURPOSE_DRAFT, uniforms

__all__ = ["MarkovReference", "draft_keys", "markov_sample", "row_modes"]

_NEG_INF = -math.inf


class MarkovReference(NamedTuple):
    draft_tokens: Tensor       # int64 [B, K]
    draft_logits: Tensor       # [B, K, V], dtype of base_logits
    draft_lse: Tensor          # float64 [B, K]
    confidence_logits: Optional[Tensor]  # float64 [B, K] or None
    margin: Tensor             # float64 [B, K]: gap between the two largest sampling keys
    choice: Tensor             # int64 [B, K]: the sampler's arg-max at each position (equals
                               # draft_tokens except in teacher-forced mode)
    keys: Optional[Tensor] = None  # [B, K, V] sampling keys (only with return_keys=True)
    draft_ids: Optional[Tensor] = None  # int64 [B, K, k] candidate ids (topk=k; draft_logits
                                        # is then [B, K, k], the candidates' z)


def topk_candidates(base: Tensor, topk: int) -> Tensor:
    """int64 [..., topk]: the ``topk`` largest entries' ids along the last dim, largest first,
    ties to the lower id, NaN ranked as -inf."""
    b = base.float()
    b = torch.where(torch.isnan(b), torch.full_like(b, _NEG_INF), b)
    return torch.sort(b, dim=-1, descending=True, stable=True).indices[..., :topk]


def row_modes(temperature: Tensor):
    """Per-row (inv_t, sample): greedy (inv_t = 1, no sampling) for T = 0 and for a T so small
    that 1/T overflows float32; else inv_t = 1/T rounded to float32 as the kernels do."""
    modes = []
    for t in temperature.detach().cpu().to(torch.float32).tolist():
        inv = _inv_temperature(t) if t > 0 else math.inf
        modes.append((inv, True) if math.isfinite(inv) else (1.0, False))
    return modes


def _embed(w1: Tensor, x: Tensor, dtype) -> Tensor:
    valid = (x >= 0) & (x < w1.shape[0])
    e = w1[torch.where(valid, x, torch.zeros_like(x))].to(dtype)
    return torch.where(valid[:, None], e, torch.zeros_like(e))


def _lse(s: Tensor) -> Tensor:
    m = s.amax(dim=-1, keepdim=True)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    out = m.squeeze(-1) + torch.log(torch.exp(s - shift).sum(dim=-1))
    return torch.where(m.squeeze(-1) == _NEG_INF, torch.full_like(out, _NEG_INF), out)


def _argmax_and_margin(keys: Tensor):
    """Lowest-index arg-max per row (-1 if all -inf) and the gap to the second largest key."""
    best = keys.max(dim=-1).values
    first = (keys == best[:, None]).to(torch.int64).argmax(dim=-1)
    token = torch.where(best == _NEG_INF, torch.full_like(first, -1), first)
    if keys.shape[-1] >= 2:
        top2 = keys.topk(2, dim=-1).values
        margin = top2[:, 0] - top2[:, 1]
        margin = torch.where(torch.isnan(margin), torch.full_like(margin, math.inf), margin)
    else:
        margin = torch.full_like(best, math.inf)
    return token, margin


def draft_keys(z: Tensor, temperature: Tensor, seed: Tensor, offset: Tensor, k: int,
               dtype: torch.dtype = torch.float64):
    """Sampling keys [B, V] of position k from its (rounded) logits z [B, V], and the scaled
    logits s whose log-sum-exp is draft_lse: ``s + G`` for sampled rows, ``s`` for greedy
    rows; masked logits have key -inf."""
    batch, vocab = z.shape
    modes = row_modes(temperature)
    sample = torch.tensor([m[1] for m in modes], dtype=torch.bool)
    s = torch.stack([masked_scaled(z[b], modes[b][0], dtype) for b in range(batch)])
    u = uniforms(torch.as_tensor(seed).cpu(), torch.as_tensor(offset).cpu(), k, PURPOSE_DRAFT,
                 vocab).to(dtype)
    gumbel = -torch.log(-torch.log(u))
    keys = torch.where(sample[:, None] & (s != _NEG_INF), s + gumbel, s)
    return keys, s


def markov_sample(
    base_logits: Tensor,
    anchor_tokens: Tensor,
    w1: Tensor,
    w2: Tensor,
    temperature: Tensor,
    seed: Tensor,
    offset: Tensor,
    head: str = "vanilla",
    hidden: Optional[Tensor] = None,
    head_weight: Optional[Tensor] = None,
    head_bias: Optional[Tensor] = None,
    conf_weight: Optional[Tensor] = None,
    conf_bias: Optional[Tensor] = None,
    teacher_tokens: Optional[Tensor] = None,
    dtype: torch.dtype = torch.float64,
    return_keys: bool = False,
    topk: Optional[int] = None,
) -> MarkovReference:
    """Reference of ``torch.ops.dspark.markov_sample`` (same arguments, CPU tensors or not).

    ``head_weight`` / ``head_bias`` are the gated head's ``gate_proj`` or the rnn head's
    ``joint_proj``. With ``teacher_tokens`` [B, K] (teacher-forced block mode) the previous
    tokens are given and nothing is sampled; the tokens returned are the teacher tokens.
    ``topk``: the top-k Markov correction (module docstring).
    """
    if head not in ("vanilla", "gated", "rnn"):
        raise ValueError(f"head must be vanilla, gated or rnn, got {head!r}")
    base = base_logits.detach().cpu()
    B, K, V = base.shape
    w1, w2 = w1.detach().cpu(), w2.detach().cpu().to(dtype)
    r = w2.shape[1]
    h = None if hidden is None else hidden.detach().cpu().to(dtype)
    W = None if head_weight is None else head_weight.detach().cpu().to(dtype)
    bW = (torch.zeros(W.shape[0], dtype=dtype) if W is not None and head_bias is None
          else None if head_bias is None else head_bias.detach().cpu().to(dtype))
    wc = None if conf_weight is None else conf_weight.detach().cpu().to(dtype).reshape(-1)
    bc = 0.0 if conf_bias is None else float(conf_bias.detach().cpu().to(dtype).reshape(-1)[0])
    seed = torch.as_tensor(seed).detach().cpu().to(torch.int64)
    offset = torch.as_tensor(offset).detach().cpu().to(torch.int64)
    teacher = None if teacher_tokens is None else teacher_tokens.detach().cpu().to(torch.int64)

    tokens = torch.empty(B, K, dtype=torch.int64)
    logits = torch.empty(B, K, V, dtype=base.dtype)
    lse = torch.empty(B, K, dtype=torch.float64)
    margin = torch.empty(B, K, dtype=torch.float64)
    choice = torch.empty(B, K, dtype=torch.int64)
    conf = None if wc is None else torch.empty(B, K, dtype=torch.float64)
    all_keys = torch.empty(B, K, V, dtype=torch.float64) if return_keys else None
    cand_ids = None if topk is None else topk_candidates(base, topk)  # [B, K, topk]

    x = anchor_tokens.detach().cpu().to(torch.int64)
    state = torch.zeros(B, r, dtype=dtype)
    for k in range(K):
        e = _embed(w1, x, dtype)  # [B, r]
        if head == "vanilla":
            u = e
        elif head == "gated":
            g = torch.sigmoid(torch.cat([h[:, k], e], dim=1) @ W.T + bW)
            u = g * e
        else:
            a = torch.cat([state, e, h[:, k]], dim=1) @ W.T + bW
            gate, cand, out = a[:, :r], a[:, r:2 * r], a[:, 2 * r:]
            state = torch.sigmoid(gate) * state + (1 - torch.sigmoid(gate)) * torch.tanh(cand)
            u = torch.tanh(out)
        if wc is not None:
            feat = torch.cat([h[:, k], e], dim=1) if wc.numel() == h.shape[2] + r else h[:, k]
            conf[:, k] = (feat @ wc + bc).to(torch.float64)
        if cand_ids is None:
            z = (base[:, k].to(dtype) + u @ w2.T).to(base.dtype)  # rounded as the op writes it
        else:  # the bias of the candidates only; every other logit -inf
            c = cand_ids[:, k]
            at_c = base[:, k].gather(1, c).to(dtype)
            at_c = torch.where(torch.isnan(at_c), torch.full_like(at_c, _NEG_INF), at_c)
            zc = at_c + torch.einsum("br,bjr->bj", u, w2[c])
            z = torch.full((B, V), _NEG_INF, dtype=base.dtype).scatter(1, c, zc.to(base.dtype))
        logits[:, k] = z
        keys, s = draft_keys(z, temperature, seed, offset, k)
        lse[:, k] = _lse(s)
        tok, margin[:, k] = _argmax_and_margin(keys)
        choice[:, k] = tok
        if return_keys:
            all_keys[:, k] = keys
        tokens[:, k] = tok if teacher is None else teacher[:, k]
        x = tokens[:, k]
    if cand_ids is not None:
        logits = logits.gather(2, cand_ids)
    return MarkovReference(tokens, logits, lse, conf, margin, choice, all_keys, cand_ids)
