"""Training with Lightning (``pip install pyro-varnet[lightning]``): a ``LightningModule``
around model + guide + ELBO, so that Lightning's strategies (``"ddp"`` on CPUs and GPUs, many
nodes), precision settings, loggers and checkpoints drive a pyro-varnet model.

::

    import lightning.pytorch as L
    from pyro_varnet.lightning import VarnetModule, global_batches

    module = VarnetModule(model, guide, example=(x[:2], y[:2]), lr=1e-3)
    loader = global_batches(x, y, batch_size=200, seed=0)   # the global batch, split between ranks
    L.Trainer(max_epochs=10, accelerator="cpu", devices=2, strategy="ddp").fit(module, loader)

The guide is built in :meth:`VarnetModule.setup` (before Lightning wraps the module in
DDP and before a checkpoint is restored), so its parameters are broadcast from rank 0, the
optimizer sees them, and checkpoints load into freshly made modules. Every rank's RNG state
travels in the checkpoint (``"pyro_varnet_rng"``) and :func:`global_batches`' shuffling
generator is Lightning-stateful, so a resumed run continues the same data order and noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from . import distributed
from .infer.batches import check_inputs, tensor_loader
from .infer.checkpoint import rng_state, set_rng_state
from .infer.elbo import DecomposedELBO
from .infer.fit import param_groups
from .infer.loop import initialize
from .infer.predict import BATCH_SIZE, MODES, predict
from .poutine import scale_latent

try:
    import lightning.pytorch as L
except ImportError as e:  # the extra is not installed
    raise ImportError(
        "pyro_varnet.lightning needs Lightning: pip install 'pyro-varnet[lightning]' (or lightning>=2.0)"
    ) from e


class GlobalBatches:
    """The iterable :func:`global_batches` returns: this process's part of every shuffled global
    batch, the rank looked up when iterated (inside the process group Lightning starts). Not a
    ``DataLoader``, so Lightning neither re-shards it nor replaces its sampler;
    :class:`VarnetModule` saves its shuffling generator in checkpoints (Lightning restores a
    loader's state only when resuming in the middle of an epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.x, self.y, self.batch_size, self.shuffle_generator = x, y, batch_size, generator

    def _loader(self):
        rank, world = distributed.world()
        return tensor_loader(self.x, self.y, self.batch_size, self.shuffle_generator, rank, world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # lazily: Lightning calls iter() once to check the loader, and creating the DataLoader's
        # iterator draws from the shuffling generator (which would shift a resumed run's order)
        yield from self._loader()

    def __len__(self) -> int:
        return len(self._loader())


def _batch_loaders(loaders) -> list[GlobalBatches]:
    """The :class:`GlobalBatches` among the train loaders given to a trainer (one, a list or a dict)."""
    if isinstance(loaders, GlobalBatches):
        return [loaders]
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, list | tuple):
        return [dl for item in loaders for dl in _batch_loaders(item)]
    return []


def global_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> GlobalBatches:
    """Shuffled global batches of ``batch_size`` objects of ``(x, y)``, each split between the
    processes of a data-parallel run exactly as :func:`~pyro_varnet.infer.fit` splits them
    (:func:`~pyro_varnet.infer.tensor_loader`): W processes see in each step the objects one
    process sees, so ``batch_size`` (and the learning rate) need not change with the number
    of devices. With one process the order is ``DataLoader(TensorDataset(x, y), batch_size,
    shuffle=True, generator=torch.Generator().manual_seed(seed))``'s."""
    check_inputs(x, "x")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows and y has {y.shape[0]}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    return GlobalBatches(x, y, batch_size, torch.Generator().manual_seed(seed))


class VarnetModule(L.LightningModule):
    """A pyro-varnet model and guide trained by SVI under Lightning.

    ``training_step`` returns the negative ELBO of the batch (VN eq. 5; the model's data
    plate scales it to ``num_data``, which must be the global N) and logs ``elbo``, ``data``
    and ``kl`` per epoch (means over the ranks). ``validation_step`` logs the likelihood's
    metrics in ``val_modes``; ``predict_step`` returns :func:`~pyro_varnet.infer.predict`'s
    output in ``predict_mode``.

    :param model: a pyro-varnet model (``Classifier``, ``Regressor``, a converted network).
    :param guide: its guide (``NetworkGuide``), built in :meth:`setup` from ``example``.
    :param example: ``(x, y)`` of at least one object (the shapes and dtypes the guide's sites
        need), or ``x`` alone.
    :param float lr: Adam's learning rate; ``lr_multipliers`` as in :func:`~pyro_varnet.infer.fit`.
    :param lrt: as in :func:`~pyro_varnet.infer.fit` (``None``: local reparameterization when
        every family allows it exactly).
    :param kl_weight: a function of the fractional epoch giving the KL weight β (default 1).
    :param rank_noise: ``"shared"`` / ``"independent"`` / ``None`` as in ``fit``: after
        Lightning's DDP broadcast, every rank continues rank 0's random stream or its own.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        guide: torch.nn.Module,
        example,
        *,
        lr: float = 1e-3,
        lr_multipliers: Mapping[str, float] | None = None,
        lrt: bool | str | None = None,
        lrt_options: Mapping | None = None,
        num_particles: int = 1,
        kl_weight=None,
        rank_noise: str | None = None,
        val_modes=("mean",),
        predict_mode: str = "ensemble",
        num_samples: int = 20,
    ) -> None:
        super().__init__()
        distributed.check_rank_noise(rank_noise)
        for mode in (*val_modes, predict_mode):
            if mode not in MODES:
                raise ValueError(f"unknown prediction mode {mode!r}; expected one of {MODES}")
        self.model, self.guide = model, guide
        x, y = example if isinstance(example, tuple | list) else (example, None)
        self.example = (x[:2].detach().cpu(), None if y is None else y[:2].detach().cpu())
        self.lr, self.lr_multipliers, self.kl_weight = lr, dict(lr_multipliers or {}), kl_weight or (lambda t: 1.0)
        self.elbo = DecomposedELBO(num_particles=num_particles, lrt=lrt, lrt_options=dict(lrt_options or {}))
        self.rank_noise, self.val_modes, self.predict_mode, self.num_samples = (
            rank_noise, tuple(val_modes), predict_mode, num_samples
        )  # fmt: skip
        self._rng_restored = False

    # building -------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Create the guide's parameters (on the CPU, before Lightning moves and wraps the
        module, restores a checkpoint or builds the optimizer)."""
        x, y = self.example
        args = (torch.zeros_like(x),) if y is None else (torch.zeros_like(x), y)
        initialize(self.model, self.guide, *args)

    def configure_optimizers(self):
        return torch.optim.Adam(param_groups(self, self.lr, self.lr_multipliers), lr=self.lr)

    def on_fit_start(self) -> None:
        """After Lightning's DDP wrap has broadcast rank 0's parameters: the ranks' random streams
        (unless a checkpoint restored them)."""
        if distributed.is_distributed() and not self._rng_restored:
            distributed.seed_ranks(self.rank_noise or distributed.default_rank_noise(self.elbo, self.guide))

    # steps ------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        spe = self.trainer.num_training_batches
        t = self.current_epoch + (batch_idx / spe if spe and spe != float("inf") else 0.0)
        with scale_latent(scale=self.kl_weight(t)):
            loss = self.elbo.differentiable_loss(self.model, self.guide, x, y)
        last = self.elbo.last_tensors
        for key in ("elbo", "data", "kl"):
            self.log(key, last[key], on_step=False, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        from .infer.predict import _likelihood

        x, y = batch
        lik = _likelihood(self.model)
        for mode in self.val_modes:
            prediction = predict(self.model, self.guide, x, mode=mode, num_samples=self.num_samples)
            for name, value in lik.metrics(prediction, y).items():
                self.log(f"val_{name}_{mode}", value, sync_dist=True, batch_size=x.shape[0])

    def predict_step(self, batch, batch_idx: int):
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return predict(self.model, self.guide, x, mode=self.predict_mode, num_samples=self.num_samples,
                       batch_size=BATCH_SIZE)  # fmt: skip

    # checkpoints ------------------------------------------------------------------------------
    def _fit_loaders(self):
        """The train loaders given to ``Trainer.fit`` (the objects themselves, not Lightning's
        wrappers), or the module's own ``train_dataloader``'s."""
        source = getattr(getattr(self._trainer, "fit_loop", None), "_data_source", None)
        return getattr(source, "instance", None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every rank's RNG state (Lightning saves none), gathered on every rank (rank 0 writes),
        and the shuffling generators of :func:`global_batches` loaders."""
        checkpoint["pyro_varnet_rng"] = distributed.gather_objects(rng_state())
        loaders = _batch_loaders(self._fit_loaders())
        checkpoint["pyro_varnet_loaders"] = [dl.shuffle_generator.get_state() for dl in loaders]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming a fit (a trainer attached): this rank's RNG state and the loaders' order.
        ``load_from_checkpoint`` (no trainer) restores the weights alone."""
        if self._trainer is None:
            return
        states = checkpoint.get("pyro_varnet_rng")
        if states:
            rank = distributed.world()[0]
            set_rng_state(states[min(rank, len(states) - 1)])
            self._rng_restored = True
        saved = checkpoint.get("pyro_varnet_loaders") or []
        # Lightning restores the module before it first iterates the loaders (and prefetches a
        # batch before any epoch hook), so the order is restored here, on the loader given to fit
        loaders = _batch_loaders(self._fit_loaders())
        if len(loaders) != len(saved):
            raise RuntimeError(
                f"the checkpoint holds the order of {len(saved)} global_batches loader(s), this run trains on "
                f"{len(loaders)} given to Trainer.fit; pass the same loaders to resume"
            )
        for dl, state in zip(loaders, saved):
            dl.shuffle_generator.set_state(state)


__all__ = ["GlobalBatches", "VarnetModule", "global_batches"]
