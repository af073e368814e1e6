"""Variational families, one per weight site (VN eq. 14).

A family is a small factory: ``family.build(shape)`` returns a :class:`SiteGuide`, a
:class:`~pyro.nn.PyroModule` holding that site's variational parameters whose call
returns the site's distribution q(w).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import biject_to, constraints

from pyro_varnet._checks import check_choice, check_drop_probability, check_finite, check_positive_finite
from pyro_varnet.distributions import (
    GaussianDropoutNormal,
    InputDropout,
    SymmetricBernoulli,
    SymmetricUniform,
    TruncatedNormal,
    ZeroMeanNormal,
    log_alpha_of,
)
from pyro_varnet.poutine.weight_rules import weight_rules

GRANULARITIES = ("layer", "neuron", "weight")


def _floor(weight: torch.Tensor) -> float:
    """A positive floor for |w| (exact zeros in trained weights): 1e-3 of their RMS, at least tiny."""
    rms = float(weight.double().square().mean().sqrt()) if weight.numel() else 0.0
    return max(1e-3 * rms, torch.finfo(weight.dtype).tiny)


def _uniform_init(shape: torch.Size) -> torch.Tensor:
    """U(±1/√fan_in), the initialisation of θ and of the zero-mean σ in the authors' code."""
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)
    bound = 1 / math.sqrt(max(fan_in, 1))
    return torch.empty(shape).uniform_(-bound, bound)


def _check_init_scale(init_scale) -> None:
    if init_scale is not None:
        check_positive_finite("init_scale", init_scale)


class SiteGuide(PyroModule):
    """Variational parameters of one site; calling it returns q(w) with all dims as event.

    A subclass checks its options in :meth:`check_options`, which its ``__init__`` and its
    :class:`Family` (at construction, before any data is seen) both call: one copy of each check.
    """

    support = constraints.real

    def __init__(self, shape: torch.Size, **options) -> None:
        self.check_options(**options)
        super().__init__()
        self.shape = torch.Size(shape)

    @classmethod
    def check_options(cls, **options) -> None:
        """Raise ``ValueError`` for options the family cannot be built with."""

    @property
    def exact_lrt(self) -> bool:
        """Whether local reparameterization is exact for this site: the rules registered for its
        q (:mod:`pyro_varnet.poutine.weight_rules`) give an exact rule (Gaussian q, dropout masks)."""
        q = self.base()
        rules = weight_rules(q)
        return rules.local_reparameterization(q) is not None or rules.per_object_op(q) is not None

    def median(self) -> torch.Tensor:
        """The posterior median: the mean of these symmetric families."""
        return self.base().mean

    def signature(self) -> str:
        """What identifies the family beyond its parameters' names and shapes (checked on loading)."""
        return type(self).__name__

    def base(self) -> dist.Distribution:
        raise NotImplementedError

    def forward(self) -> dist.Distribution:
        return self.base().to_event(len(self.shape))

    def log_alpha(self) -> torch.Tensor:
        r"""Per-weight :math:`\log\alpha = \log\sigma^2 - \log\mu^2` (+∞ for a zero mean)."""
        q = self.base()
        return log_alpha_of(q.loc, q.scale)

    def _param(self) -> torch.Tensor:
        """One of the site's parameters (for the device and dtype of tensors made from nothing)."""
        return next(self.parameters())

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        r"""Start q at trained weights ``weight`` with relative spread ``delta`` (MOPED: mean w,
        standard deviation δ|w|). Families without a free mean start with the same second
        moment (a variance layer: σ = |w|)."""
        raise NotImplementedError(f"the family {self.signature()} cannot start from pretrained weights")


