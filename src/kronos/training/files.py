"""The files of a training run's folder: model folders swapped in whole, JSON records, the metrics log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..io import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
REPORT_NAME = "report.json"


def save_model_dir(model: nn.Module, directory: Path, extra: Callable[[Path], None] | None = None) -> None:
    """Write a ``from_pretrained`` folder: fill a temporary sibling (``extra`` may add files), then swap it in
    by rename."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if extra is not None:
        extra(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    """``value`` as sorted, indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


class MetricsLog:
    """Append-only JSON lines; on resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed run
                continue
            if row.get("step", 0) <= step:
                kept.append(line)
        atomic_write_bytes(self.path, "".join(line + "\n" for line in kept).encode())

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
