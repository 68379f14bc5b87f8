"""Evaluation speed (origins/s): origins batched through ``forecast_batch`` against one origin per call.

Runs the walk-forward evaluation twice on the same real series and origins: ``--batch-size`` origins per
model call, then the baseline of one origin per call (``batch_size=1``). Prints origins/s of each and the
ratio, plus the time spent outside the model (baselines, metrics). The model is the tiny parity checkpoint
(``--layout tiny``) or random weights in the Kronos-mini layout with the published tokenizer layout
(``--layout mini``; the speed of a trained model of that size is the same).

    nice -n 10 python benchmarks/bench_evaluation.py                    # tiny, CPU
    python benchmarks/bench_evaluation.py --layout mini --device cuda --batch-size 64 --origins 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FILES = ("bokeh_AAPL_1d.csv", "bokeh_MSFT_1d.csv", "freqtrade_ETH-BTC_5min.csv", "freqtrade_LTC-BTC_5min.csv",
         "backtesting_EURUSD_1h.csv", "kronos_XSHG-600977_5min.csv")




def build_predictor(layout: str, device: str, max_context: int):
    import torch

    from kronos import Kronos, KronosConfig, KronosTokenizer, TokenizerConfig
    from kronos.forecasting.predictor import KronosPredictor

    if layout == "tiny":
        model = Kronos.from_pretrained(ROOT / "tests" / "fixtures" / "parity-tiny" / "model")
        tokenizer = KronosTokenizer.from_pretrained(ROOT / "tests" / "fixtures" / "parity-tiny" / "tokenizer")
        return KronosPredictor(model, tokenizer, device=device, max_context=min(max_context, 256))
    torch.manual_seed(0)
    model = Kronos(KronosConfig(d_model=256, n_layers=4, n_heads=4, ff_dim=512, ffn_dropout_p=0.2,
                                attn_dropout_p=0.0, resid_dropout_p=0.2, token_dropout_p=0.0))
    tokenizer = KronosTokenizer(TokenizerConfig())
    return KronosPredictor(model, tokenizer, device=device, max_context=max_context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("tiny", "mini"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lookback", type=int, default=128)
    parser.add_argument("--pred-len", type=int, default=12)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--origins", type=int, default=4, help="origins per series")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-context", type=int, default=512)
    args = parser.parse_args()

    from kronos.evaluation import evaluate

    predictor = build_predictor(args.layout, args.device, args.max_context)
    files = [SHARED / "data" / "ohlcv" / name for name in FILES]
    settings = dict(lookback=args.lookback, pred_len=args.pred_len, sample_count=args.samples,
                    max_origins=args.origins, seed=0)
    evaluate(files[:1], predictor, **dict(settings, max_origins=1))  # warm-up
    results = {}
    for label, batch_size in (("batched", args.batch_size), ("one-at-a-time", 1)):
        started = time.perf_counter()
        run = evaluate(files, predictor, batch_size=batch_size, **settings).run
        wall = time.perf_counter() - started
        results[label] = (run.timing["origins"], wall, run.timing["seconds_model"])
    print(f"machine: {machine(args.device)}; torch threads {__import__('torch').get_num_threads()}")
    print(f"layout {args.layout}, device {args.device}, {len(files)} series, lookback {args.lookback}, "
          f"pred_len {args.pred_len}, samples {args.samples}, batch {args.batch_size}")
    for label, (origins, wall, model) in results.items():
        print(f"{label:>14}: {origins:.0f} origins in {wall:.2f} s = {origins / wall:.2f} origins/s "
              f"(model {model:.2f} s, rest {wall - model:.2f} s)")
    (n_batched, wall_batched, _), (n_single, wall_single, _) = results["batched"], results["one-at-a-time"]
    ratio = (n_batched / wall_batched) / (n_single / wall_single)
    print(f"speed-up of batching: {ratio:.2f}x")


if __name__ == "__main__":
    main()
