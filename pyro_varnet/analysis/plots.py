"""Figures of the papers, drawn with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from matplotlib.figure import Figure

from ..infer.predict import evaluating, run_once
from ..poutine import local_reparameterization
from .inference_data import layer_of


@torch.no_grad()
def layer_samples(
    model: Callable, guide: Callable, module: torch.nn.Module, x: torch.Tensor, samples_per_point: int = 10
) -> torch.Tensor:
    """Outputs of ``module`` (its pre-activations) for each object of ``x``, ``samples_per_point``
    noise draws each under local reparameterization: shape (samples, N, *out)."""
    captured = []
    hook = module.register_forward_hook(lambda m, args, out: captured.append(out.detach()))
    try:
        with evaluating(model, guide), local_reparameterization():
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


def _save(fig: Figure, path) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_phase_transition(history, path=None, title: str = "Phase transition (VN Fig. 3)") -> Figure:
    """Test accuracy per epoch in each prediction mode recorded by :func:`~pyro_varnet.infer.fit`."""
    df = history.to_dataframe() if hasattr(history, "to_dataframe") else history
    labels = {
        "test_acc_mean": "deterministic (mean propagation)",
        "test_acc_sample": "one sample",
        "test_acc_ensemble": "ensemble",
        "test_acc_zero_mean": "zero-mean approximation",
    }
    cols = [c for c in labels if c in df.columns]
    if not cols:
        raise ValueError("the history has no test accuracies; train with test_data=... to record them")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for c in cols:
        rows = df[c].notna()
        ax.plot(df["epoch"][rows], 100 * df[c][rows], marker="o", ms=3, label=labels[c])
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=title, ylim=(0, 100))
    ax.legend()
    return _save(fig, path)


def plot_elbo_decomposition(histories, path=None, title: str = "ELBO decomposition per epoch (VN Table 1)") -> Figure:
    r"""The ELBO's parts over training for each guide, side by side (shared y axis): the
    negative data term :math:`-\mathbb{E}_q\log p(T\mid X,W)` and the KL of each site (and
    their sum), in nats, as :func:`~pyro_varnet.infer.fit` records them per epoch. The picture
    behind VN Table 1: which guides pay in KL and which in data fit.

    :param histories: ``{guide name: History, DataFrame or ELBOReport}``.
    """
    if not histories:
        raise ValueError("expected at least one history")
    frames = {}
    for name, h in histories.items():
        h = getattr(h, "history", h)  # an ELBOReport
        df = h.to_dataframe() if hasattr(h, "to_dataframe") else h
        missing = [c for c in ("epoch", "data", "kl") if c not in df.columns]
        if missing or not len(df):
            raise ValueError(f"history {name!r} has no {missing or 'epochs'}; pass the History that fit returned")
        frames[name] = df
    fig = Figure(figsize=(4 * len(frames) + 1, 4))
    axes = fig.subplots(1, len(frames), sharey=True, squeeze=False)[0]
    for ax, (name, df) in zip(axes, frames.items()):
        ax.plot(df["epoch"], -df["data"], color="black", lw=2, marker="o", ms=3, label="− data term")
        ax.plot(df["epoch"], df["kl"], color="tab:red", lw=2, ls="--", label="KL (total)")
        for col in (c for c in df.columns if c.startswith("kl/")):
            ax.plot(df["epoch"], df[col], marker=".", ms=3, lw=1, label=f"KL {layer_of(col[3:])}")
        ax.set(xlabel="epoch", title=name)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats (symlog)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)


def plot_prior_phase_transitions(histories, site: str = "net.fc1.weight", path=None) -> Figure:
    """VN Fig. 8: for each prior (``{name: History or DataFrame}``), the layer's mean log α and the
    mean-propagation / one-sample test accuracy per epoch."""
    fig = Figure(figsize=(11, 4))
    ax_a, ax_acc = fig.subplots(1, 2)
    for name, history in histories.items():
        df = history.to_dataframe() if hasattr(history, "to_dataframe") else history
        col = f"log_alpha/{site}"
        if col not in df.columns:
            raise ValueError(
                f"history {name!r} has no {col!r}; sites are {[c for c in df.columns if 'log_alpha' in c]}"
            )
        (line,) = ax_a.plot(df["epoch"], df[col], marker="o", ms=3, label=name)
        for mode, style in (("mean", "-"), ("sample", ":")):
            c = f"test_acc_{mode}"
            if c in df.columns:
                rows = df[c].notna()
                ax_acc.plot(
                    df["epoch"][rows],
                    100 * df[c][rows],
                    style,
                    color=line.get_color(),
                    marker="o",
                    ms=3,
                    label=f"{name}: {'mean propagation' if mode == 'mean' else 'one sample'}",
                )
    ax_a.set(xlabel="epoch", ylabel=f"mean log α of {site}", title="log α per epoch (a variance layer: log α → ∞)")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy per epoch")
    ax_a.legend()
    ax_acc.legend(fontsize=7)
    return _save(fig, path)


def kl_student_t_quadrature(log_alpha: float, df: float, loc: float = 1.0) -> float:
    r"""KL(N(μ, αμ²) ‖ St(ν)) by adaptive quadrature (VN eq. 9-10), for plots and tests."""
    from scipy import integrate, special, stats

    sigma = abs(loc) * math.exp(log_alpha / 2)
    log_norm = special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * math.log(df * math.pi)

    def f(e):
        w = loc + sigma * e
        return stats.norm.pdf(e) * (log_norm - (df + 1) / 2 * math.log1p(w * w / df))

    pole = -loc / sigma
    pts = [pole] if abs(pole) < 12 else None
    cross, _ = integrate.quad(f, -12, 12, points=pts, limit=500)
    entropy = 0.5 * math.log(2 * math.pi * math.e * sigma**2)
    return -entropy - cross


def plot_kl_priors(path=None, dfs=(1e-1, 1e-4, 1e-16)) -> Figure:
    """KL between the Gaussian dropout posterior and the log-uniform, ARD (at its optimum) and
    Student-t priors as a function of log α (VN Fig. 2), each shifted to 0 at log α = 8."""
    from ..distributions import kl_ard_optimal, kl_log_uniform

    grid = torch.linspace(-6, 8, 57, dtype=torch.float64)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    lu = kl_log_uniform(grid)
    ax.plot(grid, lu - lu[-1], lw=3, label="log-uniform (Sparse VD approx.)")
    ard = kl_ard_optimal(grid)
    ax.plot(grid, ard - ard[-1], label="ARD, optimal λ: ½ log(1 + 1/α)")
    for nu in dfs:
        st = torch.tensor([kl_student_t_quadrature(float(la), nu) for la in grid])
        ax.plot(grid, st - st[-1], ls="--", label=f"Student-t, ν = {nu:g} (μ = 1)")
    ax.set(xlabel="log α", ylabel="KL(q ‖ p) − KL at log α = 8 (nats)", title="KL vs log α (VN Fig. 2)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sample_accuracies(sample_accuracies, ensemble_accuracy: float, path=None) -> Figure:
    """Histogram of single-weight-sample test accuracies against the ensemble's (VN Fig. 4)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist([100 * a for a in sample_accuracies], bins=20, color="tab:blue", alpha=0.8, label="one weight sample")
    ax.axvline(100 * ensemble_accuracy, color="tab:red", lw=2, label="test-time averaging")
    ax.set(xlabel="test accuracy (%)", ylabel="count", title="Single samples vs ensemble (VN Fig. 4)")
    ax.legend()
    return _save(fig, path)


