"""A guide for a whole network, composed of one variational family per weight site."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.nn import PyroModule
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_varnet._sites import site_matches

from .families import Family, SiteGuide, make_family


def _init_to_zero(site) -> torch.Tensor:
    # priors such as LogUniform cannot be sampled; zeros are enough to learn shapes
    return torch.zeros(site["fn"].shape())


def _key(name: str) -> str:
    return name.replace(".", "__")


class NetworkGuide(PyroModule):
    r"""Mean-field guide over every latent weight site of ``model``, one family per site.

    Behaves like a Pyro AutoGuide: call it with the model's arguments; its parameters are
    created from one traced run of the model at the first call; it works with ``SVI``,
    ``Predictive`` and ``poutine.trace``. Each site is sampled directly from its q(w), so
    Pyro's ``TraceMeanField_ELBO`` uses the registered KL divergences and
    :func:`~pyro_varnet.poutine.local_reparameterization` sees the Gaussian.

    >>> guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})  # doctest: +SKIP

    :param callable model: the Pyro model.
    :param default: family for sites not matched in ``families`` (a :class:`Family` or a
        name: ``"zero-mean"``, ``"layer"``, ``"neuron"``, ``"weight"``, ``"additive"``).
    :param dict families: site selector → family; a selector is a site name, a glob or a
        module path such as ``"fc1"``. The first matching selector wins.

    **References**: VN eq. 14 (the families); DESIGN §4.
    """

    def __init__(
        self,
        model: Callable,
        default: Family | str = "layer",
        families: Mapping[str, Family | str] | None = None,
    ) -> None:
        super().__init__(name="guide")
        self.model = (model,)  # a tuple, so the model's parameters are not the guide's
        self.default = make_family(default)
        self.families = {key: make_family(f) for key, f in (families or {}).items()}
        self.sites = PyroModule[nn.ModuleDict]()
        self._names: list[str] = []

    def _family_for(self, name: str) -> Family:
        for key, family in self.families.items():
            if site_matches(name, key):
                return family
        # a layer may name the families its sites need (weight-normalized layers: g and angle)
        model = self.model[0]
        owner, _, attr = name.rpartition(".")
        if isinstance(model, nn.Module):
            try:
                module = model.get_submodule(owner) if owner else model
            except AttributeError:
                module = None
            suggested = getattr(module, "guide_families", {}).get(attr)
            if suggested is not None:
                return make_family(suggested)
        return self.default

    def _setup_prototype(self, *args, **kwargs) -> None:
        with poutine.block(), InitMessenger(_init_to_zero):
            trace = poutine.trace(self.model[0]).get_trace(*args, **kwargs)
        for name, site in trace.iter_stochastic_nodes():
            if site_is_subsample(site) or site["cond_indep_stack"]:
                continue  # local latent variables (e.g. unobserved labels) stay with the model
            self.sites[_key(name)] = self._family_for(name).build(site["value"].shape).to(site["value"].device)
            self._names.append(name)
        unused = [k for k in self.families if not any(site_matches(n, k) for n in self._names)]
        if unused:
            raise ValueError(f"family selectors {unused} match no latent site; sites are {self._names}")

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if not self._names:
            self._setup_prototype(*args, **kwargs)
        return {name: pyro.sample(name, self.sites[_key(name)]()) for name in self._names}

    # accessors -------------------------------------------------------------------------
    @property
    def site_names(self) -> list[str]:
        """Latent sites, in model order (empty before the first call)."""
        return list(self._names)

    def site(self, name: str) -> SiteGuide:
        """The :class:`SiteGuide` of site ``name``."""
        return self.sites[_key(name)]

    def distributions(self) -> dict[str, pyro.distributions.Distribution]:
        """q(w) of every site."""
        return {name: self.site(name)() for name in self._names}

    @torch.no_grad()
    def median(self) -> dict[str, torch.Tensor]:
        """Posterior means (= medians) of every site; zero for variance layers."""
        return {name: self.site(name).base().mean.detach() for name in self._names}

    @torch.no_grad()
    def log_alpha(self) -> dict[str, torch.Tensor]:
        r"""Per-weight :math:`\log\alpha` of every site (+∞ for zero-mean sites)."""
        return {name: self.site(name).log_alpha().detach() for name in self._names}

    @property
    def exact_lrt(self) -> bool:
        """Whether every site is Gaussian, so local reparameterization is exact."""
        return all(self.site(n).exact_lrt for n in self._names)
