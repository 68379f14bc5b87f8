"""Generation speed: the key/value-cached path against full recompute (and optionally the original).

Builds the Kronos-small layout (or ``--layout base``) with random weights (``torch.manual_seed``,
eval mode) and the published tokenizer layout, saves both in the published folder layout, and
forecasts real 5-minute bars (``tests/data/kronos_XSHG-600977_5min.csv``) greedily
(``top_k=1``) through ``KronosPredictor.predict`` / ``predict_batch``. Every (configuration, method)
runs in its own subprocess, so its peak memory is its own: peak RSS (VmHWM, reset after loading) on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. Outputs of the cached and full-recompute paths must be
identical; the original's (``--original PATH``: a checkout of shiyu-coder/Kronos whose ``model``
package is imported from PATH) are compared by their largest relative difference.

    nice -n 0 python benchmarks/bench_generation.py                      # CPU, 400+120 and 256+64
    python benchmarks/bench_generation.py --original /tmp/kronos-original
    python benchmarks/bench_generation.py --device cuda --series 64 --samples 5 --dtype bfloat16
    python benchmarks/bench_generation.py --configs 256+64 --samples 1 20 --cache-layout shared rows --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "tests" / "data" / "kronos_XSHG-600977_5min.csv"
COLUMNS = ["open", "high", "low", "close", "volume", "amount"]
DEFAULT_CONFIGS = ("400+120", "256+64")
METHODS = ("cached", "full", "original")




def build_checkpoints(folder: Path, layout: str, seed: int) -> None:
    """Random-weight Kronos (``layout``) and tokenizer (published base layout) in save_pretrained folders."""
    import torch

    from kronos import Kronos, KronosTokenizer
    from kronos.model.config import KRONOS_SIZES, TOKENIZER_SIZES

    torch.manual_seed(seed)
    tokenizer = KronosTokenizer(TOKENIZER_SIZES["base"]).eval()
    model = Kronos(KRONOS_SIZES[layout]).eval()
    tokenizer.save_pretrained(folder / "tokenizer")
    model.save_pretrained(folder / "model")


def load_inputs(n_series: int, history: int, pred_len: int):
    """``n_series`` windows of real bars (histories shifted by 7 bars each): (df, x_ts, y_ts) lists."""
    import pandas as pd

    bars = pd.read_csv(CSV, parse_dates=["timestamps"])
    need = history + pred_len + 7 * (n_series - 1)
    if need > len(bars):
        raise SystemExit(f"{CSV.name} has {len(bars)} bars; {n_series} series of {history}+{pred_len} need {need}")
    start0 = len(bars) - need
    dfs, xs, ys = [], [], []
    for i in range(n_series):
        start = start0 + 7 * i
        window = bars.iloc[start:start + history].reset_index(drop=True)
        dfs.append(window[COLUMNS])
        xs.append(window["timestamps"])
        ys.append(bars["timestamps"].iloc[start + history:start + history + pred_len].reset_index(drop=True))
    return dfs, xs, ys


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Reset the process's peak resident set (Linux: VmHWM via clear_refs); return the current RSS in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    current = _status_mib("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss() -> float:
    """Peak resident set in MiB since :func:`reset_peak_rss` (whole-process ``ru_maxrss`` where /proc lacks it)."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(spec: dict) -> dict:
    """Run one method on one configuration; time it, measure peak memory, save the forecasts."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("tf32"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = torch.device(spec["device"])
    dtype_name = spec["dtype"]
    dtype = getattr(torch, dtype_name) if dtype_name != "int8" else None
    folder = Path(spec["folder"])
    dfs, xs, ys = load_inputs(spec["series"], spec["history"], spec["pred_len"])
    if spec.get("cache_layout"):  # force one layout of the cached rows (default: the library's choice)
        import kronos.forecasting.generation

        kronos.forecasting.generation._split_cache = lambda samples, device: spec["cache_layout"] == "shared"
    kwargs = dict(T=1.0, top_k=1, top_p=1.0, sample_count=spec["samples"])
    if spec["method"] == "original":
        from model import Kronos as OriginalKronos  # the original's package, from PYTHONPATH
        from model import KronosPredictor as OriginalPredictor
        from model import KronosTokenizer as OriginalTokenizer

        network = OriginalKronos.from_pretrained(str(folder / "model")).eval()
        codec = OriginalTokenizer.from_pretrained(str(folder / "tokenizer")).eval()
        if dtype_name != "float32":
            network.to(dtype)
        predictor = OriginalPredictor(network, codec, device=str(device), max_context=spec["max_context"])
        kwargs["verbose"] = False
        use_cache = {}
    else:
        from kronos import Kronos, KronosPredictor, KronosTokenizer

        predictor = KronosPredictor(Kronos.from_pretrained(folder / "model"),
                                    KronosTokenizer.from_pretrained(folder / "tokenizer"), device=device,
                                    max_context=spec["max_context"],
                                    dtype=None if dtype_name == "float32" else dtype or dtype_name)
        use_cache = {"use_cache": spec["method"] == "cached"}

    def run(pred_len: int) -> list:
        y = [t.iloc[:pred_len] for t in ys]
        if len(dfs) == 1:
            return [predictor.predict(dfs[0], xs[0], y[0], pred_len, **kwargs, **use_cache)]
        return predictor.predict_batch(dfs, xs, y, pred_len, **kwargs, **use_cache)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(2)  # warm-up: first-call allocations and kernel selection
    sync()
    rss_loaded = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu_times = [], []
    for _ in range(spec["repeats"]):
        start, cpu_start = time.perf_counter(), time.process_time()
        frames = run(spec["pred_len"])
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    if spec.get("profile"):
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            run(spec["pred_len"])
            sync()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        with open(spec["profile"], "a") as f:
            f.write(f"== {spec['method']} {spec['history']}+{spec['pred_len']} samples={spec['samples']} "
                    f"{spec['dtype']}\n{prof.key_averages().table(sort_by=key, row_limit=30)}\n")
    result = {"seconds": min(times), "all_seconds": times, "cpu_seconds": min(cpu_times),
              "rss_mib": peak_rss(), "rss_loaded_mib": rss_loaded, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu"] = torch.cuda.get_device_name(device)
    np.save(spec["out"], np.stack([f.to_numpy(dtype=np.float64) for f in frames]))
    return result


def dtype_accuracy(folder: Path, device: str, dtype_name: str, max_context: int, windows: int = 8,
                   history: int = 256, pred_len: int = 64) -> None:
    """How a lower network precision changes the model's choices, against float32 on the same weights.

    Teacher-forced: over ``windows`` real histories, the share of positions whose s1 argmax (and s2
    argmax given the true s1) is unchanged. Free-running greedy forecasts: the difference of the first
    forecast bar and of the whole forecast, in units of each column's history std.
    """
    import torch

    from kronos import Kronos, KronosPredictor, KronosTokenizer
    from kronos.data.features import Normalizer, as_timestamps, bar_features, time_features

    dtype = dtype_name if dtype_name == "int8" else getattr(torch, dtype_name)
    codec = KronosTokenizer.from_pretrained(folder / "tokenizer")
    reference = KronosPredictor(Kronos.from_pretrained(folder / "model"), codec, device=device,
                                max_context=max_context)
    lowered = KronosPredictor(Kronos.from_pretrained(folder / "model"), codec, device=device,
                              max_context=max_context, dtype=dtype)
    dfs, xs, ys = load_inputs(windows, history, pred_len)
    s1_same = s2_same = total = 0
    for df, x in zip(dfs, xs):
        bars = bar_features(df)
        normalised = torch.from_numpy(Normalizer.fit(bars, reference.clip).transform(bars))[None]
        with torch.no_grad():
            s1, s2 = codec.encode(normalised.to(reference.device), half=True)
        stamp = torch.from_numpy(time_features(as_timestamps(x, "x")))[None].to(reference.device)
        picks = []
        for predictor in (reference, lowered):
            with torch.no_grad():
                s1_logits, context = predictor.model.decode_s1(s1[:, :-1], s2[:, :-1], stamp[:, :-1])
                s2_logits = predictor.model.decode_s2(context, s1[:, 1:])
            picks.append((s1_logits.float().argmax(-1), s2_logits.float().argmax(-1)))
        s1_same += int((picks[0][0] == picks[1][0]).sum())
        s2_same += int((picks[0][1] == picks[1][1]).sum())
        total += s1.shape[1] - 1
    print(f"{dtype_name} vs float32, teacher-forced over {windows} windows of {history} real bars: "
          f"s1 argmax agrees at {100 * s1_same / total:.1f}% of positions, s2 (given the true s1) at "
          f"{100 * s2_same / total:.1f}%")
    kwargs = dict(T=1.0, top_k=1, top_p=1.0, sample_count=1)
    ref = reference.predict_batch(dfs, xs, ys, pred_len, **kwargs)
    low = lowered.predict_batch(dfs, xs, ys, pred_len, **kwargs)
    scale = np.stack([df.std().to_numpy(dtype=np.float64) for df in dfs])[:, None, :]
    diff = np.abs(np.stack([f.to_numpy(dtype=np.float64) for f in low])
                  - np.stack([f.to_numpy(dtype=np.float64) for f in ref])) / np.where(scale > 0, scale, 1)
    first = diff[:, 0, :4].max(-1)
    print(f"greedy {history}+{pred_len} forecasts of {windows} series: first bar differs by "
          f"{np.median(first):.3f} (median over series, max {first.max():.3f}) history std in the prices; "
          f"whole forecast: median |diff| {np.median(diff[..., :4]):.3f} std, identical series "
          f"{sum(bool(np.array_equal(a.to_numpy(), b.to_numpy())) for a, b in zip(ref, low))}/{windows}")


def cached_step_seconds(predictor, history: int, steps: int, rounds: int) -> float:
    """One cached step of a greedy forecast of real bars: (forecast of ``steps + 1`` bars - forecast of 1 bar)
    / ``steps``, each the best of ``rounds`` after a warm-up."""
    dfs, xs, ys = load_inputs(1, history, steps + 1)

    def forecast(pred_len: int) -> float:
        start = time.perf_counter()
        predictor.predict(dfs[0], xs[0], ys[0].iloc[:pred_len], pred_len, T=1.0, top_k=1, top_p=1.0)
        return time.perf_counter() - start

    forecast(2)
    short = min(forecast(1) for _ in range(rounds))
    long = min(forecast(steps + 1) for _ in range(rounds))
    return (long - short) / steps


def step_floor(folder: Path, max_context: int, history: int = 256, steps: int = 64, rounds: int = 5) -> None:
    """What one cached step costs at batch 1 against what just reading the weights costs.

    step: (forecast of ``steps + 1`` bars - forecast of 1 bar) / ``steps``, greedy, through ``predict``.
    linear chain: every ``nn.Linear`` of the network applied once, in order, to a 1-row input (the
    matrix-vector products a step cannot avoid). memory read: one sum over the same weights copied into
    one buffer. Best of ``rounds``.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from kronos import Kronos, KronosPredictor, KronosTokenizer

    model = Kronos.from_pretrained(folder / "model").eval()
    predictor = KronosPredictor(model, KronosTokenizer.from_pretrained(folder / "tokenizer"), device="cpu",
                                max_context=max_context)
    step_s = cached_step_seconds(predictor, history, steps, rounds)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    inputs = [torch.randn(1, m.in_features) for m in linears]
    n_bytes = sum(m.weight.numel() * m.weight.element_size() for m in linears)

    def chain() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for m, x in zip(linears, inputs):
                F.linear(x, m.weight, m.bias)
        return time.perf_counter() - start

    flat = torch.cat([m.weight.detach().flatten() for m in linears])

    def read() -> float:
        start = time.perf_counter()
        flat.sum()
        return time.perf_counter() - start

    chain_s = min(chain() for _ in range(rounds * 4))
    read_s = min(read() for _ in range(rounds * 4))
    print(f"history {history}, batch 1, {torch.get_num_threads()} threads: cached step {step_s * 1e3:.1f} ms; "
          f"linear chain over the same {n_bytes / 1e6:.0f} MB of weights {chain_s * 1e3:.1f} ms "
          f"({n_bytes / chain_s / 1e9:.1f} GB/s); one read of them {read_s * 1e3:.1f} ms "
          f"({n_bytes / read_s / 1e9:.1f} GB/s); step / linear chain {step_s / chain_s:.2f}")


