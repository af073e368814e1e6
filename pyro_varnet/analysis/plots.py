"""Figures of the papers, drawn with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from matplotlib.figure import Figure

from ..infer.predict import evaluating, run_once
from ..poutine import local_reparameterization


@torch.no_grad()
def layer_samples(
    model: Callable, guide: Callable, module: torch.nn.Module, x: torch.Tensor, samples_per_point: int = 10
) -> torch.Tensor:
    """Outputs of ``module`` (its pre-activations) for each object of ``x``, ``samples_per_point``
    noise draws each under local reparameterization: shape (samples, N, *out)."""
    captured = []
    hook = module.register_forward_hook(lambda m, args, out: captured.append(out.detach()))
    modules = [m for m in (model, guide) if isinstance(m, torch.nn.Module)]
    try:
        with evaluating(*modules), local_reparameterization():
            run_once(model, guide, x.repeat(samples_per_point, *([1] * (x.dim() - 1))))
    finally:
        hook.remove()
    return captured[-1].reshape(samples_per_point, x.shape[0], *captured[-1].shape[1:])


def plot_bottleneck(
    model: Callable,
    guide: Callable,
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    path: str | os.PathLike,
    samples_per_point: int = 5,
    title: str = "Variance bottleneck activations (VN Fig. 1)",
) -> Figure:
    """Scatter of a 2-unit layer's sampled activations coloured by class, as VN Fig. 1."""
    acts = layer_samples(model, guide, module, x, samples_per_point)
    if acts.shape[-1] != 2 or acts.dim() != 3:
        raise ValueError(f"expected a layer with 2 outputs, got activations of shape {tuple(acts.shape[1:])}")
    fig = Figure(figsize=(10, 4.5))
    ax, ax2 = fig.subplots(1, 2)
    for c in y.unique().tolist():
        pts = acts[:, y == c].reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.35, label=f"class {c}")
        std = acts[:, y == c].std(0)  # per-object sd over noise draws
        ax2.scatter(std[:, 0], std[:, 1], s=4, alpha=0.6, label=f"class {c}")
    ax.set(xlabel="neuron 1", ylabel="neuron 2", title="samples b = ε·sqrt(Σ a²σ²) (symlog axes)")
    lin = max(float(acts.abs().quantile(0.01)), 1e-12)
    ax.set_xscale("symlog", linthresh=lin, base=1000)
    ax.set_yscale("symlog", linthresh=lin, base=1000)
    ax2.set(
        xlabel="sd of neuron 1",
        ylabel="sd of neuron 2",
        title="per-object standard deviation",
        xscale="log",
        yscale="log",
    )
    ax.legend(markerscale=4, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