class ZeroMeanSite(SiteGuide):
    r""":math:`q(w) = \mathcal{N}(0, \sigma^2)`; σ stored as ``log_sigma`` (paper) or signed (code)."""

    def __init__(self, shape: torch.Size, parameterization: str = "signed", init_scale: float | None = None):
        super().__init__(shape, parameterization=parameterization, init_scale=init_scale)
        self.parameterization = parameterization
        sigma = _uniform_init(self.shape) if init_scale is None else torch.full(self.shape, float(init_scale))
        if parameterization == "log":
            self.log_sigma = nn.Parameter(sigma.abs().clamp_min(1e-8).log())
        else:
            self.sigma = nn.Parameter(sigma)

    @classmethod
    def check_options(cls, parameterization: str = "signed", init_scale: float | None = None) -> None:
        check_choice("parameterization", parameterization, ("log", "signed"))
        _check_init_scale(init_scale)

    def scale(self) -> torch.Tensor:
        if self.parameterization == "log":
            return self.log_sigma.exp()
        return self.sigma.abs().clamp_min(torch.finfo(self.sigma.dtype).tiny)

    def base(self) -> ZeroMeanNormal:
        return ZeroMeanNormal(self.scale(), validate_args=False)

    def log_alpha(self) -> torch.Tensor:
        return self._param().new_full(self.shape, math.inf)

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        # zero mean: keep E[w^2] = w^2 per weight, sigma = |w|
        sigma = weight.abs().clamp_min(_floor(weight))
        if self.parameterization == "log":
            self.log_sigma.copy_(sigma.log())
        else:
            self.sigma.copy_(sigma)


class GaussianDropoutSite(SiteGuide):
    r""":math:`q(w) = \mathcal{N}(\theta, \alpha\theta^2)` with α shared per layer, neuron or weight."""

    def __init__(self, shape: torch.Size, granularity: str = "layer", init_log_alpha: float = -5.0):
        super().__init__(shape, granularity=granularity, init_log_alpha=init_log_alpha)
        self.granularity = granularity
        alpha_shape = {
            "layer": (),
            "neuron": self.shape[:1] + (1,) * (len(self.shape) - 1),
            "weight": self.shape,
        }[granularity]
        self.theta = nn.Parameter(_uniform_init(self.shape))
        self.log_alpha_param = nn.Parameter(torch.full(alpha_shape, float(init_log_alpha)))

    @classmethod
    def check_options(cls, granularity: str = "layer", init_log_alpha: float = -5.0) -> None:
        check_choice("alpha granularity", granularity, GRANULARITIES)
        check_finite("init_log_alpha", init_log_alpha)

    def base(self) -> GaussianDropoutNormal:
        # valid by construction (scale = sqrt(alpha)|theta| > 0): no per-step argument checks
        return GaussianDropoutNormal(self.theta, self.log_alpha_param, validate_args=False)

    def log_alpha(self) -> torch.Tensor:
        return self.log_alpha_param.expand(self.shape)

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        # N(theta, alpha theta^2) with sigma = delta |theta|: alpha = delta^2 at every granularity
        self.theta.copy_(weight)
        self.log_alpha_param.fill_(2 * math.log(delta))


class AdditiveSite(SiteGuide):
    r""":math:`q(w) = \mathcal{N}(\mu, \sigma^2)` with free ``mu`` and ``log_sigma2``."""

    def __init__(self, shape: torch.Size, init_log_sigma2: float = -10.0):
        super().__init__(shape, init_log_sigma2=init_log_sigma2)
        self.mu = nn.Parameter(_uniform_init(self.shape))
        self.log_sigma2 = nn.Parameter(torch.full(self.shape, float(init_log_sigma2)))

    @classmethod
    def check_options(cls, init_log_sigma2: float = -10.0) -> None:
        check_finite("init_log_sigma2", init_log_sigma2)

    def base(self) -> dist.Normal:
        return dist.Normal(self.mu, (0.5 * self.log_sigma2).exp(), validate_args=False)

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        self.mu.copy_(weight)
        self.log_sigma2.copy_(2 * (delta * weight.abs().clamp_min(_floor(weight))).log())


class SymmetricVarianceSite(SiteGuide):
    r""":math:`q(w) = \theta\,\varepsilon` with a fixed zero-mean noise ε; θ stored signed (|θ| is used)."""

    distribution = SymmetricUniform  # not Gaussian: direct sampling, flipout or moment-matched LRT

    def __init__(self, shape: torch.Size, init_scale: float | None = None):
        super().__init__(shape, init_scale=init_scale)
        theta = _uniform_init(self.shape) if init_scale is None else torch.full(self.shape, float(init_scale))
        self.theta = nn.Parameter(theta)

    @classmethod
    def check_options(cls, init_scale: float | None = None) -> None:
        _check_init_scale(init_scale)

    def base(self) -> dist.Distribution:
        scale = self.theta.abs().clamp_min(torch.finfo(self.theta.dtype).tiny)
        return self.distribution(scale, validate_args=False)

    def log_alpha(self) -> torch.Tensor:
        return self.theta.new_full(self.shape, math.inf)

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        # the same second moment: Var(theta * eps) = theta^2 Var(eps) = w^2
        unit_std = float(self.distribution(torch.ones(()), validate_args=False).variance.sqrt())
        self.theta.copy_(weight.abs().clamp_min(_floor(weight)) / unit_std)


