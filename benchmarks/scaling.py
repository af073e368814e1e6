"""Benchmark: data-parallel scaling of ``fit`` at a fixed global batch.

For each number of processes W (``--worlds 1,2``) the same run — LeNet-5 with a zero-mean fc1
(the variance LeNet-5 of VN Table 2) under LRT, global batch ``--batch-size``, ``--epochs``
epochs — is trained by W processes joined in one process group (gloo on CPUs, NCCL with
``--device cuda``: one GPU per process), each process with ``--threads`` / W CPU threads
(``--threads-per-process``: that many each, so W processes use W times the cores).
Worlds are interleaved over ``--repeats`` rounds (order rotated); the first epoch of every run
is warm-up and left out. Printed side by side: seconds per epoch (median and quartiles over
rounds and epochs), the speed-up t1 / tW and the efficiency t1 / (W · tW).

    python benchmarks/scaling.py                      # synthetic MNIST-shaped data, CPU
    PYRO_VARNET_DATA=../shared/data python benchmarks/scaling.py --mnist
    python benchmarks/scaling.py --device cuda --worlds 1,2,4,8 --images 60000

Writes the report to ``--out`` (Markdown) as well.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import torch
from _report import write_report

from pyro_varnet import distributed
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import fit
from pyro_varnet.models import Classifier, LeNet5


def _data(images: int, mnist: bool):
    if mnist:
        from pyro_varnet.data import load_mnist

        x, y = load_mnist(None, train=True)
        return x[:images], y[:images]
    g = torch.Generator().manual_seed(0)
    return torch.randn(images, 1, 28, 28, generator=g), torch.randint(0, 10, (images,), generator=g)


def train(images: int, mnist: bool, batch_size: int, epochs: int, device: str) -> list[float]:
    """One run in this process (inside the group when W > 1); its seconds per epoch."""
    rank, _ = distributed.world()
    dev = torch.device("cuda", rank) if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    x, y = _data(images, mnist)
    torch.manual_seed(0)
    model = Classifier(LeNet5(), num_data=len(x))
    guide = NetworkGuide(model, families={"fc1": "zero-mean", "*": "layer"})
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    stamps = []

    def stamp(epoch, metrics):
        sync()
        stamps.append(time.perf_counter())

    sync()
    t0 = time.perf_counter()
    fit(model, guide, (x, y), epochs=epochs, batch_size=batch_size, lr=1e-3, seed=0, progress=False,
        device=dev, callbacks=[stamp])  # fmt: skip
    times = [b - a for a, b in zip([t0, *stamps], stamps)]
    return times[1:]  # the first epoch builds the guide and warms the allocator


def run_world(world: int, args, threads: int) -> list[float]:
    job = (args.images, args.mnist, args.batch_size, args.epochs, args.device)
    if world == 1:
        torch.set_num_threads(threads)
        return train(*job)
    backend = "nccl" if args.device == "cuda" else "gloo"
    return distributed.spawn(train, world, *job, backend=backend, threads=threads)[0]


def spread(values: list[float], fmt: str = ".2f") -> str:
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return f"{q2:{fmt}} ({q1:{fmt}}-{q3:{fmt}})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", default="1,2", help="comma list of process counts")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--mnist", action="store_true", help="MNIST from $PYRO_VARNET_DATA instead of synthetic data")
    p.add_argument("--batch-size", type=int, default=200, help="the global batch")
    p.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads shared by the processes")
    p.add_argument(
        "--threads-per-process",
        type=int,
        default=None,
        help="give every process this many threads instead (W processes then use W times the cores: the "
        "CPU analogue of adding devices)",
    )
    p.add_argument("--out", default=None, help="report file (default benchmarks/results/<date>-scaling.md)")
    args = p.parse_args(argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    if args.device == "cuda" and max(worlds) > torch.cuda.device_count():
        p.error(f"--worlds {args.worlds}: only {torch.cuda.device_count()} CUDA devices here")
    times: dict[int, list[float]] = {w: [] for w in worlds}
    for r in range(args.repeats):
        order = worlds[r % len(worlds) :] + worlds[: r % len(worlds)]
        for w in order:
            epoch_times = run_world(w, args, args.threads_per_process or max(1, args.threads // w))
            times[w] += epoch_times
            print(f"round {r + 1}, W={w}: " + " ".join(f"{t:.2f}" for t in epoch_times) + " s/epoch", flush=True)
    t1 = statistics.median(times[worlds[0]]) if worlds[0] == 1 else None
    env = f"PYRO_VARNET_DATA={os.environ.get('PYRO_VARNET_DATA', '')} " if args.mnist else ""
    lines = [
        f"# Data-parallel scaling ({datetime.date.today()})",
        "",
        f"`{env}python benchmarks/scaling.py {' '.join(sys.argv[1:] if argv is None else argv)}` — LeNet-5, "
        "zero-mean fc1, "
        f"LRT; {args.images} {'MNIST' if args.mnist else 'synthetic'} images, global batch {args.batch_size}, "
        f"{args.device}, "
        + (
            f"{args.threads_per_process} thread(s) per process"
            if args.threads_per_process
            else f"{args.threads} threads shared by the processes"
        )
        + f"; {args.repeats} rounds x {args.epochs - 1} timed epochs; "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs.",
        "",
        "| processes W | s / epoch, median (q1-q3) | speed-up t1 / tW | efficiency t1 / (W tW) |",
        "|---:|---:|---:|---:|",
    ]
    for w in worlds:
        tw = statistics.median(times[w])
        speed = f"{t1 / tw:.2f}" if t1 else "-"
        eff = f"{t1 / (w * tw):.2f}" if t1 else "-"
        lines.append(f"| {w} | {spread(times[w])} | {speed} | {eff} |")
    report = "\n".join(lines)
    print("\n" + report)
    write_report(report, "scaling", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
