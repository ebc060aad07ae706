#!/usr/bin/env python
"""Short demo of dspark_ext's verification ops (< 1 min on a 2-core CPU).

    python bench/bench_summary.py [--device cpu|cuda] [--out DIR]

Runs the headline cases of bench/bench_verify.py (``--summary --compact``): verify_greedy,
token-wise and block rejection sampling at B=32, K=7, V=32000 fp32 (the issue's CPU target
shape, T=1), B=8 (with the float64 reference) and B=32, V=151936 bf16; prints one line per
case (mean accepted length tau, native and eager-PyTorch times, speedup, achieved GB/s and
its share of the measured copy bandwidth) and the pass/fail of the performance targets.
Extra arguments go to bench_verify.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_verify  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--out") for a in argv):
        argv += ["--out", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "out", "summary")]
    bench_verify.main(["--summary", "--compact", *argv])