class UniformVarianceSite(SymmetricVarianceSite):
    r""":math:`q(w) = \theta\,U(-1, 1)`, a uniform variance layer (variance θ²/3)."""

    distribution = SymmetricUniform


class BernoulliVarianceSite(SymmetricVarianceSite):
    r""":math:`q(w) = \pm\theta` with probability ½ each, a Bernoulli variance layer (variance θ²)."""

    distribution = SymmetricBernoulli


class DropoutSite(SiteGuide):
    r"""Binary dropout of the layer's inputs, :math:`W = \theta\,\mathrm{diag}(z)/(1-p)`."""

    def __init__(self, shape: torch.Size, p: float = 0.5):
        super().__init__(shape, p=p)
        if len(self.shape) < 2:
            raise ValueError(f"binary dropout acts on a weight's inputs; got a site of shape {tuple(self.shape)}")
        self.p = p
        self.theta = nn.Parameter(_uniform_init(self.shape))

    @classmethod
    def check_options(cls, p: float = 0.5) -> None:
        check_drop_probability(p)

    def base(self) -> InputDropout:
        return InputDropout(self.theta, self.p)

    @torch.no_grad()
    def init_from(self, weight: torch.Tensor, delta: float) -> None:
        self.theta.copy_(weight)  # dropout's rate p is the family's; delta does not apply

    def signature(self) -> str:
        return f"{type(self).__name__}(p={self.p})"

    def log_alpha(self) -> torch.Tensor:
        return self.theta.new_full(self.shape, math.log(self.p / (1 - self.p)) if self.p > 0 else -math.inf)


class MagnitudeSite(SiteGuide):
    r""":math:`q(g) = \mathcal{N}(m, \lambda^2)` with :math:`\lambda = m\sqrt\alpha` optimised as log λ (WN eq. 31)."""

    def __init__(self, shape: torch.Size, init_mean: float = 1.0, init_log_alpha: float = -8.0):
        super().__init__(shape, init_mean=init_mean, init_log_alpha=init_log_alpha)
        self.m = nn.Parameter(torch.full(self.shape, float(init_mean)))
        self.log_lambda = nn.Parameter(torch.full(self.shape, 0.5 * init_log_alpha + math.log(abs(init_mean))))

    @classmethod
    def check_options(cls, init_mean: float = 1.0, init_log_alpha: float = -8.0) -> None:
        check_finite("init_mean", init_mean)
        if init_mean == 0:
            raise ValueError("expected a non-zero init_mean (λ = m√α)")
        check_finite("init_log_alpha", init_log_alpha)

    def base(self) -> dist.Normal:
        return dist.Normal(self.m, self.log_lambda.exp(), validate_args=False)


class AngleSite(SiteGuide):
    r""":math:`q(\varepsilon) = t\mathcal{N}_{[0,\pi/2]}(\mu, \sigma^2)` (WN eq. 29, 32), σ as log σ."""

    exact_lrt = True  # drawn per object by the weight handlers (WN eq. 48)

    def __init__(self, shape: torch.Size, init_loc: float = 0.0, init_scale: float = 0.05):
        super().__init__(shape, init_loc=init_loc, init_scale=init_scale)
        self.mu = nn.Parameter(torch.full(self.shape, float(init_loc)))
        self.log_sigma = nn.Parameter(torch.full(self.shape, math.log(init_scale)))

    @classmethod
    def check_options(cls, init_loc: float = 0.0, init_scale: float = 0.05) -> None:
        check_finite("init_loc", init_loc)
        check_positive_finite("init_scale", init_scale)

    def base(self) -> TruncatedNormal:
        zero = torch.zeros_like(self.mu)
        return TruncatedNormal(self.mu, self.log_sigma.exp(), zero, zero + math.pi / 2, validate_args=False)

    def log_alpha(self) -> torch.Tensor:
        return self.mu.new_full(self.shape, math.nan)


