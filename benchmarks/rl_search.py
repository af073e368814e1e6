"""A bounded search for REINFORCE settings under which the variance policy (VN §6.2, Fig. 6)
reaches Acrobot-v1's goal.

With the defaults of ``varnet rl`` (σ initialised U(±1/√fan_in), σ at the policy's learning
rate, one running baseline over all time steps, one Adam step per episode) the variance
policy never leaves −500 on Acrobot-v1 in 500 episodes (benchmarks/results/2026-11-24-
session6.md). Stage 1 runs every combination of

- σ initialisation scale (``--sigma-scale``): 1, 3;
- σ's learning-rate multiplier (``--sigma-lr-mult``): 1, 10;
- baseline (``--baseline``): ``running`` (one mean over all steps) or ``per-step`` (a mean per
  time step: Acrobot's reward-to-go is dominated by the time left);
- episodes per Adam step (``--episodes-per-update``): 1, 4;

with ``--seeds`` seeds (16 settings × 2 = 32 runs); stage 2 reruns the best setting (by mean
final score) with ``--more-seeds`` new seeds (3: 35 runs of ≤ 500 episodes in all). A run's
final score is its mean return over the last ``--last`` episodes; a setting's score is the
mean over seeds ± its standard error. It also counts the episodes that reached the goal
(return > −500).

    python benchmarks/rl_search.py --processes 2              # ~35 runs, about 1 h on 2 cores
    python benchmarks/rl_search.py --episodes 20 --seeds 1 --more-seeds 1 --out /tmp/rl.md  # smoke
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
from _report import write_report

from pyro_varnet.experiments.rl import final_score, run_jobs

GRID = {
    "sigma_scale": (1.0, 3.0),
    "sigma_lr_mult": (1.0, 10.0),
    "baseline": ("running", "per-step"),
    "episodes_per_update": (1, 4),
}
CAP = -500.0  # Acrobot-v1's return when the goal is never reached in 500 steps


def settings() -> list[dict]:
    keys = list(GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*GRID.values())]


def label(s: dict) -> str:
    return f"σ×{s['sigma_scale']:g}, σ lr×{s['sigma_lr_mult']:g}, {s['baseline']}, {s['episodes_per_update']}/update"


def summarise(runs: list[list[float]], last: int) -> dict:
    mean, se, scores = final_score(runs, last)
    goals = [int(np.sum(np.array(r) > CAP)) for r in runs]
    return {"mean": mean, "se": se, "scores": scores.tolist(), "goal_episodes": goals}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Acrobot-v1")
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seeds", type=int, default=2, help="seeds per setting in stage 1")
    p.add_argument("--more-seeds", type=int, default=3, help="new seeds for the best setting in stage 2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--last", type=int, default=50)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--out", default=None, help="report file (default benchmarks/results/<today>-rl_search.md)")
    args = p.parse_args()

    t0 = time.perf_counter()
    grid = settings()
    jobs = [(args.env, "variance", args.episodes, seed, args.lr, s) for s in grid for seed in range(args.seeds)]
    print(f"stage 1: {len(grid)} settings x {args.seeds} seeds = {len(jobs)} runs", flush=True)
    outs = run_jobs(jobs, args.processes)
    runs = [outs[i * args.seeds : (i + 1) * args.seeds] for i in range(len(grid))]
    rows = [{"setting": s, **summarise(r, args.last)} for s, r in zip(grid, runs)]
    best = max(range(len(rows)), key=lambda i: rows[i]["mean"])
    more = [
        (args.env, "variance", args.episodes, seed, args.lr, grid[best])
        for seed in range(args.seeds, args.seeds + args.more_seeds)
    ]
    print(f"stage 2: {label(grid[best])} with {len(more)} more seeds", flush=True)
    best_runs = runs[best] + (run_jobs(more, args.processes) if more else [])
    final = summarise(best_runs, args.last)
    fresh = summarise(best_runs[args.seeds :], args.last) if more else None  # not used to pick the setting
    seconds = time.perf_counter() - t0

    fmt = lambda m, se: f"{m:.1f} ± {se:.1f}" if math.isfinite(se) else f"{m:.1f}"  # noqa: E731
    lines = [
        f"# Acrobot search for the variance policy ({datetime.date.today()})",
        "",
        f"`python benchmarks/rl_search.py --episodes {args.episodes} --seeds {args.seeds} "
        f"--more-seeds {args.more_seeds} --lr {args.lr:g} --last {args.last} --processes {args.processes}` "
        f"({len(jobs) + len(more)} runs, {seconds / 60:.0f} min wall on {args.processes} processes). "
        f"REINFORCE on {args.env}, policy obs-256-256(variance layer)-256-actions, Adam lr {args.lr:g}; score: "
        f"mean return over the last {args.last} of {args.episodes} episodes (−500: the goal never reached); "
        "mean ± SE over seeds; goal episodes: per seed, the episodes whose return beat −500.",
        "",
        "| σ init scale | σ lr × | baseline | episodes / update | score | per seed | goal episodes |",
        "|---:|---:|---|---:|---:|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["mean"]):
        s = r["setting"]
        lines.append(
            f"| {s['sigma_scale']:g} | {s['sigma_lr_mult']:g} | {s['baseline']} | {s['episodes_per_update']} | "
            f"{fmt(r['mean'], r['se'])} | {', '.join(f'{x:.1f}' for x in r['scores'])} | "
            f"{', '.join(map(str, r['goal_episodes']))} |"
        )
    lines += [
        "",
        f"Best setting ({label(grid[best])}) over {len(best_runs)} seeds: {fmt(final['mean'], final['se'])} "
        f"(per seed {', '.join(f'{x:.1f}' for x in final['scores'])}; goal episodes "
        f"{', '.join(map(str, final['goal_episodes']))})"
        + (f"; on the {len(more)} seeds not used to pick it: {fmt(fresh['mean'], fresh['se'])}." if fresh else "."),
    ]
    path = write_report("\n".join(lines), "rl_search", args.out)
    raw = {"args": vars(args), "rows": rows, "best": {"setting": grid[best], **final, "returns": best_runs}}
    raw["returns"] = [{"setting": s, "returns": r} for s, r in zip(grid, runs)]
    Path(path).with_suffix(".json").write_text(json.dumps(raw))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
