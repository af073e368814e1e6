r"""Exploration with variance-layer parameter noise in policy gradient (VN §6.2, Fig. 6).

A policy with three fully connected hidden layers of 256 units (VN §6.2; the output layer
gives action logits) whose **second** hidden layer is

* ``"deterministic"`` — an ordinary linear layer;
* ``"parameter-noise"`` — :math:`W = \mu + \sigma\circ\varepsilon` with learned μ and σ
  (Fortunato et al. 2017; Plappert et al. 2017);
* ``"variance"`` — a variance layer :math:`W = \sigma\circ\varepsilon`, zero mean, learned σ
  (VN §3).

Noise ε is drawn once per episode; the policy is trained by REINFORCE (Williams 1992) with
one Adam update per episode; the reward-to-go is centred and scaled by running statistics
across episodes. Environments
come from gymnasium.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._checks import check_choice

LAYERS = ("deterministic", "parameter-noise", "variance")


class EpisodeNoiseLinear(nn.Module):
    """Linear layer whose weight noise is redrawn by :meth:`resample` (once per episode)."""

    def __init__(self, n_in: int, n_out: int, kind: str, init_sigma: float = 0.5) -> None:
        super().__init__()
        check_choice("policy layer", kind, LAYERS)
        self.kind = kind
        bound = 1 / math.sqrt(n_in)
        if kind != "variance":
            self.mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        if kind != "deterministic":
            # NoisyNet's σ0/√fan_in for parameter noise; a variance layer's σ as the authors' code: U(±1/√fan_in)
            init = torch.full((n_out, n_in), init_sigma * bound) if kind == "parameter-noise" else None
            self.sigma = nn.Parameter(init if init is not None else torch.empty(n_out, n_in).uniform_(-bound, bound))
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

    def __init__(self, obs_dim: int, n_actions: int, kind: str = "variance", hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden)
        self.fc2 = EpisodeNoiseLinear(hidden, hidden, kind)
        self.fc3 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_actions)

    def resample(self) -> None:
        self.fc2.resample()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(obs))
        h = torch.relu(self.fc2(h))
        return self.out(torch.relu(self.fc3(h)))


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
    observations, actions, rewards, done = [], [], [], False
    while not done:
        o = torch.as_tensor(obs, dtype=torch.float32)
        action = int(torch.multinomial(policy(o).softmax(-1), 1))
        observations.append(o)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        done = terminated or truncated
    return torch.stack(observations), torch.tensor(actions), rewards


def episode_log_probs(policy: Policy, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a_t | s_t) of a played episode, in one batched pass (the noise draw is the one the
    episode was played with: it is fixed until the next :meth:`Policy.resample`)."""
    return policy(observations).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)


def reinforce(
    env_id: str = "CartPole-v1",
    kind: str = "variance",
    episodes: int = 300,
    seed: int = 0,
    lr: float = 1e-3,
    gamma: float = 0.99,
    hidden: int = 256,
) -> list[float]:
    """Train a policy by REINFORCE; returns the return of every training episode."""
    import gymnasium as gym

    check_choice("policy layer", kind, LAYERS)
    if episodes < 1:
        raise ValueError(f"expected episodes >= 1, got {episodes}")
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    env = gym.make(env_id)
    policy = Policy(env.observation_space.shape[0], env.action_space.n, kind, hidden)
    opt = torch.optim.Adam(policy.parameters(), lr)
    returns, base_mean, base_var = [], None, None
    for episode in range(episodes):
        policy.resample()  # one noise draw per episode
        obs, actions, rewards = rollout(env, policy, seed=seed * 100_000 + episode)
        g = reward_to_go(rewards, gamma)
        # a baseline and scale that run across episodes: normalising within an episode would
        # erase the one signal that matters on CartPole, that longer episodes are better
        mean, var = g.mean().item(), g.var(correction=0).item()
        base_mean = mean if base_mean is None else 0.9 * base_mean + 0.1 * mean
        base_var = var if base_var is None else 0.9 * base_var + 0.1 * var
        adv = (g - base_mean) / (math.sqrt(base_var) + 1e-8) if base_var else g - base_mean
        loss = -(episode_log_probs(policy, obs, actions) * adv).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        returns.append(sum(rewards))
    env.close()
    return returns


def _run(args):
    env_id, kind, episodes, seed, lr = args
    torch.set_num_threads(1)
    return reinforce(env_id, kind, episodes, seed, lr)


def compare_exploration(
    env_id: str = "CartPole-v1",
    kinds: Sequence[str] = LAYERS,
    seeds: int = 5,
    episodes: int = 300,
    lr: float = 1e-3,
    last: int = 20,
    processes: int = 1,
) -> dict:
    """REINFORCE for every policy kind and seed. Returns ``{"returns": {kind: [[per episode] per
    seed]}, "final": {kind: (mean, standard error over seeds)}}``, a seed's score being its
    mean return over the ``last`` episodes."""
    for kind in kinds:
        check_choice("policy layer", kind, LAYERS)
    jobs = [(env_id, kind, episodes, seed, lr) for kind in kinds for seed in range(seeds)]
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(processes) as pool:
            outs = pool.map(_run, jobs)
    else:
        outs = [_run(job) for job in jobs]
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