class Family:
    """A variational family: a recipe that builds a :class:`SiteGuide` for a weight shape.

    A subclass names its :class:`SiteGuide` class in ``site`` and passes its options to
    ``Family.__init__`` by keyword: they are checked at once by the site's
    :meth:`~SiteGuide.check_options`, kept as attributes and given to every site it builds.
    """

    name = "family"
    #: the SiteGuide class built with this family's options (or override :meth:`build`)
    site: type[SiteGuide] | None = None

    def __init__(self, **options) -> None:
        if self.site is not None:
            self.site.check_options(**options)
        vars(self).update(options)

    def build(self, shape: torch.Size) -> SiteGuide:
        if self.site is None:
            raise NotImplementedError(f"{type(self).__name__} names no site class and has no build()")
        return self.site(shape, **vars(self))

    #: the family's q is a distribution on the real line (checked against the prior's support)
    real_valued = True

    def build_site(self, shape: torch.Size, support=constraints.real) -> SiteGuide:
        """The :class:`SiteGuide` of a site of ``shape`` whose prior has ``support``."""
        if self.real_valued and support is not None and not is_real(support):
            raise ValueError(
                f"family {self.name!r} gives a real-valued q, but the site's support is {support}; "
                "use the 'auto' family (Auto) for constrained sites"
            )
        return self.build(shape)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ZeroMean(Family):
    r"""Variance layer :math:`\mathcal{N}(0, \sigma^2)` (VN §3, eq. 14 "zero-mean").

    :param str parameterization: ``"signed"`` (default) optimises a signed σ initialised
        U(±1/√fan_in), as the authors' PyTorch code does; ``"log"`` optimises log σ (VN
        appendix E; family name ``"zero-mean-log"``). Under Adam the signed σ moves by about
        the learning rate per step, a large relative change for σ ~ 1/√fan_in, while log σ
        moves σ by only that fraction of itself: on MNIST LeNet-5 the signed variance layer
        reaches 99.3 % (20-sample ensemble) in 5 epochs, the log one 98.5 % in 30.
    :param float init_scale: constant initial σ; default U(0, 1/√fan_in) per weight.
    """

    name = "zero-mean"
    site = ZeroMeanSite

    def __init__(self, parameterization: str = "signed", init_scale: float | None = None) -> None:
        super().__init__(parameterization=parameterization, init_scale=init_scale)


class GaussianDropout(Family):
    r"""Gaussian dropout posterior :math:`\mathcal{N}(\theta, \alpha\theta^2)` (Kingma et al. 2015).

    :param str granularity: α per ``"layer"``, per output ``"neuron"`` or per ``"weight"``
        (VN eq. 14).
    :param float init_log_alpha: initial log α (-5 in the authors' PyTorch code).
    """

    name = "gaussian-dropout"
    site = GaussianDropoutSite

    def __init__(self, granularity: str = "layer", init_log_alpha: float = -5.0) -> None:
        super().__init__(granularity=granularity, init_log_alpha=init_log_alpha)


class Additive(Family):
    r"""Additive parameterization :math:`\mathcal{N}(\mu, \sigma^2)` (Molchanov et al. 2017).

    :param float init_log_sigma2: initial log σ² (-10, as Sparse VD).
    """

    name = "additive"
    site = AdditiveSite

    def __init__(self, init_log_sigma2: float = -10.0) -> None:
        super().__init__(init_log_sigma2=init_log_sigma2)


class UniformVariance(Family):
    r"""Uniform variance layer :math:`w = \theta\,\varepsilon`, :math:`\varepsilon \sim U(-1, 1)` (VN §3.3).

    Not Gaussian, so it trains by direct weight sampling (or under ``flipout`` or
    ``local_reparameterization(moment_matching=True)``, the fast-dropout approximation).
    Its KL to the log-uniform prior is a constant (0.361 nats per weight).

    :param float init_scale: constant initial θ; default U(±1/√fan_in) per weight.
    """

    name = "uniform"
    site = UniformVarianceSite

    def __init__(self, init_scale: float | None = None) -> None:
        super().__init__(init_scale=init_scale)


class BernoulliVariance(UniformVariance):
    r"""Bernoulli variance layer :math:`w = \theta\,(2\varepsilon - 1)`, :math:`\varepsilon \sim
    \mathrm{Bernoulli}(\tfrac12)` (VN §3.3).

    Not Gaussian: trains by direct weight sampling, ``flipout`` or the moment-matched LRT
    (variance θ², equal to a Gaussian variance layer under fast dropout). Its KL to the
    log-uniform prior is infinite and constant in θ; it is registered as 0.

    :param float init_scale: constant initial θ; default U(±1/√fan_in) per weight.
    """

    name = "bernoulli"
    site = BernoulliVarianceSite


