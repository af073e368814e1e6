"""Predictions of a trained network in the paper's four modes (VN Tables 1-2, Fig. 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from pyro import poutine

from .. import distributed
from .. import metrics as M
from .._checks import check_choice
from .._device import module_device, module_dtype
from .._malloc import keep_freed_memory
from .._numerics import subnormal_mask
from .._sites import unwrap
from ..poutine import (
    StackedWeightsMessenger,
    local_reparameterization,
    mean_propagation,
    stacked_weights,
    zero_mean_approximation,
)
from ..poutine.weight_rules import Moments, weight_rules
from ..state import sync_from_param_store
from ..threads import resolve_threads, use_threads

MODES = ("mean", "sample", "ensemble", "zero_mean")

#: how :func:`predict` samples: direct weight draws, local reparameterization everywhere, or
#: direct draws with per-object noise in the Gaussian dense layers
LRT_CHOICES = (False, True, "dense")

#: default rows per forward pass of :func:`predict` and the functions built on it. A stacked
#: LeNet-5 pass of 400 rows with every layer sampled (20 objects x 20 samples) has an 18 MB conv1 activation; with the
#: allocator thresholds raised (:mod:`pyro_varnet._malloc`) larger passes no longer fault their
#: memory back in, and 1 000 rows are faster still for a sampled prefix
#: (``benchmarks/results/2026-12-01-run_all.md``); 400 keeps memory that of a plain batch.
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


def draw_weights(guide: Callable, x: torch.Tensor) -> poutine.Trace:
    """One draw of every weight from ``guide`` (its trace), with the subnormal entries of the
    drawn values on a CPU set to 0. A trained zero-mean layer keeps σ's that decayed towards 0
    (``flush_subnormals_``): a 10-epoch zero-mean fc1 drew 32 000 of its 400 000 weights below
    1.2e-38, and its 20-sample ensemble ran 2.8x slower than with those entries 0 (products with
    subnormal numbers run in microcode on x86), while no prediction changes by more than ~1e-38."""
    trace = poutine.trace(guide).get_trace(x[:1])
    for site in trace.nodes.values():
        value = site["value"] if site["type"] == "sample" and not site["is_observed"] else None
        if torch.is_tensor(value) and value.is_floating_point() and value.device.type == "cpu":
            small = subnormal_mask(value)
            if bool(small.any()):
                site["value"] = value.masked_fill(small, 0)
    return trace


def _replayed(model, guide_trace, x, batch_size) -> torch.Tensor:
    """The model's raw outputs on ``x`` under the weights of ``guide_trace``, batch by batch."""
    replayed = poutine.replay(model, guide_trace)
    return torch.cat([replayed(xb) for xb in torch.split(x, batch_size)])


def _likelihood(model):
    from ..models.likelihoods import likelihood_of  # models build on infer's metrics

    return likelihood_of(model)


def one_sample(model: Callable, guide: Callable, x: torch.Tensor, batch_size: int = BATCH_SIZE):
    """The prediction of ``x`` under ONE weight draw shared by every batch, and that draw's
    guide trace (VN Fig. 4: the accuracy of individual weight samples)."""
    lik = _likelihood(model)
    guide_trace = draw_weights(guide, x)
    reducer = lik.reducer()
    reducer.add(lik.predictive_parts(_replayed(model, guide_trace, x, batch_size).unsqueeze(1)))
    return reducer.result(), guide_trace


def _stack(traces) -> poutine.Trace:
    """One trace whose latent sample sites hold the K traces' values stacked on a new dim 0."""
    stacked = poutine.Trace()
    for name, site in traces[0].nodes.items():
        site = dict(site)
        if site["type"] == "sample" and not site["is_observed"]:
            site["value"] = torch.stack([t.nodes[name]["value"] for t in traces])
        stacked.add_node(name, **site)
    return stacked


def _dense_moments(traces, stacked) -> dict:
    """``{stacked value: Moments}`` of the global latent sites whose K draws came from one and the
    same Gaussian (checked trace by trace: a site whose distribution depends on another draw
    keeps its K direct draws)."""
    moments = {}
    for name, site in stacked.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["cond_indep_stack"]:
            continue
        each = [weight_rules(b).local_reparameterization(b) for b in (unwrap(t.nodes[name]["fn"])[0] for t in traces)]
        first = each[0]
        if isinstance(first, Moments) and all(isinstance(m, Moments) and _same(m, first) for m in each[1:]):
            moments[site["value"]] = first
    return moments


def _same(a: Moments, b: Moments) -> bool:
    if (a.loc is None) != (b.loc is None):
        return False
    return torch.equal(a.var, b.var) and (a.loc is None or torch.equal(a.loc, b.loc))


