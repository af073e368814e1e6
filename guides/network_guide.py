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
from torch.distributions import transform_to

from pyro_varnet._device import reference_tensor
from pyro_varnet._sites import site_matches
from pyro_varnet.state import sync_from_param_store

from .families import Family, SiteGuide, decode_support, encode_support, make_family, plain_support


def _key(name: str) -> str:
    return name.replace(".", "__")


class NetworkGuide(PyroModule):
    r"""Mean-field guide over every latent site of ``model``, one family per site.

    Behaves like a Pyro AutoGuide: call it with the model's arguments; its parameters are
    created from one traced run of the model at the first call, on the device and in the
    dtype of the model's parameters (or of the first floating input); it works with
    ``SVI``, ``Predictive`` and ``poutine.trace``. Each site is sampled directly from its
    q(w), so Pyro's ``TraceMeanField_ELBO`` uses the registered KL divergences and
    :func:`~pyro_varnet.poutine.local_reparameterization` sees the Gaussian.

    Which family a site gets, first rule that applies:

    1. the first selector in ``families`` that matches it;
    2. a site of a Bayesian layer (a module that lists the attribute in its
       ``guide_families``, as :class:`~pyro_varnet.models.BayesLinear` does for ``weight``):
       the family the layer suggests, else ``default``;
    3. any other global latent site (a noise scale, a user's own ``PyroSample``):
       ``others`` — by default :class:`~pyro_varnet.guides.Auto`, a mean-field Normal in the
       unconstrained space of the site's support, as Pyro's ``AutoNormal``. To give such a
       site another Pyro guide instead, hide it from this one and compose the two with
       ``AutoGuideList`` (see the README).

    >>> guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})  # doctest: +SKIP

    State: ``guide.state_dict()`` records the sites it has built, so
    ``NetworkGuide(model, ...).load_state_dict(sd)`` restores a fresh guide without a first
    call. With Pyro's global parameter store (the default), values loaded into the store with
    ``pyro.get_param_store().load(path)`` are taken into the guide and the model at the
    guide's first call (the store wins, as for Pyro's ``PyroParam``).

    :param callable model: the Pyro model.
    :param default: family for the weights of Bayesian layers not matched in ``families`` (a
        :class:`Family` or a name: ``"zero-mean"``, ``"layer"``, ``"neuron"``, ``"weight"``,
        ``"additive"``, ...).
    :param dict families: site selector → family; a selector is a site name, a glob or a
        module path such as ``"fc1"``. The first matching selector wins.
    :param others: family for latent sites that are not weights of Bayesian layers.

    **References**: VN eq. 14 (the families).
    """

    def __init__(
        self,
        model: Callable,
        default: Family | str = "layer",
        families: Mapping[str, Family | str] | None = None,
        others: Family | str = "auto",
    ) -> None:
        super().__init__(name="guide")
        self.model = (model,)  # a tuple, so the model's parameters are not the guide's
        self.default = make_family(default)
        self.families = {key: make_family(f) for key, f in (families or {}).items()}
        self.others = make_family(others)
        self.sites = PyroModule[nn.ModuleDict]()
        self._names: list[str] = []

    def _family_for(self, name: str) -> Family:
        for key, family in self.families.items():
            if site_matches(name, key):
                return family
        # a Bayesian layer names its weight sites (and may suggest their families)
        module, attr = self._owner(name)
        suggested = getattr(module, "guide_families", {})
        if attr not in suggested:
            return self.others
        return self.default if suggested[attr] is None else make_family(suggested[attr])

    def _owner(self, name: str):
        """The module that owns site ``name`` and the attribute's name (None if not a module's)."""
        model = self.model[0]
        owner, _, attr = name.rpartition(".")
        if not isinstance(model, nn.Module):
            return None, attr
        try:
            return (model.get_submodule(owner) if owner else model), attr
        except AttributeError:
            return None, attr

    def _pretrained(self, name: str):
        """(weight, delta) when the site's layer was given trained weights to start from
        (:meth:`~pyro_varnet.models.BayesLinear.start_from`)."""
        module, attr = self._owner(name)
        if attr != "weight" or getattr(module, "pretrained_weight", None) is None:
            return None
        return module.pretrained_weight, module.pretrained_delta

    def _setup_prototype(self, *args, **kwargs) -> None:
        like = reference_tensor(self.model[0], args, kwargs)

        def feasible(site):
            # a point in the support (priors such as LogUniform cannot be sampled)
            if site["fn"].support.is_discrete:  # e.g. the labels when the guide is called without them
                return site["fn"].sample()
            t = transform_to(plain_support(site["fn"].support))
            shape = t.inv.forward_shape(site["fn"].shape())
            return t(like.new_zeros(shape))

        with poutine.block(), InitMessenger(feasible):
            trace = poutine.trace(self.model[0]).get_trace(*args, **kwargs)
        for name, site in trace.iter_stochastic_nodes():
            if site_is_subsample(site) or site["cond_indep_stack"]:
                continue  # local latent variables (e.g. unobserved labels) stay with the model
            fn = site["fn"]
            self._add_site(name, self._family_for(name).build_site(fn.shape(), plain_support(fn.support)), like)
            start = self._pretrained(name)
            if start is not None:
                self.site(name).init_from(*start)
        unused = [k for k in self.families if not any(site_matches(n, k) for n in self._names)]
        if unused:
            raise ValueError(f"family selectors {unused} match no latent site; sites are {self._names}")
        sync_from_param_store(self, self.model[0])

    def _add_site(self, name: str, site: SiteGuide, like: torch.Tensor) -> None:
        self.sites[_key(name)] = site.to(device=like.device, dtype=like.dtype)
        self._names.append(name)

    # state ---------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        """The built sites (name, shape, support, family), so that a fresh guide can rebuild them
        and a guide of other families refuses the state."""
        return {
            "sites": [
                [n, list(self.site(n).shape), encode_support(self.site(n).support), self.site(n).signature()]
                for n in self._names
            ]
        }

    def set_extra_state(self, state: dict) -> None:
        saved = [n for n, *_ in state["sites"]]
        if self._names and saved != self._names:
            raise RuntimeError(f"the state was saved for the sites {saved}; this guide has {self._names}")
        like = reference_tensor(self.model[0], (), {})
        for name, shape, support, signature in state["sites"]:
            if name not in self._names:
                self._add_site(
                    name, self._family_for(name).build_site(torch.Size(shape), decode_support(support)), like
                )
            here = self.site(name).signature()
            if here != signature:
                raise RuntimeError(f"site {name!r} was trained with the family {signature}; this guide gives it {here}")

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
        """Posterior medians of every site: the means of the weight families (zero for variance
        layers), the transformed location for :class:`Auto` sites."""
        return {name: self.site(name).median().detach() for name in self._names}

    @torch.no_grad()
    def log_alpha(self) -> dict[str, torch.Tensor]:
        r"""Per-weight :math:`\log\alpha` of every site (+∞ for zero-mean sites, NaN where undefined)."""
        return {name: self.site(name).log_alpha().detach() for name in self._names}

    @property
    def exact_lrt(self) -> bool:
        """Whether every site is Gaussian, so local reparameterization is exact."""
        return all(self.site(n).exact_lrt for n in self._names)


__all__ = ["NetworkGuide"]
