#!/usr/bin/env bash
# Reproduces the bundled default model (see src/kronos/MODEL_CARD.md): tokenizer, predictor, evaluation,
# packaging. CPU, one thread per process; about 20 + 40 minutes on 2 shared cores.
# usage: bash examples/train_default_model.sh [DATA_DIR] [RUNS_DIR]
set -euo pipefail
DATA=${1:-../shared/data/ohlcv}
RUNS=${2:-runs/default}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON=(--data "$DATA" --test-fraction 0.2 --val-fraction 0.1 --lookback 160 --horizon 32 --batch-size 32
        --val-windows 200 --seed 7 --no-progress)

kronos train-tokenizer "${COMMON[@]}" --out "$RUNS/tok-d96" --max-steps 450 --max-minutes 25 --eval-every 150 \
    --save-every 100 --lr 1e-3 --model-config d_model=96 --model-config n_heads=4 --model-config ff_dim=192 \
    --model-config n_enc_layers=3 --model-config n_dec_layers=3

kronos train "${COMMON[@]}" --tokenizer "$RUNS/tok-d96/best" --out "$RUNS/pred-d128" --max-steps 700 \
    --max-minutes 40 --eval-every 100 --save-every 50 --lr 1e-3 --model-config s1_bits=10 --model-config s2_bits=10 \
    --model-config d_model=128 --model-config n_layers=4 --model-config n_heads=4 --model-config ff_dim=256 \
    --model-config ffn_dropout_p=0.1 --model-config resid_dropout_p=0.1 --model-config attn_dropout_p=0.0 \
    --model-config token_dropout_p=0.0

kronos evaluate "$DATA" --model "$RUNS/pred-d128/best" --tokenizer "$RUNS/tok-d96/best" --max-context 192 \
    --lookback 160 --pred-len 16 --samples 20 --origins 20 --seed 0 --out "$RUNS/eval"

python -m kronos.default_model "$RUNS/pred-d128/best" "$RUNS/tok-d96/best" --max-context 192
