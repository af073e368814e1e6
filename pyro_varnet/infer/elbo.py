"""The mean-field ELBO with its decomposition into data term and KL recorded at each step."""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.distributions.score_parts import ScoreParts
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape

from ..distributions import has_analytic_kl


class DecomposedELBO(TraceMeanField_ELBO):
    r"""Pyro's ``TraceMeanField_ELBO`` that also records :math:`\mathbb{E}_q\log p(T\mid X,W)` and KL.

    After each ``loss``/``loss_and_grads`` call, :attr:`last` holds the particle-averaged
    ``{"elbo", "data", "kl"}`` of that step (with the subsample scaling of the data plate,
    so the data term estimates the full training set's; VN eq. 5). The KL here includes
    any KL weight applied with :func:`~pyro_varnet.poutine.scale_latent`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last: dict[str, float] = {}
        self._parts: list[tuple[float, float]] = []
        #: latent sites whose KL was analytic in the last step (their values are never scored)
        self.analytic_sites: set[str] = set()

    def _get_trace(self, model, guide, args, kwargs):
        """As Pyro's, but without log-densities that the analytic KL makes unnecessary.

        Pyro scores every site of both traces; for a site whose KL is registered only the
        KL is used, so its prior and posterior log-densities over all weights (two passes
        over 430 000 values for LeNet-5) are skipped.
        """
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        validate = is_validation_enabled()
        if validate:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
        analytic = {
            name
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name in guide_trace.nodes
            and has_analytic_kl(guide_trace.nodes[name]["fn"], site["fn"])
        }
        self.analytic_sites.clear()
        self.analytic_sites.update(analytic)
        model_trace.compute_log_prob(site_filter=lambda name, site: name not in analytic)
        # memoised as computed; the loss never reads them for these sites (NaN if it ever did)
        unused = ScoreParts(log_prob=torch.tensor(math.nan), score_function=0, entropy_term=torch.tensor(math.nan))
        for name in analytic:
            guide_trace.nodes[name]["score_parts"] = unused
        guide_trace.compute_score_parts()
        if validate:
            for trace in (model_trace, guide_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample" and site["name"] not in analytic:
                        check_site_shape(site, self.max_plate_nesting)
            _check_mean_field_requirement(model_trace, guide_trace)
        return model_trace, guide_trace

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        data = sum(
            float(site["log_prob_sum"].detach())
            for site in model_trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
        self._parts.append((data, -float(loss) - data))
        return loss, surrogate

    def _record(self) -> None:
        parts = torch.tensor(self._parts, dtype=torch.float64)
        data, elbo_minus_data = parts.mean(0).tolist()
        self.last = {"elbo": data + elbo_minus_data, "data": data, "kl": -elbo_minus_data}
        self._parts = []

    def loss(self, model, guide, *args, **kwargs):
        out = super().loss(model, guide, *args, **kwargs)
        self._record()
        return out

    def loss_and_grads(self, model, guide, *args, **kwargs):
        out = super().loss_and_grads(model, guide, *args, **kwargs)
        self._record()
        return out
