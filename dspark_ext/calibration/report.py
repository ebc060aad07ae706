"""The calibration report (design §5): before (T = 1) and after STS metrics per position,
JSON-ready; the reliability diagrams are drawn by :func:`dspark_ext.eval.plots.plot_reliability`."""
from __future__ import annotations

import json
from typing import Dict

import torch

from .metrics import ECE_BINS, _as_inputs, position_metrics
from .sts import apply_sts

__all__ = ["calibration_report", "save_report"]


def calibration_report(confidence_logits, survived, valid, temperatures,
                       bins: int = ECE_BINS) -> Dict:
    """Before (T = 1) / after (``temperatures``) metrics per position, JSON-ready."""
    z, y, m = _as_inputs(confidence_logits, survived, valid)
    t = torch.as_tensor(temperatures, dtype=torch.float64)
    before = position_metrics(torch.sigmoid(z), y, m, bins)
    after = position_metrics(apply_sts(z, t), y, m, bins)
    summary = []
    for b, a in zip(before, after):
        summary.append({k: (b[k], a[k]) for k in ("ece", "auc", "brier", "mean_pred")}
                       | {"position": b["position"], "n": b["n"], "observed": b["observed"]})
    return {
        "num_rounds": int(z.shape[0]),
        "positions": int(z.shape[1]),
        "bins": bins,
        "temperatures": t.tolist(),
        "summary": summary,
        "before": before,
        "after": after,
    }


def save_report(report: Dict, path: str) -> str:
    """Write :func:`calibration_report`'s dict as JSON; returns the path."""
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return path
