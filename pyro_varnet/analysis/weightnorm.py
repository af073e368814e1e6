"""Learned posteriors of the variational WeightNorm model: q(g) and q(ε) per neuron (WN Fig. 6)."""

from __future__ import annotations

import math

import pandas as pd
import torch
from matplotlib.figure import Figure

from ..distributions import kl_log_uniform, log_alpha_of


def weightnorm_posteriors(guide, layer: str) -> pd.DataFrame:
    r"""One row per neuron of weight-normalized ``layer`` (e.g. ``"net.fc1"``): q(g) = N(m, λ²)
    (m, λ, log α = 2 log(λ/|m|)) and q(ε) = tN[0, π/2](μ, σ²) (μ, σ, mean angle)."""
    q_g = guide.site(f"{layer}.g").base()
    q_e = guide.site(f"{layer}.angle").base()
    with torch.no_grad():
        columns = {
            "m": q_g.loc,
            "lambda": q_g.scale,
            "log_alpha": log_alpha_of(q_g.loc, q_g.scale),
            "kl_g": kl_log_uniform(log_alpha_of(q_g.loc, q_g.scale)),
            "mu": q_e.loc,
            "sigma": q_e.scale,
            "mean_angle": q_e.mean,
        }
        return pd.DataFrame({k: v.cpu().numpy() for k, v in columns.items()})


def structured_sparsity(guide, layers, log_alpha_threshold: float = 3.0) -> pd.DataFrame:
    r"""Neurons whose magnitude posterior is noise-dominated (log α > threshold, as Sparse VD
    prunes weights; WN §4.1): they pass only noise and can be removed with their whole
    weight vector. One row per layer: neurons, removable, fraction."""
    rows = []
    for layer in layers:
        la = weightnorm_posteriors(guide, layer)["log_alpha"]
        removable = int((la > log_alpha_threshold).sum())
        rows.append({"layer": layer, "neurons": len(la), "removable": removable, "fraction": removable / len(la)})
    return pd.DataFrame(rows)


def plot_weightnorm_posteriors(guide, layer: str, path=None, neurons: int = 8, seed: int = 0) -> Figure:
    """Densities of q(g) (left) and q(ε) (right) for ``neurons`` neurons of ``layer``, half of them
    the most noise-dominated (highest log α), half the most certain (WN Fig. 6)."""
    df = weightnorm_posteriors(guide, layer)
    order = df["log_alpha"].sort_values().index
    pick = list(order[: neurons // 2]) + list(order[-(neurons - neurons // 2) :])
    q_g = guide.site(f"{layer}.g").base()
    q_e = guide.site(f"{layer}.angle").base()
    fig = Figure(figsize=(10, 4))
    ax_g, ax_e = fig.subplots(1, 2)
    angles = torch.linspace(1e-4, math.pi / 2 - 1e-4, 400)
    with torch.no_grad():
        for i in pick:
            m, s = float(q_g.loc[i]), float(q_g.scale[i])
            grid = torch.linspace(m - 4 * s, m + 4 * s, 400)
            dens = torch.distributions.Normal(m, s).log_prob(grid).exp()
            label = f"neuron {i}: log α = {df.loc[i, 'log_alpha']:.1f}"
            ax_g.plot(grid.numpy(), dens.numpy(), label=label)
            ax_e.plot(angles.numpy(), q_e.log_prob(angles[:, None].expand(-1, len(df)))[:, i].exp().numpy())
    ax_g.set(xlabel="magnitude g", ylabel="q(g)", title=f"{layer}: q(g) = N(m, λ²)")
    ax_e.set(xlabel="rotation angle ε (rad)", ylabel="q(ε)", title=f"{layer}: q(ε) = tN[0, π/2](μ, σ²)")
    ax_g.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
