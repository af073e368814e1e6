"""``fit``: SVI training with LRT, schedules, metrics, callbacks and exact checkpoint/resume,
assembled from the loss module, a ``torch.optim`` optimizer and the loop of :mod:`.loop`."""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pyro
import torch

from .. import distributed
from .._checks import check_positive_finite
from .._device import fork_rng, module_device
from ..threads import resolve_threads, use_threads
from . import checkpoint as ckpt
from .batches import as_tensors, check_inputs, gather, num_batches, tensor_loader
from .elbo import DecomposedELBO
from .history import History
from .loop import Callback, FlushSubnormals, Loop, Step, initialize
from .predict import BATCH_SIZE, MODES, _likelihood, check_lrt, evaluating, predict, run_once
from .schedules import Schedule, hold_then_decay, kl_warmup, linear_decay

LR_SCHEDULES = ("linear", "hold-linear")


def site_log_alpha(guide) -> dict[str, float]:
    """Mean finite log α of every guide site (+inf for zero-mean sites; sites whose log α is
    undefined, all NaN, such as WeightNorm angles and noise scales, are left out)."""
    out = {}
    for name, la in getattr(guide, "log_alpha", dict)().items():
        if la.device.type == "meta":  # no values (the device stand-in of the tests)
            out[name] = math.nan
            continue
        if torch.isnan(la).all():
            continue
        finite = la[torch.isfinite(la)]
        out[name] = float(finite.mean()) if finite.numel() else math.inf
    return out


def evaluate(
    model,
    guide,
    data,
    modes: Iterable[str],
    num_samples: int,
    batch_size: int = BATCH_SIZE,
    lrt: bool | str = False,
    shard: bool = False,
) -> dict:
    """The metrics that suit the model's likelihood on ``data`` in each prediction mode,
    ``{"<metric>_<mode>": value}``: accuracy, NLL, ECE and Brier score for classifiers; RMSE,
    NLL and the coverage of central 50/90 % intervals for regressors. ``data`` is ``(x, y)`` or
    an iterable of batches (gathered once); ``lrt``: sample as :func:`predict` does with it;
    ``shard``: in a data-parallel run, each rank predicts its share and the predictions are
    gathered (every rank must call it)."""
    x, y = gather(data, "evaluation data")
    lik = _likelihood(model)
    out = {}
    for mode in modes:
        prediction = predict(
            model, guide, x, mode=mode, num_samples=num_samples, batch_size=batch_size, lrt=lrt, shard=shard
        )
        device = getattr(prediction, "loc", prediction).device
        out.update({f"{k}_{mode}": v for k, v in lik.metrics(prediction, y.to(device)).items()})
    return out


class Evaluate(Callback):
    """Metrics of the test set (and of a training subset) every ``every`` epochs and at the last;
    in a data-parallel run each rank predicts its share of the objects."""

    adds_metrics = True

    def __init__(self, test, train=None, modes=("mean", "sample", "ensemble"), num_samples=20, batch_size=BATCH_SIZE,
                 lrt=False, every=1) -> None:  # fmt: skip
        self.sets = [(name, d) for name, d in (("train", train), ("test", test)) if d is not None]
        self.modes, self.num_samples, self.batch_size, self.lrt, self.every = modes, num_samples, batch_size, lrt, every

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        if epoch % self.every and epoch != loop.epochs:
            return
        module = loop.step.loss_module
        for name, data in self.sets:
            res = evaluate(
                module.model, module.guide, data, self.modes, self.num_samples, self.batch_size, self.lrt, shard=True
            )
            metrics.update({f"{name}_{k}": v for k, v in res.items()})


class SchedulerStep(Callback):
    """Steps an epoch-wise scheduler at the end of each epoch (``ReduceLROnPlateau`` on the loss, -ELBO)."""

    adds_metrics = True  # before the checkpoint, so that the saved state has stepped

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(-metrics["elbo"])
        else:
            self.scheduler.step()


