"""Run one of the two published studies (docs/backtest.md, docs/evaluation.md): the backtest and the
walk-forward evaluation over one universe, every model forecast cached so that it is made once.

    python examples/studies/run_study.py daily  --out study-daily
    python examples/studies/run_study.py crypto --out study-crypto
    python examples/studies/run_study.py daily  --out study-daily --replay   # statistics again, no model

The data folder defaults to ../shared/data/ohlcv beside the repository (``--data`` to change it). Settings:
the bundled model, 256 history bars (its context), 32 paths, calibration off (calibrating every forecast
from past origins would cost about ten times the forecast itself), horizon and stride 5 bars.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import torch

from kronos import backtest
from kronos.data.tables import load_series
from kronos.evaluation import EvaluationConfig, evaluate

sys.path.insert(0, str(Path(__file__).parent))
from forecast_cache import CachingPredictor  # noqa: E402

STUDIES = {
    # every daily series; weekly horizons and rebalancing (5 bars)
    "daily": {"pattern": "*_1d.csv", "tail_fraction": 0.2, "max_origins": 40},
    # the nine BTC-quoted pairs of one exchange on one 5-minute calendar; 25-minute horizons
    "crypto": {"pattern": "freqtrade_*-BTC_5min.csv", "tail_fraction": 0.5, "max_origins": 100},
}
LOOKBACK, SAMPLES, HORIZON = 256, 32, 5


def progress(done: int, total: int) -> None:
    if done % 50 == 0 or done == total:
        print(f"backtest date {done}/{total}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "ohlcv"))
    parser.add_argument("--replay", action="store_true", help="use only cached forecasts (no model)")
    parser.add_argument("--only", choices=("backtest", "evaluate"), default=None, help="run one part only")
    parser.add_argument("--end", default=None, help="last rebalance date of the backtest (default: none)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = STUDIES[args.study]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    series = load_series(sorted(glob.glob(str(Path(args.data) / spec["pattern"]))))
    predictor = None
    if not args.replay:
        from kronos.forecasting.predictor import KronosPredictor

        predictor = KronosPredictor.from_pretrained()
    common = dict(lookback=LOOKBACK, pred_len=HORIZON, stride=HORIZON, sample_count=SAMPLES,
                  tail_fraction=spec["tail_fraction"], calibrate=False)
    timing: dict[str, float] = {"series": len(series)}
    if args.only in (None, "backtest"):
        cached = CachingPredictor(predictor, out / "forecasts.pkl")
        started = time.perf_counter()
        config = backtest.BacktestConfig(max_dates=None, end=args.end, strategy="long_short", k=2, commission_bps=5,
                                         **common)
        result = backtest.run(series, cached, config, model_name="default (bundled)", progress=progress)
        cached.save()
        result.write(out / "backtest")
        timing.update(backtest_seconds=time.perf_counter() - started, rebalance_dates=len(result.plan.dates),
                      backtest_forecasts=int(result.plan.eligible.sum()),
                      backtest_statistics_seconds=result.timing.get("seconds_statistics", 0.0),
                      backtest_model_seconds=cached.seconds, backtest_forecasts_made=cached.misses,
                      backtest_forecasts_replayed=cached.hits)
    if args.only in (None, "evaluate"):
        cached = CachingPredictor(predictor, out / "forecasts-evaluate.pkl")
        started = time.perf_counter()
        evaluation = evaluate(series, cached, EvaluationConfig(max_origins=spec["max_origins"], **common),
                              model_name="default (bundled)")
        cached.save()
        evaluation.write(out / "evaluate")
        timing.update(evaluate_seconds=time.perf_counter() - started, evaluate_origins=evaluation.run.timing["origins"],
                      evaluate_garch_seconds=evaluation.run.timing.get("seconds_garch_t", 0.0),
                      evaluate_model_seconds=cached.seconds, evaluate_forecasts_made=cached.misses,
                      evaluate_forecasts_replayed=cached.hits)
    (out / f"timing-{args.only or 'all'}.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