def plot_activation_levels(
    model, guide, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, path=None, neurons=4, samples=20, seed=0
) -> Figure:
    """Distributions of a variance layer's activations log10|b| per class for a few neurons (VN Fig. 9)."""
    acts = layer_samples(model, guide, module, x, samples).flatten(2)  # (samples, N, units)
    g = torch.Generator().manual_seed(seed)
    units = torch.randperm(acts.shape[-1], generator=g)[:neurons].tolist()
    fig = Figure(figsize=(3.2 * neurons, 3.2))
    axes = fig.subplots(1, neurons, squeeze=False)[0]
    for ax, u in zip(axes, units):
        for c in y.unique().tolist():
            v = acts[:, y == c, u].abs().clamp_min(1e-12).log10().flatten()
            ax.hist(v.numpy(), bins=40, density=True, histtype="step", label=str(c))
        ax.set(title=f"unit {u}", xlabel="log10 |b|")
    axes[0].legend(title="class", fontsize=6, ncol=2)
    fig.suptitle("Variance-layer activation levels per class (VN Fig. 9)")
    return _save(fig, path)


def plot_reliability(predictions, y: torch.Tensor, path=None, bins: int = 15, title: str = "Reliability") -> Figure:
    """Reliability diagrams: accuracy against confidence in ``bins`` equal-width bins, one panel
    per model, with the expected calibration error in the title (Guo et al. 2017, Fig. 1).

    :param predictions: ``{name: log_probs}`` (or one tensor of log-probabilities, shape (N, classes)).
    """
    from ..metrics import expected_calibration_error, reliability

    if torch.is_tensor(predictions):
        predictions = {"model": predictions}
    fig = Figure(figsize=(4 * len(predictions), 4))
    axes = fig.subplots(1, len(predictions), squeeze=False)[0]
    edges = torch.linspace(0, 1, bins + 1)
    for ax, (name, lp) in zip(axes, predictions.items()):
        lp, yy = lp.detach().cpu(), y.cpu()
        r = reliability(lp, yy, bins)
        ece = expected_calibration_error(lp, yy, bins)
        acc = r["accuracy"].nan_to_num(0.0)
        ax.bar(edges[:-1], acc, width=1 / bins, align="edge", edgecolor="k", alpha=0.7, label="accuracy")
        gap = r["confidence"].nan_to_num(0.0) - acc
        ax.bar(edges[:-1], gap, bottom=acc, width=1 / bins, align="edge", color="r", alpha=0.3, label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"{name}: ECE {100 * ece:.2f} %")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
