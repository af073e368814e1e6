"""Benchmark: 20-sample test-time averaging over the MNIST test set vs 20 plain forward passes.

``predict(mode="ensemble", num_samples=20)`` of a variance LeNet-5 (zero-mean fc1,
layer-wise elsewhere) — the default, all 20 weight samples stacked into each pass
(grouped convolutions, batched matmuls; ``--batch // 20`` images per pass), and sample by
sample (``vectorize=False``) — against 20 forward passes of a deterministic PyTorch
LeNet-5 over the same 10 000 images, ``--batch`` images per pass, interleaved, medians of
``--repeats``. Timing does not depend on
the weights' values, so no training is needed. Run by hand:

    PYRO_VARNET_DATA=../shared/data python benchmarks/predict.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch
from _lenet import DeterministicLeNet5

from pyro_varnet.data import load_mnist
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import predict
from pyro_varnet.models import Classifier, LeNet5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=None)
    p.add_argument("--with-lrt", action="store_true", help="also time the LRT ensemble (slow: 2 ops per layer)")
    args = p.parse_args()
    pyro.enable_validation(False)
    x, _ = load_mnist(args.data_root, train=False)
    model = Classifier(LeNet5(), num_data=60000)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    guide(x[:2])
    det = DeterministicLeNet5().eval()

    @torch.no_grad()
    def plain():
        for _ in range(args.samples):
            for xb in torch.split(x, args.batch):
                torch.log_softmax(det(xb), -1)

    def ours(lrt=False, vectorize="auto"):
        return lambda: predict(
            model,
            guide,
            x,
            mode="ensemble",
            num_samples=args.samples,
            batch_size=args.batch,
            lrt=lrt,
            vectorize=vectorize,
        )

    runs = {
        f"{args.samples} plain forward passes": plain,
        "predict ensemble": ours(),
        "predict ensemble, unstacked": ours(vectorize=False),
    }
    if args.with_lrt:
        runs["predict ensemble, LRT"] = ours(lrt=True)
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(x)} MNIST test images, {args.samples} samples, batch {args.batch}, medians of {args.repeats}")
    for k, v in med.items():
        print(f"  {k:<28} {v:6.2f} s")
    base = med[f"{args.samples} plain forward passes"]
    for k in runs:
        if k != f"{args.samples} plain forward passes":
            print(f"  ratio {k} / plain passes = {med[k] / base:.3f}")


if __name__ == "__main__":
    main()
