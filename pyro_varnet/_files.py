"""Writing run files safely: atomic replacement, no symlink following, disk-full named."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def _no_space(path: Path, e: OSError) -> OSError:
    if e.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"no space left on device (ENOSPC) while writing {path}", str(path))
    return e


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync it, rename it
    over ``path`` (replacing a symlink there, never writing through it) and fsync the folder.
    A failure leaves ``path`` as it was and no temporary file behind; a full disk raises
    ``OSError(ENOSPC)`` naming ``path``."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise _no_space(path, e) from e
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if missing), refusing to follow a symlink."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{path} is a symbolic link; not writing through it", str(path)) from e
        raise _no_space(path, e) from e
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    except OSError as e:
        raise _no_space(path, e) from e
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` leaves when killed mid-write."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed
