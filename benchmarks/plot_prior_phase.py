"""VN Fig. 8 from finished ``varnet train`` runs: fc1's log α and the mean-propagation / one-sample
accuracy per epoch, one line per prior. Run by hand after training, e.g.

    for p in log-uniform student-t ard; do
      varnet train --model lenet5-bn --guide layer --prior $p --epochs 16 --eval-every 2 \\
        --eval-modes mean,sample --lr-mult '*log_alpha*=30' --lr-mult '*prior_scale*=30' --out runs/phase-$p
    done
    python benchmarks/plot_prior_phase.py log-uniform=runs/phase-log-uniform student-t=runs/phase-student-t \\
        ard=runs/phase-ard --out benchmarks/results/prior_phase.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pyro_varnet.analysis import plot_prior_phase_transitions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    p.add_argument("--site", default="net.fc1.weight")
    p.add_argument("--out", default="prior_phase.png")
    args = p.parse_args()
    histories = {}
    for spec in args.runs:
        name, _, run = spec.partition("=")
        histories[name] = pd.read_csv(Path(run) / "history.csv")
    plot_prior_phase_transitions(histories, args.site, args.out)
    for name, df in histories.items():
        la, acc = df[f"log_alpha/{args.site}"], 100 * df.set_index("epoch")["test_acc_mean"].dropna()
        print(
            f"{name:>12}: log alpha after epoch 1 {la.iloc[0]:+.2f} -> {la.iloc[-1]:+.2f}, "
            f"mean propagation after epoch {acc.index[0]} {acc.iloc[0]:.2f} -> {acc.iloc[-1]:.2f} %"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
