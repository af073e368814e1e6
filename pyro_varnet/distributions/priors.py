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
    like: torch.Tensor | None = None,
) -> TorchDistribution:
    r"""The prior called ``name`` over a weight tensor of ``shape`` (all dimensions as event).

    :param str name: one of ``"log-uniform"`` (VN eq. 6), ``"student-t"`` (VN eq. 9, with
        ``df``), ``"ard"`` (VN eq. 11, ``scale`` is λ, usually a learned parameter) or
        ``"normal"`` (N(0, ``scale``²)).
    :param shape: shape of the weight tensor.
    :param like: a tensor whose device and dtype the prior's tensors take (default: those of
        ``scale`` if it is a tensor, else CPU and the default dtype).
    """
    shape = torch.Size(shape)
    if like is None:
        like = scale if torch.is_tensor(scale) else torch.zeros(())
    # valid by construction (df > 0 is checked, scales are positive numbers or constrained
    # parameters): no argument validation, which would force a host sync on accelerators
    if name == "log-uniform":
        base = LogUniform(shape)
    elif name == "student-t":
        base = StudentTPrior(df, shape, like=like, validate_args=False)
    elif name == "ard":
        base = ARD(torch.as_tensor(scale, dtype=like.dtype, device=like.device).expand(shape), validate_args=False)
    elif name == "normal":
        scale = torch.as_tensor(scale, dtype=like.dtype, device=like.device)
        base = Normal(scale.new_zeros(()).expand(shape), scale.expand(shape), validate_args=False)
    else:
        check_choice("prior", name, PRIORS)
    return base.to_event(len(shape))
