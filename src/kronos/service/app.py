"""The FastAPI application: routes, the body-size guard, the page and its files.

Routes are thin: they turn HTTP into ``ForecastService`` calls and ``ServiceError`` into JSON errors
(``{"detail": ..., "errors": [...]}``). The service reads no path a client names: uploads are read
from the request body, examples come from a fixed list of the package's own files. Request work
that costs CPU (JSON validation, table parsing, calendars, charts, the response's JSON) runs in
worker threads, so the event loop keeps answering ``/healthz`` under load. Browser safety (Host
allow-list, cross-origin refusal, security headers) is in :mod:`.security`, the bounds on slow
connections in :mod:`.server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from .. import __version__
from ..forecasting.predictor import KronosPredictor
from .schemas import ErrorResponse, ForecastRequest, ForecastResponse, ForecastSettings
from .security import BrowserGuard, BrowserPolicy
from .server import MAX_HEAD_BYTES
from .serving import (
    FORM_READING,
    ForecastService,
    Job,
    ServiceError,
    ServiceLimits,
    json_bytes,
    reading_fields,
    response_body,
)
from .upload import in_worker

log = logging.getLogger("kronos.service")
STATIC = Path(__file__).parent / "static"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples_data"
ERRORS = {status: {"model": ErrorResponse} for status in (400, 403, 404, 408, 413, 415, 422, 429, 431, 503)}
MAX_ERRORS_LISTED = 20
FORM_FILE_FIELD = "file"
FORM_TIME_COLUMN = "time_column"


def plotly_js_path() -> Path:
    """plotly.min.js shipped inside the plotly Python package (served locally: the page needs no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def example_files() -> dict[str, Path]:
    """The bundled example CSVs by name (the only files a client can ask for, by name, never by path)."""
    return {path.stem: path for path in sorted(EXAMPLES.glob("*.csv"))}


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"detail": detail} if errors is None else {"detail": detail, "errors": errors}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_detail(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """One line naming the first bad field, and the JSON-safe list of all errors (inputs left out)."""
    count = exc.error_count()
    errors = json.loads(exc.json(include_input=False, include_url=False))[:MAX_ERRORS_LISTED]
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}", errors


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (by Content-Length, or counted while streaming),
    408 for a body that has not arrived ``timeout_s`` after the app first asked for it."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 30.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(send, scope)
            return
        received = 0
        started = False
        complete = False
        deadline: float | None = None

        async def limited_receive() -> dict:
            nonlocal received, complete, deadline
            if complete:  # the body is in: what follows is the disconnect, waited for without a deadline
                return await receive()
            deadline = deadline or time.monotonic() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, scope)
        except _BodyTimeout:
            if not started:
                response = error_response(408, f"the request body did not arrive within {self.timeout_s:g}s "
                                               "(body_timeout_s)", headers={"Connection": "close"})
                await response(scope, _empty_receive, send)

    async def _reject(self, send: Any, scope: dict) -> None:
        response = error_response(413, f"request body is larger than this server's limit of {self.max_bytes} "
                                       "bytes (max_body_bytes)")
        await response(scope, _empty_receive, send)


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


async def _empty_receive() -> dict:
    return {"type": "http.disconnect"}


def _job_from_json(body: bytes, service: ForecastService) -> Job:
    """Validate a JSON body and make its job (in a worker thread: both cost CPU)."""
    stamps, most = body.count(b'"timestamp"'), service.limits.max_rows
    if stamps > most:  # counted on the bytes: no bar objects are built for a body that is too long anyway
        raise ServiceError(413, f"the body holds {stamps} bar timestamps; this server accepts at most {most} bars "
                                "(max_rows)")
    try:
        payload = ForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        detail, errors = validation_detail(exc)
        raise ServiceError(422, detail, errors) from exc
    return service.job_from_json(payload)


async def _read_json(request: Request, service: ForecastService) -> Job:
    return await in_worker(_job_from_json, await request.body(), service)


