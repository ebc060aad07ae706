"""Hardware-aware prefix scheduling (SPEC §6; paper Algorithm 1, §5.2): how many draft tokens
each request verifies this step.

Inputs are the calibrated *conditional* confidences ``c`` [R, K] of the drafter's confidence
head (:mod:`dspark_ext.calibration`), from which the op forms the prefix-survival
probabilities ``a[r, j] = c[r, 1] ... c[r, j]``, and a profiled throughput table
``sps[B]`` = target forward steps per second at ``B`` batch tokens (:class:`SPSProfile`).
Verifying ``l_r`` drafts of every request costs ``B = sum_r (1 + l_r)`` tokens and yields
``tau = sum_r (1 + sum_{j<=l_r} a[r, j])`` tokens in expectation; the scheduler maximises
``Theta = tau * SPS(B)`` along the greedy admission path (candidates by descending a; ties:
smaller j first, then smaller r).

* :func:`schedule_causal` -- Algorithm 1 with the early stop: lossless, use it on the current
  step's confidences.
* :class:`AsyncScheduler` / :func:`schedule_capacity` -- the asynchronous scheduler of §5.2:
  the capacity (how many drafts to verify in total) comes from an unconstrained search over
  the confidences of two steps earlier, and the current step verifies the top-capacity
  current candidates. Lossless because the capacity never sees current tokens.
* :func:`schedule_global` -- the unconstrained search itself. **Not lossless** on the current
  step's confidences (paper Appendix A: it leaks the draft token that the next confidence
  depends on into the admission decision); it exists to compute capacities and as a test's
  negative control.
* Baselines: :func:`fixed_length`, :func:`static_threshold`; :func:`expected_throughput`
  scores any lengths with the same objective.

All scheduling functions run the ``torch.ops.dspark.schedule_prefix`` op (CPU and CUDA; no
host synchronisation when every input is already a tensor on the device) and return a
:class:`ScheduleResult`. ``lengths`` is what the verification op takes as ``num_draft``:

>>> sps = SPSProfile.load("sps.json").table(R * (K + 1))        # once per engine
>>> res = schedule_causal(apply_sts(z, T), sps)                # every step
>>> dspark_ext.rejection_sample(t_logits, drafts, d_logits, temp, seed, step,
...                             num_draft=res.lengths)
"""
from __future__ import annotations

import json
import statistics
import time
from collections import deque
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import torch

__all__ = [
    "ScheduleResult",
    "SPSProfile",
    "schedule_prefix",
    "schedule_causal",
    "schedule_global",
    "schedule_capacity",
    "AsyncScheduler",
    "fixed_length",
    "static_threshold",
    "expected_throughput",
]


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


SpsLike = Union[torch.Tensor, "SPSProfile", Sequence[float]]


def _sps_tensor(sps: SpsLike, confidence: torch.Tensor,
                max_batch_tokens: Optional[int]) -> torch.Tensor:
    if isinstance(sps, SPSProfile):
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
    """The scheduler op (SPEC §6).

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
    sps_t = _sps_tensor(sps, confidence, max_batch_tokens)
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


class AsyncScheduler:
    """The asynchronous scheduler of §5.2 across steps.

    ``step(confidence)`` returns this step's lengths: the top-K_cap current candidates, where
    K_cap is the number of drafts the unconstrained search admitted on the confidences passed
    ``delay`` (default 2) steps earlier. The first ``delay`` steps use ``initial_capacity``, or
    the causal scheduler when it is None. Capacities stay on the device (no host sync).

    >>> sched = AsyncScheduler(sps_table)
    >>> for step in ...: lengths = sched.step(confidences).lengths
    """

    def __init__(self, sps: SpsLike, *, delay: int = 2, initial_capacity: Optional[int] = None,
                 max_batch_tokens: Optional[int] = None):
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        self.sps = sps
        self.delay = delay
        self.initial_capacity = initial_capacity
        self.max_batch_tokens = max_batch_tokens
        self._capacities: deque = deque()

    def reset(self) -> None:
        self._capacities.clear()

    def step(self, confidence: torch.Tensor,
             max_len: Optional[torch.Tensor] = None) -> ScheduleResult:
        if len(self._capacities) >= self.delay:
            res = schedule_capacity(confidence, self.sps, self._capacities.popleft(), max_len,
                                    max_batch_tokens=self.max_batch_tokens)
        elif self.initial_capacity is not None:
            res = schedule_capacity(confidence, self.sps, self.initial_capacity, max_len,
                                    max_batch_tokens=self.max_batch_tokens)
        else:
            res = schedule_causal(confidence, self.sps, max_len,
                                  max_batch_tokens=self.max_batch_tokens)
        cap = schedule_global(confidence, self.sps, max_len,
                              max_batch_tokens=self.max_batch_tokens).num_admitted
        self._capacities.append(cap)
        return res


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def fixed_length(num_requests: int, gamma: int, max_len: Optional[torch.Tensor] = None,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """Every request verifies ``gamma`` drafts (capped by ``max_len``): int64 [R]."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    out = torch.full((num_requests,), gamma, dtype=torch.int64,
                     device=device if max_len is None else max_len.device)
    return out if max_len is None else torch.minimum(out, max_len)