def step_products(model):
    """The matrix products one cached step runs, as (callable, input width) pairs: packed products where the
    network has them (``kronos.model.precision``), every other linear layer (float or int8) once."""
    from torch import nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    calls, packed_parts = [], set()
    for m in model.modules():
        for name in ("packed_qkv", "packed_gate_up", "packed_kv"):
            packed = m.__dict__.get(name)
            if packed is None:
                continue
            packed_parts.update(id(part) for part in getattr(packed, "linears", ()))
            width = packed.weight.shape[1] if hasattr(packed, "linears") else packed.in_features
            calls.append((packed, width))
    for m in model.modules():
        if id(m) in packed_parts:
            continue
        if isinstance(m, (nn.Linear, DynamicLinear)):  # float, or int8 (kronos.model.precision)
            calls.append((m, m.in_features))
    return calls


def floor_worker(spec: dict) -> dict:
    """One cached step of greedy 256-bar forecasts against the matrix products that step runs (best of rounds)."""
    import torch

    from kronos import Kronos, KronosPredictor, KronosTokenizer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    folder, name = Path(spec["folder"]), spec["dtype"]
    extra = {} if name == "float32" else {"dtype": name if name == "int8" else getattr(torch, name)}
    predictor = KronosPredictor(Kronos.from_pretrained(folder / "model"),
                                KronosTokenizer.from_pretrained(folder / "tokenizer"), device="cpu",
                                max_context=spec["max_context"], **extra)
    model, rounds = predictor.model, spec["rounds"]
    step_s = cached_step_seconds(predictor, spec["history"], spec["pred_len"], rounds)
    act = next(model.parameters()).dtype
    calls = [(call, torch.randn(1, width, dtype=act)) for call, width in step_products(model)]

    def chain() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for call, x in calls:
                call(x)
        return time.perf_counter() - start

    chain()
    return {"step_ms": step_s * 1e3, "products_ms": min(chain() for _ in range(rounds * 4)) * 1e3,
            "products": len(calls)}


