"""Serving logic: request -> validated bars -> queued, batched model call -> response body.

One worker task owns the model. Requests wait in a bounded queue; the worker takes the oldest and
every other waiting request with the same sampling settings, up to ``max_batch_series`` series and
``max_batch_paths`` sample paths, and runs them as one call of the forecasting door in a thread. Each
request draws from its own seed (``seed``, default 0; a random one when the request sets ``null``), so
its answer does not depend on which requests share its call: the same request gives the same forecast.
At most one model call runs at a time, so memory is bounded whatever the number of concurrent
clients; a full queue answers 429 and a request that waits past the timeout 503. Calibration's
past-origin forecasts are kept in the predictor's bounded store (``predictor.past_forecasts``) across
requests, so a calibrated request for a series seen before forecasts only its own paths.

Every request's cost is estimated before it is queued (:func:`~kronos.service.checks.forecast_work`)
and refused over ``max_work``. A model call stops between generation steps once every request in
it has been given up (timed out, or its client disconnected), and the worker moves on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.calendar import check_calendar, future_timestamps
from ..data.tables import TableError, frame_to_series, parse_table
from ..forecasting.forecast import ForecastCancelled, forecast_series
from ..forecasting.inputs import from_arrays
from ..forecasting.options import ForecastOptions
from ..forecasting.predictor import Forecast, KronosPredictor
from .checks import check_ohlc, forecast_work
from .schemas import MAX_ABS_VALUE, ForecastRequest, ForecastSettings
from .upload import UploadRefused, check_table_bytes

log = logging.getLogger("kronos.service")
_libc: Any = None


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    glibc keeps what a large model call or parse freed in its arenas, so without this a long-running
    server's resident size ratchets up to its worst moment and stays there.
    """
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        _libc = False


@dataclass
class ServiceLimits:
    """Server-side limits (``kronos serve`` options); every one is checked before the model runs."""

    max_body_bytes: int = 8 * 2**20
    max_rows: int = 20_000
    max_pred_len: int = 512
    max_samples: int = 100
    request_timeout_s: float = 120.0
    max_queue: int = 512
    max_batch_series: int = 16
    max_batch_paths: int = 1024
    max_work: int = 400_000  # token work per request (see checks.forecast_work)
    max_columns: int = 64  # columns in an uploaded table
    max_line_bytes: int = 8192  # longest line of an uploaded CSV
    max_unpacked_bytes: int = 64 * 2**20  # a Parquet upload's uncompressed size
    header_timeout_s: float = 10.0  # a connection's request head must arrive within this
    body_timeout_s: float = 30.0  # and its body within this
    keep_alive_s: float = 5.0  # idle keep-alive connections are closed after this
    max_connections: int = 640  # open connections; beyond it idle or half-open ones are closed, oldest first
    lenient: bool = False  # repair inconsistent bars (high/low widened, rows with prices <= 0 dropped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FORM_READING = ("time_column", "date_format", "dayfirst", "symbol")  # upload form fields that say how to read it
MAX_SYMBOLS_LISTED = 500


def form_option(name: str, value: Any = None) -> str | None:
    """How the page and the upload API name a reading option: the page's box and its form field, when there is
    one (other reading options are not offered by the service, so their fix is left out)."""
    if name == "time_column":
        return "the Time column box (form field 'time_column')"
    if name == "date_format":
        return "the Date format box (form field 'date_format', e.g. %d.%m.%Y)"
    if name == "dayfirst" and isinstance(value, bool):
        return (f"Dates: {'day first' if value else 'month first'} (form field "
                f"dayfirst={'true' if value else 'false'})")
    return None


def reading_fields(fields: dict[str, str]) -> dict[str, Any]:
    """The upload form's reading fields as ``job_from_csv`` keywords; ServiceError naming a bad one."""
    out: dict[str, Any] = {name: (fields.get(name) or "").strip() or None for name in FORM_READING}
    for name, value in out.items():
        if value is not None and len(value) > 120:
            raise ServiceError(422, f"form field '{name}' is {len(value)} characters long; at most 120")
    if out["dayfirst"] is not None:
        flag = out["dayfirst"].lower()
        if flag not in ("true", "false"):
            raise ServiceError(422, f"form field 'dayfirst' must be true or false (or empty: from the file), got "
                                    f"{out['dayfirst']!r}")
        out["dayfirst"] = flag == "true"
    if out["date_format"] is not None and "%" not in out["date_format"]:
        raise ServiceError(422, f"form field 'date_format' must be a strftime format such as %d.%m.%Y, got "
                                f"{out['date_format']!r}")
    if out["date_format"] is not None and out["dayfirst"] is not None:
        raise ServiceError(422, "give form field 'date_format' or 'dayfirst', not both")
    return out


