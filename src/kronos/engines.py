"""Where batches of forecasts run: in this process or on an actor pool of Ray Data.

A job (a universe forecast, a walk-forward evaluation, a backtest) plans its series as
:class:`SeriesTask` batches with one :class:`TaskSettings`; :func:`run_batches` yields each batch's
results in order on the chosen engine. Every batch goes through the forecasting door
(:func:`~kronos.forecasting.forecast.forecast_series`) with each task's own seed, so the numbers do not
depend on the engine, the batch or the worker. A batch that fails is retried series by series, so only
the bad series fails.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .data.errors import first_line
from .forecasting.calibration import Calibration
from .forecasting.forecast import forecast_series
from .forecasting.inputs import tidy_frame
from .forecasting.options import ForecastOptions
from .forecasting.predictor import KronosPredictor

ENGINES = ("local", "ray")


@dataclass
class SeriesTask:
    """One series to forecast: what a worker needs (picklable, no file access)."""

    id: str
    bars: np.ndarray
    timestamps: pd.DatetimeIndex
    future: pd.DatetimeIndex
    seed: int
    calibration: Calibration | None = None  # a fitted one to apply instead of fitting


@dataclass(frozen=True)
class TaskSettings:
    """How every task of a job is forecast: the horizon, the :class:`ForecastOptions` (their seed and
    calibration are each task's own), and what a worker returns: the tidy frame (with the sample paths as
    ``path_k`` columns when ``paths``) or, with ``samples``, the (S, P, 6) sample paths."""

    pred_len: int
    options: ForecastOptions
    paths: bool = False
    samples: bool = False


# -- the work of one batch (the same in every engine) --------------------------------------------------------

def _frame(forecast: Any, settings: TaskSettings) -> pd.DataFrame:
    frame = tidy_frame([forecast], float32=True)
    if settings.paths:
        samples = forecast.samples  # (S, P, 6) -> one column per path, rows (timestamp, column)
        values = samples.transpose(1, 2, 0).reshape(-1, samples.shape[0]).astype("float32")
        paths = pd.DataFrame(values, columns=[f"path_{k}" for k in range(samples.shape[0])])
        frame = pd.concat([frame, paths], axis=1)
    return frame


def forecast_tasks(predictor: KronosPredictor, tasks: list[SeriesTask],
                   settings: TaskSettings) -> list[tuple[str, Any, str | None, Calibration | None]]:
    """(id, frame, None, calibration) or (id, None, reason, None) per task (the (S, P, 6) sample paths
    instead of the frame with ``settings.samples``); a batch that fails is retried series by series so that
    only the bad series fails (with per-series seeds the good ones come out the same)."""
    def run(part: list[SeriesTask]) -> list[Any]:
        options = settings.options.with_(seed=[t.seed for t in part], calibration=[t.calibration for t in part])
        return forecast_series(predictor, [(t.bars, t.timestamps) for t in part], options, [t.future for t in part])

    try:
        return [(t.id, f.samples if settings.samples else _frame(f, settings), None, f.calibration)
                for t, f in zip(tasks, run(tasks))]
    except Exception as exc:  # any failure belongs to this batch: find its series, report it per series
        if len(tasks) == 1:
            return [(tasks[0].id, None, first_line(exc), None)]
    out = []
    for t in tasks:
        out += forecast_tasks(predictor, [t], settings)
    return out


# -- engines ---------------------------------------------------------------------------------------------

def run_batches(predictor: KronosPredictor | None, batches: list[list[SeriesTask]], settings: TaskSettings, *,
                engine: str = "local", loader: dict[str, Any] | None = None, address: str | None = None,
                workers: int = 2, cpus_per_worker: float = 1, gpus_per_worker: float = 0) -> Iterator[list[Any]]:
    """The results of :func:`forecast_tasks` for each batch, in order, on ``engine`` ("local": ``predictor``
    in this process; "ray": an actor pool, each actor loading ``predictor`` or ``loader``'s model once).
    Starts a local Ray instance when none runs and no ``address`` is given, and shuts it down after."""
    if engine == "local":
        yield from _run_local(predictor or KronosPredictor.from_pretrained(**(loader or {})), batches, settings)
        return
    started = _ray_init(address, workers, cpus_per_worker, gpus_per_worker)
    try:
        yield from _run_ray(predictor, loader if predictor is None else None, batches, settings, workers=workers,
                            cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run_local(predictor: KronosPredictor, batches: list[list[SeriesTask]],
               settings: TaskSettings) -> Iterator[list[Any]]:
    for batch in batches:
        yield forecast_tasks(predictor, batch, settings)


class _RayWorker:
    """A Ray Data actor: loads the model once, then forecasts one planned batch per call."""

    def __init__(self, predictor_ref: Any, loader: dict[str, Any] | None, threads: int, settings: TaskSettings):
        import torch

        torch.set_num_threads(max(1, threads))
        if loader is not None:
            self.predictor = KronosPredictor.from_pretrained(**loader)
        else:
            import ray

            self.predictor = ray.get(predictor_ref[0])
        self.settings = settings

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for payload in batch["payload"]:
            tasks = pickle.loads(payload)
            out.append(pickle.dumps(forecast_tasks(self.predictor, tasks, self.settings)))
        return {"payload": np.array(out, dtype=object)}


def _ray_init(address: str | None, workers: int, cpus_per_worker: float, gpus_per_worker: float) -> bool:
    """Connect to ``address`` or start a local instance; True when this call started Ray."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("engine='ray' needs Ray Data: pip install 'kronos-kline[ray]'") from exc
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = max(int(np.ceil(workers * cpus_per_worker)) + 1, 2)
        ray.init(num_cpus=cpus, num_gpus=None if gpus_per_worker else 0, log_to_driver=False)
    return True


def _run_ray(predictor: KronosPredictor | None, loader: dict[str, Any] | None, batches: list[list[SeriesTask]],
             settings: TaskSettings, *, workers: int, cpus_per_worker: float,
             gpus_per_worker: float) -> Iterator[list[Any]]:
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the progress bar over series is ours
    if hasattr(context, "enable_operator_progress_bars"):
        context.enable_operator_progress_bars = False
    # results are matched to their batches by position: with several actors Ray Data would otherwise yield
    # them in the order they finish
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ref = [ray.put(predictor)] if loader is None else None  # in a list: Ray passes it to actors unresolved
    items = [{"payload": pickle.dumps(batch)} for batch in batches]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    resources: dict[str, Any] = {"num_cpus": cpus_per_worker}
    if gpus_per_worker:
        resources["num_gpus"] = gpus_per_worker
    threads = max(1, int(cpus_per_worker))
    forecasts = dataset.map_batches(_RayWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                    fn_constructor_args=(ref, loader, threads, settings), **resources)
    for row in forecasts.iter_rows():
        yield pickle.loads(row["payload"])
