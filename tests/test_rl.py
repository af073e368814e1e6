"""Policy-gradient exploration with variance layers (VN §6.2)."""

import math

import pytest
import torch

pytest.importorskip("gymnasium", reason="needs the experiments extra")

from pyro_varnet.experiments.rl import (  # noqa: E402
    LAYERS,
    Baseline,
    EpisodeNoiseLinear,
    Policy,
    compare_exploration,
    episode_log_probs,
    reinforce,
    reward_to_go,
    rollout,
)
from tests.common import assert_within_se


def test_reward_to_go():
    torch.testing.assert_close(reward_to_go([1.0, 1.0, 1.0], 0.5), torch.tensor([1.75, 1.5, 1.0]))


def test_noise_is_fixed_within_an_episode_and_redrawn_between():
    torch.manual_seed(0)
    layer = EpisodeNoiseLinear(4, 3, "variance")
    x = torch.randn(2, 4)
    a, b = layer(x), layer(x)
    torch.testing.assert_close(a, b)
    layer.resample()
    assert not torch.allclose(layer(x), a)
    det = EpisodeNoiseLinear(4, 3, "deterministic")
    before = det(x)
    det.resample()
    torch.testing.assert_close(det(x), before)


def test_variance_layer_weights_have_zero_mean_and_variance_sigma2():
    torch.manual_seed(1)
    layer = EpisodeNoiseLinear(3, 2, "variance")
    k = 20000
    ws = []
    for _ in range(k):
        layer.resample()
        ws.append(layer.weight().detach())
    ws = torch.stack(ws).double()
    var = layer.sigma.detach().double().square()
    assert_within_se(ws.mean(0), torch.zeros_like(var), (var / k).sqrt(), msg="mean")
    assert_within_se(ws.var(0), var, var * math.sqrt(2 / (k - 1)), msg="variance")
    noisy = EpisodeNoiseLinear(3, 2, "parameter-noise")
    noisy.resample()
    assert not torch.allclose(noisy.weight(), noisy.mu)


class _Walk:
    """A 3-step episode with 4-dimensional observations, rewards 1."""

    def reset(self, seed=None):
        self.t = 0
        return torch.zeros(4).numpy(), {}

    def step(self, action):
        self.t += 1
        return torch.full((4,), float(self.t)).numpy(), 1.0, self.t == 3, False, {}


@pytest.mark.parametrize("kind", LAYERS)
def test_batched_log_probs_equal_per_step_log_probs(kind):
    # rollout plays without autograd; the batched recomputation must give the same log π(a|s)
    # and gradient as building the graph step by step with the episode's noise draw
    torch.manual_seed(0)
    policy = Policy(4, 2, kind, hidden=8)
    policy.resample()
    obs, actions, rewards = rollout(_Walk(), policy)
    assert obs.shape == (3, 4) and actions.shape == (3,) and rewards == [1.0, 1.0, 1.0]
    batched = episode_log_probs(policy, obs, actions)
    (grad_b,) = torch.autograd.grad(batched.sum(), policy.fc1.weight)
    steps = torch.stack([torch.distributions.Categorical(logits=policy(o)).log_prob(a) for o, a in zip(obs, actions)])
    (grad_s,) = torch.autograd.grad(steps.sum(), policy.fc1.weight)
    torch.testing.assert_close(batched, steps)
    torch.testing.assert_close(grad_b, grad_s)


def test_reinforce_and_comparison_smoke(tmp_path):
    pytest.importorskip("gymnasium")
    returns = reinforce("CartPole-v1", "variance", episodes=3, seed=0)
    assert len(returns) == 3 and all(r >= 1 for r in returns)
    assert reinforce("CartPole-v1", "variance", episodes=3, seed=0) == returns  # seeded
    res = compare_exploration(kinds=LAYERS, seeds=2, episodes=2)
    assert set(res["final"]) == set(LAYERS) and all(len(v) == 2 for v in res["returns"].values())
    with pytest.raises(ValueError, match="policy layer"):
        Policy(4, 2, kind="dropout")


def test_baselines_turn_reward_to_go_into_advantages():
    g1, g2 = torch.tensor([3.0, 2.0, 1.0]), torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    # running: one mean and scale, the episode folded in first (weight 0.1 for the newest)
    b = Baseline("running")
    torch.testing.assert_close(b(g1), (g1 - 2.0) / math.sqrt(2 / 3))
    m, v = 0.9 * 2.0 + 0.1 * 3.0, 0.9 * (2 / 3) + 0.1 * 2.0
    torch.testing.assert_close(b(g2), (g2 - m) / math.sqrt(v))
    # per step: a mean per time step; steps only one episode reached keep that episode's value
    p = Baseline("per-step")
    torch.testing.assert_close(p(g1), torch.zeros(3))
    step_mean = torch.tensor([0.9 * 3 + 0.1 * 5, 0.9 * 2 + 0.1 * 4, 0.9 * 1 + 0.1 * 3, 2.0, 1.0])
    torch.testing.assert_close(p(g2), (g2 - step_mean) / math.sqrt(v))
    torch.testing.assert_close(p(g1), (g1 - (0.9 * step_mean[:3] + 0.1 * g1)) / math.sqrt(0.9 * v + 0.1 * 2 / 3))
    # none: scaled, not centred
    n = Baseline("none")
    torch.testing.assert_close(n(g1), g1 / math.sqrt(2 / 3))
    with pytest.raises(ValueError, match="baseline"):
        Baseline("critic")


def test_sigma_scale_scales_the_noisy_layers_initialisation():
    torch.manual_seed(0)
    wide = EpisodeNoiseLinear(400, 50, "variance", sigma_scale=3.0).sigma.detach()
    assert wide.abs().max() <= 3 / 20 and wide.abs().max() > 2.9 / 20  # U(±3/√400)
    noisy = EpisodeNoiseLinear(400, 50, "parameter-noise", sigma_scale=3.0).sigma.detach()
    torch.testing.assert_close(noisy, torch.full_like(noisy, 0.5 * 3 / 20))
    with pytest.raises(ValueError, match="sigma_scale"):
        EpisodeNoiseLinear(4, 2, "variance", sigma_scale=0.0)


def test_search_options_train():
    pytest.importorskip("gymnasium")
    options = {"sigma_scale": 2.0, "sigma_lr_mult": 10.0, "baseline": "per-step", "episodes_per_update": 2}
    returns = reinforce("CartPole-v1", "variance", episodes=3, seed=0, **options)
    assert len(returns) == 3 and returns == reinforce("CartPole-v1", "variance", episodes=3, seed=0, **options)
    res = compare_exploration(kinds=("variance",), seeds=1, episodes=2, **options)
    assert len(res["returns"]["variance"][0]) == 2
    with pytest.raises(ValueError, match="episodes_per_update"):
        reinforce("CartPole-v1", "variance", episodes=3, episodes_per_update=0)
