"""Load test of `kronos serve` on 127.0.0.1: concurrent forecasts mixed with hostile requests.

For each server configuration (``--max-batch 16``, and the baseline ``--max-batch 1`` = one model call
per request) it starts the real ``kronos serve`` in a subprocess on a free loopback port, opens
``--half-open`` connections that send half a request head and then nothing, and sends N valid
forecast requests (real bars: 256-bar windows of real files) all at once with H hostile ones mixed
in (a 1 MiB CSV of commas, calendar searches over microsecond bars with a 3-day gap, a request over
the work budget, a tiny temperature, loose types, inconsistent bars, extreme values, a cross-origin
upload, a foreign Host header). Meanwhile a separate thread polls ``/healthz``.

It reports: valid requests answered 200, hostile ones answered 4xx (or 200 where the request is
merely unusual), 5xx other than a deliberate 503/429 with Retry-After (none allowed), p50/p99
latency and throughput of the valid requests, ``/healthz`` p99 latency during the run (must be under
200 ms), the number of model calls, and the server's resident memory before and after the measured
run (after must be within 1.5x of before). Everything is bounded: a fixed request count and a
deadline per run.

    python benchmarks/bench_service.py               # tiny parity model, 200 valid + 20 hostile requests
    python benchmarks/bench_service.py --requests 50 --hostile 10 --deadline 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from machine_info import cpu_name

from kronos.service.app import free_port

TESTS = Path(__file__).resolve().parents[1] / "tests"
TINY = TESTS / "fixtures" / "parity-tiny"
DATA = TESTS / "data"
FILES = ("bokeh_AAPL_1d.csv", "bokeh_MSFT_1d.csv", "kronos_XSHG-600977_5min.csv", "freqtrade_ETH-BTC_5min.csv")
CLIENT = {"X-Kronos-Client": "bench"}
HEALTH_BUDGET_S = 0.2
RSS_GROWTH = 1.5


def valid_requests(data: Path, n: int, window: int, pred_len: int, samples: int) -> list[bytes]:
    """n JSON bodies: ``window``-bar windows ending at different rows of four real files."""
    frames = [pd.read_csv(data / name) for name in FILES]
    bodies = []
    for i in range(n):
        frame = frames[i % len(frames)]
        end = len(frame) - (i // len(frames)) * 7
        rows = frame.iloc[end - window:end]
        bars = [{"timestamp": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in rows[["timestamps", "open", "high", "low", "close", "volume"]].itertuples(
                    index=False)]
        bodies.append(json.dumps({"bars": bars, "pred_len": pred_len, "samples": samples}).encode())
    return bodies


def gap_bars(spacing_ns: int) -> list[dict]:
    """21 bars ``spacing_ns`` apart with a 3-day gap after the 10th: a 2 KB calendar-search attack."""
    start = np.datetime64("2024-01-05T15:00:00", "ns")
    stamps = [start + np.timedelta64(i * spacing_ns, "ns") for i in range(10)]
    stamps += [start + np.timedelta64(3, "D") + np.timedelta64(i * spacing_ns, "ns") for i in range(11)]
    return [{"timestamp": str(t), "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5} for t in stamps]


def hostile_requests(n: int, valid: bytes) -> list[dict]:
    """n hostile requests (httpx keyword arguments plus the statuses that count as handled)."""
    good = json.loads(valid)
    inconsistent = [dict(bar) for bar in good["bars"]]
    inconsistent[5]["high"], inconsistent[5]["low"] = inconsistent[5]["low"], inconsistent[5]["high"]
    extreme = [{**bar, **{c: (1e14 if i % 2 else 1e-9) for c in ("open", "high", "low", "close")}}
               for i, bar in enumerate(good["bars"])]
    csv = "timestamps,open,high,low,close\n" + "".join(f"2024-01-{d:02d},10,11,9,10\n" for d in range(1, 29))

    def as_json(body: dict, statuses=(422,), headers=None) -> dict:
        return {"content": json.dumps(body).encode(), "statuses": statuses,
                "headers": {"content-type": "application/json", **(headers or {})}}

    kinds = [
        {"files": {"file": ("wide.csv", b"," * 2**20)}, "headers": CLIENT, "statuses": (422,)},
        as_json({"bars": gap_bars(1_000), "pred_len": 10}),  # microsecond bars, 3-day gap
        as_json({"bars": gap_bars(200_000_000), "pred_len": 10, "samples": 8}, statuses=(200,)),
        as_json(dict(good, pred_len=512, samples=64)),  # over the work budget
        as_json(dict(good, temperature=1e-300)),
        as_json(dict(good, pred_len="5")),
        as_json(dict(good, bars=inconsistent)),
        as_json(dict(good, bars=extreme), statuses=(200, 422)),
        {"files": {"file": ("x.csv", csv.encode())}, "headers": {"Origin": "https://evil.example"}, "statuses": (403,)},
        as_json(good, statuses=(400,), headers={"Host": "rebind.example"}),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def open_half_open(url: str, count: int) -> list:
    """``count`` connections that send half a request head, then nothing."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        sockets.append(sock)
    return sockets


