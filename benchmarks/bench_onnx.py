"""ONNX Runtime backend against PyTorch and the original: speed, agreement, and int8 accuracy, in one run.

Speed (greedy ``predict``, one path, Kronos-small layout with random weights, real 5-minute bars, as
``bench_generation.py``): the original (``--original PATH``, a checkout of shiyu-coder/Kronos), this
project's PyTorch float32 path, and ONNX Runtime float32 and int8 on the same weights exported by
``kronos.onnx.export``. Every (configuration, method) runs in its own subprocess, rounds alternate the
methods, and the fastest of ``--repeats`` counts. The ORT workers never import torch.

Then, on the bundled trained model: ``forecast()`` with its defaults (20 paths, calibration, dequantisation)
per series for each backend; int8 against float32 teacher-forced argmax agreement (s1, and s2 given the true
s1) on real bars; float32 ORT against PyTorch logits; and the cached step alone (torch, ORT float32, ORT
with the ``onnxruntime.transformers`` optimiser's fusions, ORT int8).

    python benchmarks/bench_onnx.py --original /tmp/kronos-original
    python benchmarks/bench_onnx.py --configs 256+64 --repeats 3 --skip-forecast
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_generation import build_checkpoints, load_inputs
from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "kronos" / "weights" / "default"
METHODS = ("original", "torch", "ort-float32", "ort-int8")


def _predictor(spec: dict):
    method = spec["method"]
    if method == "original":
        from model import Kronos as OriginalKronos  # the original's package, from PYTHONPATH
        from model import KronosPredictor as OriginalPredictor
        from model import KronosTokenizer as OriginalTokenizer

        folder = Path(spec["folder"])
        network = OriginalKronos.from_pretrained(str(folder / "model")).eval()
        codec = OriginalTokenizer.from_pretrained(str(folder / "tokenizer")).eval()
        return OriginalPredictor(network, codec, device="cpu", max_context=spec["max_context"])
    if method == "torch":
        from kronos import KronosPredictor

        if spec["folder"] == "default":
            return KronosPredictor.from_pretrained("default", device="cpu")
        from kronos import Kronos, KronosTokenizer

        folder = Path(spec["folder"])
        return KronosPredictor(Kronos.from_pretrained(folder / "model"), KronosTokenizer.from_pretrained(
            folder / "tokenizer"), device="cpu", max_context=spec["max_context"])
    from kronos.onnx import OnnxPredictor

    return OnnxPredictor(spec["onnx"], dtype=method.split("-")[1])


def worker(spec: dict) -> dict:
    """Time one method on one configuration; save its forecast."""
    predictor = _predictor(spec)
    history, pred_len = spec["history"], spec["pred_len"]
    if spec["kind"] == "forecast":
        import pandas as pd

        bars = pd.read_csv(ROOT / "tests" / "data" / "kronos_XSHG-600977_5min.csv", parse_dates=["timestamps"])
        df = bars.iloc[-(history + pred_len):-pred_len]
        y = bars["timestamps"].iloc[-pred_len:]

        def run(n: int) -> np.ndarray:
            return predictor.forecast(df, df["timestamps"], y.iloc[:n], n, seed=0).samples
    else:
        dfs, xs, ys = load_inputs(1, history, pred_len)
        kwargs = dict(T=1.0, top_k=1, top_p=1.0, sample_count=1)
        if spec["method"] == "original":
            kwargs["verbose"] = False

        def run(n: int) -> np.ndarray:
            return predictor.predict(dfs[0], xs[0], ys[0].iloc[:n], n, **kwargs).to_numpy(dtype=np.float64)

    run(2)  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        out = run(pred_len)
        times.append(time.perf_counter() - start)
    np.save(spec["out"], out)
    return {"seconds": min(times), "all": times, "torch_imported": "torch" in sys.modules}


def run_worker(spec: dict, original: str | None) -> dict:
    env = dict(os.environ)
    if spec["method"] == "original":
        env["PYTHONPATH"] = original + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{spec['method']} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(folder: Path, out: Path, max_context: int) -> float:
    from kronos import Kronos, KronosTokenizer
    from kronos.onnx.export import export_onnx

    started = time.perf_counter()
    export_onnx(Kronos.from_pretrained(folder / "model"), KronosTokenizer.from_pretrained(folder / "tokenizer"), out,
                max_context=max_context)
    return time.perf_counter() - started


def timing(args: argparse.Namespace, tmp: Path, kind: str, folder: str, onnx: Path, configs: list[str],
           methods: list[str], max_context: int) -> None:
    for config in configs:
        history, pred_len = (int(part) for part in config.split("+"))
        best: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for method in methods:
                spec = dict(method=method, kind=kind, folder=folder, onnx=str(onnx), history=history,
                            pred_len=pred_len, max_context=max_context, repeats=args.repeats,
                            out=str(tmp / f"{kind}-{method}.npy"))
                result = run_worker(spec, args.original)
                best[method] = min(best.get(method, float("inf")), result["seconds"])
                outputs[method] = np.load(spec["out"])
                if method.startswith("ort") and result["torch_imported"]:
                    raise SystemExit(f"{method} worker imported torch")
        base = "original" if "original" in best else "torch"
        line = ", ".join(f"{m} {best[m]:.2f} s ({best[base] / best[m]:.1f}x)" for m in methods)
        print(f"{kind} {history}+{pred_len}: {line}  [ratios vs {base}; load {os.getloadavg()[0]:.1f}]", flush=True)
        if kind == "predict":
            ref = outputs["torch"]
            for m in methods:
                if m != "torch":
                    rel = np.abs(outputs[m] - ref) / np.maximum(np.abs(ref), 1e-6)
                    print(f"    {m} vs torch greedy forecast: max relative difference {rel.max():.2e}, "
                          f"identical bars {np.mean(np.all(rel < 1e-4, axis=1)):.0%}")


def teacher_forced(onnx: Path, windows: int = 8, history: int = 256) -> None:
    """int8 vs float32 ORT (and float32 ORT vs torch) on the bundled weights, teacher-forced on real bars."""
    import torch

    from kronos import KronosPredictor
    from kronos.data.features import Normalizer, as_timestamps, bar_features, time_features
    from kronos.onnx.runtime import OnnxKronos, _CachedStep

    reference = KronosPredictor.from_pretrained("default", device="cpu")
    nets = {"float32": OnnxKronos(onnx), "int8": OnnxKronos(onnx, dtype="int8")}
    dfs, xs, _ = load_inputs(windows, history, 1)
    same = {"s1": 0, "s2": 0}
    total = 0
    logit_diff = 0.0
    for df, x in zip(dfs, xs):
        bars = bar_features(df)
        normalised = Normalizer.fit(bars, reference.clip).transform(bars)[None]
        s1, s2 = nets["float32"].encode(normalised)
        stamp = time_features(as_timestamps(x, "x"))[None].astype(np.float32)
        picks = {}
        for name, net in nets.items():
            logits1, logits2 = _forced_logits(net, s1, s2, stamp, _CachedStep)
            picks[name] = (logits1.argmax(-1), logits2.argmax(-1))
            if name == "float32":
                with torch.no_grad():
                    want, ctx = reference.model.decode_s1(torch.from_numpy(s1[:, :-1]), torch.from_numpy(s2[:, :-1]),
                                                          torch.from_numpy(stamp[:, :-1]))
                logit_diff = max(logit_diff, float(np.abs(logits1 - want[0].numpy()).max()))
        same["s1"] += int((picks["float32"][0] == picks["int8"][0]).sum())
        same["s2"] += int((picks["float32"][1] == picks["int8"][1]).sum())
        total += s1.shape[1] - 1
    print(f"bundled model, teacher-forced over {windows} windows of {history} real bars: ORT int8 vs ORT float32 "
          f"s1 argmax agrees at {100 * same['s1'] / total:.1f}% of positions, s2 (given the true s1) at "
          f"{100 * same['s2'] / total:.1f}%; ORT float32 vs PyTorch float32 s1 logits max |diff| {logit_diff:.2e}")


def _forced_logits(net, s1: np.ndarray, s2: np.ndarray, stamp: np.ndarray, step_class) -> tuple[np.ndarray, ...]:
    """s1 logits at positions 0..T-2 and s2 logits given the true next s1, through the cached step."""
    t = s1.shape[1]
    logits1, hidden, keys, values, dep_k, dep_v = net.prefill(s1[:, :1], s2[:, :1], stamp[:, :1])
    dep_sk = np.zeros((1, net.dep_heads, t, net.dep_head_dim), dtype=np.float32)
    dep_sv = np.zeros_like(dep_sk)
    step = step_class(net, keys, values, dep_k, dep_v, dep_sk, dep_sv, 1, t)
    out1, out2 = [logits1[0]], [net.s2_logits(hidden, s1[:, 1], dep_k, dep_v, dep_sk, dep_sv, 0)[0]]
    for i in range(1, t - 1):
        logits, hidden = step.run(s1[:, i], s2[:, i], stamp[:, i], i, i - 1)
        out1.append(logits[0])
        out2.append(net.s2_logits(hidden, s1[:, i + 1], dep_k, dep_v, dep_sk, dep_sv, i)[0])
    return np.stack(out1), np.stack(out2)


def step_times(folder: Path, onnx: Path, history: int = 256, steps: int = 200) -> None:
    """Seconds of one cached step at batch 1 after ``history`` tokens: torch, ORT float32, fused, int8."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    from kronos import Kronos
    from kronos.onnx.runtime import OnnxKronos, _CachedStep

    fused = onnx.parent / "fused"
    fused.mkdir(exist_ok=True)
    for name in os.listdir(onnx):
        if name != "step.onnx":
            os.link(onnx / name, fused / name)
    cfg = json.loads((onnx / "kronos_onnx.json").read_text())["model_config"]
    optimized = optimize_model(str(onnx / "step.onnx"), model_type="gpt2", num_heads=cfg["n_heads"],
                               hidden_size=cfg["d_model"])
    fusions = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    optimized.save_model_to_file(str(fused / "step.onnx"))
    rng = np.random.default_rng(0)
    s1 = rng.integers(0, 1024, (1, history))
    stamp = np.zeros((1, history, 5), dtype=np.float32)
    results = {}
    for label, path, dtype in (("ORT float32", onnx, "float32"), ("ORT float32 + transformer fusions", fused,
                                                                   "float32"), ("ORT int8", onnx, "int8")):
        net = OnnxKronos(path, dtype=dtype)
        _, _, keys, values, dep_k, dep_v = net.prefill(s1, s1, stamp)
        dk = np.zeros((1, net.dep_heads, steps + 1, net.dep_head_dim), dtype=np.float32)
        step = _CachedStep(net, keys, values, dep_k, dep_v, dk, dk.copy(), 1, steps + 1)
        step.run(s1[:, 0], s1[:, 0], stamp[:, 0], history, 0)
        started = time.perf_counter()
        for i in range(1, steps):
            step.run(s1[:, 0], s1[:, 0], stamp[:, 0], history + i, i)
        results[label] = (time.perf_counter() - started) / (steps - 1)
    model = Kronos.from_pretrained(folder / "model").eval()
    tokens = torch.from_numpy(s1)
    cache = model.new_cache(1, history + steps)
    with torch.no_grad():
        model.hidden_states(tokens, tokens, torch.from_numpy(stamp), torch.arange(history), cache=cache)
        one, st = tokens[:, :1], torch.zeros(1, 1, 5)
        model.next_hidden(one, one, st, torch.tensor([history]), cache)
        started = time.perf_counter()
        for i in range(1, steps):
            model.next_hidden(one, one, st, torch.tensor([history + i]), cache, max_position=history + steps)
        results["torch float32 (trunk only)"] = (time.perf_counter() - started) / (steps - 1)
    print(f"cached step at batch 1 after {history} tokens (Kronos-small layout; ORT steps include the s1 head and "
          f"the cache write, torch's is the trunk alone); transformer optimiser fused {fusions or 'nothing'}:")
    for label, seconds in results.items():
        print(f"    {label}: {seconds * 1e3:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["256+64", "400+120"], help="HISTORY+FORECAST bars")
    parser.add_argument("--original", metavar="PATH", help="checkout of shiyu-coder/Kronos: also time its predict")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per worker (the fastest counts)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all methods, alternating")
    parser.add_argument("--skip-forecast", action="store_true", help="skip forecast() and the bundled-model parts")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import onnxruntime
    import torch

    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
          f"{onnxruntime.__version__}; greedy top_k=1, one path", flush=True)
    methods = [m for m in METHODS if m != "original" or args.original]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        build_checkpoints(tmp / "small", "small", 0)
        seconds = export(tmp / "small", tmp / "small-onnx", 512)
        print(f"exported the Kronos-small layout in {seconds:.1f} s", flush=True)
        timing(args, tmp, "predict", str(tmp / "small"), tmp / "small-onnx", args.configs, methods, 512)
        step_times(tmp / "small", tmp / "small-onnx")
        if args.skip_forecast:
            return
        seconds = export(BUNDLED, tmp / "bundled-onnx", 288)
        timing(args, tmp, "forecast", "default", tmp / "bundled-onnx", ["256+32"], ["torch", "ort-float32", "ort-int8"],
               288)
        teacher_forced(tmp / "bundled-onnx")


if __name__ == "__main__":
    main()
