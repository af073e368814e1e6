"""Bayesian layers and the papers' networks (installed as ``pyro_varnet.models``)."""

from .convert import bayesian, convertible_layers
from .layers import BayesConv1d, BayesConv2d, BayesLinear
from .likelihoods import BinaryClassifier, Classifier, Likelihood, Regressor
from .networks import MLP, LeNet5, LeNet300_100, LeNet500_300, ToyNet, VGGLike
from .weightnorm import (
    NoisyWeightNormConv2d,
    NoisyWeightNormLinear,
    WeightNormConv2d,
    WeightNormLinear,
    WNLeNet5,
    WNLeNet300_100,
    set_stochastic,
)

__all__ = [
    "MLP",
    "BayesConv1d",
    "BayesConv2d",
    "BayesLinear",
    "BinaryClassifier",
    "Classifier",
    "Likelihood",
    "Regressor",
    "LeNet300_100",
    "LeNet500_300",
    "LeNet5",
    "ToyNet",
    "NoisyWeightNormConv2d",
    "NoisyWeightNormLinear",
    "VGGLike",
    "WeightNormConv2d",
    "WeightNormLinear",
    "WNLeNet5",
    "WNLeNet300_100",
    "bayesian",
    "convertible_layers",
    "set_stochastic",
]
