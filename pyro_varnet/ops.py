"""Effectful linear maps: the operations that pyro-varnet's handlers intercept.

Outside any handler they are exactly :func:`torch.nn.functional.linear` and
:func:`~torch.nn.functional.conv2d`. Inside a Pyro handler stack they emit a message of
type ``"linear"`` or ``"conv2d"`` that a handler such as
:class:`~pyro_varnet.poutine.LocalReparameterizationMessenger` may answer instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.poutine.runtime import effectful


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, weight, bias)


def _conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple = 1,
    padding: int | tuple | str = 0,
    dilation: int | tuple = 1,
    groups: int = 1,
) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


#: ``linear(x, weight, bias=None)`` as an effect of type ``"linear"``.
linear = effectful(_linear, type="linear")
#: ``conv2d(x, weight, bias=None, stride, padding, dilation, groups)`` as an effect of type ``"conv2d"``.
conv2d = effectful(_conv2d, type="conv2d")

__all__ = ["conv2d", "linear"]


def _per_object(value: torch.Tensor, batch_size: int) -> torch.Tensor:
    return value.expand(batch_size, *value.shape)


def _tangent_projection_op(
    x: torch.Tensor, v_norm: torch.Tensor, conv: dict | None = None, columns: bool = False
) -> torch.Tensor:
    r"""The direction-noise term of a weight-normalized layer (WN eq. 47): ``op(x, Φ)`` where Φ has a
    direction φ uniform on the unit sphere of the tangent space of each row of ``v_norm`` (of
    each column with ``columns=True``: WN §4.3), one φ per row shared by the batch."""
    from .directions import random_tangent_direction

    if columns:
        phi = random_tangent_direction(v_norm.T).T
    else:
        phi = random_tangent_direction(v_norm.flatten(1)).reshape(v_norm.shape)
    return F.linear(x, phi) if conv is None else F.conv2d(x, phi, None, **conv)


#: ``per_object(value, batch_size)``: a globally sampled tensor seen by every object of a batch,
#: ``value.expand(batch_size, *value.shape)``. Under the weight handlers a sampled value is
#: instead drawn afresh for every object from its distribution (WN eq. 45, 48).
per_object = effectful(_per_object, type="per_object")
#: ``tangent_projection(x, v_norm, conv=None, columns=False)``: φᵀx for a random tangent direction φ per row of
#: ``v_norm`` (WN eq. 47). Mean propagation answers 0 (E φ = 0); local reparameterization can
#: draw it independently per object.
tangent_projection = effectful(_tangent_projection_op, type="tangent_projection")

__all__ += ["per_object", "tangent_projection"]
