"""Fuzz every endpoint over real HTTP on 127.0.0.1 (Hypothesis, a bounded number of cases): never a 5xx.

POST /v1/forecast gets arbitrary JSON, valid requests with one field or one bar field replaced by
arbitrary JSON, raw bytes under several content types, and multipart uploads of a real CSV with
random settings or corrupted bytes. Every route (and paths that are none) gets random methods,
paths, Host and Origin headers. Every answer is below 500, an error answer from the API carries a
``detail`` message, and the server stays up.

The default suite runs 200 cases in all; ``pytest -m slow`` runs the ``*_slow`` twins, 1,000 cases.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronos.service.app import ServerThread, create_app
from kronos.service.schemas import ForecastSettings
from kronos.service.serving import ServiceLimits

from .conftest import DATA

CSV_LINES = (DATA / "bokeh_IBM_1d.csv").read_bytes().splitlines(keepends=True)
CSV = b"".join(CSV_LINES[:1] + CSV_LINES[-40:])
FRAME = pd.read_csv(DATA / "bokeh_IBM_1d.csv").tail(20)
BARS = [{"timestamp": r.timestamps, "open": r.open, "high": r.high, "low": r.low, "close": r.close,
         "volume": r.volume} for r in FRAME.itertuples()]
VALID = {"bars": BARS, "pred_len": 1, "samples": 1}
FIELDS = [*ForecastSettings.model_fields, "bars", "extra", ""]
BAR_FIELDS = ["timestamp", "open", "high", "low", "close", "volume", "amount", "vwap"]
PATHS = ["/", "/healthz", "/v1/model", "/v1/examples", "/v1/examples/FB_1d.csv", "/v1/examples/x.csv", "/docs",
         "/openapi.json", "/plotly.min.js", "/static/app.js", "/static/docs.js", "/static/", "/v1/forecast",
         "/v1/forecast/", "/redoc", "/nowhere"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
SLOW_FACTOR = 5  # the slow twins run five times as many cases: 1,000 in all

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["2013-01-02", "5min", "B", "0.5,0.9", "-1", "1e400", "NaN"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
# printable ASCII; no surrounding spaces, which no HTTP client sends in a header value (h11 refuses them)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40).filter(
    lambda s: s == s.strip())


@pytest.fixture(scope="module")
def client(tiny_predictor):
    limits = ServiceLimits(max_body_bytes=64 * 1024, max_rows=300, max_pred_len=3, max_samples=2)
    with ServerThread(create_app(tiny_predictor, limits)) as base, \
            httpx.Client(base_url=base, timeout=60, headers={"X-Kronos-Client": "fuzz"}) as http:
        yield http
        assert http.get("/healthz").json()["status"] == "ok"


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.request.method == "HEAD":
        assert response.content == b""
    elif response.status_code >= 400 and response.headers.get("content-type") == "application/json":
        detail = response.json()["detail"]
        assert detail and (isinstance(detail, str) or response.status_code in (404, 405)), response.text[:300]


def fuzz(examples: int, **strategies):
    """A default test with ``examples`` cases and a slow twin with SLOW_FACTOR times as many."""
    def make(body):
        def variant(count: int):
            return settings(max_examples=count, deadline=None, derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])(
                given(**strategies)(body))
        return variant(examples), pytest.mark.slow(variant(examples * SLOW_FACTOR))
    return make


def post_json(client: httpx.Client, body) -> None:
    check(client.post("/v1/forecast", content=json.dumps(body).encode(), headers={"content-type": "application/json"}))


def _arbitrary_json_bodies(client, body):
    post_json(client, body)


def _valid_request_with_one_field_replaced(client, field, value):
    post_json(client, {**VALID, field: value})


def _valid_request_with_one_bar_field_replaced(client, row, field, value):
    bars = [dict(bar) for bar in BARS]
    bars[row][field] = value
    post_json(client, {**VALID, "bars": bars})


def _raw_bytes(client, data, content_type):
    check(client.post("/v1/forecast", content=data, headers={"content-type": content_type}))


def _csv_upload_with_random_settings_and_corrupted_bytes(client, fields, cut, junk):
    check(client.post("/v1/forecast", files={"file": ("ibm.csv", CSV[:cut] + junk + CSV[cut:])}, data=fields))


def _any_method_path_and_browser_headers(client, method, path, suffix, host, origin, fetch_site):
    headers = {}
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    check(client.request(method, path + quote(suffix), headers=headers))


test_arbitrary_json_bodies, test_arbitrary_json_bodies_slow = fuzz(30, body=json_values)(_arbitrary_json_bodies)
test_valid_request_with_one_field_replaced, test_valid_request_with_one_field_replaced_slow = fuzz(
    40, field=st.sampled_from(FIELDS), value=json_values)(_valid_request_with_one_field_replaced)
test_valid_request_with_one_bar_field_replaced, test_valid_request_with_one_bar_field_replaced_slow = fuzz(
    30, row=st.integers(0, len(BARS) - 1), field=st.sampled_from(BAR_FIELDS), value=json_values)(
    _valid_request_with_one_bar_field_replaced)
test_raw_bytes, test_raw_bytes_slow = fuzz(
    25, data=st.binary(max_size=300), content_type=st.sampled_from(
        ["application/json", "multipart/form-data", "multipart/form-data; boundary=xyz", "text/csv", ""]))(
    _raw_bytes)
test_csv_upload, test_csv_upload_slow = fuzz(
    30, fields=st.dictionaries(st.sampled_from(FIELDS + ["time_column"]), st.text(max_size=10), max_size=4),
    cut=st.integers(0, len(CSV)), junk=st.binary(max_size=20))(_csv_upload_with_random_settings_and_corrupted_bytes)
test_every_route, test_every_route_slow = fuzz(
    45, method=st.sampled_from(METHODS), path=st.sampled_from(PATHS), suffix=st.text(max_size=12),
    host=st.none() | st.sampled_from(["localhost", "127.0.0.1:1", "[::1]", "evil.example"]) | header_text,
    origin=st.none() | st.sampled_from(["http://127.0.0.1", "null", "https://evil.example"]) | header_text,
    fetch_site=st.none() | st.sampled_from(["same-origin", "cross-site", "same-site", "none"]))(
    _any_method_path_and_browser_headers)