def static_threshold(confidence: torch.Tensor, threshold: float,
                     max_len: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Verify the drafts whose prefix survival ``a[r, j]`` is at least ``threshold``
    (a prefix, since a is non-increasing): int64 [R]."""
    a = torch.cumprod(confidence.to(torch.float64), dim=-1)
    out = (a >= threshold).sum(-1).to(torch.int64)
    return out if max_len is None else torch.minimum(out, max_len)


def expected_throughput(confidence: torch.Tensor, lengths: torch.Tensor,
                        sps: SpsLike) -> Dict[str, float]:
    """The scheduler's objective for arbitrary ``lengths``: batch tokens B, expected tokens
    tau (with the bonus tokens) and Theta = tau * SPS(B) (host floats)."""
    a = torch.cumprod(confidence.to(torch.float64), dim=-1)
    k = a.shape[-1]
    mask = torch.arange(k, device=a.device)[None, :] < lengths[:, None]
    tau = float(a.shape[0] + (a * mask).sum())
    batch = int(a.shape[0] + lengths.sum())
    table = _sps_tensor(sps, confidence, None)
    return {"batch_tokens": batch, "expected_tokens": tau,
            "throughput": tau * float(table[batch])}


# ---------------------------------------------------------------------------------------------
# SPS profile
# ---------------------------------------------------------------------------------------------


def _default_sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class SPSProfile:
    """Steps per second of the target's forward at each batch-token count, measured once per
    engine and stored as a table (SPEC §6).

    ``batch_tokens`` (increasing) and ``steps_per_second`` are the measured points;
    :meth:`table` interpolates the step *time* linearly between them (below the first point:
    the first point's value; above the last: time proportional to B, the compute-bound
    regime). :meth:`monotone` makes the curve non-increasing (a running minimum), which
    makes Theta unimodal for the causal scheduler's early stop.
    """

    def __init__(self, batch_tokens: Sequence[int], steps_per_second: Sequence[float],
                 meta: Optional[Dict[str, Any]] = None):
        bt = [int(b) for b in batch_tokens]
        sps = [float(s) for s in steps_per_second]
        if not bt or len(bt) != len(sps):
            raise ValueError("batch_tokens and steps_per_second must be non-empty and of equal "
                             "length")
        if any(b < 1 for b in bt) or any(b2 <= b1 for b1, b2 in zip(bt, bt[1:])):
            raise ValueError("batch_tokens must be strictly increasing and >= 1")
        if any(not (s > 0 and s != float("inf")) for s in sps):
            raise ValueError("steps_per_second must be finite and > 0")
        self.batch_tokens = bt
        self.steps_per_second = sps
        self.meta = dict(meta or {})

    # -- measurement --------------------------------------------------------------------------

    @classmethod
    def measure(cls, forward: Callable[[int], Any], batch_tokens: Iterable[int], *,
                warmup: int = 3, repeats: int = 10,
                sync: Optional[Callable[[], None]] = _default_sync,
                timer: Callable[[], float] = time.perf_counter,
                monotone: bool = False) -> "SPSProfile":
        """Time ``forward(B)`` (one target forward over B batch tokens, supplied by the user)
        at each B: ``warmup`` untimed calls, then the median of ``repeats`` timed calls, each
        followed by ``sync()`` (CUDA synchronise by default). SPS(B) = 1 / median seconds."""
        if repeats < 1 or warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        bts = sorted({int(b) for b in batch_tokens})
        sps, medians = [], []
        for b in bts:
            for _ in range(warmup):
                forward(b)
            if sync is not None:
                sync()
            times = []
            for _ in range(repeats):
                t0 = timer()
                forward(b)
                if sync is not None:
                    sync()
                times.append(timer() - t0)
            med = statistics.median(times)
            medians.append(med)
            sps.append(1.0 / max(med, 1e-12))
        prof = cls(bts, sps, {"warmup": warmup, "repeats": repeats, "median_s": medians})
        return prof.monotone() if monotone else prof

    @classmethod
    def from_step_time(cls, step_time: Callable[[int], float], max_batch_tokens: int,
                       meta: Optional[Dict[str, Any]] = None) -> "SPSProfile":
        """A profile from a model of the step time in seconds at every B in 1..max (tests,
        simulations)."""
        bts = list(range(1, max_batch_tokens + 1))
        return cls(bts, [1.0 / step_time(b) for b in bts], meta)

    # -- transforms and lookup ----------------------------------------------------------------

    def monotone(self) -> "SPSProfile":
        """A copy whose SPS is non-increasing in B (running minimum)."""
        out, cur = [], float("inf")
        for s in self.steps_per_second:
            cur = min(cur, s)
            out.append(cur)
        return SPSProfile(self.batch_tokens, out, dict(self.meta, monotone=True))

    def step_time(self, b: int) -> float:
        bt, sps = self.batch_tokens, self.steps_per_second
        if b <= bt[0]:
            return 1.0 / sps[0]
        if b >= bt[-1]:
            return (1.0 / sps[-1]) * b / bt[-1]
        lo, hi = 0, len(bt) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bt[mid] <= b:
                lo = mid
            else:
                hi = mid
        t0, t1 = 1.0 / sps[lo], 1.0 / sps[hi]
        w = (b - bt[lo]) / (bt[hi] - bt[lo])
        return t0 + w * (t1 - t0)

    def __call__(self, b: int) -> float:
        """SPS(b)."""
        return 1.0 / self.step_time(b)

    def table(self, max_batch_tokens: int, dtype: torch.dtype = torch.float64,
              device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
        """``sps[B]`` for B = 0..max_batch_tokens (entry 0 repeats B = 1; unused), as the
        scheduler op takes it."""
        vals = [self(max(b, 1)) for b in range(max_batch_tokens + 1)]
        return torch.tensor(vals, dtype=dtype, device=device)

    # -- storage ------------------------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        return {"batch_tokens": self.batch_tokens, "steps_per_second": self.steps_per_second,
                "meta": self.meta}

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "SPSProfile":
        with open(path) as f:
            d = json.load(f)
        return cls(d["batch_tokens"], d["steps_per_second"], d.get("meta"))

    def __repr__(self) -> str:
        return (f"SPSProfile({len(self.batch_tokens)} points, B {self.batch_tokens[0]}.."
                f"{self.batch_tokens[-1]})")
