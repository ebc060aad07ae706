"""Plain-Python reference of the hardware-aware prefix scheduler (design §6; paper Algorithm 1,
§5.2, Appendix A): the ground truth the scheduler op is tested against.

Slow and readable: the candidates are listed, sorted with Python's ``sorted`` and scanned in a
loop. The arithmetic is IEEE double in the same order as the native op (``csrc/core/
schedule.h``): ``a[r, j] = a[r, j-1] * c[r, j]`` left to right, ``tau`` summed in path order,
``Theta = tau * SPS(B)``; so native and reference results are identical, ties included.

Positions j count from 1 as in the paper (``lengths[r] = j`` verifies draft tokens 1..j).

* :func:`schedule_causal` -- Algorithm 1 with the early stop (lossless);
* :func:`schedule_global` -- the same admission path without the early stop: the arg-max of
  Theta over the whole path (not lossless on the current step's confidences: Appendix A);
* :func:`schedule_capacity` -- the asynchronous scheduler's current step (§5.2): admit the top
  ``capacity`` candidates;
* :func:`schedule_async` -- the asynchronous scheduler over a sequence of steps: the capacity
  of step t is the size of the global search's admission set on the confidences of step t-2.

Each returns :class:`RefSchedule` (lengths, num_admitted, expected_tokens, throughput).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

__all__ = [
    "RefSchedule",
    "prefix_survival",
    "admission_path",
    "schedule_causal",
    "schedule_global",
    "schedule_capacity",
    "schedule_async",
]


class RefSchedule(NamedTuple):
    lengths: List[int]
    num_admitted: int
    expected_tokens: float
    throughput: float


def _rows(confidence) -> List[List[float]]:
    if hasattr(confidence, "tolist"):
        confidence = confidence.tolist()
    return [[float(v) for v in row] for row in confidence]


def prefix_survival(confidence) -> List[List[float]]:
    """``a[r][j-1] = c[r][0] * ... * c[r][j-1]`` in double, left to right."""
    out = []
    for row in _rows(confidence):
        acc, a = 1.0, []
        for c in row:
            acc = acc * c
            a.append(acc)
        out.append(a)
    return out


def admission_path(confidence, max_len: Optional[Sequence[int]] = None):
    """Candidates ``(a, j, r)`` with ``a > 0`` and ``j <= max_len[r]``, sorted by descending
    a, ties: smaller j first, then smaller r (design §6)."""
    a = prefix_survival(confidence)
    cand = []
    for r, row in enumerate(a):
        cap = len(row) if max_len is None else int(max_len[r])
        for j, v in enumerate(row, start=1):
            if v > 0 and j <= cap:
                cand.append((v, j, r))
    return sorted(cand, key=lambda t: (-t[0], t[1], t[2]))


def _limit(path_len: int, num_requests: int, max_batch_tokens: Optional[int]) -> int:
    if max_batch_tokens is None:
        return path_len
    if max_batch_tokens < num_requests:
        raise ValueError("max_batch_tokens must be >= R")
    return min(path_len, max_batch_tokens - num_requests)


def _lengths(path, n: int, num_requests: int) -> List[int]:
    lengths = [0] * num_requests
    for _, j, r in path[:n]:
        assert j == lengths[r] + 1, "admission path broke a prefix"
        lengths[r] = j
    return lengths


def _scan(confidence, sps, max_len, max_batch_tokens, early_stop: bool) -> RefSchedule:
    rows = _rows(confidence)
    num_requests = len(rows)
    sps = [float(v) for v in (sps.tolist() if hasattr(sps, "tolist") else sps)]
    path = admission_path(rows, max_len)
    limit = _limit(len(path), num_requests, max_batch_tokens)
    batch, tau = num_requests, float(num_requests)
    best_n, best_tau, best_theta = 0, tau, tau * sps[batch]
    for i in range(limit):
        a = path[i][0]
        batch += 1
        tau = tau + a
        theta = tau * sps[batch]
        if theta > best_theta:
            best_n, best_tau, best_theta = i + 1, tau, theta
        elif early_stop:
            break
    return RefSchedule(_lengths(path, best_n, num_requests), best_n, best_tau, best_theta)


def schedule_causal(confidence, sps, max_len=None, max_batch_tokens=None) -> RefSchedule:
    """Algorithm 1: walk the admission path while Theta strictly improves; stop at the first
    candidate that does not improve it (the early stop that keeps the scheduler lossless)."""
    return _scan(confidence, sps, max_len, max_batch_tokens, early_stop=True)


def schedule_global(confidence, sps, max_len=None, max_batch_tokens=None) -> RefSchedule:
    """Algorithm 1 without the early stop: the first arg-max of Theta over the whole path."""
    return _scan(confidence, sps, max_len, max_batch_tokens, early_stop=False)


def schedule_capacity(confidence, sps, capacity: int, max_len=None,
                      max_batch_tokens=None) -> RefSchedule:
    """The asynchronous scheduler's step: admit the first ``capacity`` candidates of the
    current admission path (fewer if the path or the token budget is shorter)."""
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    rows = _rows(confidence)
    num_requests = len(rows)
    sps = [float(v) for v in (sps.tolist() if hasattr(sps, "tolist") else sps)]
    path = admission_path(rows, max_len)
    n = min(capacity, _limit(len(path), num_requests, max_batch_tokens))
    tau = float(num_requests)
    for i in range(n):
        tau = tau + path[i][0]
    return RefSchedule(_lengths(path, n, num_requests), n, tau, tau * sps[num_requests + n])


def schedule_async(confidences: Sequence, sps, initial_capacity: Optional[int] = None,
                   max_len=None, max_batch_tokens=None, delay: int = 2) -> List[RefSchedule]:
    """The asynchronous scheduler over consecutive steps: step t admits the top K_cap current
    candidates, K_cap = num_admitted of :func:`schedule_global` on the confidences of step
    t - ``delay``. Steps with no history use ``initial_capacity``, or the causal scheduler
    when it is None. ``max_len`` (one list per step, or None) and ``max_batch_tokens`` apply
    to every step."""
    out, caps = [], []
    for t, conf in enumerate(confidences):
        ml = None if max_len is None else max_len[t]
        if t >= delay:
            out.append(schedule_capacity(conf, sps, caps[t - delay], ml, max_batch_tokens))
        elif initial_capacity is not None:
            out.append(schedule_capacity(conf, sps, initial_capacity, ml, max_batch_tokens))
        else:
            out.append(schedule_causal(conf, sps, ml, max_batch_tokens))
        caps.append(schedule_global(conf, sps, ml, max_batch_tokens).num_admitted)
    return out
