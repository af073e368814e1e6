"""Priors over weight tensors as objects, by name through one registry (see ``base.py``).

Registered: ``"log-uniform"`` (VN eq. 6), ``"student-t"`` (VN eq. 9), ``"ard"`` (VN eq. 11),
``"normal"``, ``"horseshoe"``. A callable ``shape -> distribution`` is a prior too
(:class:`CallablePrior`).
"""

from .ard import ARDPrior
from .base import REGISTRY, Prior, build_prior, make_prior, prior_names, register_prior
from .callable import CallablePrior
from .horseshoe import Horseshoe
from .log_uniform import LogUniformPrior
from .normal import NormalPrior
from .student_t import StudentT

#: the names registered by the library itself (``prior_names()`` also lists later registrations)
PRIORS = prior_names()

__all__ = [
    "PRIORS",
    "REGISTRY",
    "ARDPrior",
    "CallablePrior",
    "Horseshoe",
    "LogUniformPrior",
    "NormalPrior",
    "Prior",
    "StudentT",
    "build_prior",
    "make_prior",
    "prior_names",
    "register_prior",
]
