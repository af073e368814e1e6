"""Lowercase handler aliases, generated from the messengers (Pyro's ``_make_handler`` pattern)."""

from __future__ import annotations

from pyro.poutine.handlers import _make_handler

from .flipout_messenger import FlipoutMessenger
from .local_reparameterization_messenger import LocalReparameterizationMessenger
from .mean_propagation_messenger import MeanPropagationMessenger
from .prune_messenger import PruneMessenger
from .scale_latent_messenger import ScaleLatentMessenger
from .stacked_weights_messenger import StackedWeightsMessenger
from .zero_mean_approximation_messenger import ZeroMeanApproximationMessenger


@_make_handler(LocalReparameterizationMessenger, __name__)
def local_reparameterization(fn=None, eps=1e-16, moment_matching=False): ...


@_make_handler(MeanPropagationMessenger, __name__)
def mean_propagation(fn=None, sites=None): ...


@_make_handler(ZeroMeanApproximationMessenger, __name__)
def zero_mean_approximation(fn=None, sites=None): ...


@_make_handler(ScaleLatentMessenger, __name__)
def scale_latent(fn=None, scale=1.0): ...


@_make_handler(PruneMessenger, __name__)
def prune(fn=None, threshold=0.0, sites=None): ...


@_make_handler(FlipoutMessenger, __name__)
def flipout(fn=None): ...


@_make_handler(StackedWeightsMessenger, __name__)
def stacked_weights(fn=None, num_samples=1, num_objects=None, per_object=None): ...
