"""Benchmark: every speed target of the library in one process, interleaved, with spreads.

1. **Step**: one SVI step of the layer-wise LeNet-5 under LRT (``Step`` over
   ``DecomposedELBO(lrt=True)``) vs the hand-written PyTorch LRT LeNet-5 (the authors' style)
   vs a deterministic LeNet-5, per batch size and thread count. Per round every method runs
   once (order rotated); the ratio ours / hand-written is taken per round, and its median and
   quartiles are printed.
2. **Trained vs fresh** (with ``--run``, a ``varnet train`` run folder): the run's model built
   fresh vs restored from its checkpoint (with its Adam state, lr 0) vs restored and passed
   through :func:`~pyro_varnet.infer.flush_subnormals_` — on the same MNIST batches, rounds
   interleaved; and the run's seconds per epoch (last / second).
3. **Ensemble**: ``predict(mode="ensemble", num_samples=20)`` of the variance LeNet-5
   (every layer sampled, and only fc1 sampled; direct draws, and ``lrt="dense"``: per-object
   noise in the Gaussian dense layers) vs the fastest of 20 plain passes of a deterministic
   LeNet-5 at several batch sizes, minor page faults counted, per thread count.

Writes the report to ``--out`` (Markdown) and prints it. Run by hand on an idle machine:

    varnet train --model lenet5-bn --guide zero-mean-fc1 --epochs 10 --out runs/speed-zm-fc1
    PYRO_VARNET_DATA=../shared/data python benchmarks/run_all.py --run runs/speed-zm-fc1

``--device cuda`` times the step section on a GPU (synchronising after every step).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
from _lenet import DeterministicLeNet5
from _report import write_report
from svi_step import make_steps

from pyro_varnet.infer import DecomposedELBO, Step, flush_subnormals_, initialize, predict, restore
from pyro_varnet.infer import checkpoint as ckpt

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def spread(values: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    """``median (q1-q3)`` of ``values`` × ``scale``."""
    if len(values) < 2:
        return f"{values[0] * scale:{fmt}}"
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2 * scale:{fmt}} ({q1 * scale:{fmt}}-{q3 * scale:{fmt}})"


def interleave(fns: dict, rounds: int, sync=lambda: None) -> dict[str, list[float]]:
    """Seconds of each callable per round, every round running each once in a rotated order."""
    names, times = list(fns), {k: [] for k in fns}
    for r in range(rounds):
        shift = r % len(names)
        for k in names[shift:] + names[:shift]:
            sync()
            t = time.perf_counter()
            fns[k]()
            sync()
            times[k].append(time.perf_counter() - t)
    return times


def step_section(batches, rounds, device) -> None:
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for batch in batches:
        steps = make_steps(batch, device=device)
        for fn in steps.values():  # warm-up
            for _ in range(3):
                fn()
        times = interleave(steps, rounds, sync)
        ours, hand, det = (times[k] for k in steps)
        ratio = [a / b for a, b in zip(ours, hand)]
        say(
            f"| step | {batch} | {torch.get_num_threads()} | {spread(ours, 1e3, '.1f')} | {spread(hand, 1e3, '.1f')} | "
            f"{spread(det, 1e3, '.1f')} | **{spread(ratio)}** |"
        )


def trained_section(run: Path, rounds: int, data_root) -> None:
    from pyro_varnet.cli import _build
    from pyro_varnet.data import load_mnist

    spec = json.loads((run / "args.json").read_text())
    x, y = load_mnist(data_root, train=True)
    bs = spec["batch_size"]
    batches = [(x[i : i + bs], y[i : i + bs]) for i in range(0, 6 * bs, bs)]
    state = ckpt.load_checkpoint(run / "checkpoint.pt")

    def build(trained: bool, flush: bool = False):
        model, guide = _build(spec["model"], spec["prior"], spec["bayesian"], spec["guide"], len(x), seed=0)
        if trained:
            restore(model, guide, run / "checkpoint.pt")
        else:
            initialize(model, guide, *batches[0])
        loss = DecomposedELBO(lrt=True)(model, guide)
        opt = torch.optim.Adam(loss.parameters(), lr=0.0)  # lr 0: the state stays as restored
        if trained:
            opt.load_state_dict(state["optimizer"])
            for g in opt.param_groups:
                g["lr"] = 0.0
        step = Step(loss, opt)
        count = 0
        if flush:
            count = flush_subnormals_([*loss.parameters(), *(v for s in opt.state.values() for v in s.values())])
        return step, count

    fresh, _ = build(False)
    trained, _ = build(True)
    flushed, count = build(True, flush=True)

    def run_steps(step):
        return lambda: [step(*b) for b in batches]

    fns = {"fresh": run_steps(fresh), "trained": run_steps(trained), "trained, flushed": run_steps(flushed)}
    for fn in fns.values():
        fn()
    times = interleave(fns, rounds)
    per = {k: [t / len(batches) for t in v] for k, v in times.items()}
    tr = [a / b for a, b in zip(per["trained"], per["fresh"])]
    fl = [a / b for a, b in zip(per["trained, flushed"], per["fresh"])]
    say(
        f"| {spec['model']} {spec['guide']} batch {bs} | {torch.get_num_threads()} | "
        f"{spread(per['fresh'], 1e3, '.1f')} | "
        f"{spread(per['trained'], 1e3, '.1f')} | {spread(per['trained, flushed'], 1e3, '.1f')} | "
        f"{spread(tr)} | **{spread(fl)}** | {count:,} |"
    )


def epoch_section(run: Path) -> None:
    with open(run / "history.csv") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    if len(seconds) >= 2:
        say(
            f"Seconds per epoch of {run}: {' '.join(f'{s:.0f}' for s in seconds)}; "
            f"last / second = **{seconds[-1] / seconds[1]:.3f}**"
        )


def ensemble_section(images, batches, plain_batches, repeats, data_root) -> None:
    from pyro_varnet.data import load_mnist
    from pyro_varnet.guides import NetworkGuide, ZeroMean
    from pyro_varnet.models import Classifier, LeNet5

    x, _ = load_mnist(data_root, train=False)
    x = x[:images]
    det = DeterministicLeNet5().eval()
    samples = 20

    def plain(batch):
        @torch.no_grad()
        def go():
            for _ in range(samples):
                for xb in torch.split(x, batch):
                    torch.log_softmax(det(xb), -1)

        return go

    fns = {f"plain {b}": plain(b) for b in plain_batches}
    for label, bayesian in (("all sampled", None), ("fc1 only", ["fc1"])):
        model = Classifier(LeNet5(bayesian=bayesian), num_data=60000)
        guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
        guide(x[:2])
        for lrt, how in ((False, ""), ("dense", ", dense noise")):
            for b in batches:
                fns[f"{label}{how}, batch {b}"] = lambda m=model, g=guide, b=b, lrt=lrt: predict(
                    m, g, x, mode="ensemble", num_samples=samples, batch_size=b, lrt=lrt
                )
    for fn in fns.values():
        fn()
    names, times, faults = list(fns), {k: [] for k in fns}, {k: [] for k in fns}
    for r in range(repeats):
        shift = r % len(names)
        for k in names[shift:] + names[:shift]:
            f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
            faults[k].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    plains = [k for k in fns if k.startswith("plain")]
    fastest = [min(times[p][r] for p in plains) for r in range(repeats)]
    for k in fns:
        ratio = [times[k][r] / fastest[r] for r in range(repeats)]
        say(
            f"| {k} | {torch.get_num_threads()} | {spread(times[k], 1, '.2f')} | {spread(ratio)} | "
            f"{statistics.median(faults[k]):,.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="100,200", help="step batch sizes")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds of the step sections")
    p.add_argument("--run", default=None, help="a varnet train run folder: trained vs fresh, seconds per epoch")
    p.add_argument("--images", type=int, default=2000, help="test images of the ensemble section")
    p.add_argument("--ensemble-batches", default="100,400,1000")
    p.add_argument("--plain-batches", default="100,250,1000")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the ensemble section")
    p.add_argument("--sections", default="step,trained,ensemble")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the step section)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=None, help="Markdown report (default benchmarks/results/<date>-run_all.md)")
    args = p.parse_args()
    pyro.enable_validation(False)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    sections = args.sections.split(",")
    run = Path(args.run) if args.run else None
    say(f"# benchmarks/run_all.py — {datetime.datetime.now().isoformat(timespec='minutes')}")
    say(f"`{' '.join(sys.argv)}`; torch {torch.__version__}, pyro {pyro.__version__}, device {device}")
    say("Medians over rounds, (quartiles); ratios are taken per round.")
    threads = [int(t) for t in args.threads.split(",")]
    if "step" in sections:
        say("\n## SVI step, LeNet-5 layer-wise under LRT (ms)\n")
        say("| | batch | threads | pyro-varnet | hand-written LRT | deterministic | ours / hand |")
        say("|---|---:|---:|---:|---:|---:|---:|")
        for n in threads:
            torch.set_num_threads(n)
            step_section([int(b) for b in args.batches.split(",")], args.rounds, device)
    if "trained" in sections and run is not None:
        say("\n## Trained vs fresh model, one SVI step (ms)\n")
        say("| run | threads | fresh | trained | trained, flushed | trained / fresh | flushed / fresh | subnormals |")
        say("|---|---:|---:|---:|---:|---:|---:|---:|")
        for n in threads:
            torch.set_num_threads(n)
            trained_section(run, max(5, args.rounds // 3), args.data_root)
        epoch_section(run)
    if "ensemble" in sections:
        say(f"\n## 20-sample ensemble vs 20 plain passes, {args.images} MNIST test images (s)\n")
        say("| method | threads | seconds | / fastest plain | minor faults |")
        say("|---|---:|---:|---:|---:|")
        for n in threads:
            torch.set_num_threads(n)
            ensemble_section(
                args.images,
                [int(b) for b in args.ensemble_batches.split(",")],
                [int(b) for b in args.plain_batches.split(",")],
                args.repeats,
                args.data_root,
            )
    write_report("\n".join(LINES), "run_all", args.out)


if __name__ == "__main__":
    main()
