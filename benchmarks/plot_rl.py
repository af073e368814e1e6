"""Merge ``varnet rl`` runs made separately (one method per run, e.g. on two machines) into one
VN Fig. 6 plot and a table of final scores (mean over a seed's last ``--last`` episodes, ± SE
over seeds)::

    python benchmarks/plot_rl.py runs/rl-variance runs/rl-deterministic --last 100 --out fig6.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyro_varnet.experiments.plots import plot_rl_curves
from pyro_varnet.experiments.rl import final_score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="folders holding rl.json")
    p.add_argument("--last", type=int, default=100)
    p.add_argument("--window", type=int, default=50, help="moving average of the plotted curves")
    p.add_argument("--title", default="REINFORCE (VN Fig. 6)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    returns = {}
    for run in args.runs:
        returns.update(json.loads((Path(run) / "rl.json").read_text())["returns"])
    for kind, runs in returns.items():
        mean, se, scores = final_score(runs, args.last)
        per_seed = " ".join(f"{s:.0f}" for s in scores)
        print(f"{kind:16s} {mean:7.1f} ± {se:5.1f} (SE, {len(scores)} seeds; per seed {per_seed})")
    plot_rl_curves(returns, args.out, title=args.title, window=args.window)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
