"""Predictions of a trained network in the paper's four modes (VN Tables 1-2, Fig. 3)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from pyro import poutine

from .._checks import check_choice
from ..poutine import local_reparameterization, mean_propagation, stacked_weights, zero_mean_approximation

MODES = ("mean", "sample", "ensemble", "zero_mean")

#: default rows per forward pass of :func:`predict` and the functions built on it. A stacked
#: LeNet-5 pass of 400 rows (20 objects x 20 samples) has an 18 MB conv1 activation, which the
#: C allocator hands back from pass to pass; at 500 rows (23 MB blocks) glibc returns the
#: freed blocks to the system after each pass and page-faults them back in the next (2.7 M
#: minor faults per 5 000 test images x 20 samples, a quarter of the time). Measured 20-sample
#: ensemble / 20 plain passes: 0.88 (1 thread), 0.94 (2 threads) at 400 rows; 0.97 / 1.09 at
#: 200; 1.32 at 500 (benchmarks/results/2026-11-24-session5.md).
BATCH_SIZE = 400


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


def _replayed(model, guide_trace, x, batch_size) -> torch.Tensor:
    replayed = poutine.replay(model, guide_trace)
    return torch.cat([torch.log_softmax(replayed(xb), -1) for xb in torch.split(x, batch_size)])


def one_sample(model: Callable, guide: Callable, x: torch.Tensor, batch_size: int = BATCH_SIZE):
    """Log-probabilities of ``x`` under ONE weight draw shared by every batch, and that draw's
    guide trace (VN Fig. 4: the accuracy of individual weight samples)."""
    guide_trace = poutine.trace(guide).get_trace(x[:1])
    return _replayed(model, guide_trace, x, batch_size), guide_trace


def _stack(traces) -> poutine.Trace:
    """One trace whose latent sample sites hold the K traces' values stacked on a new dim 0."""
    stacked = poutine.Trace()
    for name, site in traces[0].nodes.items():
        site = dict(site)
        if site["type"] == "sample" and not site["is_observed"]:
            site["value"] = torch.stack([t.nodes[name]["value"] for t in traces])
        stacked.add_node(name, **site)
    return stacked


def _run_stacked(model, stacked_trace, x, k, shared=True):
    """Log-probabilities, shape (N, K, classes), of ``x`` under the K stacked weight samples.
    ``shared``: each object enters once and the layers before the first sampled one run once
    (needs a model whose plates follow its logits' rows); else the objects are repeated K times."""
    rows = x if shared else x.repeat_interleave(k, 0)
    with stacked_weights(num_samples=k, num_objects=x.shape[0] if shared else None):
        logits = poutine.replay(model, stacked_trace)(rows)
    if logits.shape[0] == x.shape[0] and k > 1:  # no sampled layer was reached
        logits = logits.repeat_interleave(k, 0)
    return torch.log_softmax(logits, -1).reshape(x.shape[0], k, -1)


#: errors a model that cannot take stacked weights may raise (``vectorize="auto"`` falls back)
_STACK_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def stacking_mode(model: Callable, guide: Callable, x: torch.Tensor, rtol: float = 1e-4) -> str | None:
    """How ``model`` can run stacked weight samples in one pass (see
    :class:`~pyro_varnet.poutine.StackedWeightsMessenger`) and give the same predictions as
    sample by sample, checked on two objects and two weight draws: ``"shared"`` (each object
    enters once), ``"repeated"`` (objects repeated K times: models whose plates are sized by
    their input) or ``None`` (networks that transform their sampled tensors before the layer
    ops, such as weight-normalized layers, which must run sample by sample)."""
    x = x[:2]
    traces = [poutine.trace(guide).get_trace(x[:1]) for _ in range(2)]
    apart = torch.stack([_replayed(model, t, x, len(x)) for t in traces], 1)
    stacked = _stack(traces)
    for shared in (True, False):
        try:
            together = _run_stacked(model, stacked, x, 2, shared)
        except _STACK_ERRORS:
            continue
        if together.shape == apart.shape and torch.allclose(together, apart, rtol=rtol, atol=rtol):
            return "shared" if shared else "repeated"
    return None


def stacking_works(model: Callable, guide: Callable, x: torch.Tensor, rtol: float = 1e-4) -> bool:
    """Whether ``model`` gives the same predictions with stacked weight samples in one pass as
    sample by sample (:func:`stacking_mode` is not ``None``)."""
    return stacking_mode(model, guide, x, rtol) is not None