class ServiceError(Exception):
    """A request the service refuses: HTTP ``status`` with a one-line ``detail``."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers


@dataclass
class Job:
    """One validated request waiting for the model."""

    bars: pd.DataFrame  # (T, <=6) history, indexed by timestamp
    future: pd.DatetimeIndex  # (pred_len,)
    rule: str
    settings: ForecastSettings
    key: tuple
    work: int = 0
    repairs: list[str] = field(default_factory=list)
    done: asyncio.Future | None = field(default=None, repr=False)  # set by submit(), on the event loop
    cancelled: bool = False  # given up (timed out, or the client went away): the worker may drop it
    deadline: float = float("inf")  # time.monotonic() after which nobody waits for the answer
    realised: pd.DataFrame | None = None  # with a cutoff: the bars at and after it, inside the horizon
    seed: int = 0  # this request's own random stream (see _seed)


def _batch_key(settings: ForecastSettings) -> tuple:
    """Requests with equal keys may share a model call (each keeps its own seed, :func:`_seed`)."""
    return (settings.samples, settings.temperature, settings.top_k, settings.top_p, settings.calibrate,
            settings.dequantise, settings.combine)


def _seed(settings: ForecastSettings) -> int:
    """The request's seed; a fresh random one when it asked for none (``seed: null``)."""
    return settings.seed if settings.seed is not None else secrets.randbelow(2**63)


