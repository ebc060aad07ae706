#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a lent GPU machine (H200; no network), fitted to the
# device tool's limits (one command of at most 10 minutes; at most 8 files back from $OUT).
# How to run it with the device tool, what to carry and what to do on a timeout:
# bench/README.md, "GPU check on a lent machine".
#
#   bash bench/gpu_check.sh                       # from the repository root, or from anywhere
#   OUT=/some/dir bash bench/gpu_check.sh
#   GPU_CHECK_DRY=1 bash bench/gpu_check.sh       # the control flow on CPU, no CUDA step run
#
# Steps, most valuable first; each runs under a timeout capped at the time left before the
# deadline, and one that no longer fits is marked "skipped (deadline)":
#    1 build      build the extension in place for sm_90 (or, GPU_CHECK_SKIP_BUILD=1, reuse
#                 dspark_ext/_C*.so, e.g. the stripped one a first run returned)
#    2 enabled    torch sees the GPU and _C.cuda_enabled() (every later step needs both)
#    3 pytest     the CUDA tests (-m cuda), with a per-test timeout; "0 passed" is a failure
#    4 memcheck   compute-sanitizer memcheck on every op once (bench/gpu_check_ops.py)
#    5 timing     kernel timings with CUDA events (bench/gpu_check_timing.py)
#    6 bench_verify   bench/bench_verify.py --device cuda --quick
#    7 racecheck  compute-sanitizer racecheck (gpu_check_ops.py --quick)
#    8 ncu        Nsight Compute: bandwidth / occupancy of the verification kernel
#    9 bench_markov, 10 bench_schedule   the Markov-drafting and scheduler benchmarks on CUDA
#   11 vllm       the vLLM CUDA engine tests and bench_vllm.py --device cuda --no-engine: only
#                 where a CUDA build of vLLM is installed (the lent image has none, so this
#                 row says skipped there)
#
# Output: $OUT (default bench/out) receives only gpu_check.md, rewritten after every step (a
# killed run still returns the table so far), and gpu_check.tar.gz (gpu_check/: every log,
# the benchmarks' JSON and plots, and so/ with the stripped dspark_ext/_C*.so when it was
# built or reused). Everything else goes to a scratch folder (GPU_CHECK_WORK, default a new
# folder under /tmp, removed at the end).
#
# Settings (environment):
#   GPU_CHECK_DEADLINE_S   whole-run deadline in seconds (default 360); the script ends
#                          within about GPU_CHECK_RESERVE_S (default 10) of it
#   GPU_CHECK_SKIP_BUILD=1 do not build: check and use the dspark_ext/_C*.so already there
#   GPU_CHECK_STEPS        comma list of steps to run (names above; build and enabled
#                          always run), e.g. pytest,memcheck for a rerun after a fix
#   GPU_CHECK_TESTS        the test files of step 3 (default: every tests/test_*.py that
#                          marks tests cuda, tests/test_cuda_verify.py first)
#   GPU_CHECK_PYTEST_ARGS  extra pytest arguments for step 3 (e.g. "-k ragged")
#   GPU_CHECK_TEST_TIMEOUT_S   per-test timeout of step 3 (default 60)
#   GPU_CHECK_FORCE=1      run the later steps even when row 2 failed (to see how they fail)
#   GPU_CHECK_DRY=1        dry run: no CUDA step runs; each step's command is logged and
#                          replaced by `sleep GPU_CHECK_DRY_STEP_S` (default 0) under the same
#                          capped timeout, and step minima are 1 s (tests/test_gpu_check_dry.py)
#   PYTHON, CUDA_HOME, TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default nproc)
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
START=$SECONDS
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-360}
RESERVE_S=${GPU_CHECK_RESERVE_S:-10}
END=$((START + DEADLINE_S))
DRY=${GPU_CHECK_DRY:-0}
DRY_STEP_S=${GPU_CHECK_DRY_STEP_S:-0}
SKIP_BUILD=${GPU_CHECK_SKIP_BUILD:-0}
SELECT=${GPU_CHECK_STEPS:-}
FORCE=${GPU_CHECK_FORCE:-0}
TEST_TIMEOUT_S=${GPU_CHECK_TEST_TIMEOUT_S:-60}
OUT_DIR=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT_DIR" || exit 1
if [ -n "${GPU_CHECK_WORK:-}" ]; then
  WORK=$GPU_CHECK_WORK; OWN_WORK=0
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1; OWN_WORK=1
fi
D=$WORK/gpu_check            # the archive's root folder
LOGS=$D/logs
mkdir -p "$LOGS" "$D/results" || exit 1
MD=$OUT_DIR/gpu_check.md
TGZ=$OUT_DIR/gpu_check.tar.gz
TGZ_MAX=$((15 * 1024 * 1024))   # the device tool returns files of at most 16 MiB

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null 2>&1; then CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  fi
fi
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

