r"""Exploration with variance-layer parameter noise in policy gradient (VN §6.2, Fig. 6).

A policy with three fully connected hidden layers of 256 units (VN §6.2; the output layer
gives action logits) whose **second** hidden layer is

* ``"deterministic"`` — an ordinary linear layer;
* ``"parameter-noise"`` — :math:`W = \mu + \sigma\circ\varepsilon` with learned μ and σ
  (Fortunato et al. 2017; Plappert et al. 2017);
* ``"variance"`` — a variance layer :math:`W = \sigma\circ\varepsilon`, zero mean, learned σ
  (VN §3).

Noise ε is drawn once per episode; the policy is trained by REINFORCE (Williams 1992) with
one Adam update per episode (or per ``episodes_per_update``); the reward-to-go is centred and
scaled by running statistics across episodes (:class:`Baseline`). Environments
come from gymnasium.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._checks import check_choice, check_positive_finite
from .._pool import map_processes

LAYERS = ("deterministic", "parameter-noise", "variance")


class EpisodeNoiseLinear(nn.Module):
    """Linear layer whose weight noise is redrawn by :meth:`resample` (once per episode)."""

    def __init__(self, n_in: int, n_out: int, kind: str, init_sigma: float = 0.5, sigma_scale: float = 1.0) -> None:
        super().__init__()
        check_choice("policy layer", kind, LAYERS)
        check_positive_finite("sigma_scale", sigma_scale)
        self.kind = kind
        bound = 1 / math.sqrt(n_in)
        if kind != "variance":
            self.mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        if kind != "deterministic":
            # NoisyNet's σ0/√fan_in for parameter noise; a variance layer's σ as the authors' code:
            # U(±1/√fan_in); both times sigma_scale
            s = sigma_scale * bound
            init = torch.full((n_out, n_in), init_sigma * s) if kind == "parameter-noise" else None
            self.sigma = nn.Parameter(init if init is not None else torch.empty(n_out, n_in).uniform_(-s, s))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.register_buffer("eps", torch.zeros(n_out, n_in))
        self.resample()

    def resample(self) -> None:
        if self.kind != "deterministic":
            self.eps.normal_()

    def weight(self) -> torch.Tensor:
        if self.kind == "deterministic":
            return self.mu
        noise = self.sigma * self.eps
        return noise if self.kind == "variance" else self.mu + noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight(), self.bias)


class Policy(nn.Module):
    """obs → 256 → 256 (the chosen layer) → 256 → action logits, ReLU activations (a variance layer
    needs an asymmetric nonlinearity after it: its sign is noise, its magnitude the signal)."""

    def __init__(
        self, obs_dim: int, n_actions: int, kind: str = "variance", hidden: int = 256, sigma_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden)
        self.fc2 = EpisodeNoiseLinear(hidden, hidden, kind, sigma_scale=sigma_scale)
        self.fc3 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_actions)

    def resample(self) -> None:
        self.fc2.resample()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(obs))
        h = torch.relu(self.fc2(h))
        return self.out(torch.relu(self.fc3(h)))

    @torch.no_grad()
    def frozen(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The layers' (weight, bias) with this episode's noise draw, as NumPy arrays: one
        observation at a time, NumPy's matrix-vector products cost a fraction of torch's
        per-call overhead (the rollout's hot loop)."""
        layers = [(self.fc1.weight, self.fc1.bias), (self.fc2.weight(), self.fc2.bias)]
        layers += [(self.fc3.weight, self.fc3.bias), (self.out.weight, self.out.bias)]
        return [(w.detach().cpu().numpy(), b.detach().cpu().numpy()) for w, b in layers]


