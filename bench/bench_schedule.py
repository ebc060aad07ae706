#!/usr/bin/env python
"""Benchmark of the prefix scheduler op (dspark_ext.schedule_prefix) against its plain-Python
reference (dspark_ext.reference_schedule), in one command.

    python bench/bench_schedule.py [--device cpu|cuda] [--smoke] [--out DIR] [--threads N]

For each case (R requests x K draft positions x mode) it times, on the same inputs and in the
same run, the native op (``torch.ops.dspark.schedule_prefix`` called directly with tensors:
the per-step cost an engine pays, op dispatch included) and the Python reference (inputs
pre-converted to lists), checks that both return identical results, and reports the median
of repeated runs after warm-up (harness.time_fn) and the speedup ``x_ref``. Modes:
``causal`` (Algorithm 1), ``global`` (no early stop: the whole admission path),
``capacity`` (the asynchronous step, capacity = the global search's count), and
``causal_flat`` (a flat SPS curve: the causal scan never stops early, its worst case).

Inputs: per-request base acceptance U(0.55, 0.95), c[r, k] = base * U(0.9, 1.0) clamped to
[0, 1] (position-decaying prefix survival); SPS(B) = 1 / (8 ms + 20 us * B) with a 7% cliff
every 64 tokens (a jagged decode-step curve).

Targets (issue 4, CPU): R = 256, K = 16 under 100 us median and at least 20x the reference, for
every mode. Writes ``schedule_results.json`` to ``--out`` (default bench/out) and prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)

from dspark_ext import reference_schedule as ref  # noqa: E402

from harness import machine_info, pick_device, time_fn, write_json  # noqa: E402

MODES = ("causal", "global", "capacity", "causal_flat")
HEADLINE = dict(R=256, K=16)
TARGET_US = 100.0
TARGET_X_REF = 20.0


def grid(mode: str):
    if mode == "smoke":
        return [(8, 4), (256, 16)]
    return [(1, 8), (16, 8), (64, 16), (256, 8), (256, 16), (1024, 16)]


def step_time(b: int) -> float:
    return (8e-3 + 20e-6 * b) * (1.07 ** (b // 64))


def make_inputs(rows: int, k: int, seed: int, device: torch.device):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(rows, 1, generator=g, dtype=torch.float64) * 0.4 + 0.55
    conf = (base * (0.9 + 0.1 * torch.rand(rows, k, generator=g, dtype=torch.float64)))
    conf = conf.clamp(0, 1).float()
    largest = rows * (k + 1)
    sps = torch.tensor([1.0 / step_time(max(b, 1)) for b in range(largest + 1)],
                       dtype=torch.float64)
    flat = torch.ones(largest + 1, dtype=torch.float64)
    return conf.to(device), sps.to(device), flat.to(device)


def run_case(rows: int, k: int, mode: str, device: torch.device, budget, seed: int,
             with_ref: bool) -> Dict:
    conf, sps, flat = make_inputs(rows, k, seed, device)
    table = flat if mode == "causal_flat" else sps
    op = torch.ops.dspark.schedule_prefix
    capacity = None
    if mode == "capacity":
        capacity = op(conf, table, None, None, None, False)[1].clone()
    early = mode in ("causal", "causal_flat")

    def native():
        return op(conf, table, None, capacity, None, early)

    warm, reps, secs = budget
    med, times = time_fn(native, device, warm, reps, secs)
    out = native()
    case = {"R": rows, "K": k, "mode": mode, "native_s": med, "native_min_s": min(times),
            "reps": len(times), "num_admitted": int(out[1]),
            "throughput": float(out[3])}
    if with_ref:
        conf_l, table_l = conf.cpu().tolist(), table.cpu().tolist()
        if mode == "capacity":
            cap = int(capacity)
            ref_fn = lambda: ref.schedule_capacity(conf_l, table_l, cap)  # noqa: E731
        elif early:
            ref_fn = lambda: ref.schedule_causal(conf_l, table_l)  # noqa: E731
        else:
            ref_fn = lambda: ref.schedule_global(conf_l, table_l)  # noqa: E731
        ref_med, _ = time_fn(ref_fn, torch.device("cpu"), 1, max(3, reps // 10), secs, 3)
        expect = ref_fn()
        case["ref_s"] = ref_med
        case["x_ref"] = ref_med / med
        case["matches_ref"] = (out[0].cpu().tolist() == expect.lengths
                               and int(out[1]) == expect.num_admitted
                               and float(out[3]) == expect.throughput)
    return case


def main(argv: Optional[List[str]] = None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--smoke", action="store_true", help="tiny run that checks the machinery")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)
    device = pick_device(args.device, args.threads)
    mode = "smoke" if args.smoke else "full"
    budget = (3, 20, 0.2) if args.smoke else (20, 2000, 1.0)
    cases = []
    for rows, k in grid(mode):
        for m in MODES:
            cases.append(run_case(rows, k, m, device, budget, args.seed, not args.no_reference))
    print(f"{'R':>5} {'K':>3} {'mode':>12} {'native_us':>10} {'ref_us':>10} {'x_ref':>7} "
          f"{'admit':>6} match")
    for c in cases:
        print(f"{c['R']:>5} {c['K']:>3} {c['mode']:>12} {c['native_s'] * 1e6:>10.1f} "
              f"{c.get('ref_s', float('nan')) * 1e6:>10.1f} {c.get('x_ref', float('nan')):>7.1f} "
              f"{c['num_admitted']:>6} {c.get('matches_ref', '-')}")
    targets = []
    for c in cases:
        if c["R"] == HEADLINE["R"] and c["K"] == HEADLINE["K"] and device.type == "cpu":
            ok_t = c["native_s"] * 1e6 < TARGET_US
            ok_x = c.get("x_ref", float("inf")) >= TARGET_X_REF
            targets.append({"mode": c["mode"], "native_us": c["native_s"] * 1e6,
                            "x_ref": c.get("x_ref"), "under_100us": ok_t,
                            "at_least_20x_ref": ok_x, "measured": mode != "smoke"})
    print("targets (R=256, K=16, CPU):" + ("" if mode != "smoke" else " (smoke: not judged)"))
    for t in targets:
        print(f"  {t['mode']:>12}: {t['native_us']:.1f} us ({'PASS' if t['under_100us'] else 'FAIL'}"
              f" < {TARGET_US:.0f} us), x_ref {t['x_ref'] or float('nan'):.0f} "
              f"({'PASS' if t['at_least_20x_ref'] else 'FAIL'} >= {TARGET_X_REF:.0f})")
    results = {
        "mode": mode,
        "machine": {**machine_info(device), "threads": torch.get_num_threads()},
        "device": device.type,
        "cases": cases,
        "targets": targets,
    }
    os.makedirs(args.out, exist_ok=True)
    write_json(results, os.path.join(args.out, "schedule_results.json"))
    return results


if __name__ == "__main__":
    main()
