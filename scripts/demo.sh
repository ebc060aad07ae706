#!/usr/bin/env bash
# Main job: builds dspark_ext, then the bundled code model continues held-out Python with
# plain autoregressive decoding and with DSpark speculative decoding (greedy and T = 1):
# continuations, accepted length, per-position acceptance, tokens/s and the speed-up; plots
# in demo_out/. About a minute on 2 CPU cores once built. (The kernel benchmark summary is
# `python bench/bench_verify.py --summary`.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
source scripts/setup_env.sh
exec "$PY" -m dspark_ext.bundled.demo "$@"