STEPS=(build enabled pytest memcheck timing bench_verify racecheck ncu bench_markov
       bench_schedule vllm)
declare -A LABEL=(
  [build]="build: setup.py build_ext, sm_90" [enabled]="enabled: CUDA device, _C.cuda_enabled()"
  [pytest]="pytest: CUDA tests (-m cuda)" [memcheck]="memcheck: compute-sanitizer"
  [timing]="timing: kernel timings, CUDA events" [bench_verify]="bench_verify: bench_verify.py --quick"
  [racecheck]="racecheck: compute-sanitizer" [ncu]="ncu: B=264 K=7 V=151936 bf16"
  [bench_markov]="bench_markov: bench_markov.py --quick"
  [bench_schedule]="bench_schedule: bench_schedule.py"
  [vllm]="vllm: CUDA engine tests (tests/vllm_stage)")
declare -A RES DET SEC
for k in "${STEPS[@]}"; do RES[$k]="pending"; DET[$k]=""; SEC[$k]=""; done
CUDA_OK=0
GPU="unknown GPU"
MACHINE=""
SO_NOTE=""
FINISHED=0
[ "$DRY" = 1 ] && GPU="dry run, no GPU used"

elapsed() { echo $((SECONDS - START)); }
selected() {  # build and enabled always run; the others when GPU_CHECK_STEPS names them
  case $1 in build|enabled) return 0 ;; esac
  [ -z "$SELECT" ] || [[ ",$SELECT," == *",$1,"* ]]
}
set_row() {  # set_row KEY RESULT SECONDS DETAILS (one line in the table)
  local det=${4//$'\n'/; }
  RES[$1]=$2; SEC[$1]=$3; DET[$1]=${det:0:400}
  echo "== [$1] $2${3:+ (${3}s)}${det:+: ${det:0:400}}"
}
status_of() {  # status_of RC -> ok / FAILED (rc N) / TIMEOUT
  if [ "$1" -eq 0 ]; then echo "ok"
  elif [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then echo "TIMEOUT"
  else echo "FAILED (rc $1)"; fi
}
fence() {  # fence TITLE : stdin as a fenced block under a "## TITLE" heading
  echo; echo "## $1"; echo '```'; cat; echo '```'
}

# The report: gpu_check.md in $OUT and the archive, both replaced atomically (mv in $OUT),
# after every step, so a run killed at any point still returns what it has.
write_report() {
  local state
  if [ "$FINISHED" = 1 ]; then state="complete"; else state="partial (still running or killed)"; fi
  {
    echo "# gpu_check: $state"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), ${GPU}; $(elapsed)s of a ${DEADLINE_S}s deadline" \
      "(GPU_CHECK_DEADLINE_S)${SELECT:+; steps $SELECT}$([ "$SKIP_BUILD" = 1 ] && echo '; GPU_CHECK_SKIP_BUILD=1')."
    [ -n "$MACHINE" ] && { echo; echo "$MACHINE" | sed 's/^/    /'; }
    echo
    echo "| # | step | result | s | details |"
    echo "| --- | --- | --- | --- | --- |"
    local i=1 k
    for k in "${STEPS[@]}"; do
      echo "| $i | ${LABEL[$k]} | ${RES[$k]} | ${SEC[$k]} | ${DET[$k]//|/\\|} |"
      i=$((i + 1))
    done
    echo
    echo "Logs, JSON and plots: gpu_check.tar.gz (gpu_check/logs, gpu_check/results)." \
      "${SO_NOTE}"
    if [[ ${RES[build]} == FAILED* || ${RES[build]} == TIMEOUT* ]] && [ -s "$LOGS/build.log" ]; then
      { grep -E "error|Error" "$LOGS/build.log" | head -20; echo "..."; tail -n 25 "$LOGS/build.log"; } \
        | cut -c1-300 | fence "build errors and the log's last lines"
    fi
    if [ "$CUDA_OK" != 1 ] && [ -s "$LOGS/enabled.log" ] && [ "$DRY" != 1 ]; then
      tail -n 15 "$LOGS/enabled.log" | cut -c1-300 | fence "enabled (log)"
    fi
    if [ -s "$LOGS/pytest.log" ] && grep -qE "^(FAILED|ERROR) " "$LOGS/pytest.log"; then
      grep -E "^(FAILED|ERROR) " "$LOGS/pytest.log" | head -30 | cut -c1-300 | fence "pytest failures"
    fi
    if [ -s "$LOGS/pytest_hang.log" ]; then
      head -n 30 "$LOGS/pytest_hang.log" | fence "pytest: a test stuck in native code (stacks)"
    fi
    local f
    for f in memcheck racecheck; do
      if [ -s "$LOGS/$f.log" ] && grep -qE "^========= +(Invalid|Race|Error|Program hit|.*[Hh]azard)" "$LOGS/$f.log"; then
        grep -E "^=========" "$LOGS/$f.log" | head -30 | cut -c1-300 | fence "$f findings (first lines)"
      fi
    done
    [ -n "${NCU_LINES:-}" ] && echo "$NCU_LINES" | fence "ncu"
    if [ -s "$LOGS/timing.log" ] && [ "$DRY" != 1 ]; then
      tail -n 20 "$LOGS/timing.log" | fence "kernel timings"
    fi
    if [ -s "$LOGS/bench_verify.log" ] && [ "$DRY" != 1 ]; then
      tail -n 30 "$LOGS/bench_verify.log" | cut -c1-300 | fence "bench_verify.py (tail)"
    fi
  } >"$MD.tmp" && mv -f "$MD.tmp" "$MD"
  cp -f "$MD" "$D/gpu_check.md"
  tar -C "$WORK" -cf - gpu_check 2>/dev/null | gzip -1 >"$TGZ.tmp"
  if [ -d "$D/so" ] && [ "$(stat -c %s "$TGZ.tmp")" -gt "$TGZ_MAX" ]; then
    SO_NOTE="The stripped _C*.so was left out of the archive: it would pass 15 MiB."
    tar -C "$WORK" --exclude=gpu_check/so -cf - gpu_check 2>/dev/null | gzip -1 >"$TGZ.tmp"
  fi
  mv -f "$TGZ.tmp" "$TGZ"
}

on_signal() {
  local k
  for k in "${STEPS[@]}"; do
    [ "${RES[$k]}" = "running" ] && RES[$k]="KILLED (signal at $(elapsed)s)"
  done
  write_report
  exit 143
}
trap on_signal TERM INT

# run_step KEY MAX_S MIN_S CMD... : runs CMD under a timeout of min(MAX_S, time left before
# the deadline less the reserve), log in logs/KEY.log; sets RC, DUR and LIMIT and returns 0.
# Returns 1 when CMD did not run (not selected, no CUDA, deadline, dry run): the row is set.
run_step() {
  local key=$1 max=$2 min=$3
  shift 3
  [ "$DRY" = 1 ] && min=1
  if ! selected "$key"; then
    set_row "$key" "not selected" "" "GPU_CHECK_STEPS=$SELECT"; return 1
  fi
  if [ "$DRY" != 1 ] && [ "$key" != build ] && [ "$key" != enabled ] && [ "$CUDA_OK" != 1 ] \
     && [ "$FORCE" != 1 ]; then
    set_row "$key" "skipped" "" "needs a CUDA device and a working CUDA build (rows 1-2)"
    return 1
  fi
  local left=$((END - SECONDS - RESERVE_S))
  LIMIT=$max
  [ "$left" -lt "$LIMIT" ] && LIMIT=$left
  if [ "$LIMIT" -lt "$min" ]; then
    set_row "$key" "skipped (deadline)" "" "$((END - SECONDS))s left before the deadline; the step needs at least $((min + RESERVE_S))s"
    write_report
    return 1
  fi
  set_row "$key" "running" "" "started at $(elapsed)s, timeout ${LIMIT}s"
  write_report
  export STEP_LIMIT_S=$LIMIT
  local t0=$SECONDS
  if [ "$DRY" = 1 ]; then
    printf 'dry run (GPU_CHECK_DRY=1): started at %ss, timeout %ss, would run: %s\n' \
      "$(elapsed)" "$LIMIT" "$*" >"$LOGS/$key.log"
    timeout --kill-after=2 "$LIMIT" sleep "$DRY_STEP_S" >>"$LOGS/$key.log" 2>&1
  else
    echo "== [$key] $* (timeout ${LIMIT}s)"
    timeout --kill-after=5 "$LIMIT" "$@" >"$LOGS/$key.log" 2>&1
  fi
  RC=$?
  DUR=$((SECONDS - t0))
  if [ "$DRY" = 1 ]; then
    if [ "$RC" -eq 0 ]; then set_row "$key" "dry run" "$DUR" "not run (GPU_CHECK_DRY=1); timeout ${LIMIT}s; the command is in logs/$key.log"
    else set_row "$key" "$(status_of "$RC")" "$DUR" "dry run: the stand-in hit the ${LIMIT}s timeout"; fi
    write_report
    return 1
  fi
  tail -n 15 "$LOGS/$key.log"
  [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ] && echo "== [$key] TIMED OUT after ${LIMIT}s"
  return 0
}

# The first executable of a list of candidates (PATH first, then the usual install paths).
find_tool() {
  local name=$1 c
  shift
  c=$(command -v "$name" 2>/dev/null) && { echo "$c"; return 0; }
  for c in "$CUDA_HOME/bin/$name" "$@"; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}
latest() { ls -d "$@" 2>/dev/null | sort -V | tail -n 1; }

SO_SUFFIX=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)
SO_PATH="dspark_ext/_C${SO_SUFFIX:-.so}"

