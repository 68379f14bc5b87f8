"""Fuzz POST /v1/forecast over real HTTP (Hypothesis, a bounded number of cases): never a 5xx.

Bodies are arbitrary JSON, valid requests with one field or one bar field replaced by arbitrary
JSON, raw bytes, and multipart uploads of a real CSV with random settings or corrupted bytes. Every
answer is 200 or a 4xx with a ``detail`` message, and the server stays up.
"""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kronos.network import Kronos
from kronos.predictor import KronosPredictor
from kronos.service.app import ServerThread, create_app
from kronos.service.schemas import ForecastSettings
from kronos.service.serving import ServiceLimits
from kronos.tokenizer import KronosTokenizer

from .conftest import DATA, PARITY

TINY = PARITY
CSV_LINES = (DATA / "bokeh_IBM_1d.csv").read_bytes().splitlines(keepends=True)
CSV = b"".join(CSV_LINES[:1] + CSV_LINES[-40:])
FRAME = pd.read_csv(DATA / "bokeh_IBM_1d.csv").tail(20)
BARS = [{"timestamp": r.timestamps, "open": r.open, "high": r.high, "low": r.low, "close": r.close,
         "volume": r.volume} for r in FRAME.itertuples()]
VALID = {"bars": BARS, "pred_len": 1, "samples": 1}
FIELDS = [*ForecastSettings.model_fields, "bars", "extra", ""]
BAR_FIELDS = ["timestamp", "open", "high", "low", "close", "volume", "amount", "vwap"]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["2013-01-02", "5min", "B", "0.5,0.9", "-1", "1e400", "NaN"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def client():
    predictor = KronosPredictor(Kronos.from_pretrained(TINY / "model"),
                                KronosTokenizer.from_pretrained(TINY / "tokenizer"), device="cpu", max_context=256)
    limits = ServiceLimits(max_body_bytes=64 * 1024, max_rows=300, max_pred_len=3, max_samples=2)
    with ServerThread(create_app(predictor, limits)) as base, httpx.Client(base_url=base, timeout=60) as http:
        yield http
        assert http.get("/healthz").json()["status"] == "ok"


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code != 200:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail, response.text[:300]


@FUZZ
@given(body=json_values)
def test_arbitrary_json_bodies(client, body):
    check(client.post("/v1/forecast", content=json.dumps(body).encode(), headers={"content-type": "application/json"}))


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_valid_request_with_one_field_replaced(client, field, value):
    check(client.post("/v1/forecast", content=json.dumps({**VALID, field: value}).encode(),
                      headers={"content-type": "application/json"}))


@FUZZ
@given(row=st.integers(0, len(BARS) - 1), field=st.sampled_from(BAR_FIELDS), value=json_values)
def test_valid_request_with_one_bar_field_replaced(client, row, field, value):
    bars = [dict(bar) for bar in BARS]
    bars[row][field] = value
    check(client.post("/v1/forecast", content=json.dumps({**VALID, "bars": bars}).encode(),
                      headers={"content-type": "application/json"}))


@FUZZ
@given(data=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/json", "multipart/form-data", "multipart/form-data; boundary=xyz", "text/csv", ""]))
def test_raw_bytes(client, data, content_type):
    check(client.post("/v1/forecast", content=data, headers={"content-type": content_type}))


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(FIELDS + ["time_column"]), st.text(max_size=10), max_size=4),
       cut=st.integers(0, len(CSV)), junk=st.binary(max_size=20))
def test_csv_upload_with_random_settings_and_corrupted_bytes(client, fields, cut, junk):
    check(client.post("/v1/forecast", files={"file": ("ibm.csv", CSV[:cut] + junk + CSV[cut:])}, data=fields))
