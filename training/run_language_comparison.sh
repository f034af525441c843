#!/usr/bin/env bash
# Trains the six language models (and the CausalCRATE residual ablation) of docs/results/language.md on the Python documentation, with one shape
# (width 256, 6 layers, 8 heads, context 256, training/configs/python_docs_lm_small.yaml), one tokenizer and an
# equal token budget, then writes the report:
#
#   bash training/run_language_comparison.sh                      # all seven, two at a time, then the report
#   MAX_TOKENS=500000 MODELS="gpt2 tost" bash training/run_language_comparison.sh
#   MIXED_PRECISION=bf16 bash training/run_language_comparison.sh --learning_rate 0.002   # extra args → every run
#
# Each run is one process on one thread (OMP_NUM_THREADS=1, --num_threads 1); PARALLEL runs go side by side
# (default 2, for a 2-core machine). Outputs: $RUNS/lm-<model>/ (log: $RUNS/lm-<model>.log; RUNS=runs by default),
# the report $REPORT (docs/results/language.md) and model cards in $MODEL_CARDS (model_cards/). A run that already
# wrote evaluation.json is skipped (FORCE=1 retrains it); an interrupted one resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MODELS=${MODELS:-"gpt2 causal-crate causal-crate-alpha aot-mssa aot-mhsa tost causal-crate-gpt2-init causal-crate-residual"}
PARALLEL=${PARALLEL:-2}
MIXED_PRECISION=${MIXED_PRECISION:-no}
# Token budget per model (a multiple of the 8 × 256 = 2048 tokens of a step). The defaults keep the slowest
# model to about 15 min per run on one thread, two runs side by side on 2 cores. Measured with 20-step runs
# (1 thread, idle machine): CRATE-α, the slowest in fp32, trains at ~1390 tokens/s alone and ~1300 beside GPT-2;
# with bf16 autocast the slowest are GPT-2 and CRATE-α at ~2850-2900 tokens/s. Hence 1 024 000 tokens (500 steps,
# ~13 min of training) in fp32 and 2 048 000 (1000 steps) in bf16, plus about a minute of evaluation.
if [ "$MIXED_PRECISION" = bf16 ]; then DEFAULT_TOKENS=2048000; else DEFAULT_TOKENS=1024000; fi
MAX_TOKENS=${MAX_TOKENS:-$DEFAULT_TOKENS}
TOKENIZER=${TOKENIZER:-runs/tokenizer-python-docs-8k}
RUNS=${RUNS:-runs}
REPORT=${REPORT:-docs/results/language.md}
MODEL_CARDS=${MODEL_CARDS:-model_cards}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

mkdir -p "$RUNS"
if [ ! -f "$TOKENIZER/tokenizer_config.json" ]; then
  "$PYTHON" training/train_tokenizer.py --output_dir "$TOKENIZER"
fi

run_one() {
  local model=$1; shift
  local out="$RUNS/lm-$model"
  if [ -f "$out/evaluation.json" ] && [ -z "${FORCE:-}" ]; then
    echo "skip $model: $out/evaluation.json exists (FORCE=1 retrains)"
    return 0
  fi
  local resume=latest
  if [ -n "${FORCE:-}" ]; then resume=""; fi
  local start; start=$(date +%s)
  echo "start $model → $out (log: $RUNS/lm-$model.log)"
  "$PYTHON" training/train_causal_lm.py --config training/configs/python_docs_lm_small.yaml \
    --model "$model" --tokenizer "$TOKENIZER" --max_tokens "$MAX_TOKENS" --mixed_precision "$MIXED_PRECISION" \
    --num_threads 1 --output_dir "$out" --resume_from_checkpoint "$resume" "$@" > "$RUNS/lm-$model.log" 2>&1
  echo "{\"model\": \"$model\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "$out/wall_time.json"
  echo "done $model in $(( $(date +%s) - start )) s"
}

failures=0
for model in $MODELS; do
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do
    wait -n || failures=$((failures + 1))
  done
  run_one "$model" "$@" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  wait -n || failures=$((failures + 1))
done
if [ "$failures" -gt 0 ]; then
  echo "$failures run(s) failed: see $RUNS/lm-<model>.log" >&2
  exit 1
fi
"$PYTHON" training/report_language.py --runs "$RUNS" --output "$REPORT" --model_cards "$MODEL_CARDS"
