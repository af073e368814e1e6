"""Bayesian dense and convolutional layers whose weights are Pyro sample sites."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn

from pyro_varnet import ops
from pyro_varnet._checks import check_positive_finite
from pyro_varnet.priors import Prior, build_prior

PriorSpec = str | Prior | Callable[[torch.Size], object] | None


def _check_positive_int(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"expected {name} to be a positive int, got {value!r}")


class _BayesLayer(PyroModule):
    """Shared set-up: a weight that is a sample site under ``prior`` (or a parameter if ``None``)."""

    #: sample sites that :class:`~pyro_varnet.guides.NetworkGuide` treats as weights (None: its default family)
    guide_families = {"weight": None}

    def _init_weight(self, shape: torch.Size, prior: PriorSpec, prior_scale: float, df: float) -> None:
        check_positive_finite("prior_scale", prior_scale)
        if not df > 0:
            raise ValueError(f"expected degrees of freedom df > 0, got {df}")
        fan_in = math.prod(shape[1:])
        if prior is None:
            self.prior = None
            self.weight = nn.Parameter(torch.empty(shape).uniform_(-1, 1) / math.sqrt(fan_in))
            return
        # the prior is an object of the layer: its hyperparameters (ARD's lambda) and latent
        # sites (the horseshoe's scales) are named after it, e.g. net.fc1.weight_prior.tau
        self.weight_prior = build_prior(prior, scale=prior_scale, df=df)
        self.weight_prior.setup(shape)
        #: the prior's name (or signature) — what checkpoints record and ``repr`` shows
        self.prior = prior if isinstance(prior, str) else self.weight_prior.signature()
        self._prior_cache: dict = {}
        self.weight = PyroSample(lambda self: self._weight_prior())

    def _weight_prior(self):
        """p(w), built at sample time on the layer's device and dtype (once per device and dtype
        for priors that depend on nothing else)."""
        prior = self.weight_prior
        if not prior.cacheable:
            return prior()
        key = (prior._like.device, prior._like.dtype)
        if key not in self._prior_cache:
            self._prior_cache[key] = prior()
        return self._prior_cache[key]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of earlier releases kept ARD's lambda on the layer as "prior_scale"
        old = f"{prefix}prior_scale_unconstrained"
        if old in state_dict:
            state_dict[f"{prefix}weight_prior.scale_unconstrained"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _init_bias(self, bias: bool, out: int, fan_in: int) -> None:
        # the bias is a deterministic parameter (lecture: "deterministic parameters")
        self.bias = nn.Parameter(torch.empty(out).uniform_(-1, 1) / math.sqrt(fan_in)) if bias else None

    def start_from(self, weight: torch.Tensor, delta: float = 0.1) -> None:
        r"""Let the guide start q(w) at trained weights: means at ``weight`` and standard
        deviations ``delta``·|w| (MOPED, Krishnan et al. 2020), in each family's own terms (see
        :meth:`~pyro_varnet.guides.families.SiteGuide.init_from`). Read by
        :class:`~pyro_varnet.guides.NetworkGuide` when it builds its sites; kept as a
        non-persistent buffer, so it follows ``.to()`` and stays out of checkpoints."""
        if not self.is_bayesian:
            raise ValueError("a deterministic layer (prior=None) has no weight distribution to initialise")
        check_positive_finite("delta", delta)
        expected = self.weight_prior.shape
        weight = weight.detach()
        if weight.shape != expected:
            if weight.dim() + 1 == len(expected) and weight.unsqueeze(-2).shape == expected:  # Conv1d kernels
                weight = weight.unsqueeze(-2)
            else:
                raise ValueError(f"expected a weight of shape {tuple(expected)}, got {tuple(weight.shape)}")
        if not bool(torch.isfinite(weight).all()):
            raise ValueError("the pretrained weight has NaN or infinite entries")
        self.register_buffer("pretrained_weight", weight.clone(), persistent=False)
        self.pretrained_delta = float(delta)

    @property
    def is_bayesian(self) -> bool:
        return self.prior is not None

    def get_extra_state(self) -> dict:
        """The prior's name, so that a checkpoint of another prior is refused on loading."""
        return {"prior": self.prior}

    def set_extra_state(self, state: dict) -> None:
        if state["prior"] != self.get_extra_state()["prior"]:
            raise RuntimeError(f"the state was saved with the prior {state['prior']!r}; this layer has {self.prior!r}")


