#!/usr/bin/env bash
# Main job: builds dspark_ext and runs the kernel benchmark summary on the bundled default
# shapes (each op against the eager PyTorch baseline, achieved vs copy bandwidth).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
source scripts/setup_env.sh
exec "$PY" bench/bench_verify.py --summary "$@"