class BinaryDropout(Family):
    r"""Binary dropout of the layer's inputs with drop probability ``p`` — the "Dropout" rows of
    VN Table 2 as a family (Gal & Ghahramani 2016), so a dropout network trains, predicts
    (mean propagation = weight scaling rule) and reports like the variational ones.

    :param float p: drop probability (default 0.5).
    """

    name = "dropout"
    site = DropoutSite

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p=p)


class Magnitude(Family):
    r"""WeightNorm magnitude :math:`q(g) = \mathcal{N}(m, \alpha m^2)` in the additive parameterization
    λ = m√α (WN eq. 29, 31); KL to the log-uniform prior by WN eq. 37.

    :param float init_mean: initial m (g = 1, as the thesis). :param float init_log_alpha: initial log α.
    """

    name = "magnitude"
    site = MagnitudeSite

    def __init__(self, init_mean: float = 1.0, init_log_alpha: float = -8.0) -> None:
        super().__init__(init_mean=init_mean, init_log_alpha=init_log_alpha)


class Angle(Family):
    r"""WeightNorm rotation angle :math:`q(\varepsilon) = t\mathcal{N}_{[0,\pi/2]}(\mu, \sigma^2)`,
    reparameterized by the inverse CDF (WN eq. 32, appendix B); KL to U[0, π/2] by WN eq. 39.

    :param float init_loc: initial μ. :param float init_scale: initial σ > 0.
    """

    name = "angle"
    real_valued = False  # q lives on [0, π/2], the support of the angle's uniform prior
    site = AngleSite

    def __init__(self, init_loc: float = 0.0, init_scale: float = 0.05) -> None:
        super().__init__(init_loc=init_loc, init_scale=init_scale)


class AutoSite(SiteGuide):
    r"""A mean-field Normal in the unconstrained space of a site's support, pushed through
    ``biject_to(support)`` (as Pyro's ``AutoNormal``): :math:`q = T_\#\mathcal{N}(\mu, \sigma^2)`.

    For a real support q is an ordinary :class:`~pyro.distributions.Normal` (so analytic KLs and
    local reparameterization apply); otherwise a ``TransformedDistribution`` whose KL is
    estimated by Monte Carlo. ``log_alpha`` is undefined (NaN).
    """

    exact_lrt = True  # q is Gaussian in its own space; such sites do not feed the layer ops

    def __init__(self, shape: torch.Size, support=constraints.real, init_scale: float = 0.1) -> None:
        super().__init__(shape, init_scale=init_scale)
        self.support = support
        self.transform = biject_to(support)
        unconstrained = self.transform.inv.forward_shape(self.shape)
        self.loc = nn.Parameter(torch.zeros(unconstrained))  # the feasible point T(0), as AutoNormal's default
        self.log_scale = nn.Parameter(torch.full(unconstrained, math.log(init_scale)))

    @classmethod
    def check_options(cls, init_scale: float = 0.1) -> None:
        check_positive_finite("init_scale", init_scale)

    def _normal(self) -> dist.Normal:
        return dist.Normal(self.loc, self.log_scale.exp(), validate_args=False)

    def base(self) -> dist.Distribution:
        if is_real(self.support):
            return self._normal()
        if _is_positive(self.support):  # exp of a Normal: a LogNormal, whose mean is known
            return dist.LogNormal(self.loc, self.log_scale.exp(), validate_args=False)
        return dist.TransformedDistribution(self._normal().to_event(self.loc.dim()), self.transform)

    def forward(self) -> dist.Distribution:
        q = self.base()
        elementwise = is_real(self.support) or _is_positive(self.support)
        return q.to_event(len(self.shape)) if elementwise else q

    def median(self) -> torch.Tensor:
        return self.transform(self.loc)

    def log_alpha(self) -> torch.Tensor:
        return self.loc.new_full(self.shape, math.nan)


class Auto(Family):
    """Support-aware mean-field Normal for latent sites that are not weights of Bayesian layers
    (noise scales, a user's own ``PyroSample`` sites): the AutoNormal of Pyro, one site at a time.

    :param float init_scale: initial σ in the unconstrained space (AutoNormal's 0.1).
    """

    name = "auto"
    site = AutoSite

    def __init__(self, init_scale: float = 0.1) -> None:
        super().__init__(init_scale=init_scale)

    def build_site(self, shape: torch.Size, support=constraints.real) -> SiteGuide:
        return AutoSite(shape, constraints.real if support is None else support, self.init_scale)


