"""Shared fixtures: paths to ../shared (parity checkpoints, real market data) and the tiny predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PARITY = SHARED / "fixtures" / "parity-tiny"
DATA = SHARED / "data" / "ohlcv"


@pytest.fixture()
def one_thread():
    """Tiny models run fastest single-threaded, above all on a machine shared with other jobs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def parity_cases() -> dict:
    return json.loads((PARITY / "cases.json").read_text())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def read_bars(name: str) -> pd.DataFrame:
    """A real series from ../shared/data/ohlcv with parsed timestamps."""
    return pd.read_csv(DATA / name, parse_dates=["timestamps"])


@pytest.fixture(scope="session")
def xshg() -> pd.DataFrame:
    return read_bars("kronos_XSHG-600977_5min.csv")


@pytest.fixture(scope="session")
def tiny_predictor():
    from kronos import Kronos, KronosPredictor, KronosTokenizer

    model = Kronos.from_pretrained(PARITY / "model")
    tokenizer = KronosTokenizer.from_pretrained(PARITY / "tokenizer")
    return KronosPredictor(model, tokenizer, device="cpu", max_context=256)
