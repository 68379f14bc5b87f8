"""CUDA graphs in generation: recorded and eager steps agree, how much graphs save, where the time goes.

Builds the Kronos-small layout (random weights, ``torch.manual_seed``) with the published tokenizer
layout and, on one CUDA device, in one process:

1. forecasts a ragged batch (6 series, histories 60-400 bars, forecasts 10-120 bars, 4 paths each)
   with CUDA graphs on and off (``KRONOS_CUDA_GRAPHS``) for seeded sampling, a ``torch.Generator`` and
   greedy decoding, and checks the samples are identical; then one path per series, greedy, against
   full recompute;
2. times ``predict_batch`` on 64 series × 5 paths, 400 + 120 bars (real 5-minute bars), graphs on and
   off alternately, printing the ratio;
3. times the same call once more with each phase synchronised: encode, prefill, slide steps, the
   rest of generation (the cached steps), decode.

    python benchmarks/bench_cuda_graphs.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_generation import build_checkpoints, load_inputs
from machine_info import machine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="small", choices=["mini", "small", "base"])
    parser.add_argument("--rounds", type=int, default=2, help="alternating on/off timing rounds")
    args = parser.parse_args(argv)

    import torch

    import kronos.forecasting.generation as generation
    import kronos.forecasting.predictor as predictor_module
    from kronos import Kronos, KronosPredictor, KronosTokenizer

    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda_graphs.py needs a CUDA device")
    print(f"machine: {machine()}; {torch.cuda.get_device_name()}; torch {torch.__version__}; Kronos-{args.layout}")
    folder = Path(tempfile.mkdtemp())
    build_checkpoints(folder, args.layout, 0)
    predictor = KronosPredictor(Kronos.from_pretrained(folder / "model"),
                                KronosTokenizer.from_pretrained(folder / "tokenizer"), device="cuda", max_context=512)

    def timed(graphs: bool, call):
        os.environ["KRONOS_CUDA_GRAPHS"] = "1" if graphs else "0"
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        torch.cuda.synchronize()
        return time.perf_counter() - start, out

    # 1. Agreement on a ragged batch.
    dfs, xs, ys = load_inputs(6, 400, 120)
    lookbacks, pred_lens = [400, 380, 300, 250, 120, 60], [120, 120, 40, 90, 10, 120]
    histories = [df.iloc[-n:] for df, n in zip(dfs, lookbacks)]
    stamps = [x.iloc[-n:] for x, n in zip(xs, lookbacks)]
    futures = [y.iloc[:p] for y, p in zip(ys, pred_lens)]
    settings = {"seeded top-p": lambda: dict(T=1.0, top_p=0.9, seed=7),
                "torch.Generator top-k+top-p": lambda: dict(T=0.8, top_k=20, top_p=0.8,
                                                            seed=torch.Generator("cuda").manual_seed(3)),
                "greedy": lambda: dict(top_k=1)}
    def ragged(graphs: bool, make_kwargs) -> list:
        return timed(graphs, lambda: predictor.forecast_batch(histories, stamps, futures, pred_lens, sample_count=4,
                                                              **make_kwargs()))[1]

    for name, make_kwargs in settings.items():
        runs = [ragged(graphs, make_kwargs) for graphs in (True, False)]
        same = all(np.array_equal(a.samples, b.samples) for a, b in zip(*runs))
        print(f"ragged batch, 4 paths, {name}: graphs and eager identical: {same}")
    os.environ["KRONOS_CUDA_GRAPHS"] = "1"
    cached = predictor.forecast_batch(histories, stamps, futures, pred_lens, sample_count=1, top_k=1)
    full = predictor.forecast_batch(histories, stamps, futures, pred_lens, sample_count=1, top_k=1, use_cache=False)
    print("ragged batch, 1 path, greedy: graphs and full recompute identical:",
          all(np.array_equal(a.samples, b.samples) for a, b in zip(cached, full)))

    # 2. Graphs on and off, alternating.
    dfs, xs, ys = load_inputs(64, 400, 120)
    batch = lambda: predictor.predict_batch(dfs, xs, ys, 120, T=1.0, top_k=1, top_p=1.0, sample_count=5)  # noqa: E731
    batch()  # warm-up
    best = {True: float("inf"), False: float("inf")}
    for _ in range(args.rounds):
        for graphs in (True, False):
            seconds, _ = timed(graphs, batch)
            best[graphs] = min(best[graphs], seconds)
            print(f"64 series x 5 paths, 400+120, float32, graphs {'on ' if graphs else 'off'}: {seconds:.3f} s")
    print(f"graphs on vs off (best of {args.rounds}): {best[True]:.3f} s vs {best[False]:.3f} s, "
          f"{best[False] / best[True]:.2f}x")

    # 3. Phases, each synchronised (graphs on).
    phases: dict[str, float] = {}

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def synchronised(*a, **k):
            torch.cuda.synchronize()
            start = time.perf_counter()
            result = inner(*a, **k)
            torch.cuda.synchronize()
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - start
            return result

        setattr(owner, name, synchronised)

    wrap(predictor_module.KronosPredictor, "_encode", "encode")
    wrap(predictor_module.KronosPredictor, "_decode", "decode")
    wrap(predictor_module, "generate_tokens", "generation")
    wrap(generation, "_slide_group", "slide steps")
    wrap(generation._CachedRows, "__init__", "prefill")
    torch.cuda.reset_peak_memory_stats()
    total, _ = timed(True, batch)
    phases["cached steps and sampling"] = phases["generation"] - phases["slide steps"] - phases["prefill"]
    print(f"phases of one call ({total:.3f} s, GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB): "
          + ", ".join(f"{k} {v:.3f} s" for k, v in phases.items()))


if __name__ == "__main__":
    main()