def _objects_per_pass(model, stacked, x, k, shared, per_object, batch_size) -> int:
    """Objects per stacked pass such that its largest layer output is at most that of a plain
    pass of ``batch_size`` rows: measured on one object, where layers before the first sampled
    one hold 1 row and the others K. Every layer sampled: ``batch_size // K`` objects; a
    deterministic prefix as large as the sampled part: ``batch_size`` objects."""
    handler = StackedWeightsMessenger(k, 1 if shared else None, per_object)
    with handler:
        poutine.replay(model, stacked)(x[:1] if shared else x[:1].repeat_interleave(k, 0))
    if not handler.outputs:
        return max(1, batch_size // k)
    plain = max(size for _, size in handler.outputs)  # one object, one row per layer
    stacked_peak = max(rows * size for rows, size in handler.outputs)
    return max(1, batch_size * plain // stacked_peak)


def _run_stacked(model, stacked_trace, x, k, shared=True, per_object=None):
    """Raw outputs, shape (N, K, ...), of ``x`` under the K stacked weight samples.
    ``shared``: each object enters once and the layers before the first sampled one run once
    (needs a model whose plates follow its outputs' rows); else the objects are repeated K times.
    ``per_object``: Gaussian dense layers draw per-object noise (:class:`StackedWeightsMessenger`)."""
    rows = x if shared else x.repeat_interleave(k, 0)
    with stacked_weights(num_samples=k, num_objects=x.shape[0] if shared else None, per_object=per_object):
        out = poutine.replay(model, stacked_trace)(rows)
    if out.shape[0] == x.shape[0] and k > 1:  # no sampled layer was reached
        out = out.repeat_interleave(k, 0)
    return out.reshape(x.shape[0], k, *out.shape[1:])


#: errors a model that cannot take stacked weights may raise (``vectorize="auto"`` falls back)
_STACK_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def stacking_mode(model: Callable, guide: Callable, x: torch.Tensor, rtol: float = 1e-4) -> str | None:
    """How ``model`` can run stacked weight samples in one pass (see
    :class:`~pyro_varnet.poutine.StackedWeightsMessenger`) and give the same outputs as
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


def _ensemble_lrt(model, guide, x, num_samples, max_rows, lik) -> torch.Tensor:
    """Every object-copy gets its own noise under LRT: K copies of the batch are K samples.
    At most ``max_rows`` rows (objects × samples) per pass (when ``x`` has no more rows).
    Returns the per-sample predictive parts, shape (N, K, ...)."""
    chunk = max(1, min(num_samples, max_rows // max(1, x.shape[0])))
    parts, done = [], 0
    while done < num_samples:
        k = min(chunk, num_samples - done)
        with local_reparameterization():
            out = run_once(model, guide, x.repeat(k, *([1] * (x.dim() - 1))))
        parts.append(lik.predictive_parts(out.reshape(k, x.shape[0], *out.shape[1:]).movedim(0, 1)))
        done += k
    return torch.cat(parts, 1)


def _ensemble(model, guide, x, num_samples, batch_size, vectorize, reducer, lik, dense=False) -> None:
    """Test-time averaging over ``num_samples`` direct weight draws (VN eq. 2).

    Each of the K weight draws is made once and applied to every batch of ``x`` (K networks),
    so the guide is sampled K times, not K × batches; with ``vectorize`` the K networks run
    together, as many objects per pass as :func:`_objects_per_pass` allows. ``dense``: the stacked passes draw the
    Gaussian dense layers' outputs per object (exact per object, see :func:`predict`)."""
    how = stacking_mode(model, guide, x) if vectorize == "auto" else ("shared" if vectorize else None)
    if x.device.type == "cpu":
        keep_freed_memory()  # large stacked passes: no page faults from pass to pass (glibc)
    done = 0
    while done < num_samples:  # at most MAX_STACK weight samples in memory at once
        k = min(MAX_STACK, num_samples - done)
        traces = [draw_weights(guide, x) for _ in range(k)]
        if how is not None:
            stacked, shared = _stack(traces), how == "shared"
            per_object = _dense_moments(traces, stacked) if dense else None
            per_pass = _objects_per_pass(model, stacked, x, k, shared, per_object, batch_size)
            out = torch.cat(
                [_run_stacked(model, stacked, xb, k, shared, per_object) for xb in torch.split(x, per_pass)]
            )
        else:
            out = torch.stack([_replayed(model, t, x, batch_size) for t in traces], 1)
        reducer.add(lik.predictive_parts(out))
        done += k


#: most weight samples stacked into one pass by ``predict(vectorize=...)``
MAX_STACK = 32


def prepare_inputs(model: Callable, guide: Callable, x: torch.Tensor, device=None) -> torch.Tensor:
    """Move ``model`` and ``guide`` to ``device`` (if given) and ``x`` to the device and floating
    dtype of the model's parameters; check ``x`` for NaN/inf (one host sync); take values that
    ``pyro.get_param_store().load(...)`` put in Pyro's parameter store."""
    if not torch.is_tensor(x):
        raise TypeError(f"expected the inputs as a tensor, got {type(x).__name__}")
    if device is not None:
        for m in (model, guide):
            if isinstance(m, torch.nn.Module):
                m.to(device)
    device = module_device(model, guide) if device is None else torch.device(device)
    dtype = module_dtype(model, guide)
    x = x.to(device=device or x.device, dtype=dtype if dtype is not None and x.is_floating_point() else None)
    if x.device.type != "meta":
        M.check_finite(x, "inputs")
    sync_from_param_store(model, guide)
    return x


def check_lrt(lrt) -> None:
    """``lrt`` is one of :data:`LRT_CHOICES`, else a ValueError."""
    if not any(lrt is c if isinstance(c, bool) else lrt == c for c in LRT_CHOICES):  # 0 and 1 are not bools
        raise ValueError(f"expected lrt to be one of {', '.join(map(repr, LRT_CHOICES))}, got {lrt!r}")


def _predict(model, guide, x, mode, num_samples, batch_size, lrt, max_objects, vectorize) -> M.Reducer:
    """The reducer holding the per-sample predictions of ``x`` in ``mode``."""
    lik = _likelihood(model)
    reducer = lik.reducer()
    with evaluating(model, guide):
        if mode == "sample" and lrt == "dense":  # one draw for the set, per-object dense noise
            _ensemble(model, guide, x, 1, batch_size, vectorize, reducer, lik, dense=True)
        elif mode == "sample" and not lrt:  # one weight draw for the whole set
            draw = draw_weights(guide, x)
            reducer.add(lik.predictive_parts(_replayed(model, draw, x, batch_size)[:, None]))
        elif mode in ("sample", "mean"):  # batch by batch: every object's own noise, or none
            handler = local_reparameterization if mode == "sample" else mean_propagation
            outs = []
            for xb in torch.split(x, batch_size):
                with handler():
                    outs.append(run_once(model, guide, xb))
            reducer.add(lik.predictive_parts(torch.cat(outs)[:, None]))
        else:
            with zero_mean_approximation() if mode == "zero_mean" else contextlib.nullcontext():
                if lrt is True:  # objects × samples per pass bounded by batch_size and max_objects
                    rows = min(batch_size, max_objects)
                    parts = [
                        _ensemble_lrt(model, guide, xb, num_samples, rows, lik)
                        for xb in torch.split(x, max(1, rows // num_samples))
                    ]
                    reducer.add(torch.cat(parts))
                else:  # the K weight draws are shared by all batches
                    _ensemble(model, guide, x, num_samples, batch_size, vectorize, reducer, lik, lrt == "dense")
    return reducer


@torch.no_grad()
def predict(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    mode: str = "ensemble",
    num_samples: int = 20,
    batch_size: int = BATCH_SIZE,
    lrt: bool | str = False,
    max_objects: int = 20000,
    vectorize: bool | str = "auto",
    device: torch.device | str | None = None,
    threads: int | str | None = None,
    shard: bool = False,
):
    r"""Predictions of ``x`` in one of the paper's modes, as the model's likelihood defines them.

    For a :class:`~pyro_varnet.models.Classifier` / ``BinaryClassifier`` (or a model that
    returns logits): predictive log-probabilities, shape (N, classes). For a
    :class:`~pyro_varnet.models.Regressor`: a
    :class:`~pyro_varnet.metrics.RegressionPrediction` — the mixture over weight samples of
    Gaussians with the model's noise, with ``.mean``, ``.stddev``, ``.log_prob(y)`` and
    ``.interval(level)``. Results stay on the model's device.

    :param str mode: ``"mean"`` — mean propagation, the weight scaling rule (VN eq. 3);
        ``"sample"`` — one weight sample for the whole set (with ``lrt=True``: one noise draw
        per object; with ``"dense"``: one draw of everything but the Gaussian dense layers,
        whose noise is drawn per object); ``"ensemble"`` — test-time
        averaging over ``num_samples`` weight samples (VN eq. 2);
        ``"zero_mean"`` — the ensemble with every Gaussian site replaced by its zero-mean
        approximation (VN §4.3).
    :param int batch_size: rows per forward pass: objects; under LRT objects × K; when the
        ensemble stacks its K samples, as many objects as keep the pass's largest layer
        output within that of a plain pass of ``batch_size`` rows (``batch_size // K`` when
        every layer is sampled, up to ``batch_size`` when a deterministic prefix dominates;
        measured on one object). Default :data:`BATCH_SIZE`: small enough that the
        allocator reuses the activations' memory from pass to pass.
    :param lrt: how weights are sampled. ``False`` (default): K direct weight draws, K
        networks, each applied to every object. ``"dense"``: the same, except that Gaussian
        dense layers draw their outputs per object from their exact Gaussian (local
        reparameterization, VN eq. 4) instead of applying K weight matrices — for each object
        the same predictive distribution as ``False`` (a dense layer's outputs for one
        object are independent Gaussians given its input), while objects no longer share a
        draw; cheaper, above all for a variance layer after a deterministic prefix (its
        variance op runs once per object for all K samples) and for small batches (no K
        weight matrices to read per pass). Needs a model that stacks (``vectorize``); others
        run their K direct draws. ``True``: local reparameterization in every layer, each copy
        of an object its own noise; per output position in convolutions, so where kernels
        are sampled this is the approximation LRT training makes (positions that share a
        kernel draw become independent), not the direct draws' predictive — use it for nets
        trained under LRT.
    :param int max_objects: upper bound on objects × samples in one pass under LRT.
    :param vectorize: by direct sampling, run up to :data:`MAX_STACK` weight samples in one
        pass (batched matmuls, grouped convolutions; objects per pass as ``batch_size`` says,
        so memory stays that of one plain batch); each object enters once and the layers before
        the first sampled one run once, so K samples cost less than K plain passes.
        ``"auto"`` (default) first checks on two objects that the model gives the same
        predictions that way (:func:`stacking_mode`), repeating the objects K times for
        models whose plates are sized by their input and running sample by sample for those
        that cannot stack at all; ``True`` skips the check (shared objects), ``False`` never
        stacks.
    :param device: move ``model`` and ``guide`` there first; by default ``x`` goes to the
        device (and floating dtype) of the model's parameters.
    :param threads: CPU threads for the call (restored afterwards); ``"auto"``: see
        :func:`pyro_varnet.threads.auto_threads`; ``None``: torch's setting.
    :param bool shard: in a data-parallel run (a ``torch.distributed`` process group of W > 1),
        each rank predicts a contiguous W-th of ``x`` and the pieces are gathered, so every rank
        returns the prediction of all of ``x``; every rank must call it with the same ``x``.
        Without a process group it changes nothing.
    """
    check_choice("prediction mode", mode, MODES)
    check_lrt(lrt)
    resolve_threads(threads)
    if vectorize not in (True, False, "auto"):
        raise ValueError(f"expected vectorize to be True, False or 'auto', got {vectorize!r}")
    if mode in ("ensemble", "zero_mean") and num_samples < 1:
        raise ValueError(f"expected num_samples >= 1, got {num_samples}")
    if batch_size < 1 or max_objects < 1:
        raise ValueError(f"expected batch_size >= 1 and max_objects >= 1, got {batch_size}, {max_objects}")
    x = prepare_inputs(model, guide, x, device)
    rows, sizes = distributed.shard(x.shape[0]) if shard else (slice(None), [x.shape[0]])
    if min(sizes) == 0:  # fewer objects than processes: every rank predicts all
        rows, sizes = slice(None), [x.shape[0]]
    with use_threads(threads):
        out = _predict(model, guide, x[rows], mode, num_samples, batch_size, lrt, max_objects, vectorize).result()
    if len(sizes) == 1:
        return out
    if isinstance(out, M.RegressionPrediction):  # (K, N, D): objects along dim 1
        loc, scale = (distributed.gather_rows(t, sizes, dim=1) for t in (out.loc, out.scale))
        return M.RegressionPrediction(loc, scale, out.scalar)
    return distributed.gather_rows(out, sizes)


@torch.no_grad()
def predictive_uncertainty(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int = 20,
    batch_size: int = BATCH_SIZE,
    lrt: bool | str = False,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    r"""Per object of ``x``, for a classifier's ``num_samples``-sample ensemble:
    ``entropy`` :math:`\mathcal{H}[\bar p]` (total), ``expected_entropy``
    :math:`\mathbb{E}_k\mathcal{H}[p_k]` (aleatoric) and ``mutual_information`` — their
    difference, the information the label carries about the weights (epistemic; Depeweg
    et al. 2018) — and the ensemble's ``log_probs``. ``lrt`` as in :func:`predict`."""
    check_lrt(lrt)
    x = prepare_inputs(model, guide, x, device)
    reducer = _predict(model, guide, x, "ensemble", num_samples, batch_size, lrt, 20000, "auto")
    if not isinstance(reducer, M.LogMeanExp):
        raise TypeError(
            "predictive_uncertainty is defined for classifiers; a Regressor's prediction has epistemic_variance"
        )
    return {**reducer.uncertainty(), "log_probs": reducer.result()}


accuracy, nll = M.accuracy, M.nll
