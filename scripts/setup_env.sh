#!/usr/bin/env bash
# Installs what dspark_ext needs into the current Python environment and builds the extension
# in place. Sourced by scripts/test.sh and scripts/demo.sh; safe to run again (no-op when
# everything is present, so it also works offline where torch is already installed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

need=()
"$PY" -c "import torch" 2>/dev/null || need+=("torch==2.14.1")
for mod in numpy pybind11 ninja pytest; do
  "$PY" -c "import $mod" 2>/dev/null || need+=("$mod")
done
command -v cmake >/dev/null 2>&1 || need+=("cmake")
# Optional extras the decoder tests and benchmarks use (transformers targets, DSpark
# checkpoints, plots). An installed transformers >= 5.17 is kept, so nothing is fetched where
# one is present (5.17, the oldest the suite passed with, is what the GPU image has, with no
# network); a missing or older one is installed as a recent release (CI gets 5.24).
"$PY" -c "import re, sys, transformers; m = re.match(r'(\d+)\.(\d+)', transformers.__version__); \
sys.exit(not m or (int(m[1]), int(m[2])) < (5, 17))" 2>/dev/null || need+=("transformers>=5.23")
for mod in safetensors matplotlib; do
  "$PY" -c "import $mod" 2>/dev/null || need+=("$mod")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup_env: installing ${need[*]}"
  "$PY" -m pip install -q "${need[@]}"
fi

# Torch would guess CUDA_HOME from a stray nvcc on PATH; the toolkit lives here.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export MAX_JOBS=${MAX_JOBS:-2}

echo "setup_env: building dspark_ext in place"
log=build/setup_env_build.log
mkdir -p build
if ! "$PY" setup.py build_ext --inplace --build-temp build/inplace-temp >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "setup_env: build failed (full log: $log)" >&2
  exit 1
fi
grep -E "^dspark_ext: building" "$log" || true
"$PY" -c "import dspark_ext, json; print('setup_env: built', json.dumps(dspark_ext.build_info()))"
