"""Per-element math of verification in the working dtype (``csrc/core/verify_math.h``,
design §3.4-§3.5): the logit policy (non-finite logits, and scaled logits that overflow
float32, have probability zero), temperature scaling as the kernels round it, the laws p and
q, the block-verification weights, and the exact target law the tests compare against."""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["masked_scaled", "verify_masked_scaled", "verify_scale", "draft_probs_law",
           "target_law"]

# ----------------------------------------------------------------------------------------
# Per-element math (csrc/core/verify_math.h), on tensors of the working dtype
# ----------------------------------------------------------------------------------------

_NEG_INF = -math.inf


def _inv_temperature(temperature: float) -> float:
    """1/T rounded to float32, as the kernel computes it (``1.0f / rp.temperature``)."""
    t = torch.tensor(temperature, dtype=torch.float32)
    return float(torch.tensor(1.0, dtype=torch.float32) / t)


def masked_scaled(logits: Tensor, inv_t: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Scaled logits ``logit * inv_t`` in ``dtype``; masked entries are ``-inf``.

    Masked (verify_math.h ``masked_scaled``): NaN, +inf and -inf logits, and any logit whose
    float32 product with ``inv_t`` is not finite (the kernel scales in float32, so an
    overflow there masks the logit even where ``dtype`` would not overflow).
    """
    x32 = logits.detach().cpu().to(torch.float32)
    s32 = x32 * torch.tensor(inv_t, dtype=torch.float32)
    s = x32.to(dtype) * inv_t
    keep = torch.isfinite(s32) & torch.isfinite(s)
    return torch.where(keep, s, torch.full_like(s, _NEG_INF))


_LOG2E_F32 = float(torch.tensor(math.log2(math.e), dtype=torch.float32))


def verify_scale(inv_t: float) -> float:
    """``log2(e) / T`` as the kernels round it (``verify_scale``: ``inv_t * kLog2e`` in float32).

    The verification kernels work in log2 units (verify_math.h): they scale logits by this
    factor, so it decides which logits overflow (are masked) and which temperatures are
    treated as greedy. Their decisions are those of the natural-base law this module
    computes; only the rounding differs.
    """
    f32 = torch.float32
    return float(torch.tensor(inv_t, dtype=f32) * torch.tensor(_LOG2E_F32, dtype=f32))


def verify_masked_scaled(logits: Tensor, inv_t: float,
                         dtype: torch.dtype = torch.float64) -> Tensor:
    """:func:`masked_scaled` with the verification kernels' mask: a logit is also masked when
    its float32 product with :func:`verify_scale` overflows. Values are ``logit * inv_t``."""
    s = masked_scaled(logits, inv_t, dtype)
    x32 = logits.detach().cpu().to(torch.float32)
    s2 = x32 * torch.tensor(verify_scale(inv_t), dtype=torch.float32)
    return torch.where(torch.isfinite(s2), s, torch.full_like(s, _NEG_INF))


def _lse(scaled: Tensor) -> Tensor:
    """Row-wise log-sum-exp over the last dim; ``-inf`` for a fully masked row."""
    m = scaled.amax(dim=-1, keepdim=True)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    total = torch.exp(scaled - shift).sum(dim=-1)
    out = m.squeeze(-1) + torch.log(total)
    return torch.where(m.squeeze(-1) == _NEG_INF, torch.full_like(out, _NEG_INF), out)


def _log_prob(scaled: Tensor, lse: Tensor) -> Tensor:
    """log p = scaled - lse, ``-inf`` when the logit is masked or the row fully masked."""
    masked = (scaled == _NEG_INF) | (lse == _NEG_INF)
    return torch.where(masked, torch.full_like(scaled, _NEG_INF), scaled - lse)


def _probs(scaled: Tensor, lse: Tensor) -> Tensor:
    """p = exp(scaled - lse), 0 where masked."""
    return torch.exp(_log_prob(scaled, lse))


_MIN_NORMAL_F32 = 2.0 ** -126
_MAX_F32 = float(torch.finfo(torch.float32).max)


def draft_probs_law(draft_probs: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Draft probabilities as the kernels read them (verify_math.h ``draft_prob``), in ``dtype``.

    Used as given (no renormalisation); an entry that is NaN, infinite, negative, zero or
    below the smallest normal float32 (2^-126) after conversion to float32 is q = 0.
    """
    x32 = draft_probs.detach().cpu().to(torch.float32)
    keep = (x32 >= _MIN_NORMAL_F32) & (x32 <= _MAX_F32)
    return torch.where(keep, x32.to(dtype), torch.zeros((), dtype=dtype))


def _onehot(vocab: int, token: int, dtype: torch.dtype) -> Tensor:
    """The one-hot draft law q = delta at ``token`` (all zero if ``token`` is out of range)."""
    q = torch.zeros(vocab, dtype=dtype)
    if 0 <= token < vocab:
        q[token] = 1.0
    return q


def _argmax_lowest(keys: Tensor) -> int:
    """Index of the largest key, lowest index on ties; -1 when every key is ``-inf``."""
    best = keys.max()
    if best == _NEG_INF:
        return -1
    return int(torch.nonzero(keys == best)[0, 0])


def _block_stop_prob(z: Tensor, w: Tensor) -> Tensor:
    """h = Z / (Z + 1 - w), capped at 1; 1 when the denominator is <= 0."""
    den = z + (1.0 - w)
    if den > 0:
        return torch.clamp(z / den, max=1.0)
    return torch.ones_like(z)


def _block_log_weight(log_w_prev: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
    """log w_i = min(0, log w_{i-1} + log p - log q); ``-inf`` if any input is ``-inf``."""
    if log_q == _NEG_INF or log_p == _NEG_INF or log_w_prev == _NEG_INF:
        return torch.full_like(log_w_prev, _NEG_INF)
    return torch.clamp(log_w_prev + (log_p - log_q), max=0.0)


def target_law(target_logits_row: Tensor, temperature: float) -> Tensor:
    """Exact float64 law of one target row: softmax(masked logits / T), one-hot argmax if T == 0.

    The distribution every lossless verifier's emitted token must follow. All-zero when the
    whole row is masked.
    """
    row = torch.as_tensor(target_logits_row).reshape(-1)
    temperature = float(torch.tensor(temperature, dtype=torch.float32))
    if temperature == 0.0:
        best = _argmax_lowest(masked_scaled(row, 1.0))
        law = torch.zeros(row.numel(), dtype=torch.float64)
        if best >= 0:
            law[best] = 1.0
        return law
    scaled = verify_masked_scaled(row, _inv_temperature(temperature))
    return _probs(scaled, _lse(scaled))


