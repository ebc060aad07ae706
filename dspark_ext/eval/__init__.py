"""Evaluating drafters with the paper's metrics (design §5): accepted length, per-position
conditional acceptance and prefix survival, speed-up against the target alone, calibration
before / after STS, the static-threshold sweep, and recorded rounds for
``bench/serving_sim.py``. Command line: ``python -m dspark_ext.eval --help``.

>>> res = run_eval(target_model, drafter, prompts, EvalConfig(temperature=0.0))
>>> write_report(res, "eval_out"); print(format_table(res))
"""
from .metrics import calibration, decoding_metrics, merge_stats, recorded_rounds, speedup
from .prompts import load_prompts
from .report import format_table, write_report
from .runner import EvalConfig, autoregressive, measure_sps, run_eval

__all__ = ["EvalConfig", "autoregressive", "calibration", "decoding_metrics", "format_table",
           "load_prompts", "measure_sps", "merge_stats", "recorded_rounds", "run_eval",
           "speedup", "write_report"]
