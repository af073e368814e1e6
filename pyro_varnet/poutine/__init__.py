"""Effect handlers of pyro-varnet: one ``XxxMessenger`` per file, lowercase aliases in handlers."""

from .flipout_messenger import FlipoutMessenger
from .handlers import (
    flipout,
    local_reparameterization,
    mean_propagation,
    prune,
    scale_latent,
    stacked_weights,
    zero_mean_approximation,
)
from .local_reparameterization_messenger import LocalReparameterizationMessenger
from .mean_propagation_messenger import MeanPropagationMessenger
from .prune_messenger import PruneMessenger
from .scale_latent_messenger import ScaleLatentMessenger
from .stacked_weights_messenger import StackedWeightsMessenger
from .weight_rules import Moments, WeightRules, prune_mask, register_weight_rules, weight_rules
from .zero_mean_approximation_messenger import ZeroMeanApproximationMessenger

__all__ = [
    "FlipoutMessenger",
    "LocalReparameterizationMessenger",
    "MeanPropagationMessenger",
    "Moments",
    "PruneMessenger",
    "ScaleLatentMessenger",
    "StackedWeightsMessenger",
    "WeightRules",
    "ZeroMeanApproximationMessenger",
    "flipout",
    "local_reparameterization",
    "mean_propagation",
    "prune",
    "prune_mask",
    "register_weight_rules",
    "scale_latent",
    "stacked_weights",
    "weight_rules",
    "zero_mean_approximation",
]
