"""GPU check: train the variance LeNet-5 (VN Table 2: zero-mean fc1, layer-wise elsewhere) for
one epoch on CUDA, check that every parameter, buffer and prediction lives there, and print
seconds per epoch next to the same epoch on the CPU.

    PYRO_VARNET_DATA=../shared/data python benchmarks/gpu_check.py [--epochs 1] [--cpu-batches 50]

Without MNIST it uses 60 000 random images of MNIST's shape (timings only). Exits with status
2 and a clear message where no CUDA device is available.
"""

from __future__ import annotations

import argparse
import sys
import time

import pyro
import torch

from pyro_varnet import data as datasets
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import accuracy, fit, predict
from pyro_varnet.models import Classifier, LeNet5


def _data(limit: int):
    try:
        x, y = datasets.load_mnist(train=True)
        xt, yt = datasets.load_mnist(train=False)
        source = "MNIST"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(60000, 1, 28, 28, generator=g), torch.randint(0, 10, (60000,), generator=g)
        xt, yt = x[:10000], y[:10000]
        source = "random images (MNIST not found: accuracies are meaningless)"
    if limit:
        x, y = x[:limit], y[:limit]
    return (x, y), (xt, yt), source


def _build():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = Classifier(LeNet5(batchnorm=True), num_data=60000)
    guide = NetworkGuide(model, default="layer", families={"fc1": "zero-mean"})
    return model, guide


def _placement(*modules) -> set:
    return {t.device.type for m in modules for t in [*m.parameters(), *m.buffers()]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    p.add_argument("--cpu-batches", type=int, default=50, help="batches timed on the CPU for the ratio (0: skip)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available here (torch.cuda.is_available() is False); nothing to check")
        return 2
    train, test, source = _data(args.limit)
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, data: {source}")
    model, guide = _build()
    t0 = time.perf_counter()
    history = fit(model, guide, train, epochs=args.epochs, batch_size=args.batch_size, device=device, seed=0)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    placed = _placement(model, guide)
    if placed != {"cuda"}:
        print(f"FAIL: parameters or buffers on {sorted(placed)} after fit(device='cuda')")
        return 1
    lp = predict(model, guide, test[0], mode="ensemble", num_samples=20)
    if lp.device.type != "cuda":
        print(f"FAIL: predictions on {lp.device}")
        return 1
    steps = history.epochs[-1]
    per_epoch = [e["seconds"] for e in history.epochs]
    seconds = ", ".join(f"{s:.1f}" for s in per_epoch)
    print(f"epochs: {args.epochs}; seconds per epoch: {seconds} (the first includes set-up)")
    print(f"ELBO {steps['elbo']:.1f}; 20-sample ensemble test accuracy {100 * accuracy(lp, test[1].to(device)):.2f} %")
    if args.cpu_batches:
        model_c, guide_c = _build()
        n = args.cpu_batches * args.batch_size
        t0 = time.perf_counter()
        fit(model_c, guide_c, (train[0][:n], train[1][:n]), batch_size=args.batch_size, device="cpu", progress=False)
        cpu_epoch = (time.perf_counter() - t0) * len(train[0]) / n
        print(f"CPU ({torch.get_num_threads()} threads), extrapolated from {args.cpu_batches} batches: "
              f"{cpu_epoch:.1f} s per epoch; GPU / CPU = {per_epoch[-1] / cpu_epoch:.3f}")  # fmt: skip
    print(f"OK: every parameter, buffer and prediction on cuda ({wall:.1f} s in fit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
