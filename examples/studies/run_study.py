"""Run one of the two published studies (docs/backtest.md, docs/evaluation.md): the backtest and the
walk-forward evaluation over the same universe, the model's forecasts made once and cached.

    python examples/studies/run_study.py daily  --out study-daily
    python examples/studies/run_study.py crypto --out study-crypto
    python examples/studies/run_study.py daily  --out study-daily --replay   # statistics again, no model

The data folder defaults to ../shared/data/ohlcv beside the repository (``--data`` to change it).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
import time
from pathlib import Path

import torch

from kronos import backtest
from kronos.evaluation import EvaluationConfig, evaluate
from kronos.tables import load_series

sys.path.insert(0, str(Path(__file__).parent))
from forecast_cache import CachingPredictor  # noqa: E402

STUDIES = {
    # every daily series; horizons and rebalancing weekly (5 bars)
    "daily": {"pattern": "*_1d.csv", "pred_len": 5, "stride": 5, "tail_fraction": 0.2},
    # the nine BTC-quoted pairs of one exchange on one 5-minute calendar; 25-minute horizons
    "crypto": {"pattern": "freqtrade_*-BTC_5min.csv", "pred_len": 5, "stride": 5, "tail_fraction": 0.5},
}
LOOKBACK, SAMPLES = 256, 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv"))
    parser.add_argument("--replay", action="store_true", help="use only cached forecasts (no model)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    spec = STUDIES[args.study]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(glob.glob(str(Path(args.data) / spec["pattern"])))
    series = load_series(files)
    predictor = None
    if not args.replay:
        from kronos.predictor import KronosPredictor

        predictor = KronosPredictor.from_pretrained()
    cached = CachingPredictor(predictor, out / "forecasts.pkl")
    common = dict(lookback=LOOKBACK, pred_len=spec["pred_len"], stride=spec["stride"], sample_count=SAMPLES,
                  tail_fraction=spec["tail_fraction"], calibrate=False)
    timing = {}
    started = time.perf_counter()
    config = backtest.BacktestConfig(max_dates=None, strategy="long_short", k=2, commission_bps=5, **common)
    result = backtest.run(series, cached, config, model_name="default (bundled)",
                          progress=lambda d, n: print(f"backtest date {d}/{n}", file=sys.stderr) if d % 25 == 0 else None)
    timing["backtest_seconds"] = time.perf_counter() - started
    cached.save()
    result.write(out / "backtest")
    started = time.perf_counter()
    evaluation = evaluate(series, cached, EvaluationConfig(max_origins=None, **common), model_name="default (bundled)")
    timing["evaluate_seconds"] = time.perf_counter() - started
    cached.save()
    evaluation.write(out / "evaluate")
    timing.update(model_seconds=cached.seconds, forecasts_made=cached.misses, forecasts_replayed=cached.hits,
                  series=len(series), rebalance_dates=len(result.plan.dates))
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
