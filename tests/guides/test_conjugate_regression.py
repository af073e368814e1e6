"""SVI recovers the closed-form posterior of a conjugate Bayesian linear regression.

With prior w ~ N(0, s^2 I), likelihood y ~ N(Xw, sigma_n^2) and a fully factorised
Gaussian q, the optimum of the ELBO is known in closed form: the means are the exact
posterior mean m = Lambda^{-1} X^T y / sigma_n^2 and the variances are 1 / Lambda_ii, where
Lambda = X^T X / sigma_n^2 + I / s^2 is the posterior precision (Bishop, PRML §10.1.2).
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.nn import PyroModule

from pyro_varnet.guides import Additive, NetworkGuide
from pyro_varnet.models import BayesLinear
from pyro_varnet.poutine import local_reparameterization

N, D, NOISE, PRIOR_SCALE = 100, 3, 0.5, 1.0


class Regression(PyroModule):
    def __init__(self):
        super().__init__()
        self.lin = BayesLinear(D, 1, bias=False, prior="normal", prior_scale=PRIOR_SCALE)

    def forward(self, x, y=None):
        mean = self.lin(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("obs", dist.Normal(mean, NOISE), obs=y)


def closed_form(x, y):
    precision = x.T @ x / NOISE**2 + torch.eye(D) / PRIOR_SCALE**2
    mean = torch.linalg.solve(precision, x.T @ y / NOISE**2)
    return mean, 1 / precision.diagonal()


@pytest.mark.parametrize("lrt", [False, True])
def test_svi_recovers_mean_field_posterior(lrt):
    torch.manual_seed(1)
    x = torch.randn(N, D)
    y = x @ torch.tensor([1.0, -0.5, 0.25]) + NOISE * torch.randn(N)
    mean, var = closed_form(x, y)
    model = Regression()
    guide = NetworkGuide(model, default=Additive(init_log_sigma2=-4.0))
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999}), TraceMeanField_ELBO())
    history = []
    for step in range(3000):
        if lrt:
            with local_reparameterization():
                svi.step(x, y)
        else:
            svi.step(x, y)
        if step >= 1500:  # average the last iterates (Polyak) to remove optimisation noise
            site = guide.site("lin.weight")
            history.append((site.mu.detach().clone(), site.log_sigma2.detach().exp().clone()))
    mu = torch.stack([h[0] for h in history]).mean(0).squeeze(0)
    s2 = torch.stack([h[1] for h in history]).mean(0).squeeze(0)
    # stated tolerances: means within 0.1 posterior sd, variances within 10 % (relative).
    # Measured over seeds 0-2: without LRT max errors 0.066 sd / 4.4 %, with LRT 0.010 sd /
    # 2.5 % (LRT's lower gradient variance, Kingma et al. 2015, shows directly).
    assert ((mu - mean).abs() / var.sqrt()).max() < 0.1, (mu, mean)
    assert ((s2 - var).abs() / var).max() < 0.10, (s2, var)
