"""Request and response bodies of the web service (pydantic, unknown fields rejected, NaN/inf rejected).

JSON bodies are validated strictly: an integer field takes only a JSON integer (not ``"5"``, not
``true``), a number field only a JSON number (not ``true``), a flag only ``true``/``false``.
Multipart form fields are text by nature and are converted (``"5"`` -> 5) instead.

The bounds here are hard ceilings that appear in the OpenAPI schema; the server's own, usually
tighter, limits (``ServiceLimits``) are checked by the serving layer and reported by ``GET /v1/model``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data.calendar import MAX_PRED_LEN
from ..forecasting.result import DEFAULT_PATHS, DEFAULT_QUANTILES, DEFAULT_SEED
from ..forecasting.sampling import MIN_TEMPERATURE

MAX_ABS_VALUE = 1e15  # larger prices/volumes overflow the float32 normalisation
HARD_MAX_ROWS = 1_000_000
HARD_MAX_SAMPLES = 4096

Value = Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
NonNegative = Annotated[float, Field(ge=0, le=MAX_ABS_VALUE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Bar(_Strict):
    """One candlestick. ``timestamp`` is ISO 8601 (a time-zone offset is dropped, keeping the wall-clock time)."""

    timestamp: Annotated[datetime, Field(strict=False)]  # "2024-01-02" (a date alone) is accepted
    open: Value
    high: Value
    low: Value
    close: Value
    volume: NonNegative | None = Field(None, description="traded volume; omit it in every bar if unknown")
    amount: NonNegative | None = Field(None, description="turnover; derived from volume and prices if omitted")


class ForecastSettings(_Strict):
    """How to forecast: horizon, sampling, quantile levels and output options."""

    pred_len: int = Field(20, ge=1, le=MAX_PRED_LEN, description="bars to forecast (server limit: GET /v1/model)")
    samples: int = Field(DEFAULT_PATHS, ge=1, le=HARD_MAX_SAMPLES,
                         description="sample paths (forecast()'s sample_count; server limit: GET /v1/model)")
    temperature: float = Field(1.0, ge=MIN_TEMPERATURE, le=100,
                               description=f"sampling temperature (forecast()'s T; at least {MIN_TEMPERATURE:g}; "
                                           "top_k=1 is greedy)")
    top_k: int = Field(0, ge=0, le=1_000_000, description="keep the k likeliest tokens; 0 = off, 1 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass (1 = off)")
    calibrate: bool = Field(True, description="rescale the paths' spread from forecasts at past origins of the "
                                              "history")
    dequantise: bool = Field(True, description="add the tokenizer's reconstruction residuals, drawn from the "
                                               "history, to the paths")
    combine: bool = Field(True, description="pool the calibrated paths with GARCH(1,1)-t's, weighted by their "
                                            "scores at the past origins (false: the model's paths alone)")
    seed: int | None = Field(DEFAULT_SEED, ge=0, le=2**63 - 1,
                             description=f"random seed of the sample paths (default {DEFAULT_SEED}: the same request "
                                         "gives the same forecast; null draws fresh paths every time)")
    quantiles: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: list(DEFAULT_QUANTILES), min_length=1, max_length=19,
        description="quantile levels in [0, 1] (a list, or comma-separated text in a form)")
    lookback: int | None = Field(None, ge=2, le=HARD_MAX_ROWS,
                                 description="history bars to use, the last ones (default: all; the network sees "
                                             "the model's lookback, earlier bars serve calibration)")
    freq: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]+$",
                             description="pandas frequency of the future bars (5min, h, D, B, W-FRI, ME); "
                                         "default: inferred from the history")
    calendar: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_/-]+$",
                                 description="exchange whose holidays and early closes the future bars skip (XNYS, "
                                             "XLON, XETR, XTKS, ...: exchange_calendars names); default: detected "
                                             "from the weekdays missing in the history; 'none': no exchange calendar")
    cutoff: datetime | None = Field(
        None, description="forecast vs actual: forecast from this time inside the data; the bars at and after it "
                          "are held out and returned beside the forecast (realised, crps, hits)")
    chart: bool = Field(False, description="also return a Plotly figure (data + layout) of history and forecast")
    history_bars: int = Field(120, ge=1, le=5000, description="history bars drawn in the chart")

    @field_validator("quantiles", mode="before")
    @classmethod
    def _split_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class ForecastRequest(ForecastSettings):
    """JSON body of ``POST /v1/forecast``: the bars (oldest first) and the settings."""

    bars: list[Bar] = Field(min_length=2, max_length=HARD_MAX_ROWS)


class ForecastResponse(BaseModel):
    """The forecast: per column, the mean and each quantile level over the sample paths."""

    timestamps: list[str] = Field(description="ISO 8601 timestamps of the forecast bars")
    columns: list[str]
    mean: dict[str, list[float]] = Field(description="column -> mean per forecast bar")
    quantiles: dict[str, dict[str, list[float]]] = Field(description="level (text) -> column -> values")
    freq: str = Field(description="how the future timestamps were made")
    history_rows: int = Field(description="history bars given (after lookback); the network sees the last of "
                                          "them up to the model's lookback")
    history_end: str
    samples: int
    model: str
    elapsed_ms: float = Field(description="time from request to answer, queueing included")
    calibration: dict[str, Any] | None = Field(
        None, description="what calibration did: past origins used, drift_kept (share of the model's drift kept, "
                          "0 to 1; shrink is the same number), spread factor per forecast bar (scale), the share of "
                          "paths per method when pooled with GARCH(1,1)-t (weights; empty with combine=false), a "
                          "summary in words, or why it did not run (note)")
    chart: dict[str, Any] | None = None
    repairs: list[str] = Field(default_factory=list, description="what a lenient server repaired in the bars "
                                                                 "(empty when nothing was)")
    realised: dict[str, list[float]] | None = Field(
        None, description="with a cutoff: column -> realised values of the forecast bars inside the data")
    crps: dict[str, list[float]] | None = Field(
        None, description="with a cutoff: column -> CRPS of the sample paths per realised bar (column's units)")
    hits: dict[str, dict[str, list[bool]]] | None = Field(
        None, description="with a cutoff: interval level ('50', '80') -> column -> realised value inside the "
                          "central interval of the paths")
    holdout: dict[str, Any] | None = Field(
        None, description="with a cutoff: over the realised bars, the close's mean CRPS (also as a fraction of "
                          "the last close before the cutoff) and the share inside the 50% and 80% intervals")


class ErrorResponse(BaseModel):
    detail: str = Field(description="one-line message naming the field, row or limit")
    errors: list[dict[str, Any]] | None = Field(None, description="validation errors, field by field")
