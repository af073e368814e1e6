"""Data-parallel training over ``torch.distributed``: what :func:`~pyro_varnet.infer.fit` does
when a process group is initialised (``torchrun``, SLURM, ``varnet train --devices N``).

The pieces, each usable on its own:

- :class:`ShardedBatches`: the single-process run's shuffled global batches (the same
  permutation on every rank), each split between the ranks, so that W processes see exactly
  the objects one process sees in the same step.
- :func:`wrap`: ``DistributedDataParallel`` around the loss module (an ``ELBOModule``) once
  the guide's parameters exist; it broadcasts rank 0's parameters and buffers and averages
  gradients in DDP's fixed bucket order.
- :func:`seed_ranks`: after the broadcast, every rank continues rank 0's random stream
  (``"shared"`` noise: one weight draw per step, as one process draws it) or its own stream
  (``"independent"``: per-object noise — local reparameterization, flipout).
- :func:`all_mean`, :func:`gather_rows`, :func:`gather_objects`: the collectives the loop,
  the evaluation and the checkpoints use.

Why the ELBO stays right: the data plate scales a rank's log-likelihood by
``num_data / local_batch``, DDP averages the W gradients, so the gradient is the global
batch's ``num_data / B`` times the sum over all B objects — the single-process gradient —
and the KL (identical on every rank) is counted once. ``num_data`` must be the global N.
"""

from __future__ import annotations

import io
import math
import os
import socket
import tempfile
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler

from ._checks import check_choice

RANK_NOISE = ("shared", "independent")


