"""ELBO reports: everything VN Tables 1-2 show about a trained guide, exportable to ArviZ."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine

from .._device import fork_rng
from .._sites import unwrap
from ..infer.history import History
from ..infer.predict import BATCH_SIZE, _likelihood, evaluating, one_sample, prepare_inputs
from ..metrics import RegressionPrediction
from .elbo import elbo_decomposition
from .inference_data import MAX_WEIGHTS, SiteCapture, build_inference_data, loo_data, site_priors, versions

TABLE_ROWS = (
    ("ELBO", "elbo"),
    ("Data term", "data"),
    ("KL", "kl"),
    ("Mean propagation acc. (%)", "acc_mean"),
    ("Test-time averaging acc. (%)", "acc_ensemble"),
)
#: the rows of a regressor's table: RMSE instead of accuracy
REGRESSION_ROWS = TABLE_ROWS[:3] + (
    ("Mean propagation RMSE", "rmse_mean"),
    ("Test-time averaging RMSE", "rmse_ensemble"),
    ("Test-time averaging 90 % coverage (%)", "cov90_ensemble"),
)

#: VN Table 1 (MNIST, LeNet-5, N = 60 000 training images), in nats and per cent: the paper
#: gives the ELBO, data term and KL in thousands of nats
VN_TABLE1 = {
    column: dict(zip(("elbo", "data", "kl", "acc_mean", "acc_ensemble"), (1e3 * e, 1e3 * d, 1e3 * k, m, t)))
    for column, (e, d, k, m, t) in {
        "zero-mean": (-4.0, -4.0, 0.0, 11.3, 99.4),
        "layer": (-17.4, -15.8, 1.7, 11.3, 99.2),
        "neuron": (-31.4, -17.0, 14.4, 11.3, 99.2),
        "weight": (-602.6, -33.8, 568.8, 96.6, 99.4),
        "additive": (-227.9, -31.2, 196.7, 99.2, 99.2),
    }.items()
}

#: the recipe that reaches VN Table 1's regime on a CPU budget (``varnet compare``'s defaults,
#: notebook 03): the authors' batch 200, 16 epochs instead of 200, the learning rate held
#: for the first half and then decayed linearly to 0 (as the thesis trains, WN §5; decayed
#: from the start, as the VN authors do, layer- and neuron-wise stop mid-transition), and
#: the lever — Adam moves a parameter by about its learning rate per step, so log α and
#: log σ² (which must travel ~10-15 units to α → ∞) learn 30x faster; lr 3e-3 lets θ follow
VN_TABLE1_RECIPE = {
    "epochs": 16,
    "batch_size": 200,
    "lr": 3e-3,
    "lr_schedule": "hold-linear",
    "lr_multipliers": {"*log_alpha*": 30.0, "*log_sigma2": 30.0},
}


def vn_table1_column(spec: str) -> str | None:
    """The VN Table 1 column a guide spec of ``varnet compare`` reproduces (``"zero-mean@fc1"`` →
    ``"zero-mean"``, ``"layer"`` → ``"layer"``), or ``None`` for a spec the paper does not have."""
    family = spec.split("@", 1)[0]
    return family if family in VN_TABLE1 else None


def mmd_bound(log_alpha: torch.Tensor) -> float:
    r"""VN Theorem 1: :math:`\mathrm{MMD}(q^0 \| q) \le \sqrt{2/\pi}\,\sqrt{\sum_i 1/\alpha_i}`.

    For one α per layer this is :math:`\sqrt{2D/\pi}/\sqrt{\alpha}` (VN eq. 12); with α per
    neuron or weight the proof's shift vector has norm :math:`\sqrt{\sum_i 1/\alpha_i}`.
    """
    return math.sqrt(2 / math.pi) * float(torch.exp(-log_alpha.double()).sum().sqrt())


@dataclass
class ELBOReport:
    """The numbers of one trained (model, guide) pair; see :func:`elbo_report`."""

    name: str
    elbo: float
    data: float
    kl: float
    kl_sites: dict[str, float]
    metrics: dict[str, float]
    log_alpha: dict[str, float]
    mmd_bound: dict[str, float]
    #: the main metric of each single weight draw (accuracy, or RMSE for regressors; VN Fig. 4)
    sample_accuracies: list[float]
    pointwise_log_lik: np.ndarray  # (draws, test objects): log p(y_n | x_n, W_s)
    y_test: np.ndarray
    history: History = field(default_factory=History)
    #: what ``sample_accuracies`` holds per draw: ``"acc"`` (classifiers) or ``"rmse"`` (regressors)
    sample_metric: str = "acc"
    #: per latent site: its draws (full and per neuron), q's σ and log α, family and prior
    sites: dict[str, SiteCapture] = field(default_factory=dict)
    #: (draws, test objects[, outputs]): a target drawn from p(y | x, W_s) per draw
    predictive: np.ndarray | None = None
    #: (draws, test objects, classes): class probabilities per draw (classifiers)
    probs: np.ndarray | None = None
    model_name: str = ""
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def table_rows(self) -> tuple:
        return TABLE_ROWS if self.sample_metric == "acc" else REGRESSION_ROWS

    def row(self, key: str) -> float:
        if key in ("elbo", "data", "kl"):
            return getattr(self, key)
        return 100 * self.metrics[key] if key.startswith(("acc", "cov")) else self.metrics[key]

    @property
    def num_draws(self) -> int:
        return int(self.pointwise_log_lik.shape[0])

    def to_inference_data(self, weights: bool = True):
        """An :class:`arviz.InferenceData` following ArviZ's schema: ``posterior`` (draws of
        every weight site from q with dims named after its layer, q's σ and log α per weight,
        per-neuron norms, σ-norms and log α), ``sample_stats`` (per-draw test metric),
        ``log_likelihood`` and ``observed_data`` (for ``az.loo`` / ``az.compare``),
        ``posterior_predictive`` (for ``az.plot_ppc``) and ``training`` (the training trace,
        dim ``epoch``; :func:`~pyro_varnet.analysis.as_trace` makes it plottable by
        ``az.plot_trace``). The layout, and how log α = +∞ is stored, are documented in
        :mod:`pyro_varnet.analysis.inference_data`.

        :param bool weights: include the per-weight variables of the sites whose draws were
            kept (``elbo_report(max_weights=...)``); per-neuron variables are always there.
        """
        return build_inference_data(self, weights=weights)

    def save(self, path) -> None:
        """Write :meth:`to_inference_data` as netCDF."""
        self.to_inference_data().to_netcdf(str(path))


def _sample_target(prediction) -> torch.Tensor:
    """One target per object from the prediction of one weight draw: a class from the
    log-probabilities, or a value from the Gaussian of a regressor."""
    if isinstance(prediction, RegressionPrediction):
        loc, scale = prediction.loc[0], prediction.scale[0]  # (N, D)
        y = torch.normal(loc, scale)
        return y.squeeze(-1) if prediction.scalar else y
    return torch.distributions.Categorical(logits=prediction).sample()


def _captures(model, guide, x, max_weights) -> dict[str, SiteCapture]:
    """Empty captures for every latent site of the guide, with q's σ and log α."""
    guide_trace = poutine.trace(guide).get_trace(x[:1])
    model_trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(x[:1])
    names = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]]
    priors = site_priors(model_trace, names)
    log_alpha = guide.log_alpha() if hasattr(guide, "log_alpha") else {}
    out = {}
    for name in names:
        site = guide_trace.nodes[name]
        family = guide.site(name).signature() if hasattr(guide, "site") else type(unwrap(site["fn"])[0]).__name__
        shape = tuple(site["value"].shape)
        full = max_weights is None or int(np.prod(shape)) <= max_weights
        out[name] = SiteCapture(name, shape, family, priors[name], full, site["fn"], log_alpha.get(name))
    return out


