"""Atomic writes leave the old file intact when writing fails, and no temporary files behind."""

import json
from pathlib import Path

import pytest

from wslgraph.io import atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "sub" / "r.json", {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})  # not serialisable: fails before anything is written
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails while writing the temporary file
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_files_get_the_umask_permissions(tmp_path) -> None:
    import os

    mask = os.umask(0)
    os.umask(mask)
    path = atomic_write_bytes(tmp_path / "file.bin", b"x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