class DistributedError(RuntimeError):
    """A data-parallel run set up in a way that would silently train the wrong thing."""


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialised."""
    return world()[1] > 1


def is_main() -> bool:
    """Rank 0 (or no process group): the process that prints and writes files."""
    return world()[0] == 0


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group from the variables ``torchrun`` sets (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when they are there and no group exists;
    ``backend``: ``"nccl"`` when CUDA is available, else ``"gloo"``. Returns whether a group
    with more than one process is initialised afterwards."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return is_distributed()


def _collective_device(t: torch.Tensor | None = None) -> torch.device:
    """Where a collective's tensors must live: NCCL needs this rank's CUDA device, gloo the host
    (or the tensor's own device)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device if t is not None and t.device.type == "cpu" else torch.device("cpu")


class ShardedBatches(BatchSampler):
    """Shuffled global batches of ``batch_size`` objects, rank ``rank`` of ``world_size``
    taking every W-th object of each (sizes differ by at most one).

    The global batches are those of ``BatchSampler(RandomSampler(range(n), generator=g),
    batch_size)`` — with ``world_size`` 1 exactly the single-process order — so W ranks seeded
    alike see, step by step, the objects one process sees. A final global batch smaller than
    W is left out (every rank must take the same number of steps). The permutation comes from
    ``generator``, whose state the checkpoint saves: resume continues the same order.
    """

    def __init__(self, sampler, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(sampler, batch_size, drop_last=False)
        if not (0 <= rank < world_size):
            raise ValueError(f"expected 0 <= rank < world_size, got rank {rank} of {world_size}")
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            if len(batch) >= self.world_size:
                yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.sampler)
        last = n % self.batch_size
        return n // self.batch_size + (1 if last >= self.world_size else 0)


def check_num_data(model, n_global: int | None, world_size: int) -> None:
    """Raise :class:`DistributedError` if the model's ``num_data`` is the size of one rank's
    shard instead of the global N (the data term would be W times too small)."""
    num_data = getattr(model, "num_data", None)
    if num_data is None or n_global is None or num_data == n_global:
        return
    if num_data in (n_global // world_size, math.ceil(n_global / world_size)):
        raise DistributedError(
            f"the model's num_data is {num_data}, one rank's share of the {n_global} training objects; "
            f"set it to the global N ({n_global}): each rank scales its batch by num_data / local batch and "
            "the gradients are averaged, so the ELBO is that of the whole training set"
        )


def check_loader(loader, world_size: int) -> None:
    """A user's ``DataLoader`` must hand each rank its own shard (a ``DistributedSampler`` or a
    sampler with ``num_replicas``), or every rank would train on every object."""
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        for s in (obj, getattr(obj, "sampler", None)):
            if getattr(s, "num_replicas", getattr(s, "world_size", None)) == world_size:
                return
    if hasattr(loader, "dataset") and isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return  # an iterable dataset shards itself (get_worker_info / its own rank logic)
    raise DistributedError(
        f"in a run over {world_size} processes the training DataLoader needs a sampler that splits the data "
        "between them: DataLoader(dataset, batch_size=B // world_size, sampler=DistributedSampler(dataset)) — "
        "or pass (x, y) tensors and fit splits each global batch itself"
    )


def check_batchnorm(model, device: torch.device, sync_batchnorm: bool | None) -> bool:
    """Whether to convert the model's BatchNorm layers to ``SyncBatchNorm`` (statistics over the
    global batch). ``None``: yes on CUDA; on CPU, where ``SyncBatchNorm`` cannot run, a model
    with BatchNorm needs an explicit ``sync_batchnorm=False`` (per-rank statistics)."""
    has_bn = isinstance(model, torch.nn.Module) and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )
    if not has_bn:
        return False
    if sync_batchnorm is None and device.type == "cuda":
        return True
    if sync_batchnorm and device.type != "cuda":
        raise DistributedError(f"SyncBatchNorm runs on GPUs only; this run is on {device}: pass sync_batchnorm=False")
    if sync_batchnorm is None:
        raise DistributedError(
            f"the model has BatchNorm layers and the run is on {device}, where SyncBatchNorm cannot run: each rank "
            "would normalise by its own share of the batch, so W processes would not train what one process "
            "trains. Pass sync_batchnorm=False (varnet train --sync-batchnorm off) to accept per-rank statistics, "
            "or run on GPUs"
        )
    return bool(sync_batchnorm)


def _guide_built(guide) -> bool:
    sites = getattr(guide, "sites", None)
    return sites is None or len(sites) > 0


def wrap(loss_module: torch.nn.Module, *example, device: torch.device | None = None) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``loss_module`` (an ``ELBOModule``): rank 0's parameters
    and buffers are broadcast now, gradients averaged in every backward.

    The guide's parameters must exist first, since DDP registers the parameters it sees now and
    a guide built later would train its sites on each rank alone: pass ``example`` arguments
    (e.g. ``x[:2], y[:2]``) and the guide is built from them
    (:func:`~pyro_varnet.infer.initialize`, with the random state forked), or build it before;
    a guide without sites and without ``example`` is refused."""
    from ._device import fork_rng
    from .infer.loop import initialize

    model, guide = getattr(loss_module, "model", None), getattr(loss_module, "guide", None)
    if example:
        with fork_rng(example, {}, model, guide):  # draws nothing from the run's random streams
            initialize(model, guide, *example)
    elif not _guide_built(guide):
        raise DistributedError(
            "the guide has no parameters yet: pass example arguments (wrap(loss, x[:2], y[:2])) or call "
            "pyro_varnet.infer.initialize(model, guide, x[:2], y[:2]) before wrapping the loss in "
            "DistributedDataParallel, or the ranks train unsynchronised copies"
        )
    params = [p for p in loss_module.parameters() if p.requires_grad]
    if not params:
        raise DistributedError("the loss module has no trainable parameters to average")
    device = device or params[0].device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # static_graph: the set of parameters the ELBO uses is the same in every step (DDP finds the
    # unused ones, e.g. of sites a handler never draws, in the first step)
    return torch.nn.parallel.DistributedDataParallel(loss_module, device_ids=ids, static_graph=True)


def _dumps(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # tensors inside objects travel as torch serialises them
    return buffer.getvalue()


def _loads(blob: bytes):
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (tensors inside come back on the CPU)."""
    if not is_distributed():
        return obj
    box = [_dumps(obj)]
    dist.broadcast_object_list(box, src=src)
    return _loads(box[0])


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank (tensors inside come back on the CPU)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, _dumps(obj))
    return [_loads(b) for b in out]


def check_rank_noise(rank_noise, allow_none: bool = True) -> None:
    """``rank_noise`` is ``"shared"``, ``"independent"`` (or ``None``: chosen from the ELBO)."""
    if rank_noise is None and allow_none:
        return
    check_choice("rank_noise", rank_noise, RANK_NOISE)


def default_rank_noise(elbo, guide) -> str:
    """Shared for one weight draw per step (direct sampling), independent per-object noise otherwise."""
    lrt = elbo.lrt if elbo.lrt is not None else bool(getattr(guide, "exact_lrt", False))
    return "shared" if lrt is False else "independent"


def rank_seed(base: int, rank: int) -> int:
    """A 32-bit seed of rank ``rank``'s own stream derived from ``base`` (NumPy takes 32-bit seeds)."""
    return (int(base) + rank * 0x9E3779B9) % 2**32


def seed_ranks(rank_noise: str) -> None:
    """After the parameters' broadcast: every rank takes rank 0's random state (``"shared"``:
    one weight draw per step, drawn alike on all ranks — the single-process draw), or its own
    stream derived from it (``"independent"``: per-object noise, independent between ranks)."""
    from pyro.util import set_rng_seed

    from .infer.checkpoint import rng_state, set_rng_state

    check_rank_noise(rank_noise, allow_none=False)
    rank, _ = world()
    set_rng_state(broadcast_object(rng_state()))
    if rank_noise == "independent":
        base = int(broadcast_object(int(torch.randint(0, 2**62, ()))))
        set_rng_seed(rank_seed(base, rank))


