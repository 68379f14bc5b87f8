"""Shared fixtures: the parity checkpoints and real market series kept in tests/, and the tiny predictor.

Everything the default suite reads lives inside the repository (``tests/fixtures``, ``tests/data``).
``FULL_DATA`` is the optional larger collection of real series beside a checkout (``../shared/data/ohlcv``);
tests that need it are opt-in and skip with the reason when it is absent.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
PARITY = FIXTURES / "parity-tiny"
DATA = TESTS / "data"
FULL_DATA = Path(os.environ.get("KRONOS_FULL_DATA", TESTS.parents[1] / "shared" / "data" / "ohlcv"))


IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(available: bool, reason: str, module_level: bool = False) -> None:
    """Skip with ``reason`` when a test dependency is missing; under ``CI=true`` (``.ci/run``, which installs
    every one) fail instead, so that a green CI run never hides a check that did not run."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true every test dependency must be installed (see .ci/run)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def import_or_need(name: str, reason: str | None = None, module_level: bool = False) -> ModuleType:
    """``importlib.import_module(name)``, or :func:`need` fails/skips naming the missing package."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, reason or f"needs {name} (pip install 'kronos-kline[test]')", module_level)
        raise


def needs_full_data():
    """Skip marker for tests over the whole collection of real series (``KRONOS_FULL_DATA``)."""
    return pytest.mark.skipif(not FULL_DATA.is_dir(),
                              reason=f"the full data collection is not at {FULL_DATA} (set KRONOS_FULL_DATA)")


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
    """A real series from tests/data with parsed timestamps."""
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
