"""What every benchmark prints about the machine it ran on (imported by the bench_*.py scripts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str = "cpu") -> str:
    """CPU model, core count and 1-minute load, plus the GPU name when ``device`` is CUDA."""
    text = f"{cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text
