"""The web service over real HTTP on 127.0.0.1: forecasts, limits, malformed requests, queueing, `kronos serve`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from kronos.service.app import ServerThread, create_app, free_port
from kronos.service.serving import ServiceLimits

from .conftest import DATA, PARITY

TINY = PARITY
FB = DATA / "bokeh_FB_1d.csv"
CLIENT = {"X-Kronos-Client": "tests"}  # multipart uploads need it (browser safety)
LIMITS = ServiceLimits(max_body_bytes=256 * 1024, max_rows=1000, max_pred_len=16, max_samples=8,
                       request_timeout_s=120, max_queue=64, max_batch_series=16, max_batch_paths=256)


@pytest.fixture(scope="module")
def url(tiny_predictor):
    with ServerThread(create_app(tiny_predictor, LIMITS, model_name="parity-tiny")) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=120, headers=CLIENT) as http:
        yield http


def real_bars(rows: int = 60, name: Path = FB) -> list[dict]:
    """The last ``rows`` bars of a real file as JSON-ready dicts (amount left out: it is empty)."""
    frame = pd.read_csv(name).tail(rows)
    return [{"timestamp": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for t, o, h, lo, c, v in frame[["timestamps", "open", "high", "low", "close", "volume"]].itertuples(
                index=False)]


def check_forecast(body: dict, pred_len: int, levels: list[str]) -> None:
    assert body["columns"] == ["open", "high", "low", "close", "volume", "amount"]
    assert len(body["timestamps"]) == pred_len
    assert list(body["quantiles"]) == levels
    for column in body["columns"]:
        stacked = np.array([body["quantiles"][q][column] for q in levels])  # (Q, P)
        assert np.isfinite(stacked).all() and (np.diff(stacked, axis=0) >= -1e-6).all()
        assert len(body["mean"][column]) == pred_len


# -- the happy paths ------------------------------------------------------------------------------------

def test_health_model_docs_and_page_are_served(client):
    assert client.get("/healthz").json()["status"] == "ok"
    model = client.get("/v1/model").json()
    assert model["max_context"] == 256 and model["limits"]["max_pred_len"] == 16
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text and "cdn" not in docs.text.lower()
    assert "openapi.json" in client.get("/static/docs.js").text
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]["/v1/forecast"]["post"]["requestBody"]["content"]) == {"application/json",
                                                                                   "multipart/form-data"}
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/plotly.min.js">' in page.text
    assert "cdn" not in page.text.lower()
    plotly_js = client.get("/plotly.min.js")
    assert plotly_js.status_code == 200 and len(plotly_js.content) > 1_000_000


def test_given_json_bars_when_forecasting_then_quantiles_on_business_days(client):
    response = client.post("/v1/forecast", json={"bars": real_bars(), "pred_len": 4, "samples": 4,
                                                 "quantiles": [0.1, 0.5, 0.9]})
    assert response.status_code == 200, response.text
    body = response.json()
    check_forecast(body, 4, ["0.1", "0.5", "0.9"])
    assert body["timestamps"] == [f"2013-03-0{d}T00:00:00" for d in (4, 5, 6, 7)]
    assert body["history_rows"] == 60 and body["samples"] == 4 and body["chart"] is None
    calibration = body["calibration"]  # calibrated by default, from past origins inside the 60 bars
    assert calibration["origins"] >= 4 and len(calibration["scale"]) == 4 and calibration["note"] == ""
    assert 0 <= calibration["shrink"] <= 1


def test_calibration_can_be_turned_off(client):
    response = client.post("/v1/forecast", json={"bars": real_bars(), "pred_len": 4, "samples": 4,
                                                 "calibrate": False, "dequantise": False})
    assert response.status_code == 200, response.text
    assert response.json()["calibration"] is None


def test_the_pool_with_garch_can_be_turned_off_per_request(client):
    request = {"bars": real_bars(), "pred_len": 4, "samples": 8}
    pooled, alone = (client.post("/v1/forecast", json={**request, **extra}) for extra in ({}, {"combine": False}))
    assert pooled.status_code == 200 and alone.status_code == 200, (pooled.text, alone.text)
    weights = pooled.json()["calibration"]["weights"]
    assert set(weights) >= {"kronos", "garch_t"} and abs(sum(weights.values()) - 1) < 1e-3
    assert alone.json()["calibration"]["weights"] == {} and alone.json()["calibration"]["origins"] >= 4
    assert alone.json()["mean"] != pooled.json()["mean"]


def test_given_a_seed_when_forecasting_twice_then_identical_answers(client):
    request = {"bars": real_bars(40), "pred_len": 3, "samples": 3, "seed": 11}
    first, second = (client.post("/v1/forecast", json=request).json() for _ in range(2))
    assert first["quantiles"] == second["quantiles"] and first["mean"] == second["mean"]


def test_given_no_seed_then_the_default_seed_gives_the_same_answer_alone_or_batched(client):
    """Steady defaults: seed 0 unless the request says otherwise, and each request keeps its own stream when
    concurrent requests share a model call; ``seed: null`` draws fresh paths."""
    request = {"bars": real_bars(50), "pred_len": 3, "samples": 4}
    alone = client.post("/v1/forecast", json=request)
    assert alone.status_code == 200, alone.text
    body = alone.json()
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda _: client.post("/v1/forecast", json=request).json(), range(6)))
    for other in together:
        assert other["quantiles"] == body["quantiles"] and other["mean"] == body["mean"]
    assert client.post("/v1/forecast", json={**request, "seed": 0}).json()["mean"] == body["mean"]
    assert client.post("/v1/forecast", json={**request, "seed": 5}).json()["mean"] != body["mean"]
    fresh = [client.post("/v1/forecast", json={**request, "seed": None}).json()["mean"] for _ in range(2)]
    assert fresh[0] != fresh[1]
    calibration = body["calibration"]
    assert calibration["drift_kept"] == calibration["shrink"] and "drift kept: " in calibration["summary"]


def test_a_calibrated_request_for_a_series_seen_before_reuses_its_past_forecasts(tiny_predictor, one_thread):
    tiny_predictor.past_forecasts.clear()
    every = real_bars(196)
    bars = every[:190]
    with ServerThread(create_app(tiny_predictor, LIMITS)) as base, \
            httpx.Client(base_url=base, timeout=120, headers=CLIENT) as http:
        def ask(bars: list[dict], seed: int) -> tuple[dict, dict]:
            response = http.post("/v1/forecast", json={"bars": bars, "pred_len": 4, "samples": 8, "seed": seed})
            assert response.status_code == 200, response.text
            return response.json(), http.get("/healthz").json()["past_forecasts"]

        first, seen = ask(bars, seed=1)
        origins = first["calibration"]["origins"]
        assert origins >= 4 and (seen["misses"], seen["hits"], seen["entries"]) == (origins, 0, origins)
        assert 0 < seen["bytes"] <= seen["max_bytes"]
        again, store = ask(bars, seed=2)  # another client, another seed: only its own paths are drawn
        assert (store["misses"], store["hits"], store["entries"]) == (origins, origins, origins)
        assert again["calibration"] == first["calibration"]
        assert again["quantiles"] != first["quantiles"]
        grown, grown_store = ask(every[:194], seed=1)  # four new bars: the past origins both plan are reused
        new = set(grown["calibration"]["ends"]) - set(first["calibration"]["ends"])
        assert 0 < len(new) < origins
        assert grown_store["misses"] - store["misses"] == len(new)
        assert grown_store["hits"] - store["hits"] == grown["calibration"]["origins"] - len(new)


def test_given_a_csv_upload_when_asking_for_a_chart_then_plotly_figure_is_returned(client):
    lines = (DATA / "kronos_XSHG-600977_5min.csv").read_bytes().splitlines(keepends=True)
    data = b"".join(lines[:1] + lines[-300:])  # the server takes at most 1000 rows
    response = client.post("/v1/forecast", files={"file": ("xshg.csv", data, "text/csv")},
                           data={"pred_len": "3", "samples": "2", "chart": "true", "quantiles": "0.1,0.5,0.9",
                                 "history_bars": "50"})
    assert response.status_code == 200, response.text
    body = response.json()
    check_forecast(body, 3, ["0.1", "0.5", "0.9"])
    assert body["timestamps"][0] == "2024-08-29T13:05:00"  # after the 11:30 lunch break
    kinds = [trace["type"] for trace in body["chart"]["data"]]
    assert kinds[0] == "candlestick" and "bar" in kinds and len(body["chart"]["data"][0]["x"]) == 50


def test_given_an_upload_with_its_own_time_column_name_then_the_form_field_names_it(client):
    frame = pd.read_csv(FB).iloc[-60:].rename(columns={"timestamps": "Session", "close": " Close "})
    data = frame.to_csv(index=False, sep=";").encode()
    response = client.post("/v1/forecast", files={"file": ("fb.csv", data, "text/csv")},
                           data={"pred_len": "2", "samples": "2", "time_column": "session"})
    assert response.status_code == 200, response.text
    assert response.json()["timestamps"][0] == "2013-03-04T00:00:00"
    response = client.post("/v1/forecast", files={"file": ("fb.csv", data, "text/csv")},
                           data={"pred_len": "2", "samples": "2", "time_column": "when"})
    assert response.status_code == 422
    assert response.json()["detail"].endswith("no column 'when' (given as the timestamp column); columns are "
                                              "session, open, high, low, close, volume, amount; check the Time "
                                              "column box (form field 'time_column')")
    assert "--" not in response.json()["detail"]


def test_bundled_examples_are_listed_and_downloadable(client):
    examples = client.get("/v1/examples").json()
    assert {e["name"] for e in examples} == {"AAPL_1d", "FB_1d", "MSFT_1d"}
    csv = client.get(examples[0]["url"])
    assert csv.status_code == 200 and csv.text.startswith("timestamps,open,high,low,close,volume,amount")


# -- malformed requests: a 4xx naming the problem, and the server stays up ------------------------------

def bad_cases() -> list[tuple[str, dict, int, str]]:
    good = {"bars": real_bars(30), "pred_len": 2, "samples": 2}
    nan_bars = real_bars(30)
    nan_bars[3]["close"] = math.nan
    unsorted = real_bars(30)
    unsorted[4], unsorted[5] = unsorted[5], unsorted[4]
    huge = real_bars(30)
    huge[2]["high"] = 1e300
    mixed_volume = real_bars(30)
    mixed_volume[7]["volume"] = None
    return [
        ("not json", {"content": b"{bars: [", "headers": {"content-type": "application/json"}}, 422, "Invalid JSON"),
        ("empty json", {"content": b"", "headers": {"content-type": "application/json"}}, 422, "EOF"),
        ("json list", {"json": [1, 2]}, 422, "body: Input should be an object"),
        ("wrong type", {"json": {**good, "pred_len": "many"}}, 422, "pred_len: Input should be a valid integer"),
        ("NaN", {"content": json.dumps({**good, "bars": nan_bars}).encode(),
                 "headers": {"content-type": "application/json"}}, 422, "bars.3.close: Input should be a finite"),
        ("unknown field", {"json": {**good, "horizon": 5}}, 422, "horizon: Extra inputs are not permitted"),
        ("unknown bar field", {"json": {**good, "bars": [{**good["bars"][0], "vwap": 1}] + good["bars"][1:]}},
         422, "bars.0.vwap: Extra inputs"),
        ("one bar", {"json": {**good, "bars": good["bars"][:1]}}, 422, "bars: List should have at least 2"),
        ("pred_len over limit", {"json": {**good, "pred_len": 17}}, 422, "pred_len 17 is above this server's limit"),
        ("samples over limit", {"json": {**good, "samples": 9}}, 422, "samples 9 is above this server's limit 8"),
        ("top_p zero", {"json": {**good, "top_p": 0}}, 422, "top_p: Input should be greater than 0"),
        ("quantile 2", {"json": {**good, "quantiles": [0.5, 2]}}, 422, "quantiles.1: Input should be less"),
        ("bad freq", {"json": {**good, "freq": "fortnight"}}, 422, "freq 'fortnight' is not a pandas frequency"),
        ("unsorted", {"json": {**good, "bars": unsorted}}, 422,
         r"bars: column 'timestamp' is not in time order: row 5 \(.*\) comes after row 4 \(.*\)$"),
        ("huge value", {"json": {**good, "bars": huge}}, 422, "bars.2.high: Input should be less than or equal"),
        ("some volume missing", {"json": {**good, "bars": mixed_volume}}, 422,
         r"bars: column 'volume' has missing values at row\(s\) 7$"),
        ("too many rows", {"json": {**good, "bars": real_bars(1001, DATA / "bokeh_AAPL_1d.csv")}}, 413,
         "the body holds 1001 bar timestamps; this server accepts at most 1000 bars"),
        ("oversize body", {"content": b"x" * (256 * 1024 + 1), "headers": {"content-type": "application/json"}},
         413, "larger than this server's limit of 262144 bytes"),
        ("oversize chunked body", {"content": (b"x" * 65536 for _ in range(5)),
                                   "headers": {"content-type": "application/json"}}, 413, "larger than"),
        ("text/plain", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415,
         "content type 'text/plain' is not accepted"),
        ("form without file", {"data": {"pred_len": "2"}, "files": {"other": ("a.txt", b"x")}}, 422,
         "needs a CSV or Parquet file in the field 'file'"),
        ("form unknown field", {"data": {"colour": "red"}, "files": {"file": ("fb.csv", FB.read_bytes())}}, 422,
         "colour: Extra inputs are not permitted"),
        ("csv bad column", {"data": {"pred_len": "2"},
                            "files": {"file": ("fb.csv", FB.read_bytes().replace(b"close", b"shut"))}},
         422, r"fb.csv: missing price column\(s\) close; columns are timestamps, open, high, low, shut, volume, "
              r"amount$"),
        ("csv not csv", {"files": {"file": ("x.csv", b"\x00\xff\xfe garbage \x00")}}, 422, "x.csv"),
        ("csv empty", {"files": {"file": ("e.csv", b"")}}, 422, "e.csv: is empty"),
        ("csv no time column", {"data": {"pred_len": "2"},
                                "files": {"file": ("t.csv", b"open,high,low,close\n1,2,0.5,1\n1,2,0.5,1\n")}},
         422, r"t.csv: no timestamp column \(looked for .*\); columns are open, high, low, close; name it with "
              r"the Time column box \(form field 'time_column'\)$"),
        ("csv two symbols", {"files": {"file": ("p.csv", b"ticker,date,open,high,low,close\nA,2024-01-02,1,2,0.5,1\n"
                                                          b"A,2024-01-03,1,2,0.5,1\nB,2024-01-02,1,2,0.5,1\n"
                                                          b"B,2024-01-03,1,2,0.5,1\n")}},
         422, "p.csv holds 2 series \\(column 'ticker': A, B\\); pick one with the Symbol menu \\(form field "
              "'symbol'\\)"),
    ]


@pytest.mark.parametrize("name, kwargs, status, message", bad_cases(), ids=[c[0] for c in bad_cases()])
def test_given_a_malformed_request_then_4xx_with_a_message(client, name, kwargs, status, message):
    import re

    response = client.post("/v1/forecast", **kwargs)
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["detail"]), response.json()["detail"]


def test_no_client_path_is_ever_read(client):
    for path in ("/v1/examples/..%2F..%2F..%2Fetc%2Fpasswd.csv", "/v1/examples/%2Fetc%2Fpasswd.csv",
                 "/static/..%2F..%2Fapp.py", "/static/../app.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "root:" not in response.text and "create_app" not in response.text
    # a JSON "path" field is just an unknown field
    response = client.post("/v1/forecast", json={"path": "/etc/passwd", "pred_len": 2})
    assert response.status_code == 422
    assert client.get("/healthz").status_code == 200


# -- queueing ---------------------------------------------------------------------------------------------

class Gated:
    """The real predictor, whose first ``sample_paths`` (what the forecasting door asks the backend for) waits until
    the test opens the gate: the worker is then known to be busy while the test queues more requests, so batching
    and a full queue happen by construction."""

    def __init__(self, predictor):
        import copy
        import threading

        self.predictor, self.gate, self.calls = copy.copy(predictor), threading.Event(), 0
        self.predictor.sample_paths = self._sample_paths
        self._real = predictor.sample_paths

    def _sample_paths(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            assert self.gate.wait(120), "the test never opened the gate"
        return self._real(*args, **kwargs)


def healthz_until(http: httpx.Client, key: str, value: int, guard_s: float = 120) -> None:
    """Poll /healthz until ``key`` reaches ``value`` (the guard only stops a hung test)."""
    deadline = time.monotonic() + guard_s
    while http.get("/healthz").json()[key] != value:
        assert time.monotonic() < deadline, f"/healthz {key} never reached {value}"
        time.sleep(0.02)


def test_given_requests_queued_behind_a_busy_worker_then_they_share_one_model_call(tiny_predictor):
    gated = Gated(tiny_predictor)
    request = {"bars": real_bars(50), "pred_len": 3, "samples": 2}
    with ServerThread(create_app(gated.predictor, LIMITS)) as base, \
            httpx.Client(base_url=base, timeout=120, headers=CLIENT) as http, ThreadPoolExecutor(12) as pool:
        first = pool.submit(http.post, "/v1/forecast", json=request)
        healthz_until(http, "model_calls", 1)  # the first request holds the worker at the gate
        rest = [pool.submit(http.post, "/v1/forecast", json=request) for _ in range(11)]
        healthz_until(http, "queued", 11)
        gated.gate.set()
        statuses = [first.result().status_code] + [f.result().status_code for f in rest]
        assert statuses == [200] * 12
        assert http.get("/healthz").json()["model_calls"] == 2  # the first alone, then the other 11 together


def test_given_a_full_queue_then_429_and_after_a_timeout_503(tiny_predictor):
    request = {"bars": real_bars(50), "pred_len": 8, "samples": 8, "seed": 1}  # seeded: no batching
    limits = ServiceLimits(max_queue=1, request_timeout_s=120, max_pred_len=16, max_samples=8)
    gated = Gated(tiny_predictor)
    with ServerThread(create_app(gated.predictor, limits)) as base, httpx.Client(base_url=base, timeout=120) as http, \
            ThreadPoolExecutor(2) as pool:
        running = pool.submit(http.post, "/v1/forecast", json=request)
        healthz_until(http, "model_calls", 1)
        waiting = pool.submit(http.post, "/v1/forecast", json=request)
        healthz_until(http, "queued", 1)
        refused = http.post("/v1/forecast", json=request)
        assert refused.status_code == 429 and "(max_queue)" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        gated.gate.set()
        assert running.result().status_code == 200 and waiting.result().status_code == 200
    limits = ServiceLimits(request_timeout_s=0.5, max_pred_len=16, max_samples=8)
    gated = Gated(tiny_predictor)  # the call waits at the gate past the timeout
    with ServerThread(create_app(gated.predictor, limits)) as base, httpx.Client(base_url=base, timeout=120) as http:
        response = http.post("/v1/forecast", json=request)
        assert response.status_code == 503 and "timed out after 0.5s" in response.json()["detail"]
        gated.gate.set()
        assert http.get("/healthz").status_code == 200


# -- the real `kronos serve` ------------------------------------------------------------------------------

def wait_for_server(process: subprocess.Popen, base: str, seconds: float = 90) -> None:
    """Until ``kronos serve`` (``process``) answers ``GET base/healthz``; fails if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "kronos serve did not come up"
        time.sleep(0.3)


def test_kronos_serve_starts_on_loopback_and_answers():
    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", str(TINY / "model"),
               "--tokenizer", str(TINY / "tokenizer"), "--max-context", "256", "--max-samples", "4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_server(process, f"http://127.0.0.1:{port}")
        response = httpx.post(f"http://127.0.0.1:{port}/v1/forecast", timeout=60,
                              json={"bars": real_bars(30), "pred_len": 2, "samples": 5})
        assert response.status_code == 422 and "limit 4" in response.json()["detail"]
        model = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()
        assert model["model_config"]["d_model"] == 64 and model["limits"]["max_samples"] == 4
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_kronos_serve_without_the_bundled_model_exits_2_in_one_line(capsys, monkeypatch, tmp_path):
    from kronos.cli import main
    from kronos.model import checkpoint, default_model

    monkeypatch.setattr(default_model, "WEIGHTS_DIR", tmp_path)  # as if the bundled weights were not installed
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bundled default model is missing" in err
