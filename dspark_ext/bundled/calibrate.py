"""``python -m dspark_ext.bundled.build calibrate``: per-decoding-temperature calibration of
the bundled DSpark confidence head, chosen by what transfers across held-out modules.

The held-out prompts are split by *module* (:func:`module_split`: whole modules in file
order until half the prompts are taken), so no module gives rounds to both sides. At each
decoding temperature the drafter decodes both sets (gamma 7, fixed length, batch 8); STS
(:func:`..calibration.fit_sts`) and per-position temperature plus bias
(:func:`..calibration.fit_platt`) are fitted on the first set's rounds and scored on the
second's: ECE of the prefix-survival prediction per position with a bootstrap 95% interval
(:func:`..calibration.ece_with_interval`; positions with < 500 rounds reported, not judged).
Per temperature the method with fewer judged positions over 1.5% (then the lower worst
judged ECE) is shipped in ``calibration.json`` next to the checkpoint, with both reports.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Tuple

import torch

__all__ = ["module_split", "choose", "calibrate_file", "GOAL_ECE"]

GOAL_ECE = 0.015
CALIBRATION_TEMPERATURES = (0.0, 1.0)


def module_split(prompts: Sequence[dict]) -> Tuple[List[dict], List[dict]]:
    """(fit, score): whole modules in the order they appear until at least half the prompts
    are in ``fit``; the remaining modules score. Both sides non-empty (>= 2 modules)."""
    modules = list(dict.fromkeys(p["module"] for p in prompts))
    if len(modules) < 2:
        raise ValueError(f"prompts must come from at least 2 modules, got {modules}")
    fit_mods, count = set(), 0
    for mod in modules[:-1]:
        if count >= len(prompts) / 2:
            break
        fit_mods.add(mod)
        count += sum(p["module"] == mod for p in prompts)
    return ([p for p in prompts if p["module"] in fit_mods],
            [p for p in prompts if p["module"] not in fit_mods])


def _score(method: str, params, z, y, m) -> List[Dict]:
    from ..calibration import apply_platt, apply_sts, ece_with_interval, prefix_survival
    cond = apply_sts(z, params) if method == "sts" else apply_platt(z, params)
    return ece_with_interval(prefix_survival(cond), y, m)


def choose(reports: Dict[str, List[Dict]], goal: float = GOAL_ECE) -> str:
    """The method whose report has the fewest judged positions over ``goal``, then the lowest
    worst judged ECE (name order breaks exact ties)."""
    def key(name):
        judged = [r["ece"] for r in reports[name] if r["judged"] and r["ece"] is not None]
        return (sum(e > goal for e in judged), max(judged, default=0.0), name)
    return min(reports, key=key)


def calibrate_file(work: str, drafter: str = "dspark", max_new_tokens: int = 128,
                   gamma: int = 7) -> dict:
    from transformers import AutoModelForCausalLM
    from ..calibration import fit_platt, fit_sts, ece_with_interval
    from ..decoding import FixedLength, SpeculativeDecoder
    from ..drafters.dspark import DSparkDrafter
    from ..eval.runner import EvalConfig, speculative
    from .build import _read_prompts, final_checkpoint
    ckpt = final_checkpoint(os.path.join(work, drafter))
    target = AutoModelForCausalLM.from_pretrained(os.path.join(work, "target", "final"),
                                                  dtype=torch.float32).eval()
    model = DSparkDrafter.from_pretrained(ckpt, dtype=torch.float32).eval()
    fit_p, score_p = module_split(_read_prompts(work))
    decoder = SpeculativeDecoder(target, model, gamma=gamma)
    out = {"block_size": model.config.block_size, "gamma": gamma,
           "max_new_tokens": max_new_tokens, "checkpoint": os.path.basename(ckpt),
           "fit_modules": sorted({p["module"] for p in fit_p}),
           "score_modules": sorted({p["module"] for p in score_p}), "temperatures": {}}
    for t in CALIBRATION_TEMPERATURES:
        cfg = EvalConfig(temperature=t, max_new_tokens=max_new_tokens, batch_size=8,
                         eos_token_id=target.config.eos_token_id)
        verify = "greedy" if t == 0 else "token"
        rounds = [speculative(decoder, [p["input_ids"] for p in ps], cfg, FixedLength(gamma),
                              verify, gamma)["stats"].calibration_inputs()
                  for ps in (fit_p, score_p)]
        (zf, yf, mf), (zs, ys, ms) = rounds
        fits = {"sts": fit_sts(zf, yf, mf), "platt": fit_platt(zf, yf, mf)}
        from ..calibration import prefix_survival
        reports = {"raw": ece_with_interval(prefix_survival(torch.sigmoid(zs.double())), ys,
                                            ms)}
        reports.update({name: _score(name, p, zs, ys, ms) for name, p in fits.items()})
        best = choose({k: v for k, v in reports.items() if k != "raw"})
        out["temperatures"][f"{t:g}"] = {
            "method": best, "params": fits[best].tolist(), "fit_rounds": int(zf.shape[0]),
            "score_rounds": int(zs.shape[0]), "reports": reports,
            "all_params": {k: v.tolist() for k, v in fits.items()}}
        for name, rep in reports.items():
            cells = " ".join(f"{100 * r['ece']:.2f}[{100 * r['lo']:.1f},{100 * r['hi']:.1f}]"
                             f"{'' if r['judged'] else '*'}" for r in rep if r["ece"] is not None)
            print(f"T={t:g} {name:>5}: {cells}", flush=True)
        print(f"T={t:g}: ship {best} (fit {zf.shape[0]} rounds, score {zs.shape[0]})",
              flush=True)
    with open(os.path.join(ckpt, "calibration.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out
