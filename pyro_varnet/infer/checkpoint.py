"""Atomic checkpoints that restore a run exactly: parameters, optimizer, RNG, history.

Version 2 (written by this library) holds ``model`` and ``guide`` state dicts (the guide's
records the sites it built, so it loads into a freshly built guide), the optimizer's and
scheduler's state dicts, every RNG state and the history. Version 1 (Pyro parameter-store
names) is still read by :func:`~pyro_varnet.infer.restore`, for analysis.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write

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


#: first line of a checkpoint file; the second is ``sha256:<hex digest of the payload>``
MAGIC = b"PYRO-VARNET-CHECKPOINT\n"
#: what a checkpoint of each version must hold
REQUIRED = {1: ("epoch", "params", "history"), 2: ("epoch", "model", "guide", "optimizer", "history", "rng")}


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file in the same folder, fsynced, then
    renamed; the folder fsynced), with a SHA-256 checksum of the serialised payload that
    :func:`load_checkpoint` verifies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    payload = buffer.getvalue()
    atomic_write(path, MAGIC + b"sha256:" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint, raising :class:`CheckpointError` with a reason a person understands if
    it is unusable: missing, truncated, altered (checksum), foreign, of an unknown version, or
    lacking a part."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    blob = path.read_bytes()
    source = io.BytesIO(blob)
    if blob.startswith(MAGIC):
        header, _, payload = blob[len(MAGIC) :].partition(b"\n")
        if not header.startswith(b"sha256:"):
            raise CheckpointError(f"checkpoint {path} is corrupt: its checksum line is damaged")
        expected, actual = header[7:].decode(errors="replace"), hashlib.sha256(payload).hexdigest()
        if expected != actual:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its SHA-256 checksum does not match its contents "
                f"(stored {expected[:12]}..., computed {actual[:12]}...); it was altered or damaged after writing"
            )
        source = io.BytesIO(payload)
    try:  # earlier releases wrote the payload alone (no checksum)
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a pyro-varnet checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-varnet checkpoint")
    if state.get("version") not in READABLE:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this library reads {READABLE}")
    missing = [k for k in REQUIRED[state["version"]] if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no {', '.join(missing)}")
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
