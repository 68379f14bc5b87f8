"""End to end: the page at / in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Uploads a real CSV, runs a forecast, and checks that the Plotly chart and the table appear, with no
request leaving 127.0.0.1 (plotly.js comes from the plotly package).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kronos.service.app import ServerThread, create_app
from kronos.service.serving import ServiceLimits

from .conftest import DATA, import_or_need, need

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1300")

webdriver = import_or_need("selenium.webdriver", "pip install 'kronos-kline[test]' (selenium)", module_level=True)
need(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
     "needs Debian's chromium and chromium-driver (installed by .ci/run)", module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def url(tiny_predictor):
    limits = ServiceLimits(max_pred_len=32, max_samples=16)
    with ServerThread(create_app(tiny_predictor, limits, model_name="parity-tiny")) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def forecast_on_page(browser, pred_len: int) -> str:
    """Set the horizon and sample count, press Forecast, wait for the outcome; returns the status state."""
    for field, value in (("pred_len", pred_len), ("samples", 6)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(str(value))
    browser.execute_script("document.getElementById('status').dataset.state = 'idle';")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    return browser.find_element(By.ID, "status").get_attribute("data-state")


def test_upload_a_real_csv_and_see_the_chart_and_the_table(browser, url, tmp_path):
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#example option")) == 4)
    assert "parity-tiny" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "file").send_keys(str(DATA / "bokeh_GOOG_1d.csv"))
    state = forecast_on_page(browser, 15)
    assert state == "done", browser.find_element(By.ID, "status").text
    chart = browser.execute_script(
        "const c = document.getElementById('chart'); return c.data.map(t => [t.type, t.name, t.x.length]);")
    assert chart[0] == ["candlestick", "history", 120]
    assert ["scatter", "forecast median (close)", 16] in chart  # last close + 15 forecast bars
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg.main-svg")
    rows = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    assert len(rows) == 15 and rows[0].find_elements(By.TAG_NAME, "td")[0].text == "2013-03-04"
    browser.save_screenshot(str(tmp_path / "page.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_pick_an_example_and_see_a_service_error_as_text(browser, url):
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#example option")) == 4)
    Select(browser.find_element(By.ID, "example")).select_by_visible_text("FB_1d")
    assert forecast_on_page(browser, 5) == "done"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")) == 5
    # over the server's limit: the page shows the service's one-line message, not a broken chart
    assert forecast_on_page(browser, 33) == "error"
    assert "pred_len 33 is above this server's limit 32" in browser.find_element(By.ID, "status").text


def test_the_api_docs_page_renders_offline_under_the_content_security_policy(browser, url):
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url + "/docs")
    WebDriverWait(browser, 30).until(lambda d: "POST /v1/forecast" in d.find_element(By.ID, "api").text)
    text = browser.find_element(By.ID, "api").text
    assert "ForecastRequest" in text and "pred_len" in text
    scripts = browser.execute_script("return [...document.scripts].map(s => s.src)")
    assert scripts == [url + "/static/docs.js"]
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_the_same_file_twice_with_the_default_seed_gives_the_same_forecast(browser, url):
    """Steady defaults: the page sends seed 0 unless told otherwise, so a rerun shows the same table; the status
    says the seed and the calibration in words."""
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#example option")) == 4)
    assert browser.find_element(By.ID, "seed").get_attribute("value") == "0"
    browser.find_element(By.ID, "file").send_keys(str(DATA / "bokeh_GOOG_1d.csv"))
    tables = []
    for _ in range(2):
        assert forecast_on_page(browser, 8) == "done"
        tables.append(browser.find_element(By.CSS_SELECTOR, "#table tbody").text)
    assert tables[0] == tables[1] and len(tables[0].splitlines()) == 8
    status = browser.find_element(By.ID, "status").text
    assert "seed 0" in status and "drift kept: " in status, status
    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("5")
    assert forecast_on_page(browser, 8) == "done"
    assert browser.find_element(By.CSS_SELECTOR, "#table tbody").text != tables[0]
