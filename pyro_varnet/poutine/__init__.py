"""Effect handlers of pyro-varnet: one ``XxxMessenger`` per file, lowercase aliases in handlers."""

from .handlers import local_reparameterization, mean_propagation, scale_latent, zero_mean_approximation
from .local_reparameterization_messenger import LocalReparameterizationMessenger
from .mean_propagation_messenger import MeanPropagationMessenger
from .scale_latent_messenger import ScaleLatentMessenger
from .zero_mean_approximation_messenger import ZeroMeanApproximationMessenger

__all__ = [
    "LocalReparameterizationMessenger",
    "MeanPropagationMessenger",
    "ScaleLatentMessenger",
    "ZeroMeanApproximationMessenger",
    "local_reparameterization",
    "mean_propagation",
    "scale_latent",
    "zero_mean_approximation",
]
