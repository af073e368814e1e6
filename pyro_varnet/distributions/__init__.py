"""Priors and variational building blocks of pyro-varnet (one distribution per file)."""

from .ard import ARD, optimal_ard_scale
from .gaussian_dropout_normal import GaussianDropoutNormal
from .input_dropout import InputDropout
from .kl import (
    KL_UNIFORM_LOG_UNIFORM,
    has_analytic_kl,
    kl_ard_optimal,
    kl_divergence_sum,
    kl_log_uniform,
    log_alpha_of,
)
from .log_uniform import LogUniform
from .student_t import StudentTPrior
from .symmetric_bernoulli import SymmetricBernoulli
from .symmetric_uniform import SymmetricUniform
from .truncated_normal import TruncatedNormal
from .zero_mean_normal import ZeroMeanNormal

__all__ = [
    "ARD",
    "GaussianDropoutNormal",
    "InputDropout",
    "KL_UNIFORM_LOG_UNIFORM",
    "LogUniform",
    "StudentTPrior",
    "SymmetricBernoulli",
    "SymmetricUniform",
    "TruncatedNormal",
    "ZeroMeanNormal",
    "has_analytic_kl",
    "kl_ard_optimal",
    "kl_divergence_sum",
    "kl_log_uniform",
    "log_alpha_of",
    "optimal_ard_scale",
]


def __getattr__(name: str):
    # priors by name moved to pyro_varnet.priors (objects with a registry); kept importable here
    if name in ("PRIORS", "make_prior"):
        from pyro_varnet import priors

        return getattr(priors, name)
    raise AttributeError(f"module 'pyro_varnet.distributions' has no attribute {name!r}")
