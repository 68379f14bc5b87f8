"""A test hook: end this process with SIGKILL when it reaches a named point.

Tests of crash safety (a job killed mid-write, a training run killed mid-way) set the environment
variable ``KRONOS_TEST_KILL_AT`` in a child process to ``<point>`` (the first time the point is
reached) or ``<point>@<n>`` (the n-th time), so the kill lands at the same place on every run
instead of after a sleep. Unset, :func:`reached` costs one dictionary lookup.

Points:

- ``atomic-write``: an atomic write has written and synced its temporary file and not yet renamed
  it (the process dies leaving a ``.<name>.<random>.tmp`` beside the target).
- ``universe-batch``: :func:`kronos.universe.forecast_universe` has written one batch's partitions.
- ``checkpoint``: a training run has written ``checkpoint.pt``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "KRONOS_TEST_KILL_AT"
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    point, _, nth = value.partition("@")
    return point, int(nth) if nth else 1


def reached(point: str) -> None:
    """SIGKILL this process if ``KRONOS_TEST_KILL_AT`` names ``point`` and this is the n-th time it is reached."""
    target = _target()
    if target is None or target[0] != point:
        return
    with _lock:
        _counts[point] += 1
        if _counts[point] == target[1]:
            os.kill(os.getpid(), signal.SIGKILL)
