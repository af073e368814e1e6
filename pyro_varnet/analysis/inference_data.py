r"""ArviZ export of an ELBO report: what q(w) looks like per weight and per neuron, the training
trace per epoch, and the predictive on the test set.

Layout of :meth:`ELBOReport.to_inference_data` (every dim is named from the model):

``posterior`` — iid draws from q (the draws of :func:`~pyro_varnet.analysis.elbo_report`; the
    draws are independent, so ArviZ's effective sample size is the number of draws):

    * ``<site>`` (e.g. ``net.fc1.weight``): the weights, dims ``fc1_out, fc1_in`` (conv layers
      ``..._out, ..._in, ..._kh, ..._kw``; Conv1d ``..._k``), for sites with at most
      ``max_weights`` weights;
    * ``<site>_sigma`` and ``<site>_log_alpha``: q's standard deviation σ and
      :math:`\log\alpha = \log\sigma^2 - \log\mu^2` of each weight, the same dims (constant
      over draws: ArviZ keeps deterministic quantities in the posterior group);
    * per output neuron, for every site with two or more dims: ``<site>_norm`` (the norm of
      the neuron's weight vector in each draw), ``<site>_sigma_norm``
      (:math:`\|\sigma_{i\cdot}\|`) and ``<site>_neuron_log_alpha``
      (:math:`\log\sum_j\sigma_{ij}^2 - \log\sum_j\mu_{ij}^2`, exactly the shared α of the
      layer- and neuron-wise Gaussian-dropout families, VN eq. 14), dim ``<layer>_out``.

    log α is stored clipped to ``[-LOG_ALPHA_CLIP, LOG_ALPHA_CLIP]`` = [-20, 20]: a zero-mean
    weight has log α = +∞, which ArviZ's plots cannot place. Nothing is lost — at log α ≥ 20
    a weight's signal-to-noise ratio :math:`|\mu|/\sigma = e^{-10}` and its log-uniform KL
    (VN eq. 8) is within 1e-9 of the limit — and ``attrs["log_alpha_clip"]`` says so.

``sample_stats`` — per draw: the test metric of that single weight draw (``test_acc`` or
    ``test_rmse``) and its total test log-likelihood ``test_log_lik``.

``log_likelihood`` / ``observed_data`` — ``obs``: pointwise test log-likelihood per draw, dim
    ``test_object`` (for ``az.loo`` / ``az.compare``), and the test targets.

``posterior_predictive`` — ``obs``: a target drawn from p(y | x, W_s) for each draw and test
    object (``az.plot_ppc``); classifiers add ``probs`` (dims ``test_object, class``).

``training`` — the training trace, dim ``epoch``: ``elbo``, ``data``, ``kl``, ``lr``,
    ``kl_weight``, ``site_kl`` and ``site_log_alpha`` (dims ``epoch, site``), and each metric
    per prediction mode, e.g. ``test_acc`` (dims ``epoch, mode``). ``az.plot_trace`` wants
    ``chain`` and ``draw`` dims: pass :func:`as_trace` of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch

#: log α is stored clipped to ± this value (+∞ for zero-mean weights; see the module docstring)
LOG_ALPHA_CLIP = 20.0
#: sites with more weights are stored per neuron only (``elbo_report(max_weights=...)``)
MAX_WEIGHTS = 10_000
_KERNEL_DIMS = {3: ("k",), 4: ("kh", "kw"), 5: ("kd", "kh", "kw")}
_METRIC = re.compile(r"^(train|test)_([a-z0-9]+)_(mean|sample|ensemble|zero_mean)$")


def clip_log_alpha(a: np.ndarray) -> np.ndarray:
    """log α clipped to ``[-LOG_ALPHA_CLIP, LOG_ALPHA_CLIP]`` (NaN stays NaN)."""
    return np.clip(np.asarray(a, dtype=np.float64), -LOG_ALPHA_CLIP, LOG_ALPHA_CLIP)


def layer_of(site: str) -> str:
    """The module path of a site without the likelihood's ``net.`` prefix: ``net.fc1.weight`` → ``fc1``,
    ``net.fc1.weight_prior.lam`` → ``fc1``; a site of the model itself (no module) is its own layer."""
    owner = site.rpartition(".")[0] or site
    if owner.endswith(".weight_prior"):  # a prior's own sites (the horseshoe's scales) belong to its layer
        owner = owner[: -len(".weight_prior")]
    return owner[4:] if owner.startswith("net.") and len(owner) > 4 else owner


def site_dims(site: str, shape: tuple) -> list[str]:
    """Dim names of a site's weights, named after its layer: ``(out, in)`` for dense weights,
    ``(out, in, kh, kw)`` for conv2d, ``(out,)`` for per-neuron sites (WeightNorm g and angle,
    biases), ``<site>_dim<i>`` otherwise."""
    layer, nd = layer_of(site), len(shape)
    if nd == 0:
        return []
    if nd == 1 and site.rpartition(".")[0]:
        return [f"{layer}_out"]
    if nd == 2 or nd in _KERNEL_DIMS:
        return [f"{layer}_{d}" for d in ("out", "in") + _KERNEL_DIMS.get(nd, ())]
    return [f"{site}_dim{i}" for i in range(nd)]


class SiteCapture:
    """What a report keeps of one latent site: its draws (full and per neuron) and q's σ / log α."""

    def __init__(self, name: str, shape: tuple, family: str, prior: str, full: bool, q=None, log_alpha=None):
        self.name, self.shape, self.family, self.prior, self.full = name, tuple(shape), family, prior, full
        self.per_neuron = len(self.shape) >= 2
        self.draws: list[np.ndarray] = []
        self.norms: list[np.ndarray] = []
        self.sigma = self.log_alpha = self.sigma_norm = self.neuron_log_alpha = None
        mean, std = _moments(q, self.shape)
        if std is not None:
            self.sigma = std.double().cpu().numpy()
        if log_alpha is None and mean is not None and std is not None:
            log_alpha = 2 * (std.double().log() - mean.double().abs().log())
        if log_alpha is not None and not bool(torch.isnan(log_alpha).all()):
            self.log_alpha = log_alpha.double().expand(self.shape).cpu().numpy()
        if self.per_neuron and std is not None:
            s2 = std.double().reshape(self.shape[0], -1).square().sum(1)
            self.sigma_norm = s2.sqrt().cpu().numpy()
            if mean is not None:
                m2 = mean.double().reshape(self.shape[0], -1).square().sum(1)
                self.neuron_log_alpha = (s2.log() - m2.log()).cpu().numpy()

    def add(self, value: torch.Tensor) -> None:
        value = value.detach()
        if self.full:
            self.draws.append(value.float().cpu().numpy())
        if self.per_neuron:
            self.norms.append(value.reshape(self.shape[0], -1).norm(dim=1).float().cpu().numpy())

    def variables(self, weights: bool = True) -> tuple[dict, dict]:
        """Posterior variables ``{name: (draws, ...) array}`` and their dims; ``weights=False``
        leaves out the per-weight ones."""
        num = len(self.norms) if self.per_neuron else len(self.draws)
        dims = site_dims(self.name, self.shape)
        out, out_dims = {}, {}

        def put(name, value, d, constant=False):
            if value is None:
                return
            value = np.broadcast_to(value, (num, *value.shape)) if constant else value
            out[name], out_dims[name] = np.ascontiguousarray(value)[None], d

        if self.full and weights:
            put(self.name, np.stack(self.draws), dims)
            put(f"{self.name}_sigma", self.sigma, dims, constant=True)
            la = None if self.log_alpha is None else clip_log_alpha(self.log_alpha)
            put(f"{self.name}_log_alpha", la, dims, constant=True)
        if self.per_neuron:
            neuron = dims[:1]
            put(f"{self.name}_norm", np.stack(self.norms), neuron)
            put(f"{self.name}_sigma_norm", self.sigma_norm, neuron, constant=True)
            la = self.neuron_log_alpha
            put(f"{self.name}_neuron_log_alpha", None if la is None else clip_log_alpha(la), neuron, True)
        return out, out_dims


