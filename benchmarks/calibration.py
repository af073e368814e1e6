"""Calibration of the variance LeNet-5 (VN Table 2: zero-mean fc1) against a deterministic LeNet-5
trained for the same epochs: accuracy, NLL, expected calibration error (15 bins) and Brier score
of the 20-sample ensemble / the plain network on the MNIST test set, and their reliability
diagrams side by side.

    PYRO_VARNET_DATA=../shared/data python benchmarks/calibration.py --epochs 3 --out benchmarks/results

Writes ``calibration.png`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch

from pyro_varnet import data as datasets
from pyro_varnet.analysis import plot_reliability
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import fit, predict
from pyro_varnet.metrics import classification_metrics
from pyro_varnet.models import Classifier, LeNet5

RUNS = {
    # name: (Bayesian layers, guide families, prediction mode)
    "deterministic LeNet-5": ([], {}, "mean"),
    "variance LeNet-5 (zero-mean fc1)": (None, {"fc1": "zero-mean"}, "ensemble"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = datasets.load_mnist(train=True), datasets.load_mnist(train=False)
    if args.limit:
        train, test = (train[0][: args.limit], train[1][: args.limit]), (test[0][: args.limit], test[1][: args.limit])
    preds, rows = {}, []
    for name, (bayesian, families, mode) in RUNS.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        model = Classifier(LeNet5(bayesian=bayesian, batchnorm=True), num_data=len(train[0]))
        guide = NetworkGuide(model, default="layer", families=families)
        t0 = time.perf_counter()
        fit(model, guide, train, epochs=args.epochs, lr_schedule="linear", seed=args.seed, progress=False)
        seconds = time.perf_counter() - t0
        lp = predict(model, guide, test[0], mode=mode, num_samples=args.samples)
        m = classification_metrics(lp, test[1])
        preds[name] = lp
        rows.append((name, mode, m, seconds))
        print(f"{name}: {m} ({seconds:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_reliability(preds, test[1], out / "calibration.png", title=f"MNIST test set, {args.epochs} epochs")
    print(f"\n{args.epochs} epochs, {len(train[0])} training images, {len(test[0])} test images, seed {args.seed}\n")
    print("| network | prediction | accuracy (%) | NLL | ECE (%) | Brier | training (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, mode, m, seconds in rows:
        print(f"| {name} | {mode} | {100 * m['acc']:.2f} | {m['nll']:.4f} | {100 * m['ece']:.2f} | "
              f"{m['brier']:.4f} | {seconds:.0f} |")  # fmt: skip
    print(f"\nreliability diagrams: {out / 'calibration.png'}")


if __name__ == "__main__":
    main()
