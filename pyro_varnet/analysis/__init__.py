"""ELBO decomposition, prediction-mode evaluation and the papers' figures."""

from .elbo import elbo_decomposition
from .plots import layer_samples, plot_bottleneck

__all__ = ["elbo_decomposition", "layer_samples", "plot_bottleneck"]
