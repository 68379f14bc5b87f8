"""Cross-check of the backtest's accounting against vectorbt (optional; ``pip install vectorbt``).

The same target weights (top-2 of four real daily series by momentum, rebuilt every date) and the same
open prices go through ``kronos.backtest.simulate`` and vectorbt's ``Portfolio.from_orders`` with
target-percent sizing and the same fee. The two differ by design in one second-order term: we charge the
cost as a fraction of equity before the period's return (positions scaled by ``1 - cost * turnover``),
vectorbt takes the fees from cash and keeps the targeted positions. Prints both final equities, their
ratio, and the time of each (accounting only).

    PYTHONPATH=src python3 benchmarks/crosscheck_vectorbt.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kronos import backtest
from kronos.tables import load_series

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main() -> int:
    try:
        import vectorbt as vbt
    except ImportError:
        print("vectorbt is not installed (pip install vectorbt)", file=sys.stderr)
        return 2
    series = load_series([DATA / f"bokeh_{n}_1d.csv" for n in ("AAPL", "IBM", "MSFT", "GOOG")])
    config = backtest.BacktestConfig(strategy="long_short", k=1, pred_len=5, stride=5, max_dates=None,
                                     commission_bps=10, min_names=4)
    result = backtest.run(series, config=config)
    plan = result.plan
    weights = result.weights["momentum"].to_numpy()
    times = list(plan.dates) + [plan.end]
    opens = np.array([[float(s.frame()["open"].get(t, np.nan)) for s in series] for t in times])
    fee = config.cost_bps / 1e4
    for strategy in ("long_short", "topk_dropout"):
        if strategy == "topk_dropout":
            config = backtest.BacktestConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                                                "strategy": "topk_dropout", "k": 2, "n_drop": 1})
            weights = backtest.score_signals(result.scores, plan, config).weights["momentum"].to_numpy()
        started = time.perf_counter()
        ours = backtest.simulate(np.zeros_like(weights), plan.realised, backtest.Strategy(), config.cost_bps,
                                 weights=weights)
        ours_s = time.perf_counter() - started
        size = pd.DataFrame(np.vstack([weights, np.full((1, len(series)), np.nan)]), index=times)
        price = pd.DataFrame(opens, index=times)
        started = time.perf_counter()
        pf = vbt.Portfolio.from_orders(close=price, size=size, size_type="targetpercent", fees=fee,
                                       cash_sharing=True, group_by=True, call_seq="auto", init_cash=1.0)
        value = pf.value().to_numpy()
        vbt_s = time.perf_counter() - started
        print(f"{strategy}: {len(plan.dates)} dates x {len(series)} series, {config.cost_bps:g} bps: final equity "
              f"ours {ours.equity[-1]:.6f}, vectorbt {value[-1]:.6f}, ratio {ours.equity[-1] / value[-1]:.6f}; "
              f"max |difference| over the curve {np.abs(ours.equity - value).max():.2e}; time ours "
              f"{ours_s * 1e3:.1f} ms, vectorbt {vbt_s * 1e3:.1f} ms (first call compiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
