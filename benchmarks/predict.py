"""Benchmark: 20-sample test-time averaging over the MNIST test set vs 20 plain forward passes.

``predict(mode="ensemble", num_samples=20)`` of a variance LeNet-5 (zero-mean fc1,
layer-wise elsewhere) — the default, all 20 weight samples stacked into each pass
(grouped convolutions, batched matmuls; ``--batch // 20`` images per pass), and sample by
sample (``vectorize=False``) — against 20 forward passes of a deterministic PyTorch
LeNet-5 over the same 10 000 images at each of ``--plain-batches`` images per pass (the
ratio is taken to the fastest: a CPU's caches favour some batch sizes), interleaved, medians
of ``--repeats``. Timing does not depend on
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
    p.add_argument("--batch", type=int, default=1000, help="predict's batch_size")
    p.add_argument(
        "--plain-batches",
        default="1000,250",
        help="images per plain pass, comma-separated: the ratios are taken to the fastest (its best cache fit)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--bayesian",
        default=None,
        help="sampled layers, e.g. fc1 (default: all; the deterministic prefix then runs once per image)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=None)
    p.add_argument("--with-lrt", action="store_true", help="also time the LRT ensemble (slow: 2 ops per layer)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    x, _ = load_mnist(args.data_root, train=False)
    model = Classifier(LeNet5(bayesian=args.bayesian and args.bayesian.split(",")), num_data=60000)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    guide(x[:2])
    det = DeterministicLeNet5().eval()

    def plain(batch):
        @torch.no_grad()
        def run():
            for _ in range(args.samples):
                for xb in torch.split(x, batch):
                    torch.log_softmax(det(xb), -1)

        return run

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

    plains = {f"{args.samples} plain passes, batch {b}": plain(b) for b in map(int, args.plain_batches.split(","))}
    runs = {
        **plains,
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
    print(
        f"{len(x)} MNIST test images, {args.samples} samples, predict batch {args.batch}, "
        f"{torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    for k, v in med.items():
        print(f"  {k:<34} {v:6.2f} s   {' '.join(f'{t:.2f}' for t in times[k])}")
    best = min(plains, key=med.get)
    for k in runs:
        if k not in plains:
            print(f"  ratio {k} / fastest plain ({best}) = {med[k] / med[best]:.3f}")


if __name__ == "__main__":
    main()
