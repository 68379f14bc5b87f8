"""Calibrated requests answered per second by `kronos serve` at 1, 8 and 64 concurrent clients, with
latency percentiles, against a baseline source tree, in one run.

For each side (``--baseline`` src folder, then ours) it starts the real ``kronos serve`` (bundled model)
in a subprocess on a free loopback port, with ``PYTHONPATH`` at that side's sources. ``--series``
windows of real bars (``--window`` bars of the shared files, ``pred_len`` 24, 20 paths, calibrated) are
each requested once to warm the server, then, at each concurrency, every client sends its requests one
after another, cycling over the windows (series already seen). Prints requests/s and p50/p90/p99
latency per concurrency and side, and the ratios.

    python benchmarks/bench_service_clients.py --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FILES = ("bokeh_AAPL_1d.csv", "bokeh_MSFT_1d.csv", "bokeh_IBM_1d.csv", "bokeh_GOOG_1d.csv")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bodies(count: int, window: int) -> list[dict]:
    bodies = []
    for k in range(count):
        frame = pd.read_csv(ROOT / "tests" / "data" / FILES[k % len(FILES)], parse_dates=["timestamps"])
        end = len(frame) - 50 * (k // len(FILES))
        part = frame.iloc[end - window:end]
        bars = [{"timestamp": t.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in zip(part["timestamps"], part["open"], part["high"], part["low"],
                                             part["close"], part["volume"])]
        bodies.append({"bars": bars, "pred_len": 24, "samples": 20, "calibrate": True})
    return bodies


def _start(src: str, timeout: float) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": src}
    process = subprocess.Popen([sys.executable, "-m", "kronos", "serve", "--port", str(port), "--timeout",
                                str(timeout), "--max-queue", "256", "--device", "cpu"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kronos serve ({src}) exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("kronos serve did not start within 300 s")


async def _wave(url: str, bodies: list[dict], clients: int, per_client: int, timeout: float):
    latencies: list[float] = []
    failed = 0

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal failed
        for r in range(per_client):
            started = time.perf_counter()
            answer = await http.post("/v1/forecast", json=bodies[(c * per_client + r) % len(bodies)])
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        seconds = time.perf_counter() - started
    return len(latencies) / seconds, np.percentile(latencies, [50, 90, 99]) if latencies else [np.nan] * 3, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the baseline's src folder")
    parser.add_argument("--current", default=str(ROOT / "src"))
    parser.add_argument("--series", type=int, default=8, help="distinct windows requested")
    parser.add_argument("--window", type=int, default=300)
    parser.add_argument("--requests", default="1:4,8:1,64:1", help="clients:requests-per-client list")
    parser.add_argument("--timeout", type=float, default=1200, help="client and server timeout, seconds")
    args = parser.parse_args()
    bodies = _bodies(args.series, args.window)
    waves = [tuple(int(x) for x in part.split(":")) for part in args.requests.split(",")]
    results = {}
    for side, src in (("baseline", args.baseline), ("current", args.current)):
        process, url = _start(str(Path(src).resolve()), args.timeout)
        try:
            asyncio.run(_wave(url, bodies, len(bodies), 1, args.timeout))  # every series seen once
            for clients, per_client in waves:
                load = "/".join(f"{v:.1f}" for v in os.getloadavg())
                rate, (p50, p90, p99), failed = asyncio.run(_wave(url, bodies, clients, per_client, args.timeout))
                results[side, clients] = rate
                print(f"{side}: {clients} clients x {per_client}: {rate:.2f} req/s, latency p50 {p50:.2f} s, "
                      f"p90 {p90:.2f} s, p99 {p99:.2f} s, {failed} not answered 200 (load {load})", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    for clients, _ in waves:
        print(f"{clients} clients: {results['current', clients] / results['baseline', clients]:.2f}x the requests/s")


if __name__ == "__main__":
    main()