def baseline_source(ref: str, into: Path) -> str:
    """This project's ``src`` at git ``ref`` (today's code, for ``--compare``), unpacked under ``into``; a folder
    holding ``src`` (a copy of that revision, for machines without the git history) is used as it is."""
    if (Path(ref) / "src").is_dir():
        return str(Path(ref) / "src")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into / "src")


COMPARE_VARIANTS = ("original", "today", "float32", "bfloat16", "int8")


def compare_dtypes(args: argparse.Namespace, folder: Path) -> None:
    """One table per configuration: the original, today's float32 cached path (``--baseline-ref``), and this
    code in float32, bfloat16 and int8, alternating variants over ``--repeats`` rounds (one subprocess each,
    the fastest round counts). float32 must give exactly today's forecasts."""
    today = baseline_source(args.baseline_ref, folder)
    variants = [v for v in COMPARE_VARIANTS if v != "original" or args.original]
    for config in args.configs:
        history, pred_len = (int(part) for part in config.split("+"))
        for samples in args.samples:
            chosen = [v for v in variants if v != "original" or samples == 1]  # the original: one path only
            best: dict[str, dict] = {}
            outputs: dict[str, np.ndarray] = {}
            for round_ in range(args.repeats):
                for variant in chosen if round_ % 2 == 0 else chosen[::-1]:
                    spec = dict(method="original" if variant == "original" else "cached", folder=str(folder),
                                device="cpu", dtype="float32" if variant in ("original", "today") else variant,
                                series=args.series, history=history, pred_len=pred_len, samples=samples,
                                max_context=args.max_context, threads=args.threads, repeats=1,
                                source=today if variant == "today" else None, out=str(folder / f"{variant}.npy"))
                    result = run_worker(spec, args.original)
                    outputs[variant] = np.load(spec["out"])
                    print(f"  {history}+{pred_len} samples={samples} {variant:>8}: {result['seconds']:7.2f} s  "
                          f"{memory_text(result)}", flush=True)
                    if args.cpu_time:  # one thread on a busy machine: CPU time leaves out waiting for a core
                        result["seconds"] = result["cpu_seconds"]
                    if variant not in best or result["seconds"] < best[variant]["seconds"]:
                        best[variant] = result
            clock = "CPU seconds" if args.cpu_time else "seconds"
            print(f"\n{history}+{pred_len}, {samples} path(s), {clock}, best of {args.repeats}, load "
                  f"{os.getloadavg()[0]:.1f}:")
            print("| variant | seconds | s per path | vs original | vs today | peak RSS MiB | forecast vs today |")
            print("|---|---|---|---|---|---|---|")
            for variant in chosen:
                r = best[variant]
                vs_original = (f"{best['original']['seconds'] / r['seconds']:.1f}x" if "original" in best else "-")
                ref = outputs["today"]
                if np.array_equal(outputs[variant], ref):
                    same = "identical"
                else:
                    rel = np.abs(outputs[variant] - ref) / np.maximum(np.abs(ref), 1e-12)
                    same = f"median rel diff {np.median(rel):.1e}"
                print(f"| {variant} | {r['seconds']:.2f} | {r['seconds'] / samples:.3f} | {vs_original} | "
                      f"{best['today']['seconds'] / r['seconds']:.2f}x | {r['rss_mib']:.0f} | {same} |", flush=True)
            if not np.array_equal(outputs["float32"], outputs["today"]):
                raise SystemExit("float32 forecasts differ from today's")
    if args.step_floor:
        step_floors(args, folder, today)


