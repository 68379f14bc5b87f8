"""Calibrated requests answered per second by `kronos serve` at 1, 8 and 64 concurrent clients, with
latency percentiles, for series the server has not seen and for series it has, against a baseline
source tree, in one run.

For each side (``--baseline`` src folder and ours) it starts the real ``kronos serve`` (bundled model,
CPU) in a subprocess on a free loopback port, with ``PYTHONPATH`` at that side's sources; the two
servers run side by side and each measurement is taken on one, then at once on the other (only one
works at a time), so both see the same load. The requests are windows of ``--window`` real bars from
the test data (each window a distinct history: no two share their bars), ``pred_len`` 24,
``--samples`` paths, calibrated. One request warms each server up. Then, at each concurrency ``c``
with ``r`` requests per client (``--requests c:r,...``), the clients send ``c * r`` windows the server
has never seen (first time: calibration forecasts every past origin), each client one request after
another; then the same windows again, in another order and with other seeds (repeat: the past
forecasts can be reused). Prints requests/s and p50/p90/p99 latency per side, concurrency and pass,
the ratios, and each server's past-forecast store at the end (``/healthz``, where the side reports it).

    git archive 94111f1 src | tar -x -C /tmp/base
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
from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
FILES = ("bokeh_AAPL_1d.csv", "bokeh_MSFT_1d.csv", "bokeh_IBM_1d.csv", "pyalgotrade_SPY-2011-01_1min.csv",
         "kronos_XSHG-600977_5min.csv", "backtesting_EURUSD_1h.csv", "gymanytrading_EURUSD-ASK_1h.csv")
STRIDE = 37  # bars between the ends of neighbouring windows of one file


def _bodies(count: int, window: int, samples: int) -> list[dict]:
    """``count`` calibrated request bodies, each a distinct window of real bars (round robin over FILES)."""
    frames = [pd.read_csv(ROOT / "tests" / "data" / name, parse_dates=["timestamps"]) for name in FILES]
    bodies = []
    for k in range(count):
        frame = frames[k % len(frames)]
        end = len(frame) - STRIDE * (k // len(frames))
        if end - window < 0:
            raise SystemExit(f"{count} windows of {window} bars do not fit the test files; ask for fewer")
        part = frame.iloc[end - window:end]
        bars = [{"timestamp": t.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in zip(part["timestamps"], part["open"], part["high"], part["low"],
                                             part["close"], part["volume"])]
        bodies.append({"bars": bars, "pred_len": 24, "samples": samples, "calibrate": True, "seed": k})
    return bodies


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(src: str, timeout: float, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(threads)}
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


async def _wave(url: str, bodies: list[list[dict]], timeout: float) -> tuple[float, np.ndarray, int]:
    """Client ``c`` sends ``bodies[c]`` one after another, all clients at once: (requests/s, latency p50/p90/p99
    in seconds, requests not answered 200)."""
    latencies: list[float] = []
    failed = 0

    async def client(mine: list[dict], http: httpx.AsyncClient) -> None:
        nonlocal failed
        for body in mine:
            started = time.perf_counter()
            answer = await http.post("/v1/forecast", json=body)
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1

    limits = httpx.Limits(max_connections=len(bodies) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(mine, http) for mine in bodies))
        seconds = time.perf_counter() - started
    quantiles = np.percentile(latencies, [50, 90, 99]) if latencies else np.full(3, np.nan)
    return len(latencies) / seconds, quantiles, failed


Wave = tuple[int, int, list[list[dict]], list[list[dict]]]


def _plan(bodies: list[dict], waves: list[tuple[int, int]]) -> list[Wave]:
    """Per wave: (clients, requests per client, first-time bodies per client, repeat bodies per client). The repeat
    pass sends the same windows shifted by one client and with other seeds."""
    out, used = [], 0
    for clients, per_client in waves:
        mine = bodies[used:used + clients * per_client]
        used += clients * per_client
        first = [mine[c * per_client:(c + 1) * per_client] for c in range(clients)]
        again = [{**body, "seed": body["seed"] + 10_000} for body in mine[per_client:] + mine[:per_client]]
        out.append((clients, per_client, first, [again[c * per_client:(c + 1) * per_client] for c in range(clients)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the baseline's src folder")
    parser.add_argument("--current", default=str(ROOT / "src"))
    parser.add_argument("--window", type=int, default=600, help="bars per request")
    parser.add_argument("--samples", type=int, default=20, help="sample paths per request")
    parser.add_argument("--requests", default="1:4,8:1,64:1", help="clients:requests-per-client list")
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--timeout", type=float, default=1200, help="client and server timeout, seconds")
    args = parser.parse_args()
    waves = [tuple(int(x) for x in part.split(":")) for part in args.requests.split(",")]
    bodies = _bodies(1 + sum(c * r for c, r in waves), args.window, args.samples)
    warm_up, plan = bodies[0], _plan(bodies[1:], waves)
    print(f"{machine()}; {len(bodies) - 1} distinct windows of {args.window} bars, pred_len 24, {args.samples} paths, "
          f"calibrated, server on {args.threads} thread(s)", flush=True)
    print("| side | clients x requests each | series | requests/s | p50 s | p90 s | p99 s | not 200 | load |\n"
          "|---|---|---|---|---|---|---|---|---|")
    results = {}
    servers = {side: _start(str(Path(src).resolve()), args.timeout, args.threads)
               for side, src in (("baseline", args.baseline), ("current", args.current))}
    try:
        for _, url in servers.values():
            asyncio.run(_wave(url, [[warm_up]], args.timeout))  # the first model call pays for warming up
        for clients, per_client, first, again in plan:
            for kind, per in (("first time", first), ("repeat", again)):
                for side, (_, url) in servers.items():  # interleaved: both sides under the same load
                    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
                    rate, (p50, p90, p99), failed = asyncio.run(_wave(url, per, args.timeout))
                    results[side, clients, kind] = rate
                    print(f"| {side} | {clients} x {per_client} | {kind} | {rate:.2f} | {p50:.2f} | {p90:.2f} | "
                          f"{p99:.2f} | {failed} | {load} |", flush=True)
        for side, (_, url) in servers.items():
            store = httpx.get(url + "/healthz", timeout=10).json().get("past_forecasts")
            if store:
                print(f"{side}: past forecasts kept: {store}", flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print("\nrequests/s, current / baseline:")
    for clients, per_client, _, _ in plan:
        print(f"  {clients} clients x {per_client}: " + ", ".join(
            f"{kind} {results['current', clients, kind] / results['baseline', clients, kind]:.2f}x"
            for kind in ("first time", "repeat")))
    for side in ("baseline", "current"):
        print(f"  {side}, repeat / first time: " + ", ".join(
            f"{clients} clients {results[side, clients, 'repeat'] / results[side, clients, 'first time']:.2f}x"
            for clients, _, _, _ in plan))


if __name__ == "__main__":
    main()
