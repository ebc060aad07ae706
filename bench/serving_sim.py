#!/usr/bin/env python
"""Serving simulation of confidence-scheduled verification (issue 4; the paper's Figure 7).

    python bench/serving_sim.py [--smoke] [--out DIR] [--steps N] [--rounds FILE] [--jagged]
                                [--sps FILE]

At each concurrency R, R requests decode together for ``--steps`` steps. Every step each
request brings one draft round -- its calibrated per-position confidences c[K] and the number
of leading drafts the target would accept, ``accept_len`` -- and a policy picks how many drafts
each request verifies (l_r). The step costs ``step_time(B)``, B = sum(1 + l_r) batch tokens
(taken from an SPS curve), and emits ``min(accept_len, l_r) + 1`` tokens per request.
Policies: no speculation (l = 0, one token per step), fixed length gamma in {1, 3, 5, 7},
a static threshold on prefix survival (a >= 0.5), the causal scheduler (Algorithm 1) and the
asynchronous scheduler (§5.2; capacity from the confidences of two steps earlier).

Reported per R and policy: token throughput (tokens per second of simulated time), the
per-request speed (tokens per second per request), tokens per step per request, and the same
throughput from the *expected* tokens (sum of prefix survivals: no sampling noise). Output: a
table, ``serving_sim.json`` and a plot of throughput against per-request speed as R grows
(``serving_sim.png``, or ``.svg`` without matplotlib) in ``--out`` (default bench/out).

Rounds: synthetic by default -- each request has a persistent acceptance level
alpha ~ U(0.45, 0.95); position k's conditional acceptance is alpha * 0.93^k times U(0.85, 1.15)
noise (capped at 0.99), the confidence head is calibrated (c = that probability) and
``accept_len`` is drawn from it. ``--rounds FILE`` replays recorded rounds instead (a .pt or
.npz with ``confidence`` [N, K] and ``accept_len`` [N], e.g. from our drafter), drawn at random
for each request and step.

SPS curve: ``step_time(B) = 12 ms + 50 us * max(0, B - 64)``: flat while the target is
memory-bound, then every verified token costs compute, so verification becomes expensive at
high batch. ``--jagged`` adds a 6% cliff every 128 tokens (the non-unimodal case where the
causal scheduler's early stop can get trapped and the asynchronous global search cannot).
``--sps FILE`` uses an SPSProfile measured on the target instead (``python -m dspark_ext.eval``
writes ``rounds.npz`` and ``sps.json`` side by side).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dspark_ext import scheduler as sch  # noqa: E402
from dspark_ext.plotting import Svg, pyplot  # noqa: E402

K_MAX = 7
FIXED = (1, 3, 5, 7)
THRESHOLD = 0.5
POLICIES = (["no_spec"] + [f"fixed_{g}" for g in FIXED]
            + ["threshold", "causal", "async"])


def step_time(b: int, jagged: bool = False) -> float:
    t = 12e-3 + 50e-6 * max(0, b - 64)
    if jagged:
        t *= 1.06 ** (b // 128)
    return t


class SyntheticRounds:
    """Position-decaying acceptance, persistent per request, calibrated confidences."""

    def __init__(self, k: int, seed: int):
        self.k = k
        self.g = torch.Generator().manual_seed(seed)

    def alphas(self, rows: int) -> torch.Tensor:
        return torch.rand(rows, 1, generator=self.g, dtype=torch.float64) * 0.5 + 0.45

    def draw(self, alpha: torch.Tensor):
        rows = alpha.shape[0]
        decay = 0.93 ** torch.arange(self.k, dtype=torch.float64)
        noise = 0.85 + 0.3 * torch.rand(rows, self.k, generator=self.g, dtype=torch.float64)
        conf = (alpha * decay * noise).clamp(max=0.99)
        accept = torch.rand(rows, self.k, generator=self.g, dtype=torch.float64) < conf
        accept_len = torch.cumprod(accept.long(), dim=1).sum(1)
        return conf, accept_len


class ReplayRounds:
    """Recorded rounds (confidence [N, K], accept_len [N]) drawn at random."""

    def __init__(self, path: str, seed: int):
        if path.endswith(".npz"):
            import numpy as np

            d = np.load(path)
            conf, acc = torch.from_numpy(d["confidence"]), torch.from_numpy(d["accept_len"])
        else:
            d = torch.load(path)
            conf, acc = d["confidence"], d["accept_len"]
        self.conf = conf.to(torch.float64).clamp(0, 1)
        self.accept_len = acc.to(torch.int64)
        self.k = self.conf.shape[1]
        self.g = torch.Generator().manual_seed(seed)

    def alphas(self, rows: int) -> torch.Tensor:
        return torch.zeros(rows, 1)

    def draw(self, alpha: torch.Tensor):
        idx = torch.randint(0, self.conf.shape[0], (alpha.shape[0],), generator=self.g)
        return self.conf[idx], self.accept_len[idx]


def choose(policy: str, conf: torch.Tensor, sps: torch.Tensor, async_sched) -> torch.Tensor:
    rows, k = conf.shape
    if policy == "no_spec":
        return torch.zeros(rows, dtype=torch.int64)
    if policy.startswith("fixed_"):
        return sch.fixed_length(rows, min(int(policy.split("_")[1]), k))
    if policy == "threshold":
        return sch.static_threshold(conf, THRESHOLD)
    if policy == "causal":
        return sch.schedule_causal(conf, sps).lengths
    if policy == "async":
        return async_sched.step(conf).lengths
    raise ValueError(policy)


def simulate(rows: int, steps: int, rounds, sps: torch.Tensor, seed: int,
             jagged: bool, timer=None) -> Dict[str, Dict]:
    """Every policy sees the same rounds (same requests, same steps). ``timer(B)``: the step
    time in seconds (default: the modelled ``step_time``)."""
    alpha = rounds.alphas(rows)
    trace = [rounds.draw(alpha) for _ in range(steps)]
    out = {}
    for policy in POLICIES:
        async_sched = sch.AsyncScheduler(sps) if policy == "async" else None
        tokens = expected = time_s = 0.0
        batch_tokens = 0
        for conf, accept_len in trace:
            lengths = choose(policy, conf, sps, async_sched)
            emitted = torch.minimum(accept_len, lengths) + 1
            a = torch.cumprod(conf, dim=1)
            mask = torch.arange(conf.shape[1])[None, :] < lengths[:, None]
            b = int(rows + lengths.sum())
            tokens += float(emitted.sum())
            expected += float(rows + (a * mask).sum())
            time_s += timer(b) if timer is not None else step_time(b, jagged)
            batch_tokens += b
        out[policy] = {
            "throughput": tokens / time_s,
            "expected_throughput": expected / time_s,
            "per_request_speed": tokens / time_s / rows,
            "tokens_per_step": tokens / steps / rows,
            "batch_tokens_per_step": batch_tokens / steps,
        }
    return out


def _plot(results: Dict, path_stem: str, key: str = "expected_throughput") -> str:
    series = {p: [(r["policies"][p][key] / r["R"], r["policies"][p][key]) for r in results]
              for p in POLICIES}
    plt = pyplot()
    if plt is None:
        return _plot_svg(series, [r["R"] for r in results], path_stem + ".svg")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p, pts in series.items():
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", ms=3, label=p, lw=2 if p in ("causal", "async") else 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-request speed (tokens/s/request)")
    ax.set_ylabel("throughput (tokens/s)")
    ax.set_title("throughput vs per-request speed as R grows (R: right to left)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_stem + ".png", dpi=110)
    plt.close(fig)
    return path_stem + ".png"


def _plot_svg(series, rs, path: str) -> str:
    w, h, pad = 640, 420, 50
    pts = [pt for s in series.values() for pt in s]
    lx = [math.log10(x) for x, _ in pts]
    ly = [math.log10(y) for _, y in pts]
    x0, x1 = min(lx), max(lx) + 1e-9
    y0, y1 = min(ly), max(ly) + 1e-9

    def sx(x):
        return pad + (math.log10(x) - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (math.log10(y) - y0) / (y1 - y0) * (h - 2 * pad)

    colors = ["black", "#999", "#777", "#555", "#333", "green", "red", "blue"]
    svg = Svg(w, h, font_size=11)
    svg.text(pad, 20, f"throughput (tok/s, log) vs per-request speed (log); "
                      f"R = {rs[0]}..{rs[-1]}")
    for i, (p, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        svg.polyline([(sx(x), sy(y)) for x, y in s], stroke=c,
                     width=2 if p in ("causal", "async") else 1)
        svg.text(w - pad - 60, pad + 14 * i, p, fill=c)
    return svg.save(path)


def main(argv: Optional[List[str]] = None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a few R and steps (seconds)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", default=None, help="recorded rounds (.pt / .npz)")
    ap.add_argument("--jagged", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    # --sps: an SPSProfile measured on the target (python -m dspark_ext.eval writes sps.json
    # next to rounds.npz); it replaces the modelled step_time curve.
    ap.add_argument("--sps", default=None, help="measured SPSProfile JSON (SPSProfile.save)")
    args = ap.parse_args(argv)
    measured = sch.SPSProfile.load(args.sps) if args.sps else None
    rs = [1, 8, 64, 256] if args.smoke else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    steps = args.steps or (8 if args.smoke else 100)
    rounds = (ReplayRounds(args.rounds, args.seed) if args.rounds
              else SyntheticRounds(K_MAX, args.seed))
    results = []
    for rows in rs:
        largest = rows * (rounds.k + 1)
        prof = measured or sch.SPSProfile.from_step_time(lambda b: step_time(b, args.jagged),
                                                         largest)
        sps = prof.table(largest)
        res = simulate(rows, steps, rounds, sps, args.seed, args.jagged,
                       timer=measured.step_time if measured else None)
        best_fixed = max(res[f"fixed_{g}"]["expected_throughput"] for g in FIXED)
        results.append({
            "R": rows, "policies": res,
            "best_fixed_expected": best_fixed,
            "causal_at_least_best_fixed": res["causal"]["expected_throughput"] >= best_fixed,
            "async_at_least_best_fixed": res["async"]["expected_throughput"] >= best_fixed,
        })
    header = f"{'R':>4} " + " ".join(f"{p:>10}" for p in POLICIES) + "  sched>=fixed"
    print("expected token throughput (tok/s); per-request speed below each R")
    print(header)
    for r in results:
        row = " ".join(f"{r['policies'][p]['expected_throughput']:>10.0f}" for p in POLICIES)
        print(f"{r['R']:>4} {row}  {r['causal_at_least_best_fixed']}/"
              f"{r['async_at_least_best_fixed']}")
        row = " ".join(f"{r['policies'][p]['expected_throughput'] / r['R']:>10.1f}"
                       for p in POLICIES)
        print(f"{'':>4} {row}")
    print("sampled token throughput (tok/s)")
    for r in results:
        row = " ".join(f"{r['policies'][p]['throughput']:>10.0f}" for p in POLICIES)
        print(f"{r['R']:>4} {row}")
    os.makedirs(args.out, exist_ok=True)
    summary = {"mode": "smoke" if args.smoke else "full", "steps": steps, "k": rounds.k,
               "jagged": args.jagged, "rounds": args.rounds or "synthetic",
               "sps": args.sps or "modelled",
               "policies": POLICIES, "results": results}
    with open(os.path.join(args.out, "serving_sim.json"), "w") as f:
        json.dump(summary, f, indent=1)
    summary["plot"] = _plot(results, os.path.join(args.out, "serving_sim"))
    print("plot:", summary["plot"])
    return summary


if __name__ == "__main__":
    main()