save_so() {  # the stripped extension into the archive, so a rerun can carry it (skip build)
  [ "$DRY" = 1 ] && return
  [ -f "$SO_PATH" ] || return
  mkdir -p "$D/so"
  cp -f "$SO_PATH" "$D/so/" && strip --strip-debug "$D/so/$(basename "$SO_PATH")" 2>/dev/null
  SO_NOTE="Stripped extension for a rerun: gpu_check/so/$(basename "$SO_PATH") ($(du -m "$D/so/$(basename "$SO_PATH")" | cut -f1) MB; bench/README.md says how to carry it)."
}

# ---------------------------------------------------------------------------------------
echo "== gpu_check: deadline ${DEADLINE_S}s, out $OUT_DIR, scratch $WORK${SELECT:+, steps $SELECT}"
{
  echo "repository $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)')"
  if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
  else
    echo "no nvidia-smi"
  fi
  echo "nproc $(nproc), CUDA_HOME $CUDA_HOME, nvcc $("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
  timeout 60 "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" 2>&1 | tail -n 1
  timeout 30 "$PY" -c "import transformers; print('transformers', transformers.__version__)" 2>&1 | tail -n 1
} >"$LOGS/machine.log" 2>&1
MACHINE=$(cut -c1-200 "$LOGS/machine.log")
cat "$LOGS/machine.log"
if [ "$DRY" != 1 ] && command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  GPU=${GPU:-"no GPU seen by nvidia-smi"}
fi
write_report

