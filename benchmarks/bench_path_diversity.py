"""How many distinct values the sample paths take per horizon step (a check of path collapse).

A forecast's first bar is a deterministic function of the token drawn for it, so without dequantisation
it takes at most as many values as distinct tokens were drawn. For each series this prints, over
``--samples`` paths from the last ``--history`` bars, the number of distinct closes at steps 1, 2, 6 and
24 for: a baseline predictor (``--baseline-model``/``--baseline-tokenizer``, e.g. an earlier bundled
model extracted with ``git archive``, with the original's ``top_p=0.9``), the bundled model's raw paths
(``dequantise=False, calibrate=False``) and ``forecast()`` with its defaults.

    python benchmarks/bench_path_diversity.py --baseline-model OLD/model --baseline-tokenizer OLD/tokenizer
"""

from __future__ import annotations

import argparse
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ohlcv"
SERIES = ("bokeh_MSFT_1d.csv", "zipline_KO_1d.csv", "lean_IWM_1d.csv", "backtesting_EURUSD_1h.csv",
          "freqtrade_ETH-BTC_5min.csv")
STEPS = (1, 2, 6, 24)


def distinct(predictor, frame, history: int, samples: int, **settings) -> list[int]:
    import numpy as np
    import pandas as pd

    bars = frame.iloc[-history - 24:-24]
    future = pd.DatetimeIndex(frame["timestamps"].iloc[-24:])
    paths = predictor.forecast(bars, bars["timestamps"], future, 24, sample_count=samples, seed=0, **settings)
    return [len(np.unique(paths.samples[:, step - 1, 3])) for step in STEPS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--history", type=int, default=512)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--baseline-model")
    parser.add_argument("--baseline-tokenizer")
    parser.add_argument("--baseline-max-context", type=int, default=192)
    args = parser.parse_args()

    import pandas as pd

    from kronos import KronosPredictor

    predictor = KronosPredictor.from_pretrained(device="cpu")
    runs = {"bundled, raw paths": (predictor, dict(dequantise=False, calibrate=False)),
            "bundled, forecast() defaults": (predictor, {})}
    if args.baseline_model:
        baseline = KronosPredictor.from_pretrained(args.baseline_model, args.baseline_tokenizer, device="cpu",
                                                   max_context=args.baseline_max_context)
        runs = {"baseline, top_p=0.9": (baseline, dict(top_p=0.9, dequantise=False, calibrate=False)), **runs}
    print(f"distinct closes of {args.samples} paths at steps {', '.join(map(str, STEPS))}; "
          f"history {args.history} bars")
    for name in SERIES:
        frame = pd.read_csv(args.data / name, parse_dates=["timestamps"])
        cells = [f"{label}: {'/'.join(map(str, distinct(p, frame, args.history, args.samples, **kw)))}"
                 for label, (p, kw) in runs.items()]
        print(f"{name:<30s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
