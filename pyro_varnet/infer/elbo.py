"""The mean-field ELBO with its decomposition into data term and KL, and the weight noise it owns."""

from __future__ import annotations

import contextlib

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.elbo import ELBOModule
from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement
from pyro.infer.util import check_fully_reparametrized, is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape
from torch.distributions import kl_divergence

from .._device import fork_rng
from ..distributions import has_analytic_kl, kl_divergence_sum
from ..poutine import flipout, local_reparameterization
from .predict import evaluating

WEIGHT_NOISE = (None, False, True, "flipout")


def _kl_total(q, p, scale, mask) -> torch.Tensor:
    """A site's closed-form KL summed over its elements, scaled and masked as the site: summed
    without forming the per-weight tensor where the KL allows it (``kl_divergence_sum``) and
    nothing masks single weights."""
    if mask is None and not (torch.is_tensor(scale) and scale.dim() > 0):
        total = kl_divergence_sum(q, p)
        return total if isinstance(scale, (int, float)) and scale == 1 else total * scale
    return scale_and_mask(kl_divergence(q, p), scale=scale, mask=mask).sum()


class DecomposedELBO(TraceMeanField_ELBO):
    r"""Pyro's ``TraceMeanField_ELBO`` that records :math:`\mathbb{E}_q\log p(T\mid X,W)` and the KL
    (total and per site), and that owns how weights are sampled.

    After each ``loss`` / ``loss_and_grads`` / ``differentiable_loss`` call, :attr:`last` holds
    the particle-averaged ``{"elbo", "data", "kl", "kl/<site>": ...}`` of that step (with the
    subsample scaling of the data plate, so the data term estimates the full training set's;
    VN eq. 5). The KL includes any KL weight applied with
    :func:`~pyro_varnet.poutine.scale_latent`. Nothing here forces a host-device
    synchronisation: :attr:`last_tensors` holds the same as detached tensors, :attr:`last`
    converts them when read.

    ``elbo(model, guide)`` gives Pyro's ``ELBOModule``: a :class:`torch.nn.Module` whose
    forward is the differentiable loss, to be trained with any ``torch.optim`` optimizer.

    :param int num_particles: weight/noise samples per step.
    :param lrt: how weights are sampled (VN eq. 4): ``True`` — under
        :func:`~pyro_varnet.poutine.local_reparameterization` (pre-activations drawn per
        object); ``"flipout"`` — one draw per step, decorrelated per object; ``False`` —
        one weight draw per step (or whatever handlers the caller wraps around the loss);
        ``None`` — ``True`` when every family of the guide allows it exactly
        (``guide.exact_lrt``), decided at the first call.
    :param dict lrt_options: keyword arguments of ``local_reparameterization``.
    :param bool lazy_weights: under ``lrt=True``, do not draw the weights of sites whose KL is
        analytic: the LRT ops and the closed-form KL are all that use them. The ELBO finds
        those sites itself, once, by a probe pass that leaves RNG and BatchNorm statistics as
        they were.

    **References**: VN eq. 5 (ELBO), eq. 39-42 (local reparameterization).
    """

    def __init__(
        self,
        num_particles: int = 1,
        lrt: bool | str = False,
        lrt_options: dict | None = None,
        lazy_weights: bool = True,
        **kwargs,
    ) -> None:
        if lrt not in WEIGHT_NOISE:
            raise ValueError(f"expected lrt True, False, None or 'flipout', got {lrt!r}")
        super().__init__(num_particles=num_particles, **kwargs)
        self.lrt, self.lrt_options = lrt, dict(lrt_options or {})
        self.lazy_weights = lazy_weights
        self.last_tensors: dict[str, torch.Tensor] = {}
        self._parts: list[dict[str, torch.Tensor]] = []
        self._prepared: tuple[int, int] | None = None
        #: latent sites whose KL is analytic (their values are never scored); found at the first call
        self.analytic_sites: frozenset[str] = frozenset()

    # weight noise --------------------------------------------------------------------------
    def _weight_noise(self, lazy: bool = True):
        if self.lrt == "flipout":
            return flipout()
        if self.lrt:
            sites = self.analytic_sites if (lazy and self.lazy_weights and self.lrt is True) else ()
            return local_reparameterization(**self.lrt_options, lazy_sites=sites)
        return contextlib.nullcontext()

    def _prepare(self, model, guide, args, kwargs) -> None:
        """Once per (model, guide): the analytic-KL sites, found by a probe pass with the RNG
        forked and the modules in eval mode, so that the run that follows draws exactly what it
        would have drawn without the probe (exact resume)."""
        key = (id(model), id(guide))
        if self._prepared == key:
            return
        if self.lrt is None:
            self.lrt = bool(getattr(guide, "exact_lrt", False))
        with fork_rng(args, kwargs, model, guide), evaluating(model, guide), torch.no_grad():
            _, _, analytic = self._traces(model, guide, args, kwargs, lazy=False)
        self.analytic_sites, self._prepared = frozenset(analytic), key

    # traces ----------------------------------------------------------------------------------
    def _traces(self, model, guide, args, kwargs, lazy: bool = True):
        with self._weight_noise(lazy):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        validate = is_validation_enabled()
        if validate:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
        analytic = {}  # site -> its closed-form KL, scaled and masked as the site
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or name not in guide_trace.nodes:
                continue
            guide_site = guide_trace.nodes[name]
            if not has_analytic_kl(guide_site["fn"], site["fn"]):
                continue
            try:  # a registered pair may still decline (e.g. transformed distributions)
                analytic[name] = _kl_total(guide_site["fn"], site["fn"], guide_site["scale"], guide_site["mask"])
            except NotImplementedError:
                continue
        # the log-densities of analytic sites (two passes over all weights) are never needed
        model_trace.compute_log_prob(site_filter=lambda name, site: name not in analytic)
        for name in analytic:
            guide_trace.nodes[name]["score_parts"] = None  # memoised as computed; never read
        guide_trace.compute_score_parts()
        if validate:
            for trace in (model_trace, guide_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample" and site["name"] not in analytic:
                        check_site_shape(site, self.max_plate_nesting)
            _check_mean_field_requirement(model_trace, guide_trace)
        return model_trace, guide_trace, analytic

    def _get_trace(self, model, guide, args, kwargs):
        self._prepare(model, guide, args, kwargs)
        model_trace, guide_trace, analytic = self._traces(model, guide, args, kwargs)
        self._analytic_now = analytic
        return model_trace, guide_trace

    # the loss ---------------------------------------------------------------------------------
    def _differentiable_loss_particle(self, model_trace, guide_trace):
        validate = is_validation_enabled()
        data, kls = 0.0, {}
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                data = data + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if validate and name not in self._analytic_now:
                check_fully_reparametrized(guide_site)
            if name in self._analytic_now:
                kls[name] = self._analytic_now[name]
            else:  # one-sample Monte Carlo, e.g. the Student-t prior (VN §4.2)
                kls[name] = guide_site["score_parts"].entropy_term.sum() - site["log_prob_sum"]
        for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                kls[name] = guide_site["score_parts"].entropy_term.sum()
        kl = sum(kls.values(), 0.0)
        elbo = data - kl
        part = {"data": data, "kl": kl, **{f"kl/{k}": v for k, v in kls.items()}}
        self._parts.append({k: torch.as_tensor(v).detach() for k, v in part.items()})
        return -elbo.detach(), -elbo

    def _record(self) -> None:
        parts, self._parts = self._parts, []
        mean = {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}
        self.last_tensors = {"elbo": mean["data"] - mean["kl"], **mean}

    @property
    def last(self) -> dict[str, float]:
        """The last step's ``elbo``, ``data``, ``kl`` and ``kl/<site>`` as floats (a host sync)."""
        return {k: float(v) for k, v in self.last_tensors.items()}

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO as a differentiable tensor (no host synchronisation)."""
        surrogate = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            _, particle = self._differentiable_loss_particle(model_trace, guide_trace)
            surrogate = surrogate + particle / self.num_particles
        self._record()
        return surrogate

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())

    def __call__(self, model: torch.nn.Module, guide: torch.nn.Module) -> DecomposedELBOModule:
        return DecomposedELBOModule(model, guide, self)


class DecomposedELBOModule(ELBOModule):
    """Pyro's ``ELBOModule`` for :class:`DecomposedELBO`: ``forward(*args)`` is the loss (the
    negative ELBO); :attr:`last` / :attr:`last_tensors` its decomposition."""

    @property
    def last(self) -> dict[str, float]:
        return self.elbo.last

    @property
    def last_tensors(self) -> dict[str, torch.Tensor]:
        return self.elbo.last_tensors
