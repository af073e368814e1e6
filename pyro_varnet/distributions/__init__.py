"""Priors and variational building blocks of pyro-varnet (one distribution per file)."""

from .ard import ARD, optimal_ard_scale
from .gaussian_dropout_normal import GaussianDropoutNormal
from .kl import has_analytic_kl, kl_ard_optimal, kl_log_uniform, log_alpha_of
from .log_uniform import LogUniform
from .priors import PRIORS, make_prior
from .student_t import StudentTPrior
from .truncated_normal import TruncatedNormal
from .zero_mean_normal import ZeroMeanNormal

__all__ = [
    "ARD",
    "GaussianDropoutNormal",
    "LogUniform",
    "PRIORS",
    "StudentTPrior",
    "TruncatedNormal",
    "ZeroMeanNormal",
    "has_analytic_kl",
    "kl_ard_optimal",
    "kl_log_uniform",
    "log_alpha_of",
    "make_prior",
    "optimal_ard_scale",
]