class HealthProbe:
    """Polls /healthz every 50 ms from its own thread and connection; keeps each answer's latency."""

    def __init__(self, url: str):
        self.url, self.latencies, self.failures = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = http.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - started)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def run_load(url: str, valid: list[bytes], hostile: list[dict], deadline: float) -> dict:
    limits = httpx.Limits(max_connections=len(valid) + len(hostile), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=deadline, limits=limits) as client:
        async def send(kwargs: dict, is_valid: bool) -> tuple[bool, int, bool, float]:
            started = time.perf_counter()
            kwargs = dict(kwargs)
            statuses = kwargs.pop("statuses", (200,))
            try:
                response = await client.post("/v1/forecast", **kwargs)
                status = response.status_code
                deliberate = status in (429, 503) and "retry-after" in response.headers
                handled = status in statuses
            except httpx.HTTPError:
                status, deliberate, handled = -1, False, False  # no answer (connection error or client timeout)
            return is_valid, status, handled or deliberate, time.perf_counter() - started

        before = (await client.get("/healthz")).json()["model_calls"]
        tasks = [send({"content": body, "headers": {"content-type": "application/json"}}, True) for body in valid]
        tasks += [send(kwargs, False) for kwargs in hostile]
        order = np.random.default_rng(0).permutation(len(tasks))  # hostile ones interleaved
        started = time.perf_counter()
        # Each request's own client timeout (the deadline) ends it first; the margin keeps a late
        # answer from turning into a crash of the benchmark instead of a counted "no answer".
        results = await asyncio.wait_for(asyncio.gather(*(tasks[i] for i in order)), deadline + 30)
        wall = time.perf_counter() - started
        calls = (await client.get("/healthz")).json()["model_calls"] - before
    latencies = np.array([t for ok, status, _, t in results if ok and status == 200])
    return {
        "valid_ok": int(sum(1 for ok, s, _, _ in results if ok and s == 200)),
        "valid_total": len(valid),
        "hostile_handled": int(sum(1 for ok, _, handled, _ in results if not ok and handled)),
        "hostile_total": len(hostile),
        "deliberate_503_429": int(sum(1 for _, s, _, _ in results if s in (429, 503))),
        "server_errors": int(sum(1 for _, s, handled, _ in results if s >= 500 and not handled)),
        "no_answer": int(sum(1 for _, s, _, _ in results if s < 0)),
        "p50_s": float(np.percentile(latencies, 50)) if len(latencies) else math.nan,
        "p99_s": float(np.percentile(latencies, 99)) if len(latencies) else math.nan,
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "model_calls": calls,
    }


def measured_run(args: argparse.Namespace, url: str, pid: int, valid: list[bytes], hostile: list[dict]) -> dict:
    """Warm up, then the measured wave with half-open connections held and /healthz polled throughout."""
    if args.warmup:
        asyncio.run(run_load(url, valid[:args.warmup], [], args.deadline))
    rss_before = rss_mib(pid)
    sockets = open_half_open(url, args.half_open)
    try:
        with HealthProbe(url) as probe:
            row = asyncio.run(run_load(url, valid, hostile, args.deadline))
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(1.0)
    health = np.array(probe.latencies)
    row.update(health_p50_ms=float(np.percentile(health, 50)) * 1000, health_p99_ms=float(np.percentile(health, 99))
               * 1000, health_max_ms=float(health.max()) * 1000, health_failures=probe.failures,
               health_polls=len(health), rss_before_mib=rss_before, rss_after_mib=rss_mib(pid))
    return row


