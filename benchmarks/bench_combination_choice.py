"""The combination's settings chosen on the validation part of real series (never on the held-out tail
that ``kronos evaluate`` scores): the prior weights, how strongly the fitted weights are shrunk toward
them, and which baselines take part.

Each series is cut before its held-out tail (the last ``--tail-fraction`` of its rows); origins lie in the
last ``--val-fraction`` of what is left. Every origin is forecast once with ``forecast_batch`` (defaults,
``combine=True``) while the inputs of the combination are recorded: the model's calibrated paths, the
baselines' paths at the origin and at the past origins, and the model's past paths. Every setting then
pools the same paths, so the differences are the combination's alone. Prints pooled close CRPS (fraction
of the last close) and 50%/80% coverage of each setting, of the model alone and of each baseline (fitted
on up to 1,000 returns), and the geometric mean over series of the CRPS ratio to each baseline.

    python benchmarks/bench_combination_choice.py ../shared/data/ohlcv --every 3 --origins 4 --samples 50
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np


def record(args: argparse.Namespace) -> list[dict]:
    """Forecast the validation origins; per origin the combination's inputs and the realised closes."""
    import pandas as pd
    import torch

    import kronos.forecasting.forecast as predictor_module
    from kronos import KronosPredictor
    from kronos.data.tables import Series
    from kronos.evaluation.walkforward import EvaluationConfig, load_series, plan_origins

    torch.set_num_threads(args.threads)
    files = sorted(Path(args.folder).glob("*.csv"))[args.offset::args.every]
    series = []
    for s in load_series([str(f) for f in files]):
        keep = len(s.bars) - int(round(len(s.bars) * args.tail_fraction))  # drop the held-out tail
        series.append(Series(s.name, s.bars[:keep], s.timestamps[:keep], None, s.id_column, s.source))
    config = EvaluationConfig(lookback=args.lookback, pred_len=args.pred_len, max_origins=args.origins,
                              tail_fraction=args.val_fraction)
    origins, _ = plan_origins(series, config)
    by_name = {s.name: s for s in series}
    captured: dict[str, list] = {"fit": [], "pool": [], "past": [], "now": []}
    originals = {name: getattr(predictor_module, name) for name in ("fit_follow", "past_baseline_closes",
                                                                       "baseline_closes")}
    pooled = predictor_module._pooled

    def fit_spy(model, garch, realised, last):  # the model's calibrated past paths, before they follow GARCH
        captured["fit"].append((np.asarray(model, np.float32), realised, last))
        return originals["fit_follow"](model, garch, realised, last)

    def past_spy(*a, **k):
        out = originals["past_baseline_closes"](*a, **k)
        captured["past"].append({n: v.astype(np.float32) for n, v in out.items()})
        return out

    def now_spy(*a, **k):
        out = originals["baseline_closes"](*a, **k)
        captured["now"].append({n: v.astype(np.float32) for n, v in out.items()})
        return out

    def pool_spy(paths, *a, **k):
        captured["pool"].append(paths.copy())
        return pooled(paths, *a, **k)

    predictor_module.fit_follow, predictor_module.past_baseline_closes = fit_spy, past_spy
    predictor_module.baseline_closes = now_spy
    predictor_module._pooled = pool_spy
    predictor = KronosPredictor.from_pretrained("default", device="cpu")
    out, started = [], time.perf_counter()
    for i in range(0, len(origins), args.batch):
        batch = origins[i:i + args.batch]
        frames = [pd.DataFrame(by_name[o.series].bars[:o.index], columns=["open", "high", "low", "close", "volume",
                                                                           "amount"]) for o in batch]
        x_ts = [by_name[o.series].timestamps[:o.index] for o in batch]
        y_ts = [by_name[o.series].timestamps[o.index:o.index + args.pred_len] for o in batch]
        for v in captured.values():
            v.clear()
        forecasts = predictor.forecast_batch(frames, x_ts, y_ts, args.pred_len, sample_count=args.samples,
                                             seed=[1000 + i + j for j in range(len(batch))], quantiles=())
        pools, nows = iter(captured["pool"]), iter(captured["now"])
        fits, pasts = iter(captured["fit"]), iter(captured["past"])
        for o, f in zip(batch, forecasts):
            if not f.calibration.weights:
                continue
            s = by_name[o.series]
            paths, closes = next(pools), next(nows)
            (model, realised, last), others = next(fits), next(pasts)
            out.append({"series": o.series, "origin": o.index, "last": float(s.bars[o.index - 1, 3]),
                        "future": s.bars[o.index:o.index + args.pred_len, 3].astype(np.float64),
                        "paths": paths, "closes": closes, "past_model": model, "past_others": others,
                        "past_realised": realised, "past_last": last})
        print(f"{len(out)} origins recorded, {time.perf_counter() - started:.0f}s", flush=True)
    return out


def scores(paths: np.ndarray, future: np.ndarray, last: float) -> tuple[float, float, float]:
    """(crps_rel, coverage_50, coverage_80) of close paths (S, P)."""
    from kronos.stats.scores import crps_samples

    crps = float(crps_samples(paths, future).mean()) / last
    cover = []
    for level in (0.5, 0.8):
        lo, hi = np.quantile(paths, [(1 - level) / 2, (1 + level) / 2], axis=0)
        cover.append(float(((future >= lo) & (future <= hi)).mean()))
    return crps, cover[0], cover[1]


