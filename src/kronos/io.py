"""Files written whole or not at all.

Every output the package writes (forecast tables, reports, a universe job's partitions, checkpoints,
training logs) goes through :func:`atomic_write_bytes`: a reader, or a run that resumes after a crash,
sees either the old file or the new one, never half of one. :func:`remove_stale_temp_files` clears what
a process killed mid-write leaves behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import kill_points

TEMP_SUFFIXES = (".tmp", ".old")  # atomic_write_bytes' files; a training run's half-written or replaced folders


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename; returns the path.

    The file gets the permissions ``open()`` would give it (0666 less the umask).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        kill_points.reached("atomic-write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete what an interrupted atomic write left in ``folder`` and its sub-folders: hidden ``.*.tmp``
    files of :func:`atomic_write_bytes`, and hidden ``.*.tmp``/``.*.old`` folders of a model-folder swap.

    Run where no other process is writing (a training run's output folder, at start and on resume); a
    SIGKILL during a write leaves such files behind, gigabytes each for a large model. Returns what
    was removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.rglob(".*")):
        if not path.name.endswith(TEMP_SUFFIXES) or path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed
