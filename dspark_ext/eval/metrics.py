"""The paper's decoding metrics over the rounds of one or more ``generate`` calls (design §5).

Everything is computed from :class:`~dspark_ext.decoding.GenerationStats` rows (per request
and round: verified l, accepted a, confidence logits z):

* accepted length tau = mean(a + 1) (the bonus / correction token counts): the tokens one
  target forward yields per request, i.e. tokens per round;
* acceptance rate = sum(a) / sum(l) (the fraction of verified drafts accepted);
* per-position conditional acceptance (Fig. 2) and prefix survival accept@k =
  #(a > k) / #(l > k);
* calibration of the confidence head per position before / after STS, with the temperatures
  fitted on a separate split (:func:`calibration`);
* recorded rounds for ``bench/serving_sim.py``: calibrated conditional confidences [N, K] and
  the number of leading drafts the target accepted, kept only where that number is known
  (a rejection was observed, or all K drafts were verified).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from ..calibration import apply_sts, calibration_report, fit_sts
from ..decoding import GenerationStats

__all__ = ["merge_stats", "decoding_metrics", "calibration", "recorded_rounds", "speedup"]


def merge_stats(stats: Sequence[GenerationStats]) -> GenerationStats:
    """The rounds of several generate calls as one GenerationStats (same draft length)."""
    if not stats:
        raise ValueError("no statistics to merge")
    k = stats[0].draft_len
    if any(s.draft_len != k for s in stats):
        raise ValueError("every GenerationStats must have the same draft_len")
    out = GenerationStats(draft_len=k)
    for s in stats:
        out.rounds.extend(s.rounds)
        for name, t in s.timings.items():
            out.timings[name] = out.timings.get(name, 0.0) + t
    return out


def _nan_to_none(values) -> List[Optional[float]]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def decoding_metrics(stats: GenerationStats) -> Dict[str, object]:
    acc, ver = stats.accepted(), stats.verified()
    n = int(acc.numel())
    total_ver = int(ver.sum()) if n else 0
    return {
        "rounds": n,
        "accepted_length": stats.accepted_length() if n else None,
        "tokens_per_round": stats.accepted_length() if n else None,
        "mean_verified": float(ver.double().mean()) if n else None,
        "acceptance_rate": float(acc.sum()) / total_ver if total_ver else None,
        "conditional_acceptance": _nan_to_none(stats.conditional_acceptance().tolist()),
        "prefix_survival": _nan_to_none(stats.prefix_survival().tolist()),
    }


def _has_confidence(stats: GenerationStats) -> bool:
    return bool(stats.rounds) and all(r.confidence_logits is not None for r in stats.rounds)


def calibration(fit: GenerationStats, held_out: GenerationStats) -> Optional[Dict]:
    """STS fitted on ``fit``'s rounds, metrics on ``held_out``'s, before and after (the
    :func:`dspark_ext.calibration.calibration_report` dict); None without a confidence head."""
    if not (_has_confidence(fit) and _has_confidence(held_out)):
        return None
    temps = fit_sts(*fit.calibration_inputs())
    report = calibration_report(*held_out.calibration_inputs(), temps)
    report["fit_rounds"] = fit.accepted().numel()
    return report


def recorded_rounds(stats: GenerationStats,
                    temperatures: Optional[Sequence[float]] = None) -> Optional[Dict]:
    """{"confidence": float32 [N, K] calibrated conditional confidences, "accept_len": int64
    [N]} -- the format ``bench/serving_sim.py --rounds`` replays; None without confidences."""
    if not _has_confidence(stats):
        return None
    z, _, _ = stats.calibration_inputs()
    acc, ver = stats.accepted(), stats.verified()
    known = (acc < ver) | (ver == stats.draft_len)
    t = torch.ones(z.shape[1]) if temperatures is None else torch.as_tensor(
        temperatures, dtype=torch.float32)
    conf = apply_sts(z[known], t.float())
    return {"confidence": conf.float(), "accept_len": acc[known].to(torch.int64)}


def speedup(tokens_per_s: Optional[float], baseline_tokens_per_s: Optional[float]):
    if not tokens_per_s or not baseline_tokens_per_s:
        return None
    return tokens_per_s / baseline_tokens_per_s