class ForecastService:
    """The queue and worker in front of one ``KronosPredictor``."""

    def __init__(self, predictor: KronosPredictor, limits: ServiceLimits, model_name: str):
        self.predictor, self.limits, self.model_name = predictor, limits, model_name
        self._pending: deque[Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.model_calls = 0
        self.cancelled_calls = 0
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; a model call in flight stops at its next generation step (so shutdown is prompt)."""
        self._closing = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    @property
    def queued(self) -> int:
        return len(self._pending)

    def past_forecasts(self) -> dict[str, int]:
        """The predictor's store of calibration's past-origin forecasts, shared by every request: a
        calibrated request for a series seen before finds its past forecasts there (keyed by the bars'
        content, :mod:`kronos.forecasting.past_forecasts`). Entries, bytes held, the bound, hits and misses."""
        store = self.predictor.past_forecasts
        return {"entries": len(store), "bytes": store.bytes, "max_bytes": store.max_bytes, "hits": store.hits,
                "misses": store.misses}

    # -- validation -----------------------------------------------------------------------------------
    def effective(self, settings: ForecastSettings) -> ForecastSettings:
        """Settings with an unset pred_len/samples lowered to this server's limit (user value, then server
        limit, then API default); a value the client set is checked, never changed."""
        update = {name: getattr(self.limits, f"max_{name}") for name in ("pred_len", "samples")
                  if name not in settings.model_fields_set and getattr(settings, name) > getattr(self.limits,
                                                                                               f"max_{name}")}
        return settings.model_copy(update=update) if update else settings

    def _check_limits(self, settings: ForecastSettings, rows: int) -> None:
        lim = self.limits
        if rows > lim.max_rows:
            raise ServiceError(413, f"{rows} bars sent; this server accepts at most {lim.max_rows} (max_rows)")
        if settings.pred_len > lim.max_pred_len:
            raise ServiceError(422, f"pred_len {settings.pred_len} is above this server's limit {lim.max_pred_len}")
        if settings.samples > lim.max_samples:
            raise ServiceError(422, f"samples {settings.samples} is above this server's limit {lim.max_samples}")

    def _job(self, frame: pd.DataFrame, settings: ForecastSettings, name: str, time_column: str | None,
             date_format: str | None = None, dayfirst: bool | None = None, symbol: str | None = None) -> Job:
        try:
            calendar = check_calendar(settings.calendar)
        except ValueError as exc:
            raise ServiceError(422, str(exc)) from exc
        try:
            series = frame_to_series(frame, name, time_column=time_column, date_format=date_format,
                                     dayfirst=dayfirst)
        except TableError as exc:
            raise ServiceError(422, exc.phrased(form_option)) from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise ServiceError(422, str(exc)) from exc
        series = [_one_symbol(series, name, symbol)]
        try:
            bars, repairs = check_ohlc(series[0].frame(), name, lenient=self.limits.lenient)
        except ValueError as exc:
            raise ServiceError(422, str(exc)) from exc
        given = {str(c).strip().lower() for c in frame.columns if frame[c].notna().any()}  # not derived amount
        checked = bars[[c for c in bars.columns if c in given or c in ("open", "high", "low", "close")]]
        values = checked.to_numpy(dtype=np.float64, na_value=np.nan)
        too_big = np.abs(np.nan_to_num(values)) > MAX_ABS_VALUE
        if too_big.any():
            row, col = np.argwhere(too_big)[0]
            raise ServiceError(422, f"{name} column '{checked.columns[col]}' has value {values[row, col]:g} at row "
                                    f"{row}; values must be within ±{MAX_ABS_VALUE:g}")
        realised = None
        if settings.cutoff is not None:
            from ..forecasting.holdout import split_at

            every = bars
            try:
                bars, realised = split_at(bars, settings.cutoff)
            except (ValueError, OverflowError) as exc:  # beyond the years pandas timestamps cover
                raise ServiceError(422, f"cutoff {settings.cutoff}: {exc}") from exc
            realised = realised.iloc[:settings.pred_len]
            if len(realised) == 0:
                raise ServiceError(422, f"cutoff {settings.cutoff.isoformat()} is after the last bar of {name} "
                                        f"({every.index[-1].isoformat()}); pick a time inside the data")
        if settings.lookback:
            bars = bars.iloc[-settings.lookback:]
        if len(bars) < 2:
            where = " before the cutoff" if settings.cutoff is not None else " after lookback"
            raise ServiceError(422, f"{name} has {len(bars)} bar(s){where}; at least 2 are needed")
        work = self.work(len(bars), settings)
        if work > self.limits.max_work:
            raise ServiceError(422, f"this request costs {work} units of work (pred_len {settings.pred_len} x "
                                    f"{settings.samples} samples{', calibrated' if settings.calibrate else ''}, "
                                    f"{len(bars)} bars); this server's limit is {self.limits.max_work} (max_work): "
                                    "ask for fewer bars, samples or history, or calibrate=false")
        try:
            if realised is not None and len(realised) == settings.pred_len:
                future, rule = realised.index, "the bars after the cutoff"
            elif realised is not None:  # the horizon runs past the data: continue the calendar
                more, rule = future_timestamps(every.index, settings.pred_len - len(realised), settings.freq)
                future = realised.index.append(more)
            else:
                future, rule = future_timestamps(bars.index, settings.pred_len, settings.freq, calendar)
        except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
            raise ServiceError(422, f"{name}: the {settings.pred_len} forecast bars after {bars.index[-1]} would pass "
                                    f"{pd.Timestamp.max.date()}, the last date timestamps can hold; check the "
                                    "timestamps") from exc
        except (ValueError, TypeError, MemoryError) as exc:
            raise ServiceError(422, f"could not make the future timestamps: {exc}") from exc
        return Job(bars, future, rule, settings, _batch_key(settings), work=work, repairs=repairs,
                   realised=realised, seed=_seed(settings))

    def work(self, rows: int, settings: ForecastSettings) -> int:
        """The request's token work (compared with ``max_work``)."""
        return forecast_work(rows, settings.pred_len, settings.samples, settings.calibrate, self.predictor.lookback,
                             self.predictor.max_context)

    def job_from_json(self, request: ForecastRequest) -> Job:
        request = self.effective(request)
        self._check_limits(request, len(request.bars))
        frame = pd.DataFrame({
            "timestamp": [bar.timestamp.replace(tzinfo=None) for bar in request.bars],
            **{c: [getattr(bar, c) for bar in request.bars] for c in ("open", "high", "low", "close")},
            **{c: [np.nan if getattr(bar, c) is None else getattr(bar, c) for bar in request.bars]
               for c in ("volume", "amount")},
        })
        return self._job(frame, request, "bars", "timestamp")

    def job_from_csv(self, data: bytes, filename: str, settings: ForecastSettings, time_column: str | None = None,
                     date_format: str | None = None, dayfirst: bool | None = None,
                     symbol: str | None = None) -> Job:
        settings = self.effective(settings)
        lim = self.limits
        try:
            check_table_bytes(data, filename, max_bytes=lim.max_body_bytes, max_columns=lim.max_columns,
                              max_line_bytes=lim.max_line_bytes, max_rows=lim.max_rows,
                              max_unpacked_bytes=lim.max_unpacked_bytes)
        except UploadRefused as exc:
            raise ServiceError(exc.status, str(exc)) from exc
        try:
            frame = parse_table(data, filename)
        except TableError as exc:
            raise ServiceError(422, exc.phrased(form_option)) from exc
        except ImportError as exc:
            raise ServiceError(415, str(exc)) from exc
        if len(frame) == 0:
            raise ServiceError(422, f"{filename} has no data rows (a header only)")
        self._check_limits(settings, len(frame))
        return self._job(frame, settings, filename, time_column, date_format, dayfirst, symbol)

    # -- queue ----------------------------------------------------------------------------------------
    async def submit(self, job: Job) -> Forecast:
        """Queue ``job`` and wait for its forecast (ServiceError 429 when full, 503 after the timeout)."""
        if len(self._pending) >= self.limits.max_queue:
            raise ServiceError(429, f"server busy: {len(self._pending)} requests queued (max_queue); retry later",
                               headers={"Retry-After": "1"})
        job.done = asyncio.get_running_loop().create_future()
        job.deadline = time.monotonic() + self.limits.request_timeout_s
        self._pending.append(job)
        assert self._wakeup is not None, "ForecastService.start() was not called"
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            job.cancelled = True
            raise ServiceError(503, f"timed out after {self.limits.request_timeout_s:g}s waiting for the model",
                               headers={"Retry-After": "5"}) from None

    def _take_batch(self) -> list[Job]:
        first = self._pending.popleft()
        batch, paths, kept = [first], first.settings.samples, deque()
        while self._pending:
            job = self._pending.popleft()
            fits = (job.key == first.key and len(batch) < self.limits.max_batch_series
                    and paths + job.settings.samples <= self.limits.max_batch_paths)
            if fits and not job.cancelled:
                batch.append(job)
                paths += job.settings.samples
            elif not job.cancelled:
                kept.append(job)
        self._pending.extendleft(reversed(kept))
        return [job for job in batch if not job.cancelled]

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._take_batch()
                if not batch:
                    continue
                try:
                    results = await asyncio.to_thread(self._run_batch, batch)
                except Exception as exc:  # keep serving: each job gets its own error
                    log.exception("model call failed")
                    results = [exc] * len(batch)
                if not self._pending:  # idle for now: give freed memory back
                    await asyncio.to_thread(release_memory)
                for job, result in zip(batch, results):
                    if job.cancelled:  # nobody waits for it any more
                        job.done.cancel()
                    if job.done.done():
                        continue
                    if isinstance(result, BaseException):
                        job.done.set_exception(result)
                    else:
                        job.done.set_result(result)

    def _run_batch(self, batch: list[Job]) -> list[Forecast | Exception]:
        """One model call for the batch (in a worker thread); on a ValueError, retry one by one to blame one."""
        self.model_calls += 1
        s = batch[0].settings

        def given_up() -> bool:  # asked between generation steps, in this thread
            now = time.monotonic()
            return self._closing or all(job.cancelled or now > job.deadline for job in batch)

        try:
            options = ForecastOptions(sample_count=s.samples, T=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                      quantiles=(), seed=[job.seed for job in batch], calibrate=s.calibrate,
                                      dequantise=s.dequantise, combine=s.combine, should_stop=given_up)
            inputs = [from_arrays(job.bars.to_numpy(dtype=np.float32), job.bars.index, job.future, name=f"bars[{i}]")
                      for i, job in enumerate(batch)]  # checked when the job was made; float arrays from here
            return forecast_series(self.predictor, inputs, options)
        except ForecastCancelled as exc:
            self.cancelled_calls += 1
            log.info("model call dropped: %s; nobody waits for it", exc)
            return [ServiceError(503, f"stopped: {exc}", headers={"Retry-After": "5"})] * len(batch)
        except ValueError as exc:
            if len(batch) == 1:
                return [ServiceError(422, str(exc))]
            return [self._run_batch([job])[0] for job in batch]


