"""The training loop: one SVI step, the loop over batches and epochs, and its callbacks.

:func:`~pyro_varnet.infer.fit` assembles these for the common case; each piece also works on
its own::

    loss = DecomposedELBO(lrt=True)(model, guide)      # an ELBOModule: forward = -ELBO
    initialize(model, guide, x[:2], y[:2])            # the guide's parameters exist now
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    loop = Loop(Step(loss, optimizer), loader, epochs=10, callbacks=[Evaluate(test, modes=("ensemble",))])
    history = loop.run()
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable

import pyro
import torch
from tqdm.auto import tqdm

from .._device import module_device, module_dtype
from .._numerics import subnormal_mask
from ..poutine import scale_latent
from .batches import check_inputs, num_batches, to_device, unpack
from .history import History
from .predict import evaluating
from .schedules import Schedule

#: how often (in steps) a run on an accelerator checks its loss for NaN and refreshes progress
SYNC_EVERY = 50


@torch.no_grad()
def initialize(model, guide, *args, **kwargs) -> None:
    """Create the guide's (lazy) parameters from one call on example arguments, in eval mode
    (BatchNorm statistics untouched), without gradients."""
    with evaluating(model, guide):
        guide(*args, **kwargs)


def _sync(t: torch.Tensor) -> float:
    """A tensor's value on the host (NaN on the meta device, which has no values)."""
    return math.nan if t.device.type == "meta" else float(t)


