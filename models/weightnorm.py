r"""Weight-normalized layers with direction and magnitude noise (the thesis, WN).

A weight vector is :math:`w = g\,\hat v`, :math:`\hat v = v/\lVert v\rVert` (WN eq. 14), per
output neuron / channel or, with ``reverse=True`` (dense layers, "FC reverse", WN §4.3), per
input neuron.

* :class:`WeightNormLinear` / :class:`WeightNormConv2d` — the variational model of WN §4.1:
  sample sites ``g`` (log-uniform prior) and ``angle`` (uniform prior on [0, π/2]); the
  direction is :math:`\hat v` rotated by the angle towards a uniform tangent direction φ
  (:math:`\cos\varepsilon\,\hat v + \sin\varepsilon\,\phi`, WN eq. 23), and the
  pre-activations are :math:`y = g\,(\cos\varepsilon\,\hat v^\top x + \sin\varepsilon\,\phi^\top x)`
  (eq. 47-48). Use them with :func:`weightnorm_families` in a
  :class:`~pyro_varnet.guides.NetworkGuide` (q(g) = N(m, λ²) additive, eq. 31; q(ε) =
  tN[0, π/2](μ, σ²), eq. 32). Under ``local_reparameterization`` g and ε are drawn per object
  (eq. 45, 48).
* :class:`NoisyWeightNormLinear` / :class:`NoisyWeightNormConv2d` — non-variational noise
  injection with fixed hyperparameters (WN §3), on the weights or, for dense layers, on the
  activations ("signal rotation", §3.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import Uniform
from pyro.nn import PyroModule, PyroSample
from torch import nn

from pyro_varnet import ops
from pyro_varnet._checks import check_choice
from pyro_varnet.directions import (
    DIRECTION_NOISES,
    HALF_PI,
    direction_noise,
    magnitude_noise,
    mean_direction_length,
    normalize,
)
from pyro_varnet.distributions import LogUniform

from .networks import MLP


def _init_v(shape) -> torch.Tensor:
    fan_in = math.prod(shape[1:])
    return torch.empty(shape).uniform_(-1, 1) / math.sqrt(fan_in)


def _init_weightnorm(module: nn.Module, shape, bias: bool, magnitude: bool) -> None:
    """Direction ``v`` of ``shape`` (out, in, ...), a zero ``bias`` per output if asked, and —
    for the non-variational layers — a deterministic magnitude ``g = 1`` per output."""
    module.v = nn.Parameter(_init_v(shape))
    if magnitude:
        module.g = nn.Parameter(torch.ones(shape[0]))
    module.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None


class _WeightNormBase(PyroModule):
    #: guide families NetworkGuide uses for this layer's sites unless told otherwise
    guide_families = {"g": "magnitude", "angle": "angle"}

    def _init_sites(self, n: int) -> None:
        self.g = PyroSample(LogUniform((n,)).to_event(1))
        # built at sample time on v's device and dtype, so that .to() / .double() carry it along
        self.angle = PyroSample(lambda self: self._angle_prior(n))

    def _angle_prior(self, n: int) -> Uniform:
        zero = self.v.new_zeros(n)
        return Uniform(zero, zero + HALF_PI).to_event(1)

    def _direction(self) -> torch.Tensor:
        """Unit directions: rows of v (per output), or columns (per input) when reversed."""
        if getattr(self, "reverse", False):
            return normalize(self.v.T).T
        return normalize(self.v.flatten(1)).reshape(self.v.shape)


class WeightNormLinear(_WeightNormBase):
    r"""Dense layer of the variational direction-magnitude model (WN §4.1, eq. 26-29).

    :param bool reverse: normalise per input neuron (WN §4.3) instead of per output neuron.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, reverse: bool = False) -> None:
        super().__init__()
        if in_features < 2 or out_features < 1 or (reverse and out_features < 2):
            raise ValueError("a weight-normalized direction needs dimension >= 2")
        self.in_features, self.out_features, self.reverse = in_features, out_features, reverse
        _init_weightnorm(self, (out_features, in_features), bias, magnitude=False)
        self._init_sites(in_features if reverse else out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input of shape (batch, {self.in_features}), got {tuple(x.shape)}")
        v_norm = self._direction()
        g = ops.per_object(self.g, x.shape[0])  # (B, n): per object under local reparameterization
        eps = ops.per_object(self.angle, x.shape[0])
        if self.reverse:  # w_ji = g_i (cos ε_i v̂_ji + sin ε_i φ_ji): noise enters through the inputs
            xg = x * g
            y = F.linear(xg * eps.cos(), v_norm) + ops.tangent_projection(xg * eps.sin(), v_norm, columns=True)
            return y if self.bias is None else y + self.bias
        u = F.linear(x, v_norm)
        s = ops.tangent_projection(x, v_norm)
        y = g * (eps.cos() * u + eps.sin() * s)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, reverse={self.reverse}"


class WeightNormConv2d(_WeightNormBase):
    r"""Convolution of the variational direction-magnitude model, per output channel (WN §3.1, §4.1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, padding=0, bias=True) -> None:
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        _init_weightnorm(self, (out_channels, in_channels, *k), bias, magnitude=False)
        self.conv = {"stride": stride, "padding": padding}
        self.in_channels, self.out_channels = in_channels, out_channels
        self._init_sites(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}")
        v_norm = self._direction()
        g = ops.per_object(self.g, x.shape[0])[..., None, None]
        eps = ops.per_object(self.angle, x.shape[0])[..., None, None]
        u = F.conv2d(x, v_norm, None, **self.conv)
        s = ops.tangent_projection(x, v_norm, self.conv)
        y = g * (eps.cos() * u + eps.sin() * s)
        return y if self.bias is None else y + self.bias[:, None, None]


class _NoisyBase(PyroModule):
    def _init_noise(self, direction, direction_scale, magnitude, magnitude_alpha, on) -> None:
        check_choice("direction noise", direction, DIRECTION_NOISES)
        check_choice("magnitude noise", magnitude, ("none", "normal", "gamma"))
        check_choice("noise placement", on, ("weights", "activations"))
        if direction != "none" and not direction_scale > 0:
            raise ValueError(f"expected direction_scale > 0, got {direction_scale}")
        if not magnitude_alpha >= 0:
            raise ValueError(f"expected magnitude_alpha >= 0, got {magnitude_alpha}")
        self.direction, self.direction_scale = direction, direction_scale
        self.magnitude, self.magnitude_alpha, self.on = magnitude, magnitude_alpha, on
        #: ``None``: noise while training only; ``True``/``False`` force it (sampled predictions)
        self.stochastic: bool | None = None
        #: weights without noise: ``"direction"`` — :math:`g\hat v` (WN §5.1.1's deterministic
        #: network); ``"mean"`` — the mean weight :math:`g\,\mathbb{E}[\tilde v] = c\,g\hat v`
        #: (:func:`~pyro_varnet.directions.mean_direction_length`)
        self.deterministic = "direction"

    def _noise_free_scale(self, dim: int) -> float:
        if self.deterministic == "direction":
            return 1.0
        return mean_direction_length(self.direction, self.direction_scale, dim)

    def _noisy(self) -> bool:
        return self.training if self.stochastic is None else self.stochastic

    def _magnitude(self, y: torch.Tensor) -> torch.Tensor:
        if self.magnitude == "none" or self.magnitude_alpha == 0:
            return y
        # per object and neuron on the pre-activations (WN eq. 25, 45)
        noise = magnitude_noise(y.shape[:2], self.magnitude, self.magnitude_alpha, like=y)
        return y * noise.view(*y.shape[:2], *(1,) * (y.dim() - 2))


class NoisyWeightNormLinear(_NoisyBase):
    r"""Weight-normalized dense layer with fixed direction / magnitude noise (WN §3).

    :param str direction: one of ``"none"``, ``"projected"`` (§3.2.1, scale = α),
        ``"tangent"`` (§3.2.2, α), ``"rotate-tn"`` (§3.2.3, truncated-normal angle, scale =
        its σ), ``"rotate-beta"`` (stretched symmetric Beta angle, scale = β).
    :param str magnitude: ``"none"``, ``"normal"`` N(1, α) or ``"gamma"`` (mean 1, variance α), §3.3.
    :param str on: ``"weights"`` — one direction sample per neuron and mini-batch, magnitude
        noise per object (WN Table 2); ``"activations"`` — "signal rotation" (§3.5): the
        direction noise acts on each object's normalised input :math:`x/\lVert x\rVert`
        (independent per object, WN Table 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        direction: str = "rotate-tn",
        direction_scale: float = 0.1,
        magnitude: str = "none",
        magnitude_alpha: float = 0.0,
        on: str = "weights",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self._init_noise(direction, direction_scale, magnitude, magnitude_alpha, on)
        _init_weightnorm(self, (out_features, in_features), bias, magnitude=True)

    def weight(self) -> torch.Tensor:
        return self.g[:, None] * normalize(self.v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v_norm = normalize(self.v)
        if not self._noisy():
            return F.linear(x, (self._noise_free_scale(v_norm.shape[-1]) * self.g)[:, None] * v_norm, self.bias)
        if self.on == "weights":
            y = F.linear(x, self.g[:, None] * direction_noise(v_norm, self.direction, self.direction_scale))
        else:
            norm = x.norm(dim=-1, keepdim=True)
            x_noisy = norm * direction_noise(normalize(x), self.direction, self.direction_scale)
            y = F.linear(x_noisy, self.g[:, None] * v_norm)
        y = self._magnitude(y)
        return y if self.bias is None else y + self.bias


class NoisyWeightNormConv2d(_NoisyBase):
    """Weight-normalized convolution with fixed direction / magnitude noise on its kernels (WN §3)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        direction: str = "rotate-tn",
        direction_scale: float = 0.1,
        magnitude: str = "none",
        magnitude_alpha: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self._init_noise(direction, direction_scale, magnitude, magnitude_alpha, "weights")
        _init_weightnorm(self, (out_channels, in_channels, kernel_size, kernel_size), bias, magnitude=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v_norm = normalize(self.v.flatten(1))
        if self._noisy():
            v_norm = direction_noise(v_norm, self.direction, self.direction_scale)
        else:
            v_norm = self._noise_free_scale(v_norm.shape[-1]) * v_norm
        w = (self.g[:, None] * v_norm).reshape(self.v.shape)
        y = F.conv2d(x, w)
        if self._noisy():
            y = self._magnitude(y)
        return y if self.bias is None else y + self.bias[:, None, None]


def set_stochastic(module: nn.Module, value: bool | None, deterministic: str = "direction") -> None:
    r"""Force the noise of every noisy weight-normalized layer on (``True``, sampled predictions),
    off (``False``, the deterministic network) or back to "while training" (``None``).

    ``deterministic`` says which weights a noise-free pass uses: ``"direction"`` — the mean
    directions :math:`g\hat v` (WN §5.1.1); ``"mean"`` — the mean weights :math:`c\,g\hat v`,
    which keep the scale the biases were trained with (see
    :func:`~pyro_varnet.directions.mean_direction_length`)."""
    check_choice("deterministic weights", deterministic, ("direction", "mean"))
    for m in module.modules():
        if isinstance(m, _NoisyBase):
            m.stochastic = value
            m.deterministic = deterministic


class WNLeNet300_100(PyroModule):
    """LeNet-300-100 of weight-normalized variational layers (WN §5.2, Table 3).

    :param bool reverse: normalise the dense layers per input neuron ("Var FC reverse", WN §4.3).
    """

    #: the dense-stack loop of :class:`~pyro_varnet.models.MLP` (layers ``fc1, fc2, ...``, ``act`` between)
    forward = MLP.forward

    def __init__(self, reverse: bool = False, sizes=(784, 300, 100, 10)) -> None:
        super().__init__()
        sizes = list(sizes)
        self.layer_names = tuple(f"fc{i + 1}" for i in range(len(sizes) - 1))
        for name, n_in, n_out in zip(self.layer_names, sizes[:-1], sizes[1:]):
            setattr(self, name, WeightNormLinear(n_in, n_out, reverse=reverse))
        self.act = PyroModule[nn.ReLU]()


class WNLeNet5(PyroModule):
    """LeNet-5-Caffe of weight-normalized variational layers (WN §5.2, Table 3); ``reverse``
    normalises its dense layers per input neuron."""

    def __init__(self, reverse: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = WeightNormConv2d(1, 20, 5), WeightNormConv2d(20, 50, 5)
        self.fc1, self.fc2 = WeightNormLinear(800, 500, reverse=reverse), WeightNormLinear(500, 10, reverse=reverse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))
