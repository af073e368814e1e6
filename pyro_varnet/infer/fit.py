"""``fit``: SVI training with LRT, schedules, metrics, callbacks and exact checkpoint/resume."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI
from pyro.optim.optim import normalize_param_name
from tqdm.auto import tqdm

from ..poutine import flipout, local_reparameterization, scale_latent
from . import checkpoint as ckpt
from .elbo import DecomposedELBO
from .history import History
from .predict import BATCH_SIZE, MODES, accuracy, evaluating, nll, predict
from .schedules import Schedule, hold_then_decay, kl_warmup, linear_decay

Data = tuple[torch.Tensor, torch.Tensor]


def _check_data(data, what: str) -> Data:
    if isinstance(data, torch.utils.data.TensorDataset):
        data = data.tensors
    if not (isinstance(data, Sequence) and len(data) == 2 and all(torch.is_tensor(t) for t in data)):
        raise TypeError(f"expected {what} as a tuple (x, y) of tensors or a TensorDataset, got {type(data).__name__}")
    x, y = data
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{what}: x has {x.shape[0]} rows and y has {y.shape[0]}; expected the same, > 0")
    return x, y


def _check_batch(x: torch.Tensor, epoch: int, batch: int) -> None:
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:10].tolist()
        raise ValueError(f"epoch {epoch}, batch {batch}: inputs contain NaN or inf (rows {rows} of the batch)")


def site_log_alpha(guide) -> dict[str, float]:
    """Mean finite log α of every guide site (+inf for zero-mean sites; sites whose log α is
    undefined, all NaN, such as WeightNorm angles, are left out)."""
    out = {}
    for name, la in getattr(guide, "log_alpha", dict)().items():
        if torch.isnan(la).all():
            continue
        finite = la[torch.isfinite(la)]
        out[name] = float(finite.mean()) if finite.numel() else math.inf
    return out


def evaluate(
    model, guide, data: Data, modes: Iterable[str], num_samples: int, batch_size: int, lrt: bool = False
) -> dict:
    """Accuracy and NLL of ``data`` in each prediction mode (``lrt``: sample as :func:`predict` does with it)."""
    x, y = data
    out = {}
    for mode in modes:
        lp = predict(model, guide, x, mode=mode, num_samples=num_samples, batch_size=batch_size, lrt=lrt)
        out[f"acc_{mode}"], out[f"nll_{mode}"] = accuracy(lp, y), nll(lp, y)
    return out


def fit(
    model: Callable,
    guide: Callable,
    train_data,
    *,
    epochs: int = 1,
    batch_size: int = 200,
    lr: float = 1e-3,
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
    eval_lrt: bool = False,
    callbacks: Iterable[Callable[[int, dict], object]] = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int | None = None,
    progress: bool = True,
) -> History:
    r"""Train ``guide`` (and the model's deterministic parameters) by SVI on ``train_data``.

    Maximises the mean-field ELBO (VN eq. 5) with Adam, one weight/noise sample per
    object and step, under local reparameterization when the guide's families are all
    Gaussian (``lrt=None``), as the papers do.

    :param train_data: ``(x, y)`` tensors (or a ``TensorDataset``); shuffled every epoch.
    :param int epochs: total number of epochs of the run (also when resuming).
    :param lr_schedule: ``"linear"`` (decay to 0 at ``epochs``; RECIPES), ``"hold-linear"``
        (constant for the first half, then linear to 0: the thesis' schedule), a function of
        the fractional epoch giving a multiplier of ``lr``, or ``None`` (constant).
    :param lr_multipliers: ``{pattern: factor}``: parameters whose name matches the glob
        ``pattern`` (first match wins) learn at ``factor`` × the scheduled lr, e.g.
        ``{"*log_alpha*": 10}`` so that a scalar log α (which Adam moves by about lr per
        step) can travel the ~10 units of a phase transition in a CPU budget.
    :param lrt: ``True``: :func:`~pyro_varnet.poutine.local_reparameterization`; ``False``:
        one weight draw per mini-batch; ``"flipout"``: one draw decorrelated per object by
        :func:`~pyro_varnet.poutine.flipout` (families without an exact LRT: Bernoulli and
        uniform variance layers); ``None``: ``True`` when every family allows it exactly.
    :param lrt_options: keyword arguments of :func:`~pyro_varnet.poutine.local_reparameterization`
        (e.g. ``{"decorrelate_directions": True}`` for weight-normalized layers), plus
        ``lazy_weights`` (default ``True``): do not draw weights that only the LRT ops and an
        analytic KL use.
    :param kl_weight: KL weight β as a function of the fractional epoch; by default 1, or a
        linear warm-up from 0 to 1 over ``warmup_epochs`` when that is > 0.
    :param test_data: ``(x, y)``; accuracies and NLL in ``eval_modes`` every ``eval_every``
        epochs, also on the first ``eval_train_size`` training objects.
    :param bool eval_lrt: evaluate ``"sample"`` / ``"ensemble"`` by local reparameterization
        (independent noise per object and output position) instead of weight draws. For a
        zero-mean *convolution* trained under LRT this is the model that was trained: LRT
        makes every output position's noise independent, while one weight draw shares it
        across positions, so the two differ (VN Table 3 rows with a var conv2).
    :param callbacks: each called as ``cb(epoch, metrics)`` after an epoch.
    :param checkpoint: file written atomically after every epoch.
    :param bool resume: continue from ``checkpoint``; the result equals an uninterrupted run.
    :returns: the :class:`History` of per-epoch metrics.
    """
    x, y = _check_data(train_data, "train_data")
    test = None if test_data is None else _check_data(test_data, "test_data")
    eval_modes = tuple(eval_modes)
    for mode in eval_modes:
        if mode not in MODES:
            raise ValueError(f"unknown evaluation mode {mode!r}; expected some of {MODES}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or eval_every < 1:
        raise ValueError("expected epochs >= 1, batch_size >= 1, lr > 0 and eval_every >= 1")
    if lr_schedule == "linear":
        lr_schedule = linear_decay(epochs)
    elif lr_schedule == "hold-linear":
        lr_schedule = hold_then_decay(epochs)
    elif isinstance(lr_schedule, str):
        raise ValueError(f"expected lr_schedule 'linear', 'hold-linear', a function or None, got {lr_schedule!r}")
    if kl_weight is None:
        kl_weight = kl_warmup(0.0, warmup_epochs) if warmup_epochs > 0 else (lambda t: 1.0)
    if checkpoint is not None and Path(checkpoint).exists() and not resume:
        raise FileExistsError(
            f"checkpoint {checkpoint} exists; pass resume=True (varnet train --resume) "
            "to continue that run, or remove it"
        )
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path")

    if seed is not None:
        pyro.set_rng_seed(seed)
    shuffle = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))) if seed is None else seed)
    modules = _create_params(model, guide, x)
    for m in modules:
        m.train()
    if lrt is None:
        lrt = bool(getattr(guide, "exact_lrt", False))
    if lrt not in (True, False, "flipout"):
        raise ValueError(f"expected lrt True, False, None or 'flipout', got {lrt!r}")
    lrt_opts = dict(lrt_options or {})
    lazy_weights = lrt_opts.pop("lazy_weights", True) and lrt is True

    elbo = DecomposedELBO(num_particles=num_particles)
    mult = _multiplier(lr_multipliers)
    base_lr = {"lr": lr}  # the scheduled lr; optimisers of parameters created later start there too
    optim = pyro.optim.Adam(lambda name: {"lr": base_lr["lr"] * mult(name)})
    svi = SVI(model, guide, optim, elbo)
    history, start_epoch = History(), 0
    if resume and Path(checkpoint).exists():
        state = ckpt.load_checkpoint(checkpoint)
        ckpt.check_compatible(state, checkpoint)
        ckpt.restore_params(state)
        ckpt.restore_buffers(state, *modules)
        history = History(list(state["history"]))
        start_epoch = int(state["epoch"])
        # the saved Adam states carry the last step's lr; the first resumed step has its own
        next_lr = lr * (lr_schedule(start_epoch) if lr_schedule else 1.0)
        for name, opt_state in state["optim"].items():
            for group in opt_state["param_groups"]:
                group["lr"] = next_lr * mult(name)
        optim.set_state(state["optim"])
        ckpt.set_rng_state(state["rng"], shuffle)

    if lrt == "flipout":
        weight_noise = flipout
    elif lrt:
        lazy = {"lazy_sites": _analytic_sites(model, guide, elbo, x, y)} if lazy_weights else {}
        weight_noise = functools.partial(local_reparameterization, **lrt_opts, **lazy)
    else:
        weight_noise = contextlib.nullcontext
    n, steps_per_epoch = x.shape[0], math.ceil(x.shape[0] / batch_size)
    bar = tqdm(total=(epochs - start_epoch) * steps_per_epoch, disable=not progress, unit="step")
    for epoch in range(start_epoch + 1, epochs + 1):
        t0, sums = time.perf_counter(), {"elbo": 0.0, "data": 0.0, "kl": 0.0}
        order = torch.randperm(n, generator=shuffle)
        for b in range(steps_per_epoch):
            t = epoch - 1 + b / steps_per_epoch
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            _check_batch(xb, epoch, b)
            if lr_schedule is not None:
                _set_lr(optim, lr * lr_schedule(t), base_lr, mult)
            with scale_latent(scale=kl_weight(t)), weight_noise():
                loss = svi.step(xb, yb)
            if not math.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}, batch {b}: the loss is {loss}; parameters were not saved")
            for k in sums:
                sums[k] += elbo.last[k]
            bar.update()
            if progress and b % 10 == 0:
                bar.set_postfix(epoch=f"{epoch}/{epochs}", elbo=f"{elbo.last['elbo']:.5g}", refresh=False)
        metrics = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}}
        metrics.update(lr=lr * (lr_schedule(epoch) if lr_schedule else 1.0), kl_weight=kl_weight(epoch))
        metrics.update({f"log_alpha/{k}": v for k, v in site_log_alpha(guide).items()})
        if test is not None and (epoch % eval_every == 0 or epoch == epochs):
            sub = (x[:eval_train_size], y[:eval_train_size])
            metrics.update(
                {
                    f"train_{k}": v
                    for k, v in evaluate(model, guide, sub, eval_modes, eval_samples, eval_batch_size, eval_lrt).items()
                }
            )
            metrics.update(
                {
                    f"test_{k}": v
                    for k, v in evaluate(
                        model, guide, test, eval_modes, eval_samples, eval_batch_size, eval_lrt
                    ).items()
                }
            )
        metrics["seconds"] = time.perf_counter() - t0
        history.append(metrics)
        if checkpoint is not None:
            ckpt.save_checkpoint(
                checkpoint,
                {
                    "epoch": epoch,
                    "params": ckpt.unconstrained_params(),
                    "optim": optim.get_state(),
                    "buffers": ckpt.module_buffers(*modules),
                    "history": history.epochs,
                    "rng": ckpt.rng_state(shuffle),
                },
            )
        for cb in callbacks:
            cb(epoch, metrics)
    bar.close()
    return history


def _analytic_sites(model, guide, elbo: DecomposedELBO, x, y) -> frozenset[str]:
    """Sites whose KL is analytic: only their KL and the LRT ops use them, so under LRT their
    weights need not be drawn. Found by one probe pass that leaves RNG and BatchNorm as they were."""
    with torch.random.fork_rng(), evaluating(model, guide), torch.no_grad():
        elbo.loss(model, guide, x[:2], y[:2])
    return frozenset(elbo.analytic_sites)


def _create_params(model, guide, x: torch.Tensor) -> list[torch.nn.Module]:
    """Create the guide's (and model's) parameters; returns the modules among the two.

    Eval mode, so that BatchNorm statistics are untouched; zeros, so that bad data is
    reported later by batch rather than here.
    """
    with evaluating(model, guide), torch.no_grad():
        guide(torch.zeros_like(x[:2]))
    return [m for m in (model, guide) if isinstance(m, torch.nn.Module)]


def restore(model: Callable, guide: Callable, checkpoint: str | os.PathLike, example_x: torch.Tensor) -> History:
    """Load a trained ``(model, guide)`` from a :func:`fit` checkpoint, for analysis.

    The modules must be built as they were for training (same architecture, guide families
    and prior); ``example_x`` (a batch of inputs) creates the guide's parameters first. The
    param store must not hold other parameters. Returns the run's :class:`History`.
    """
    modules = _create_params(model, guide, example_x)
    state = ckpt.load_checkpoint(checkpoint)
    ckpt.check_compatible(state, checkpoint)
    ckpt.restore_params(state)
    ckpt.restore_buffers(state, *modules)
    return History(list(state["history"]))


def _multiplier(lr_multipliers: Mapping[str, float] | None) -> Callable[[str], float]:
    patterns = dict(lr_multipliers or {})
    for pattern, factor in patterns.items():
        if not (isinstance(factor, int | float) and factor > 0 and math.isfinite(factor)):
            raise ValueError(f"expected a positive finite lr multiplier for {pattern!r}, got {factor!r}")

    def mult(name: str) -> float:
        name = normalize_param_name(name)  # "a$$$b" -> "a.b", as nn.Module.named_parameters()
        return next((float(f) for pattern, f in patterns.items() if fnmatch.fnmatchcase(name, pattern)), 1.0)

    return mult


def _set_lr(optim, value: float, base_lr: dict, mult: Callable[[str], float]) -> None:
    store = pyro.get_param_store()
    for param, opt in optim.optim_objs.items():
        factor = mult(store.param_name(param))
        for group in opt.param_groups:
            group["lr"] = value * factor
    base_lr["lr"] = value
