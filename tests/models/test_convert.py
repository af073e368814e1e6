"""Bring your own network: ``bayesian(net)`` on a torchvision ResNet-18, a user's own network with
dense, 1-D and 2-D convolutional layers, and a trained LeNet-5 started from its weights."""

import math
import os

import pyro
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

import pyro_varnet
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.guides.families import make_family
from pyro_varnet.infer import fit, predict, restore
from pyro_varnet.models import BayesConv1d, BayesConv2d, BayesLinear, Classifier, bayesian, convertible_layers

MODES = ("mean", "sample", "ensemble", "zero_mean")


class UserNet(nn.Module):
    """A user's own network: every convertible layer type with non-default hyper-parameters."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Conv1d(4, 6, kernel_size=3, stride=2, padding=1, dilation=2, groups=2)
        self.img = nn.Conv2d(1, 4, kernel_size=(3, 2), stride=(2, 1), padding=1, bias=False)
        self.bn = nn.BatchNorm1d(6)
        self.head = nn.Sequential(nn.Linear(6 * 3 + 4 * 3 * 7, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        seq, img = x[:, :28].reshape(-1, 4, 7), x[:, 28:].reshape(-1, 1, 6, 6)
        a = self.bn(self.seq(seq)).flatten(1)
        b = F.relu(self.img(img)).flatten(1)
        return self.head(torch.cat([a, b], 1))


def test_resnet18_trains_under_lrt_and_predicts_in_every_mode(tmp_path):
    """Must-show 1: the last block's convolutions and the classifier as variance / dropout layers."""
    pyro.set_rng_seed(0)
    base = resnet18(num_classes=10)
    net = bayesian(base, layers=["layer4.1", "fc"])
    assert isinstance(base.fc, nn.Linear)  # a copy was converted
    assert isinstance(net.layer4[1].conv1, BayesConv2d) and isinstance(net.fc, BayesLinear)
    assert isinstance(net.layer4[0].conv1, nn.Conv2d) and not isinstance(net.layer4[0].conv1, BayesConv2d)
    torch.testing.assert_close(net.fc.bias, base.fc.bias)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    model = Classifier(net, num_data=len(x))
    guide = NetworkGuide(model, default="zero-mean", families={"fc": "layer"})
    ckpt = tmp_path / "c.pt"
    history = fit(
        model, guide, (x, y), epochs=4, batch_size=16, lr=1e-3, lrt=True, progress=False, seed=0, checkpoint=ckpt
    )
    assert guide.site_names == ["net.layer4.1.conv1.weight", "net.layer4.1.conv2.weight", "net.fc.weight"]
    losses = history["elbo"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] > losses[0]
    # the rest stays deterministic: BatchNorm, the stem and the first block of layer4 are parameters
    names = {n for n, _ in model.named_parameters()}
    assert {"net.conv1.weight", "net.bn1.weight", "net.layer4.0.conv1.weight", "net.fc.bias"} <= names
    assert "net.fc.weight" not in names
    preds = {mode: predict(model, guide, x[:6], mode=mode, num_samples=3) for mode in MODES}
    for mode, p in preds.items():
        assert p.shape == (6, 10) and torch.isfinite(p).all(), mode
        torch.testing.assert_close(p.exp().sum(-1), torch.ones(6), msg=mode)
    # checkpoints: a fresh conversion and a fresh guide restore the same predictions
    model2 = Classifier(bayesian(resnet18(num_classes=10), layers=["layer4.1", "fc"]), num_data=len(x))
    guide2 = NetworkGuide(model2, default="zero-mean", families={"fc": "layer"})
    restore(model2, guide2, ckpt)
    torch.testing.assert_close(predict(model2, guide2, x[:6], mode="mean"), preds["mean"])


@pytest.mark.parametrize("family", ["layer", "neuron", "weight", "additive", "dropout"])
def test_pretrained_mean_pass_is_the_original_network(family):
    # ground truth: q's means are the trained weights, so mean propagation is the plain network
    torch.manual_seed(0)
    base = UserNet().eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics
        base.bn.running_mean.uniform_(-0.5, 0.5)
        base.bn.running_var.uniform_(0.5, 2.0)
    net = bayesian(base, pretrained=0.05)
    assert isinstance(net.seq, BayesConv1d) and isinstance(net.img, BayesConv2d) and net.img.bias is None
    x = torch.randn(20, 64)
    model = Classifier(net, num_data=20)
    guide = NetworkGuide(model, default=family)
    p = predict(model, guide, x, mode="mean")
    torch.testing.assert_close(p, base(x).log_softmax(-1), rtol=1e-5, atol=1e-5)
    assert guide.site("net.seq.weight").shape == (6, 2, 1, 3)  # the Conv1d kernel as a 1 x k 2-D kernel


