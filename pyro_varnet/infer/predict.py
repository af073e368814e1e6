"""Predictions of a trained network in the paper's four modes (VN Tables 1-2, Fig. 3)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from pyro import poutine

from .._checks import check_choice
from ..poutine import local_reparameterization, mean_propagation, zero_mean_approximation

MODES = ("mean", "sample", "ensemble", "zero_mean")


@contextlib.contextmanager
def evaluating(*objects):
    """Put the :class:`torch.nn.Module` among ``objects`` (model, guide, ...) in eval mode
    (BatchNorm running statistics) and restore their mode after; other callables are ignored."""
    modules = [m for m in objects if isinstance(m, torch.nn.Module)]
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def run_once(model: Callable, guide: Callable, x: torch.Tensor) -> torch.Tensor:
    """One pass: draw from the guide, replay the model on ``x``; returns the model's output."""
    guide_trace = poutine.trace(guide).get_trace(x)
    return poutine.replay(model, guide_trace)(x)


def one_sample(model: Callable, guide: Callable, x: torch.Tensor, batch_size: int = 1000):
    """Log-probabilities of ``x`` under ONE weight draw shared by every batch, and that draw's
    guide trace (VN Fig. 4: the accuracy of individual weight samples)."""
    guide_trace = poutine.trace(guide).get_trace(x[:1])
    lp = torch.cat([torch.log_softmax(poutine.replay(model, guide_trace)(xb), -1) for xb in torch.split(x, batch_size)])
    return lp, guide_trace


def _ensemble(model, guide, x, num_samples, lrt, max_objects, batch_size) -> torch.Tensor:
    """log (1/K) Σ_k softmax(f(x, W_k)) — VN eq. 2 — as log-probabilities.

    By direct sampling each of the K weight draws is made once and applied to every batch
    of ``x`` (K networks), so the guide is sampled K times, not K × batches."""
    total = None
    if lrt:
        # every object-copy gets its own noise under LRT: K copies of the batch are K samples
        chunk = max(1, min(num_samples, max_objects // max(1, x.shape[0])))
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            with local_reparameterization():
                logits = run_once(model, guide, x.repeat(k, *([1] * (x.dim() - 1))))
            lp = torch.log_softmax(logits, -1).reshape(k, x.shape[0], -1)
            part = torch.logsumexp(lp, 0)
            total = part if total is None else torch.logaddexp(total, part)
            done += k
    else:
        for _ in range(num_samples):
            lp = one_sample(model, guide, x, batch_size)[0]
            total = lp if total is None else torch.logaddexp(total, lp)
    return total - math.log(num_samples)


@torch.no_grad()
def predict(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    mode: str = "ensemble",
    num_samples: int = 20,
    batch_size: int = 1000,
    lrt: bool = False,
    max_objects: int = 20000,
) -> torch.Tensor:
    r"""Predictive log-probabilities, shape (N, classes), of a model that returns logits.

    :param str mode: ``"mean"`` — mean propagation, the weight scaling rule (VN eq. 3);
        ``"sample"`` — one weight sample for the whole set; ``"ensemble"`` — test-time
        averaging of the softmax over ``num_samples`` weight samples (VN eq. 2);
        ``"zero_mean"`` — the ensemble with every Gaussian site replaced by its zero-mean
        approximation (VN §4.3).
    :param int batch_size: objects per forward pass.
    :param bool lrt: sample the ensemble by local reparameterization (each copy of an
        object gets independent noise, all K samples in one pass). Off by default: K direct
        weight samples cost K plain forward passes, while LRT runs a mean and a variance op
        per layer; both give the same Monte Carlo estimate of the predictive per object.
    :param int max_objects: upper bound on objects × samples in one pass under LRT.
    """
    check_choice("prediction mode", mode, MODES)
    if mode in ("ensemble", "zero_mean") and num_samples < 1:
        raise ValueError(f"expected num_samples >= 1, got {num_samples}")
    with evaluating(model, guide):
        if mode == "sample":
            return one_sample(model, guide, x, batch_size)[0]
        if mode == "mean":

            def one(xb):
                with mean_propagation():
                    return torch.log_softmax(run_once(model, guide, xb), -1)

        else:
            handler = zero_mean_approximation() if mode == "zero_mean" else contextlib.nullcontext()
            if not lrt:  # the K weight draws are shared by all batches
                with handler:
                    return _ensemble(model, guide, x, num_samples, lrt, max_objects, batch_size)

            def one(xb):
                with handler:
                    return _ensemble(model, guide, xb, num_samples, lrt, max_objects, batch_size)

        outs = [one(xb) for xb in torch.split(x, batch_size)]
    return torch.cat(outs)


def accuracy(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to ``y``."""
    return float((log_probs.argmax(-1) == y).float().mean())


def nll(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of ``y`` under the predictive distribution."""
    return float(-log_probs.gather(-1, y[:, None]).mean())
