"""Atomic checkpoints that restore a run exactly: parameters, optimizer, RNG, history."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pyro
import torch

FORMAT = "pyro-varnet-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this model and guide."""


def rng_state(generator: torch.Generator | None = None) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "generator": None if generator is None else generator.get_state(),
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy(), *np_state[2:]))
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def module_buffers(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Buffers (e.g. BatchNorm running statistics) that the param store does not hold."""
    return {f"{i}.{name}": b.detach().clone() for i, m in enumerate(modules) for name, b in m.named_buffers()}


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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this library reads {VERSION}")
    return state


def param_shapes() -> dict[str, tuple]:
    store = pyro.get_param_store()
    return {name: tuple(store._params[name].shape) for name in store.keys()}


def check_compatible(state: dict, path) -> None:
    """The checkpoint's parameters must be exactly those of the current param store."""
    saved = {k: tuple(v.shape) for k, v in state["params"].items()}
    current = param_shapes()
    if saved != current:
        missing = sorted(set(current) - set(saved))
        extra = sorted(set(saved) - set(current))
        changed = sorted(k for k in set(saved) & set(current) if saved[k] != current[k])
        raise CheckpointError(
            f"checkpoint {path} was written for a different model or guide "
            f"(missing {missing}, unexpected {extra}, other shapes {changed})"
        )


def restore_params(state: dict) -> None:
    """Copy the saved unconstrained parameters into the param store's tensors, bit for bit.

    In place, so that modules holding those tensors (a ``PyroModule``'s ``nn.Parameter`` is
    the param store's tensor) see the restored values.
    """
    store = pyro.get_param_store()
    with torch.no_grad():
        for name, value in state["params"].items():
            store._params[name].copy_(value)


def unconstrained_params() -> dict[str, torch.Tensor]:
    store = pyro.get_param_store()
    return {name: store._params[name].detach().clone() for name in store.keys()}


def restore_buffers(state: dict, *modules: torch.nn.Module) -> None:
    saved = state.get("buffers", {})
    for i, m in enumerate(modules):
        for name, b in m.named_buffers():
            key = f"{i}.{name}"
            if key not in saved or saved[key].shape != b.shape:
                raise CheckpointError(f"checkpoint has no buffer {name!r} of shape {tuple(b.shape)}")
            b.copy_(saved[key])