def _logits(layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
    """:meth:`Policy.forward` on one observation with :meth:`Policy.frozen`'s arrays."""
    h = obs
    for i, (w, b) in enumerate(layers):
        h = w @ h + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def reward_to_go(rewards: Sequence[float], gamma: float) -> torch.Tensor:
    out, running = [], 0.0
    for r in reversed(rewards):
        running = r + gamma * running
        out.append(running)
    return torch.tensor(out[::-1], dtype=torch.float32)


@torch.no_grad()
def rollout(env, policy: Policy, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Play one episode with the policy's current noise draw, sampling actions from its
    softmax; returns the observations, the actions and the rewards. No autograd graph is
    kept per step: :func:`episode_log_probs` recomputes the log-probabilities in one batch."""
    obs, _ = env.reset(seed=seed)
    layers = policy.frozen()
    observations, actions, rewards, done = [], [], [], False
    uniforms = iter(())
    while not done:
        o = np.asarray(obs, dtype=np.float32)
        logits = _logits(layers, o).astype(np.float64)
        probs = np.exp(logits - logits.max())
        cdf = np.cumsum(probs / probs.sum())
        # one uniform from torch's generator (seeded with the run) per step, drawn 256 at a time,
        # inverted by the CDF
        u = next(uniforms, None)
        if u is None:
            uniforms = iter(torch.rand(256, dtype=torch.float64).tolist())
            u = next(uniforms)
        action = min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)
        observations.append(torch.from_numpy(o))
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        done = terminated or truncated
    return torch.stack(observations), torch.tensor(actions), rewards


def episode_log_probs(policy: Policy, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a_t | s_t) of a played episode, in one batched pass (the noise draw is the one the
    episode was played with: it is fixed until the next :meth:`Policy.resample`)."""
    return policy(observations).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)


#: how the reward-to-go becomes an advantage (see :func:`reinforce`)
BASELINES = ("running", "per-step", "none")


class Baseline:
    """Running statistics of the reward-to-go across episodes (exponential, the newest episode
    weighing ``1 − decay``) that turn an episode's reward-to-go ``g`` into advantages:

    * ``"running"`` — ``(g − m) / s`` with one running mean m and scale s over all time steps;
    * ``"per-step"`` — ``(g_t − m_t) / s``, a running mean per time step t (a time-indexed value
      baseline): where the reward-to-go is dominated by the time left (Acrobot's −1 per step),
      it removes that and leaves what the episode's actions changed;
    * ``"none"`` — ``g / s``, no centring.

    Each episode is folded into the statistics first, then scored against them.
    """

    def __init__(self, kind: str = "running", decay: float = 0.9) -> None:
        check_choice("baseline", kind, BASELINES)
        self.kind, self.decay = kind, decay
        self.mean = self.var = self.step_mean = None

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        mean, var = g.mean().item(), g.var(correction=0).item()
        first = self.mean is None
        self.mean = mean if first else self.decay * self.mean + (1 - self.decay) * mean
        self.var = var if first else self.decay * self.var + (1 - self.decay) * var
        if self.kind == "per-step":
            self.step_mean = g.clone() if first else self._fold(self.step_mean, g)
            centre = self.step_mean[: len(g)]
        else:
            centre = self.mean if self.kind == "running" else 0.0
        adv = g - centre
        return adv / (math.sqrt(self.var) + 1e-8) if self.var else adv

    def _fold(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Per step over the longer of the two: ``decay·old + (1 − decay)·new`` where both have
        the step, the one value where only one has it."""
        n = max(len(old), len(new))
        a, b = old.new_full((n,), math.nan), old.new_full((n,), math.nan)
        a[: len(old)], b[: len(new)] = old, new
        both = self.decay * a + (1 - self.decay) * b
        return torch.where(a.isnan(), b, torch.where(b.isnan(), a, both))


def reinforce(
    env_id: str = "CartPole-v1",
    kind: str = "variance",
    episodes: int = 300,
    seed: int = 0,
    lr: float = 1e-3,
    gamma: float = 0.99,
    hidden: int = 256,
    sigma_scale: float = 1.0,
    sigma_lr_mult: float = 1.0,
    baseline: str = "running",
    episodes_per_update: int = 1,
) -> list[float]:
    """Train a policy by REINFORCE; returns the return of every training episode.

    :param sigma_scale: the noisy layer's σ initialisation times this.
    :param sigma_lr_mult: σ learns at ``lr`` times this (the other parameters at ``lr``).
    :param baseline: ``"running"``, ``"per-step"`` or ``"none"`` (see :class:`Baseline`).
    :param episodes_per_update: episodes (each with its own noise draw) whose losses are
        summed into one Adam step.
    """
    import gymnasium as gym

    check_choice("policy layer", kind, LAYERS)
    check_positive_finite("sigma_lr_mult", sigma_lr_mult)
    if episodes < 1 or episodes_per_update < 1:
        raise ValueError(f"expected episodes >= 1 and episodes_per_update >= 1, got {episodes}, {episodes_per_update}")
    advantage = Baseline(baseline)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    env = gym.make(env_id)
    policy = Policy(env.observation_space.shape[0], env.action_space.n, kind, hidden, sigma_scale)
    sigma = [p for name, p in policy.named_parameters() if name.endswith("sigma")]
    rest = [p for name, p in policy.named_parameters() if not name.endswith("sigma")]
    opt = torch.optim.Adam([{"params": rest}, {"params": sigma, "lr": lr * sigma_lr_mult}], lr)
    returns = []
    opt.zero_grad()
    for episode in range(episodes):
        policy.resample()  # one noise draw per episode
        obs, actions, rewards = rollout(env, policy, seed=seed * 100_000 + episode)
        # a baseline and scale that run across episodes: normalising within an episode would
        # erase the one signal that matters on CartPole, that longer episodes are better
        adv = advantage(reward_to_go(rewards, gamma))
        (-(episode_log_probs(policy, obs, actions) * adv).sum()).backward()
        if (episode + 1) % episodes_per_update == 0 or episode + 1 == episodes:
            opt.step()
            opt.zero_grad()
        returns.append(sum(rewards))
    env.close()
    return returns


def _run(job):
    env_id, kind, episodes, seed, lr, options = job
    torch.set_num_threads(1)
    return reinforce(env_id, kind, episodes, seed, lr, **options)


def run_jobs(jobs: Sequence[tuple], processes: int = 1) -> list[list[float]]:
    """:func:`reinforce` for each ``(env_id, kind, episodes, seed, lr, options)``, one thread
    each, on ``processes`` processes; the returns per job, in order."""
    return map_processes(_run, jobs, processes)


def compare_exploration(
    env_id: str = "CartPole-v1",
    kinds: Sequence[str] = LAYERS,
    seeds: int = 5,
    episodes: int = 300,
    lr: float = 1e-3,
    last: int = 20,
    processes: int = 1,
    **options,
) -> dict:
    """REINFORCE for every policy kind and seed. Returns ``{"returns": {kind: [[per episode] per
    seed]}, "final": {kind: (mean, standard error over seeds)}}``, a seed's score being its
    mean return over the ``last`` episodes. ``options`` go to :func:`reinforce`
    (``sigma_scale``, ``sigma_lr_mult``, ``baseline``, ``episodes_per_update``)."""
    for kind in kinds:
        check_choice("policy layer", kind, LAYERS)
    jobs = [(env_id, kind, episodes, seed, lr, options) for kind in kinds for seed in range(seeds)]
    outs = run_jobs(jobs, processes)
    returns = {kind: [] for kind in kinds}
    for (_, kind, *_), out in zip(jobs, outs):
        returns[kind].append(out)
    return {"returns": returns, "final": {kind: final_score(runs, last)[:2] for kind, runs in returns.items()}}


def final_score(runs: Sequence[Sequence[float]], last: int = 20) -> tuple[float, float, np.ndarray]:
    """A policy kind's final score: each seed's mean return over its ``last`` episodes; returns
    the mean over seeds, its standard error (NaN for one seed) and the per-seed scores."""
    scores = np.array([np.mean(r[-last:]) for r in runs])
    se = float(scores.std(ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else float("nan")
    return float(scores.mean()), se, scores
