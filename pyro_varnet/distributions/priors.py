"""Priors by name, as used by the Bayesian layers and the command line."""

from __future__ import annotations

import torch
from pyro.distributions import Normal, TorchDistribution

from .._checks import check_choice
from .ard import ARD
from .log_uniform import LogUniform
from .student_t import StudentTPrior

PRIORS = ("log-uniform", "student-t", "ard", "normal")


def make_prior(
    name: str,
    shape: torch.Size | tuple,
    *,
    scale: torch.Tensor | float = 1.0,
    df: float = 1e-16,
) -> TorchDistribution:
    r"""The prior called ``name`` over a weight tensor of ``shape`` (all dimensions as event).

    :param str name: one of ``"log-uniform"`` (VN eq. 6), ``"student-t"`` (VN eq. 9, with
        ``df``), ``"ard"`` (VN eq. 11, ``scale`` is λ, usually a learned parameter) or
        ``"normal"`` (N(0, ``scale``²)).
    :param shape: shape of the weight tensor.
    """
    shape = torch.Size(shape)
    if name == "log-uniform":
        base = LogUniform(shape)
    elif name == "student-t":
        base = StudentTPrior(df, shape)
    elif name == "ard":
        base = ARD(torch.as_tensor(scale).expand(shape))
    elif name == "normal":
        base = Normal(torch.zeros(()).expand(shape), torch.as_tensor(scale, dtype=torch.float).expand(shape))
    else:
        check_choice("prior", name, PRIORS)
    return base.to_event(len(shape))