def followed(r: dict) -> dict:
    """The record with the model's paths (at the origin and the past origins) moved toward GARCH-t's spread
    as ``forecast()`` does (:func:`kronos.forecasting.combination.fit_follow`)."""
    from kronos.forecasting.calibration import rescale_paths
    from kronos.forecasting.combination import fit_follow, follow_factor, spread_by

    past = r["past_model"].astype(np.float64)
    garch = r["past_others"]["garch_t"]
    gamma = fit_follow(past, garch, r["past_realised"], r["past_last"])
    factor = follow_factor(r["paths"][..., 3], r["closes"]["garch_t"], r["last"], gamma)
    out = dict(r)
    out["paths"] = rescale_paths(r["paths"], factor.astype(np.float32), [0, 1, 2, 3], 3, r["last"], 1.0)
    out["past_model"] = spread_by(past, follow_factor(past, garch, r["past_last"], gamma))
    return out


def table(rows: list[dict], settings: dict[str, dict]) -> None:
    from kronos.forecasting.combination import BASELINES, fit_weights, pool_paths

    methods = {"model": None, **{n: None for n in BASELINES}, **settings}
    results: dict[str, list] = {name: [] for name in methods}
    for rows_r in rows:
        r = rows_r
        model_closes = r["paths"][..., 3].astype(np.float64)
        results["model"].append(scores(model_closes, r["future"], r["last"]))
        for n in BASELINES:
            results[n].append(scores(r["closes"][n].astype(np.float64), r["future"], r["last"]))
        moved = {}
        for name, setting in settings.items():
            if "follow" in setting:
                key = setting["follow"]
                if key not in moved:
                    moved[key] = followed(r)
                r = moved[key]
                if not setting.get("use"):
                    results[name].append(scores(r["paths"][..., 3].astype(np.float64), r["future"], r["last"]))
                    r = rows_r
                    continue
            else:
                r = rows_r
            others = {n: v for n, v in r["past_others"].items() if n in setting.get("use", BASELINES)}
            weights = fit_weights(r["past_model"], others, r["past_realised"], r["past_last"],
                                  prior=setting["prior"], strength=setting["strength"])
            pooled = pool_paths(r["paths"], r["closes"], weights)
            results[name].append(scores(pooled[..., 3].astype(np.float64), r["future"], r["last"]))
    series = np.array([r["series"] for r in rows])
    names = sorted(set(series))
    print(f"{len(rows)} origins of {len(names)} series")
    print("| setting | CRPS (rel) | vs garch_t | vs bootstrap | vs gaussian_rw | geo vs garch_t | geo vs boot | "
          "geo vs rw | cov 50 | cov 80 |\n|---|---|---|---|---|---|---|---|---|---|")
    crps = {k: np.array([v[0] for v in vals]) for k, vals in results.items()}
    for name, vals in results.items():
        arr = np.array(vals)
        ratios = []
        for b in BASELINES:
            per = [crps[name][series == n].mean() / crps[b][series == n].mean() for n in names]
            ratios.append(float(np.exp(np.mean(np.log(per)))))
        pooled = [arr[:, 0].mean() / crps[b].mean() for b in BASELINES]
        print(f"| {name} | {arr[:, 0].mean():.5f} | {pooled[0]:.3f} | {pooled[1]:.3f} | {pooled[2]:.3f} | "
              f"{ratios[0]:.3f} | {ratios[1]:.3f} | {ratios[2]:.3f} | {arr[:, 1].mean():.3f} | "
              f"{arr[:, 2].mean():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--every", type=int, default=3, help="every N-th file of the folder")
    parser.add_argument("--offset", type=int, default=0, help="first file taken")
    parser.add_argument("--origins", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--lookback", type=int, default=512)
    parser.add_argument("--pred-len", type=int, default=24)
    parser.add_argument("--tail-fraction", type=float, default=0.2)
    parser.add_argument("--val-fraction", type=float, default=0.125, help="of the rows before the tail")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="pickle of recorded origins (written when missing, read when present)")
    args = parser.parse_args()
    if args.cache and Path(args.cache).exists():
        rows = pickle.loads(Path(args.cache).read_bytes())
    else:
        rows = record(args)
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps(rows))
    from kronos.forecasting.combination import BASELINES, POOLED, PRIOR_ORIGINS, PRIOR_WEIGHTS

    even = {"kronos": 0.5, "garch_t": 0.5}
    g = ("garch_t",)
    four = {"kronos": .25, "garch_t": .25, "bootstrap": .25, "gaussian_rw": .25}
    settings = {  # the default first: forecast()'s own setting
        "default (follow + pool)": {"follow": "shape", "prior": PRIOR_WEIGHTS, "strength": PRIOR_ORIGINS,
                                    "use": POOLED},
        "follow only, no pool": {"follow": "shape", "use": ()},
        "pool only (garch .7, n0=8)": {"prior": PRIOR_WEIGHTS, "strength": PRIOR_ORIGINS, "use": POOLED},
        "pool all four, prior .5/.3/.2": {"prior": {"kronos": .5, "garch_t": .3, "bootstrap": .2},
                                          "strength": 8.0, "use": BASELINES},
        "pool all four, even, n0=8": {"prior": four, "strength": 8.0, "use": BASELINES},
        "follow + pool all four, even": {"follow": "shape", "prior": four, "strength": 8.0, "use": BASELINES},
        "pool garch, fixed 50/50": {"prior": even, "strength": 1e9, "use": g},
        "pool garch .5, fitted only": {"prior": even, "strength": 0.0, "use": g},
        "pool garch .5, n0=4": {"prior": even, "strength": 4.0, "use": g},
        "pool garch .7, n0=4": {"prior": {"kronos": .3, "garch_t": .7}, "strength": 4.0, "use": g},
        "follow + pool garch .5, n0=8": {"follow": "shape", "prior": even, "strength": 8.0, "use": g},
        "follow + pool garch .7, fitted only": {"follow": "shape", "prior": PRIOR_WEIGHTS, "strength": 0.0,
                                                "use": g},
    }
    table(rows, settings)


if __name__ == "__main__":
    main()