def test_pretrained_families_start_with_the_right_moments():
    """Closed forms: mean w and sd delta |w| for Gaussian families (alpha = delta^2); zero mean with
    E[w^2] = w^2 for variance layers; theta = w for dropout."""
    torch.manual_seed(0)
    w, delta = torch.randn(5, 4), 0.2
    for name in ("layer", "neuron", "weight", "additive", "zero-mean", "zero-mean-log", "uniform", "bernoulli"):
        site = make_family(name).build(w.shape)
        site.init_from(w, delta)
        q = site.base()
        if name in ("zero-mean", "zero-mean-log", "uniform", "bernoulli"):
            torch.testing.assert_close(q.mean, torch.zeros_like(w), msg=name)
            torch.testing.assert_close(q.variance, w.square(), rtol=1e-5, atol=1e-7, msg=name)
        else:
            torch.testing.assert_close(q.mean, w, msg=name)
            torch.testing.assert_close(q.stddev, delta * w.abs(), rtol=1e-5, atol=1e-7, msg=name)
    dropout = make_family("dropout").build(w.shape)
    dropout.init_from(w, delta)
    torch.testing.assert_close(dropout.theta.detach(), w)
    with pytest.raises(NotImplementedError, match="cannot start from pretrained"):
        make_family("magnitude").build((5,)).init_from(w[:, 0], delta)


def test_selectors_and_errors():
    net = UserNet()
    assert convertible_layers(net) == ["seq", "img", "head.0", "head.2"]
    by_glob = bayesian(net, layers="head.*")
    assert isinstance(by_glob.head[0], BayesLinear) and isinstance(by_glob.img, nn.Conv2d)
    by_type = bayesian(net, layers=nn.Conv2d)
    assert isinstance(by_type.img, BayesConv2d) and isinstance(by_type.seq, nn.Conv1d)
    by_path = bayesian(net, layers=["head"])
    assert isinstance(by_path.head[2], BayesLinear) and not isinstance(by_path.seq, BayesConv1d)
    # a second call gives other layers another prior and leaves converted ones alone
    both = bayesian(by_path, prior="student-t", layers="img")
    assert both.img.prior == "student-t" and both.head[0].prior == "log-uniform"
    model = Classifier(both, num_data=10)
    NetworkGuide(model)(torch.randn(2, 64))
    inplace = UserNet()
    assert bayesian(inplace, layers="img", inplace=True) is inplace and isinstance(inplace.img, BayesConv2d)
    with pytest.raises(ValueError, match="matches no convertible layer"):
        bayesian(net, layers="fc9")
    with pytest.raises(ValueError, match="no nn.Linear"):
        bayesian(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="nn.Module"):
        bayesian(lambda x: x)
    with pytest.raises(ValueError, match="padding_mode"):
        bayesian(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="lazy"):
        bayesian(nn.Sequential(nn.LazyLinear(3)))
    with pytest.raises(ValueError, match="pretrained"):
        bayesian(net, pretrained=-1.0)
    with pytest.raises(ValueError, match="shape"):
        BayesLinear(3, 2).start_from(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        BayesLinear(3, 2).start_from(torch.full((2, 3), math.nan))
    assert pyro_varnet.bayesian is bayesian


def test_bayes_conv1d_is_nn_conv1d_with_fixed_weights():
    torch.manual_seed(0)
    ref = nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
    layer = BayesConv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, prior=None)
    with torch.no_grad():
        layer.weight.copy_(ref.weight.unsqueeze(2))
        layer.bias.copy_(ref.bias)
    x = torch.randn(5, 4, 11)
    torch.testing.assert_close(layer(x), ref(x))
    with pytest.raises(ValueError, match=r"\(N, 4, L\)"):
        layer(torch.randn(5, 4, 1, 11))


class PlainLeNet5(nn.Module):
    """LeNet-5 as a user writes it in plain PyTorch (Caffe sizes 20-50-500, as models.LeNet5)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


@pytest.mark.integration
@pytest.mark.skipif(
    not os.path.isdir(os.path.join(os.environ.get("PYRO_VARNET_DATA", "/none"), "MNIST", "raw")),
    reason="MNIST not present under $PYRO_VARNET_DATA",
)
def test_pretrained_lenet5_starts_at_the_trained_accuracy():
    """Must-show 1b: a conversion started from a trained deterministic LeNet-5 has its accuracy."""
    from pyro_varnet.data import load_mnist

    (x, y), (xt, yt) = load_mnist(train=True), load_mnist(train=False)
    x, y, xt, yt = x[:6000], y[:6000], xt[:2000], yt[:2000]
    torch.manual_seed(0)
    net = PlainLeNet5()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        for idx in torch.randperm(len(x)).split(100):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        det = float((net(xt).argmax(-1) == yt).float().mean())
    assert det > 0.9
    model = Classifier(bayesian(net, pretrained=True), num_data=len(x))
    guide = NetworkGuide(model, default="weight")
    accs = {
        mode: float((predict(model, guide, xt, mode=mode, num_samples=10).argmax(-1) == yt).float().mean())
        for mode in ("mean", "ensemble")
    }
    print(f"deterministic {det:.4f}, converted (delta 0.1): {accs}")
    assert abs(accs["mean"] - det) <= 0.005
    # weights drawn with sd 0.1|w| barely move a trained LeNet-5: the 10-sample ensemble stays within 1 pt
    assert abs(accs["ensemble"] - det) <= 0.01
