"""Writing an evaluation: JSON, CSV, PNG plots, the recorded rounds, and a printed table.

Files in the output directory:

* ``eval.json`` -- everything :func:`~dspark_ext.eval.runner.run_eval` computed;
* ``per_position.csv`` -- per draft position: conditional acceptance, prefix survival, STS
  temperature, ECE / AUC / Brier before and after STS (held-out split);
* ``threshold_sweep.csv`` -- threshold, tokens per round, acceptance rate, mean verified,
  tokens/s, speed-up (paper Fig. 5);
* ``acceptance.png`` (Fig. 2), ``threshold_sweep.png`` (Fig. 5), ``reliability.png``
  (before / after STS); SVG instead of PNG without matplotlib for the reliability plot, and
  the other two are skipped then;
* ``rounds.npz`` (``confidence`` [N, K], ``accept_len`` [N]) and ``sps.json`` (the target's
  SPSProfile): ``python bench/serving_sim.py --rounds rounds.npz --sps sps.json``.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Dict, List, Optional

import numpy as np

from ..plotting import plot_reliability, pyplot

__all__ = ["write_report", "format_table", "pyplot"]

POSITION_COLUMNS = ["position", "conditional_acceptance", "prefix_survival", "temperature",
                    "n", "ece_before", "ece_after", "auc_before", "auc_after", "brier_before",
                    "brier_after"]
SWEEP_COLUMNS = ["threshold", "tokens_per_round", "acceptance_rate", "mean_verified",
                 "tokens_per_s", "speedup"]


def _position_rows(res: Dict) -> List[Dict]:
    fixed, calib = res["fixed"], res.get("calibration")
    rows = []
    for k in range(res["draft_len"]):
        row = {"position": k, "conditional_acceptance": fixed["conditional_acceptance"][k],
               "prefix_survival": fixed["prefix_survival"][k]}
        if calib is not None:
            s = calib["summary"][k]
            row.update(temperature=calib["temperatures"][k], n=s["n"],
                       ece_before=s["ece"][0], ece_after=s["ece"][1], auc_before=s["auc"][0],
                       auc_after=s["auc"][1], brier_before=s["brier"][0],
                       brier_after=s["brier"][1])
        rows.append(row)
    return rows


def _write_csv(path: str, columns: List[str], rows: List[Dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})


def _plot_acceptance(res: Dict, path: str) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    k = list(range(1, res["draft_len"] + 1))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("conditional_acceptance", "conditional acceptance"),
                       ("prefix_survival", "prefix survival accept@k")):
        ys = [np.nan if v is None else v for v in res["fixed"][key]]
        ax.plot(k, ys, marker="o", label=label)
    ax.set_xlabel("draft position k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"tau = {res['fixed']['accepted_length']:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_sweep(res: Dict, path: str) -> Optional[str]:
    plt = pyplot()
    sweep = res.get("threshold_sweep") or []
    if plt is None or not sweep:
        return None
    th = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(th, [r["tokens_per_round"] for r in sweep], marker="o", color="tab:blue")
    ax.set_xlabel("static threshold on prefix survival")
    ax.set_ylabel("tokens per round", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(th, [np.nan if r["acceptance_rate"] is None else r["acceptance_rate"]
                  for r in sweep], marker="s", color="tab:red")
    ax2.set_ylabel("acceptance rate", color="tab:red")
    ax2.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(res: Dict, out_dir: str) -> Dict[str, str]:
    """Write every file listed in the module docstring; returns {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    files: Dict[str, str] = {}
    rounds, sps = res.get("rounds"), res.get("sps")
    if rounds is not None:
        files["rounds"] = os.path.join(out_dir, "rounds.npz")
        np.savez(files["rounds"], confidence=rounds["confidence"].numpy(),
                 accept_len=rounds["accept_len"].numpy())
    if sps is not None:
        files["sps"] = os.path.join(out_dir, "sps.json")
        sps.save(files["sps"])
    files["per_position"] = os.path.join(out_dir, "per_position.csv")
    _write_csv(files["per_position"], POSITION_COLUMNS, _position_rows(res))
    files["threshold_sweep"] = os.path.join(out_dir, "threshold_sweep.csv")
    _write_csv(files["threshold_sweep"], SWEEP_COLUMNS, res.get("threshold_sweep") or [])
    for name, fn, filename in (("acceptance_plot", _plot_acceptance, "acceptance.png"),
                               ("threshold_plot", _plot_sweep, "threshold_sweep.png")):
        path = fn(res, os.path.join(out_dir, filename))
        if path:
            files[name] = path
    if res.get("calibration") is not None:
        files["reliability"] = plot_reliability(res["calibration"],
                                                os.path.join(out_dir, "reliability"))
    summary = {k: v for k, v in res.items() if k not in ("rounds", "sps")}
    summary["sps"] = None if sps is None else sps.to_dict()
    summary["recorded_rounds"] = None if rounds is None else int(rounds["accept_len"].numel())
    summary["files"] = dict(files, json=os.path.join(out_dir, "eval.json"))
    files["json"] = summary["files"]["json"]
    with open(files["json"], "w") as f:
        json.dump(summary, f, indent=1)
    return files


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_table(res: Dict) -> str:
    """The headline numbers and the per-position table, as text."""
    fixed, base = res["fixed"], res.get("baseline") or {}
    lines = [f"prompts {res['num_prompts']}, K = {res['draft_len']}, T = "
             f"{res['config']['temperature']}, verify {res['config']['verify']}",
             f"tau (accepted length, with bonus) {_fmt(fixed['accepted_length'])}   "
             f"acceptance rate {_fmt(fixed['acceptance_rate'])}",
             f"tokens/s: speculative {_fmt(fixed['tokens_per_s'], '.1f')}, autoregressive "
             f"{_fmt(base.get('tokens_per_s'), '.1f')}, speed-up {_fmt(fixed['speedup'], '.2f')}"]
    if res.get("policy_run"):
        r = res["policy_run"]
        lines.append(f"{r['policy']}: tokens/round {_fmt(r['tokens_per_round'])}, mean "
                     f"verified {_fmt(r['mean_verified'], '.2f')}, tokens/s "
                     f"{_fmt(r['tokens_per_s'], '.1f')}, speed-up {_fmt(r['speedup'], '.2f')}")
    lines.append(f"{'k':>3} {'cond.acc':>9} {'accept@k':>9} {'T_k':>6} {'ECE pre':>8} "
                 f"{'ECE post':>8} {'AUC':>6} {'Brier':>6}   (ECE/AUC/Brier: held-out split)")
    for r in _position_rows(res):
        lines.append(f"{r['position']:>3} {_fmt(r['conditional_acceptance']):>9} "
                     f"{_fmt(r['prefix_survival']):>9} {_fmt(r.get('temperature'), '.2f'):>6} "
                     f"{_pct(r.get('ece_before')):>8} {_pct(r.get('ece_after')):>8} "
                     f"{_fmt(r.get('auc_after')):>6} {_fmt(r.get('brier_after')):>6}")
    if res.get("threshold_sweep"):
        lines.append("threshold sweep: " + ", ".join(
            f"{r['threshold']}: {_fmt(r['tokens_per_round'], '.2f')} tok/round"
            for r in res["threshold_sweep"]))
    return "\n".join(lines)
