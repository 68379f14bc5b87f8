"""Training throughput (bars/s) of the tokenizer and of the Kronos-small layout, on real data.

For each network it measures, in one run:
- ``bare``: forward + backward + AdamW step on one fixed, pre-built batch (the baseline: compute only);
- ``pipeline``: :meth:`Trainer.train_step` with windows drawn, cut and normalised per step from the
  files (what ``kronos train`` does), and prints pipeline / bare;
- on CUDA also both with bf16 autocast (``--precision bf16``) against fp32, printing the ratio.

A bar is one row of one window (lookback + horizon bars per window). Weights are random (published
layouts: Kronos-Tokenizer-base and Kronos-small); throughput does not depend on their values.

    python benchmarks/bench_training.py                      # CPU
    python benchmarks/bench_training.py --device cuda --batch-size 50 --steps 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from machine_info import cpu_name

from kronos.training import Trainer, TrainOptions
from kronos.training.distributed import DistInfo

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ohlcv"




def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(kind: str, args, precision: str, tokenizer_dir: Path, out: Path) -> Trainer:
    opts = TrainOptions(kind=kind, data=[str(p) for p in args.data], out=str(out), size="base" if kind == "tokenizer"
                        else "small", tokenizer=str(tokenizer_dir) if kind == "predictor" else None,
                        lookback=args.lookback, horizon=args.horizon, batch_size=args.batch_size, max_steps=10**6,
                        device=args.device, precision=precision, progress=False, seed=0)
    device = torch.device(args.device if args.device != "cuda" else "cuda:0")
    trainer = Trainer(opts, DistInfo(0, 1, 0, device))
    trainer._build()
    trainer._load_data()
    return trainer


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


def measure(kind: str, args, precision: str, tokenizer_dir: Path, out: Path) -> dict[str, float]:
    """Best of ``--rounds`` alternating rounds of bare and pipeline steps (alternating evens out a shared machine)."""
    trainer = make_trainer(kind, args, precision, tokenizer_dir, out)
    bars_per_step = args.batch_size * (args.lookback + args.horizon)
    fixed = trainer.train_windows.batch(trainer.train_windows.epoch_indices(0, 0, args.batch_size))
    cache: dict = {}
    steps = {"bare": lambda: trainer.train_step([fixed]),
             "pipeline": lambda: trainer.train_step(trainer._step_batches(cache))}
    time_steps(steps["pipeline"], 0, args.warmup, trainer.device)
    best = {name: 0.0 for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            seconds = time_steps(step, args.steps, 0, trainer.device)
            best[name] = max(best[name], bars_per_step * args.steps / seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", type=Path, default=[DATA], help="files or folders (default: shared data)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lookback", type=int, default=90)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is shown")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else f"{cpu_name()}, {threads} threads"
    print(f"device: {where}; torch {torch.__version__}; batch {args.batch_size} windows of "
          f"{args.lookback}+{args.horizon} bars; best of {args.rounds} rounds of {args.steps} steps "
          f"after {args.warmup} warm-up")
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = Path(tmp) / "tokenizer"
        from kronos import KronosTokenizer
        from kronos.model.config import TOKENIZER_SIZES

        torch.manual_seed(0)
        KronosTokenizer(TOKENIZER_SIZES["base"]).save_pretrained(tokenizer_dir)
        print(f"{'network':<28}{'precision':<11}{'bare bars/s':>13}{'pipeline bars/s':>17}{'pipeline/bare':>15}")
        results = {}
        for kind, label in (("tokenizer", "tokenizer (Tokenizer-base)"), ("predictor", "predictor (Kronos-small)")):
            for precision in precisions:
                r = measure(kind, args, precision, tokenizer_dir, Path(tmp) / f"{kind}-{precision}")
                results[kind, precision] = r
                print(f"{label:<28}{precision:<11}{r['bare']:>13.0f}{r['pipeline']:>17.0f}"
                      f"{r['pipeline'] / r['bare']:>15.2f}")
        if device.type == "cuda":
            for kind in ("tokenizer", "predictor"):
                ratio = results[kind, "bf16"]["pipeline"] / results[kind, "fp32"]["pipeline"]
                print(f"{kind}: bf16 autocast / fp32 pipeline throughput = {ratio:.2f}")


if __name__ == "__main__":
    main()
