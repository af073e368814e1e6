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
