"""Prediction modes: normalisation, the LRT ensemble against direct weight sampling, BN modes."""

import pyro
import pytest
import torch

from pyro_varnet.guides import Additive, GaussianDropout, NetworkGuide, ZeroMean
from pyro_varnet.infer import MODES, accuracy, nll, predict
from pyro_varnet.infer.predict import run_once
from pyro_varnet.models import MLP, Classifier, LeNet5
from pyro_varnet.poutine import local_reparameterization
from tests.common import assert_within_se


def _mlp(default="additive", families=None):
    model = Classifier(MLP([3, 8, 4]), num_data=100)
    guide = NetworkGuide(model, default=default, families=families or {})
    guide(torch.zeros(2, 3))
    with torch.no_grad():  # moderate noise so that the predictive differs from one sample
        for name, p in guide.named_parameters():
            if "log_sigma2" in name:
                p.fill_(-1.0)
    return model, guide


@pytest.mark.parametrize("mode", MODES)
def test_modes_return_normalised_log_probs(mode):
    model, guide = _mlp()
    x = torch.randn(11, 3)
    lp = predict(model, guide, x, mode=mode, num_samples=7, batch_size=4)
    assert lp.shape == (11, 4)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(11))


def test_lrt_ensemble_matches_direct_weight_sampling():
    model, guide = _mlp()
    x, k = torch.randn(5, 3), 1000
    with torch.no_grad():
        direct = torch.stack([torch.softmax(run_once(model, guide, x), -1) for _ in range(k)])
        with local_reparameterization():
            lrt = torch.softmax(run_once(model, guide, x.repeat(k, 1)), -1).reshape(k, 5, 4)
    se = (direct.var(0) / k + lrt.var(0) / k).sqrt()
    assert_within_se(lrt.mean(0), direct.mean(0), se, msg="LRT vs direct predictive")
    for lrt in (False, True):
        ens = predict(model, guide, x, mode="ensemble", num_samples=k, lrt=lrt).exp()
        assert_within_se(ens, direct.mean(0), se, msg=f"predict(ensemble, lrt={lrt}) vs direct")
    assert (direct.mean(0) - direct[0]).abs().max() > 10 * se.max()  # the test has power


def test_sample_mode_shares_one_weight_sample():
    model, guide = _mlp()
    x = torch.randn(1, 3).repeat(6, 1)
    lp = predict(model, guide, x, mode="sample", batch_size=2)
    torch.testing.assert_close(lp, lp[:1].expand_as(lp))


def test_mean_mode_and_zero_mean_variance_layer():
    model, guide = _mlp(default="layer", families={"fc2": ZeroMean()})
    x = torch.randn(9, 3)
    lp = predict(model, guide, x, mode="mean")
    torch.testing.assert_close(lp, lp[:1].expand_as(lp))  # the weight scaling rule fails (VN §2)
    assert lp.exp().max() < 1  # and the ensemble does not
    ens = predict(model, guide, x, mode="ensemble", num_samples=50)
    assert not torch.allclose(ens, ens[:1].expand_as(ens))


def test_zero_mean_mode_approximates_large_alpha():
    # VN Theorem 1: for large alpha the zero-mean approximation keeps the ensemble's predictions
    model = Classifier(MLP([3, 8, 4]), num_data=100)
    guide = NetworkGuide(model, default=GaussianDropout("layer", init_log_alpha=12.0))
    x = torch.randn(6, 3)
    guide(x)
    a = predict(model, guide, x, mode="ensemble", num_samples=4000, lrt=True).exp()
    b = predict(model, guide, x, mode="zero_mean", num_samples=4000, lrt=True).exp()
    assert (a - b).abs().max() < 5 * 0.5 / 4000**0.5 * 2**0.5  # within 5 SE (probabilities sd <= 0.5)


def test_batchnorm_eval_during_prediction_and_mode_restored():
    model = Classifier(LeNet5(batchnorm=True, bayesian=["fc1"]), num_data=10)
    guide = NetworkGuide(model, default=Additive())
    x = torch.rand(4, 1, 28, 28)
    guide(x)
    model.train()
    stats = model.net.bn3.running_mean.clone()
    lp1 = predict(model, guide, x, mode="mean")
    lp2 = predict(model, guide, x[:1], mode="mean")
    torch.testing.assert_close(lp1[:1], lp2)  # eval mode: no dependence on the batch
    assert model.training and torch.equal(stats, model.net.bn3.running_mean)


def test_accuracy_nll_and_bad_mode():
    lp = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    y = torch.tensor([0, 0])
    assert accuracy(lp, y) == 0.5
    assert nll(lp, y) == pytest.approx(-(torch.log(torch.tensor(0.7)) + torch.log(torch.tensor(0.2))).item() / 2)
    model, guide = _mlp()
    with pytest.raises(ValueError, match="prediction mode"):
        predict(model, guide, torch.randn(2, 3), mode="median")
    with pytest.raises(ValueError, match="num_samples"):
        predict(model, guide, torch.randn(2, 3), num_samples=0)
    assert pyro.get_param_store()  # params live in the store


def test_sample_mode_under_lrt_draws_noise_per_object():
    model, guide = _mlp(default="layer")
    x = torch.randn(1, 3).repeat(6, 1)
    lp = predict(model, guide, x, mode="sample", batch_size=4, lrt=True)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(6))
    assert (lp - lp[:1]).abs().max() > 1e-4  # equal objects, independent noise


def test_weight_draws_for_predictions_have_no_subnormal_entries():
    from pyro_varnet.infer.predict import draw_weights

    torch.manual_seed(0)
    model = Classifier(MLP([6, 5, 3]), num_data=10)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    x = torch.randn(4, 6)
    guide(x)
    tiny = torch.finfo(torch.float32).tiny
    site = guide.site(guide.site_names[0])
    with torch.no_grad():  # σ that a trained zero-mean layer leaves decaying towards 0, and ordinary ones
        site.sigma.copy_(torch.tensor([1e-37, 3e-38, 0.5, 1.0, 2.0, 1e-3]).repeat(5, 1))
    pyro.set_rng_seed(1)
    plain = pyro.poutine.trace(guide).get_trace(x[:1]).nodes[guide.site_names[0]]["value"]
    assert ((plain.abs() < tiny) & (plain != 0)).any()  # the draw has subnormal weights ...
    pyro.set_rng_seed(1)
    drawn = draw_weights(guide, x).nodes[guide.site_names[0]]["value"]
    assert not ((drawn.abs() < tiny) & (drawn != 0)).any()  # ... which become 0
    normal = plain.abs() >= tiny
    assert torch.equal(drawn[normal], plain[normal]) and (drawn[~normal] == 0).all()
