"""Pure-PyTorch reference of dspark_ext's verification ops: the ground truth the tests use.

This module mirrors, decision for decision, the header-only C++ core that every native
kernel runs (``csrc/core/philox.h``, ``verify_math.h``, ``verify_row.h``,
``verify_problem.h``), and design §2-§3:

* the same counter-based Philox4x32-10 stream layout, so that for the same
  ``(seed, offset, position, purpose, lane)`` it draws the *same* uniforms as the kernels
  (bit-exact: a uniform is ``(2m + 1) * 2**-24`` with 23 random bits ``m``, which float32 and
  float64 both represent exactly);
* the same logit policy (non-finite logits, and scaled logits that overflow float32, have
  probability zero), the same per-position tests, the same residual / fallback / bonus
  samplers (exponential race and Gumbel-max over the vocabulary, ties to the lowest index),
  and the same random-stream positions for each decision.

Only the arithmetic differs: the kernels accumulate in float32 with their own exp/log
(``fastmath.h``), while this reference computes in ``dtype`` (float64 by default) with torch's.
So native and reference outputs agree token for token except when a decision lies within
float32 rounding of its threshold (an acceptance ``log u`` vs ``log p - log q``, a stop test
``eta <= h``, or two near-equal sampling keys); greedy verification is always identical.

Everything here is slow and readable: requests are handled one by one in Python.

Public API
----------
Random numbers: :func:`philox4x32_10`, :func:`rng_words`, :func:`uniforms`,
:func:`uniform_from_words`, and the purpose tags ``PURPOSE_DRAFT``, ``PURPOSE_ACCEPT``,
``PURPOSE_RESIDUAL``.

Verification (same arguments and outputs as the ``torch.ops.dspark`` ops, returned as
:class:`VerifyResult`): :func:`verify_greedy`, :func:`verify_greedy_ragged`,
:func:`rejection_sample`, :func:`rejection_sample_ragged`.

Exact laws: :func:`target_law`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..ops.verify import VerifyResult
from .laws import (_NEG_INF, _argmax_lowest, _block_log_weight, _block_stop_prob,
                   _inv_temperature, _lse, _log_prob, _onehot, _probs, draft_probs_law,
                   masked_scaled, verify_masked_scaled, verify_scale)
from .philox import PURPOSE_ACCEPT, PURPOSE_RESIDUAL, _int64_tensor, uniforms

__all__ = ["VerifyResult", "verify_greedy", "verify_greedy_ragged", "rejection_sample",
           "rejection_sample_ragged"]

# ----------------------------------------------------------------------------------------
# One request (csrc/core/verify_row.h)
# ----------------------------------------------------------------------------------------


# Residual/bonus uniforms are precomputed for the whole batch (one Philox call) when the
# table [B, K+1, V] has at most this many lanes; larger problems draw them per request.
_PRECOMPUTE_LANES = 1 << 20


class _BatchStreams:
    """The uniforms a batch of requests draws, made lazily and batched for speed.

    Values do not depend on how they are batched: u(seed, offset, position, purpose, lane) is
    a pure function. ``accept_uniform(b, k)`` is lane 0 of request b's ACCEPT stream at
    position k; ``residual_uniforms(b, k)`` are lanes 0..V-1 of its RESIDUAL stream at
    position k.
    """

    def __init__(self, seeds: List[int], offsets: List[int], max_draft: int, vocab: int):
        self.seeds = torch.tensor(seeds, dtype=torch.int64)
        self.offsets = torch.tensor(offsets, dtype=torch.int64)
        self.max_draft = max_draft
        self.vocab = vocab
        self._accept: Optional[Tensor] = None  # [B, K]
        self._residual: Optional[Tensor] = None  # [B, K+1, V]

    def _table(self, positions: int, purpose: int, lanes: int) -> Tensor:
        """[B, positions, lanes] uniforms of every request at positions 0..positions-1."""
        batch = self.seeds.numel()
        pos = torch.arange(positions, dtype=torch.int64).repeat(batch)
        u = uniforms(self.seeds.repeat_interleave(positions),
                     self.offsets.repeat_interleave(positions), pos, purpose, lanes)
        return u.view(batch, positions, lanes)

    def accept_uniform(self, b: int, k: int) -> Tensor:
        if self._accept is None:
            self._accept = self._table(self.max_draft, PURPOSE_ACCEPT, 1)[:, :, 0]
        return self._accept[b, k]

    def residual_uniforms(self, b: int, k: int) -> Tensor:
        lanes = self.seeds.numel() * (self.max_draft + 1) * self.vocab
        if self._residual is None and lanes <= _PRECOMPUTE_LANES:
            self._residual = self._table(self.max_draft + 1, PURPOSE_RESIDUAL, self.vocab)
        if self._residual is not None:
            return self._residual[b, k]
        return uniforms(self.seeds[b], self.offsets[b], k, PURPOSE_RESIDUAL, self.vocab)[0]


class _Request:
    """One request's inputs, its rows already scaled, masked and reduced.

    ``target``: raw logits ``[l+1, V]``; ``draft``: raw logits ``[l, V]`` (or probabilities
    when ``draft_probs``) or ``None`` for one-hot drafts; ``tokens``: the ``l`` draft token
    ids (may be out of range: such a token has p = q = 0, as in the kernel).
    """

    def __init__(self, target, draft, tokens, temperature, streams, b, dtype,
                 draft_probs=False):
        self.vocab = target.shape[-1]
        self.num_draft = len(tokens)
        self.tokens = tokens
        self.temperature = temperature
        self.streams = streams  # _BatchStreams of the batch, this request is row b
        self.b = b
        self.dtype = dtype
        self.target_raw = target
        self.onehot = draft is None
        self.q_d = None  # [l, V] draft probabilities (draft_probs), else None
        # Greedy: T == 0, or T so small that log2(e)/T overflows float32 (verify_row.h).
        self.greedy = temperature == 0.0 or not math.isfinite(
            verify_scale(_inv_temperature(temperature)))
        if not self.greedy:
            inv_t = _inv_temperature(temperature)
            self.s_t = verify_masked_scaled(target, inv_t, dtype)  # [l+1, V]
            self.lse_t = _lse(self.s_t)  # [l+1]
            if self.onehot or draft_probs:
                self.s_d = None
                self.lse_d = torch.zeros(self.num_draft, dtype=dtype)
                if draft_probs:
                    self.q_d = draft_probs_law(draft, dtype)
            else:
                self.s_d = verify_masked_scaled(draft, inv_t, dtype)  # [l, V]
                self.lse_d = _lse(self.s_d)  # [l]

    # -- random streams --------------------------------------------------------------------
    def accept_uniform(self, position: int) -> Tensor:
        """u_k / eta_{k+1}: lane 0 of the ACCEPT stream at ``position``."""
        return self.streams.accept_uniform(self.b, position).to(self.dtype)

    def residual_uniforms(self, position: int) -> Tensor:
        """One uniform per vocabulary lane of the RESIDUAL stream at ``position``."""
        return self.streams.residual_uniforms(self.b, position).to(self.dtype)

    # -- probabilities ---------------------------------------------------------------------
    def in_vocab(self, token: int) -> bool:
        return 0 <= token < self.vocab

    def log_p(self, k: int, x: int) -> Tensor:
        return _log_prob(self.s_t[k, x], self.lse_t[k])

    def log_q(self, k: int, x: int) -> Tensor:
        if self.onehot:
            return torch.zeros((), dtype=self.dtype)
        if self.q_d is not None:
            return torch.log(self.q_d[k, x])  # -inf for q = 0
        return _log_prob(self.s_d[k, x], self.lse_d[k])

    def log_pq(self, k: int) -> Tuple[Tensor, Tensor]:
        """(log p_k(x_k), log q_k(x_k)) of the draft token; both -inf if it is out of range."""
        x = self.tokens[k]
        if not self.in_vocab(x):
            neg = torch.tensor(_NEG_INF, dtype=self.dtype)
            return neg, neg
        return self.log_p(k, x), self.log_q(k, x)

    def p_q_rows(self, k: int) -> Tuple[Tensor, Tensor]:
        """Target law p_k and draft law q_k (one-hot at the draft token of row k)."""
        p = _probs(self.s_t[k], self.lse_t[k])
        if self.onehot:
            q = _onehot(self.vocab, self.tokens[k], self.dtype)
        elif self.q_d is not None:
            q = self.q_d[k]
        else:
            q = _probs(self.s_d[k], self.lse_d[k])
        return p, q

    def residual_mass(self, k: int, w: Tensor) -> Tensor:
        """Z = sum_x max(w p_k(x) - q_k(x), 0)."""
        p, q = self.p_q_rows(k)
        return torch.clamp(w * p - q, min=0.0).sum()

    # -- samplers --------------------------------------------------------------------------
    def sample_residual(self, k: int, w: Tensor, position: int) -> int:
        """Exponential race over max(w p_k - q_k, 0); falls back to p_k when that is empty.

        key_x = weight_x / E_x with E_x = -log u_x from lane x of the RESIDUAL stream at
        ``position``; -1 only if the target row is fully masked.
        """
        p, q = self.p_q_rows(k)
        inv_e = 1.0 / -torch.log(self.residual_uniforms(position))
        weight = torch.clamp(w * p - q, min=0.0)
        neg = torch.full_like(p, _NEG_INF)
        y = _argmax_lowest(torch.where(weight > 0, weight * inv_e, neg))
        if y < 0:
            y = _argmax_lowest(torch.where(p > 0, p * inv_e, neg))
        return y

    def sample_target(self, k: int, position: int) -> int:
        """Gumbel-max over p_k: key_x = s_x - log(-log u_x), masked logits never win."""
        s = self.s_t[k]
        key = s - torch.log(-torch.log(self.residual_uniforms(position)))
        return _argmax_lowest(torch.where(s == _NEG_INF, torch.full_like(s, _NEG_INF), key))

    def argmax_target(self, k: int) -> int:
        """Greedy: argmax of the masked raw logits of target row k, -1 if all masked."""
        return _argmax_lowest(masked_scaled(self.target_raw[k], 1.0))


_Outcome = Tuple[List[int], List[int]]  # (emitted tokens, accept flags of positions 0..l-1)

_ACCEPTED, _REJECTED, _UNTESTED = 1, 0, -1


def _verify_greedy_row(req: _Request) -> _Outcome:
    """design §3.1 (verify_row_greedy)."""
    out: List[int] = []
    flags = [_UNTESTED] * req.num_draft
    for k in range(req.num_draft):
        best = req.argmax_target(k)
        x = req.tokens[k]
        if best < 0 or x != best:
            flags[k] = _REJECTED
            return out + [best], flags
        flags[k] = _ACCEPTED
        out.append(x)
    return out + [req.argmax_target(req.num_draft)], flags


def _verify_token_row(req: _Request) -> _Outcome:
    """design §3.2 (verify_row_token): accept x_k iff log u_k < log p - log q."""
    out: List[int] = []
    flags = [_UNTESTED] * req.num_draft
    one = torch.ones((), dtype=req.dtype)
    for k in range(req.num_draft):
        log_p, log_q = req.log_pq(k)
        u = req.accept_uniform(k)
        accept = bool(log_q != _NEG_INF and log_p != _NEG_INF and torch.log(u) < log_p - log_q)
        if not accept:
            flags[k] = _REJECTED
            return out + [req.sample_residual(k, one, position=k)], flags
        flags[k] = _ACCEPTED
        out.append(req.tokens[k])
    return out + [req.sample_target(req.num_draft, position=req.num_draft)], flags


def _verify_block_row(req: _Request) -> _Outcome:
    """design §3.3 (verify_row_block). Spec index i (1-based) is position k = i here.

    w_i comes from row i-1; for 0 < i < l the stop test eta_i <= h_i uses Z_i over row i and
    eta_i = ACCEPT stream at position i-1; h_l = w_l. tau = the last passing i; the output is
    x_0..x_{tau-1}, then a bonus from row l (tau == l) or a residual sample from row tau with
    weight w_tau, both from the RESIDUAL stream at position tau.
    """
    l = req.num_draft
    flags = [_UNTESTED] * l
    log_w = torch.zeros((), dtype=req.dtype)  # log w_0
    tau, w_tau = 0, torch.ones((), dtype=req.dtype)
    for k in range(l):
        if k > 0:
            w = torch.exp(log_w)
            h = _block_stop_prob(req.residual_mass(k, w), w)
            passed = bool(req.accept_uniform(k - 1) <= h)
            flags[k - 1] = _ACCEPTED if passed else _REJECTED
            if passed:
                tau, w_tau = k, w
        log_p, log_q = req.log_pq(k)
        log_w = _block_log_weight(log_w, log_p, log_q)
    if l > 0:
        passed = bool(req.accept_uniform(l - 1) <= torch.exp(log_w))
        flags[l - 1] = _ACCEPTED if passed else _REJECTED
        if passed:
            tau = l
    out = list(req.tokens[:tau])
    if tau == l:
        y = req.sample_target(l, position=tau)
    else:
        y = req.sample_residual(tau, w_tau, position=tau)
    return out + [y], flags


def _verify_request(req: _Request, method: str) -> _Outcome:
    """verify_row: greedy rows (T == 0) use §3.1 whatever the method."""
    if req.greedy:
        return _verify_greedy_row(req)
    if method == "block":
        return _verify_block_row(req)
    return _verify_token_row(req)


# ----------------------------------------------------------------------------------------
# Layouts (csrc/core/verify_problem.h) and the public ops
# ----------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in ("token", "block"):
        raise ValueError(f"method must be 'token' or 'block', got {method!r}")


def _row_params(temperature, seed, offset, batch: int):
    """Per-row (temperature as float32 value, seed, offset) lists, validated."""
    temps = torch.as_tensor(temperature).detach().cpu().to(torch.float32).reshape(-1).tolist()
    seeds = _int64_tensor(seed).tolist()
    offsets = _int64_tensor(offset).tolist()
    for name, values in (("temperature", temps), ("seed", seeds), ("offset", offsets)):
        if len(values) != batch:
            raise ValueError(f"{name} must have {batch} elements, got {len(values)}")
    for t in temps:
        if not (t >= 0.0 and math.isfinite(t)):
            raise ValueError(f"temperature must be finite and >= 0, got {t}")
    return temps, seeds, offsets


def _padded_lengths(num_draft, batch: int, k_max: int) -> List[int]:
    if num_draft is None:
        return [k_max] * batch
    lengths = _int64_tensor(num_draft).tolist()
    if len(lengths) != batch or any(not 0 <= n <= k_max for n in lengths):
        raise ValueError(f"num_draft must be [{batch}] with values in [0, {k_max}]")
    return lengths


def _ragged_starts(cu_num_draft, num_tokens: int, max_num_draft: int) -> List[int]:
    cu = _int64_tensor(cu_num_draft).tolist()
    if not cu or cu[0] != 0 or cu[-1] != num_tokens:
        raise ValueError(f"cu_num_draft must start at 0 and end at T={num_tokens}, got {cu}")
    for lo, hi in zip(cu[:-1], cu[1:]):
        if not 0 <= hi - lo <= max_num_draft:
            raise ValueError(f"cu_num_draft: lengths must be in [0, {max_num_draft}], got {cu}")
    return cu


def _collect(outcomes: List[_Outcome], k_max: int, flags: Tensor, flag_index) -> VerifyResult:
    """Write per-request outcomes into the output tensors (-1 padded).

    ``flags`` is the (-1 filled) accept_flags tensor; ``flag_index(b, k)`` names the element
    of request b's position k in it.
    """
    batch = len(outcomes)
    out_tokens = torch.full((batch, k_max + 1), -1, dtype=torch.int64)
    accepted = torch.zeros(batch, dtype=torch.int64)
    for b, (tokens, row_flags) in enumerate(outcomes):
        accepted[b] = len(tokens) - 1
        out_tokens[b, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        for k, f in enumerate(row_flags):
            flags[flag_index(b, k)] = f
    return VerifyResult(accepted, out_tokens, accepted + 1, flags)


def _draft_rows(draft_logits, draft_probs):
    """(draft rows, whether they are probabilities) of a call; both given is an error."""
    if draft_logits is not None and draft_probs is not None:
        raise ValueError("pass either draft_logits or draft_probs, not both")
    return (draft_logits, False) if draft_probs is None else (draft_probs, True)


def densify_draft_rows(rows: Optional[Tensor], draft_ids: Optional[Tensor], vocab: int,
                       probs: bool) -> Optional[Tensor]:
    """Draft rows over a subset of the vocabulary (``rows [..., W]``, ``draft_ids [..., W]``:
    entry j of a row is vocabulary id ``draft_ids[..., j]``, e.g. top-k Markov candidates or
    a reduced draft vocabulary's map) as the dense rows ``[..., V]`` they stand for: every
    other id has logit -inf (probability 0). Without ``draft_ids`` the rows are returned as
    they are."""
    if draft_ids is None or rows is None:
        return rows
    rows = torch.as_tensor(rows).detach().cpu()
    ids = torch.as_tensor(draft_ids).detach().cpu().to(torch.int64).expand(rows.shape)
    fill = 0.0 if probs else -math.inf
    dense = torch.full((*rows.shape[:-1], vocab), fill, dtype=rows.dtype)
    return dense.scatter(-1, ids, rows)


def _padded(target_logits, draft_tokens, draft_logits, num_draft, params, method, dtype,
            draft_probs=None):
    draft_rows, probs = _draft_rows(draft_logits, draft_probs)
    target_logits = torch.as_tensor(target_logits).detach().cpu()
    draft_tokens = torch.as_tensor(draft_tokens).detach().cpu().to(torch.int64)
    if draft_tokens.dim() != 2:
        raise ValueError(f"draft_tokens must be [B, K], got {tuple(draft_tokens.shape)}")
    batch, k_max = draft_tokens.shape
    if target_logits.shape[:2] != (batch, k_max + 1) or target_logits.dim() != 3:
        raise ValueError(f"target_logits must be [B, K+1, V] = [{batch}, {k_max + 1}, V]")
    lengths = _padded_lengths(num_draft, batch, k_max)
    temps, seeds, offsets = params(batch)
    streams = _BatchStreams(seeds, offsets, k_max, target_logits.shape[-1])
    outcomes = []
    for b in range(batch):
        l = lengths[b]
        draft = None if draft_rows is None else draft_rows[b, :l].detach().cpu()
        req = _Request(target_logits[b, : l + 1], draft, draft_tokens[b, :l].tolist(),
                       temps[b], streams, b, dtype, probs)
        outcomes.append(_verify_request(req, method))
    flags = torch.full((batch, k_max), -1, dtype=torch.int8)
    return _collect(outcomes, k_max, flags, lambda b, k: (b, k))


def _ragged(target_logits, draft_tokens, draft_logits, cu_num_draft, max_num_draft, params,
            method, dtype, draft_probs=None):
    draft_rows, probs = _draft_rows(draft_logits, draft_probs)
    target_logits = torch.as_tensor(target_logits).detach().cpu()
    draft_tokens = _int64_tensor(draft_tokens)
    num_tokens = draft_tokens.numel()
    cu = _ragged_starts(cu_num_draft, num_tokens, max_num_draft)
    batch = len(cu) - 1
    if target_logits.dim() != 2 or target_logits.shape[0] != num_tokens + batch:
        raise ValueError(f"target_logits must be [T+B, V] = [{num_tokens + batch}, V]")
    temps, seeds, offsets = params(batch)
    streams = _BatchStreams(seeds, offsets, max_num_draft, target_logits.shape[-1])
    outcomes = []
    for b in range(batch):
        lo, hi = cu[b], cu[b + 1]
        draft = None if draft_rows is None else draft_rows[lo:hi].detach().cpu()
        req = _Request(target_logits[lo + b : hi + b + 1], draft, draft_tokens[lo:hi].tolist(),
                       temps[b], streams, b, dtype, probs)
        outcomes.append(_verify_request(req, method))
    flags = torch.full((num_tokens,), -1, dtype=torch.int8)
    return _collect(outcomes, max_num_draft, flags, lambda b, k: cu[b] + k)


def _greedy_params(batch: int):
    return [0.0] * batch, [0] * batch, [0] * batch


def verify_greedy(target_logits: Tensor, draft_tokens: Tensor,
                  num_draft: Optional[Tensor] = None) -> VerifyResult:
    """Greedy verification (design §3.1), padded layout.

    target ``[B, K+1, V]``, draft tokens ``[B, K]``, optional ``num_draft [B]``.
    """
    return _padded(target_logits, draft_tokens, None, num_draft, _greedy_params, "token",
                   torch.float64)


def verify_greedy_ragged(target_logits: Tensor, draft_tokens: Tensor, cu_num_draft: Tensor,
                         max_num_draft: int) -> VerifyResult:
    """Greedy verification, ragged layout: target ``[T+B, V]``, drafts ``[T]``, ``cu [B+1]``."""
    return _ragged(target_logits, draft_tokens, None, cu_num_draft, max_num_draft,
                   _greedy_params, "token", torch.float64)


def rejection_sample(
    target_logits: Tensor,
    draft_tokens: Tensor,
    draft_logits: Optional[Tensor],
    temperature: Tensor,
    seed: Tensor,
    offset: Tensor,
    num_draft: Optional[Tensor] = None,
    method: str = "token",
    dtype: torch.dtype = torch.float64,
    *,
    draft_probs: Optional[Tensor] = None,
    draft_ids: Optional[Tensor] = None,
) -> VerifyResult:
    """Token-wise (design §3.2) or block (§3.3) verification, padded layout.

    target ``[B, K+1, V]``, draft tokens ``[B, K]``, draft logits ``[B, K, V]`` or ``None``
    (one-hot drafts), per-row temperature / seed / offset ``[B]`` (temperature 0 = greedy
    row), optional ``num_draft [B]``. ``method`` is ``"token"`` or ``"block"``.
    ``draft_probs`` ``[B, K, V]`` (instead of draft logits) gives q itself, read as
    :func:`draft_probs_law` says. ``draft_ids`` ``[B, K, W]``: the draft rows ``[B, K, W]``
    cover those vocabulary ids only (:func:`densify_draft_rows`).
    """
    _check_method(method)
    params = lambda batch: _row_params(temperature, seed, offset, batch)  # noqa: E731
    vocab = torch.as_tensor(target_logits).shape[-1]
    draft_logits = densify_draft_rows(draft_logits, draft_ids, vocab, False)
    draft_probs = densify_draft_rows(draft_probs, draft_ids, vocab, True)
    return _padded(target_logits, draft_tokens, draft_logits, num_draft, params, method, dtype,
                   draft_probs)


def rejection_sample_ragged(
    target_logits: Tensor,
    draft_tokens: Tensor,
    draft_logits: Optional[Tensor],
    cu_num_draft: Tensor,
    max_num_draft: int,
    temperature: Tensor,
    seed: Tensor,
    offset: Tensor,
    method: str = "token",
    dtype: torch.dtype = torch.float64,
    *,
    draft_probs: Optional[Tensor] = None,
    draft_ids: Optional[Tensor] = None,
) -> VerifyResult:
    """:func:`rejection_sample` in the ragged layout (target ``[T+B, V]``, drafts ``[T]`` /
    ``[T, V]`` (``[T, W]`` with ``draft_ids [T, W]``), ``cu_num_draft [B+1]``); out_tokens is
    ``[B, max_num_draft+1]``."""
    _check_method(method)
    params = lambda batch: _row_params(temperature, seed, offset, batch)  # noqa: E731
    vocab = torch.as_tensor(target_logits).shape[-1]
    draft_logits = densify_draft_rows(draft_logits, draft_ids, vocab, False)
    draft_probs = densify_draft_rows(draft_probs, draft_ids, vocab, True)
    return _ragged(target_logits, draft_tokens, draft_logits, cu_num_draft, max_num_draft,
                   params, method, dtype, draft_probs)
