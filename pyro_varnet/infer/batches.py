"""Training and evaluation data: tensors or any iterable of ``(x, y)`` batches, moved to a device."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, TensorDataset, default_collate

Batch = tuple[torch.Tensor, torch.Tensor]


def as_tensors(data, what: str) -> Batch | None:
    """``(x, y)`` if ``data`` is a pair of tensors or a ``TensorDataset`` of two, else ``None``."""
    if isinstance(data, TensorDataset):
        data = data.tensors
    if isinstance(data, Sequence) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"{what}: x has {x.shape[0]} rows and y has {y.shape[0]}; expected the same, > 0")
        return x, y
    return None


def check_inputs(x: torch.Tensor, where: str) -> None:
    """Raise a ``ValueError`` naming the first rows of ``x`` that hold NaN or inf (one host sync)."""
    if not torch.is_floating_point(x):
        raise TypeError(f"{where}: expected floating point inputs, got {x.dtype}")
    if x.device.type == "meta":
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:10].tolist()
        raise ValueError(f"{where}: inputs contain NaN or inf (rows {rows})")


def tensor_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Shuffled mini-batches of ``(x, y)``, drawn as
    ``DataLoader(TensorDataset(x, y), batch_size, shuffle=True, generator=generator)`` draws them
    (the same order), but indexed a batch at a time instead of object by object. With
    ``world_size`` W > 1 each global batch is split between the ranks
    (:class:`~pyro_varnet.distributed.ShardedBatches`) and this rank's part is returned."""
    from ..distributed import ShardedBatches

    sampler = ShardedBatches(RandomSampler(range(x.shape[0]), generator=generator), batch_size, rank, world_size)
    # the loader draws its workers' base seed from `generator` too, as a shuffling DataLoader does
    return DataLoader(TensorDataset(x, y), sampler=sampler, batch_size=None, generator=generator)


def num_batches(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:  # an IterableDataset without __len__
        return None


def unpack(batch, where: str) -> Batch:
    if isinstance(batch, dict):
        batch = (batch.get("x"), batch.get("y"))
    if not (isinstance(batch, Sequence) and len(batch) == 2 and all(torch.is_tensor(t) for t in batch)):
        raise TypeError(f"{where}: expected batches (x, y) of two tensors, got {type(batch).__name__}")
    x, y = batch
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: x has {x.shape[0]} rows and y has {y.shape[0]}")
    return x, y


def to_device(x: torch.Tensor, y: torch.Tensor, device, dtype) -> Batch:
    """``x`` (and floating ``y``) on ``device`` in the floating ``dtype``; asynchronous from pinned memory."""
    non_blocking = x.device.type == "cpu" and x.is_pinned()
    x = x.to(device=device, dtype=dtype if x.is_floating_point() else None, non_blocking=non_blocking)
    y = y.to(device=device, dtype=dtype if y.is_floating_point() else None, non_blocking=non_blocking)
    return x, y


def gather(data, what: str, limit: int | None = None) -> Batch:
    """All of ``data`` (tensors, or batches of an iterable) as one ``(x, y)`` on the host's side,
    at most ``limit`` objects, in the data set's own order (a loader's dataset is read
    sequentially, so no shuffling RNG is used)."""
    tensors = as_tensors(data, what)
    if tensors is not None:
        x, y = tensors
        return (x[:limit], y[:limit]) if limit else (x, y)
    if isinstance(data, DataLoader) and not isinstance(data.dataset, IterableDataset):
        # the same objects in index order (a loader built with batch_size=None collates nothing)
        collate = data.collate_fn if data.batch_size else default_collate
        # its own generator: iterating a DataLoader draws a seed, which must not come from the global RNG
        data = DataLoader(
            data.dataset, batch_size=data.batch_size or 256, collate_fn=collate, generator=torch.Generator()
        )
    if not isinstance(data, Iterable):
        raise TypeError(f"expected {what} as (x, y) tensors, a TensorDataset or an iterable of (x, y) batches")
    xs, ys, n = [], [], 0
    for batch in data:
        x, y = unpack(batch, what)
        xs.append(x)
        ys.append(y)
        n += x.shape[0]
        if limit and n >= limit:
            break
    if not xs:
        raise ValueError(f"{what} holds no batches")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit else (x, y)


__all__ = ["as_tensors", "check_inputs", "gather", "num_batches", "tensor_loader", "to_device", "unpack"]
