"""ELBO reports: everything VN Tables 1-2 show about a trained guide, exportable to ArviZ."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from .._sites import unwrap
from ..infer.history import History
from ..infer.predict import BATCH_SIZE, _likelihood, evaluating, one_sample, prepare_inputs
from .elbo import elbo_decomposition

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
    sample_accuracies: list[float]
    pointwise_log_lik: np.ndarray  # (draws, test objects): log p(y_n | x_n, W_s)
    site_summaries: dict[str, np.ndarray]  # per draw: "norm/<site>"
    sigma_norms: dict[str, float]
    y_test: np.ndarray
    history: History = field(default_factory=History)
    #: what ``sample_accuracies`` holds per draw: ``"acc"`` (classifiers) or ``"rmse"`` (regressors)
    sample_metric: str = "acc"

    @property
    def table_rows(self) -> tuple:
        return TABLE_ROWS if self.sample_metric == "acc" else REGRESSION_ROWS

    def row(self, key: str) -> float:
        if key in ("elbo", "data", "kl"):
            return getattr(self, key)
        return 100 * self.metrics[key] if key.startswith(("acc", "cov")) else self.metrics[key]

    def to_inference_data(self):
        """An :class:`arviz.InferenceData` with ``posterior`` (per-draw layer summaries and the
        layers' log α and ‖σ‖), ``log_likelihood`` (pointwise test log-likelihood for
        ``az.loo`` / ``az.compare``), ``sample_stats`` (the training trace, per epoch) and
        ``observed_data``."""
        import arviz as az

        draws = self.pointwise_log_lik.shape[0]
        posterior = {f"w_{k.replace('/', '__')}": v[None] for k, v in self.site_summaries.items()}
        for site, la in self.log_alpha.items():
            posterior[f"q_log_alpha__{site}"] = np.full((1, draws), la)
        for site, s in self.sigma_norms.items():
            posterior[f"q_sigma_norm__{site}"] = np.full((1, draws), s)
        trace = self.history.to_dataframe() if len(self.history) else None
        sample_stats, dims = None, {"obs": ["test_object"]}
        if trace is not None:
            numeric = trace.select_dtypes("number")
            sample_stats = {c.replace("/", "__"): numeric[c].to_numpy()[None, None] for c in numeric.columns}
            dims.update({k: ["epoch"] for k in sample_stats})
        return az.from_dict(
            posterior=posterior,
            log_likelihood={"obs": self.pointwise_log_lik[None]},
            sample_stats=sample_stats,
            observed_data={"obs": self.y_test},
            dims=dims,
            attrs={"guide": self.name, "elbo": self.elbo, "data_term": self.data, "kl": self.kl},
        )

    def save(self, path) -> None:
        """Write :meth:`to_inference_data` as netCDF."""
        self.to_inference_data().to_netcdf(str(path))


def _site_sigma_norms(guide) -> dict[str, float]:
    out = {}
    for name, q in getattr(guide, "distributions", dict)().items():
        base, _ = unwrap(q)
        if hasattr(base, "scale"):
            out[name] = float(base.scale.detach().norm())
    return out


@torch.no_grad()
def _draws(model, guide, x, y, num_draws, batch_size, metric):
    """Per weight draw: pointwise test log-likelihood, the main metric (accuracy or RMSE), NLL
    and weight norms."""
    lik = _likelihood(model)
    logliks, scores, nlls, norms = [], [], [], {}
    with evaluating(model, guide):
        for _ in range(num_draws):
            prediction, guide_trace = one_sample(model, guide, x, batch_size)
            logliks.append(lik.log_lik(prediction, y).double().cpu().numpy())
            m = lik.metrics(prediction, y)
            scores.append(m[metric])
            nlls.append(m["nll"])
            for name in getattr(guide, "site_names", []):
                norms.setdefault(f"norm/{name}", []).append(float(guide_trace.nodes[name]["value"].norm()))
    return np.stack(logliks), scores, float(np.mean(nlls)), {k: np.array(v) for k, v in norms.items()}


def elbo_report(
    model: Callable,
    guide: Callable,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    num_samples: int = 20,
    elbo_samples: int = 10,
    num_draws: int = 50,
    batch_size: int = BATCH_SIZE,
    name: str = "guide",
    history: History | None = None,
) -> ELBOReport:
    r"""Everything VN Tables 1-2 report about a trained guide.

    - ELBO, data term :math:`\mathbb{E}_q\log p(T\mid X,W)` over the whole training set
      (``elbo_samples`` passes) and KL, total and per site (VN eq. 5, Table 1);
    - the likelihood's metrics (classifiers: accuracy, NLL, ECE, Brier; regressors: RMSE,
      NLL, interval coverage) by mean propagation, one weight sample, the
      ``num_samples``-sample ensemble and the zero-mean approximation (Table 2, Fig. 3);
    - mean log α per site and the MMD bound of VN Theorem 1 for each Gaussian-dropout site;
    - ``num_draws`` single-weight-sample accuracies (Fig. 4; RMSEs for regressors) and
      pointwise test log-likelihoods per draw (for ``az.loo``).
    """
    from ..infer.fit import evaluate, site_log_alpha

    x_test, y_test = test_data
    x_test = prepare_inputs(model, guide, x_test)
    y_test = y_test.to(x_test.device)
    elbo = elbo_decomposition(model, guide, train_data, num_samples=elbo_samples, batch_size=batch_size)
    metrics = evaluate(model, guide, (x_test, y_test), ("mean", "ensemble", "zero_mean"), num_samples, batch_size)
    metric = "acc" if "acc_mean" in metrics else "rmse"
    log_alpha = site_log_alpha(guide)
    bounds = {}
    for site, la in getattr(guide, "log_alpha", dict)().items():
        if torch.isfinite(la).all():
            bounds[site] = mmd_bound(la)
    # "sample": one weight draw for the whole test set, averaged over the num_draws draws
    loglik, accs, metrics["nll_sample"], norms = _draws(model, guide, x_test, y_test, num_draws, batch_size, metric)
    metrics[f"{metric}_sample"] = float(np.mean(accs))
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
        site_summaries=norms,
        sigma_norms=_site_sigma_norms(guide),
        y_test=y_test.cpu().numpy(),
        history=history or History(),
        sample_metric=metric,
    )


def _markdown(df) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| Metric | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append(f"| {idx} | " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def compare(reports: Mapping[str, ELBOReport] | list[ELBOReport], ic: str = "loo"):
    """VN Table 1 for several guides, plus ArviZ's ranking.

    :returns: ``(table, markdown, az_table)``: a :class:`pandas.DataFrame` with rows ELBO,
        data term, KL, mean-propagation and test-time-averaging accuracy and one column per
        guide; the same rendered as markdown; and ``az.compare`` on the pointwise test
        log-likelihoods (``None`` with fewer than two reports).
    """
    import arviz as az
    import pandas as pd

    if not isinstance(reports, Mapping):
        reports = {r.name: r for r in reports}
    rows = next(iter(reports.values())).table_rows
    table = pd.DataFrame({name: [r.row(key) for _, key in rows] for name, r in reports.items()})
    table.index = [label for label, _ in rows]
    az_table = None
    if len(reports) >= 2:
        az_table = az.compare({name: r.to_inference_data() for name, r in reports.items()}, ic=ic)
    return table, _markdown(table), az_table
