#!/usr/bin/env bash
# Continues the bundled run (issue 18) from the installed artefacts, without retraining the
# tokenizer or the LMs: seed a work folder from dspark_ext/bundled/models, cut the drafter
# windows and held-out prompts (the same 88 as before; `cmp` checks it), regenerate MORE of the
# target's own continuations (PER_FILE prompts per training file, greedy and T = 1), then
# train DSpark and DFlash from the bundled weights (--init) on the same data, the same steps
# and the same lower-peak warm-up + cosine, side by side on ONE core (CORE), each resumable
# from its last checkpoint. Then the STS fit, the per-temperature calibration (build calibrate)
# and install.
#   CORE=1 STEPS=700 bash scripts/continue_bundled.sh   (PRECISION=bf16|fp32 overrides the choice)
#   DSPARK_DEFAULT_WORK=build/default2 SEED_FROM=build/default STEPS=800 LR=2e-4 PER_FILE=12 \
#       bash scripts/continue_bundled.sh               (a second stage from the first's weights)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
W=${DSPARK_DEFAULT_WORK:-build/default}
CORE=${CORE:-1}
STEPS=${STEPS:-700}
LR=${LR:-3e-4}
PER_FILE=${PER_FILE:-5}
NEW_TOKENS=${NEW_TOKENS:-256}
# bf16 autocast only where the CPU has bfloat16 units: emulated, it trained ~8x slower than
# fp32 on an AVX2-only EPYC (6 steps: 223 s against 28 s).
PRECISION=${PRECISION:-$(PYTHONPATH=$PWD "$PY" -c "import torch
from dspark_ext.bundled import fast_drafter_dtype
print('bf16' if fast_drafter_dtype(torch.float32) == torch.bfloat16 else 'fp32')")}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
run() { taskset -c "$CORE" "$PY" "$@"; }
mkdir -p "$W"
# SEED_FROM=DIR continues from DIR's final checkpoints (an earlier continuation's work folder)
# instead of the bundled drafters; the rest of the folder is seeded from the package as usual.
if [ -n "${SEED_FROM:-}" ]; then
  for name in dspark dflash; do
    [ -d "$W/seed/$name" ] && continue
    src=$(run -c "from dspark_ext.bundled.build import final_checkpoint as f; print(f('$SEED_FROM/$name'))")
    mkdir -p "$W/seed/$name"
    cp "$src/config.json" "$src/model.safetensors" "$src/trainer.json" "$W/seed/$name/"
  done
fi
run -m dspark_ext.bundled.build seed --work "$W"
[ -f "$W/data/heldout_prompts.jsonl" ] || run -m dspark_ext.bundled.build data --work "$W"
cmp "$W/data/heldout_prompts.jsonl" dspark_ext/bundled/models/heldout_prompts.jsonl
[ -f "$W/data/regen_T1.jsonl" ] || run -m dspark_ext.bundled.build regen --work "$W" \
  --per-file "$PER_FILE" --new-tokens "$NEW_TOKENS" >>"$W/regen.log" 2>&1
train() {  # name, extra args
  local name=$1; shift
  run -m dspark_ext.train --target "$W/target/final" --init "$W/seed/$name" \
    --data "$W/data/regen_T0.jsonl" "$W/data/regen_T1.jsonl" --format tokens \
    --max-length 512 --out "$W/$name" --block-size 7 --num-anchors 128 --mask-token-id 1 \
    --steps "$STEPS" --micro-batch 4 --lr "$LR" --warmup-ratio 0.04 --precision "$PRECISION" \
    --device cpu --save-every 50 --log-every 5 --no-progress "$@" >>"$W/$name.log" 2>&1
}
train dspark & p1=$!
train dflash --dflash & p2=$!
wait "$p1"; wait "$p2"
if [ "${FIT:-1}" = 1 ]; then
  run -m dspark_ext.bundled.build sts --work "$W" --drafter dspark
  run -m dspark_ext.bundled.build calibrate --work "$W" >>"$W/calibrate.log" 2>&1
  run -m dspark_ext.bundled.build install --work "$W"
fi