# 1. build (or reuse) ---------------------------------------------------------------------
if [ "$SKIP_BUILD" = 1 ]; then
  if run_step build 60 5 "$PY" -c "import json, dspark_ext, torch
i = dspark_ext.build_info()
print(json.dumps(i))
assert i['cuda_enabled'], 'this dspark_ext/_C*.so was built without the CUDA kernels'
cpu = set(open('/proc/cpuinfo').read().split())
isa = [f[2:].replace('-', '_') for f in i['cpu_flags'].split() if f.startswith('-m') and '=' not in f]
assert all(f in cpu for f in isa), ('built for CPU instructions this CPU lacks: '
    + ' '.join(f for f in isa if f not in cpu) + '; rebuild with portable DSPARK_CPU_ARCH_FLAGS')
if i['torch'] != torch.__version__:
    print('warning: built for torch', i['torch'], 'but torch here is', torch.__version__)"; then
    if [ ! -f "$SO_PATH" ]; then
      set_row build "FAILED" "$DUR" "GPU_CHECK_SKIP_BUILD=1 but no $SO_PATH here: carry it (bench/README.md)"
    elif [ "$RC" -ne 0 ]; then
      set_row build "FAILED (rc $RC)" "$DUR" "reusing $SO_PATH: $(grep -vE '^\s*$' "$LOGS/build.log" | tail -n 1 | cut -c1-200)"
    else
      set_row build "ok (reused)" "$DUR" "$SO_PATH, $(du -m "$SO_PATH" | cut -f1) MB, $(grep -o '"cuda_arch_list": "[^"]*"\|"torch": "[^"]*"' "$LOGS/build.log" | tr '\n' ' ')$(grep -o 'warning: .*' "$LOGS/build.log")"
      save_so
    fi
  fi