#: constraints a guide's state can name (for :meth:`NetworkGuide.state_dict` round trips)
_SUPPORTS = {
    "real": constraints.real,
    "positive": constraints.positive,
    "nonnegative": constraints.nonnegative,
    "unit_interval": constraints.unit_interval,
    "simplex": constraints.simplex,
    "lower_cholesky": constraints.lower_cholesky,
    "corr_cholesky": constraints.corr_cholesky,
}


def plain_support(support):
    """``support`` with torch's ``MixtureSameFamilyConstraint`` (a scale-mixture prior's support)
    replaced by its components' support, which is the same set."""
    if isinstance(support, constraints.independent):
        return constraints.independent(plain_support(support.base_constraint), support.reinterpreted_batch_ndims)
    mixture = getattr(constraints, "MixtureSameFamilyConstraint", None)
    if mixture is not None and isinstance(support, mixture):
        return plain_support(support.base_constraint)
    return support


def _elementwise(support):
    """``support`` without its ``independent(..., k)`` wrappers."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _is_positive(support) -> bool:
    """Whether ``support`` is the half-line above 0, open or closed (``positive``, ``nonnegative``,
    possibly as ``independent(..., k)``): ``biject_to`` maps it by exp alone."""
    support = _elementwise(support)
    half_line = (constraints._GreaterThan, constraints._GreaterThanEq)
    return isinstance(support, half_line) and float(support.lower_bound) == 0.0


def is_real(support) -> bool:
    """Whether ``support`` is the real line (possibly as ``independent(real, k)``)."""
    return _elementwise(support) is constraints.real


def encode_support(support) -> list | None:
    """A support as plain data: ``["positive"]``, ``["interval", low, high]``,
    ``["independent", [...], k]`` (``None`` if it has no such form)."""
    if isinstance(support, constraints.independent):
        inner = encode_support(support.base_constraint)
        return None if inner is None else ["independent", inner, support.reinterpreted_batch_ndims]
    for name, c in _SUPPORTS.items():
        if support is c:
            return [name]
    if isinstance(support, constraints.interval):
        return ["interval", float(support.lower_bound), float(support.upper_bound)]
    if isinstance(support, constraints.greater_than):
        return ["greater_than", float(support.lower_bound)]
    if isinstance(support, constraints.less_than):
        return ["less_than", float(support.upper_bound)]
    return None


def decode_support(code: list | None):
    """Inverse of :func:`encode_support`."""
    if code is None:
        raise ValueError("this guide's state names a site whose support cannot be restored; call the guide once first")
    name, *args = code
    if name == "independent":
        return constraints.independent(decode_support(args[0]), args[1])
    return _SUPPORTS[name] if name in _SUPPORTS else getattr(constraints, name)(*args)


FAMILIES = {
    "zero-mean": ZeroMean,
    "layer": lambda: GaussianDropout("layer"),
    "neuron": lambda: GaussianDropout("neuron"),
    "weight": lambda: GaussianDropout("weight"),
    "additive": Additive,
    "uniform": UniformVariance,
    "bernoulli": BernoulliVariance,
    "dropout": BinaryDropout,
    "zero-mean-log": lambda: ZeroMean("log"),
    "magnitude": Magnitude,
    "angle": Angle,
    "auto": Auto,
}


def register_family(name: str):
    """Decorator: make a :class:`Family` subclass (or a factory returning one) available by
    ``name`` (``NetworkGuide(default=name)``, ``families={...: name}``, the CLI's guide specs).
    A family whose q is a ``Normal`` works with every handler as it is; a q of a new
    distribution type registers :class:`~pyro_varnet.poutine.WeightRules` for it
    (:func:`~pyro_varnet.poutine.register_weight_rules`: its local reparameterization, mean
    point, pruning σ). Example: ``tests/guides/cauchy_family.py``."""

    def decorate(factory):
        if name in FAMILIES and FAMILIES[name] is not factory:
            raise ValueError(f"a family called {name!r} is registered already")
        FAMILIES[name] = factory
        return factory

    return decorate


def make_family(spec: Family | str) -> Family:
    """A :class:`Family` from itself or from a name in :data:`FAMILIES`."""
    if isinstance(spec, Family):
        return spec
    check_choice("a Family or family name", spec, FAMILIES)
    return FAMILIES[spec]()