@torch.no_grad()
def _draws(model, guide, x, y, num_draws, batch_size, metric, captures, keep_probs):
    """Per weight draw: pointwise test log-likelihood, the main metric (accuracy or RMSE), NLL,
    a predictive target per object (and class probabilities), and the draw's weights."""
    lik = _likelihood(model)
    logliks, scores, nlls, targets, probs = [], [], [], [], []
    for _ in range(num_draws):
        prediction, guide_trace = one_sample(model, guide, x, batch_size)
        logliks.append(lik.log_lik(prediction, y).double().cpu().numpy())
        m = lik.metrics(prediction, y)
        scores.append(m[metric])
        nlls.append(m["nll"])
        targets.append(_sample_target(prediction).cpu().numpy())
        if keep_probs and not isinstance(prediction, RegressionPrediction):
            probs.append(prediction.exp().float().cpu().numpy())
        for name, capture in captures.items():
            capture.add(guide_trace.nodes[name]["value"])
    return np.stack(logliks), scores, float(np.mean(nlls)), np.stack(targets), np.stack(probs) if probs else None


def elbo_report(
    model: Callable,
    guide: Callable,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    num_samples: int = 20,
    elbo_samples: int = 10,
    num_draws: int = 100,
    batch_size: int = BATCH_SIZE,
    name: str = "guide",
    history: History | None = None,
    max_weights: int | None = MAX_WEIGHTS,
    keep_probs: bool = True,
    seed: int | None = None,
) -> ELBOReport:
    r"""Everything VN Tables 1-2 report about a trained guide.

    - ELBO, data term :math:`\mathbb{E}_q\log p(T\mid X,W)` over the whole training set
      (``elbo_samples`` passes) and KL, total and per site (VN eq. 5, Table 1);
    - the likelihood's metrics (classifiers: accuracy, NLL, ECE, Brier; regressors: RMSE,
      NLL, interval coverage) by mean propagation, one weight sample, the
      ``num_samples``-sample ensemble and the zero-mean approximation (Table 2, Fig. 3);
    - mean log α per site and the MMD bound of VN Theorem 1 for each Gaussian-dropout site;
    - ``num_draws`` iid weight draws from q, each applied to the whole test set: its metric
      (Fig. 4), pointwise test log-likelihoods (for ``az.loo``; PSIS needs many draws —
      ArviZ's Pareto-k threshold is :math:`\min(1 - 1/\log_{10} S, 0.7)`, 0.5 at 100
      draws), a predictive target per object, class probabilities (``keep_probs``) and the
      weights themselves — in full for sites with at most ``max_weights`` weights (``None``:
      all), per output neuron for every site (see :meth:`ELBOReport.to_inference_data`).

    :param int seed: seed the draws (the global RNG state is restored afterwards); ``None``
        draws from the current state. Recorded in the InferenceData's attrs.
    """
    from ..infer.fit import evaluate, site_log_alpha

    if num_draws < 1:
        raise ValueError(f"expected num_draws >= 1, got {num_draws}")
    if max_weights is not None and max_weights < 0:
        raise ValueError(f"expected max_weights >= 0 or None, got {max_weights}")
    x_test, y_test = test_data
    x_test = prepare_inputs(model, guide, x_test)
    y_test = y_test.to(x_test.device)
    with fork_rng((x_test,), {}, model, guide) if seed is not None else contextlib.nullcontext():
        if seed is not None:
            pyro.set_rng_seed(seed)
        elbo = elbo_decomposition(model, guide, train_data, num_samples=elbo_samples, batch_size=batch_size)
        metrics = evaluate(model, guide, (x_test, y_test), ("mean", "ensemble", "zero_mean"), num_samples, batch_size)
        metric = "acc" if "acc_mean" in metrics else "rmse"
        log_alpha = site_log_alpha(guide)
        bounds = {}
        for site, la in getattr(guide, "log_alpha", dict)().items():
            if torch.isfinite(la).all():
                bounds[site] = mmd_bound(la)
        # "sample": one weight draw for the whole test set, averaged over the num_draws draws
        with evaluating(model, guide), torch.no_grad():
            captures = _captures(model, guide, x_test, max_weights)
            loglik, accs, metrics["nll_sample"], targets, probs = _draws(
                model, guide, x_test, y_test, num_draws, batch_size, metric, captures, keep_probs
            )
    metrics[f"{metric}_sample"] = float(np.mean(accs))
    inner = getattr(model, "net", None)
    return ELBOReport(
        name=name,
        elbo=elbo["elbo"],
        data=elbo["data"],
        kl=elbo["kl"],
        kl_sites=elbo["kl_sites"],
        metrics=metrics,
        log_alpha=log_alpha,
        mmd_bound=bounds,
        sample_accuracies=accs,
        pointwise_log_lik=loglik,
        y_test=y_test.cpu().numpy(),
        history=history or History(),
        sample_metric=metric,
        sites=captures,
        predictive=targets,
        probs=probs,
        model_name=type(model).__name__ + (f"({type(inner).__name__})" if inner is not None else ""),
        seed=seed,
        versions=dict(versions()),
    )


