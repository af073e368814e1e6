"""Effect handlers of pyro-varnet: one ``XxxMessenger`` per file, lowercase aliases in handlers."""

from .handlers import local_reparameterization, mean_propagation, zero_mean_approximation
from .local_reparameterization_messenger import LocalReparameterizationMessenger
from .mean_propagation_messenger import MeanPropagationMessenger
from .zero_mean_approximation_messenger import ZeroMeanApproximationMessenger

__all__ = [
    "LocalReparameterizationMessenger",
    "MeanPropagationMessenger",
    "ZeroMeanApproximationMessenger",
    "local_reparameterization",
    "mean_propagation",
    "zero_mean_approximation",
]