def _moments(q, shape) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """q's mean and standard deviation per weight (None where the family has none in closed form)."""
    from .._sites import unwrap

    if q is None:
        return None, None
    base, _ = unwrap(q)
    moments = []
    for attr in ("mean", "stddev"):
        try:
            moments.append(getattr(base, attr).detach().expand(shape))
        except (NotImplementedError, RuntimeError, AttributeError):
            moments.append(None)
    return moments[0], moments[1]


def training_dataset(history) -> dict:
    """The training trace as ``{"data_vars", "coords"}`` for an xarray Dataset with dim ``epoch``."""
    df = history.to_dataframe() if hasattr(history, "to_dataframe") else history
    if df is None or not len(df):
        return {}
    df = df.reset_index(drop=True)
    epochs = df["epoch"].to_numpy() if "epoch" in df else np.arange(1, len(df) + 1)
    data_vars, coords = {}, {"epoch": epochs}
    grouped: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for col in df.columns:
        if col == "epoch" or not np.issubdtype(df[col].dtype, np.number):
            continue
        values = df[col].to_numpy(dtype=np.float64)
        prefix, slash, key = col.partition("/")
        match = _METRIC.match(col)
        if slash:  # kl/<site>, log_alpha/<site>, ...
            name, dim = (f"site_{prefix}", "site") if prefix in ("kl", "log_alpha") else (prefix, f"{prefix}_key")
            grouped.setdefault(dim, {}).setdefault(name, {})[key] = values
        elif match:
            split, metric, mode = match.groups()
            grouped.setdefault("mode", {}).setdefault(f"{split}_{metric}", {})[mode] = values
        else:
            data_vars[col] = (("epoch",), values)
    for dim, variables in grouped.items():
        keys = list(dict.fromkeys(k for v in variables.values() for k in v))
        coords[dim] = keys
        for name, by_key in variables.items():
            table = np.full((len(epochs), len(keys)), np.nan)
            for j, k in enumerate(keys):
                if k in by_key:
                    table[:, j] = by_key[k]
            if "log_alpha" in name:
                table = clip_log_alpha(table)
            data_vars[name] = (("epoch", dim), table)
    return {"data_vars": data_vars, "coords": coords}