def _markdown(df) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| Metric | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for idx, row in df.iterrows():
        digits = 2 if "(%)" in str(idx) else 1  # accuracies to a test object in 10 000
        cells = (f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row)
        lines.append(f"| {idx} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ic_diagnostics(idata, ic: str = "loo") -> dict:
    r"""ArviZ's reliability diagnostics of an information criterion on one InferenceData.

    LOO (PSIS): the Pareto shape k of each test object's importance ratios; ArviZ trusts
    objects with :math:`k \le \min(1 - 1/\log_{10} S, 0.7)` for S draws. An object whose
    log-likelihood is the same under every draw (a confident prediction saturates log p at
    exactly 0 in float32) has equal importance ratios, so its LOO term is exact; ArviZ gives it
    k = ∞ all the same, so such objects are counted as ``"exact"``, not as bad, and left out of
    ``k_max``. WAIC: objects whose posterior variance of the log predictive density exceeds
    0.4 (ArviZ's warning). Returns ``{"ic", "p", "bad", "n", "draws"}``, for LOO also
    ``"k_max"``, ``"good_k"`` and ``"exact"``.
    """
    import arviz as az

    ll = idata.log_likelihood["obs"].values.reshape(-1, idata.log_likelihood["obs"].shape[-1])  # (draws, objects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported by the caller, in words
        if ic == "loo":
            e = az.loo(idata, pointwise=True)
            k = np.asarray(e.pareto_k).reshape(-1)
            good = float(e.good_k)
            varies = ~(ll == ll[:1]).all(0)
            return {
                "ic": ic,
                "p": float(e.p_loo),
                "bad": int(((k > good) & varies).sum()),
                "n": int(k.size),
                "exact": int((~varies).sum()),
                "k_max": float(np.nanmax(k[varies])) if varies.any() else math.nan,
                "good_k": good,
                "draws": int(e.n_samples),
            }
        if ic == "waic":
            e = az.waic(idata, pointwise=True)
            var = ll.var(0, ddof=1)
            return {
                "ic": ic,
                "p": float(e.p_waic),
                "bad": int((var > 0.4).sum()),
                "n": int(var.size),
                "draws": int(e.n_samples),
            }
    raise ValueError(f"expected ic 'loo' or 'waic', got {ic!r}")


def _ic_warning(name: str, d: dict) -> str | None:
    if not d["bad"]:
        return None
    if d["ic"] == "loo":
        return (
            f"LOO is unreliable for {name!r}: Pareto k > {d['good_k']:.2f} for {d['bad']} of {d['n']} test "
            f"objects (max {d['k_max']:.2f}; {d['exact']} predicted alike by every draw are exact; "
            f"p_loo {d['p']:.1f}, {d['draws']} draws), so its "
            f"elpd and rank are not to be trusted. More draws raise ArviZ's threshold and sharpen k "
            f"(elbo_report(num_draws=...), CLI --draws); compare(..., ic='waic') is the other estimate, "
            f"though it fails in the same situations."
        )
    return (
        f"WAIC is unreliable for {name!r}: the posterior variance of the log predictive density is > 0.4 "
        f"for {d['bad']} of {d['n']} test objects (p_waic {d['p']:.1f}, {d['draws']} draws); try more draws "
        f"or ic='loo' for its Pareto-k diagnostics."
    )


def compare(
    reports: Mapping[str, ELBOReport] | list[ELBOReport],
    ic: str = "loo",
    reference: Mapping[str, Mapping[str, float]] | None = None,
):
    """VN Table 1 for several guides, plus ArviZ's ranking with its reliability stated.

    :param str ic: ``"loo"`` (PSIS-LOO, default) or ``"waic"``.
    :param reference: published values to print beside a guide's column, ``{guide: {row key:
        value}}`` (e.g. ``{"layer": VN_TABLE1["layer"]}``): a column ``"<guide> (VN)"`` follows
        the guide's; rows the reference lacks are NaN.
    :returns: ``(table, markdown, az_table)``: a :class:`pandas.DataFrame` with rows ELBO,
        data term, KL, mean-propagation and test-time-averaging accuracy and one column per
        guide; the same rendered as markdown, followed by a warning line per guide whose
        estimate ArviZ does not trust; and ``az.compare`` on the pointwise test
        log-likelihoods (``None`` with fewer than two reports) with the diagnostics as columns
        (LOO: ``pareto_k_max``, ``pareto_k_bad``; WAIC: ``waic_var_bad``) and the warnings
        in ``az_table.attrs["warnings"]``.
    """
    import arviz as az
    import pandas as pd

    if ic not in ("loo", "waic"):
        raise ValueError(f"expected ic 'loo' or 'waic', got {ic!r}")
    if not isinstance(reports, Mapping):
        reports = {r.name: r for r in reports}
    if not reports:
        raise ValueError("expected at least one report")
    rows = next(iter(reports.values())).table_rows
    reference = dict(reference or {})
    unknown = sorted(set(reference) - set(reports))
    if unknown:
        raise ValueError(f"reference values for {unknown}, which are not among the reports {sorted(reports)}")
    columns = {}
    for name, r in reports.items():
        columns[name] = [r.row(key) for _, key in rows]
        if name in reference:
            columns[f"{name} (VN)"] = [float(reference[name].get(key, math.nan)) for _, key in rows]
    table = pd.DataFrame(columns)
    table.index = [label for label, _ in rows]
    markdown = _markdown(table)
    az_table = None
    if len(reports) >= 2:
        idatas = {name: loo_data(r) for name, r in reports.items()}
        diagnostics = {name: ic_diagnostics(idata, ic) for name, idata in idatas.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same diagnostics, stated below in words
            az_table = az.compare(idatas, ic=ic)
        if ic == "loo":
            az_table["pareto_k_max"] = [diagnostics[n]["k_max"] for n in az_table.index]
            az_table["pareto_k_bad"] = [diagnostics[n]["bad"] for n in az_table.index]
            az_table["loo_exact"] = [diagnostics[n]["exact"] for n in az_table.index]
        else:
            az_table["waic_var_bad"] = [diagnostics[n]["bad"] for n in az_table.index]
        notes = [w for n in az_table.index if (w := _ic_warning(n, diagnostics[n]))]
        az_table.attrs["warnings"] = notes
        if notes:
            markdown += "\n\n" + "\n".join(f"> {w}" for w in notes)
    return table, markdown, az_table
