"""What a variance layer needs to regress y = sin(3x) + 0.1·ε on 500 points (notebook 06).

Trains each variant with notebook 06's recipe (batch 50, Adam 3e-3 held then decayed, KL
warm-up over the first third, noise scale at 10x lr) and prints the test RMSE against sin(3x),
the learned noise (true 0.1), the 90 % coverage on 20 000 fresh targets and the mean sd of the
weight-sample means. Variants differ in the activation after the variance layer, the number of
layers in front of it and whether the read-out is additive or deterministic.

    python benchmarks/regression_variants.py [--epochs 2500] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import time

import pyro
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyro_varnet.data import sine_regression
from pyro_varnet.guides import Additive, NetworkGuide, ZeroMean
from pyro_varnet.infer import fit, predict
from pyro_varnet.metrics import interval_coverage, rmse
from pyro_varnet.models import MLP, Regressor

# name: (sizes, activations, Bayesian layers (None: all), the variance layer)
VARIANTS = {
    "notebook 06 (additive fc1-2, var fc3 + abs, det read-out)": (
        [1, 16, 16, 2048, 1], ("relu", "relu", "abs"), ["fc1", "fc2", "fc3"], "fc3"),
    "additive read-out too": ([1, 16, 16, 2048, 1], ("relu", "relu", "abs"), None, "fc3"),
    "relu after the variance layer": ([1, 16, 16, 2048, 1], ("relu", "relu", "relu"), ["fc1", "fc2", "fc3"], "fc3"),
    "one layer in front (det fc1, var fc2 + abs, det read-out)": ([1, 64, 2048, 1], ("relu", "abs"), ["fc2"], "fc2"),
}  # fmt: skip


def run(sizes, acts, bayesian, var, epochs, seed=0) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    x, y = sine_regression(500, noise=0.1, seed=0)
    model = Regressor(MLP(sizes, activation=acts, bayesian=bayesian), num_data=500, init_noise=0.1)
    guide = NetworkGuide(model, default=Additive(), families={var: ZeroMean()})
    loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    fit(model, guide, loader, epochs=epochs, lr=3e-3, warmup_epochs=epochs * 8 // 25, lr_schedule="hold-linear",
        lr_multipliers={"noise_scale": 10.0}, seed=seed, progress=False)  # fmt: skip
    xt = torch.linspace(-2, 2, 20000)[:, None]
    truth = torch.sin(3 * xt).squeeze(-1)
    pred = predict(model, guide, xt, num_samples=100)
    fresh = truth + 0.1 * torch.randn(20000, generator=torch.Generator().manual_seed(1))
    return {
        "rmse": rmse(pred, truth),
        "noise": float(model.noise_scale.detach()),
        "cov90": interval_coverage(pred, fresh, 0.9),
        "epistemic sd": float(pred.epistemic_variance.sqrt().mean()),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2500)
    p.add_argument("--only", nargs="*", default=None, help="substrings of the variants to run")
    args = p.parse_args()
    print(f"{args.epochs} epochs each; targets: RMSE <= 0.15, noise in [0.07, 0.13], 90 % coverage in [0.85, 0.95]")
    print("| variant | RMSE | learned noise | 90 % coverage | epistemic sd | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        r = run(*spec, epochs=args.epochs)
        print(f"| {name} | {r['rmse']:.4f} | {r['noise']:.4f} | {r['cov90']:.3f} | {r['epistemic sd']:.4f} | "
              f"{r['seconds']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