def as_trace(dataset):
    """A dataset with dim ``epoch`` (the ``training`` group) viewed as a one-chain trace over
    epochs (``draw`` = epoch index) for ``az.plot_trace``; the epoch numbers stay as the
    ``epoch`` coordinate of ``draw``."""
    ds = dataset.rename({"epoch": "draw"})
    ds = ds.assign_coords(draw=np.arange(ds.sizes["draw"]), epoch=("draw", dataset["epoch"].values))
    return ds.expand_dims(chain=[0])


def build_inference_data(report, weights: bool = True):
    """See :meth:`ELBOReport.to_inference_data`."""
    import arviz as az
    import xarray as xr

    from .. import _json

    posterior, dims = {}, {}
    for capture in report.sites.values():
        variables, var_dims = capture.variables(weights)
        posterior.update(variables)
        dims.update(var_dims)
    y = np.asarray(report.y_test)
    obs_dims = ["test_object"] + (["output"] if y.ndim == 2 else [])
    dims["obs"] = obs_dims
    predictive = {"obs": report.predictive[None]}
    if report.probs is not None:
        predictive["probs"] = report.probs[None]
        dims["probs"] = ["test_object", "class"]
    metric = f"test_{report.sample_metric}"
    sample_stats = {
        metric: np.asarray(report.sample_accuracies, dtype=np.float64)[None],
        "test_log_lik": report.pointwise_log_lik.sum(-1)[None],
    }
    attrs = {
        "guide": report.name,
        "model": report.model_name,
        "guide_families": _json.dumps({n: c.family for n, c in report.sites.items()}),
        "priors": _json.dumps({n: c.prior for n, c in report.sites.items()}),
        "seed": "none" if report.seed is None else int(report.seed),
        "elbo": report.elbo,
        "data_term": report.data,
        "kl": report.kl,
        "log_alpha_clip": LOG_ALPHA_CLIP,
        "inference_library": "pyro",
        **report.versions,
    }
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive=predictive,
        log_likelihood={"obs": report.pointwise_log_lik[None]},
        sample_stats=sample_stats,
        observed_data={"obs": y},
        dims=dims,
        attrs=attrs,
    )
    trace = training_dataset(report.history)
    if trace:
        idata.add_groups({"training": xr.Dataset(trace["data_vars"], coords=trace["coords"], attrs=attrs)})
    return idata


def loo_data(report):
    """Only what ``az.loo`` / ``az.compare`` read — the pointwise test log-likelihood — with the
    one posterior variable ``az.loo`` insists on (each draw's total), for :func:`compare`."""
    import arviz as az

    return az.from_dict(
        posterior={"test_log_lik": report.pointwise_log_lik.sum(-1)[None]},
        log_likelihood={"obs": report.pointwise_log_lik[None]},
        dims={"obs": ["test_object"]},
    )


def site_priors(model_trace, names) -> dict[str, str]:
    """The prior of each site, by its distribution's class (``LogUniform``, ``StudentT``, ...)."""
    from .._sites import unwrap

    out = {}
    for name in names:
        site = model_trace.nodes.get(name)
        out[name] = type(unwrap(site["fn"])[0]).__name__ if site is not None else "unknown"
    return out


def versions() -> Mapping[str, str]:
    import pyro

    import pyro_varnet

    return {
        "pyro_varnet_version": pyro_varnet.__version__,
        "pyro_version": str(pyro.__version__),
        "torch_version": str(torch.__version__),
    }