async def _read_form(request: Request, service: ForecastService):
    form = await request.form(max_files=1, max_fields=32)
    upload = form.get(FORM_FILE_FIELD)
    if not isinstance(upload, UploadFile):
        raise ServiceError(422, f"multipart form needs a CSV or Parquet file in the field '{FORM_FILE_FIELD}'")
    fields = {k: v for k, v in form.multi_items() if k != FORM_FILE_FIELD}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise ServiceError(422, f"form field '{key}' must be text, got a file")
    reading = reading_fields(fields)
    fields = {k: v for k, v in fields.items() if k not in FORM_READING}
    try:  # form fields are text: converted, unlike JSON's strictly typed values
        settings = ForecastSettings.model_validate({k: v for k, v in fields.items() if v != ""}, strict=False)
    except ValidationError as exc:
        detail, errors = validation_detail(exc)
        raise ServiceError(422, detail, errors) from exc
    data = await upload.read()
    name = Path(upload.filename or "upload.csv").name[:120] or "upload.csv"  # a label for messages only
    return await in_worker(service.job_from_csv, data, name, settings, reading["time_column"],
                           reading["date_format"], reading["dayfirst"], reading["symbol"])


async def _wait_for_disconnect(request: Request) -> None:
    """Returns when the client has gone (the body has been read: only the disconnect can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _forecast_or_disconnect(request: Request, service: ForecastService, job: Job) -> Any:
    """The job's forecast; if the client disconnects first, the job is given up (the model call stops)."""
    answer = asyncio.ensure_future(service.submit(job))
    gone = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not answer.done():
        job.cancelled = True
        answer.cancel()
        raise ServiceError(503, "the client disconnected", headers={"Retry-After": "1"})
    return answer.result()


FORECAST_OPENAPI = {
    "description": "Uploads (multipart/form-data) must carry the header X-Kronos-Client (any value, e.g. curl -H "
                   "'X-Kronos-Client: curl'); JSON bodies need no extra header. A request head (request line and "
                   f"headers) over {MAX_HEAD_BYTES // 1024} KiB is answered 431.",
    "parameters": [{
        "name": "X-Kronos-Client", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "required for multipart/form-data uploads (any value): it keeps web pages on other sites "
                       "from posting forms to this server; the page at / sends it",
    }],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ForecastRequest"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": [FORM_FILE_FIELD],
                "properties": {
                    FORM_FILE_FIELD: {"type": "string", "format": "binary",
                                      "description": "CSV or Parquet: a timestamp column and open, high, low, close "
                                                     "(volume, amount optional)"},
                    FORM_TIME_COLUMN: {"type": "string", "description": "name of the timestamp column"},
                    "date_format": {"type": "string", "description": "strftime format of the timestamps, e.g. "
                                                                     "%d.%m.%Y (default: found from the values)"},
                    "dayfirst": {"type": "string", "enum": ["true", "false", ""],
                                 "description": "true: 10.04.2015 is 10 April; false: October 4; empty: from the "
                                                "file (refused when it cannot tell)"},
                    "symbol": {"type": "string", "description": "the series to forecast from a table of many "
                                                                "(its symbol column)"},
                    **{name: {"type": "string", "description": f"as in ForecastRequest.{name}"}
                       for name in ForecastSettings.model_fields},
                }}},
        },
    },
}