def _ensemble(model, guide, x, num_samples, lrt, max_objects, batch_size, vectorize) -> torch.Tensor:
    """log (1/K) Σ_k softmax(f(x, W_k)) — VN eq. 2 — as log-probabilities.

    By direct sampling each of the K weight draws is made once and applied to every batch
    of ``x`` (K networks), so the guide is sampled K times, not K × batches; with
    ``vectorize`` the K networks run together, ``batch_size // K`` objects per pass."""
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
        how = stacking_mode(model, guide, x) if vectorize == "auto" else ("shared" if vectorize else None)
        done = 0
        while done < num_samples:  # at most MAX_STACK weight samples in memory at once
            k = min(MAX_STACK, num_samples - done)
            traces = [poutine.trace(guide).get_trace(x[:1]) for _ in range(k)]
            if how is not None:
                stacked, per_pass, shared = _stack(traces), max(1, batch_size // k), how == "shared"
                parts = [_run_stacked(model, stacked, xb, k, shared).logsumexp(1) for xb in torch.split(x, per_pass)]
                part = torch.cat(parts)
            else:
                part = torch.logsumexp(torch.stack([_replayed(model, t, x, batch_size) for t in traces]), 0)
            total = part if total is None else torch.logaddexp(total, part)
            done += k
    return total - math.log(num_samples)


#: most weight samples stacked into one pass by ``predict(vectorize=...)``
MAX_STACK = 32


@torch.no_grad()
def predict(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    mode: str = "ensemble",
    num_samples: int = 20,
    batch_size: int = BATCH_SIZE,
    lrt: bool = False,
    max_objects: int = 20000,
    vectorize: bool | str = "auto",
) -> torch.Tensor:
    r"""Predictive log-probabilities, shape (N, classes), of a model that returns logits.

    :param str mode: ``"mean"`` — mean propagation, the weight scaling rule (VN eq. 3);
        ``"sample"`` — one weight sample for the whole set (with ``lrt``: one noise draw per
        object); ``"ensemble"`` — test-time
        averaging of the softmax over ``num_samples`` weight samples (VN eq. 2);
        ``"zero_mean"`` — the ensemble with every Gaussian site replaced by its zero-mean
        approximation (VN §4.3).
    :param int batch_size: rows per forward pass: objects, or objects × K when the ensemble
        stacks its K samples (default :data:`BATCH_SIZE`: small enough that
        the allocator reuses the activations' memory from pass to pass).
    :param bool lrt: sample the ensemble by local reparameterization (each copy of an
        object gets independent noise, all K samples in one pass). Off by default: K direct
        weight samples cost K plain forward passes, while LRT runs a mean and a variance op
        per layer; both give the same Monte Carlo estimate of the predictive per object.
    :param int max_objects: upper bound on objects × samples in one pass under LRT.
    :param vectorize: by direct sampling, run up to :data:`MAX_STACK` weight samples in one
        pass (batched matmuls, grouped convolutions; ``batch_size // K`` objects per pass, so
        memory stays that of one plain batch); each object enters once and the layers before
        the first sampled one run once, so K samples cost less than K plain passes.
        ``"auto"`` (default) first checks on two objects that the model gives the same
        predictions that way (:func:`stacking_mode`), repeating the objects K times for
        models whose plates are sized by their input and running sample by sample for those
        that cannot stack at all; ``True`` skips the check (shared objects), ``False`` never
        stacks.
    """
    check_choice("prediction mode", mode, MODES)
    if vectorize not in (True, False, "auto"):
        raise ValueError(f"expected vectorize to be True, False or 'auto', got {vectorize!r}")
    if mode in ("ensemble", "zero_mean") and num_samples < 1:
        raise ValueError(f"expected num_samples >= 1, got {num_samples}")
    with evaluating(model, guide):
        if mode == "sample" and not lrt:
            return one_sample(model, guide, x, batch_size)[0]
        if mode == "sample":  # independent noise per object (and output position)

            def one(xb):
                with local_reparameterization():
                    return torch.log_softmax(run_once(model, guide, xb), -1)
        elif mode == "mean":

            def one(xb):
                with mean_propagation():
                    return torch.log_softmax(run_once(model, guide, xb), -1)

        else:
            handler = zero_mean_approximation() if mode == "zero_mean" else contextlib.nullcontext()
            if not lrt:  # the K weight draws are shared by all batches
                with handler:
                    return _ensemble(model, guide, x, num_samples, lrt, max_objects, batch_size, vectorize)

            def one(xb):
                with handler:
                    return _ensemble(model, guide, xb, num_samples, lrt, max_objects, batch_size, vectorize)

        outs = [one(xb) for xb in torch.split(x, batch_size)]
    return torch.cat(outs)


def accuracy(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to ``y``."""
    return float((log_probs.argmax(-1) == y).float().mean())


def nll(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of ``y`` under the predictive distribution."""
    return float(-log_probs.gather(-1, y[:, None]).mean())