class BayesLinear(_BayesLayer):
    r"""Dense layer :math:`b = a W^\top + c` with a prior over :math:`W` of shape (out, in).

    :param int in_features: input size. :param int out_features: output size.
    :param bool bias: add a deterministic bias.
    :param prior: a registered name — ``"log-uniform"`` (default), ``"student-t"``, ``"ard"``,
        ``"normal"``, ``"horseshoe"`` (see :mod:`pyro_varnet.priors`) —, a
        :class:`~pyro_varnet.priors.Prior` instance (copied for the layer), a callable
        ``shape -> distribution`` (with all dims as event dims), or ``None`` for an ordinary
        deterministic weight.
    :param float prior_scale: λ initial value for ARD, σ for the normal prior, the global
        scale of the horseshoe.
    :param float df: degrees of freedom of the Student-t prior.

    **References**: VN §3 (variance layer), eq. 39-40 (its local reparameterization).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        prior: PriorSpec = "log-uniform",
        prior_scale: float = 1.0,
        df: float = 1e-16,
    ) -> None:
        super().__init__()
        _check_positive_int(in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self._init_weight(torch.Size([out_features, in_features]), prior, prior_scale, df)
        self._init_bias(bias, out_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expected input with last dimension {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, prior={self.prior!r}"


class BayesConv2d(_BayesLayer):
    r"""2-D convolution with a prior over its kernel of shape (out, in/groups, kh, kw).

    Arguments as :class:`torch.nn.Conv2d`, plus ``prior``, ``prior_scale`` and ``df`` as in
    :class:`BayesLinear`.

    **References**: VN eq. 41-42 (local reparameterization of convolutions).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        prior: PriorSpec = "log-uniform",
        prior_scale: float = 1.0,
        df: float = 1e-16,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, out_channels=out_channels, groups=groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels ({in_channels}, {out_channels}) must be divisible by groups={groups}")
        kh, kw = nn.modules.utils._pair(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        shape = torch.Size([out_channels, in_channels // groups, kh, kw])
        self._init_weight(shape, prior, prior_scale, df)
        self._init_bias(bias, out_channels, math.prod(shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, prior={self.prior!r}"
        )


class BayesConv1d(BayesConv2d):
    r"""1-D convolution with a prior over its kernel, run as a 2-D convolution of height 1.

    Arguments as :class:`torch.nn.Conv1d`, plus ``prior``, ``prior_scale`` and ``df`` as in
    :class:`BayesLinear`. Inputs are (N, C, L). The kernel's sample site has the shape
    (out, in/groups, 1, k) of the equivalent 2-D kernel, so that every handler (local
    reparameterization, stacked weights, pruning, mean propagation) treats it as the 2-D
    convolution it is; ``nn.Conv1d`` weights map to it with ``w.unsqueeze(2)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: int | tuple[int] | str = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        prior: PriorSpec = "log-uniform",
        prior_scale: float = 1.0,
        df: float = 1e-16,
    ) -> None:
        (k,) = nn.modules.utils._single(kernel_size)
        (s,), (d,) = nn.modules.utils._single(stride), nn.modules.utils._single(dilation)
        pad = padding if isinstance(padding, str) else (0, nn.modules.utils._single(padding)[0])
        super().__init__(in_channels, out_channels, (1, k), (1, s), pad, (1, d), groups, bias, prior, prior_scale, df)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expected input of shape (N, {self.in_channels}, L), got {tuple(x.shape)}"
            )
        out = ops.conv2d(x.unsqueeze(2), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return out.squeeze(2)
