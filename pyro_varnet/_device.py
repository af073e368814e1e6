"""Where new tensors go: the device and dtype of a model's parameters or of its inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def _floating(tensors: Iterable) -> torch.Tensor | None:
    return next((t for t in tensors if torch.is_tensor(t) and torch.is_floating_point(t)), None)


def module_tensor(module) -> torch.Tensor | None:
    """The first floating parameter or buffer of ``module`` (``None`` for other callables or none)."""
    if not isinstance(module, torch.nn.Module):
        return None
    found = _floating(module.parameters())
    return found if found is not None else _floating(module.buffers())


def reference_tensor(model, args: Iterable = (), kwargs: Mapping | None = None) -> torch.Tensor:
    """A 0-dim tensor on the device and in the dtype that tensors made for ``model`` should have:
    those of its first floating parameter or buffer, else of its first floating argument,
    else CPU and the default dtype."""
    found = module_tensor(model)
    if found is None:
        found = _floating([*args, *(kwargs or {}).values()])
    return torch.zeros(()) if found is None else found.new_zeros(())


def module_device(*modules) -> torch.device | None:
    """The device of the first of ``modules`` that has a floating parameter or buffer."""
    for m in modules:
        t = module_tensor(m)
        if t is not None:
            return t.device
    return None


def module_dtype(*modules) -> torch.dtype | None:
    """The floating dtype of the first of ``modules`` that has a floating parameter or buffer."""
    for m in modules:
        t = module_tensor(m)
        if t is not None:
            return t.dtype
    return None


def fork_rng(args: Iterable = (), kwargs: Mapping | None = None, *modules):
    """``torch.random.fork_rng`` over the CPU and every CUDA device that the tensors in
    ``args`` / ``kwargs`` or the ``modules``' parameters live on."""
    tensors = [t for t in (*args, *(kwargs or {}).values()) if torch.is_tensor(t)]
    for m in modules:
        t = module_tensor(m)
        if t is not None:
            tensors.append(t)
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    return torch.random.fork_rng(devices=cuda)
