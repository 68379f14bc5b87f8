"""How fast `kronos serve` refuses hostile requests and gives up abandoned work (the tiny parity model).

The tests check what the service does with these requests (the status, the message, that a stopped
model call stopped before its last step, that ``/healthz`` kept answering); how long it takes is
measured here, where a busy machine slows the figures instead of failing a test. In one run, on a server
in this process on 127.0.0.1:

- a CSV of commas (1 MiB and 7 MiB) and a 7 MiB JSON body of 90 000 bars: seconds to the refusal, and
  the slowest ``/healthz`` answer meanwhile against the median ``/healthz`` answer of the idle server
  (the baseline), as a ratio;
- a model call of minutes (pred_len 2000 x 256 paths) whose client timed out after 3 s, or disconnected
  after 1 s: seconds until the worker has answered the next request, and the ratio of that to the
  time the whole call would have taken (its steps done against its steps planned);
- ``kronos serve`` stopped with SIGTERM during such a call: seconds to exit.

    python benchmarks/bench_service_bounds.py
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from machine_info import cpu_name

TESTS = Path(__file__).resolve().parents[1] / "tests"
TINY = TESTS / "fixtures" / "parity-tiny"
CLIENT = {"X-Kronos-Client": "bench"}


def real_bars(n: int) -> list[dict]:
    frame = pd.read_csv(TESTS / "data" / "bokeh_AAPL_1d.csv").tail(n)
    return [{"timestamp": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for t, o, h, lo, c, v in frame[["timestamps", "open", "high", "low", "close", "volume"]].itertuples(
                index=False)]


class Probe:
    """/healthz polled every 20 ms in a thread; the latency of each answer."""

    def __init__(self, url: str):
        self.url, self.latencies, self._stop = url, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                http.get("/healthz")
                self.latencies.append(time.perf_counter() - started)
                self._stop.wait(0.02)

    def __enter__(self) -> Probe:
        self._thread.start()
        while not self.latencies:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed(probe_url: str, send) -> tuple[float, float, int]:
    """(seconds, slowest /healthz answer meanwhile, status) of ``send()``."""
    with Probe(probe_url) as probe:
        started = time.perf_counter()
        status = send()
        seconds = time.perf_counter() - started
    return seconds, max(probe.latencies), status


class StepLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.steps: list[tuple[int, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"stopped after (\d+) of (\d+) steps", record.getMessage())
        if found:
            self.steps.append((int(found[1]), int(found[2])))


def main() -> int:
    from kronos import KronosPredictor
    from kronos.service.app import ServerThread, create_app, free_port
    from kronos.service.serving import ServiceLimits

    predictor = KronosPredictor.from_pretrained(TINY / "model", TINY / "tokenizer", device="cpu", max_context=256)
    print(f"machine: {cpu_name()}")
    rows = []
    limits = ServiceLimits(max_pred_len=64, max_samples=16, max_work=10_000, request_timeout_s=60)
    with ServerThread(create_app(predictor, limits)) as url, httpx.Client(base_url=url, timeout=60,
                                                                          headers=CLIENT) as http:
        with Probe(url) as idle:
            time.sleep(1.0)
        baseline = float(np.median(idle.latencies))
        print(f"/healthz on the idle server: median {baseline * 1e3:.1f} ms over {len(idle.latencies)} answers")
        body = json.dumps({"bars": [real_bars(1)[0]] * 90_000}, separators=(",", ":")).encode()
        cases = [("CSV of commas, 1 MiB", lambda: http.post("/v1/forecast", files={"file": ("w.csv", b"," * 2**20)})),
                 ("CSV of commas, 7 MiB", lambda: http.post("/v1/forecast",
                                                            files={"file": ("w.csv", b"," * 7 * 2**20)})),
                 ("JSON of 90 000 bars, 7 MiB", lambda: http.post("/v1/forecast", content=body,
                                                                  headers={"content-type": "application/json"}))]
        for name, send in cases:
            seconds, slowest, status = timed(url, lambda send=send: send().status_code)
            rows.append((name, status, seconds, slowest / baseline))
    print("\n| request | status | seconds to the answer | slowest /healthz meanwhile / idle median |")
    print("|---|---|---|---|")
    for name, status, seconds, ratio in rows:
        print(f"| {name} | {status} | {seconds:.3f} | {ratio:.1f}x |")

    steps = StepLog()
    logging.getLogger("kronos.service").addHandler(steps)
    logging.getLogger("kronos.service").setLevel(logging.INFO)
    heavy = {"bars": real_bars(60), "pred_len": 2000, "samples": 256, "calibrate": False, "seed": 1}
    light = {"bars": real_bars(60), "pred_len": 2, "samples": 2}
    print("\n| abandoned call | seconds until the next request is answered | share of the whole call's time |")
    print("|---|---|---|")
    for how in ("client timed out after 3 s", "client disconnected after 1 s"):
        timeout = 3.0 if "timed out" in how else 300
        limits = ServiceLimits(max_pred_len=4096, max_samples=512, max_work=10**9, request_timeout_s=timeout)
        with ServerThread(create_app(predictor, limits)) as url, httpx.Client(base_url=url, timeout=120,
                                                                              headers=CLIENT) as http:
            started = time.perf_counter()
            try:
                http.post("/v1/forecast", json=heavy, timeout=120 if "timed out" in how else 1.0)
            except httpx.ReadTimeout:
                pass
            assert http.post("/v1/forecast", json=light).status_code == 200
            seconds = time.perf_counter() - started
        done, planned = steps.steps[-1]
        whole = seconds * planned / max(done, 1)  # the call's pace, stretched to all its steps (an upper bound)
        print(f"| {how} | {seconds:.2f} | {seconds / whole:.3f} (stopped after {done} of {planned} steps) |")

    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", str(TINY / "model"),
               "--tokenizer", str(TINY / "tokenizer"), "--max-context", "256", "--max-work", "1000000000",
               "--max-pred-len", "4096", "--max-samples", "512", "--timeout", "600"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    threading.Thread(target=lambda: httpx.post(base + "/v1/forecast", json={**heavy, "pred_len": 3000},
                                               timeout=300), daemon=True).start()
    while httpx.get(base + "/healthz", timeout=10).json()["model_calls"] == 0:
        time.sleep(0.05)
    started = time.perf_counter()
    process.terminate()
    process.wait(timeout=120)
    print(f"\nkronos serve stopped by SIGTERM during a call of minutes: exited after "
          f"{time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
