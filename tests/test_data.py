"""Data: the embedded toy problem, MNIST through torchvision, clear errors when missing."""

import os

import pytest
import torch

from pyro_varnet import data


def test_toy_problem_matches_vn_section_3_2():
    x, y = data.toy_problem(2000, seed=0)
    assert x.shape == (8000, 2) and torch.bincount(y).tolist() == [2000] * 4
    for c, center in enumerate(data.TOY_CENTERS):
        pts = x[y == c]
        # mean within 5 SE (sd 1, n = 2000); identity covariance within 5 SE of a variance
        assert ((pts.mean(0) - torch.tensor(center)).abs() < 5 / 2000**0.5).all()
        cov = torch.cov(pts.T)
        assert ((cov - torch.eye(2)).abs() < 5 * (2 / 2000) ** 0.5).all()
    x2, y2 = data.toy_problem(2000, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError):
        data.toy_problem(0)


def test_missing_dataset_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw"):
        data.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load_cifar10(tmp_path)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=data.ENV_VAR):
        data.load_mnist()


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(os.environ.get(data.ENV_VAR, "/nonexistent"), "MNIST", "raw")),
    reason="MNIST not present under $PYRO_VARNET_DATA",
)
def test_mnist_from_shared_folder():
    x, y = data.load_mnist(train=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # counts from shared/data/README.md
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_sine_regression_and_loader():
    x, y = data.sine_regression(4000, noise=0.1, seed=0)
    assert x.shape == (4000, 1) and y.shape == (4000,) and x.min() >= -2 and x.max() <= 2
    resid = y - torch.sin(3 * x).squeeze(-1)
    # noise sd 0.1: the sample sd within 5 SE (SE of a sd ~ 0.1 / sqrt(2n))
    assert abs(float(resid.std()) - 0.1) < 5 * 0.1 / (2 * 4000) ** 0.5
    batches = list(data.loader((x, y), batch_size=1000, seed=3, num_workers=1))
    again = list(data.loader((x, y), batch_size=1000, seed=3))
    assert len(batches) == 4 and all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    assert not torch.equal(batches[0][1], y[:1000])  # shuffled


@pytest.mark.parametrize("damage", ["empty", "truncated", "magic", "count"])
def test_corrupt_idx_files_are_named_as_corrupt(tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = 50  # a small, valid t10k pair: header + data
    images = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(n * 784)
    labels = (2049).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(n)
    if damage == "empty":
        images = b""
    elif damage == "truncated":
        images = images[:-100]
    elif damage == "magic":
        images = (2049).to_bytes(4, "big") + images[4:]
    else:
        labels = (2049).to_bytes(4, "big") + (n - 1).to_bytes(4, "big") + bytes(n - 1)
    (raw / "t10k-images-idx3-ubyte").write_bytes(images)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(labels)
    expected = {"empty": "empty", "truncated": "truncated", "magic": "magic number 2049", "count": "50 images, 49"}
    with pytest.raises(data.CorruptDataError, match=rf"t10k-.*(corrupt|disagree).*{expected[damage]}"):
        data.load_mnist(tmp_path, train=False)