def _one_symbol(series: list, name: str, symbol: str | None) -> Any:
    """The one series of the request: the only one, or the one named by ``symbol`` (form field 'symbol');
    otherwise a 422 whose ``errors`` list the symbols, so the page can offer them."""
    names = [s.name for s in series]
    id_column = series[0].id_column
    if symbol is not None and id_column is not None and symbol in names:
        return series[names.index(symbol)]
    if symbol is None and len(series) == 1:
        return series[0]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    if id_column is None:
        detail = f"{name} holds one series without a symbol column; leave the Symbol (form field 'symbol') empty"
    elif symbol is None:
        detail = (f"{name} holds {len(names)} series (column '{id_column}': {shown}); pick one with the Symbol menu "
                  "(form field 'symbol')")
    else:
        detail = f"{name} has no series {symbol[:60]!r} in column '{id_column}' ({shown})"
    errors = [{"loc": ["symbol"], "type": "symbol", "msg": detail, "symbols": names[:MAX_SYMBOLS_LISTED]}]
    raise ServiceError(422, detail, errors if id_column is not None else None)


def response_body(job: Job, forecast: Forecast, model_name: str, started: float) -> dict[str, Any]:
    """The ForecastResponse as a dict (the chart is added by the caller when asked for)."""
    levels = job.settings.quantiles
    columns = list(forecast.columns)
    quantiles = np.quantile(forecast.samples, levels, axis=0)  # (Q, P, 6)
    mean = forecast.samples.mean(axis=0)  # (P, 6)
    return {
        "timestamps": [t.isoformat() for t in forecast.timestamps],
        "columns": columns,
        "mean": {c: mean[:, j].astype(float).tolist() for j, c in enumerate(columns)},
        "quantiles": {f"{q:g}": {c: quantiles[i, :, j].astype(float).tolist() for j, c in enumerate(columns)}
                      for i, q in enumerate(levels)},
        "freq": job.rule,
        "history_rows": len(job.bars),
        "history_end": job.bars.index[-1].isoformat(),
        "samples": forecast.samples.shape[0],
        "model": model_name,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        "calibration": calibration_dict(forecast),
        "repairs": job.repairs,
        **holdout_fields(job, forecast),
    }


