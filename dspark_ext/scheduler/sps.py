"""The target's measured throughput curve SPS(B) (design §6): steps per second of one
forward over B batch tokens, measured once per engine, stored as JSON, and looked up as the
table the scheduler op takes."""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

import torch

__all__ = ["SPSProfile"]


def _default_sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class SPSProfile:
    """Steps per second of the target's forward at each batch-token count, measured once per
    engine and stored as a table (design §6).

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
