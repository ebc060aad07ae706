#!/usr/bin/env python
"""The bundled default (a small Qwen3 code model, its DSpark / DFlash / AR drafters) on this
machine: every headline number of the bundled-default issue, from one command.

    python bench/bench_default.py [--smoke] [--out DIR] [--ablation NAME=PATH ...]
                                  [--threads N] [--parts 1,2,3,4,5] [--prompts N]

Models: ``dspark_ext.bundled`` (``DSPARK_DEFAULT_MODELS`` points at another models folder).
Prompts: the held-out prompts (all of them; ``--smoke``: 2 prompts, 16 new tokens).

1. accepted length per round at gamma = 7, T = 0 and T = 1, SpeculativeDecoder at batch 8,
   fixed length 7: DSpark vs DFlash vs the small AR draft model (ModelDrafter) vs prompt
   lookup (NgramDrafter): tau, acceptance rate, per-position conditional acceptance, and
   DSpark's gain over DFlash (goal >= +10%);
2. per-position conditional acceptance curves (paper Fig. 2) of those drafters and of every
   ``--ablation NAME=PATH`` DSpark checkpoint (gamma = its block size), table and plot, on
   the first ``--ablation-prompts`` prompts (default 32), with a reference DSpark rerun on
   the same prompts as the row ``reference``: ``--ablation-reference PATH``, by default the
   bundled one (pass the bundled run's checkpoint at the ablations' step count for an
   equal-budget comparison);
3. calibration of DSpark's confidence head: STS fitted on the first half of the prompts'
   rounds, ECE per position before / after on the second half (goal <= 1.5% after STS);
4. wall-clock, side by side in one run, batch 1 and 8, T = 0 and 1: the target alone (our
   ``autoregressive`` runner and HF ``generate``), ours with DSpark (fixed length 7, and with
   the causal scheduler over the target's SPS curve measured here) / ar_draft / n-gram, HF
   assisted generation with ar_draft and HF prompt lookup (batch 1: HF supports no more);
   warm-up, then the median of the repeats; every method gets the same prompts,
   max_new_tokens and EOS id (a row ends after its first EOS); speed-ups vs autoregressive
   (goals: DSpark >= 2x at T = 0, >= 1.8x at T = 1, faster than HF assisted and HF prompt
   lookup); the greedy outputs are checked against autoregressive greedy token for token;
5. serving simulation: DSpark's recorded rounds (T = 0 and 1, confidences calibrated with the
   STS temperatures of part 3) and the target's SPS curve measured here, replayed by
   ``bench/serving_sim.py`` (scheduler vs fixed lengths vs static threshold across R).

Writes ``default_results.json`` (every number above, plus the machine, torch version,
threads and parameter counts), ``acceptance.png``, ``ablations.png``, ``reliability_T*.png``,
``wallclock.png`` (without matplotlib the plots are skipped, reliability falls back to SVG),
``rounds_T*.npz``, ``sps.json`` and ``serving_T*/`` into ``--out`` (default
bench/out/default).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import dspark_ext  # noqa: E402
from bench_decode import ForwardClock  # noqa: E402
from dspark_ext import bundled  # noqa: E402
from dspark_ext.calibration import plot_reliability  # noqa: E402
from dspark_ext.decoding import FixedLength, Scheduled, SpeculativeDecoder, as_target  # noqa
from dspark_ext.eval.runner import EvalConfig, autoregressive, measure_sps, run_eval  # noqa
from dspark_ext.plotting import pyplot  # noqa: E402

import harness  # noqa: E402  (HF generate prompts)

GAMMA = 7
DRAFTERS = ("dspark", "dflash", "ar_draft", "ngram")
TEMPS = (0.0, 1.0)
GOAL_GAIN = 0.10          # DSpark tau over DFlash
GOAL_ECE = 0.015          # after STS, every position
GOAL_SPEEDUP = {0.0: 2.0, 1.0: 1.8}


def _tkey(t: float) -> str:
    return f"T={t:g}"


def _verdict(ok: Optional[bool]) -> str:
    return {True: "pass", False: "MISS", None: "n/a"}[ok]


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def _clean(obj):
    """JSON-ready: tensors to lists, NaN / inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _params(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class Bench:
    """Models, prompts and settings, with the DSpark evaluations shared by parts 1, 3, 5."""

    def __init__(self, args):
        from dspark_ext.bundled.tokenizer import load_tokenizer
        self.args = args
        self.smoke = args.smoke
        self.max_new = args.max_new_tokens or (16 if args.smoke else 128)
        self.batch = 8
        prompts = bundled.heldout_prompts(args.prompts or (2 if args.smoke else None))
        self.modules = [p["module"] for p in prompts]
        self.ids = [list(p["input_ids"]) for p in prompts]
        self.model = bundled.load_target()
        self.target = as_target(self.model)
        self.tokenizer = load_tokenizer(bundled.model_path("target"))
        self.eos = self.tokenizer.eos_token_id
        if self.eos is None:
            self.eos = self.model.generation_config.eos_token_id
        self.pad = self.model.generation_config.pad_token_id
        if self.pad is None:
            self.pad = self.eos if isinstance(self.eos, int) else 0
        self.drafters = {name: bundled.load_drafter(name) for name in DRAFTERS}
        self.ar_model = self.drafters["ar_draft"].lm.model   # the HF model under ModelDrafter
        self._evals: Dict = {}

    def cfg(self, temperature: float, **kw) -> EvalConfig:
        return EvalConfig(temperature=temperature, gamma=kw.pop("gamma", GAMMA),
                          max_new_tokens=self.max_new, batch_size=kw.pop("batch_size", self.batch),
                          seed=self.args.seed, eos_token_id=self.eos, baseline=False, sweep=(),
                          sps_points=(), **kw)

    def evaluate(self, name: str, temperature: float) -> Dict:
        """run_eval (fixed length 7, batch 8, STS fit / held-out split), cached."""
        key = (name, temperature)
        if key not in self._evals:
            self._evals[key] = run_eval(self.target, self.drafters[name], self.ids,
                                        self.cfg(temperature))
        return self._evals[key]


def _curve(fixed: Dict) -> Dict:
    return {k: fixed[k] for k in ("accepted_length", "acceptance_rate", "conditional_acceptance",
                                  "prefix_survival", "rounds", "tokens", "tokens_per_s")}


# ------------------------------------------------------------------------------- part 1 / 2
def part_acceptance(b: Bench) -> Dict:
    out = {"gamma": GAMMA, "batch_size": b.batch, "max_new_tokens": b.max_new,
           "num_prompts": len(b.ids), "goal_gain_over_dflash": GOAL_GAIN, "runs": {}}
    print(f"\n== 1. accepted length per round, gamma {GAMMA}, batch {b.batch}, "
          f"{len(b.ids)} prompts x {b.max_new} tokens ==")
    print(f"{'':6} {'drafter':9} {'tau':>6} {'accept':>7}  conditional acceptance per position")
    for t in TEMPS:
        runs = {}
        for name in DRAFTERS:
            runs[name] = _curve(b.evaluate(name, t)["fixed"])
            r = runs[name]
            cond = " ".join(_fmt(c, ".2f") for c in r["conditional_acceptance"])
            print(f"{_tkey(t):6} {name:9} {_fmt(r['accepted_length'], '.3f'):>6} "
                  f"{_fmt(r['acceptance_rate'], '.3f'):>7}  {cond}")
        gain = runs["dspark"]["accepted_length"] / runs["dflash"]["accepted_length"] - 1
        out["runs"][_tkey(t)] = {"temperature": t, "drafters": runs, "dspark_gain_over_dflash":
                                 gain, "gain_goal_met": gain >= GOAL_GAIN}
        print(f"{_tkey(t):6} DSpark tau gain over DFlash {100 * gain:+.1f}% (goal >= "
              f"+{100 * GOAL_GAIN:.0f}%): {_verdict(gain >= GOAL_GAIN)}")
    return out


def _plot_curves(series: Dict[str, List], title: str, path: str) -> Optional[str]:
    plt = pyplot()
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, ys in series.items():
        ax.plot(range(1, len(ys) + 1), [np.nan if y is None else y for y in ys], marker="o",
                ms=3, label=label)
    ax.set_xlabel("draft position k")
    ax.set_ylabel("P(accept k | accepted < k)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parse_ablations(specs: List[str]) -> List[tuple]:
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--ablation wants NAME=PATH, got {spec!r}")
        out.append((name, path))
    return out


def part_curves(b: Bench) -> Dict:
    from dspark_ext.drafters.dspark import DSparkDrafter
    out = {"drafters": {}, "ablations": {}, "files": {}}
    series = {}
    for t in (() if b.args.ablations_only else TEMPS):
        for name in DRAFTERS:
            fixed = b.evaluate(name, t)["fixed"]
            out["drafters"][f"{name} {_tkey(t)}"] = fixed["conditional_acceptance"]
            series[f"{name} {_tkey(t)} (tau {fixed['accepted_length']:.2f})"] = \
                fixed["conditional_acceptance"]
    out["files"]["acceptance_plot"] = _plot_curves(
        series, f"per-position conditional acceptance, gamma {GAMMA}",
        os.path.join(b.args.out, "acceptance.png"))
    ablations = _parse_ablations(b.args.ablation)
    n_abl = min(len(b.ids), b.args.ablation_prompts or len(b.ids))
    out["ablation_prompts"] = n_abl
    print("\n== 2. per-position acceptance curves"
          + (f": ablations, first {n_abl} prompts ==" if ablations else
             " (no --ablation given) =="))
    if ablations:  # the reference DSpark on the same prompts: the first row
        ablations.insert(0, ("reference", b.args.ablation_reference
                             or bundled.model_path("dspark")))
        print(f"{'':6} {'ablation':10} {'block':>5} {'layers':>6} {'gamma':>5} {'tau':>6} "
              f"{'accept':>7}  conditional acceptance per position")
    abl_series = {}
    for name, path in ablations:
        drafter = DSparkDrafter.from_pretrained(path, dtype=torch.float32).eval()
        gamma = drafter.block_size
        info = {"path": path, "block_size": gamma, "layers": drafter.config.num_hidden_layers,
                "gamma": gamma, "params": _params(drafter), "runs": {}}
        for t in TEMPS:
            res = run_eval(b.target, drafter, b.ids[:n_abl], b.cfg(t, gamma=gamma))
            info["runs"][_tkey(t)] = r = _curve(res["fixed"])
            abl_series[f"{name} {_tkey(t)} (tau {r['accepted_length']:.2f})"] = \
                r["conditional_acceptance"]
            cond = " ".join(_fmt(c, ".2f") for c in r["conditional_acceptance"])
            print(f"{_tkey(t):6} {name:10} {gamma:5d} {info['layers']:6d} {gamma:5d} "
                  f"{_fmt(r['accepted_length']):>6} {_fmt(r['acceptance_rate']):>7}  {cond}")
        out["ablations"][name] = info
    out["files"]["ablation_plot"] = _plot_curves(
        abl_series, "ablations: per-position conditional acceptance",
        os.path.join(b.args.out, "ablations.png"))
    return out


# ------------------------------------------------------------------------------- part 3
def part_calibration(b: Bench) -> Dict:
    out = {"goal_ece_after": GOAL_ECE, "runs": {},
           "bundled_sts_temperatures": {_tkey(t): bundled.sts_temperatures("dspark", t)
                                        for t in TEMPS}}
    print("\n== 3. DSpark calibration: STS fit on the first half of the prompts' rounds, "
          "ECE on the second half ==")
    for t in TEMPS:
        res = b.evaluate("dspark", t)
        calib = res["calibration"]
        if calib is None:
            raise RuntimeError("the DSpark drafter recorded no confidence logits")
        rows = []
        for s, temp in zip(calib["summary"], calib["temperatures"]):
            after = s["ece"][1]
            rows.append({"position": s["position"], "n": s["n"], "temperature": temp,
                         "ece_before": s["ece"][0], "ece_after": after,
                         "auc_after": s["auc"][1], "brier_after": s["brier"][1],
                         "goal_met": None if after is None else after <= GOAL_ECE})
        reliability = plot_reliability(calib, os.path.join(b.args.out,
                                                           f"reliability_T{t:g}"))
        out["runs"][_tkey(t)] = {"temperature": t, "split": res["calibration_split"],
                                 "fit_rounds": calib["fit_rounds"],
                                 "held_out_rounds": calib["num_rounds"],
                                 "temperatures": calib["temperatures"], "positions": rows,
                                 "all_goal_met": all(r["goal_met"] for r in rows),
                                 "reliability_plot": reliability}
        split = res["calibration_split"]
        print(f"{_tkey(t)}: fit {split['fit_prompts']} prompts ({calib['fit_rounds']} rounds), "
              f"held-out {split['held_out_prompts']} prompts ({calib['num_rounds']} rounds)")
        print(f"{'k':>3} {'n':>5} {'T_k':>6} {'ECE pre':>8} {'ECE post':>9}  goal <= "
              f"{100 * GOAL_ECE:.1f}%")
        for r in rows:
            pct = (lambda v: "-" if v is None else f"{100 * v:.2f}%")
            print(f"{r['position']:>3} {r['n']:>5} {r['temperature']:6.2f} "
                  f"{pct(r['ece_before']):>8} {pct(r['ece_after']):>9}  "
                  f"{_verdict(r['goal_met'])}")
    return out


# ------------------------------------------------------------------------------- part 4
def _methods(b: Bench, t: float, batch: int, sps) -> Dict[str, tuple]:
    """name -> (run(prompts, max_new) -> new tokens per row, models whose forwards count).
    ``sps``: the target's SPS profile, for DSpark with its scheduler."""
    verify = "greedy" if t == 0 else "token"
    seed = b.args.seed
    sample = {} if t == 0 else {"temperature": t, "top_k": 0, "top_p": 1.0}

    def hf(extra):
        def run(prompts, max_new):
            ids, mask = harness.left_pad(prompts, b.pad)
            torch.manual_seed(seed)
            out = b.model.generate(ids, attention_mask=mask, do_sample=t > 0,
                                   max_new_tokens=max_new, eos_token_id=b.eos,
                                   pad_token_id=b.pad, **sample, **extra)
            return [harness.cut_eos(r, b.eos) for r in out[:, ids.shape[1]:].tolist()]
        return run

    def ours(drafter, policy=None):
        dec = SpeculativeDecoder(b.target, drafter, gamma=GAMMA)

        def run(prompts, max_new):
            return dec.generate(prompts, max_new_tokens=max_new, temperature=t, seed=seed,
                                eos_token_id=b.eos, verify=verify,
                                length_policy=policy or FixedLength(GAMMA)).new_tokens
        return run

    def ar(prompts, max_new):
        cfg = EvalConfig(temperature=t, max_new_tokens=max_new, batch_size=len(prompts),
                         seed=seed, eos_token_id=b.eos)
        return autoregressive(b.target, prompts, cfg)["new_tokens"]

    small = b.ar_model
    m = {"autoregressive": (ar, [b.model]), "hf_generate": (hf({}), [b.model]),
         "ours_dspark": (ours(b.drafters["dspark"]), [b.model]),
         # The hardware-aware scheduler (causal, STS-calibrated) picks each row's length.
         "ours_dspark_scheduled": (ours(b.drafters["dspark"], Scheduled(
             sps, bundled.sts_temperatures("dspark", t))), [b.model]),
         "ours_ar_draft": (ours(b.drafters["ar_draft"]), [b.model, small]),
         "ours_ngram": (ours(b.drafters["ngram"]), [b.model])}
    if batch == 1:
        m["hf_assisted_ar_draft"] = (hf({"assistant_model": small}), [b.model, small])
        m["hf_prompt_lookup"] = (hf({"prompt_lookup_num_tokens": GAMMA}), [b.model])
    return m


def _time(run: Callable, groups: List[List[List[int]]], models, max_new: int,
          repeats: int) -> Dict:
    """Warm-up, then ``repeats`` passes over every group (one generate call per group);
    the median wall time and the last pass's tokens."""
    run(groups[0], min(8, max_new))
    walls, forwards, calls = [], [], []
    for _ in range(repeats):
        clock = ForwardClock(*models)
        t0 = time.perf_counter()
        new = [row for g in groups for row in run(g, max_new)]
        walls.append(time.perf_counter() - t0)
        clock.close()
        forwards.append(clock.total)
        calls.append(clock.target_calls)
    n = sum(len(r) for r in new)
    wall = statistics.median(walls)
    return {"wall_s": wall, "walls_s": walls, "new_tokens": n, "tokens_per_s": n / wall,
            "tokens_per_row": [len(r) for r in new], "target_forwards": calls[-1],
            "model_forward_s": statistics.median(forwards), "outputs": new}


DSPARK_METHODS = ("ours_dspark", "ours_dspark_scheduled")


def part_wallclock(b: Bench) -> Dict:
    a = b.args
    repeats = a.repeats or (1 if b.smoke else 3)
    n1 = min(len(b.ids), a.wall_prompts or (1 if b.smoke else 2))
    groups = {1: [[p] for p in b.ids[:n1]], 8: [b.ids[:b.batch]]}
    assist_cfg = b.ar_model.generation_config
    # Fixed gamma for HF assisted, as ours (HF's default heuristic changes it per round).
    assist_cfg.num_assistant_tokens = GAMMA
    assist_cfg.num_assistant_tokens_schedule = "constant"
    assist_cfg.assistant_confidence_threshold = 0
    # The scheduler's SPS curve: one row, B verified tokens (up to every row's gamma + 1).
    points = sorted({1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64})
    sps = measure_sps(b.target, points, 3 if b.smoke else 7)
    out = {"repeats": repeats, "max_new_tokens": b.max_new, "eos_token_id": b.eos,
           "scheduler_sps": sps.to_dict(),
           "eos_handling": "eos_token_id passed to every method; a row ends after its first EOS",
           "gamma": GAMMA, "batch_1_prompts": n1, "batch_8_rows": len(groups[8][0]),
           "goals": {_tkey(t): GOAL_SPEEDUP[t] for t in TEMPS}, "runs": {}}
    print(f"\n== 4. wall-clock on this CPU ({torch.get_num_threads()} threads), "
          f"{b.max_new} new tokens, median of {repeats} ==")
    print(f"{'':6} {'B':>2} {'method':21} {'tok/s':>8} {'vs AR':>6} {'vs HF':>6} "
          f"{'tokens':>6} {'fwds':>5}  greedy == AR")
    for t in TEMPS:
        for batch, grp in groups.items():
            res = {}
            for name, (run, models) in _methods(b, t, batch, sps).items():
                res[name] = _time(run, grp, models, b.max_new, repeats)
            ref = res["autoregressive"]
            for name, r in res.items():
                r["speedup_vs_ar"] = r["tokens_per_s"] / ref["tokens_per_s"]
                r["speedup_vs_hf_generate"] = r["tokens_per_s"] / res["hf_generate"][
                    "tokens_per_s"]
                r["greedy_identical_to_ar"] = (r["outputs"] == ref["outputs"]) if t == 0 \
                    else None
                same = {True: "yes", False: "NO", None: "n/a"}[r["greedy_identical_to_ar"]]
                print(f"{_tkey(t):6} {batch:2d} {name:21} {r['tokens_per_s']:8.1f} "
                      f"{r['speedup_vs_ar']:5.2f}x {r['speedup_vs_hf_generate']:5.2f}x "
                      f"{r['new_tokens']:6d} {r['target_forwards']:5d}  {same}")
            # The goal is judged on the faster DSpark configuration (both are lossless, with
            # the same drafter) against the faster of the two autoregressive baselines.
            best = max(DSPARK_METHODS, key=lambda n: res[n]["tokens_per_s"])
            ds = res[best]
            speed = min(ds["speedup_vs_ar"], ds["speedup_vs_hf_generate"])
            goals = {"dspark_method": best, "speedup": speed, "speedup_goal": GOAL_SPEEDUP[t],
                     "speedup_goal_met": speed >= GOAL_SPEEDUP[t]}
            for hf_name in ("hf_assisted_ar_draft", "hf_prompt_lookup"):
                if hf_name in res:
                    goals[f"faster_than_{hf_name}"] = \
                        ds["tokens_per_s"] > res[hf_name]["tokens_per_s"]
            print(f"{_tkey(t):6} {batch:2d} {best} {speed:.2f}x the faster AR baseline (goal >= "
                  f"{GOAL_SPEEDUP[t]}x): {_verdict(goals['speedup_goal_met'])}" + "".join(
                      f"; faster than {k[12:]}: {_verdict(v)}" for k, v in goals.items()
                      if k.startswith("faster_than_")))
            for r in res.values():
                r.pop("outputs")
            out["runs"][f"{_tkey(t)} B={batch}"] = {"temperature": t, "batch": batch,
                                                    "methods": res, "goals": goals}
    out["greedy_dspark_identical_to_ar"] = all(
        r["methods"][n]["greedy_identical_to_ar"] for r in out["runs"].values()
        if r["temperature"] == 0 for n in DSPARK_METHODS)
    out["wallclock_plot"] = _plot_wallclock(out, os.path.join(a.out, "wallclock.png"))
    return out


def _plot_wallclock(out: Dict, path: str) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return None
    keys = list(out["runs"])
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        methods = out["runs"][key]["methods"]
        ax.barh(list(methods), [m["speedup_vs_ar"] for m in methods.values()])
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("speed-up vs autoregressive")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- part 5
def part_serving(b: Bench) -> Dict:
    import serving_sim
    a = b.args
    points = [2 ** i for i in range(7 if b.smoke else 10)]   # 1 .. 64 / 512 batch tokens
    repeats = 2 if b.smoke else 5
    print(f"\n== 5. serving simulation: SPS of the target at B = {points[0]}..{points[-1]} "
          f"({repeats} repeats), DSpark's recorded rounds ==")
    sps = measure_sps(b.target, points, repeats)
    sps_path = os.path.join(a.out, "sps.json")
    sps.save(sps_path)
    out = {"sps": sps.to_dict(), "sps_file": sps_path, "runs": {}}
    for t in TEMPS:
        res = b.evaluate("dspark", t)
        rounds = res["rounds"]
        path = os.path.join(a.out, f"rounds_T{t:g}.npz")
        np.savez(path, confidence=rounds["confidence"].numpy(),
                 accept_len=rounds["accept_len"].numpy())
        sim_dir = os.path.join(a.out, f"serving_T{t:g}")
        print(f"-- {_tkey(t)}: {int(rounds['accept_len'].numel())} rounds --")
        argv = ["--rounds", path, "--sps", sps_path, "--out", sim_dir]
        sim = serving_sim.main(argv + (["--smoke"] if b.smoke else []))
        rows = []
        for r in sim["results"]:
            pol = r["policies"]
            exp = {p: pol[p]["expected_throughput"] for p in pol}
            rows.append({"R": r["R"], "expected_throughput": exp,
                         "best_fixed": r["best_fixed_expected"],
                         "causal_vs_best_fixed": exp["causal"] / r["best_fixed_expected"],
                         "async_vs_best_fixed": exp["async"] / r["best_fixed_expected"],
                         "causal_vs_threshold": exp["causal"] / exp["threshold"],
                         "causal_at_least_best_fixed": r["causal_at_least_best_fixed"],
                         "async_at_least_best_fixed": r["async_at_least_best_fixed"]})
        out["runs"][_tkey(t)] = {
            "temperature": t, "rounds_file": path, "recorded_rounds":
            int(rounds["accept_len"].numel()), "sts_temperatures": res["calibration"][
                "temperatures"], "sts_source": "fitted on the first half of the prompts' "
            "rounds (part 3)", "serving_sim_json": os.path.join(sim_dir, "serving_sim.json"),
            "serving_sim_plot": sim.get("plot"), "steps": sim["steps"], "by_R": rows}
        print(f"{_tkey(t)}: scheduler / best fixed length (expected throughput) per R: " +
              ", ".join(f"R={r['R']} {r['causal_vs_best_fixed']:.2f}x" for r in rows))
    return out


# ------------------------------------------------------------------------------- main
PARTS = {1: ("1_acceptance", part_acceptance), 2: ("2_curves", part_curves),
         3: ("3_calibration", part_calibration), 4: ("4_wallclock", part_wallclock),
         5: ("5_serving", part_serving)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="2 prompts, 16 tokens, 1 repeat")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "default"))
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH",
                    help="a DSpark checkpoint folder, evaluated at gamma = its block size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", default="1,2,3,4,5", help="comma list of 1-5")
    ap.add_argument("--prompts", type=int, default=None, help="first N held-out prompts")
    ap.add_argument("--ablation-prompts", type=int, default=32,
                    help="first N prompts for the ablations (0: all; the reference DSpark "
                    "is rerun on the same prompts)")
    ap.add_argument("--ablations-only", action="store_true",
                    help="part 2 without the bundled drafters' curves (part 1 of a full run "
                    "has them): only the reference and --ablation rows")
    ap.add_argument("--ablation-reference", default=None, metavar="PATH",
                    help="the ablations' reference DSpark checkpoint (default: the bundled "
                    "one)")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None, help="wall-clock repeats")
    ap.add_argument("--wall-prompts", type=int, default=None,
                    help="prompts decoded one by one in the batch-1 wall-clock runs (2)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    parts = sorted({int(p) for p in args.parts.split(",") if p.strip()})
    if not parts or any(p not in PARTS for p in parts):
        raise SystemExit(f"--parts wants a comma list of 1-5, got {args.parts!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    b = Bench(args)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": {"processor": platform.processor(), "machine": platform.machine(),
                        "cpu_count": os.cpu_count(), "python": platform.python_version()},
            "dspark_ext": dspark_ext.build_info(), "models_dir": bundled.models_dir(),
            "params": {"target": _params(b.model), "dspark": _params(b.drafters["dspark"]),
                       "dflash": _params(b.drafters["dflash"]), "ar_draft": _params(b.ar_model),
                       "ngram": 0},
            "mode": "smoke" if args.smoke else "full", "num_prompts": len(b.ids),
            "modules": sorted(set(b.modules)), "max_new_tokens": b.max_new, "gamma": GAMMA,
            "parts": parts, "load_seconds": time.perf_counter() - t0}
    p = meta["params"]
    print(f"bench_default | {meta['mode']} | target {p['target'] / 1e6:.2f}M, dspark "
          f"{p['dspark'] / 1e6:.2f}M, dflash {p['dflash'] / 1e6:.2f}M, ar_draft "
          f"{p['ar_draft'] / 1e6:.2f}M params | {len(b.ids)} prompts x {b.max_new} tokens | "
          f"threads {meta['threads']} | torch {torch.__version__}", flush=True)
    results = {"meta": meta}
    for num in parts:
        key, fn = PARTS[num]
        start = time.perf_counter()
        results[key] = fn(b)
        results[key]["seconds"] = time.perf_counter() - start
        print(f"[part {num} done in {results[key]['seconds']:.0f}s]", flush=True)
    meta["seconds"] = time.perf_counter() - t0
    path = os.path.join(args.out, "default_results.json")
    with open(path, "w") as f:
        json.dump(_clean(results), f, indent=1, allow_nan=False)
    print(f"\nwrote {path} ({meta['seconds']:.1f}s)")
    return results


if __name__ == "__main__":
    main()
