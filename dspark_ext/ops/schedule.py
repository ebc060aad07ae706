"""The scheduler op's Python wrappers (design §6): ``torch.ops.dspark.schedule_prefix`` and
the three ways the scheduler calls it. The host-side pieces (the SPS profile, the
asynchronous scheduler across steps, baselines) are in :mod:`dspark_ext.scheduler`.

* :func:`schedule_causal` -- Algorithm 1 with the early stop (lossless on the current step).
* :func:`schedule_global` -- the unconstrained search; **not lossless** on the current step
  (design §6), used for capacities two steps later and as a negative control.
* :func:`schedule_capacity` -- admit the top-``capacity`` current candidates.

All run on CPU and CUDA with no host synchronisation when every input is already a tensor
on the device, and return a :class:`ScheduleResult`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import torch

__all__ = ["ScheduleResult", "SpsLike", "schedule_prefix", "schedule_causal", "schedule_global",
           "schedule_capacity", "sps_tensor"]


class ScheduleResult(NamedTuple):
    """Outputs of the scheduler op (tensors on the confidences' device).

    lengths:         int64 [R], draft tokens to verify per request (``num_draft``).
    num_admitted:    int64 [], ``sum(lengths)`` (for the asynchronous scheduler's capacity).
    expected_tokens: float64 [], tau at the chosen lengths (counts each request's bonus token).
    throughput:      float64 [], Theta = tau * SPS(R + num_admitted).
    """

    lengths: torch.Tensor
    num_admitted: torch.Tensor
    expected_tokens: torch.Tensor
    throughput: torch.Tensor


# A table indexed by batch tokens, a list of floats, or anything with ``table(max_tokens,
# device=...)`` (an :class:`~dspark_ext.scheduler.SPSProfile`; duck-typed so that the op
# layer does not import the scheduler package above it).
SpsLike = Union[torch.Tensor, Sequence[float], "SPSProfile"]  # noqa: F821


def sps_tensor(sps: SpsLike, confidence: torch.Tensor,
               max_batch_tokens: Optional[int]) -> torch.Tensor:
    """``sps`` as the 1-D table the op takes, long enough for ``confidence`` [R, K]."""
    if hasattr(sps, "table") and not isinstance(sps, torch.Tensor):
        largest = confidence.shape[0] * (confidence.shape[1] + 1)
        if max_batch_tokens is not None:
            largest = min(largest, max_batch_tokens)
        return sps.table(largest, device=confidence.device)
    if isinstance(sps, torch.Tensor):
        return sps
    return torch.tensor(list(sps), dtype=torch.float64, device=confidence.device)


def schedule_prefix(
    confidence: torch.Tensor,
    sps: SpsLike,
    max_len: Optional[torch.Tensor] = None,
    *,
    capacity: Optional[Union[torch.Tensor, int]] = None,
    max_batch_tokens: Optional[int] = None,
    early_stop: bool = True,
) -> ScheduleResult:
    """The scheduler op (design §6).

    ``confidence`` float32/float64 [R, K]: conditional confidences in [0, 1] (R >= 1, K >= 1).
    ``sps`` float32/float64 1-D table indexed by batch tokens (``sps[B]`` = SPS(B)), at least
    ``min(R*(K+1), max_batch_tokens) + 1`` entries, or an :class:`SPSProfile`, or a list.
    ``max_len`` int64 [R]: per-request caps on the verified length (<= K). ``capacity``
    (int64 tensor with one value, or an int): admit the top-``capacity`` candidates (the
    asynchronous scheduler's step) instead of searching; otherwise ``early_stop=True`` is
    Algorithm 1 and ``False`` the unconstrained search. ``max_batch_tokens``: global budget on
    ``R + sum(lengths)`` (>= R).

    CPU tensors are validated (NaN or out-of-range confidences, a short or negative SPS table,
    out-of-range ``max_len`` / ``capacity`` raise); on CUDA the values are not read on the
    host: NaN confidences read as 0, others are clamped to [0, 1], ``max_len`` to [0, K].
    """
    sps_t = sps_tensor(sps, confidence, max_batch_tokens)
    if capacity is not None and not isinstance(capacity, torch.Tensor):
        capacity = torch.tensor(int(capacity), dtype=torch.int64, device=confidence.device)
    out = torch.ops.dspark.schedule_prefix(confidence, sps_t, max_len, capacity,
                                           max_batch_tokens, early_stop)
    return ScheduleResult(*out)


def schedule_causal(confidence: torch.Tensor, sps: SpsLike,
                    max_len: Optional[torch.Tensor] = None, *,
                    max_batch_tokens: Optional[int] = None) -> ScheduleResult:
    """Algorithm 1 with the early stop (lossless): admit candidates in path order while Theta
    strictly improves, stop at the first that does not."""
    return schedule_prefix(confidence, sps, max_len, max_batch_tokens=max_batch_tokens,
                           early_stop=True)


def schedule_global(confidence: torch.Tensor, sps: SpsLike,
                    max_len: Optional[torch.Tensor] = None, *,
                    max_batch_tokens: Optional[int] = None) -> ScheduleResult:
    """The unconstrained search: the first arg-max of Theta over the whole admission path
    (robust to jagged SPS curves). NOT lossless on the current step's confidences (Appendix
    A); use its ``num_admitted`` as a capacity two steps later (:class:`AsyncScheduler`)."""
    return schedule_prefix(confidence, sps, max_len, max_batch_tokens=max_batch_tokens,
                           early_stop=False)


def schedule_capacity(confidence: torch.Tensor, sps: SpsLike,
                      capacity: Union[torch.Tensor, int],
                      max_len: Optional[torch.Tensor] = None, *,
                      max_batch_tokens: Optional[int] = None) -> ScheduleResult:
    """The asynchronous scheduler's step (§5.2): verify the top-``capacity`` candidates of the
    current admission path (fewer when the path or ``max_batch_tokens`` is shorter)."""
    return schedule_prefix(confidence, sps, max_len, capacity=capacity,
                           max_batch_tokens=max_batch_tokens)