class Checkpoint(Callback):
    """Writes the whole training state atomically to ``path`` after every epoch. In a
    data-parallel run every rank must call it (it gathers each rank's RNG state, ``rng_ranks``);
    rank 0 writes."""

    def __init__(self, path, generator: torch.Generator | None = None, config: Mapping | None = None) -> None:
        self.path, self.generator, self.config = Path(path), generator, dict(config or {})

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        step, module = loop.step, loop.step.loss_module
        rngs = distributed.gather_objects(ckpt.rng_state(self.generator))  # every rank's, for exact resume
        if not distributed.is_main():  # the ranks' modules and optimizers are identical: rank 0 writes
            return
        state = {
            "epoch": epoch,
            **ckpt.module_state(module.model, module.guide),
            "optimizer": step.optimizer.state_dict(),
            "scheduler": getattr(getattr(step, "scheduler_state_target", step.scheduler), "state_dict", dict)(),
            "history": loop.history.epochs,
            "rng": rngs[0],
            "rng_ranks": rngs,
            "config": self.config,
        }
        ckpt.save_checkpoint(self.path, state)


def param_groups(loss_module: torch.nn.Module, lr: float, lr_multipliers: Mapping[str, float] | None) -> list[dict]:
    """Parameter groups of ``loss_module`` (an ``ELBOModule``): one per learning-rate multiplier,
    each with ``lr`` = ``lr`` × multiplier and the multiplier as ``lr_mult``. A parameter's name
    for the patterns is its Pyro name (``net.fc1.bias``, ``guide.sites.net__fc1__weight.theta``)."""
    from ..state import _store_names

    mult = _multiplier(lr_multipliers)
    groups: dict[float, list] = {}
    seen = set()
    for module in (loss_module.model, loss_module.guide):
        if not isinstance(module, torch.nn.Module):
            continue
        for name, p in _store_names(module):
            if id(p) not in seen:
                seen.add(id(p))
                groups.setdefault(mult(name), []).append(p)
    return [{"params": ps, "lr": lr * m, "lr_mult": m} for m, ps in groups.items()]


def _multiplier(lr_multipliers: Mapping[str, float] | None) -> Callable[[str], float]:
    patterns = dict(lr_multipliers or {})
    for pattern, factor in patterns.items():
        check_positive_finite(f"lr multiplier for {pattern!r}", factor)

    def mult(name: str) -> float:
        return next((float(f) for pattern, f in patterns.items() if fnmatch.fnmatchcase(name, pattern)), 1.0)

    return mult


def _name(fn) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


def _compare_config(saved: Mapping, now: Mapping, overrides: set, path) -> dict:
    """The settings that differ between a checkpoint's run and this one, ``{key: (saved, now)}``;
    raises :class:`CheckpointError` for any not in ``overrides``."""
    saved = {"world_size": 1, **saved}  # written before data-parallel runs existed: one process
    changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
    refused = {k: v for k, v in changed.items() if k not in overrides}
    if refused:
        what = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in refused.items())
        raise ckpt.CheckpointError(
            f"checkpoint {path} was trained with {what}; to change these, say so: "
            f"overrides={sorted(refused)} (varnet train --override {','.join(sorted(refused))})"
        )
    return changed


def _set_base_lr(step, lr: float) -> None:
    """A new base learning rate for a resumed run (each group keeps its multiplier and the
    scheduler's position)."""
    sched = step.scheduler_state_target
    for i, group in enumerate(step.optimizer.param_groups):
        factor = group["lr"] / group["initial_lr"] if group.get("initial_lr") else 1.0
        group["initial_lr"] = lr * group.get("lr_mult", 1.0)
        group["lr"] = group["initial_lr"] * factor
        if sched is not None and hasattr(sched, "base_lrs"):
            sched.base_lrs[i] = group["initial_lr"]


def _schedule(lr_schedule, epochs: int) -> Schedule | None:
    if lr_schedule == "linear":
        return linear_decay(epochs)
    if lr_schedule == "hold-linear":
        return hold_then_decay(epochs)
    if isinstance(lr_schedule, str):
        raise ValueError(f"expected lr_schedule 'linear', 'hold-linear', a function or None, got {lr_schedule!r}")
    return lr_schedule