def all_mean(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean over ranks of each (scalar) tensor, in one all-reduce."""
    if not is_distributed() or not tensors:
        return tensors
    keys = list(tensors)
    first = tensors[keys[0]]
    flat = torch.stack([tensors[k].reshape(()).to(torch.float64) for k in keys]).to(_collective_device(first))
    dist.all_reduce(flat)
    flat = (flat / dist.get_world_size()).to(first.device)
    return {k: flat[i] for i, k in enumerate(keys)}


def shard(n: int) -> tuple[slice, list[int]]:
    """This rank's contiguous slice of ``n`` rows and every rank's row count."""
    rank, w = world()
    sizes = [n // w + (1 if r < n % w else 0) for r in range(w)]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank]), sizes


def gather_rows(t: torch.Tensor, sizes: list[int], dim: int = 0) -> torch.Tensor:
    """The ranks' pieces of a tensor (``sizes[r]`` rows along ``dim`` on rank r) concatenated in
    rank order, on every rank."""
    if not is_distributed():
        return t
    target = max(sizes)
    pad = list(t.shape)
    pad[dim] = target - t.shape[dim]
    local = torch.cat([t, t.new_zeros(pad)], dim) if pad[dim] else t
    device = _collective_device(t)
    local = local.to(device).contiguous()
    parts = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(parts, local)
    return torch.cat([p.narrow(dim, 0, s) for p, s in zip(parts, sizes)], dim).to(t.device)


def leave(finished: bool = True) -> None:
    """Destroy the default process group. When this rank ``finished`` its work, first wait for
    every other rank at a barrier: the group's store lives in another process (rank 0, or
    torchrun's agent), and a rank that tore the group down while another still used it aborted
    (SIGABRT, "terminate called without an active exception") in CI, under ``spawn`` and under
    ``varnet train --devices 2``. After a failure no barrier: the other ranks may never come."""
    try:
        if finished:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, fn, nprocs, port, backend, threads, args, folder) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nprocs)
    )
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group(backend, rank=rank, world_size=nprocs)
    ok = False
    try:
        result = fn(*args)
        torch.save(result, os.path.join(folder, f"{rank}.pt"))
        ok = True
    finally:
        leave(ok)


def spawn(fn, nprocs: int, *args, backend: str = "gloo", threads: int | None = 1) -> list:
    """Run ``fn(*args)`` in ``nprocs`` new processes on this machine, joined in one process group
    (``backend`` gloo: CPU), and return each rank's result in rank order (results travel by
    ``torch.save``). ``fn`` must be importable by name (defined at a module's top level).
    ``threads``: CPU threads per process. For tests, benchmarks and notebooks that import
    ``fn`` from a module (a function defined in a notebook cell cannot be imported by the new
    processes); training scripts use ``torchrun``."""
    if nprocs < 1:
        raise ValueError(f"expected nprocs >= 1, got {nprocs}")
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(
            _worker, args=(fn, nprocs, _free_port(), backend, threads, args, folder), nprocs=nprocs, join=True
        )
        return [torch.load(os.path.join(folder, f"{r}.pt"), weights_only=False) for r in range(nprocs)]


def check_same_data(x: torch.Tensor, what: str) -> None:
    """Every rank must pass the same training tensors (fit splits them itself): compares the
    shape and a cheap fingerprint across ranks."""
    if not is_distributed():
        return
    flat = x.reshape(x.shape[0], -1)
    probe = flat[:: max(1, x.shape[0] // 64)].double()
    mine = (tuple(x.shape), float(probe.sum()), float(probe.abs().sum()))
    theirs = gather_objects(mine)
    if any(t != theirs[0] for t in theirs):
        raise DistributedError(
            f"{what}: the ranks hold different tensors {[t[0] for t in theirs]}; pass every rank the same (x, y) — "
            "fit splits each global batch between the ranks — or a DataLoader with a DistributedSampler"
        )


__all__ = [
    "DistributedError",
    "RANK_NOISE",
    "ShardedBatches",
    "all_mean",
    "broadcast_object",
    "check_batchnorm",
    "check_loader",
    "check_num_data",
    "check_same_data",
    "gather_objects",
    "gather_rows",
    "init_from_env",
    "is_distributed",
    "is_main",
    "leave",
    "seed_ranks",
    "shard",
    "spawn",
    "world",
    "wrap",
]