class Step:
    """One optimisation step of ``loss_module`` (an ``ELBOModule``): ``step(x, y, t)`` runs the
    loss under the KL weight ``kl_weight(t)``, back-propagates and steps the optimizer (and a
    per-step scheduler). Returns the step's decomposition as detached tensors.

    The first step runs with Pyro's validation as configured; later steps without it (its
    checks force host syncs per site), since the model's structure does not change.

    ``forward``: what computes the loss, if not ``loss_module`` itself — e.g. its
    ``DistributedDataParallel`` wrapper (:func:`pyro_varnet.distributed.wrap`), which averages
    the gradients over the ranks during ``backward``.
    """

    def __init__(
        self,
        loss_module: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler=None,
        kl_weight: Schedule | None = None,
        clip_norm: float | None = None,
        forward: torch.nn.Module | None = None,
    ) -> None:
        self.loss_module, self.optimizer, self.scheduler = loss_module, optimizer, scheduler
        self.forward = forward
        self.kl_weight = kl_weight or (lambda t: 1.0)
        self.clip_norm = clip_norm
        self.steps = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, t: float = 0.0) -> dict[str, torch.Tensor]:
        validate = pyro.infer.util.is_validation_enabled() and self.steps == 0
        beta = self.kl_weight(t)  # at 1 no handler: one messenger less for every site of every step
        with pyro.validation_enabled(validate), scale_latent(scale=beta) if beta != 1 else contextlib.nullcontext():
            loss = (self.forward or self.loss_module)(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.loss_module.parameters(), self.clip_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return {"loss": loss.detach(), **self.loss_module.last_tensors}


class Callback:
    """Hooks of :class:`Loop`. A plain callable ``cb(epoch, metrics)`` is also accepted and
    called at the end of every epoch.

    ``adds_metrics = True``: the callback adds entries to the epoch's metrics; such callbacks
    run before the epoch is recorded in the history (and so before checkpoints)."""

    adds_metrics = False

    def on_fit_start(self, loop: Loop) -> None:
        pass

    def on_step_end(self, loop: Loop, batch: int) -> None:
        pass

    def on_epoch_end(self, loop: Loop, epoch: int, metrics: dict) -> None:
        pass

    def on_fit_end(self, loop: Loop) -> None:
        pass


class Interrupted(Exception):
    """Training stopped on a signal after a finished step; the last checkpoint (written at the
    end of the last finished epoch) is intact, so ``resume`` continues exactly."""

    def __init__(self, signum: int, epoch: int) -> None:
        self.signum, self.epoch = signum, epoch
        super().__init__(f"stopped by {signal.Signals(signum).name} during epoch {epoch}")

    def __reduce__(self):
        # pickled with its own arguments: a worker of ``varnet compare --processes`` sends it to
        # the parent (the default pickles only the message, and unpickling then fails)
        return (type(self), (self.signum, self.epoch))

    @property
    def exit_status(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StopOnSignal(Callback):
    """Turn SIGINT / SIGTERM into a clean stop: the step under way finishes, nothing is written
    half-way, and :class:`Interrupted` is raised (the handlers are restored first). A second
    signal while a step is still running stops at once (``KeyboardInterrupt``)."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals, self.received, self._old = tuple(signals), None, {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:
            self.restore()
            raise KeyboardInterrupt
        self.received = signum

    def on_fit_start(self, loop) -> None:
        self.received = None
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._old = {s: signal.signal(s, self._handler) for s in self.signals}

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def on_step_end(self, loop, batch) -> None:
        if self.received is not None:
            self.restore()
            raise Interrupted(self.received, loop.epoch)

    def on_fit_end(self, loop) -> None:
        self.restore()


class _Plain(Callback):
    def __init__(self, fn: Callable[[int, dict], object]) -> None:
        self.fn = fn

    def on_epoch_end(self, loop, epoch, metrics) -> None:
        self.fn(epoch, metrics)


@torch.no_grad()
def flush_subnormals_(tensors: Iterable[torch.Tensor]) -> int:
    """Set every subnormal entry (0 < |v| < the dtype's smallest normal number) of the floating
    ``tensors`` to 0, in place; returns how many there were.

    Trained variance networks collect them: a zero-mean σ whose data gradient is proportional
    to itself decays geometrically under Adam and passes through the subnormal range for
    thousands of steps, and Adam's moments of weights that stop receiving gradient decay the
    same way (a trained LeNet-5 had 45 836 subnormal σ in fc1 and as many in Adam's state).
    Arithmetic on subnormals runs in microcode on x86 CPUs (the Adam update here took 3.3x as
    long with 11 % of its entries subnormal), and torch's flush-denormal mode reaches only the
    calling thread. Removing them changes no value by more than ~1e-38: a σ below it is
    clamped to the same value either way and contributes nothing next to the LRT's 1e-16.
    """
    count = 0
    for t in tensors:
        if not (torch.is_tensor(t) and t.is_floating_point()) or t.device.type == "meta":
            continue
        small = subnormal_mask(t)
        if t.device.type == "cpu":  # counting syncs on an accelerator: only on the host
            count += int(small.sum())
        t.masked_fill_(small, 0)
    return count


class FlushSubnormals(Callback):
    """Every ``every`` steps of an epoch, set the subnormal entries of the parameters and the
    optimizer's state to 0 (:func:`flush_subnormals_`): a trained model's steps stay as fast as
    a fresh one's. Keyed on the batch index within the epoch, so a resumed run flushes at the
    same steps as an uninterrupted one. :func:`~pyro_varnet.infer.fit` always adds it."""

    def __init__(self, every: int = 100) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"expected every to be a positive int, got {every!r}")
        self.every = every
        self.flushed = 0

    def on_step_end(self, loop, batch: int) -> None:
        if (batch + 1) % self.every:
            return
        step = loop.step
        tensors = list(step.loss_module.parameters())
        if step.optimizer is not None:
            tensors += [v for state in step.optimizer.state.values() for v in state.values()]
        self.flushed += flush_subnormals_(tensors)


class Loop:
    """Iterate ``data`` (any iterable of ``(x, y)`` batches) for ``epochs`` epochs, calling
    ``step`` on each batch moved to the model's device and dtype, recording per-epoch means of
    the ELBO decomposition in a :class:`History`, and calling ``callbacks``.

    :param Step step: the optimisation step.
    :param data: the training batches (a ``DataLoader``, any re-iterable of ``(x, y)``).
    :param int epochs: the last epoch (a resumed loop starts after ``start_epoch``).
    :param callbacks: :class:`Callback` objects or plain ``cb(epoch, metrics)`` callables.
    :param set_epoch: called with each epoch before it starts (e.g. a ``DistributedSampler``'s).
    :param device: where batches go (default: the model's device).
    :param bool progress: a tqdm progress bar.
    :param reduce: combines a dict of this process's loss sums with the other processes' (in a
        data-parallel run: their mean, :func:`pyro_varnet.distributed.all_mean`), so that the
        loss checks and the recorded metrics are those of the global batch on every rank.
    """

    def __init__(
        self,
        step: Step,
        data: Iterable,
        epochs: int,
        callbacks: Iterable = (),
        start_epoch: int = 0,
        history: History | None = None,
        device=None,
        progress: bool = True,
        epoch_metrics: Callable[[], dict] | None = None,
        reduce: Callable[[dict], dict] | None = None,
    ) -> None:
        self.step, self.data, self.epochs = step, data, epochs
        self.callbacks = [cb if isinstance(cb, Callback) else _Plain(cb) for cb in callbacks]
        self.start_epoch, self.history = start_epoch, history or History()
        module = step.loss_module
        self.device = torch.device(device) if device is not None else module_device(module)
        self.dtype = module_dtype(module)
        self.progress = progress
        self.epoch_metrics = epoch_metrics or (lambda: {})
        self.reduce = reduce or (lambda sums: sums)
        self.epoch = start_epoch
        self.steps_per_epoch = num_batches(data)

    def _batches(self, epoch: int):
        sampler = getattr(self.data, "sampler", None)
        for obj in (sampler, getattr(sampler, "sampler", None), getattr(self.data, "batch_sampler", None)):
            if hasattr(obj, "set_epoch"):  # DistributedSampler: a new order every epoch
                obj.set_epoch(epoch)
        for b, batch in enumerate(self.data):
            x, y = unpack(batch, f"epoch {epoch}, batch {b}")
            if x.device.type == "cpu":  # checked on the host: no device sync
                check_inputs(x, f"epoch {epoch}, batch {b}")
            yield b, *to_device(x, y, self.device, self.dtype)

    def _check_loss(self, total: torch.Tensor, epoch: int, where: str) -> None:
        value = _sync(total)
        if not math.isfinite(value) and total.device.type != "meta":
            raise FloatingPointError(f"epoch {epoch}, {where}: the loss is {value}; parameters were not saved")

    def run(self) -> History:
        """Train from ``start_epoch + 1`` to ``epochs``; returns the history."""
        for cb in self.callbacks:
            cb.on_fit_start(self)
        spe = self.steps_per_epoch
        total = None if spe is None else (self.epochs - self.start_epoch) * spe
        on_host = self.device is None or self.device.type == "cpu"
        bar = tqdm(total=total, disable=not self.progress, unit="step")
        try:
            for epoch in range(self.start_epoch + 1, self.epochs + 1):
                self.epoch, t0, sums, count = epoch, time.perf_counter(), None, 0
                for b, x, y in self._batches(epoch):
                    t = epoch - 1 + (b / spe if spe else 0.0)
                    out = {k: v.double() for k, v in self.step(x, y, t).items()}  # sums in float64
                    sums = out if sums is None else {k: sums[k] + v for k, v in out.items()}
                    count += 1
                    bar.update()
                    for cb in self.callbacks:
                        cb.on_step_end(self, b)
                    if on_host or count % SYNC_EVERY == 0:
                        loss = self.reduce({"loss": out["loss"] if on_host else sums["loss"]})["loss"]
                        self._check_loss(loss, epoch, f"batch {b}")
                        if self.progress and count % 10 == 0:
                            elbo = f"{_sync(out['elbo']):.5g}"
                            bar.set_postfix(epoch=f"{epoch}/{self.epochs}", elbo=elbo, refresh=False)
                if count == 0:
                    raise ValueError(f"epoch {epoch}: the training data gave no batches")
                sums = self.reduce(sums)
                self._check_loss(sums["loss"], epoch, f"batches up to {count - 1}")
                metrics = {"epoch": epoch, **{k: _sync(v) / count for k, v in sums.items() if k != "loss"}}
                if "data" in metrics and "kl" in metrics:
                    metrics["elbo"] = metrics["data"] - metrics["kl"]
                extra = dict(metrics)  # metric callbacks (evaluation, epoch schedulers) run first ...
                for cb in self.callbacks:
                    if cb.adds_metrics:
                        cb.on_epoch_end(self, epoch, extra)
                metrics.update(self.epoch_metrics())  # ... so that the learning rate is the stepped one
                metrics.update(extra)
                metrics["seconds"] = time.perf_counter() - t0
                self.history.append(metrics)
                for cb in self.callbacks:
                    if not cb.adds_metrics:
                        cb.on_epoch_end(self, epoch, metrics)
        finally:
            bar.close()
            for cb in self.callbacks:
                if isinstance(cb, StopOnSignal):
                    cb.restore()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history
