#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a lent GPU machine (H200; no network).
#
#   bash bench/gpu_check.sh            # from the repository root, or from anywhere
#   OUT=/some/dir bash bench/gpu_check.sh
#
# Steps (each under its own timeout; a failed step is recorded and the next one still runs,
# so the summary table is always written):
#   1. build the extension in place for sm_90          5. racecheck on the same script
#   2. _C.cuda_enabled()                                 6. ncu: bandwidth / occupancy of the kernel
#   3. pytest -m cuda tests/                             7. kernel timings (CUDA events)
#   4. compute-sanitizer memcheck on every op once       8. bench/bench_verify.py --quick
#   9. bench/bench_markov.py --quick (CUDA)             10. bench/bench_schedule.py (CUDA)
#  11. the vLLM plugin on CUDA (only where a CUDA build of vLLM is installed)
# Optional steps (5, 6) are skipped once the time budget is spent, to stay well inside 8 min.
# Result: ${OUT:-bench/out}/gpu_check.md (also printed), logs next to it.
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
OUT_DIR=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); echo "== [$1] $2 ($3)"; }
elapsed() { echo $((SECONDS - START)); }
over_budget() { [ "$(elapsed)" -ge "$BUDGET_S" ]; }

# run NAME TIMEOUT CMD... : runs CMD with a timeout, log in $OUT_DIR/NAME.log; sets RC, DUR.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== [$name] $* (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  RC=$?
  DUR=$((SECONDS - t0))
  tail -n 25 "$OUT_DIR/$name.log"
  if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    echo "== [$name] TIMED OUT after ${limit}s"
  fi
}

