#!/usr/bin/env bash
# The SmolLM2-135M GSM8K recipe end to end, timed phase by phase (docs/recipes/smollm2_gsm8k.md):
# data -> cold-start SFT -> ARPO and the GRPO baseline -> greedy evaluation (synthetic test set,
# plus the real GSM8K test split when GSM8K=FILE is given) -> sampled evaluation (T = 0.7, the RL
# configs' rollout temperature).
#
#   bash scripts/smollm2_gsm8k.sh [RUN_DIR] [SEED]        defaults: runs/smollm2-gsm8k 0
#
# It runs from the project root: relative paths (RUN_DIR, GSM8K, ARPO) are taken from there.
#
# Environment: GSM8K=path/to/gsm8k/test.jsonl adds it to the greedy evaluation (never trained on);
# PHASES="data sft arpo grpo eval sampled" runs a subset (default: all, in that order);
# ARPO=.venv/bin/arpo the CLI to call (split at spaces); N_TRAIN=1000 N_TEST=200 N_VAL=200 the problem counts;
# SFT_ARGS, RL_ARGS, EVAL_ARGS: config overrides added to every sft, train (ARPO and GRPO) and eval
# call, split at spaces (e.g. RL_ARGS="train.mixed_precision=no train.rollout.vllm.dtype=float32").
#
# Each phase appends "phase<TAB>seconds" to RUN_DIR/timings.tsv when it ends; a phase already
# listed there is skipped, so re-running continues where a stopped run left off: SFT and RL resume
# from their newest checkpoint (a resumed phase's time is then that of its last call only), an
# evaluation phase runs again whole. The data files do not depend on SEED: seeds 0, 1, 2 make the
# training, test and validation problems, as in the recipe doc.
set -euo pipefail
cd "$(dirname "$0")/.."

R=${1:-runs/smollm2-gsm8k}
SEED=${2:-0}
read -ra ARPO <<< "${ARPO:-.venv/bin/arpo}"
read -ra SFT_EXTRA <<< "${SFT_ARGS:-}"
read -ra RL_EXTRA <<< "${RL_ARGS:-}"
read -ra EVAL_EXTRA <<< "${EVAL_ARGS:-}"
PHASES=${PHASES:-data sft arpo grpo eval sampled}
for p in $PHASES; do
  case $p in
    data|sft|arpo|grpo|eval|sampled) ;;
    *) echo "unknown phase '$p' in PHASES (known: data sft arpo grpo eval sampled)" >&2; exit 2 ;;
  esac
done
TIMINGS=$R/timings.tsv
mkdir -p "$R"
touch "$TIMINGS"

log() { printf '[recipe %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

done_already() { cut -f1 "$TIMINGS" | grep -qx "$1"; }

# resume_flag RUN: --resume when RUN already holds a checkpoint (a stopped run continues)
resume_flag() { if compgen -G "$1/checkpoints/step-*" > /dev/null; then echo --resume; fi; }

phase() {  # phase NAME: run phase_NAME unless timings.tsv lists it, then record its seconds
  local name=$1 start
  if done_already "$name"; then log "$name: done before ($(grep -P "^$name\t" "$TIMINGS" | cut -f2) s), skipped"; return; fi
  log "$name: start"
  start=$(date +%s)
  "phase_$name"
  printf '%s\t%s\n' "$name" $(( $(date +%s) - start )) >> "$TIMINGS"
  log "$name: $(( $(date +%s) - start )) s"
}

phase_data() {
  "${ARPO[@]}" data gsm8k-sample --out "$R/train.jsonl" --n "${N_TRAIN:-1000}" --seed 0
  "${ARPO[@]}" data gsm8k-sample --out "$R/test.jsonl" --n "${N_TEST:-200}" --seed 1 --exclude "$R/train.jsonl"
  "${ARPO[@]}" data gsm8k-sample --out "$R/val.jsonl" --n "${N_VAL:-200}" --seed 2 --exclude "$R/train.jsonl" --exclude "$R/test.jsonl"
  "${ARPO[@]}" data gsm8k-demos --in "$R/train.jsonl" --out "$R/demos.jsonl"
}

phase_sft() {
  "${ARPO[@]}" sft --config configs/smollm2_gsm8k_sft.yaml $(resume_flag "$R/sft") run_dir="$R/sft" \
      train.seed="$SEED" data.demonstrations.path="$R/demos.jsonl" "${SFT_EXTRA[@]}"
}

rl() {  # rl NAME: ARPO or GRPO from the SFT model
  "${ARPO[@]}" train --config "configs/smollm2_gsm8k_$1.yaml" $(resume_flag "$R/$1") run_dir="$R/$1" \
      train.seed="$SEED" model.name="$R/sft" data.dataset.path="$R/train.jsonl" "${RL_EXTRA[@]}"
}
phase_arpo() { rl arpo; }
phase_grpo() { rl grpo; }

evaluate() {  # evaluate OUT_SUBDIR MODEL [overrides...]
  local out=$1 model=$2
  shift 2
  "${ARPO[@]}" eval --config configs/smollm2_gsm8k_eval.yaml model.name="$R/$model" out_dir="$R/$out/$model" \
      datasets.0.dataset.path="$R/test.jsonl" "$@" "${EVAL_EXTRA[@]}"
}

phase_eval() {  # greedy; the GSM8K test split as a second data set when given
  local extra=()
  if [[ -n ${GSM8K:-} ]]; then extra=("datasets.1={name: gsm8k-test, dataset: {path: $GSM8K, layout: gsm8k}}"); fi
  for m in sft arpo grpo; do evaluate eval "$m" "${extra[@]}"; done
}

phase_sampled() {  # the policy RL trains: its rollout temperature, 4 samples per synthetic test problem
  for m in sft arpo grpo; do
    evaluate eval-sampled "$m" sampling.temperature=0.7 sampling.samples=4 'pass_k=[1,4]'
  done
}

for p in $PHASES; do phase "$p"; done
log "timings ($TIMINGS):"
awk -F'\t' '{ s += $2; printf "  %-8s %6d s\n", $1, $2 } END { printf "  %-8s %6d s = %.1f min\n", "total", s, s / 60 }' "$TIMINGS" >&2
