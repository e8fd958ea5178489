"""The one atomic-write helper (uvis.fsutil): no half file under a real name, temporaries
recognisable by PID and age, stale ones cleaned, live ones kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from uvis.fsutil import (TMP_MARK, atomic_dir, atomic_open, atomic_path, atomic_write_bytes, atomic_write_json,
                         atomic_write_text, clean_stale_temps, is_stale_temp, temp_pid, temp_sibling)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_writes_replace_and_leave_only_the_target(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.json").read_text() == '{"x":[1,2]}'
    atomic_write_json(tmp_path / "c.json", {"x": 1}, indent=1)
    assert (tmp_path / "c.json").read_text() == '{\n "x": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json"]


def test_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("{half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_keeps_suffix_for_numpy(tmp_path):
    target = tmp_path / "frame.npz"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".npz" and TMP_MARK in tmp.name and temp_pid(tmp) == os.getpid()
        np.savez(tmp, a=np.arange(3))
    with np.load(target) as d:
        assert d["a"].tolist() == [0, 1, 2]
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "never.npz"):
            pass  # the writer made nothing: refused, nothing appears
    assert [p.name for p in tmp_path.iterdir()] == ["frame.npz"]


def test_atomic_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "frames"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "b").write_text("2")
            raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["a"]
    with atomic_dir(target) as d:
        (d / "z").write_text("9")
    assert [p.name for p in target.iterdir()] == ["z"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_stale_temporaries_by_pid_and_age(tmp_path):
    real = tmp_path / "keep.json"
    real.write_text("{}")
    dead = tmp_path / f".x{TMP_MARK}{_dead_pid()}-0123abcd.json"
    dead.write_text("half")
    mine = temp_sibling(tmp_path / "y.json")
    mine.write_text("in progress")
    old_live = tmp_path / f".z{TMP_MARK}{os.getppid()}-89abcdef.json"  # a live PID, but reused long ago
    old_live.write_text("old")
    two_days = time.time() - 48 * 3600
    os.utime(old_live, (two_days, two_days))
    dead_dir = tmp_path / f".frames{TMP_MARK}{_dead_pid()}-00000000.old"
    dead_dir.mkdir()
    (dead_dir / "f.jpg").write_bytes(b"1")
    assert temp_pid(real) is None and not is_stale_temp(real)
    assert is_stale_temp(dead) and not is_stale_temp(mine) and is_stale_temp(old_live)
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead.name, old_live.name, dead_dir.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keep.json", mine.name])
    assert clean_stale_temps(tmp_path / "missing") == []
