"""Load test of `kronos serve` on 127.0.0.1: concurrent forecasts plus malformed requests, batched vs unbatched.

For each server configuration (``--max-batch 16``, and the baseline ``--max-batch 1`` = one model call
per request) it starts the real ``kronos serve`` in a subprocess on a free loopback port, sends
N valid forecast requests (real bars: 256-bar windows of real files) all at once, plus M malformed
ones, and reports: status counts (no 5xx allowed; every valid request must get 200), p50/p99
latency, throughput, and the number of model calls. Everything is bounded: a fixed request count
and a deadline per run.

    python benchmarks/bench_service.py               # tiny parity model, 200 + 40 requests
    python benchmarks/bench_service.py --requests 50 --malformed 10 --deadline 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from machine_info import cpu_name

from kronos.service.app import free_port

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "parity-tiny"
FILES = ("bokeh_AAPL_1d.csv", "bokeh_MSFT_1d.csv", "kronos_XSHG-600977_5min.csv", "freqtrade_ETH-BTC_5min.csv")




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


def malformed_requests(n: int, valid: bytes) -> list[tuple[bytes, str]]:
    """n (body, content type) pairs, each of which must get a 4xx."""
    good = json.loads(valid)
    nan = dict(good, bars=[dict(good["bars"][0], close=math.nan), *good["bars"][1:]])
    kinds = [
        (b"{not json", "application/json"),
        (json.dumps(nan).encode(), "application/json"),
        (json.dumps(dict(good, horizon=3)).encode(), "application/json"),
        (json.dumps(dict(good, samples=10_000)).encode(), "application/json"),
        (json.dumps(dict(good, pred_len="ten")).encode(), "application/json"),
        (b"timestamps,open\n", "text/csv"),
        (b"x" * (9 * 2**20), "application/json"),  # over the 8 MiB body limit
        (b"--xyz\r\nbroken", "multipart/form-data; boundary=xyz"),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


async def run_load(url: str, valid: list[bytes], malformed: list[tuple[bytes, str]], deadline: float) -> dict:
    limits = httpx.Limits(max_connections=len(valid) + len(malformed), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=deadline, limits=limits) as client:
        async def send(body: bytes, content_type: str, is_valid: bool) -> tuple[bool, int, float]:
            started = time.perf_counter()
            try:
                response = await client.post("/v1/forecast", content=body, headers={"content-type": content_type})
                status = response.status_code
            except httpx.HTTPError:
                status = -1  # no answer (connection error or client timeout)
            return is_valid, status, time.perf_counter() - started

        before = (await client.get("/healthz")).json()["model_calls"]
        tasks = [send(body, "application/json", True) for body in valid]
        tasks += [send(body, kind, False) for body, kind in malformed]
        order = np.random.default_rng(0).permutation(len(tasks))  # malformed ones interleaved
        started = time.perf_counter()
        # Each request's own client timeout (the deadline) ends it first; the margin keeps a late
        # answer from turning into a crash of the benchmark instead of a counted "no answer".
        results = await asyncio.wait_for(asyncio.gather(*(tasks[i] for i in order)), deadline + 30)
        wall = time.perf_counter() - started
        calls = (await client.get("/healthz")).json()["model_calls"] - before
    latencies = np.array([t for ok, status, t in results if ok and status == 200])
    return {
        "valid_ok": int(sum(1 for ok, s, _ in results if ok and s == 200)),
        "valid_total": len(valid),
        "malformed_4xx": int(sum(1 for ok, s, _ in results if not ok and 400 <= s < 500)),
        "malformed_total": len(malformed),
        "server_errors": int(sum(1 for _, s, _ in results if s >= 500)),
        "no_answer": int(sum(1 for _, s, _ in results if s < 0)),
        "p50_s": float(np.percentile(latencies, 50)) if len(latencies) else math.nan,
        "p99_s": float(np.percentile(latencies, 99)) if len(latencies) else math.nan,
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "model_calls": calls,
    }


def start_server(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "kronos.cli", "serve", "--port", str(port), "--model", args.model,
               "--tokenizer", args.tokenizer, "--max-batch", str(max_batch), "--max-samples", "64",
               "--timeout", str(args.deadline), "--device", args.device]
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
    parser.add_argument("--malformed", type=int, default=40, help="malformed requests sent among them")
    parser.add_argument("--pred-len", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--window", type=int, default=256, help="history bars per request")
    parser.add_argument("--warmup", type=int, default=48,
                        help="requests sent at once before the measured wave (not counted): a fresh process pays "
                             "a one-off cost for each new batch shape")
    parser.add_argument("--repeats", type=int, default=1, help="run the two servers alternately this many times")
    parser.add_argument("--deadline", type=float, default=400, help="seconds allowed per run")
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding data/ohlcv (all real series)")
    parser.add_argument("--model", default=None, help="model folder (default: the tiny parity model)")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-context", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.model = args.model or str(TINY / "model")
    args.tokenizer = args.tokenizer or str(TINY / "tokenizer")

    valid = valid_requests(args.shared / "data" / "ohlcv", args.requests, args.window, args.pred_len, args.samples)
    malformed = malformed_requests(args.malformed, valid[0])
    print(f"# {args.requests} valid ({args.window} bars, pred_len {args.pred_len}, {args.samples} samples) + "
          f"{args.malformed} malformed requests at once, after {args.warmup} warm-up requests; model {args.model}; "
          f"{cpu_name()}, {os.cpu_count()} CPUs, device {args.device}")
    rows = {}
    for repeat in range(args.repeats):
        for label, max_batch in (("batched (--max-batch 16)", 16), ("one request per call (--max-batch 1)", 1)):
            process, url = start_server(args, max_batch)
            try:
                if args.warmup:
                    asyncio.run(run_load(url, valid[:args.warmup], [], args.deadline))
                rows[f"{label}, run {repeat + 1}"] = asyncio.run(run_load(url, valid, malformed, args.deadline))
            finally:
                process.terminate()
                process.wait(timeout=30)
    print("| server | valid 200 | malformed 4xx | 5xx | p50 s | p99 s | throughput req/s | model calls |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in rows.items():
        print(f"| {label} | {r['valid_ok']}/{r['valid_total']} | {r['malformed_4xx']}/{r['malformed_total']} | "
              f"{r['server_errors']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['throughput_rps']:.2f} | "
              f"{r['model_calls']} |")
    results = list(rows.values())
    for repeat in range(args.repeats):
        batched, single = results[2 * repeat], results[2 * repeat + 1]
        print(f"run {repeat + 1}: throughput ratio batched / one-per-call "
              f"{batched['throughput_rps'] / single['throughput_rps']:.2f}x; p50 ratio "
              f"{batched['p50_s'] / single['p50_s']:.2f}x; p99 ratio {batched['p99_s'] / single['p99_s']:.2f}x")
    ok = all(r["server_errors"] == 0 and r["no_answer"] == 0 and r["valid_ok"] == r["valid_total"]
             and r["malformed_4xx"] == r["malformed_total"] for r in rows.values())
    print("PASS: no 5xx, every valid request answered, every malformed one refused" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
