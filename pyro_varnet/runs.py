"""Run folders that never lose or corrupt their record (``varnet train`` / ``compare``).

A run folder holds ``args.json`` (the settings the run started with, written atomically once),
``checkpoint.pt`` (the single source of truth: state, history, run configuration, checksum),
``metrics.jsonl`` and ``history.csv`` (views of the checkpoint's history, rewritten from it on
resume) and ``.lock``. One process at a time holds the folder: an advisory lock taken before
anything in it is written and held for the run's life; ``.lock`` records the holder's PID.
Nothing is written before the run has passed every check, so a refused command leaves the
folder's files as they were.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from . import _json
from ._files import append_line, atomic_write, remove_stale_temps
from .infer.loop import Callback

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no advisory locks of this kind
    fcntl = None

FILES = ("args.json", "checkpoint.pt", "metrics.jsonl", "history.csv")


class RunLockedError(RuntimeError):
    """Another process holds the run folder."""


def safe_name(name: str, what: str) -> str:
    """``name`` if it can be one component of a path under the output root, else ``ValueError``
    (no separators, no ``..``, not absolute, not empty)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.path.isabs(name):
        raise ValueError(f"{what} {name!r} cannot name a folder: no '/', '\\', '..' or absolute paths")
    return name


class RunFolder:
    """The files of one run and the lock that guards them."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        return self.file("checkpoint.pt")

    # the lock ------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the folder's lock (creating the folder), or raise :class:`RunLockedError` naming
        the holder's PID."""
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.file(".lock"), flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = self.file(".lock").read_text().strip() or "unknown"
            raise RunLockedError(
                f"{self.path} is in use by another varnet process (PID {holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        self._fd = fd

    def mark_holder(self) -> None:
        """Record this process's PID in ``.lock`` (done once the run has passed its checks)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolder:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # the files -------------------------------------------------------------------------------
    def write_args(self, args: dict) -> None:
        atomic_write(self.file("args.json"), _json.dumps(args, indent=2) + "\n")

    def read_args(self) -> dict:
        path = self.file("args.json")
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} is not a varnet train run folder (no args.json)")
        try:
            return _json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from e

    def rewrite_metrics(self, epochs: Iterable[dict]) -> None:
        """``metrics.jsonl`` and ``history.csv`` as views of ``epochs`` (the checkpoint's history)."""
        epochs = list(epochs)
        lines = "".join(_json.dumps(_metrics_line(e)) + "\n" for e in epochs)
        atomic_write(self.file("metrics.jsonl"), lines)
        self.write_history(epochs)

    def append_metrics(self, metrics: dict) -> None:
        append_line(self.file("metrics.jsonl"), _json.dumps(_metrics_line(metrics)))

    def write_history(self, epochs: Iterable[dict]) -> None:
        import pandas as pd

        atomic_write(self.file("history.csv"), pd.DataFrame(list(epochs)).to_csv(index=False))


def _metrics_line(metrics: dict) -> dict:
    """What ``metrics.jsonl`` keeps of an epoch: everything but wall-clock time (so that the
    same seed gives the same file)."""
    return {k: v for k, v in metrics.items() if k != "seconds"}


class RunWriter(Callback):
    """Writes a run folder's files from the training loop: at the start (after every check has
    passed) ``args.json`` for a new run or ``metrics.jsonl`` / ``history.csv`` rewritten from the
    resumed checkpoint's history, stale temporary files removed; after each epoch (and its
    checkpoint) the epoch's line and ``history.csv``."""

    def __init__(self, folder: RunFolder, args: dict, echo=None) -> None:
        self.folder, self.args, self.echo = folder, args, echo

    def on_fit_start(self, loop) -> None:
        self.folder.mark_holder()
        remove_stale_temps(self.folder.path)
        if loop.start_epoch == 0:
            self.folder.write_args(self.args)
        self.folder.rewrite_metrics(loop.history.epochs)

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        self.folder.append_metrics(metrics)
        self.folder.write_history(loop.history.epochs)
        if self.echo is not None:
            self.echo(epoch, metrics)
