"""Hardware-aware prefix scheduling (design §6; paper Algorithm 1, §5.2): how many draft tokens
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
* :class:`DraftGate` -- the skip rule: before a round, whether drafting can pay at all once
  the drafter's own time is counted (otherwise the round is a plain target step).
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
from ..ops.schedule import (ScheduleResult, schedule_capacity, schedule_causal, schedule_global,
                            schedule_prefix)
from .async_scheduler import AsyncScheduler
from .draft_gate import DraftGate, DraftTime
from .measured_gate import MeasuredGate
from .objective import expected_throughput, fixed_length, static_threshold
from .sps import SPSProfile

__all__ = [
    "ScheduleResult",
    "SPSProfile",
    "schedule_prefix",
    "schedule_causal",
    "schedule_global",
    "schedule_capacity",
    "AsyncScheduler",
    "DraftGate",
    "MeasuredGate",
    "DraftTime",
    "fixed_length",
    "static_threshold",
    "expected_throughput",
]
