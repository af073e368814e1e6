"""Variational families and the network guide (installed as ``pyro_varnet.guides``)."""

from .families import (
    FAMILIES,
    GRANULARITIES,
    Additive,
    AdditiveSite,
    BernoulliVariance,
    BernoulliVarianceSite,
    BinaryDropout,
    DropoutSite,
    Family,
    GaussianDropout,
    GaussianDropoutSite,
    SiteGuide,
    UniformVariance,
    UniformVarianceSite,
    ZeroMean,
    ZeroMeanSite,
    make_family,
)
from .network_guide import NetworkGuide

__all__ = [
    "FAMILIES",
    "GRANULARITIES",
    "Additive",
    "AdditiveSite",
    "BernoulliVariance",
    "BernoulliVarianceSite",
    "BinaryDropout",
    "DropoutSite",
    "Family",
    "GaussianDropout",
    "GaussianDropoutSite",
    "NetworkGuide",
    "SiteGuide",
    "UniformVariance",
    "UniformVarianceSite",
    "ZeroMean",
    "ZeroMeanSite",
    "make_family",
]
