"""Confidence calibration for the prefix scheduler (design §5; paper §3.2.1).

The drafter's confidence head emits one logit ``z[k]`` per draft position; ``sigmoid(z[k])``
estimates the *conditional* probability that draft token k survives verification given that
tokens < k did. The scheduler needs the absolute magnitude of the prefix-survival probability
``a[k] = prod_{i<=k} c[i]``, so the head is calibrated post hoc with **Sequential Temperature
Scaling** (STS): for k = 0..K-1 in order, a 1-D grid search picks the temperature ``T_k``
that minimises the ECE of the cumulative product ``prod_{i<=k} sigmoid(z_i / T_i)`` against
the prefix-survival label, the temperatures ``T_{<k}`` already fixed. Temperature scaling is
order-preserving for each position's conditional confidence.

Data layout (held-out verification rounds, N rounds of K positions):

* ``confidence_logits`` float [N, K]: the head's logits ``z``;
* ``survived`` bool [N, K]: draft token k of the round was accepted (hence all tokens < k were:
  the prefix-survival label, ``accepted > k``);
* ``valid`` bool [N, K]: position k was proposed and verified in that round (``num_draft > k``).
  Rows of ``valid`` must be prefixes (True then False); labels outside ``valid`` are ignored.

Modules: :mod:`.sts` (fitting and applying the temperatures), :mod:`.platt` (per-position
temperature plus bias on the conditional label, fitted per decoding temperature),
:mod:`.bootstrap` (ECE per position with a bootstrap 95% interval), :mod:`.metrics` (ECE, AUC,
Brier per position), :mod:`.report` (before/after report).
"""
from ..plotting import plot_reliability
from .bootstrap import ece_with_interval
from .metrics import ECE_BINS, auc, brier, ece, position_metrics, prefix_survival
from .report import calibration_report, save_report
from .platt import apply_platt, fit_platt
from .sts import apply_sts, default_grid, fit_sts

__all__ = ["ECE_BINS", "default_grid", "fit_sts", "apply_sts", "prefix_survival", "ece", "auc",
           "brier", "position_metrics", "fit_platt", "apply_platt", "ece_with_interval", "calibration_report", "save_report", "plot_reliability"]