def json_bytes(body: dict[str, Any]) -> bytes:
    """The response as JSON; a non-finite number becomes a 422 naming where it is, never a 500."""
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        where = _non_finite_path(body) or "the response"
        raise ServiceError(422, f"the forecast has a non-finite value at {where}: the model's output overflowed "
                                "(values too large or too far apart for this model); scale the input or lower "
                                "pred_len") from None


def _non_finite_path(value: Any, path: str = "") -> str | None:
    if isinstance(value, float):
        return None if np.isfinite(value) else path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_path(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def holdout_fields(job: Job, forecast: Forecast) -> dict[str, Any]:
    """With a cutoff: the realised values, CRPS and interval hits per column, and their summary."""
    if job.realised is None:
        return {}
    from ..forecasting.holdout import scores, summary

    numbers = scores(forecast, job.realised)
    columns = list(forecast.columns)

    known = np.isfinite(numbers["realised"]).all(axis=0)  # columns the data has

    def per_column(values: np.ndarray, kind: type = float) -> dict[str, list]:
        return {c: [kind(v) for v in values[:, j]] for j, c in enumerate(columns) if known[j]}

    return {"realised": per_column(numbers["realised"]), "crps": per_column(numbers["crps"]),
            "hits": {"50": per_column(numbers["in_50"], bool), "80": per_column(numbers["in_80"], bool)},
            "holdout": summary(forecast, job.realised, float(job.bars["close"].iloc[-1]))}


def calibration_dict(forecast: Forecast) -> dict[str, Any] | None:
    """JSON-ready report of a forecast's calibration (None when it was not asked for)."""
    c = forecast.calibration
    if c is None:
        return None
    return {"origins": c.origins, "shrink": round(c.shrink, 4), "drift_kept": round(c.shrink, 4),
            "scale": [round(float(v), 4) for v in c.scale], "ends": list(c.ends), "note": c.note, "summary": c.summary,
            "weights": {name: round(weight, 4) for name, weight in c.weights}, "follow": round(c.follow, 4)}
