"""Run-file writing: atomic replacement, symlinks never written through, a full disk named."""

import errno
import os

import pytest

from pyro_varnet import _files
from pyro_varnet.runs import RunFolder


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "run").mkdir()
    link = tmp_path / "run" / "args.json"
    link.symlink_to(victim)
    _files.atomic_write(link, "{}")
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "{}"
    (tmp_path / "run" / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        _files.append_line(tmp_path / "run" / "metrics.jsonl", "{}")
    assert victim.read_text() == "precious"


def test_a_full_disk_is_named_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=rf"ENOSPC.*{path.name}"):
        _files.atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_stale_temporary_files_are_removed(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "checkpoint.pt").write_bytes(b"whole")
    assert [p.name for p in _files.remove_stale_temps(tmp_path)] == [".checkpoint.pt.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_the_lock_names_its_holder(tmp_path):
    with RunFolder(tmp_path / "run") as first:
        first.mark_holder()
        with pytest.raises(Exception, match=rf"in use by another varnet process \(PID {os.getpid()}\)"):
            RunFolder(tmp_path / "run").acquire()
    RunFolder(tmp_path / "run").acquire()  # released on exit
