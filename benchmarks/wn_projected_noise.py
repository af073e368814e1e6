"""WN §5.1.1 / Fig. 3: with projected Gaussian direction noise the deterministic network degrades
while one-sample and ensemble predictions improve.

Trains an MLP of NoisyWeightNormLinear layers (projected Gaussian noise on the weight
directions, one draw per mini-batch, WN §3.2.1) with Adam and, after every epoch, measures
train/test accuracy of the deterministic net (noise off: the mean directions g·v̂, as the
thesis), of the mean-weight net (g·E[ṽ] = c·g·v̂, see ``mean_direction_length``), of one noisy
net, and of an ensemble of noisy nets. Writes a CSV and a PNG. Run by hand:

    PYRO_VARNET_DATA=../shared/data python benchmarks/wn_projected_noise.py --epochs 15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from pyro_varnet.data import load_mnist
from pyro_varnet.models import NoisyWeightNormLinear, set_stochastic


def build(sizes, alpha, direction, noisy_output=False):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        kind = "none" if last and not noisy_output else direction
        layers.append(NoisyWeightNormLinear(n_in, n_out, direction=kind, direction_scale=alpha))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(nn.Flatten(), *layers)


@torch.no_grad()
def accuracies(net, x, y, ensemble: int) -> dict:
    net.eval()
    set_stochastic(net, False)
    det = (net(x).argmax(-1) == y).float().mean().item()
    set_stochastic(net, False, deterministic="mean")
    det_mean = (net(x).argmax(-1) == y).float().mean().item()
    set_stochastic(net, True)
    probs = [net(x).softmax(-1) for _ in range(ensemble)]
    one = (probs[0].argmax(-1) == y).float().mean().item()
    ens = (torch.stack(probs).mean(0).argmax(-1) == y).float().mean().item()
    set_stochastic(net, None)
    return {"deterministic": det, "mean weights": det_mean, "one sample": one, "ensemble": ens}


def plot_runs(runs: dict, path) -> None:
    """Accuracy per epoch, one column per run (``{title: CSV frame}``), train above test."""
    fig = Figure(figsize=(5 * len(runs), 7.5))
    axes = fig.subplots(2, len(runs), squeeze=False)
    for col, (title, df) in enumerate(runs.items()):
        for row, split in enumerate(("train", "test")):
            ax = axes[row, col]
            for mode, g in df[df.split == split].groupby("mode", sort=False):
                ax.plot(g.epoch, 100 * g.accuracy, marker="o", markersize=3, label=mode)
            ax.set(xlabel="epoch", ylabel=f"{split} accuracy (%)", title=f"{split}: {title}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="1024,1024,2048", help="hidden sizes (the thesis: 1024,1024,2048)")
    p.add_argument("--alpha", type=float, default=0.014, help="projected-noise variance (WN Fig. 3: 0.014)")
    p.add_argument("--direction", default="projected", help="projected | tangent | rotate-tn | rotate-beta")
    p.add_argument("--noisy-output", action="store_true", help="direction noise on the output layer too")
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bias-lr-mult", type=float, default=1.0, help="biases' learning rate / lr")
    p.add_argument("--ensemble", type=int, default=10)
    p.add_argument("--eval-size", type=int, default=10000)
    p.add_argument("--out", default="benchmarks/results/wn_projected_noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument(
        "--plot", nargs="+", metavar="CSV=TITLE", help="only plot earlier runs' CSVs side by side into --out .png"
    )
    args = p.parse_args()
    if args.plot:
        runs = dict(reversed(item.split("=", 1)) for item in args.plot)
        plot_runs({title: pd.read_csv(csv) for title, csv in runs.items()}, Path(args.out).with_suffix(".png"))
        return
    torch.manual_seed(args.seed)
    x, y = load_mnist(args.data_root, train=True)
    xt, yt = load_mnist(args.data_root, train=False)
    x, y = x[: args.train_size], y[: args.train_size]
    sizes = [784, *map(int, args.hidden.split(",")), 10]
    net = build(sizes, args.alpha, args.direction, args.noisy_output)
    biases = [q for n, q in net.named_parameters() if n.endswith("bias")]
    others = [q for n, q in net.named_parameters() if not n.endswith("bias")]
    opt = torch.optim.Adam([{"params": others}, {"params": biases, "lr": args.lr * args.bias_lr_mult}], args.lr)
    rows = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x)).split(args.batch_size):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        n = args.eval_size
        for split, (xs, ys) in {"train": (x[:n], y[:n]), "test": (xt[:n], yt[:n])}.items():
            for mode, acc in accuracies(net, xs, ys, args.ensemble).items():
                rows.append({"epoch": epoch, "split": split, "mode": mode, "accuracy": acc})
        last = {f"{r['split']} {r['mode']}": f"{100 * r['accuracy']:.2f}" for r in rows[-8:]}
        print(f"epoch {epoch} [{time.perf_counter() - t0:.0f} s]: {last}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out.with_suffix(".csv"), index=False)
    plot_runs({f"{args.direction} noise, α = {args.alpha}": df}, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
