"""Priors: LogUniform is improper and says so; Student-t and the prior factory."""

import pytest
import torch

from pyro_varnet.distributions import PRIORS, LogUniform, StudentTPrior, make_prior


def test_log_uniform_log_prob_and_no_sampling():
    p = LogUniform((2, 3))
    w = torch.tensor([[0.5, -2.0, 1.0], [3.0, -0.1, 10.0]])
    torch.testing.assert_close(p.log_prob(w), -w.abs().log())
    with pytest.raises(NotImplementedError, match="improper"):
        p.sample()
    assert p.expand((4, 2, 3)).batch_shape == (4, 2, 3)
    assert p.to_event(2).event_shape == (2, 3)


def test_student_t_prior_density():
    p = StudentTPrior(df=3.0, batch_shape=(5,))
    w = torch.linspace(-2, 2, 5)
    ref = torch.distributions.StudentT(3.0).log_prob(w)
    torch.testing.assert_close(p.log_prob(w), ref)
    tiny = StudentTPrior(batch_shape=(3,))
    assert tiny.df.max().item() == pytest.approx(1e-16)
    assert torch.isfinite(tiny.log_prob(torch.tensor([1e-3, 0.5, 10.0]))).all()
    with pytest.raises(ValueError, match="df > 0"):
        StudentTPrior(df=0.0)


@pytest.mark.parametrize("name", PRIORS)
def test_make_prior_shapes(name):
    p = make_prior(name, (4, 3))
    assert p.event_shape == (4, 3) and p.batch_shape == ()
    assert p.log_prob(torch.rand(4, 3) + 0.1).shape == ()


def test_make_prior_unknown():
    with pytest.raises(ValueError, match="expected prior"):
        make_prior("laplace", (2,))
