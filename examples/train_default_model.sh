#!/usr/bin/env bash
# Reproduces the bundled default model (see src/kronos/MODEL_CARD.md): one tokenizer, then three predictor
# candidates trained side by side (the one kept is chosen afterwards on the validation part with
# `kronos evaluate`). The same commands run on a CUDA GPU when one is present (bf16 autocast) and on the CPU
# otherwise. Each run's step count is sized from a short probe so that its one-cycle schedule finishes within
# its time budget.
# usage: bash examples/train_default_model.sh [DATA_DIR] [RUNS_DIR]
#   env: TOK_MINUTES (default 2.5), PRED_MINUTES (default 4.5), BATCH (default 128)
set -euo pipefail
DATA=${1:-../shared/data/ohlcv}
RUNS=${2:-runs/default}
TOK_MINUTES=${TOK_MINUTES:-2.5}
PRED_MINUTES=${PRED_MINUTES:-4.5}
BATCH=${BATCH:-128}
KRONOS=${KRONOS:-kronos}
mkdir -p "$RUNS"
SPLIT=(--data "$DATA" --test-fraction 0.2 --val-fraction 0.1 --seed 7 --no-progress --batch-size "$BATCH")
TOKENIZER=(--model-config d_model=128 --model-config n_heads=4 --model-config ff_dim=256
           --model-config n_enc_layers=3 --model-config n_dec_layers=3 --model-config s1_bits=10
           --model-config s2_bits=10)
MINI=(--model-config d_model=256 --model-config n_layers=4 --model-config n_heads=4 --model-config ff_dim=512)
SMALL=(--model-config d_model=128 --model-config n_layers=4 --model-config n_heads=4 --model-config ff_dim=256)
DROPOUT=(--model-config s1_bits=10 --model-config s2_bits=10 --model-config ffn_dropout_p=0.1
         --model-config resid_dropout_p=0.1 --model-config attn_dropout_p=0.0 --model-config token_dropout_p=0.0)

# steps MINUTES WINDOW PROBE_DIR: optimizer steps that fit MINUTES at the probe's measured bars/s (85% margin).
steps() {
    python3 - "$@" <<'EOF'
import json, sys
minutes, window, probe = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [json.loads(line) for line in open(f"{probe}/metrics.jsonl") if '"train"' in line]
rate = rows[-1]["bars_per_s"]
print(max(50, int(0.85 * minutes * 60 * rate / (window * int(sys.argv[4])))))
EOF
}

# train KIND OUT MINUTES LOOKBACK HORIZON LR [args...]: probe 40 steps, then the sized run.
train() {
    local kind=$1 out=$2 minutes=$3 lookback=$4 horizon=$5 lr=$6
    shift 6
    local cmd=train
    [ "$kind" = tokenizer ] && cmd=train-tokenizer
    local common=("${SPLIT[@]}" --lookback "$lookback" --horizon "$horizon" --lr "$lr" "$@")
    $KRONOS $cmd "${common[@]}" --out "$out.probe" --max-steps 40 --log-every 20 --eval-every 1000 \
        --val-windows 16 --save-every 1000 > "$out.probe.log" 2>&1
    local n
    n=$(steps "$minutes" $((lookback + horizon)) "$out.probe" "$BATCH")
    echo "$out: $n steps" | tee "$out.steps"
    $KRONOS $cmd "${common[@]}" --out "$out" --max-steps "$n" --max-minutes "$(python3 -c "print($minutes * 1.2)")" \
        --eval-every $((n / 8 + 1)) --val-windows 1000 --save-every 100000 --log-every 50 > "$out.log" 2>&1
    rm -rf "$out.probe"
}

train tokenizer "$RUNS/tok" "$TOK_MINUTES" 256 32 1e-3 "${TOKENIZER[@]}"
train predictor "$RUNS/mini-256" "$PRED_MINUTES" 256 32 7e-4 --tokenizer "$RUNS/tok/best" "${MINI[@]}" "${DROPOUT[@]}" &
train predictor "$RUNS/mini-128" "$PRED_MINUTES" 128 32 7e-4 --tokenizer "$RUNS/tok/best" "${MINI[@]}" "${DROPOUT[@]}" &
train predictor "$RUNS/d128-256" "$PRED_MINUTES" 256 32 1e-3 --tokenizer "$RUNS/tok/best" "${SMALL[@]}" "${DROPOUT[@]}" &
wait

# The bundled model is d128-256, chosen by validation loss and checked with `kronos evaluate` on the
# validation part (every series cut before its test tail, --tail-fraction 0.125; see MODEL_CARD.md):
#   kronos evaluate VAL_DIR --model $RUNS/d128-256/best --tokenizer $RUNS/tok/best --tail-fraction 0.125 \
#       --lookback 512 --pred-len 24 --samples 100 --origins 8 --seed 0
# Package it (kronos train has written predictor.json with the lookback beside the weights):
#   python -m kronos.model.default_model $RUNS/d128-256/best $RUNS/tok/best --max-context 288 --lookback 256
# The sizes were timed on one H200 GPU (TOK_MINUTES=2.2 PRED_MINUTES=4.2 BATCH=256).
