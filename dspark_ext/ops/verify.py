"""Thin, documented wrappers over the dspark torch ops (torch.ops.dspark.*).

Each wrapper converts Python scalars to tensors on the logits' device, picks the padded or
ragged op, and returns a :class:`VerifyResult`. The ops themselves are registered torch ops:
they run on CPU and CUDA, trace under torch.compile, and never synchronise the host.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

from ._args import per_row, per_row_seed

TensorOrFloat = Union[torch.Tensor, float]
TensorOrInt = Union[torch.Tensor, int]

_METHODS = ("token", "block")


class VerifyResult(NamedTuple):
    """Outputs of every verification op.

    accepted:     int64 [B], draft tokens accepted (0..l_r).
    out_tokens:   int64 [B, K+1], the accepted drafts then one correction-or-bonus token,
                  padded with -1.
    num_emitted:  int64 [B], tokens written to out_tokens (accepted + 1; 0 only for a row the
                  CUDA kernel found invalid, see README "Input validation").
    accept_flags: int8 [B, K] (padded) or [T] (ragged), per draft position: 1 accepted/passed,
                  0 tested and rejected, -1 not tested. For block verification the flag is the
                  outcome of that position's stop test (eta_i <= h_i).
    """

    accepted: torch.Tensor
    out_tokens: torch.Tensor
    num_emitted: torch.Tensor
    accept_flags: torch.Tensor


def _method_flag(method: str) -> bool:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return method == "block"


def _batch_size(target_logits: torch.Tensor, cu_num_draft: Optional[torch.Tensor],
                cu_inclusive: bool = False) -> int:
    if cu_num_draft is not None:
        if cu_num_draft.dim() != 1:
            return 0
        return cu_num_draft.shape[0] if cu_inclusive else max(cu_num_draft.shape[0] - 1, 0)
    return target_logits.shape[0] if target_logits.dim() >= 1 else 0


def _ragged_max(cu_num_draft: torch.Tensor, max_num_draft: Optional[int],
                cu_inclusive: bool = False) -> int:
    if max_num_draft is not None:
        return int(max_num_draft)
    if cu_inclusive:
        cu_num_draft = torch.cat([cu_num_draft.new_zeros(1), cu_num_draft])
    if cu_num_draft.numel() <= 1:
        return 0
    # Reads the offsets on the host (a device sync on CUDA): pass max_num_draft to avoid it.
    return int((cu_num_draft[1:] - cu_num_draft[:-1]).max().item())


def verify_greedy(
    target_logits: torch.Tensor,
    draft_tokens: torch.Tensor,
    num_draft: Optional[torch.Tensor] = None,
    *,
    cu_num_draft: Optional[torch.Tensor] = None,
    max_num_draft: Optional[int] = None,
    cu_inclusive: bool = False,
) -> VerifyResult:
    """Greedy verification (design §3.1): accept draft k while it equals argmax of target row k.

    Padded layout: ``target_logits`` [B, K+1, V] (float32/bfloat16/float16, and float64 on
    the CPU; vocabulary dim contiguous), ``draft_tokens`` [B, K], optional ``num_draft`` [B]
    (<= K, defaults to K). Ragged layout (pass ``cu_num_draft`` [B+1], leading 0):
    ``target_logits`` [T+B, V], ``draft_tokens`` [T]; ``cu_inclusive=True`` takes vLLM's
    ``cu_num_draft_tokens`` [B] (inclusive cumulative counts, no leading 0) instead;
    ``max_num_draft`` sets the width of ``out_tokens`` (read from the offsets when omitted,
    which synchronises a CUDA device). Index tensors are int64 or int32, read as given.

    >>> res = verify_greedy(logits, drafts)            # logits [B, K+1, V], drafts [B, K]
    >>> res.out_tokens[b, : res.num_emitted[b]]        # tokens to append for request b
    """
    if cu_num_draft is not None:
        if num_draft is not None:
            raise ValueError("pass either num_draft (padded) or cu_num_draft (ragged), not both")
        out = torch.ops.dspark.verify_greedy_ragged(
            target_logits, draft_tokens, cu_num_draft,
            _ragged_max(cu_num_draft, max_num_draft, cu_inclusive), cu_inclusive)
    else:
        out = torch.ops.dspark.verify_greedy(target_logits, draft_tokens, num_draft)
    return VerifyResult(*out)


def rejection_sample(
    target_logits: torch.Tensor,
    draft_tokens: torch.Tensor,
    draft_logits: Optional[torch.Tensor],
    temperature: TensorOrFloat,
    seed: TensorOrInt,
    offset: TensorOrInt,
    num_draft: Optional[torch.Tensor] = None,
    *,
    method: str = "token",
    cu_num_draft: Optional[torch.Tensor] = None,
    max_num_draft: Optional[int] = None,
    draft_probs: Optional[torch.Tensor] = None,
    draft_lse: Optional[torch.Tensor] = None,
    draft_ids: Optional[torch.Tensor] = None,
    cu_inclusive: bool = False,
) -> VerifyResult:
    """Lossless speculative verification from logits (design §3.2 token-wise, §3.3 block).

    ``temperature`` float32 [B] (or a float): 0 makes a row greedy, so one batch may mix
    greedy and sampled rows. ``seed`` / ``offset`` int64 or int32 [B] key the counter-based
    Philox streams (an int ``seed`` gives row r the seed ``seed + r``; an int ``offset`` is
    shared); advance ``offset`` every step whatever was accepted. The draft law q comes from
    one of:

    * ``draft_logits`` [B, K, V] (ragged: [T, V]): the drafter's logits; the op computes
      q = softmax(draft_logits / T) at the row's temperature;
    * ``draft_probs`` (keyword, same shapes): q itself, e.g. the probabilities a serving
      engine sampled the drafts from, already at the row's temperature. Used as given, not
      renormalised; NaN, infinite, negative and subnormal entries count as q = 0 (README
      "Draft probabilities");
    * neither (``draft_logits=None``): one-hot drafts (e.g. n-gram drafters: q = delta at
      the draft token).

    Draft rows have the dtype of ``target_logits`` and a contiguous vocabulary dimension.
    ``draft_lse`` (keyword, only with ``draft_logits``; opt-in): float32 [B, K] (ragged: [T]),
    ``logsumexp(draft_logits.float() / T, -1)`` per draft row at the row's temperature, e.g.
    :func:`markov_sample`'s ``draft_lse`` at the same temperatures. It replaces the op's own
    pass over each draft row (about a third of the op's time); the op trusts it, and a wrong
    value silently changes the law, so pass only an lse computed from these very rows.
    ``draft_ids`` (keyword, int64 or int32, the shape of the draft rows ``[B, K, W]`` / ``[T,
    W]``, W <= V): sparse draft rows, column j standing for vocabulary id ``draft_ids[..., j]``
    and every other id at logit -inf (probability 0): :func:`markov_sample`'s top-k
    ``draft_ids``, or a reduced draft vocabulary's map ``d2t`` as a broadcast view
    (``d2t.expand(B, K, -1)``). The ids of a row must be distinct (the CPU op checks).
    ``method`` is ``"token"`` (Leviathan/Chen rejection sampling) or ``"block"`` (block
    verification: accepts at least as many tokens in expectation). Layouts as in
    :func:`verify_greedy`. The softmax, the residual and the correction/bonus sampling
    happen inside the op; no probabilities are materialised. With the same seeds,
    ``draft_probs=softmax(d / T)`` and ``draft_logits=d`` draw from the same Philox streams
    and so give the same tokens up to float32 rounding of q.

    >>> res = rejection_sample(t_logits, drafts, d_logits, 0.8, seed=1234, offset=step)
    >>> res = rejection_sample(t_logits, drafts, None, 0.8, 1234, step, draft_probs=q)
    """
    block = _method_flag(method)
    if draft_logits is not None and draft_probs is not None:
        raise ValueError("rejection_sample: pass either draft_logits or draft_probs, not both "
                         "(draft_logits=None and no draft_probs: one-hot drafts)")
    for name, value in (("draft_logits", draft_logits), ("draft_probs", draft_probs)):
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"rejection_sample: {name} must be a tensor or None, got "
                            f"{type(value).__name__}")
    device = target_logits.device
    batch = _batch_size(target_logits, cu_num_draft, cu_inclusive)
    temperature = per_row(temperature, batch, torch.float32, device, "temperature")
    seed = per_row_seed(seed, batch, device)
    offset = per_row(offset, batch, torch.int64, device, "offset")
    if cu_num_draft is not None:
        if num_draft is not None:
            raise ValueError("pass either num_draft (padded) or cu_num_draft (ragged), not both")
        out = torch.ops.dspark.rejection_sample_ragged(
            target_logits, draft_tokens, draft_logits, cu_num_draft,
            _ragged_max(cu_num_draft, max_num_draft, cu_inclusive), temperature, seed, offset,
            block, draft_probs=draft_probs, draft_lse=draft_lse, draft_ids=draft_ids,
            cu_inclusive=cu_inclusive)
    else:
        out = torch.ops.dspark.rejection_sample(
            target_logits, draft_tokens, draft_logits, temperature, seed, offset, num_draft,
            block, draft_probs=draft_probs, draft_lse=draft_lse, draft_ids=draft_ids)
    return VerifyResult(*out)
