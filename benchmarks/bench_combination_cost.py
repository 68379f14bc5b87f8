"""What the combination costs: ``forecast()`` with its defaults (``combine=True``) against ``combine=False``,
per series, on real daily and intraday histories; each forecast from an empty past-forecast store (a series
seen for the first time, the dearest case) and again with the store filled (a history seen before).

Prints seconds per forecast of each and their ratio, measured alternately in one run.

    python benchmarks/bench_combination_cost.py ../shared/data/ohlcv --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FILES = ("bokeh_AAPL_1d.csv", "lean_IWM_1d.csv", "freqtrade_ETH-BTC_5min.csv", "lean_AIG_1h.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--history", type=int, default=1500, help="history bars given to forecast()")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd
    import torch

    from kronos import KronosPredictor

    torch.set_num_threads(args.threads)
    predictor = KronosPredictor.from_pretrained("default", device="cpu")
    cases = []
    for name in FILES:
        frame = pd.read_csv(Path(args.folder) / name, parse_dates=["timestamps"])
        history = frame.iloc[-args.history - 24:-24].reset_index(drop=True)
        cases.append((history.drop(columns="timestamps"), history["timestamps"], frame["timestamps"].iloc[-24:]))
    for bars, x, y in cases[:1]:  # warm-up: imports, the first GARCH fit
        predictor.forecast(bars, x, y, 24, seed=0)
    seconds = {(combine, fresh): 0.0 for combine in (True, False) for fresh in (True, False)}
    for _ in range(args.repeats):
        for bars, x, y in cases:
            for combine in (False, True):
                predictor.past_forecasts.clear()
                for fresh in (True, False):
                    started = time.perf_counter()
                    predictor.forecast(bars, x, y, 24, seed=0, combine=combine)
                    seconds[(combine, fresh)] += time.perf_counter() - started
    n = args.repeats * len(cases)
    print(f"{len(cases)} series, {args.history} history bars, horizon 24, default paths, {args.repeats} repeats")
    print("| past forecasts | combine=False s | combine=True s | ratio |\n|---|---|---|---|")
    for fresh, label in ((True, "made afresh"), (False, "reused")):
        pure, pooled = seconds[(False, fresh)] / n, seconds[(True, fresh)] / n
        print(f"| {label} | {pure:.3f} | {pooled:.3f} | {pooled / pure:.3f} |")


if __name__ == "__main__":
    main()