status_of() {  # status_of RC -> ok / FAILED (rc) / TIMEOUT
  if [ "$1" -eq 0 ]; then echo "ok"
  elif [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then echo "TIMEOUT"
  else echo "FAILED (rc $1)"; fi
}

# ---------------------------------------------------------------------------------------
echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" 2>&1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

# 1. build ---------------------------------------------------------------------------------
run build 360 env CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" "$PY" setup.py build_ext --inplace \
  --build-temp "$ROOT/build/gpu_check"
BUILD_RC=$RC
WARN=$(grep -cE "warning[: #]" "$OUT_DIR/build.log" 2>/dev/null)
row "build (sm_90)" "$(status_of $BUILD_RC)" "${DUR}s, ${WARN:-0} warning lines"

# 2. cuda_enabled ----------------------------------------------------------------------------
ENABLED=$("$PY" -c "from dspark_ext import _C; print(_C.cuda_enabled())" 2>&1 | tail -1)
echo "== _C.cuda_enabled(): $ENABLED"
row "_C.cuda_enabled()" "$ENABLED" "arch $("$PY" -c 'from dspark_ext import _C; print(_C.cuda_arch_list())' 2>/dev/null)"

# 3. tests ---------------------------------------------------------------------------------
run pytest_cuda 300 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/ --ignore=tests/vllm_stage
SUMMARY=$(grep -E "([0-9]+ (passed|failed|error|errors|skipped))" "$OUT_DIR/pytest_cuda.log" | tail -1)
row "pytest -m cuda tests/" "$(status_of $RC)" "${SUMMARY:-no summary}, ${DUR}s"

# Scripts for the sanitizer / profiler steps (written to OUT_DIR, not the repository).
cat >"$OUT_DIR/ops_once.py" <<'EOF'
"""Every CUDA verification op once on small shapes: V = 1, 7, 1029; aligned and misaligned
row views; one-hot drafts; invalid values (bad ragged offsets, out-of-range ids, negative
temperature, num_draft > K) that the kernel must turn into empty rows without stray reads."""
import sys
import torch
import dspark_ext  # noqa: F401

ops = torch.ops.dspark
dev = "cuda"
quick = "--quick" in sys.argv
g = torch.Generator(device=dev).manual_seed(0)


def logits(shape, dtype, misaligned):
    *lead, v = shape
    full = torch.randn(*lead, v + int(misaligned), device=dev, generator=g) * 3
    full = full.to(dtype)
    return full[..., 1:] if misaligned else full


B, K = 3, 4
dtypes = (torch.float32, torch.bfloat16) if quick else (torch.float32, torch.bfloat16,
                                                         torch.float16)
for dtype in dtypes:
    for V in ((7, 1029) if quick else (1, 7, 1029)):
        for mis in (False, True):
            t = logits((B, K + 1, V), dtype, mis)
            d = logits((B, K, V), dtype, mis)
            tok = torch.randint(0, V, (B, K), device=dev, generator=g)
            nd = torch.tensor([K, 2, 0], device=dev)
            temp = torch.tensor([0.0, 1.0, 0.7], device=dev)
            seed = torch.tensor([1, 2, 3], device=dev)
            off = torch.tensor([5, 6, 7], device=dev)
            ops.verify_greedy(t, tok, nd)
            ops.rejection_sample(t, tok, d, temp, seed, off, nd, False)
            ops.rejection_sample(t, tok, None, temp, seed, off, None, True)
            T = K + 2
            rows = logits((T + B, V), dtype, mis)
            drows = logits((T, V), dtype, mis)
            toks = torch.randint(0, V, (T,), device=dev, generator=g)
            cu = torch.tensor([0, K, K + 2, K + 2], device=dev)
            ops.verify_greedy_ragged(rows, toks, cu, K)
            ops.rejection_sample_ragged(rows, toks, drows, cu, K, temp, seed, off, True)
            ops.rejection_sample_ragged(rows, toks, None, cu, K, temp, seed, off, False)
# Invalid values: rows must come back empty.
V = 7
rows = logits((6 + 3, V), torch.float32, True)
toks = torch.randint(0, V, (6,), device=dev, generator=g)
bad_cu = torch.tensor([0, 5, 1, 9], device=dev)
out = ops.rejection_sample_ragged(rows, toks, None, bad_cu, 4, torch.ones(3, device=dev),
                                  torch.zeros(3, dtype=torch.long, device=dev),
                                  torch.zeros(3, dtype=torch.long, device=dev), True)
t = logits((3, 3, V), torch.float32, True)
tok = torch.tensor([[0, 99], [-3, 1], [1, 2]], device=dev)
out2 = ops.rejection_sample(t, tok, None, torch.tensor([1.0, 1.0, -1.0], device=dev),
                            torch.zeros(3, dtype=torch.long, device=dev),
                            torch.zeros(3, dtype=torch.long, device=dev),
                            torch.tensor([2, 2, 1], device=dev), False)
out3 = ops.verify_greedy(t, tok.clamp(0, V - 1), torch.tensor([3, 1, 0], device=dev))
torch.cuda.synchronize()
assert out[2].tolist()[1:] == [0, 0], out[2].tolist()
assert out2[2].tolist() == [0, 0, 0], out2[2].tolist()
assert out3[2].tolist()[0] == 0, out3[2].tolist()
# B = 0: no launch.
ops.verify_greedy(torch.randn(0, 2, 5, device=dev), torch.zeros(0, 1, dtype=torch.long,
                                                                 device=dev), None)
torch.cuda.synchronize()
print("ops_once: all ops ran")
EOF

cat >"$OUT_DIR/kernel_timing.py" <<'EOF'
"""CUDA-event timings of the verification kernels at serving sizes, with the bytes each
must read (every verified target/draft row once, approximated from the accepted counts)
as an effective bandwidth.
--ncu: one launch of each op only (for the profiler)."""
import statistics
import sys
import torch
import dspark_ext  # noqa: F401

ops = torch.ops.dspark
dev = "cuda"
ncu = "--ncu" in sys.argv
g = torch.Generator(device=dev).manual_seed(0)


def case(B, K, V, dtype):
    t = (torch.randn(B, K + 1, V, device=dev, generator=g) * 3).to(dtype)
    d = (t[:, :K].float() + torch.randn(B, K, V, device=dev, generator=g)).to(dtype)
    tok = t[:, :K].float().argmax(-1)
    temp = torch.ones(B, device=dev)
    seed = torch.arange(B, device=dev)
    off = torch.zeros(B, dtype=torch.long, device=dev)
    return t, tok, d, temp, seed, off


def timeit(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)


if ncu:
    t, tok, d, temp, seed, off = case(264, 7, 151936, torch.bfloat16)
    ops.verify_greedy(t, tok, None)
    ops.rejection_sample(t, tok, d, temp, seed, off, None, False)
    ops.rejection_sample(t, tok, d, temp, seed, off, None, True)
    torch.cuda.synchronize()
    sys.exit(0)

print(f"{'op':<22}{'B':>6}{'K':>4}{'V':>8} {'dtype':<9}{'us':>10}{'~GB read':>9}{'GB/s':>8}")
for B, K, V, dtype in ((1, 7, 151936, torch.bfloat16), (64, 7, 151936, torch.bfloat16),
                       (512, 7, 151936, torch.bfloat16), (256, 16, 32000, torch.float32)):
    t, tok, d, temp, seed, off = case(B, K, V, dtype)
    es = t.element_size()
    for name, fn, rows in (
        ("verify_greedy", lambda: ops.verify_greedy(t, tok, None), K + 1),
        ("rejection token", lambda: ops.rejection_sample(t, tok, d, temp, seed, off, None,
                                                         False), None),
        ("rejection block", lambda: ops.rejection_sample(t, tok, d, temp, seed, off, None,
                                                         True), None),
    ):
        us = timeit(fn)
        if rows is None:  # rows actually verified: accepted prefix + the decisive position
            acc = fn()[0].float()
            rows = (2 * torch.clamp(acc + 1, max=K) + 1).mean().item()
        gb = B * rows * V * es / 1e9
        print(f"{name:<22}{B:>6}{K:>4}{V:>8} {str(dtype)[6:]:<9}{us:>10.1f}{gb:>9.3f}"
              f"{gb / (us * 1e-6):>8.0f}")
EOF

# 4. memcheck --------------------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
sanitizer_row() {  # sanitizer_row LABEL LOG
  local errs
  errs=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$2" | tail -1)
  if grep -q "ops_once: all ops ran" "$2"; then
    row "$1" "$(status_of $RC)" "${errs:-no summary}, ${DUR}s"
  else
    row "$1" "$(status_of $RC) / script did not finish" "${errs:-no summary}, ${DUR}s"
  fi
}
if [ -n "$SAN" ]; then
  # No caching allocator: each tensor is its own allocation, so a read past a row's end
  # is outside an allocation and memcheck sees it.
  run memcheck 180 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool memcheck \
    --print-limit 20 --error-exitcode 3 "$PY" "$OUT_DIR/ops_once.py"
  sanitizer_row "compute-sanitizer memcheck" "$OUT_DIR/memcheck.log"
else
  row "compute-sanitizer memcheck" "skipped" "compute-sanitizer not found"
fi

# 5. racecheck (shared-memory hazards of the block reductions) --------------------------------
if [ -n "$SAN" ] && ! over_budget; then
  run racecheck 150 "$SAN" --tool racecheck --print-limit 20 --error-exitcode 3 \
    "$PY" "$OUT_DIR/ops_once.py" --quick
  sanitizer_row "compute-sanitizer racecheck" "$OUT_DIR/racecheck.log"
else
  row "compute-sanitizer racecheck" "skipped" "no sanitizer or over budget at $(elapsed)s"
fi

# 6. ncu -------------------------------------------------------------------------------------
NCU=$(command -v ncu || true)
if [ -n "$NCU" ] && ! over_budget; then
  run ncu 150 "$NCU" --clock-control none -k regex:verify_rows_kernel -c 3 \
    --section SpeedOfLight --section Occupancy --section LaunchStats \
    "$PY" "$OUT_DIR/kernel_timing.py" --ncu
  NCU_LINES=$(grep -E "verify_rows_kernel|^ +(Duration|DRAM Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy)" \
    "$OUT_DIR/ncu.log" | sed -E 's/ +/ /g' | head -24)
  row "ncu (B=264 K=7 V=151936 bf16: greedy, token, block)" "$(status_of $RC)" \
    "$(echo "$NCU_LINES" | grep -E 'Duration|DRAM Throughput|Registers' | sed -E 's/^ //' | tr '\n' ';' | cut -c1-400)"
else
  row "ncu" "skipped" "ncu not found or over budget at $(elapsed)s"
fi

# 7. kernel timings ---------------------------------------------------------------------------
run kernel_timing 120 "$PY" "$OUT_DIR/kernel_timing.py"
row "kernel timings (CUDA events)" "$(status_of $RC)" "${DUR}s, table below"

# 8. bench_verify.py -------------------------------------------------------------------------
if [ -f bench/bench_verify.py ]; then
  run bench_verify 240 "$PY" bench/bench_verify.py --device cuda --quick --out "$OUT_DIR"
  row "bench/bench_verify.py --quick" "$(status_of $RC)" "${DUR}s, tail below"
else
  row "bench/bench_verify.py" "skipped" "file not present"
fi

# 9-10. Markov-head drafting and scheduler benchmarks (skipped once the budget is spent) ----
if [ -f bench/bench_markov.py ] && ! over_budget; then
  run bench_markov 120 "$PY" bench/bench_markov.py --device cuda --quick --dtype fp32,bf16 \
    --out "$OUT_DIR/markov"
  row "bench/bench_markov.py --quick" "$(status_of $RC)" "${DUR}s, $OUT_DIR/markov"
else
  row "bench/bench_markov.py" "skipped" "file not present or over budget at $(elapsed)s"
fi
if [ -f bench/bench_schedule.py ] && ! over_budget; then
  run bench_schedule 60 "$PY" bench/bench_schedule.py --device cuda --out "$OUT_DIR/schedule"
  row "bench/bench_schedule.py" "$(status_of $RC)" "${DUR}s, $OUT_DIR/schedule"
else
  row "bench/bench_schedule.py" "skipped" "file not present or over budget at $(elapsed)s"
fi

# 11. vLLM plugin, where a CUDA build of vLLM is installed (tests/vllm_stage/test_engine_cuda.py:
# V1 runner with the plugin, MRV2 without; bench/bench_vllm.py sampler part on CUDA) --------
if "$PY" -c "import vllm, torch, sys; sys.exit(not torch.cuda.is_available())" >/dev/null 2>&1 \
   && [ "$BUILD_RC" -eq 0 ] && ! over_budget; then
  run vllm_plugin 420 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/vllm_stage -s
  SUMMARY=$(grep -E "([0-9]+ (passed|failed|error|errors|skipped))" "$OUT_DIR/vllm_plugin.log" | tail -1)
  row "vLLM plugin: pytest -m cuda tests/vllm_stage" "$(status_of $RC)" "${SUMMARY:-no summary}, ${DUR}s"
  run bench_vllm 180 "$PY" bench/bench_vllm.py --device cuda --quick --no-engine \
    --out "$OUT_DIR/vllm"
  row "bench/bench_vllm.py --device cuda --quick" "$(status_of $RC)" "${DUR}s, $OUT_DIR/vllm"
else
  row "vLLM plugin" "skipped" "no CUDA build of vLLM here, or build failed / over budget"
fi

# ---------------------------------------------------------------------------------------
MD="$OUT_DIR/gpu_check.md"
{
  echo "# gpu_check ($(date -u '+%Y-%m-%d %H:%M UTC'), ${GPU:-unknown GPU}, $(elapsed)s)"
  echo
  echo "| step | result | details |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  if grep -qE "^(FAILED|ERROR)" "$OUT_DIR/pytest_cuda.log" 2>/dev/null; then
    echo
    echo "## pytest failures"
    echo '```'
    grep -E "^(FAILED|ERROR)" "$OUT_DIR/pytest_cuda.log" | head -30
    echo '```'
  fi
  for f in memcheck racecheck; do
    if [ -s "$OUT_DIR/$f.log" ] && grep -qE "Invalid|Race|Hazard|=========  *(Error|Program hit)" "$OUT_DIR/$f.log"; then
      echo
      echo "## $f findings (first lines)"
      echo '```'
      grep -E "^=========" "$OUT_DIR/$f.log" | head -30
      echo '```'
    fi
  done
  if [ -n "${NCU_LINES:-}" ]; then
    echo
    echo "## ncu"
    echo '```'
    echo "$NCU_LINES"
    echo '```'
  fi
  if [ -s "$OUT_DIR/kernel_timing.log" ]; then
    echo
    echo "## kernel timings"
    echo '```'
    tail -n 20 "$OUT_DIR/kernel_timing.log"
    echo '```'
  fi
  if [ -s "$OUT_DIR/bench_verify.log" ]; then
    echo
    echo "## bench_verify.py (tail)"
    echo '```'
    tail -n 25 "$OUT_DIR/bench_verify.log"
    echo '```'
  fi
} >"$MD"
echo
cat "$MD"
[ "$BUILD_RC" -eq 0 ]
