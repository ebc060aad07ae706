#!/usr/bin/env python
"""Benchmark of dspark_ext.ops.small_linear (the drafter's few-row decode GEMMs) against
torch's F.linear (MKL / oneDNN on CPU) in the same run, on the bundled DSpark drafter's decode
shapes (d = 256, MLP 768, vocabulary 4096, 7 block rows plus up to 8 context rows).

    python bench/bench_linear.py [--threads N] [--out DIR] [--smoke]

Median of many calls after warm-up (harness.time_fn); also the largest difference from
F.linear. Writes ``linear_results.json`` and ``linear_speedup.png`` to --out (bench/out).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from dspark_ext.ops import small_linear  # noqa: E402

import harness  # noqa: E402

# (rows, in, out, what): the decode step's projections at batch 1.
SHAPES = [(7, 256, 4096, "LM head"), (15, 256, 512, "Q/K/V + 8 context rows"),
          (8, 256, 1536, "gate/up"), (7, 768, 256, "down"), (7, 256, 256, "o"),
          (3, 768, 256, "fc, 3 context rows"), (1, 256, 4096, "one row")]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--smoke", action="store_true", help="two shapes, few repetitions")
    a = ap.parse_args(argv)
    device = harness.pick_device("cpu", a.threads)
    os.makedirs(a.out, exist_ok=True)
    reps, secs = (5, 0.05) if a.smoke else (200, 1.0)
    cases = []
    for rows, k, n, what in (SHAPES[:2] if a.smoke else SHAPES):
        g = torch.Generator().manual_seed(rows + k + n)
        x, w = torch.randn(rows, k, generator=g), torch.randn(n, k, generator=g)
        b = torch.randn(n, generator=g)
        ours, _ = harness.time_fn(lambda: small_linear(x, w, b), device, 5, reps, secs, 3)
        peer, _ = harness.time_fn(lambda: F.linear(x, w, b), device, 5, reps, secs, 3)
        err = float((small_linear(x, w, b) - F.linear(x, w, b)).abs().max())
        cases.append({"rows": rows, "in": k, "out": n, "what": what, "small_linear_s": ours,
                      "f_linear_s": peer, "speedup": peer / ours, "max_abs_diff": err})
        print(f"[{rows:2d} x {k:3d}] x [{k:3d} x {n:4d}] {what:24s} small_linear "
              f"{ours * 1e6:7.1f} us  F.linear {peer * 1e6:7.1f} us  {peer / ours:4.2f}x  "
              f"max |diff| {err:.1e}")
    res = {"machine": harness.machine_info(device), "threads": torch.get_num_threads(),
           "cases": cases}
    plt = harness.pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        ax.barh([c["what"] for c in cases], [c["speedup"] for c in cases])
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xlabel("F.linear time / small_linear time")
        res["plot"] = harness.save_figure(plt, fig, os.path.join(a.out, "linear_speedup"))
    print("wrote", harness.write_json(res, os.path.join(a.out, "linear_results.json")))
    return res


if __name__ == "__main__":
    main()
