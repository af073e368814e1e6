"""Figures of the experiments: VN Fig. 6 (RL exploration) and Fig. 7 (adversarial attacks)."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..analysis.plots import _save


def plot_attack_curves(curves, path=None, title: str = "targeted iterative FGSM (VN Fig. 7)") -> Figure:
    """Successful-attack rate per iteration, one line per model (``{name: [rate per step]}``)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, rates in curves.items():
        ax.plot(range(1, len(rates) + 1), [100 * r for r in rates], marker="o", ms=3, label=name)
    ax.set(xlabel="attack iteration", ylabel="successful attacks (%)", title=title, ylim=(0, 100))
    ax.legend()
    return _save(fig, path)


def plot_rl_curves(returns, path=None, title: str = "REINFORCE exploration (VN Fig. 6)", window: int = 10) -> Figure:
    """Mean episode return over seeds (moving average over ``window`` episodes) ± one standard
    error, one line per policy kind (``{kind: [[return per episode] per seed]}``)."""
    import numpy as np

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for kind, runs in returns.items():
        r = np.array(runs, dtype=float)
        window = max(1, min(window, r.shape[1]))
        kernel = np.ones(window) / window
        smooth = np.array([np.convolve(row, kernel, mode="valid") for row in r])
        mean = smooth.mean(0)
        se = smooth.std(0, ddof=1) / np.sqrt(len(smooth)) if len(smooth) > 1 else np.zeros_like(mean)
        x = np.arange(window, r.shape[1] + 1)
        ax.plot(x, mean, label=f"{kind} ({len(r)} seeds)")
        ax.fill_between(x, mean - se, mean + se, alpha=0.25)
    ax.set(xlabel="training episode", ylabel="episode return", title=title)
    ax.legend()
    return _save(fig, path)
