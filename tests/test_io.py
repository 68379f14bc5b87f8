"""Atomic writes: a file is replaced whole, with open()'s permissions, and a killed write's leftovers are cleared."""

from __future__ import annotations

import os
import stat

from kronos.io import atomic_write_bytes, remove_stale_temp_files


def test_atomic_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    path = atomic_write_bytes(tmp_path / "out.csv", b"a\n")
    assert atomic_write_bytes(str(path), b"b\n") == path
    assert path.read_bytes() == b"b\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    umask = os.umask(0o027)
    try:
        path = atomic_write_bytes(tmp_path / "out.json", b"{}")
        (tmp_path / "plain.json").write_bytes(b"{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o640


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    keep = [tmp_path / "checkpoint.pt", tmp_path / "final" / "model.safetensors", tmp_path / "notes.tmp",
            tmp_path / ".hidden"]
    stale = [tmp_path / ".checkpoint.pt.k2j3h.tmp", tmp_path / "final" / ".model.safetensors.a1b2.tmp"]
    stale_dirs = [tmp_path / ".best.tmp", tmp_path / ".final.old"]
    for path in keep + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1024)
    for folder in stale_dirs:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted(stale + stale_dirs)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale + stale_dirs)
