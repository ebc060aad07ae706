"""Vectorised eager-PyTorch baselines of the verification ops (what the benchmarks compare to).

These are what a typical HF transformers / vLLM-style eager implementation of speculative
verification does: batched over rows, every target and draft row turned into a float32
softmax at temperature T, the draft tokens' p / q gathered, ``torch.rand`` acceptance
uniforms, the first rejection found with a cumulative product, the correction drawn from the
residual ``max(p - q, 0)`` with ``torch.multinomial`` (the bonus from ``p``). Greedy: argmax
of every target row and a cumulative product of matches.

They are *the same ops* in law (lossless, same acceptance rule, same outputs and padding)
but not bit-for-bit: they draw from torch's global generator, not from the Philox streams of
design §2. Greedy results are identical to the native op's. All rows use the full ``K``
(padded layout without ``num_draft``), and every row is sampled at its own temperature
(``temperature`` float32 ``[B]``, > 0; greedy rows are what :func:`verify_greedy_eager` is for).

Every function returns ``(accepted [B], out_tokens [B, K+1], num_emitted [B], accept_flags
[B, K] int8)`` like the native ops.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

Outputs = Tuple[Tensor, Tensor, Tensor, Tensor]


def _assemble(draft_tokens: Tensor, accepted: Tensor, last: Tensor,
              tested_mask: Tensor, accept_mask: Tensor) -> Outputs:
    """out_tokens = accepted drafts, then ``last``, padded with -1; flags 1/0/-1."""
    batch, k = draft_tokens.shape
    pos = torch.arange(k + 1, device=draft_tokens.device).unsqueeze(0)  # [1, K+1]
    acc = accepted.unsqueeze(1)
    padded = torch.cat([draft_tokens, draft_tokens.new_full((batch, 1), -1)], dim=1)
    out = torch.where(pos < acc, padded, torch.full_like(padded, -1))
    out = torch.where(pos == acc, last.unsqueeze(1).expand_as(out), out)
    flags = torch.where(tested_mask, accept_mask.to(torch.int8),
                        torch.full_like(accept_mask, -1, dtype=torch.int8))
    return accepted, out, accepted + 1, flags


def verify_greedy_eager(target_logits: Tensor, draft_tokens: Tensor) -> Outputs:
    """design §3.1, eager: argmax of all K+1 target rows, cumprod of matches."""
    k = draft_tokens.shape[1]
    best = target_logits.argmax(dim=-1)  # [B, K+1] (first index of the max on ties)
    match = draft_tokens == best[:, :k]
    prefix = torch.cumprod(match.to(torch.int64), dim=1)  # 1 while every draft so far matched
    accepted = prefix.sum(dim=1)
    last = best.gather(1, accepted.unsqueeze(1)).squeeze(1)
    tested = torch.cat([torch.ones_like(prefix[:, :1]), prefix[:, :-1]], dim=1).bool()
    return _assemble(draft_tokens, accepted, last, tested, match)


def _probs(logits: Tensor, temperature: Tensor) -> Tensor:
    """float32 softmax of every row at the per-request temperature ([B, R, V])."""
    return torch.softmax(logits.float() / temperature.view(-1, 1, 1), dim=-1)


def _sample_residual(weight: Tensor, fallback: Tensor) -> Tensor:
    """One draw per row from normalize(weight) ([B, V]); rows of zero mass use ``fallback``."""
    empty = weight.sum(dim=-1, keepdim=True) <= 0
    weight = torch.where(empty, fallback, weight)
    return torch.multinomial(weight, 1).squeeze(1)


def rejection_sample_token_eager(target_logits: Tensor, draft_tokens: Tensor,
                                 draft_logits: Tensor, temperature: Tensor) -> Outputs:
    """design §3.2, eager (vLLM-style rejection sampler over padded [B, K(+1), V] logits)."""
    batch, k = draft_tokens.shape
    p = _probs(target_logits, temperature)  # [B, K+1, V]
    q = _probs(draft_logits, temperature)  # [B, K, V]
    idx = draft_tokens.unsqueeze(-1)
    p_x = p[:, :k].gather(2, idx).squeeze(-1)  # [B, K]
    q_x = q.gather(2, idx).squeeze(-1)
    u = torch.rand(batch, k, device=p.device)
    accept = (q_x > 0) & (u * q_x < p_x)  # u < p/q without dividing by zero
    prefix = torch.cumprod(accept.to(torch.int64), dim=1)
    accepted = prefix.sum(dim=1)  # first rejection index, K if none
    rows = accepted.view(batch, 1, 1).expand(batch, 1, p.shape[-1])
    p_row = p.gather(1, rows).squeeze(1)  # p_{k*} (or p_K, the bonus row)
    q_pad = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)  # q of the bonus row = 0
    q_row = q_pad.gather(1, rows).squeeze(1)
    last = _sample_residual(torch.clamp(p_row - q_row, min=0.0), p_row)
    tested = torch.cat([torch.ones_like(prefix[:, :1]), prefix[:, :-1]], dim=1).bool()
    return _assemble(draft_tokens, accepted, last, tested, accept)


def rejection_sample_block_eager(target_logits: Tensor, draft_tokens: Tensor,
                                 draft_logits: Tensor, temperature: Tensor) -> Outputs:
    """design §3.3 (Sun et al. block verification), eager and batched over rows.

    w_i = min(1, w_{i-1} p_i(X_i)/q_i(X_i)) (a K-step loop over [B] vectors), residual masses
    Z_i over every row 1..K-1 at once, h_i, one eta per position, tau = the last passing
    position, then the weighted residual of row tau (or the bonus from row K).
    """
    batch, k = draft_tokens.shape
    p = _probs(target_logits, temperature)  # [B, K+1, V]
    q = _probs(draft_logits, temperature)  # [B, K, V]
    idx = draft_tokens.unsqueeze(-1)
    p_x = p[:, :k].gather(2, idx).squeeze(-1)
    q_x = q.gather(2, idx).squeeze(-1)
    ratio = torch.where(q_x > 0, p_x / q_x.clamp_min(torch.finfo(q_x.dtype).tiny),
                        torch.zeros_like(p_x))
    w_prev = torch.ones(batch, device=p.device)
    ws = []
    for i in range(k):  # w_i, i = 1..K (column i-1)
        w_prev = torch.clamp(w_prev * ratio[:, i], max=1.0)
        ws.append(w_prev)
    w = torch.stack(ws, dim=1)  # [B, K]
    # Z_i = sum_x max(w_i p_{i+1} - q_{i+1}, 0) for i = 1..K-1 (rows 1..K-1).
    z = torch.clamp(w[:, :-1, None] * p[:, 1:k] - q[:, 1:], min=0.0).sum(dim=-1)  # [B, K-1]
    den = z + (1.0 - w[:, :-1])
    h_mid = torch.where(den > 0, (z / den.clamp_min(torch.finfo(z.dtype).tiny)).clamp(max=1.0),
                        torch.ones_like(z))
    h = torch.cat([h_mid, w[:, -1:]], dim=1)  # [B, K]; h_K = w_K
    eta = torch.rand(batch, k, device=p.device)
    passed = eta <= h
    pos = torch.arange(1, k + 1, device=p.device).unsqueeze(0)
    tau = torch.where(passed, pos, torch.zeros_like(pos)).amax(dim=1)  # 0 if none passed
    w_full = torch.cat([torch.ones_like(w[:, :1]), w], dim=1)  # w_0 = 1
    w_tau = w_full.gather(1, tau.unsqueeze(1))  # [B, 1]
    rows = tau.view(batch, 1, 1).expand(batch, 1, p.shape[-1])
    p_row = p.gather(1, rows).squeeze(1)
    q_pad = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)
    q_row = q_pad.gather(1, rows).squeeze(1)
    last = _sample_residual(torch.clamp(w_tau * p_row - q_row, min=0.0), p_row)
    tested = torch.ones_like(passed)
    return _assemble(draft_tokens, tau, last, tested, passed)


def toy_check(trials: int = 200_000) -> Tuple[float, float]:
    """design §3.3 toy: target (1/3, 2/3), draft (2/3, 1/3), gamma 2 -> 10/9 token, 11/9 block.

    Returns the mean accepted count of (token, block) on ``trials`` rows (a sanity check of
    these baselines, not a test).
    """
    t = torch.log(torch.tensor([1 / 3, 2 / 3])).expand(trials, 3, 2).contiguous()
    d = torch.log(torch.tensor([2 / 3, 1 / 3])).expand(trials, 2, 2).contiguous()
    x = torch.multinomial(torch.tensor([2 / 3, 1 / 3]), trials * 2, replacement=True)
    x = x.view(trials, 2)
    temp = torch.ones(trials)
    tok = rejection_sample_token_eager(t, x, d, temp)[0].double().mean().item()
    blk = rejection_sample_block_eager(t, x, d, temp)[0].double().mean().item()
    return tok, blk


if __name__ == "__main__":
    torch.manual_seed(0)
    tok, blk = toy_check()
    print(f"toy check: token {tok:.4f} (exact {10 / 9:.4f}), block {blk:.4f} (exact {11 / 9:.4f})")
