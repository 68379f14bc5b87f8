"""Throughput of forecasting a universe: series per second, local against Ray, and the cost per series
against the batch size, with the peak memory of each worker.

The universe is real data: the repository's real series (``tests/data``, or the full collection at
``KRONOS_FULL_DATA`` with ``--full-data``) repeated at shifted origins (round r takes every series long
enough, cut ``r * --shift`` bars before its end) until there are ``--series`` of them, each ``--history`` bars,
in one long Parquet table with a symbol column. In one run it measures

1. ``engine="local"`` in this process (the torch threads of one process) against ``engine="ray"`` with
   ``--workers`` actors of one CPU each on a local Ray instance: series/s and the ratio;
2. the local cost per series at each ``--batch-sizes`` on the first ``--sweep-series`` series, and the
   ratio to batch size 1;
3. peak memory (VmHWM) of this process after the local run and of each Ray actor (polled from /proc);
4. what the driver spends writing the forecasts, per series, for both partition layouts.

Both engines must write identical datasets (checked). Prints one table; figures in BENCHMARKS.md.

    python benchmarks/bench_universe.py                       # 200 series, bundled model
    python benchmarks/bench_universe.py --series 40 --batch-sizes 1,8 --sweep-series 16
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def build_universe(folder: Path, count: int, history: int, shift: int, full_data: bool) -> Path:
    import pandas as pd

    from kronos.data.tables import load_series

    data = Path(os.environ.get("KRONOS_FULL_DATA", ROOT.parent / "shared" / "data" / "ohlcv")) if full_data \
        else ROOT / "tests" / "data"
    series = load_series(data, skip_bad=True, nan="drop")
    frames: list = []
    round_ = 0
    while len(frames) < count:  # round r cuts r * shift bars off the end of every series long enough
        usable = [s for s in series if len(s) >= history + round_ * shift]
        if not usable:
            raise SystemExit(f"the series allow only {len(frames)} windows of {history} bars {shift} apart")
        for s in usable[:count - len(frames)]:
            end = len(s) - round_ * shift
            part = s.slice(end - history, end).frame().reset_index()
            frames.append(part.assign(symbol=f"{s.name}@{round_}"))
        round_ += 1
    path = folder / "universe.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(path)
    return path


def peak_kib(pid: int | str = "self") -> int:
    """Peak resident memory (VmHWM) of a process in KiB, 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ActorMemory:
    """Polls the peak memory of Ray's map actors (processes named ray::MapWorker...) while a run goes on."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if command.startswith(b"ray::MapWorker"):
                    self.peaks[int(entry.name)] = max(self.peaks.get(int(entry.name), 0), peak_kib(entry.name))
            self._stop.wait(0.5)

    def __enter__(self) -> ActorMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--history", type=int, default=300, help="bars per series")
    parser.add_argument("--shift", type=int, default=50, help="bars between the origins of a file's copies")
    parser.add_argument("--pred-len", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--calibrate", action="store_true", help="calibrate (about 10x the cost per series)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the local/Ray comparison")
    parser.add_argument("--batch-sizes", default="1,4,16,64", help="batch sizes of the sweep")
    parser.add_argument("--sweep-series", type=int, default=64, help="series in the batch-size sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--full-data", action="store_true", help="use the full collection (KRONOS_FULL_DATA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process (default: torch's own; each Ray actor uses 1)")
    args = parser.parse_args()

    import pandas as pd
    import torch

    from kronos import KronosPredictor
    from kronos.universe import forecast_universe, read_universe

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-universe-"))
    try:
        source = build_universe(work, args.series, args.history, args.shift, args.full_data)
        settings = dict(pred_len=args.pred_len, sample_count=args.samples, calibrate=args.calibrate, seed=0,
                        progress=False)
        predictor = KronosPredictor.from_pretrained(device=args.device)
        print(f"machine: {machine(args.device)}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"bundled model (lookback {predictor.lookback}); {args.series} series x {args.history} bars, "
              f"pred_len {args.pred_len}, {args.samples} paths, calibrate={args.calibrate}")
        rows = []

        # 1. local, one process, against Ray with N one-CPU actors
        started = time.perf_counter()
        local = forecast_universe(source, work / "local", predictor=predictor, batch_size=args.batch_size,
                                  **settings)
        local_s = time.perf_counter() - started
        assert local.ok, local.failed
        local_rate = args.series / local_s
        rows.append(("local, 1 process", f"batch {args.batch_size}", f"{local_rate:.2f} series/s",
                     f"{local_s / args.series:.3f} s/series", f"peak {peak_kib() / 1024:.0f} MiB (process)", "1.00x"))
        if not args.skip_ray:
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - started
            with ActorMemory() as memory:
                started = time.perf_counter()
                remote = forecast_universe(source, work / "ray", engine="ray", workers=args.workers,
                                           cpus_per_worker=1, batch_size=args.batch_size, device=args.device,
                                           **settings)
                ray_s = time.perf_counter() - started
            ray.shutdown()
            assert remote.ok, remote.failed
            same = read_universe(work / "local").equals(read_universe(work / "ray"))
            peaks = ", ".join(f"{kib / 1024:.0f}" for kib in sorted(memory.peaks.values())) or "n/a"
            rows.append((f"ray, {args.workers} actors x 1 CPU", f"batch {args.batch_size}",
                         f"{args.series / ray_s:.2f} series/s", f"{ray_s / args.series:.3f} s/series",
                         f"peak {peaks} MiB per actor", f"{local_s / ray_s:.2f}x"))
            print(f"ray start {init_s:.1f}s (not counted; the run includes starting the actors); ray output "
                  f"identical to local: {same}")

        # 2. cost per series against batch size (local)
        subset = pd.read_parquet(source)
        keep = subset["symbol"].drop_duplicates().iloc[:args.sweep_series]
        subset = subset[subset["symbol"].isin(keep)]
        base = None
        for size in [int(b) for b in args.batch_sizes.split(",")]:
            out = work / f"sweep-{size}"
            started = time.perf_counter()
            result = forecast_universe(subset, out, predictor=predictor, batch_size=size, **settings)
            cost = (time.perf_counter() - started) / len(keep)
            assert result.ok, result.failed
            base = base or cost
            print(f"  batch {size}: {cost:.3f} s/series", flush=True)
            rows.append((f"local, {len(keep)} series", f"batch {size}", f"{1 / cost:.2f} series/s",
                         f"{cost:.3f} s/series", "", f"{base / cost:.2f}x vs batch {args.batch_sizes.split(',')[0]}"))
        # 4. what the driver spends writing: one partition per series, or one file per batch
        from kronos.universe import _Dataset

        frame = read_universe(work / "local")
        frames = {i: f.drop(columns="id").reset_index(drop=True) for i, f in frame.groupby("id")}
        ids = sorted(frames)
        for partition in ("series", "run"):
            dataset = _Dataset(work / f"write-{partition}", "parquet", partition, "bench")
            started = time.perf_counter()
            for k in range(0, len(ids), args.batch_size):
                dataset.write({i: frames[i] for i in ids[k:k + args.batch_size]})
            cost = (time.perf_counter() - started) / len(ids)
            rows.append((f"driver writes, partition={partition}", f"batch {args.batch_size}",
                         f"{1 / cost:.0f} series/s", f"{cost * 1000:.1f} ms/series", "", ""))
        print("| run | batch | series/s | s/series | peak memory | ratio |\n|---|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