def step_floors(args: argparse.Namespace, folder: Path, today: str) -> None:
    """The cached step split into its matrix products and the rest, today's code and each dtype."""
    rows = {}
    for _ in range(max(1, args.repeats)):
        for variant in ("today", "float32", "bfloat16", "int8"):
            spec = dict(method="floor", folder=str(folder), dtype="float32" if variant == "today" else variant,
                        history=256, pred_len=64, max_context=args.max_context, threads=args.threads, rounds=3,
                        source=today if variant == "today" else None)
            result = run_worker(spec, None)
            if variant not in rows or result["step_ms"] < rows[variant]["step_ms"]:
                rows[variant] = result
    print(f"\ncached step at history 256, 1 path, load {os.getloadavg()[0]:.1f}:")
    print("| variant | step ms | matrix products ms (count) | rest ms |")
    print("|---|---|---|---|")
    for variant, r in rows.items():
        print(f"| {variant} | {r['step_ms']:.1f} | {r['products_ms']:.1f} ({r['products']}) | "
              f"{r['step_ms'] - r['products_ms']:.1f} |", flush=True)


def run_worker(spec: dict, original: str | None) -> dict:
    env = dict(os.environ)
    if spec["method"] == "original":
        env["PYTHONPATH"] = original + os.pathsep + env.get("PYTHONPATH", "")
    elif spec.get("source"):  # another version of this project's code (``--compare``: today's)
        env["PYTHONPATH"] = spec["source"] + os.pathsep + env.get("PYTHONPATH", "")
    if spec["method"] == "floor":
        done = subprocess.run([sys.executable, __file__, "--floor-worker", json.dumps(spec)], env=env, text=True,
                              capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"step-floor worker failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{spec['method']} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_text(result: dict) -> str:
    if "cuda_peak_mib" in result:
        return f"GPU peak {result['cuda_peak_mib']:.0f} MiB"
    return f"peak RSS {result['rss_mib']:.0f} MiB (before the timed run {result['rss_loaded_mib']:.0f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="HISTORY+FORECAST bars")
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5], help="sample_count values")
    parser.add_argument("--series", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--layout", default="small", choices=["mini", "small", "base"])
    parser.add_argument("--weights", metavar="DIR",
                        help="--accuracy on trained weights: a folder holding model/ and tokenizer/, or 'default' "
                             "(the bundled model) instead of random --layout weights")
    parser.add_argument("--max-context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (the fastest counts)")
    parser.add_argument("--baseline-repeats", type=int, help="timed runs of full/original (default: --repeats)")
    parser.add_argument("--methods", nargs="+", default=["cached", "full"], choices=METHODS)
    parser.add_argument("--original", metavar="PATH", help="checkout of shiyu-coder/Kronos: also time its predict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tf32", action="store_true", help="CUDA: let float32 matrix products use TF32 tensor cores")
    parser.add_argument("--profile", metavar="FILE", help="append a torch.profiler table of one more run per method")
    parser.add_argument("--threads", type=int, help="torch intra-op threads in every worker (default: torch's)")
    parser.add_argument("--accuracy", action="store_true",
                        help="instead of timing, compare --dtype against float32 (token agreement, forecast change)")
    parser.add_argument("--step-floor", action="store_true",
                        help="instead of timing forecasts, compare one cached step with reading the weights")
    parser.add_argument("--cache-layout", nargs="+", choices=["shared", "rows"],
                        help="time the cached method once per layout of the cached rows: shared (one history "
                             "prefix per series, SharedPrefixCache) and/or rows (a contiguous cache per path)")
    parser.add_argument("--compare", action="store_true",
                        help="CPU: time the original (with --original), today's float32 code (--baseline-ref) and "
                             "this code in float32, bfloat16 and int8, alternating; with --step-floor also split "
                             "each cached step into matrix products and the rest")
    parser.add_argument("--cpu-time", action="store_true",
                        help="--compare: rank by the worker's CPU time instead of wall time (meaningful with "
                             "--threads 1 on a busy machine, where wall time includes waiting for a core)")
    parser.add_argument("--baseline-ref", default="964c34a",
                        help="git revision (or a folder holding its src) of today's code for --compare")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--floor-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.floor_worker:
        print(json.dumps(floor_worker(json.loads(args.floor_worker))))
        return
    methods = list(dict.fromkeys(args.methods + (["original"] if args.original else [])))
    if "original" in methods and not args.original:
        parser.error("--methods original needs --original PATH")

    import torch

    threads = args.threads or torch.get_num_threads()
    tf32 = " (TF32 matmuls)" if args.tf32 else ""
    print(f"machine: {machine()}; torch {torch.__version__}, {threads} threads; "
          f"device {args.device}, {args.dtype}{tf32}, Kronos-{args.layout}, max_context {args.max_context}, "
          f"{args.series} series, greedy top_k=1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_checkpoints(folder, args.layout, args.seed)
        if args.accuracy:
            if args.weights:
                folder = ROOT / "src" / "kronos" / "weights" / "default" if args.weights == "default" else Path(
                    args.weights)
                print(f"trained weights: {folder}")
            dtype_accuracy(folder, args.device, args.dtype, args.max_context)
            return
        if args.compare:
            compare_dtypes(args, folder)
            return
        if args.step_floor:
            if args.threads:
                torch.set_num_threads(args.threads)
            step_floor(folder, args.max_context)
            return
        if args.cache_layout:
            compare_layouts(args, folder)
            return
        for config in args.configs:
            history, pred_len = (int(part) for part in config.split("+"))
            for samples in args.samples:
                results, outputs = {}, {}
                for method in methods:
                    spec = dict(method=method, folder=str(folder), device=args.device, dtype=args.dtype,
                                series=args.series, history=history, pred_len=pred_len, samples=samples,
                                max_context=args.max_context, threads=args.threads,
                                repeats=args.repeats if method == "cached" else args.baseline_repeats or args.repeats,
                                tf32=args.tf32, profile=args.profile,
                                out=str(folder / f"{method}.npy"))
                    results[method] = run_worker(spec, args.original)
                    outputs[method] = np.load(spec["out"])
                    print(f"  {history}+{pred_len} samples={samples} {method:>8}: "
                          f"{results[method]['seconds']:8.2f} s  {memory_text(results[method])}", flush=True)
                report(history, pred_len, samples, results, outputs)


def compare_layouts(args: argparse.Namespace, folder: Path) -> None:
    """The cached method under each ``--cache-layout``, alternating layouts for ``--repeats`` rounds (one
    subprocess each; the fastest round counts); the layouts' outputs must be identical."""
    for config in args.configs:
        history, pred_len = (int(part) for part in config.split("+"))
        for samples in args.samples:
            best: dict[str, dict] = {}
            outputs = {}
            for _ in range(args.repeats):
                for layout in args.cache_layout:
                    spec = dict(method="cached", folder=str(folder), device=args.device, dtype=args.dtype,
                                series=args.series, history=history, pred_len=pred_len, samples=samples,
                                max_context=args.max_context, threads=args.threads, repeats=1, tf32=args.tf32,
                                cache_layout=layout, out=str(folder / f"{layout}.npy"))
                    result = run_worker(spec, None)
                    outputs[layout] = np.load(spec["out"])
                    print(f"  {history}+{pred_len} samples={samples} layout {layout:>6}: {result['seconds']:8.2f} s  "
                          f"{memory_text(result)}", flush=True)
                    if layout not in best or result["seconds"] < best[layout]["seconds"]:
                        best[layout] = result
            first, *others = args.cache_layout
            line = f"{history}+{pred_len} samples={samples}: " + ", ".join(
                f"{layout} {best[layout]['seconds']:.2f} s" for layout in args.cache_layout)
            for layout in others:
                line += f"; {first} / {layout} = {best[first]['seconds'] / best[layout]['seconds']:.2f}"
                if not np.array_equal(outputs[layout], outputs[first]):
                    raise SystemExit(f"layouts {first} and {layout} gave different outputs")
            print(line + " (outputs identical)", flush=True)


def report(history: int, pred_len: int, samples: int, results: dict, outputs: dict) -> None:
    line = f"{history}+{pred_len} samples={samples}:"
    base = outputs["cached"]
    for other in ("full", "original"):
        if other not in results:
            continue
        ratio = results[other]["seconds"] / results["cached"]["seconds"]
        diff = np.abs(outputs[other] - base) / np.maximum(np.abs(outputs[other]), 1e-12)
        same = "identical" if np.array_equal(outputs[other], base) else f"max rel diff {diff.max():.2e}"
        line += f"  cached is {ratio:.1f}x faster than {other} (outputs {same})"
    print(line, flush=True)
    if "full" in outputs and not np.array_equal(outputs["full"], base):
        raise SystemExit("cached and full-recompute outputs differ")


if __name__ == "__main__":
    main()
