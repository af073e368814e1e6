r"""Direction and magnitude noise for weight-normalized vectors (WN §3).

A weight vector is written :math:`w = g\,v/\lVert v\rVert` (Salimans & Kingma 2016, WN eq. 14).
The functions here perturb the unit direction :math:`\hat v = v/\lVert v\rVert` or the
magnitude ``g``. Directions are vectors along the **last** dimension of ``v_norm`` (any
leading dims are independent vectors: neurons, objects, samples).
"""

from __future__ import annotations

import functools
import math

import torch

from ._checks import check_choice
from .distributions import TruncatedNormal

HALF_PI = math.pi / 2


def _check_unit(v_norm: torch.Tensor) -> None:
    if v_norm.dim() < 1 or v_norm.shape[-1] < 2:
        raise ValueError(f"expected direction vectors of dimension >= 2 along the last dim, got {tuple(v_norm.shape)}")


def _check_alpha(alpha) -> None:
    if not (torch.as_tensor(alpha) >= 0).all():
        raise ValueError(f"expected a noise variance alpha >= 0, got {alpha}")


def normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``v / ||v||`` along the last dim."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def projected_gaussian(v_norm: torch.Tensor, alpha: float) -> torch.Tensor:
    r"""WN eq. 15-16: :math:`(\hat v + \varepsilon)/\lVert\hat v + \varepsilon\rVert`,
    :math:`\varepsilon \sim \mathcal{N}(0, \alpha I)`."""
    _check_unit(v_norm)
    _check_alpha(alpha)
    return normalize(v_norm + math.sqrt(alpha) * torch.randn_like(v_norm))


