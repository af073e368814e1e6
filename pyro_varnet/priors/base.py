"""Priors as objects, and the registry that maps names to them.

A :class:`Prior` knows the distribution of a weight tensor of a given shape. It is a
:class:`~pyro.nn.PyroModule` owned by its layer (attribute ``weight_prior``), so it may own
learnable hyperparameters (``PyroParam``: ARD's λ, learned by empirical Bayes, VN eq. 11) and
latent sites of its own (``PyroSample``: the horseshoe's global and local scales), named after
the layer (``net.fc1.weight_prior.tau``). :class:`~pyro_varnet.guides.NetworkGuide` gives such
latent sites its ``others`` family (the support-aware :class:`~pyro_varnet.guides.Auto`).

A new prior is one file: a subclass of :class:`Prior` decorated with :func:`register_prior`,
plus its import in ``pyro_varnet/priors/__init__.py`` (and, if it has an analytic KL to some
posterior family, a ``torch.distributions.register_kl`` next to its distribution).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution
from pyro.nn import PyroModule

from .._checks import check_choice

#: registered prior classes by name
REGISTRY: dict[str, type[Prior]] = {}


def register_prior(name: str) -> Callable[[type[Prior]], type[Prior]]:
    """Class decorator: make a :class:`Prior` subclass available under ``name`` (layers'
    ``prior="name"``, :func:`~pyro_varnet.models.bayesian`, the CLI's ``--prior``)."""

    def decorate(cls: type[Prior]) -> type[Prior]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"a prior called {name!r} is registered already ({REGISTRY[name].__name__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorate


def prior_names() -> tuple[str, ...]:
    """The names of the registered priors."""
    return tuple(REGISTRY)


class Prior(PyroModule):
    r"""The prior of one weight tensor.

    Subclasses implement :meth:`distribution` and, when they own parameters or latent sites
    whose shapes follow the weight's, create them in :meth:`setup`. ``self.shape`` is the
    weight's shape and ``self._like`` a scalar buffer on the layer's device and dtype (it
    follows ``.to()``): tensors built at sample time take their device and dtype from it.

    :attr:`cacheable` priors (no parameters, no latent sites) are built once per device and
    dtype by the layer.
    """

    name = "prior"
    #: True when :meth:`distribution` depends on nothing but the shape, device and dtype
    cacheable = False
    #: True when the prior has a scale that :meth:`set_scale` may fix (reads ``fixed_scale``)
    has_scale = False

    def __init__(self) -> None:
        super().__init__()
        self.shape: torch.Size | None = None
        self.register_buffer("_like", torch.zeros(()), persistent=False)

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> Prior:
        """The prior called by its name, from the layers' generic options (``prior_scale``,
        ``df``); each prior takes what it uses."""
        return cls()

    def setup(self, shape: torch.Size) -> None:
        """Called once by the layer with its weight's shape."""
        self.shape = torch.Size(shape)

    def set_scale(self, scale: torch.Tensor) -> None:
        """Fix the prior's scale to the tensor ``scale`` (broadcast to the weight's shape; a
        ``fixed_scale`` buffer), as ``make_prior(..., scale=tensor)`` does. A prior without a
        scale (log-uniform, Student-t) ignores it."""
        if self.has_scale:
            self.register_buffer("fixed_scale", torch.as_tensor(scale).detach().expand(self.shape).clone())

    def distribution(self) -> TorchDistribution:
        """p(w) over the whole weight tensor (all dims as event dims)."""
        raise NotImplementedError

    def forward(self) -> TorchDistribution:
        if self.shape is None:
            raise RuntimeError(f"{type(self).__name__}.setup(shape) was not called")
        return self.distribution()

    def signature(self) -> str:
        """What identifies the prior in a checkpoint (a state saved with another is refused)."""
        return self.name

    def extra_repr(self) -> str:
        return self.signature()


def build_prior(spec, scale: float = 1.0, df: float = 1e-16) -> Prior:
    """A fresh :class:`Prior` from a registered name, a :class:`Prior` (copied, so that every
    layer owns its own) or a callable ``shape -> distribution``."""
    if isinstance(spec, Prior):
        if spec.shape is not None:
            raise ValueError(f"{spec!r} belongs to a layer already; pass a new instance (or its name)")
        return copy.deepcopy(spec)
    if isinstance(spec, str):
        check_choice("prior", spec, prior_names())
        return REGISTRY[spec].from_options(scale=scale, df=df)
    if callable(spec):
        from .callable import CallablePrior

        return CallablePrior(spec)
    raise TypeError(f"expected a prior name, a Prior or a callable shape -> distribution, got {spec!r}")


def make_prior(
    name: str,
    shape: torch.Size | tuple,
    *,
    scale: torch.Tensor | float = 1.0,
    df: float = 1e-16,
    like: torch.Tensor | None = None,
) -> TorchDistribution:
    r"""The distribution of the prior called ``name`` over a weight tensor of ``shape``, outside
    any layer (all dimensions as event).

    :param str name: a registered name: ``"log-uniform"`` (VN eq. 6), ``"student-t"`` (VN eq.
        9, with ``df``), ``"ard"`` (VN eq. 11, ``scale`` is λ), ``"normal"`` (N(0,
        ``scale``²)), ``"horseshoe"`` (``scale`` is the global scale; its scales are drawn).
    :param like: a tensor whose device and dtype the prior's tensors take.
    """
    prior = build_prior(name, scale=float(scale) if not torch.is_tensor(scale) else 1.0, df=df)
    prior.setup(torch.Size(shape))
    if torch.is_tensor(scale):
        prior.set_scale(scale)
    if like is None:
        like = scale if torch.is_tensor(scale) else torch.zeros(())
    prior.to(device=like.device, dtype=like.dtype)
    return prior()
