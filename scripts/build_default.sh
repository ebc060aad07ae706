#!/usr/bin/env bash
# Rebuilds every bundled artefact from scratch on this machine's Python standard library:
# tokenizer -> target LM -> small AR draft LM -> drafter data (corpus windows, then the
# target's own continuations) -> DSpark and DFlash drafters (equal depth and budget) -> STS
# temperatures -> installed into dspark_ext/bundled/models.
# Each stage is skipped when its output exists and every training run resumes from its last
# checkpoint, so an interrupted build continues where it stopped. Work folder: build/default
# (logs there). About 3 hours on 2 cores; ABLATIONS=1 also trains the block-size (4, 8, 16)
# and depth (1 layer) ablation drafters under build/default/ablations (not bundled; another
# ~1 hour). Then `python bench/bench_default.py` measures every reported number.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
source scripts/setup_env.sh
W=${DSPARK_DEFAULT_WORK:-build/default}
THREADS=${THREADS:-$(nproc)}
TARGET_STEPS=${TARGET_STEPS:-1200}
AR_STEPS=${AR_STEPS:-400}
# Drafters train in stages, each resuming the previous one with a longer schedule (the cosine
# picks up where that schedule is, down to zero at the stage's end), as the bundled ones were:
# 600 steps of warm-up + cosine on the corpus windows, then to 1200 on them, then to 3000 on
# the target's own continuations of training-module prompts (the "regen" data, greedy and
# T = 1). The ablation drafters get the first stage only; they are compared with the bundled
# drafter's own checkpoint at that step (equal budget, same schedule, same data).
DRAFTER_STAGES=${DRAFTER_STAGES:-"600:corpus 1200:corpus 3000:regen"}
ABLATION_STAGES=${ABLATION_STAGES:-"600:corpus"}
mkdir -p "$W"
export OMP_WAIT_POLICY=PASSIVE  # shares the cores gracefully if anything else runs

stage() { echo "build_default: $*" >&2; }

if [ ! -f "$W/tokenizer/tokenizer.json" ]; then
  stage "tokenizer (byte-level BPE, 4096)"
  "$PY" -c "from dspark_ext.bundled.corpus import collect
from dspark_ext.bundled.tokenizer import train_tokenizer
c = collect(); print(c.fingerprint())
train_tokenizer((c.read(r) for r in c.train), 4096, '$W/tokenizer')"
fi

for spec in "target:$TARGET_STEPS" "ar_draft:$AR_STEPS"; do
  name=${spec%%:*}; steps=${spec##*:}
  if [ ! -f "$W/$name/final/model.safetensors" ]; then
    stage "$name LM, $steps steps (log: $W/$name.log)"
    "$PY" -m dspark_ext.bundled.lm --arch "$name" --tokenizer "$W/tokenizer" --out "$W/$name" \
      --steps "$steps" --threads "$THREADS" >>"$W/$name.log" 2>&1
  fi
done

if [ ! -f "$W/data/heldout_prompts.jsonl" ]; then
  stage "drafter data and held-out prompts"
  "$PY" -m dspark_ext.bundled.build data --work "$W"
fi
if [ ! -f "$W/data/regen_T1.jsonl" ]; then
  stage "the target's continuations of training-module prompts (log: $W/regen.log)"
  "$PY" -m dspark_ext.bundled.build regen --work "$W" >>"$W/regen.log" 2>&1
fi

# The drafters: 2 draft layers over target layers 1,2,4,6,7 (DeepSpec's spacing), block 7,
# 128 anchors per 512-token window, the paper's losses; DFlash is the same backbone with no
# Markov/confidence head and CE only. Two runs train side by side with half the threads each
# (on 2 cores two single-threaded runs get more done than one after the other).
train_drafter() {  # run folder (under $W), threads, extra args (later ones override earlier)
  local name=$1 threads=$2 spec steps data done_steps; shift 2
  mkdir -p "$(dirname "$W/$name")"
  for spec in $STAGES; do  # steps:data; each stage resumes the previous one
    steps=${spec%%:*}
    case ${spec##*:} in
      corpus) data=("$W/data/drafter_train.jsonl") ;;
      regen) data=("$W/data/regen_T0.jsonl" "$W/data/regen_T1.jsonl") ;;
      *) echo "build_default: unknown drafter data '${spec##*:}' in '$spec'" >&2; exit 2 ;;
    esac
    done_steps=0
    if [ -f "$W/$name/latest" ]; then done_steps=$((10#$(sed 's/^step_//' "$W/$name/latest"))); fi
    if [ "$done_steps" -ge "$steps" ]; then continue; fi
    stage "$name drafter, to step $steps on ${spec##*:} data (log: $W/$name.log)"
    OMP_NUM_THREADS=$threads "$PY" -m dspark_ext.train --target "$W/target/final" \
      --data "${data[@]}" --format tokens --max-length 512 --out "$W/$name" \
      --block-size 7 --draft-layers 2 --markov-rank 128 --num-anchors 128 --mask-token-id 1 \
      --steps "$steps" --micro-batch 4 --lr 1e-3 --precision bf16 --device cpu \
      --save-every 50 --log-every 5 --no-progress "$@" >>"$W/$name.log" 2>&1
  done
}
pair() {  # two drafter runs side by side: "name args" "name args"
  local half=$(( THREADS / 2 > 0 ? THREADS / 2 : 1 ))
  local a=($1) b=($2)
  train_drafter "${a[0]}" "$half" "${a[@]:1}" & local p1=$!
  train_drafter "${b[0]}" "$half" "${b[@]:1}" & local p2=$!
  wait "$p1"; wait "$p2"
}
STAGES=$DRAFTER_STAGES pair "dspark" "dflash --dflash"

stage "STS temperatures (fit half of the held-out prompts)"
"$PY" -m dspark_ext.bundled.build sts --work "$W" --drafter dspark
stage "install into dspark_ext/bundled/models"
"$PY" -m dspark_ext.bundled.build install --work "$W"

if [ "${ABLATIONS:-0}" = 1 ]; then  # not bundled: only bench_default.py --ablation reads them
  STAGES=$ABLATION_STAGES pair "ablations/b4 --block-size 4" "ablations/b8 --block-size 8"
  STAGES=$ABLATION_STAGES pair "ablations/b16 --block-size 16" "ablations/d1 --draft-layers 1"
fi