def tangent_projection(v_norm: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    r""":math:`(I - \hat v\hat v^\top)\,\mathrm{vec}` (WN eq. 18)."""
    return vec - v_norm * (v_norm * vec).sum(-1, keepdim=True)


def tangent_projected_gaussian(v_norm: torch.Tensor, alpha: float) -> torch.Tensor:
    r"""WN eq. 17-19: Gaussian noise projected onto the tangent space, added, renormalised.

    The result is at most π/2 away from ``v_norm``:
    :math:`(\hat v + \varepsilon_t)/\sqrt{1 + \lVert\varepsilon_t\rVert^2}`.
    """
    _check_unit(v_norm)
    _check_alpha(alpha)
    eps_t = tangent_projection(v_norm, math.sqrt(alpha) * torch.randn_like(v_norm))
    return (v_norm + eps_t) / (1 + eps_t.square().sum(-1, keepdim=True)).sqrt()


def random_tangent_direction(v_norm: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi \sim U[S_{n-1}]` in the tangent space of ``v_norm`` (WN eq. 20): a unit vector ⟂ ``v_norm``."""
    _check_unit(v_norm)
    return normalize(tangent_projection(v_norm, torch.randn_like(v_norm)))


def rotate(v_norm: torch.Tensor, angle: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
    r"""WN eq. 22-23: rotate ``v_norm`` by ``angle`` in the plane spanned with a tangent unit vector ``phi``,
    :math:`\cos\varepsilon\,\hat v + \sin\varepsilon\,\phi` (``phi`` uniform if not given).

    ``angle`` broadcasts against ``v_norm.shape[:-1]``; the result has unit norm and
    :math:`\cos\angle(\hat v, \text{result}) = \cos\varepsilon`.
    """
    _check_unit(v_norm)
    phi = random_tangent_direction(v_norm) if phi is None else phi
    angle = torch.as_tensor(angle, dtype=v_norm.dtype, device=v_norm.device)[..., None]
    return angle.cos() * v_norm + angle.sin() * phi


def sample_angle(
    shape, kind: str = "truncated-normal", scale: float = 0.1, symmetric: bool = True, like: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Rotation angles for :func:`rotate` (WN eq. 21).

    ``"truncated-normal"``: :math:`t\mathcal{N}_{[-\pi/2,\pi/2]}(0, \mathrm{scale}^2)`;
    ``"beta"``: stretched symmetric Beta, :math:`\pi(\theta - \tfrac12)`,
    :math:`\theta \sim \mathcal{B}(\beta, \beta)` with β = ``scale`` (the thesis code
    used :math:`(\theta - \tfrac12)(\pi - 0.001)`). ``symmetric=False`` folds to [0, π/2].
    """
    check_choice("angle distribution", kind, ("truncated-normal", "beta"))
    if not scale > 0:
        raise ValueError(f"expected an angle scale > 0, got {scale}")
    shape = torch.Size(shape)
    zero = torch.zeros(shape) if like is None else like.new_zeros(shape)
    if kind == "truncated-normal":
        angle = TruncatedNormal(zero, zero + scale, zero - HALF_PI, zero + HALF_PI, validate_args=False).sample()
    else:
        conc = zero.new_full((), scale)
        angle = math.pi * (torch.distributions.Beta(conc, conc, validate_args=False).sample(shape) - 0.5)
    return angle if symmetric else angle.abs()


def magnitude_noise(shape, kind: str = "normal", alpha: float = 0.1, like: torch.Tensor | None = None) -> torch.Tensor:
    r"""Multiplicative magnitude noise with mean 1 and variance α (WN eq. 24-25, §3.3):
    ``"normal"`` :math:`\mathcal{N}(1, \alpha)` or ``"gamma"`` Γ(1/α, 1/α), which keeps the sign.
    Drawn on the device and in the dtype of ``like`` (default: CPU, the default dtype)."""
    check_choice("magnitude noise", kind, ("normal", "gamma"))
    _check_alpha(alpha)
    ones = torch.ones(torch.Size(shape)) if like is None else like.new_ones(torch.Size(shape))
    if alpha == 0:
        return ones
    if kind == "normal":
        return ones + math.sqrt(alpha) * torch.randn_like(ones)
    conc = ones / alpha
    return torch.distributions.Gamma(conc, conc, validate_args=False).sample()


DIRECTION_NOISES = ("none", "projected", "tangent", "rotate-tn", "rotate-beta")

#: Monte Carlo draws behind :func:`mean_direction_length` (standard error ~1e-4 or less)
MEAN_LENGTH_DRAWS = 1 << 20


@functools.lru_cache(maxsize=256)
def mean_direction_length(kind: str, scale: float, dim: int) -> float:
    r"""The length :math:`c = \mathbb{E}[\hat v^\top \tilde v]` of the mean of a perturbed unit
    direction :math:`\tilde v` in dimension ``dim``: by symmetry :math:`\mathbb{E}[\tilde v] = c\,\hat v`.

    One reason WN §5.1.1's deterministic network (directions replaced by :math:`\hat v`) can
    fail where sampled ones work: the samples lie on the unit sphere, their centre at radius
    c < 1, so :math:`g\hat v` is 1/c times longer than the network's average weight, relative
    to the biases. The mean weights :math:`c\,g\hat v` fix the scale but are not the mean
    network either: after a rectifier the noise leaves a positive offset
    (:math:`\mathbb{E}\max(0, s + n) > \max(0, s)`) that no noise-free pass has, and at large
    α this dominates (benchmarks/results: at α = 0.2 the mean-weight net is worse than
    :math:`g\hat v`). For projected noise (eq. 15-16)
    :math:`c = \mathbb{E}\,(1+z)/\sqrt{(1+z)^2 + \alpha\chi^2_{d-1}}`, z ~ N(0, α), about
    :math:`1/\sqrt{1 + \alpha d}`; tangent noise (eq. 17-19)
    :math:`\mathbb{E}\,(1 + \alpha\chi^2_{d-1})^{-1/2}`; rotations (eq. 21-23) :math:`\mathbb{E}\cos\varepsilon`.

    One-dimensional Monte Carlo with a fixed seed (:data:`MEAN_LENGTH_DRAWS` draws), so the
    value is reproducible; cached per (kind, scale, dim).
    """
    check_choice("direction noise", kind, DIRECTION_NOISES)
    if dim < 2:
        raise ValueError(f"expected a direction dimension >= 2, got {dim}")
    if kind == "none":
        return 1.0
    n = MEAN_LENGTH_DRAWS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind in ("projected", "tangent"):
            _check_alpha(scale)
            rest = scale * torch.distributions.Chi2(torch.tensor(dim - 1.0, dtype=torch.float64)).sample((n,))
            if kind == "tangent":
                return (1 + rest).rsqrt().mean().item()
            along = 1 + math.sqrt(scale) * torch.randn(n, dtype=torch.float64)
            return (along / (along.square() + rest).sqrt()).mean().item()
        angle = sample_angle((n,), "truncated-normal" if kind == "rotate-tn" else "beta", scale)
        return angle.double().cos().mean().item()


def direction_noise(v_norm: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    """Apply one of :data:`DIRECTION_NOISES` to unit vectors (``scale``: α, or the angle's σ / β)."""
    check_choice("direction noise", kind, DIRECTION_NOISES)
    if kind == "none":
        return v_norm
    if kind == "projected":
        return projected_gaussian(v_norm, scale)
    if kind == "tangent":
        return tangent_projected_gaussian(v_norm, scale)
    angle = sample_angle(v_norm.shape[:-1], "truncated-normal" if kind == "rotate-tn" else "beta", scale, like=v_norm)
    return rotate(v_norm, angle)
