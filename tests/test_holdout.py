"""Forecast vs actual on real series: kronos.forecasting.holdout, ``kronos forecast --holdout``, the service's
``cutoff`` and the page's Cut-off box."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from kronos.forecasting.holdout import holdout_frame, scores, split_at, summary
from kronos.forecasting.predictor import Forecast
from kronos.service.app import ServerThread, create_app
from kronos.service.serving import ServiceLimits
from kronos.stats.scores import crps_samples

from .conftest import DATA, import_or_need, need

GOOG = DATA / "bokeh_GOOG_1d.csv"


def test_scores_by_hand():
    bars = pd.read_csv(GOOG, parse_dates=["timestamps"]).set_index("timestamps")
    history, realised = split_at(bars, "2013-02-25")
    assert history.index[-1] < pd.Timestamp("2013-02-25") <= realised.index[0]
    rng = np.random.default_rng(0)
    last = history.iloc[-1].to_numpy(dtype=np.float32)
    samples = (last * rng.lognormal(0, 0.02, (50, 3, 6))).astype(np.float32)  # paths around the last bar
    forecast = Forecast(samples, realised.index[:3])
    got = scores(forecast, realised)  # only 5 realised bars, horizon 3
    close = realised["close"].to_numpy()[:3]
    np.testing.assert_allclose(got["crps"][:, 3], crps_samples(samples[..., 3].astype(np.float64), close))
    lo, hi = np.quantile(samples[..., 3].astype(np.float64), [0.1, 0.9], axis=0)
    np.testing.assert_array_equal(got["in_80"][:, 3], ((close >= lo) & (close <= hi)).astype(float))
    frame = holdout_frame(forecast, realised.iloc[:2])  # horizon past the data: NaN there
    rows = frame[frame["column"] == "close"]
    assert rows["realised"].iloc[:2].tolist() == pytest.approx(close[:2]) and np.isnan(rows["realised"].iloc[2])
    s = summary(forecast, realised, float(history["close"].iloc[-1]))
    assert s["bars"] == 3 and s["crps_close"] == pytest.approx(got["crps"][:, 3].mean())


def test_forecast_holdout_on_the_command_line(tmp_path, capsys, parity_dir):
    from kronos.cli import main

    tiny = ["--model", str(parity_dir / "model"), "--tokenizer", str(parity_dir / "tokenizer"), "--max-context", "256"]
    out = tmp_path / "check.csv"
    assert main(["forecast", str(GOOG), "--holdout", "4", "--samples", "4", "--seed", "1", "--lookback", "200",
                 "--no-calibrate", "--out", str(out), "--plot", str(tmp_path / "check.png"), *tiny]) == 0
    err = capsys.readouterr().err
    assert "held-out 4 bars from 2013-02-26" in err and "80% interval" in err
    frame = pd.read_csv(out, parse_dates=["timestamp"])
    bars = pd.read_csv(GOOG, parse_dates=["timestamps"]).tail(4)
    close = frame[frame["column"] == "close"]
    assert close["timestamp"].tolist() == bars["timestamps"].tolist()
    assert close["realised"].to_numpy() == pytest.approx(bars["close"].to_numpy(), rel=1e-6)
    assert {"crps", "in_50", "in_80"} <= set(frame.columns) and (frame["crps"] >= 0).all()
    assert (tmp_path / "check.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["forecast", str(GOOG), "--holdout", "4", "--pred-len", "5", *tiny]) == 2
    assert "--holdout 4" in capsys.readouterr().err


@pytest.fixture(scope="module")
def url(tiny_predictor):
    with ServerThread(create_app(tiny_predictor, ServiceLimits(max_pred_len=32, max_samples=16),
                                 model_name="parity-tiny")) as base:
        yield base


def test_service_cutoff_returns_realised_crps_and_hits(url):
    data = GOOG.read_bytes()
    with httpx.Client(base_url=url, timeout=300, headers={"X-Kronos-Client": "test"}) as http:
        response = http.post("/v1/forecast", files={"file": ("goog.csv", data, "text/csv")},
                             data={"pred_len": "6", "samples": "4", "seed": "3", "cutoff": "2013-02-25",
                                   "lookback": "200", "chart": "true", "calibrate": "false"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["history_end"] == "2013-02-22T00:00:00"
        assert body["timestamps"][:5] == [f"2013-{d}T00:00:00" for d in ("02-25", "02-26", "02-27", "02-28", "03-01")]
        bars = pd.read_csv(GOOG).tail(5)
        assert body["realised"]["close"] == pytest.approx(bars["close"].tolist())
        assert len(body["crps"]["close"]) == 5 and all(v >= 0 for v in body["crps"]["close"])
        assert set(body["hits"]) == {"50", "80"} and len(body["hits"]["80"]["close"]) == 5
        assert body["holdout"]["bars"] == 5 and 0 <= body["holdout"]["coverage_80"] <= 1
        assert "realised" in [trace.get("name") for trace in body["chart"]["data"]]
        plain = http.post("/v1/forecast", files={"file": ("goog.csv", data, "text/csv")},
                          data={"pred_len": "2", "samples": "2", "lookback": "100"}).json()
        assert "realised" not in plain and "holdout" not in plain
        late = http.post("/v1/forecast", files={"file": ("goog.csv", data, "text/csv")},
                         data={"pred_len": "2", "samples": "2", "cutoff": "2014-01-01"})
        assert late.status_code == 422 and "after the last bar" in late.json()["detail"]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def test_page_cutoff_draws_realised_bars_and_fills_the_table(url):
    need(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
         "needs Debian's chromium and chromium-driver (installed by .ci/run)")
    webdriver = import_or_need("selenium.webdriver", "pip install 'kronos-kline[test]' (selenium)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .test_web_page import CHROMIUM_ARGS

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "file").send_keys(str(GOOG))
        for field, value in (("pred_len", 8), ("samples", 4), ("cutoff", "2013-02-20")):
            element = browser.find_element(By.ID, field)
            element.clear()
            element.send_keys(str(value))
        browser.find_element(By.ID, "run").click()
        WebDriverWait(browser, 240).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
        status = browser.find_element(By.ID, "status").text
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "done", status
        assert "against the 8 realised bars" in status
        names = browser.execute_script("return document.getElementById('chart').data.map(t => t.name);")
        assert "realised" in names
        rows = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
        cells = [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")]
        assert cells[0] == "2013-02-20" and len(cells) == 10 and cells[8] in ("yes", "no")
    finally:
        browser.quit()
