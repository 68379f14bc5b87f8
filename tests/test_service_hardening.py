"""Hostile and heavy requests against a real server on 127.0.0.1: each defect found by probing `kronos serve`.

Every test here failed before the service bounded its work: wide CSVs parsed on the event loop,
a calendar search sized by the bars' spacing, unbounded model calls that outlived their clients,
non-finite output reaching the JSON encoder, loose types, no Host or Origin checks, no security
headers, no HEAD, and half-open connections holding every request at 503.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from kronos.service.app import ServerThread, create_app, free_port
from kronos.service.checks import forecast_work
from kronos.service.security import BrowserPolicy
from kronos.service.serving import ServiceLimits

from .conftest import DATA, PARITY, import_or_need
from .test_service import real_bars, wait_for_server

CLIENT = {"X-Kronos-Client": "tests"}
LIMITS = ServiceLimits(max_pred_len=64, max_samples=16, max_work=10_000, request_timeout_s=60)


@pytest.fixture(scope="module")
def url(tiny_predictor):
    with ServerThread(create_app(tiny_predictor, LIMITS, model_name="parity-tiny")) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60, headers=CLIENT) as http:
        yield http


class HealthProbe:
    """Polls /healthz in a thread while something else runs; keeps every answer (its counters) and counts
    failures. Latencies are the benchmark's business (benchmarks/bench_service_bounds.py), not a test's."""

    def __init__(self, url: str):
        self.url, self.answers, self.failures = url, [], 0
        self._stop, self._first = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self._stop.is_set():
                try:
                    response = http.get("/healthz")
                    ok = response.status_code == 200
                    if ok:
                        self.answers.append(response.json())
                except httpx.HTTPError:
                    ok = False
                self.failures += not ok
                self._first.set()
                self._stop.wait(0.02)  # pacing, so that the probe does not take a core from the server

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        assert self._first.wait(60), "the /healthz probe got no answer"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def wait_until(condition, what: str, guard_s: float = 120) -> None:
    """Poll ``condition()`` until it holds; ``guard_s`` only stops a hung test, nothing is timed."""
    deadline = time.monotonic() + guard_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def stopped_steps(caplog) -> tuple[int, int]:
    """(steps done, steps planned) of the model call the service logged as dropped."""
    import re

    found = re.findall(r"model call dropped: forecast stopped after (\d+) of (\d+) steps", caplog.text)
    assert len(found) == 1, caplog.text
    return int(found[0][0]), int(found[0][1])


def post_json(client: httpx.Client, body: dict, **kwargs) -> httpx.Response:
    return client.post("/v1/forecast", content=json.dumps(body).encode(),
                       headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)


# -- bounded parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2**20, 7 * 2**20])
def test_a_csv_of_commas_is_refused_from_its_header_fast_and_health_stays_up(url, client, size):
    with HealthProbe(url) as probe:
        response = client.post("/v1/forecast", files={"file": ("wide.csv", b"," * size)})
    assert response.status_code == 422, response.text
    assert "line 1 is" in response.json()["detail"] and "max_line_bytes" in response.json()["detail"]
    assert probe.failures == 0 and probe.answers


def test_a_header_wider_than_the_column_limit_is_refused_naming_it(client):
    header = ",".join(f"c{i}" for i in range(100)).encode()
    response = client.post("/v1/forecast", files={"file": ("wide.csv", header + b"\n" + b"1," * 99 + b"1\n")})
    assert response.status_code == 422 and "100 columns" in response.json()["detail"]
    assert "max_columns" in response.json()["detail"]


def test_a_json_body_with_too_many_bars_is_refused_from_its_bytes(client):
    bar = {"timestamp": "2024-01-02T00:00:00", "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5}
    body = json.dumps({"bars": [bar] * 90_000}, separators=(",", ":")).encode()  # 7 MiB
    response = client.post("/v1/forecast", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "90000 bar timestamps" in response.json()["detail"]


def test_a_parquet_that_unpacks_to_gigabytes_or_has_many_columns_is_refused_from_its_metadata(client, tmp_path):
    import pandas as pd

    import_or_need("pyarrow")
    bomb = tmp_path / "bomb.parquet"
    pd.DataFrame({"timestamps": ["x" * 100_000] * 1000}).to_parquet(bomb)  # ~100 MB of text, a few KB on disk
    assert bomb.stat().st_size < 200_000
    response = client.post("/v1/forecast", files={"file": ("bomb.parquet", bomb.read_bytes())})
    assert response.status_code == 413 and "unpacks to" in response.json()["detail"]
    real = tmp_path / "real.parquet"
    pd.read_csv(DATA / "bokeh_FB_1d.csv").to_parquet(real)
    response = client.post("/v1/forecast", files={"file": ("fb.parquet", real.read_bytes())},
                           data={"pred_len": "2", "samples": "2"})
    assert response.status_code == 200, response.text  # a real table passes the same checks
    wide = tmp_path / "wide.parquet"
    pd.DataFrame({f"c{i}": [1.0] for i in range(100)}).to_parquet(wide)
    response = client.post("/v1/forecast", files={"file": ("wide.parquet", wide.read_bytes())})
    assert response.status_code == 422 and "100 columns" in response.json()["detail"]


def test_a_header_only_csv_says_it_has_no_data_rows(client):
    response = client.post("/v1/forecast", files={"file": ("h.csv", b"timestamps,open,high,low,close\n")})
    assert response.status_code == 422 and "h.csv has no data rows" in response.json()["detail"]


# -- the calendar search --------------------------------------------------------------------------------

def gap_bars(spacing_ns: int) -> list[dict]:
    """21 bars ``spacing_ns`` apart with a 3-day gap after the 10th (a 2 KB request)."""
    start = np.datetime64("2024-01-05T15:00:00", "ns")
    stamps = [start + np.timedelta64(i * spacing_ns, "ns") for i in range(10)]
    stamps += [start + np.timedelta64(3, "D") + np.timedelta64(i * spacing_ns, "ns") for i in range(11)]
    return [{"timestamp": str(t), "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5} for t in stamps]


@pytest.mark.parametrize("spacing_ns, status", [(200_000_000, 200), (10_000_000, 422), (1_000, 422)])
def test_a_calendar_of_tiny_spacing_and_a_long_gap_is_bounded(url, client, spacing_ns, status):
    with HealthProbe(url) as probe:
        response = post_json(client, {"bars": gap_bars(spacing_ns), "pred_len": 5, "samples": 2})
    assert response.status_code == status, response.text
    if status == 422:
        assert "could not place the 5 forecast bars" in response.json()["detail"]
    assert probe.failures == 0 and probe.answers


# -- the work budget and cancellation ---------------------------------------------------------------------

def test_a_request_over_the_work_budget_is_refused_up_front_naming_the_limit(client):
    model = client.get("/v1/model").json()
    assert model["limits"]["max_work"] == 10_000
    body = {"bars": real_bars(190), "pred_len": 64, "samples": 16}
    before = client.get("/healthz").json()["model_calls"]
    response = post_json(client, body)
    assert response.status_code == 422 and client.get("/healthz").json()["model_calls"] == before  # no model call
    detail = response.json()["detail"]
    work = forecast_work(190, 64, 16, True, 256, 256)
    assert f"costs {work} units of work" in detail and "limit is 10000 (max_work)" in detail
    assert post_json(client, {**body, "calibrate": False}).status_code == 200  # 64 x 16 + history fits


def test_a_model_call_whose_client_timed_out_stops_and_the_worker_moves_on(tiny_predictor, caplog):
    limits = ServiceLimits(max_pred_len=4096, max_samples=512, max_work=10**9, request_timeout_s=3.0)
    heavy = {"bars": real_bars(60), "pred_len": 2000, "samples": 256, "calibrate": False, "seed": 1}
    with caplog.at_level(logging.INFO, logger="kronos.service"), \
            ServerThread(create_app(tiny_predictor, limits)) as base, \
            httpx.Client(base_url=base, timeout=120, headers=CLIENT) as http, HealthProbe(base) as probe:
        response = post_json(http, heavy)
        assert response.status_code == 503 and "timed out after 3s" in response.json()["detail"]
        assert response.headers["retry-after"]
        light = post_json(http, {"bars": real_bars(60), "pred_len": 2, "samples": 2})
        assert light.status_code == 200, light.text
        assert http.get("/healthz").json()["cancelled_calls"] == 1
    # the heavy call (minutes on this model) was stopped between steps, not finished behind the light one
    done, planned = stopped_steps(caplog)
    assert 0 < done < planned == 2000
    # and while it ran, the event loop kept answering /healthz (answers that saw it started, not yet stopped)
    assert any(a["model_calls"] == 1 and a["cancelled_calls"] == 0 for a in probe.answers)
    assert probe.failures == 0


def test_a_client_that_disconnects_frees_the_worker(tiny_predictor, caplog):
    limits = ServiceLimits(max_pred_len=4096, max_samples=512, max_work=10**9, request_timeout_s=300)
    heavy = json.dumps({"bars": real_bars(60), "pred_len": 2000, "samples": 256, "calibrate": False,
                        "seed": 2}).encode()
    with caplog.at_level(logging.INFO, logger="kronos.service"), \
            ServerThread(create_app(tiny_predictor, limits)) as base, \
            httpx.Client(base_url=base, timeout=120, headers=CLIENT) as http:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(heavy), heavy))
            wait_until(lambda: http.get("/healthz").json()["model_calls"] == 1, "the heavy model call started")
        # the client has gone with its call in flight
        light = post_json(http, {"bars": real_bars(60), "pred_len": 2, "samples": 2})
        assert light.status_code == 200
        assert http.get("/healthz").json()["cancelled_calls"] == 1
    done, planned = stopped_steps(caplog)
    assert 0 <= done < planned == 2000


# -- schema-valid extremes: never a 500 ------------------------------------------------------------------

def extreme_bodies() -> list[dict]:
    bars = real_bars(40)
    bodies = []
    for scale in (1e-12, 1e-6, 1e6, 1e12, 9e14):
        scaled = [{**b, **{c: b[c] * scale / b["close"] for c in ("open", "high", "low", "close")}} for b in bars]
        bodies.append({"bars": scaled, "pred_len": 8, "samples": 4})
    alternating = [{**b, **{c: (1e14 if i % 2 else 1e-9) for c in ("open", "high", "low", "close")},
                    "volume": 1e15 if i % 2 else 0.0} for i, b in enumerate(bars)]
    bodies.append({"bars": alternating, "pred_len": 8, "samples": 4})
    for temperature in (1e-3, 100):
        bodies.append({"bars": bars, "pred_len": 4, "samples": 4, "temperature": temperature})
    bodies.append({"bars": bars, "pred_len": 4, "samples": 4, "top_p": 1e-300, "top_k": 1_000_000})
    return bodies


@pytest.mark.parametrize("index", range(len(extreme_bodies())))
def test_extreme_but_valid_values_get_an_answer_or_a_422_never_a_500(client, index):
    response = post_json(client, extreme_bodies()[index])
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert "non-finite" in response.json()["detail"] or "max_work" in response.json()["detail"]


def test_a_tiny_temperature_is_a_422_naming_the_minimum(client):
    response = post_json(client, {"bars": real_bars(30), "pred_len": 2, "temperature": 1e-300})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("temperature: Input should be greater than or equal to 0.001")


# -- strict types and consistent bars --------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"pred_len": "5"}, "pred_len: Input should be a valid integer"),
    ({"pred_len": True}, "pred_len: Input should be a valid integer"),
    ({"samples": 2.0}, "samples: Input should be a valid integer"),
    ({"calibrate": "false"}, "calibrate: Input should be a valid boolean"),
    ({"temperature": True}, "temperature: Input should be a valid number"),
    ({"bars.3.close": True}, "bars.3.close: Input should be a valid number"),
    ({"bars.3.close": "10.5"}, "bars.3.close: Input should be a valid number"),
])
def test_loose_types_are_refused(client, change, message):
    body = {"bars": real_bars(30), "pred_len": 2, "samples": 2}
    for key, value in change.items():
        if key.startswith("bars."):
            _, row, field = key.split(".")
            body["bars"][int(row)][field] = value
        else:
            body[key] = value
    response = post_json(client, body)
    assert response.status_code == 422 and response.json()["detail"].startswith(message), response.text


def test_inconsistent_bars_are_refused_naming_the_rows(client):
    bars = real_bars(30)
    bars[4]["high"], bars[4]["low"] = bars[4]["low"], bars[4]["high"]
    response = post_json(client, {"bars": bars, "pred_len": 2, "samples": 2})
    assert response.status_code == 422
    assert "high below open or close at row(s) 4" in response.json()["detail"]
    bars = real_bars(30)
    bars[7]["low"] = -1.0
    response = post_json(client, {"bars": bars, "pred_len": 2, "samples": 2})
    assert response.status_code == 422 and "price <= 0 at row(s) 7" in response.json()["detail"]
    csv = b"timestamps,open,high,low,close\n2024-01-02,10,9,8,10\n2024-01-03,10,11,9,10\n2024-01-04,10,11,9,10\n"
    response = client.post("/v1/forecast", files={"file": ("bad.csv", csv)}, data={"pred_len": "1"})
    assert response.status_code == 422 and "bad.csv has inconsistent bars" in response.json()["detail"]


def test_a_lenient_server_repairs_and_reports(tiny_predictor):
    bars = real_bars(40)
    bars[4]["high"], bars[4]["low"] = bars[4]["low"], bars[4]["high"]
    bars[9]["close"] = -5.0
    limits = ServiceLimits(max_pred_len=16, max_samples=8, lenient=True)
    with ServerThread(create_app(tiny_predictor, limits)) as base, httpx.Client(base_url=base, timeout=60) as http:
        response = post_json(http, {"bars": bars, "pred_len": 2, "samples": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["repairs"] == ["widened high/low to hold open and close at row(s) 4, 9",
                               "dropped 1 row(s) with a price <= 0: 9"]
    assert body["history_rows"] == 39


# -- browser safety --------------------------------------------------------------------------------------

def test_a_foreign_host_header_is_refused(client):
    response = client.get("/healthz", headers={"Host": "attacker.example:8000"})
    assert response.status_code == 400 and "--allowed-host attacker.example" in response.json()["detail"]
    response = post_json(client, {"bars": real_bars(30), "pred_len": 2}, headers={"Host": "rebind.example"})
    assert response.status_code == 400
    for host in ("localhost", "127.0.0.1:1234", "[::1]:80", "LOCALHOST"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_cross_origin_posts_are_refused(url, client):
    body = {"bars": real_bars(30), "pred_len": 2, "samples": 2}
    response = post_json(client, body, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "cross-origin request" in response.json()["detail"]
    assert "access-control-allow-origin" not in response.headers
    response = post_json(client, body, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    # the "simple" multipart post any page can make: refused without the page's own header
    csv = "\n".join(["timestamps,open,high,low,close"] + [f"2024-01-{d:02d},10,11,9,10" for d in range(1, 25)])
    response = httpx.post(url + "/v1/forecast", files={"file": ("x.csv", csv.encode())}, data={"pred_len": "1"})
    assert response.status_code == 403 and "X-Kronos-Client" in response.json()["detail"]
    # the page's own origin is fine
    assert post_json(client, body, headers={"Origin": url, "Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_allowed_hosts_and_cors_origins_can_be_added(tiny_predictor):
    policy = BrowserPolicy.for_bind("127.0.0.1", ["forecast.internal"], ["https://app.example"])
    body = {"bars": real_bars(30), "pred_len": 2, "samples": 2}
    with ServerThread(create_app(tiny_predictor, LIMITS, policy=policy)) as base, \
            httpx.Client(base_url=base, timeout=60) as http:
        assert http.get("/healthz", headers={"Host": "forecast.internal:8000"}).status_code == 200
        assert http.get("/healthz", headers={"Host": "other.internal"}).status_code == 400
        response = post_json(http, body, headers={"Origin": "https://app.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert post_json(http, body, headers={"Origin": "https://evil.example"}).status_code == 403


@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/model", "/docs", "/openapi.json", "/static/app.js",
                                  "/v1/examples", "/v1/examples/FB_1d.csv", "/plotly.min.js"])
def test_head_works_wherever_get_does_and_every_answer_has_security_headers(client, path):
    get, head = client.get(path), client.head(path)
    assert get.status_code == 200 and head.status_code == 200, (get.status_code, head.status_code)
    assert head.content == b"" and head.headers.get("content-type") == get.headers.get("content-type")
    for response in (get, head):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_errors_carry_security_headers_and_docs_need_no_network(client):
    response = post_json(client, {"bars": []})
    assert response.status_code == 422 and response.headers["x-content-type-options"] == "nosniff"
    page = client.get("/docs").text
    assert "http://" not in page and "https://" not in page  # every asset from this server
    assert client.get("/redoc").status_code == 404


# -- slow clients --------------------------------------------------------------------------------------

def test_six_hundred_half_open_connections_do_not_starve_valid_requests(tiny_predictor):
    limits = ServiceLimits(max_pred_len=16, max_samples=8, max_connections=128, header_timeout_s=30)
    with ServerThread(create_app(tiny_predictor, limits)) as base, httpx.Client(base_url=base, timeout=30) as http:
        host, port = base.removeprefix("http://").split(":")
        sockets = []
        try:
            for _ in range(600):
                sock = socket.create_connection((host, int(port)), timeout=10)
                sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")  # never ends
                sockets.append(sock)
            # the listening socket hands out connections in order: these come after the 600 half-open ones
            for _ in range(5):
                assert http.get("/healthz").status_code == 200
                response = post_json(http, {"bars": real_bars(30), "pred_len": 2, "samples": 2})
                assert response.status_code == 200, response.text
        finally:
            for sock in sockets:
                sock.close()


def test_a_request_head_trickled_past_the_header_timeout_is_closed(tiny_predictor):
    import select

    limits = ServiceLimits(header_timeout_s=1.0)
    with ServerThread(create_app(tiny_predictor, limits)) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            answer, closed = None, False
            for _ in range(300):  # a byte at a time, each well inside the timeout; the head never ends
                try:
                    sock.sendall(b"a")
                except OSError:
                    closed = True
                    break
                if select.select([sock], [], [], 0.2)[0]:  # readable: an answer, or the server closed it
                    try:
                        answer = sock.recv(100)
                    except ConnectionResetError:
                        answer = b""
                    closed = answer == b""
                    break
            assert closed and not answer, answer  # closed without an answer, before the head was complete


def test_a_body_that_never_arrives_gets_a_408(tiny_predictor):
    limits = ServiceLimits(body_timeout_s=1.0)
    with ServerThread(create_app(tiny_predictor, limits)) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"bars\": [")
            answer = b""
            while chunk := sock.recv(4096):  # the server closes the connection after its answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout_s" in answer


# -- `kronos serve` with the flags -----------------------------------------------------------------------

def test_kronos_serve_takes_the_flags_and_stops_on_sigterm():
    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", str(PARITY / "model"),
               "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256", "--max-work", "5000",
               "--allowed-host", "kronos.test", "--lenient"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(process, base)
        model = httpx.get(base + "/v1/model", timeout=10).json()
        assert model["limits"]["max_work"] == 5000 and model["limits"]["lenient"] is True
        assert httpx.get(base + "/healthz", headers={"Host": "kronos.test"}, timeout=10).status_code == 200
        assert httpx.get(base + "/healthz", headers={"Host": "evil.test"}, timeout=10).status_code == 400
        assert httpx.head(base + "/", timeout=10).status_code == 200
        response = httpx.post(base + "/v1/forecast", json={"bars": real_bars(200), "pred_len": 30}, timeout=60)
        assert response.status_code == 422 and "(max_work)" in response.json()["detail"]
    finally:
        process.terminate()
        process.wait(timeout=60)
    # uvicorn shuts down, then re-raises the SIGTERM it caught: the exit status of a graceful stop
    assert process.returncode == -signal.SIGTERM, process.stderr.read().decode()[-2000:]


def test_kronos_serve_stops_promptly_on_sigterm_with_a_long_forecast_running():
    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", str(PARITY / "model"),
               "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "256", "--max-work", "1000000000",
               "--max-pred-len", "4096", "--max-samples", "512", "--timeout", "600"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    heavy = {"bars": real_bars(60), "pred_len": 3000, "samples": 256, "calibrate": False}
    outcome: list = []

    def post() -> None:
        try:
            outcome.append(httpx.post(base + "/v1/forecast", json=heavy, timeout=300).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    worker = threading.Thread(target=post, daemon=True)
    try:
        wait_for_server(process, base)
        worker.start()
        wait_until(lambda: httpx.get(base + "/healthz", timeout=10).json()["model_calls"] == 1,
                   "the model call began")
    finally:
        process.terminate()
        try:
            process.wait(timeout=120)  # a guard only: the call runs for many minutes if it is not stopped
        finally:
            process.kill()
    worker.join(timeout=60)
    # the forecast (minutes of work) was stopped, not answered: the client got a 503 or a closed connection
    assert outcome and outcome[0] != 200, outcome
    # uvicorn shuts down, then re-raises the SIGTERM it caught: the exit status of a graceful stop
    assert process.returncode == -signal.SIGTERM, process.stderr.read().decode()[-2000:]
