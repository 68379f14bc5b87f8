"""What the service reads, against a real server on 127.0.0.1: dates as written (or a 422 naming the form
field), one symbol picked from a long file, the exchange calendar, clear 422s for timestamps past what
pandas holds and prices beyond float32, a 431 for a long request head, and the documented upload header."""

from __future__ import annotations

import socket

import httpx
import pandas as pd
import pytest

from kronos.service.app import ServerThread, create_app
from kronos.service.server import MAX_HEAD_BYTES
from kronos.service.serving import ServiceLimits

from .conftest import read_bars
from .test_dates import european

CLIENT = {"X-Kronos-Client": "tests"}
SETTINGS = {"pred_len": "2", "samples": "2", "seed": "0", "calibrate": "false"}


@pytest.fixture(scope="module")
def url(tiny_predictor):
    limits = ServiceLimits(max_pred_len=64, max_samples=16, request_timeout_s=120)
    with ServerThread(create_app(tiny_predictor, limits, model_name="parity-tiny")) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=120, headers=CLIENT) as http:
        yield http


def upload(client: httpx.Client, data: bytes, name: str = "export.csv", **fields: str) -> httpx.Response:
    return client.post("/v1/forecast", files={"file": (name, data, "text/csv")}, data={**SETTINGS, **fields})


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return read_bars("bokeh_AAPL_1d.csv")


def test_a_european_upload_is_read_day_first_and_skips_the_holiday(client, aapl):
    bars = aapl[aapl.timestamps < "2012-11-22"].tail(200)
    answer = upload(client, european(bars))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["history_end"].startswith("2012-11-21")
    assert [t[:10] for t in body["timestamps"]] == ["2012-11-23", "2012-11-26"]
    assert "XNYS calendar" in body["freq"]


def test_an_ambiguous_upload_names_the_form_fields_and_obeys_them(client, aapl):
    bars = aapl[(aapl.timestamps >= "2012-03-01") & (aapl.timestamps <= "2012-03-12")]
    refused = upload(client, european(bars))
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "export.csv: column 'date'" in detail and "dayfirst=true" in detail and "dayfirst=false" in detail
    assert "form field 'date_format'" in detail and "sort" not in detail
    answer = upload(client, european(bars), dayfirst="true")
    assert answer.status_code == 200, answer.text
    assert answer.json()["history_end"].startswith("2012-03-12")
    answer = upload(client, european(bars), date_format="%d.%m.%Y", calendar="none")
    assert answer.status_code == 200, answer.text
    bad = upload(client, european(bars), dayfirst="maybe")
    assert bad.status_code == 422 and "form field 'dayfirst' must be true or false" in bad.json()["detail"]


def long_table() -> bytes:
    frames = [read_bars(f"bokeh_{symbol}_1d.csv").tail(60).assign(symbol=symbol) for symbol in ("AAPL", "MSFT", "IBM")]
    return pd.concat(frames).to_csv(index=False).encode()


def test_a_long_file_lists_its_symbols_and_one_is_picked(client):
    refused = upload(client, long_table(), "panel.csv")
    assert refused.status_code == 422
    body = refused.json()
    assert "panel.csv holds 3 series (column 'symbol'" in body["detail"] and "form field 'symbol'" in body["detail"]
    assert body["errors"][0]["symbols"] == ["AAPL", "MSFT", "IBM"]
    answer = upload(client, long_table(), "panel.csv", symbol="MSFT")
    assert answer.status_code == 200, answer.text
    msft = read_bars("bokeh_MSFT_1d.csv").close.iloc[-1]
    assert abs(answer.json()["mean"]["close"][0] / msft - 1) < 0.5
    missing = upload(client, long_table(), "panel.csv", symbol="TSLA")
    assert missing.status_code == 422 and "no series 'TSLA'" in missing.json()["detail"]


def json_bars(frame: pd.DataFrame) -> list[dict]:
    return [{"timestamp": t.isoformat(), "open": o, "high": h, "low": lo, "close": c}
            for t, o, h, lo, c in zip(frame.timestamps, frame.open, frame.high, frame.low, frame.close)]


def test_the_json_api_takes_a_calendar_and_refuses_an_unknown_one(client, aapl):
    bars = json_bars(aapl[aapl.timestamps < "2012-12-25"].tail(100))
    answer = client.post("/v1/forecast", json={"bars": bars, "pred_len": 2, "samples": 2, "calibrate": False,
                                               "calendar": "XNYS"})
    assert answer.status_code == 200, answer.text
    assert [t[:10] for t in answer.json()["timestamps"]] == ["2012-12-26", "2012-12-27"]
    assert answer.json()["freq"] == "1 day on the XNYS calendar"
    bad = client.post("/v1/forecast", json={"bars": bars, "pred_len": 2, "calendar": "MOON"})
    assert bad.status_code == 422 and "calendar 'MOON' is not an exchange calendar" in bad.json()["detail"]


def test_timestamps_in_year_9999_are_a_clear_422(client, aapl):
    bars = json_bars(aapl.tail(30))
    for i, bar in enumerate(bars):
        bar["timestamp"] = f"9999-12-{i % 28 + 1:02d}T00:00:00"
    answer = client.post("/v1/forecast", json={"bars": bars, "pred_len": 2})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "column 'timestamp' row 0" in detail and "outside the years 1678 to 2261" in detail
    assert "Out of bounds" not in detail


def test_a_price_of_1e308_names_the_column_sent(client, aapl):
    frame = aapl.tail(60).copy()
    frame.loc[frame.index[5], "close"] = 1e308
    answer = upload(client, frame.to_csv(index=False).encode(), "huge.csv")
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "column 'close'" in detail and "amount" not in detail


def raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("size", [MAX_HEAD_BYTES + 1024, 200 * 1024])
def test_a_request_head_over_the_limit_gets_431(url, size):
    head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * size + b"\r\n\r\n")
    answer = raw_request(url, head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert str(MAX_HEAD_BYTES).encode() in answer
    assert httpx.get(f"{url}/healthz").status_code == 200  # the server is fine


def test_a_head_under_the_limit_is_served(url):
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Padding: " + b"a" * 8000 + b"\r\n\r\n"
    assert raw_request(url, head).startswith(b"HTTP/1.1 200 ")


def test_the_api_reference_documents_the_upload_header(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/forecast"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "X-Kronos-Client")
    assert header["in"] == "header" and "multipart/form-data" in header["description"]
    assert "X-Kronos-Client" in operation["description"] and "431" in operation["description"]
    assert "X-Kronos-Client" in spec["info"]["description"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"date_format", "dayfirst", "symbol", "calendar"} <= set(form)
    script = client.get("/static/docs.js").text
    assert "op.parameters" in script  # /docs renders the header from the schema