elif run_step build 300 30 env CUDA_HOME="$CUDA_HOME" "$PY" setup.py build_ext --inplace \
       --build-temp "$ROOT/build/gpu_check"; then
  WARN=$(grep -cE "warning[: #]" "$LOGS/build.log")
  set_row build "$(status_of "$RC")" "$DUR" "${WARN:-0} warning lines; $(grep -m1 -E '^dspark_ext: building' "$LOGS/build.log" | cut -c1-160)"
  [ "$RC" -eq 0 ] && save_so
fi
write_report

# 2. the device and cuda_enabled ----------------------------------------------------------
if run_step enabled 60 5 "$PY" -c "import json, torch, dspark_ext
from dspark_ext import _C
print('build_info', json.dumps(dspark_ext.build_info()))
print('cuda_available', torch.cuda.is_available())
print('cuda_enabled', _C.cuda_enabled())
print('arch_list', _C.cuda_arch_list())
print('device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"; then
  AVAIL=$(grep -m1 '^cuda_available' "$LOGS/enabled.log" | cut -d' ' -f2)
  ENABLED=$(grep -m1 '^cuda_enabled' "$LOGS/enabled.log" | cut -d' ' -f2)
  ARCH=$(grep -m1 '^arch_list' "$LOGS/enabled.log" | cut -d' ' -f2-)
  if [ "$RC" -eq 0 ] && [ "$AVAIL" = True ] && [ "$ENABLED" = True ]; then
    CUDA_OK=1
    set_row enabled "True" "$DUR" "arch list $ARCH; $(grep -m1 '^device' "$LOGS/enabled.log" | cut -c1-80)"
  else
    set_row enabled "$([ "$RC" -ne 0 ] && status_of "$RC" || echo FAILED)" "$DUR" "cuda_available ${AVAIL:-?}, cuda_enabled ${ENABLED:-?}; $(grep -vE '^\s*$' "$LOGS/enabled.log" | tail -n 1 | cut -c1-200)"
  fi
fi
write_report

# 3. the CUDA tests -------------------------------------------------------------------------
if [ -n "${GPU_CHECK_TESTS:-}" ]; then
  read -r -a TEST_FILES <<<"$GPU_CHECK_TESTS"
else
  TEST_FILES=()
  [ -f tests/test_cuda_verify.py ] && TEST_FILES+=(tests/test_cuda_verify.py)
  for f in $(grep -lE "pytest\.mark\.cuda" tests/test_*.py 2>/dev/null); do
    [ "$f" = tests/test_cuda_verify.py ] || TEST_FILES+=("$f")
  done
fi
read -r -a PYTEST_EXTRA <<<"${GPU_CHECK_PYTEST_ARGS:-}"
# tests/conftest.py: DSPARK_TEST_TIMEOUT_S fails a test that runs longer (and ends the run,
# stacks in pytest_hang.log, if it is stuck in native code); tests not started by
# DSPARK_TEST_DEADLINE (20 s before this step's timeout) are skipped, so the summary prints.
if run_step pytest 180 30 env DSPARK_TEST_TIMEOUT_S="$TEST_TIMEOUT_S" \
     DSPARK_TEST_TIMEOUT_LOG="$LOGS/pytest_hang.log" \
     bash -c 'export DSPARK_TEST_DEADLINE=$(( $(date +%s) + STEP_LIMIT_S - 20 )); exec "$@"' _ \
     "$PY" -m pytest -v -rfEs --durations=15 -p no:cacheprovider -m cuda \
     "${TEST_FILES[@]}" ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}; then
  SUMMARY=$(grep -E "^=+ .*[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s" "$LOGS/pytest.log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  N_PASS=$(grep -oE "[0-9]+ passed" <<<"$SUMMARY" | grep -oE "[0-9]+")
  [ -z "$SUMMARY" ] && N_PASS=$(grep -cE "::.* PASSED" "$LOGS/pytest.log")
  N_LATE=$(grep -c "DSPARK_TEST_DEADLINE" "$LOGS/pytest.log")
  DETAIL="${SUMMARY:-no summary (${N_PASS:-0} PASSED lines)}; ${#TEST_FILES[@]} files, per-test timeout ${TEST_TIMEOUT_S}s"
  [ "${N_LATE:-0}" -gt 0 ] && DETAIL="$DETAIL; tests skipped at the step's deadline"
  if [ -s "$LOGS/pytest_hang.log" ]; then
    set_row pytest "TIMEOUT (a test hung)" "$DUR" "$DETAIL; last started: $(grep -E '::' "$LOGS/pytest.log" | tail -n 1 | cut -d' ' -f1)"
  elif [ "$RC" -eq 0 ] && [ "${N_PASS:-0}" -eq 0 ]; then
    set_row pytest "FAILED (0 passed)" "$DUR" "$DETAIL"
  else
    set_row pytest "$(status_of "$RC")" "$DUR" "$DETAIL"
  fi
fi
write_report

# 4. memcheck -------------------------------------------------------------------------------
SAN=$(find_tool compute-sanitizer "$CUDA_HOME/compute-sanitizer/compute-sanitizer" \
  /usr/local/cuda/bin/compute-sanitizer "$(latest /usr/local/cuda-*/bin/compute-sanitizer)" \
  "$(latest /opt/nvidia/compute-sanitizer*/compute-sanitizer)")
sanitizer_row() {  # sanitizer_row KEY
  local errs
  errs=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOGS/$1.log" | tail -1)
  if grep -q "ops_once: all ops ran" "$LOGS/$1.log"; then
    set_row "$1" "$(status_of "$RC")" "$DUR" "${errs:-no summary}; $SAN"
  else
    set_row "$1" "$(status_of "$RC") / script did not finish" "$DUR" "${errs:-no summary}; $(grep -vE '^\s*$' "$LOGS/$1.log" | tail -n 1 | cut -c1-160)"
  fi
}
if [ -z "$SAN" ] && [ "$DRY" != 1 ] && [ "$CUDA_OK" = 1 ] && selected memcheck; then
  set_row memcheck "skipped" "" "compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /opt/nvidia)"
# No caching allocator: each tensor is its own allocation, so a read past a row's end is
# outside an allocation and memcheck sees it.
elif run_step memcheck 120 20 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${SAN:-compute-sanitizer}" \
       --tool memcheck --print-limit 20 --error-exitcode 3 "$PY" bench/gpu_check_ops.py; then
  sanitizer_row memcheck
fi
write_report

# 5. kernel timings -------------------------------------------------------------------------
if run_step timing 90 15 "$PY" bench/gpu_check_timing.py; then
  if [ "$RC" -eq 0 ]; then set_row timing ok "$DUR" "table below"
  else set_row timing "$(status_of "$RC")" "$DUR" "$(grep -vE '^\s*$' "$LOGS/timing.log" | tail -n 1 | cut -c1-200)"; fi
fi
write_report

# 6. bench_verify.py ------------------------------------------------------------------------
if run_step bench_verify 150 30 "$PY" bench/bench_verify.py --device cuda --quick \
     --out "$D/results/bench_verify"; then
  TARGETS=$(grep -iE "target|NOT MEASURED" "$LOGS/bench_verify.log" | tail -n 4 | tr '\n' ';' | cut -c1-300)
  set_row bench_verify "$(status_of "$RC")" "$DUR" "tail below; ${TARGETS}"
fi
write_report

# 7. racecheck (shared-memory hazards of the block reductions) -----------------------------
if [ -z "$SAN" ] && [ "$DRY" != 1 ] && [ "$CUDA_OK" = 1 ] && selected racecheck; then
  set_row racecheck "skipped" "" "compute-sanitizer not found"
elif run_step racecheck 90 20 "${SAN:-compute-sanitizer}" --tool racecheck --print-limit 20 \
       --error-exitcode 3 "$PY" bench/gpu_check_ops.py --quick; then
  sanitizer_row racecheck
fi
write_report

# 8. ncu ------------------------------------------------------------------------------------
NCU=$(find_tool ncu "$(latest "$CUDA_HOME"/nsight-compute*/ncu)" \
  "$(latest /opt/nvidia/nsight-compute/*/ncu)" "$(latest /usr/local/NVIDIA-Nsight-Compute*/ncu)")
if [ -z "$NCU" ] && [ "$DRY" != 1 ] && [ "$CUDA_OK" = 1 ] && selected ncu; then
  set_row ncu "skipped" "" "ncu not found (PATH, \$CUDA_HOME, /opt/nvidia/nsight-compute)"
elif run_step ncu 90 20 "${NCU:-ncu}" --clock-control none -k regex:verify_rows_kernel -c 3 \
       --section SpeedOfLight --section Occupancy --section LaunchStats \
       "$PY" bench/gpu_check_timing.py --ncu; then
  NCU_LINES=$(grep -E "verify_rows_kernel|^ +(Duration|DRAM Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy)" \
    "$LOGS/ncu.log" | sed -E 's/ +/ /g' | head -24)
  set_row ncu "$(status_of "$RC")" "$DUR" "greedy, token, block: $(echo "$NCU_LINES" | grep -E 'Duration|DRAM Throughput' | sed -E 's/^ //' | tr '\n' ';' | cut -c1-300)"
fi
write_report

# 9-10. Markov-head drafting and scheduler benchmarks -------------------------------------
if run_step bench_markov 90 20 "$PY" bench/bench_markov.py --device cuda --quick \
     --dtype fp32,bf16 --out "$D/results/markov"; then
  set_row bench_markov "$(status_of "$RC")" "$DUR" "results/markov; $(grep -vE '^\s*$' "$LOGS/bench_markov.log" | tail -n 1 | cut -c1-160)"
fi
write_report
if run_step bench_schedule 60 15 "$PY" bench/bench_schedule.py --device cuda \
     --out "$D/results/schedule"; then
  set_row bench_schedule "$(status_of "$RC")" "$DUR" "results/schedule; $(grep -vE '^\s*$' "$LOGS/bench_schedule.log" | tail -n 1 | cut -c1-160)"
fi
write_report

# 11. vLLM plugin on CUDA: needs a CUDA build of vLLM (tests/vllm_stage/test_engine_cuda.py:
# V1 runner with the plugin, MRV2 without). The lent image has no vLLM and no network, and a
# CUDA vLLM wheel is too large to carry, so there this row says skipped. ----------------------
if [ "$DRY" != 1 ] && selected vllm && ! timeout 60 "$PY" -c "import vllm" >/dev/null 2>&1; then
  set_row vllm "skipped" "" "needs a CUDA build of vLLM; none is installed here (the lent image has none)"
elif run_step vllm 300 60 bash -c '"$1" -m pytest -v -rfE -p no:cacheprovider -m cuda tests/vllm_stage -s &&
       "$1" bench/bench_vllm.py --device cuda --quick --no-engine --out "$2"' _ "$PY" "$D/results/vllm"; then
  SUMMARY=$(grep -E "^=+ .*[0-9]+ (passed|failed|errors?|skipped).* in [0-9.]+s" "$LOGS/vllm.log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  if [ "$RC" -eq 0 ] && ! grep -qE "[1-9][0-9]* passed" <<<"$SUMMARY"; then
    set_row vllm "FAILED (0 passed)" "$DUR" "${SUMMARY:-no summary}"
  else
    set_row vllm "$(status_of "$RC")" "$DUR" "${SUMMARY:-no summary}; then bench_vllm.py --device cuda --quick --no-engine (results/vllm)"
  fi
fi

# ---------------------------------------------------------------------------------------
FINISHED=1
write_report
echo
cat "$MD"
echo "== gpu_check: $(elapsed)s; $OUT_DIR: $(ls "$OUT_DIR" | grep -cE '^gpu_check\.(md|tar\.gz)$') files (gpu_check.md, gpu_check.tar.gz)"
[ "$OWN_WORK" = 1 ] && rm -rf "$WORK"
FAILED=0
for k in "${STEPS[@]}"; do
  case ${RES[$k]} in FAILED*|TIMEOUT*|KILLED*) FAILED=1 ;; esac
done
exit "$FAILED"