def create_app(predictor: KronosPredictor, limits: ServiceLimits | None = None, model_name: str = "default",
               model_info: dict[str, Any] | None = None, policy: BrowserPolicy | None = None) -> FastAPI:
    """The service around a loaded predictor (kept, with the queue, on ``app.state``).

    ``policy`` says which Host names and cross-origin callers are accepted (default: loopback names,
    no cross-origin caller).
    """
    limits = limits or ServiceLimits()
    policy = policy or BrowserPolicy()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service.start()
        yield
        await app.state.service.stop()

    app = FastAPI(title="Kronos forecasting service", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # /docs is a local page below: no CDN
                  description="Probabilistic forecasts of OHLCV candlesticks with a Kronos model. "
                              "POST bars as JSON or upload a CSV (uploads carry the header X-Kronos-Client, any "
                              "value); the page at / does it in a browser.")
    app.state.service = ForecastService(predictor, limits, model_name)
    app.state.model_info = model_info or {"model": model_name, "max_context": predictor.max_context,
                                          "device": str(predictor.device)}
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    if policy.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(policy.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-kronos-client"])
    app.add_middleware(BrowserGuard, policy=policy)  # outermost: refuses before a body is read

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.detail, exc.errors, exc.headers)

    @app.get("/healthz", summary="Liveness: the model is loaded, the queue length and the past forecasts kept")
    async def healthz(request: Request) -> dict[str, Any]:
        service: ForecastService = request.app.state.service
        return {"status": "ok", "queued": service.queued, "model_calls": service.model_calls,
                "cancelled_calls": service.cancelled_calls, "past_forecasts": service.past_forecasts()}

    @app.get("/v1/model", summary="The loaded model and this server's limits")
    async def model(request: Request) -> dict[str, Any]:
        return {**request.app.state.model_info, "limits": request.app.state.service.limits.as_dict(),
                "version": __version__}

    @app.get("/v1/examples", summary="Bundled real example CSVs")
    async def examples() -> list[dict[str, Any]]:
        return [{"name": name, "url": f"/v1/examples/{name}.csv"} for name in example_files()]

    @app.get("/v1/examples/{name}.csv", response_class=PlainTextResponse, responses={404: {"model": ErrorResponse}},
             summary="One bundled example as CSV")
    async def example(name: str) -> Response:
        files = example_files()
        if name not in files:
            raise ServiceError(404, f"no example named {name[:60]!r}; there are {', '.join(files)}")
        return FileResponse(files[name], media_type="text/csv", filename=f"{name}.csv")

    @app.post("/v1/forecast", response_model=ForecastResponse, responses=ERRORS, openapi_extra=FORECAST_OPENAPI,
              summary="Forecast the next bars of a series (JSON bars, or a CSV/Parquet upload)")
    async def forecast(request: Request) -> JSONResponse:
        started = time.perf_counter()
        service: ForecastService = request.app.state.service
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            job = await _read_json(request, service)
        elif content_type == "multipart/form-data":
            job = await _read_form(request, service)
        else:
            raise ServiceError(415, f"content type {content_type[:60] or 'none'!r} is not accepted; send "
                                    "application/json or multipart/form-data with a CSV file")
        result = await _forecast_or_disconnect(request, service, job)
        body = await in_worker(_finish, job, result, service.model_name, started)
        return Response(body, media_type="application/json")

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request models (the route reads its body itself, so FastAPI omits them)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            request = ForecastRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(request.pop("$defs", {}))
            schemas["ForecastRequest"] = request
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        return FileResponse(plotly_js_path(), media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    return app


def _finish(job: Any, forecast: Any, model_name: str, started: float) -> bytes:
    body = response_body(job, forecast, model_name, started)
    body["chart"] = None
    json_bytes(body)  # a non-finite forecast is a 422 before any chart is drawn
    if job.settings.chart:
        from ..charts import plotly_json

        body["chart"] = plotly_json(job.bars, forecast, job.settings.history_bars, realised=job.realised)
    body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return json_bytes(body)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerThread:
    """Run ``app`` with uvicorn in a background thread (for notebooks, tests and benchmarks).

    ``with ServerThread(app) as url: ...`` starts it on a free loopback port, waits until it accepts
    requests, and stops it on exit.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"):
        import uvicorn

        from .server import uvicorn_config

        self.host, self.port = host, port or free_port(host)
        limits = app.state.service.limits if hasattr(app.state, "service") else ServiceLimits()
        self.server = uvicorn.Server(uvicorn_config(app, self.host, self.port, limits, log_level))
        self.thread: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        import threading

        self.thread = threading.Thread(target=self.server.run, name="kronos-service", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