def _check_args(epochs, batch_size, lr, eval_every, eval_modes, checkpoint, resume, scheduler_interval) -> None:
    for mode in eval_modes:
        if mode not in MODES:
            raise ValueError(f"unknown evaluation mode {mode!r}; expected some of {MODES}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or eval_every < 1:
        raise ValueError("expected epochs >= 1, batch_size >= 1, lr > 0 and eval_every >= 1")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"expected scheduler_interval 'epoch' or 'step', got {scheduler_interval!r}")
    if checkpoint is not None and Path(checkpoint).exists() and not resume:
        raise FileExistsError(
            f"checkpoint {checkpoint} exists; pass resume=True (varnet train --resume) "
            "to continue that run, or remove it"
        )
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path")


def _train_batches(train_data, batch_size, generator, device, lik, model=None):
    """A loader of the training data; tensors are checked once and moved to ``device`` once. In
    a data-parallel run, tensors (the same on every rank) are split global batch by global
    batch, and a user's loader must shard the data itself."""
    rank, world_size = distributed.world()
    tensors = as_tensors(train_data, "train_data")
    if tensors is None:
        first = train_data[0] if isinstance(train_data, list | tuple) and train_data else None
        if (
            isinstance(train_data, str | bytes)
            or not isinstance(train_data, Iterable)
            or (first is not None and not (isinstance(first, list | tuple) and len(first) == 2))
        ):
            raise TypeError(
                f"expected train_data as a tuple (x, y) of tensors, a TensorDataset or an iterable of (x, y) "
                f"batches such as a DataLoader, got {type(train_data).__name__}"
            )
        if world_size > 1:
            distributed.check_loader(train_data, world_size)
            dataset = getattr(train_data, "dataset", None)
            n = len(dataset) if hasattr(dataset, "__len__") else None
            distributed.check_num_data(model, n, world_size)
        return train_data
    x, y = tensors
    check_inputs(x, "train_data")
    lik.check_targets(y)
    if world_size > 1:
        distributed.check_same_data(x, "train_data")
        distributed.check_num_data(model, x.shape[0], world_size)
        if batch_size < world_size:
            raise ValueError(f"batch_size {batch_size} is the global batch: it must be >= the {world_size} processes")
    if device is not None and x.device != device:
        x, y = x.to(device), y.to(device)
    return tensor_loader(x, y, batch_size, generator, rank, world_size)