def start_server(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", args.model,
               "--tokenizer", args.tokenizer, "--max-batch", str(max_batch), "--max-samples", "64",
               "--timeout", str(args.deadline), "--device", args.device]
    if args.max_work:
        command += ["--max-work", str(args.max_work)]
    if args.max_context:
        command += ["--max-context", str(args.max_context)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kronos serve exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("kronos serve did not start within 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="concurrent valid forecast requests")
    parser.add_argument("--hostile", type=int, default=20, help="hostile requests sent among them")
    parser.add_argument("--half-open", type=int, default=100,
                        help="connections held open with half a request head during the run")
    parser.add_argument("--pred-len", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--window", type=int, default=256, help="history bars per request")
    parser.add_argument("--warmup", type=int, default=48,
                        help="requests sent at once before the measured wave (not counted): a fresh process pays "
                             "a one-off cost for each new batch shape")
    parser.add_argument("--repeats", type=int, default=1, help="run the two servers alternately this many times")
    parser.add_argument("--no-baseline", action="store_true", help="only the batched server")
    parser.add_argument("--deadline", type=float, default=400, help="seconds allowed per run")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding the four real series")
    parser.add_argument("--model", default=None, help="model folder (default: the tiny parity model)")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-context", type=int, default=256)
    parser.add_argument("--max-work", type=int, default=None, help="the server's --max-work (default: its own)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.model = args.model or str(TINY / "model")
    args.tokenizer = args.tokenizer or str(TINY / "tokenizer")

    valid = valid_requests(args.data, args.requests, args.window, args.pred_len, args.samples)
    hostile = hostile_requests(args.hostile, valid[0])
    print(f"# {args.requests} valid ({args.window} bars, pred_len {args.pred_len}, {args.samples} samples) + "
          f"{args.hostile} hostile requests at once, {args.half_open} half-open connections held, after "
          f"{args.warmup} warm-up requests; model {args.model}; {cpu_name()}, {os.cpu_count()} CPUs, "
          f"device {args.device}")
    configs = [("batched (--max-batch 16)", 16)] + ([] if args.no_baseline else
                                                    [("one request per call (--max-batch 1)", 1)])
    rows = {}
    for repeat in range(args.repeats):
        for label, max_batch in configs:
            process, url = start_server(args, max_batch)
            try:
                rows[f"{label}, run {repeat + 1}"] = measured_run(args, url, process.pid, valid, hostile)
            finally:
                process.terminate()
                process.wait(timeout=30)
    print("| server | valid 200 | hostile handled | 5xx | deliberate 503/429 | p50 s | p99 s | throughput req/s | "
          "/healthz p99 ms (max) | model calls | RSS MiB before → after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in rows.items():
        print(f"| {label} | {r['valid_ok']}/{r['valid_total']} | {r['hostile_handled']}/{r['hostile_total']} | "
              f"{r['server_errors']} | {r['deliberate_503_429']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | "
              f"{r['throughput_rps']:.2f} | {r['health_p99_ms']:.0f} ({r['health_max_ms']:.0f}) | "
              f"{r['model_calls']} | {r['rss_before_mib']:.0f} → {r['rss_after_mib']:.0f} |")
    results = list(rows.values())
    if not args.no_baseline:
        for repeat in range(args.repeats):
            batched, single = results[2 * repeat], results[2 * repeat + 1]
            print(f"run {repeat + 1}: throughput ratio batched / one-per-call "
                  f"{batched['throughput_rps'] / single['throughput_rps']:.2f}x; p50 ratio "
                  f"{batched['p50_s'] / single['p50_s']:.2f}x; p99 ratio {batched['p99_s'] / single['p99_s']:.2f}x")
    ok = all(r["server_errors"] == 0 and r["no_answer"] == 0 and r["valid_ok"] == r["valid_total"]
             and r["hostile_handled"] == r["hostile_total"] and r["health_p99_ms"] < HEALTH_BUDGET_S * 1000
             and r["health_failures"] == 0 and r["rss_after_mib"] <= RSS_GROWTH * r["rss_before_mib"]
             for r in rows.values())
    print("PASS: no 5xx, every valid request answered, every hostile one handled, /healthz p99 under "
          f"{HEALTH_BUDGET_S * 1000:.0f} ms, RSS within {RSS_GROWTH}x" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
