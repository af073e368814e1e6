"""Atomic checkpoints that restore a run exactly: parameters, optimizer, RNG, history.

Version 2 (written by this library) holds ``model`` and ``guide`` state dicts (the guide's
records the sites it built, so it loads into a freshly built guide), the optimizer's and
scheduler's state dicts, every RNG state and the history. Version 1 (Pyro parameter-store
names) is still read by :func:`~pyro_varnet.infer.restore`, for analysis.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "pyro-varnet-checkpoint"
VERSION = 2
READABLE = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this model and guide."""


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every RNG a run draws from: torch (CPU and each initialised CUDA device), Python, NumPy
    and the data order's ``generator``."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "generator": None if generator is None else generator.get_state(),
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy(), *np_state[2:]))
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
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


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint, raising :class:`CheckpointError` with the reason if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a pyro-varnet checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-varnet checkpoint")
    if state.get("version") not in READABLE:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this library reads {READABLE}")
    return state


def module_state(model, guide) -> dict:
    """The ``model`` / ``guide`` state dicts of a checkpoint (modules only; other callables have none)."""
    return {k: m.state_dict() for k, m in (("model", model), ("guide", guide)) if isinstance(m, torch.nn.Module)}


def load_modules(state: dict, path, model, guide) -> None:
    """Load a version-2 checkpoint's state dicts into ``model`` and ``guide`` (a fresh guide
    rebuilds its sites from its state), or raise :class:`CheckpointError` saying what differs."""
    for key, m in (("model", model), ("guide", guide)):
        if not isinstance(m, torch.nn.Module):
            continue
        if key not in state:
            raise CheckpointError(f"checkpoint {path} holds no {key} state")
        try:
            m.load_state_dict(state[key])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {path} was written for a different model or guide ({key}: {e})") from e


def load_v1(state: dict, path, model, guide) -> None:
    """Copy a version-1 checkpoint (Pyro parameter-store names, buffers by position) into
    ``model`` and a ``guide`` whose sites are built."""
    from ..state import _store_names

    current = {name: p for m in (model, guide) if isinstance(m, torch.nn.Module) for name, p in _store_names(m)}
    saved = state["params"]
    if {k: tuple(v.shape) for k, v in saved.items()} != {k: tuple(v.shape) for k, v in current.items()}:
        missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
        raise CheckpointError(
            f"checkpoint {path} was written for a different model or guide (missing {missing}, unexpected {extra})"
        )
    with torch.no_grad():
        for name, p in current.items():
            p.copy_(saved[name])
    restore_buffers(state, *[m for m in (model, guide) if isinstance(m, torch.nn.Module)])


def restore_buffers(state: dict, *modules: torch.nn.Module) -> None:
    saved = state.get("buffers", {})
    for i, m in enumerate(modules):
        for name, b in m.named_buffers():
            if name.rpartition(".")[2] == "_like":  # not persistent: not part of the state
                continue
            key = f"{i}.{name}"
            if key not in saved or saved[key].shape != b.shape:
                raise CheckpointError(f"checkpoint has no buffer {name!r} of shape {tuple(b.shape)}")
            b.copy_(saved[key])