def fit(
    model: Callable,
    guide: Callable,
    train_data,
    *,
    epochs: int = 1,
    batch_size: int = 200,
    lr: float = 1e-3,
    optimizer=None,
    scheduler=None,
    scheduler_interval: str = "epoch",
    lr_schedule: str | Schedule | None = None,
    lr_multipliers: Mapping[str, float] | None = None,
    kl_weight: Schedule | None = None,
    warmup_epochs: float = 0.0,
    lrt: bool | str | None = None,
    lrt_options: Mapping | None = None,
    num_particles: int = 1,
    test_data=None,
    eval_modes: Iterable[str] = ("mean", "sample", "ensemble"),
    eval_every: int = 1,
    eval_samples: int = 20,
    eval_train_size: int = 2000,
    eval_batch_size: int = BATCH_SIZE,
    eval_lrt: bool | str = False,
    callbacks: Iterable = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    config: Mapping | None = None,
    overrides: Iterable[str] = (),
    threads: int | str | None = None,
    sync_batchnorm: bool | None = None,
    rank_noise: str | None = None,
) -> History:
    r"""Train ``guide`` (and the model's deterministic parameters) by SVI on ``train_data``.

    Maximises the mean-field ELBO (VN eq. 5) with a ``torch.optim`` optimizer (Adam by
    default), one weight/noise sample per object and step, under local reparameterization
    when the guide's families are all Gaussian (``lrt=None``), as the papers do. The pieces —
    the loss module (:class:`DecomposedELBO` ``(model, guide)``), the optimizer and
    :class:`~pyro_varnet.infer.loop.Loop` with its callbacks — can be used on their own.

    :param train_data: ``(x, y)`` tensors or a ``TensorDataset`` (moved to the device once,
        shuffled every epoch as ``DataLoader(..., shuffle=True, generator)`` would with a
        generator seeded by ``seed``), or any iterable of ``(x, y)`` batches — a
        ``DataLoader`` with any sampler, batch size and workers (each batch is checked for
        NaN/inf on the host and moved to the device).
    :param int epochs: total number of epochs of the run (also when resuming).
    :param optimizer: ``None`` (Adam with ``lr``), a ``torch.optim.Optimizer`` over the model's
        and guide's parameters (call :func:`~pyro_varnet.infer.loop.initialize` first so
        that the guide's parameters exist), or a factory ``groups -> Optimizer`` that receives
        the parameter groups (with ``lr`` × multiplier each).
    :param scheduler: a learning-rate scheduler, or a factory ``optimizer -> scheduler``; stepped
        every epoch (``ReduceLROnPlateau``: on -ELBO) or, with ``scheduler_interval="step"``,
        every step.
    :param lr_schedule: ``"linear"`` (decay to 0 at ``epochs``, as the VN authors),
        ``"hold-linear"`` (constant for the first half, then linear to 0: the thesis'
        schedule), a function of the fractional epoch giving a multiplier of ``lr``, or
        ``None`` (constant). A per-step ``LambdaLR``; not together with ``scheduler``.
    :param lr_multipliers: ``{pattern: factor}``: parameters whose Pyro name matches the glob
        ``pattern`` (first match wins) learn at ``factor`` × the scheduled lr, e.g.
        ``{"*log_alpha*": 10}`` so that a scalar log α (which Adam moves by about lr per
        step) can travel the ~10 units of a phase transition in a CPU budget. They become
        the optimizer's parameter groups.
    :param lrt: ``True``: :func:`~pyro_varnet.poutine.local_reparameterization`; ``False``:
        one weight draw per mini-batch; ``"flipout"``: one draw decorrelated per object by
        :func:`~pyro_varnet.poutine.flipout` (families without an exact LRT: Bernoulli and
        uniform variance layers); ``None``: ``True`` when every family allows it exactly.
    :param lrt_options: keyword arguments of :func:`~pyro_varnet.poutine.local_reparameterization`
        (e.g. ``{"decorrelate_directions": True}``), plus ``lazy_weights`` (default ``True``):
        the ELBO does not draw weights that only the LRT ops and an analytic KL use.
    :param kl_weight: KL weight β as a function of the fractional epoch; by default 1, or a
        linear warm-up from 0 to 1 over ``warmup_epochs`` when that is > 0.
    :param test_data: ``(x, y)`` or batches; the metrics of the likelihood in ``eval_modes`` every
        ``eval_every`` epochs (and after the last), also on the first ``eval_train_size``
        training objects (in the data set's order). Checked before training starts.
    :param eval_lrt: evaluate ``"sample"`` / ``"ensemble"`` by local reparameterization
        (independent noise per object and output position) instead of weight draws. For a
        zero-mean *convolution* trained under LRT this is the model that was trained: LRT
        makes every output position's noise independent, while one weight draw shares it
        across positions, so the two differ (VN Table 3 rows with a var conv2). ``"dense"``:
        weight draws, with per-object noise in Gaussian dense layers only (the same
        predictive per object, faster; see :func:`predict`).
    :param callbacks: :class:`~pyro_varnet.infer.loop.Callback` objects, or callables
        ``cb(epoch, metrics)`` called after each epoch (after the checkpoint is written).
    :param checkpoint: file written atomically after every epoch: model and guide state dicts,
        optimizer and scheduler states, every RNG state, the history.
    :param bool resume: continue from ``checkpoint``; the result equals an uninterrupted run.
    :param int seed: seeds Pyro/torch/NumPy/Python before anything random (the guide's
        initial values, the data order) is drawn: the same seed gives the same run.
    :param device: move model and guide there (default: where the model's parameters are);
        batches follow. :param dtype: convert model and guide to this floating dtype;
        floating inputs follow the model's dtype.
    :param config: more settings of the run (JSON values, e.g. the CLI's model, prior and guide
        names) stored in the checkpoint with fit's own (``lr``, ``batch_size``, ``lr_schedule``,
        ``lr_multipliers``, ``lrt``, ``num_particles``, ``warmup_epochs``, ``seed``) and compared
        on ``resume``: a difference raises :class:`~pyro_varnet.infer.CheckpointError` unless
        its key is in ``overrides``; an accepted change is recorded in the next epoch's
        ``override`` metric. (Guide families and priors are checked by the state dicts.)
    :param threads: CPU threads for the run (``torch.set_num_threads``, restored afterwards);
        ``"auto"``: ``OMP_NUM_THREADS`` or the cores other processes leave idle
        (:func:`pyro_varnet.threads.auto_threads`); ``None``: torch's setting.
    :param sync_batchnorm: in a data-parallel run, convert the model's BatchNorm layers to
        ``SyncBatchNorm`` (statistics of the global batch); ``None``: yes on CUDA, and on CPU
        (where it cannot run) an error for a model with BatchNorm unless ``False`` is passed.
    :param rank_noise: in a data-parallel run, ``"shared"`` (every rank draws rank 0's weights:
        one draw per step, as one process) or ``"independent"`` (per-object noise drawn
        independently per rank); ``None``: shared for direct sampling (``lrt`` resolving to
        ``False``), independent under local reparameterization and flipout.
    :returns: the :class:`History` of per-epoch metrics (``seconds`` is wall-clock time).

    **Data-parallel runs.** When a ``torch.distributed`` process group of W > 1 processes is
    initialised (``torchrun``, SLURM, ``varnet train --devices N``), every rank calls ``fit``
    with the same arguments and data: ``batch_size`` is the global batch, each rank takes its
    share of every global batch (:class:`~pyro_varnet.distributed.ShardedBatches`; a
    ``DataLoader`` must carry a ``DistributedSampler``); the guide is built on the first batch
    and the loss wrapped in ``DistributedDataParallel`` (rank 0's parameters broadcast,
    gradients averaged); the model's ``num_data`` stays the global N, so the KL is counted
    once; the recorded losses are means over the ranks; progress and checkpoints come from
    rank 0, and a checkpoint holds every rank's RNG state, so resume is exact; evaluation
    shards the test set and gathers the predictions.
    """
    resolve_threads(threads)  # checked before anything starts
    rank, world_size = distributed.world()
    distributed.check_rank_noise(rank_noise)
    eval_modes = tuple(eval_modes)
    _check_args(epochs, batch_size, lr, eval_every, eval_modes, checkpoint, resume, scheduler_interval)
    check_lrt(eval_lrt)
    if test_data is not None and eval_samples < 1:
        raise ValueError(f"expected eval_samples >= 1, got {eval_samples}")
    schedule_name = lr_schedule if lr_schedule is None or isinstance(lr_schedule, str) else _name(lr_schedule)
    lr_schedule = _schedule(lr_schedule, epochs)
    if lr_schedule is not None and scheduler is not None:
        raise ValueError("pass either lr_schedule or scheduler, not both")
    if kl_weight is None:
        kl_weight = kl_warmup(0.0, warmup_epochs) if warmup_epochs > 0 else (lambda t: 1.0)
    lrt_opts = dict(lrt_options or {})
    lazy_weights = lrt_opts.pop("lazy_weights", True)
    run_config = {
        "lr": lr,
        "batch_size": batch_size if as_tensors(train_data, "train_data") is not None else None,
        "lr_schedule": schedule_name,
        "lr_multipliers": dict(lr_multipliers or {}),
        "lrt": lrt,
        "lrt_options": {k: v for k, v in lrt_opts.items() if isinstance(v, bool | int | float | str)},
        "num_particles": num_particles,
        "warmup_epochs": warmup_epochs,
        "seed": seed,
        "world_size": world_size,
        **dict(config or {}),
    }
    overrides = set(overrides)
    if not overrides <= set(run_config):
        unknown = sorted(overrides - set(run_config))
        raise ValueError(f"unknown settings to override {unknown}; known: {sorted(run_config)}")

    if seed is not None:
        pyro.set_rng_seed(seed)
    for m in (model, guide):
        if isinstance(m, torch.nn.Module) and (device is not None or dtype is not None):
            m.to(device=device, dtype=dtype)
    device = module_device(model, guide) if device is None else torch.device(device)
    if world_size > 1 and distributed.check_batchnorm(model, device or torch.device("cpu"), sync_batchnorm):
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the model's BatchNorm children
    lik = _likelihood(model)
    seed_for_order = int(torch.randint(0, 2**62, (1,))) if seed is None else seed
    seed_for_order = distributed.broadcast_object(seed_for_order)  # one data order for all ranks
    generator = torch.Generator().manual_seed(seed_for_order)
    loader = _train_batches(train_data, batch_size, generator, device, lik, model)
    test = train_subset = None
    if test_data is not None:
        test = gather(test_data, "test_data")
        check_inputs(test[0], "test_data")
        lik.check_targets(test[1])
        if eval_train_size > 0:
            train_subset = gather(train_data, "train_data", limit=eval_train_size)

    loss_module = DecomposedELBO(num_particles=num_particles, lrt=lrt, lrt_options=lrt_opts, lazy_weights=lazy_weights)(
        model, guide
    )
    step = _LazyStep(loss_module, lr, lr_multipliers, optimizer, scheduler, scheduler_interval, lr_schedule, kl_weight)
    step.data_parallel = world_size > 1
    step.rank_noise = rank_noise
    step.steps_per_epoch = num_batches(loader)
    if lr_schedule is not None and not step.steps_per_epoch:
        raise ValueError("lr_schedule needs training data with a length (len(train_data))")
    history, start_epoch, changed = History(), 0, {}
    if resume and Path(checkpoint).exists():
        state = ckpt.load_checkpoint(checkpoint)
        if state["version"] < 2:
            raise ckpt.CheckpointError(
                f"checkpoint {checkpoint} has version {state['version']}: it can be restored for analysis "
                "(pyro_varnet.infer.restore) but not resumed by this version"
            )
        changed = _compare_config(state.get("config", {}), run_config, overrides, checkpoint)
        ckpt.load_modules(state, checkpoint, model, guide)
        step.build()
        try:
            step.optimizer.load_state_dict(state["optimizer"])
            if step.scheduler_state_target is not None and state.get("scheduler"):
                step.scheduler_state_target.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint}: its optimizer state does not fit ({e})") from e
        history, start_epoch = History(list(state["history"])), int(state["epoch"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        ckpt.set_rng_state(ranks[min(rank, len(ranks) - 1)], generator)
        if rank >= len(ranks):  # more processes than the run had (world_size overridden): own streams
            pyro.set_rng_seed(distributed.rank_seed(torch.randint(0, 2**32, ()), rank))
        if "lr" in changed:
            _set_base_lr(step, lr)
    for m in (model, guide):
        if isinstance(m, torch.nn.Module):
            m.train()

    pending = {"override": "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())} if changed else {}
    cbs: list = [FlushSubnormals()]  # keeps a trained model's steps as fast as a fresh one's
    if test is not None:
        cbs.append(Evaluate(test, train_subset, eval_modes, eval_samples, eval_batch_size, eval_lrt, eval_every))
    cbs.append(_EpochScheduler(step))
    if checkpoint is not None:
        cbs.append(Checkpoint(checkpoint, generator, run_config))
    cbs.extend(callbacks)

    def epoch_metrics() -> dict:
        group = step.optimizer.param_groups[0]
        out = {
            "lr": group["lr"] / group.get("lr_mult", 1.0),
            "kl_weight": kl_weight(loop.epoch),
            **{f"log_alpha/{k}": v for k, v in site_log_alpha(guide).items()},
            **pending,
        }
        pending.clear()  # the change is recorded once, in the first epoch after it
        return out

    if test is not None:
        step.more_targets = [("test_data targets", test[1])]
    main, reduce = distributed.is_main(), distributed.all_mean if world_size > 1 else None
    loop = Loop(step, loader, epochs, cbs, start_epoch, history, device, progress and main, epoch_metrics, reduce)
    with use_threads(threads):
        return loop.run()


class _LazyStep(Step):
    """A :class:`Step` that creates the guide's parameters from its first batch and only then
    the optimizer and scheduler (so that they see every parameter)."""

    def __init__(self, loss_module, lr, lr_multipliers, optimizer, scheduler, interval, lr_schedule, kl_weight):
        super().__init__(loss_module, None, None, kl_weight)
        self.lr, self.lr_multipliers, self.interval = lr, lr_multipliers, interval
        self.make_optimizer, self.make_scheduler, self.lr_schedule = optimizer, scheduler, lr_schedule
        self.epoch_scheduler, self.steps_per_epoch = None, None
        self.data_parallel, self.rank_noise = False, None
        _multiplier(lr_multipliers)  # checks the factors now

    @property
    def scheduler_state_target(self):
        return self.scheduler or self.epoch_scheduler

    def build(self) -> None:
        """The optimizer and scheduler over the (now existing) parameters."""
        groups = param_groups(self.loss_module, self.lr, self.lr_multipliers)
        if self.make_optimizer is None:
            opt = torch.optim.Adam(groups, lr=self.lr)
        elif isinstance(self.make_optimizer, torch.optim.Optimizer):
            opt = self.make_optimizer
            known = {id(p) for g in opt.param_groups for p in g["params"]}
            missing = [p for g in groups for p in g["params"] if id(p) not in known]
            if missing:
                raise ValueError(
                    f"the optimizer given to fit misses {len(missing)} of the model's and guide's parameters; "
                    "call pyro_varnet.infer.initialize(model, guide, x[:2]) before building it, or pass a factory "
                    "(e.g. optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1))"
                )
        else:
            opt = self.make_optimizer(groups)
        self.optimizer = opt
        sched = self.make_scheduler
        if sched is not None and not hasattr(sched, "step"):
            sched = sched(opt)
        if self.lr_schedule is not None:
            spe, schedule = self.steps_per_epoch, self.lr_schedule
            sched, self.interval = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: schedule(k / spe)), "step"
        if self.interval == "step":
            self.scheduler = sched
        else:
            self.epoch_scheduler = sched

    def __call__(self, x, y, t=0.0):
        if self.optimizer is None:
            model, guide = self.loss_module.model, self.loss_module.guide
            initialize(model, guide, torch.zeros_like(x[:2]), y[:2])
            self.check_targets(model, guide, x, [("train_data targets", y), *self.more_targets])
            fresh = True
            self.build()
        else:
            fresh = False
        if self.data_parallel and self.forward is None:
            # the parameters exist: broadcast them; a fresh run then seeds the ranks' noise (a resumed
            # run has its RNGs from the checkpoint)
            self.forward = distributed.wrap(self.loss_module, torch.zeros_like(x[:2]), y[:2], device=x.device)
            if fresh:
                guide = self.loss_module.guide
                distributed.seed_ranks(self.rank_noise or distributed.default_rank_noise(self.loss_module.elbo, guide))
        return super().__call__(x, y, t)

    more_targets: list = []

    @staticmethod
    def check_targets(model, guide, x, targets) -> None:
        """Targets against the network's outputs (a label beyond the classes), before the first
        step: one pass with the RNG forked and the modules in eval mode, so nothing changes."""
        with fork_rng((x,), {}, model, guide), evaluating(model, guide), torch.no_grad():
            out = run_once(model, guide, x[:2])
        lik = _likelihood(model)
        for what, y in targets:
            lik.check_outputs(out, y, what)


class _EpochScheduler(SchedulerStep):
    """Steps the epoch-wise scheduler that ``_LazyStep`` builds at the first batch."""

    def __init__(self, step: _LazyStep) -> None:
        self.step = step

    @property
    def scheduler(self):
        return self.step.epoch_scheduler

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        if self.scheduler is not None:
            super().on_epoch_end(loop, epoch, metrics)


def restore(
    model: Callable, guide: Callable, checkpoint: str | os.PathLike, example_x: torch.Tensor | None = None
) -> History:
    """Load a trained ``(model, guide)`` from a :func:`fit` checkpoint, for analysis.

    The modules must be built as they were for training (same architecture, guide families
    and prior). A version-2 checkpoint rebuilds the guide's sites itself; a version-1
    checkpoint (earlier releases) needs ``example_x`` (a batch of inputs) to create them.
    Returns the run's :class:`History`.
    """
    state = ckpt.load_checkpoint(checkpoint)
    if state["version"] >= 2:
        ckpt.load_modules(state, checkpoint, model, guide)
    else:
        if example_x is None:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint} has version 1: pass example_x to restore it")
        initialize(model, guide, torch.zeros_like(example_x[:2]))
        ckpt.load_v1(state, checkpoint, model, guide)
    return History(list(state["history"]))
