"""Benchmark: 20-sample test-time averaging over the MNIST test set vs 20 plain forward passes.

``predict(mode="ensemble", num_samples=20)`` of a variance LeNet-5 (zero-mean fc1,
layer-wise elsewhere) — the default, all 20 weight samples stacked into each pass
(one op with K·out outputs for the first sampled layer, grouped convolutions and batched
matmuls after it; ``--batch // 20`` images per pass), and sample by
sample (``vectorize=False``) — against 20 forward passes of a deterministic PyTorch
LeNet-5 over the same 10 000 images at each of ``--plain-batches`` images per pass (each
repeat's ratio is taken to its fastest plain batch size: a CPU's caches favour some),
interleaved slice by slice, medians of ``--repeats``. Timing does not depend on
the weights' values, so no training is needed. Run by hand:

    PYRO_VARNET_DATA=../shared/data python benchmarks/predict.py

Minor page faults are counted per method: when a pass's activations are large (tens of MB)
glibc gives their memory back to the system after every pass and faults it in again, which
can cost a third of the time. ``MALLOC_TRIM_THRESHOLD_=1073741824
MALLOC_MMAP_THRESHOLD_=268435456`` in the environment turns that off for every method alike.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import pyro
import torch
from _lenet import DeterministicLeNet5

from pyro_varnet.data import load_mnist
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import BATCH_SIZE, predict
from pyro_varnet.models import Classifier, LeNet5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument(
        "--batch",
        default=str(BATCH_SIZE),
        help="predict's batch_size (default: its default), or several, comma-separated, each timed",
    )
    p.add_argument(
        "--plain-batches",
        default="1000,500,250,100",
        help="images per plain pass, comma-separated: the ratios are taken to the fastest (its best cache fit)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--bayesian",
        default=None,
        help="sampled layers, e.g. fc1 (default: all; the deterministic prefix then runs once per image)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slice", type=int, default=1000, help="images per interleaving step")
    p.add_argument("--images", type=int, default=None, help="use only the first N test images")
    p.add_argument("--data-root", default=None)
    p.add_argument("--with-lrt", action="store_true", help="also time the LRT ensemble (slow: 2 ops per layer)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    x, _ = load_mnist(args.data_root, train=False)
    x = x[: args.images]
    batches = [int(b) for b in args.batch.split(",")]
    model = Classifier(LeNet5(bayesian=args.bayesian and args.bayesian.split(",")), num_data=60000)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    guide(x[:2])
    det = DeterministicLeNet5().eval()

    def plain(batch):
        @torch.no_grad()
        def run(xs):
            for _ in range(args.samples):
                for xb in torch.split(xs, batch):
                    torch.log_softmax(det(xb), -1)

        return run

    def ours(batch, lrt=False, vectorize="auto"):
        return lambda xs: predict(
            model,
            guide,
            xs,
            mode="ensemble",
            num_samples=args.samples,
            batch_size=batch,
            lrt=lrt,
            vectorize=vectorize,
        )

    plains = {f"{args.samples} plain passes, batch {b}": plain(b) for b in map(int, args.plain_batches.split(","))}
    runs = {
        **plains,
        **{f"predict ensemble, batch {b}": ours(b) for b in batches},
        f"predict ensemble, unstacked, batch {batches[0]}": ours(batches[0], vectorize=False),
    }
    if args.with_lrt:
        runs["predict ensemble, LRT"] = ours(batches[0], lrt=True)
    # Paired, finely interleaved: every method runs on each slice of the test set in turn
    # (order rotated), so the machine's slow drifts (other tenants, clocks) hit all alike.
    names = list(runs)
    times = {k: [] for k in runs}
    faults = {k: [] for k in runs}
    for r in range(args.repeats):
        total, flt = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0)
        for i, xs in enumerate(torch.split(x, args.slice)):
            shift = (r + i) % len(names)
            for k in names[shift:] + names[:shift]:
                f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                runs[k](xs)
                total[k] += time.perf_counter() - t
                flt[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        for k in runs:
            times[k].append(total[k])
            faults[k].append(flt[k])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{len(x)} MNIST test images in slices of {args.slice}, {args.samples} samples, "
        f"{torch.get_num_threads()} threads, medians of {args.repeats} (and each repeat's times)"
    )
    for k, v in med.items():
        flt = statistics.median(faults[k])
        print(f"  {k:<44} {v:6.2f} s   {' '.join(f'{t:.2f}' for t in times[k])}   minor faults {flt:,.0f}")
    for k in runs:
        if k not in plains:
            ratios = [times[k][r] / min(times[q][r] for q in plains) for r in range(args.repeats)]
            print(
                f"  ratio {k} / fastest plain: median {statistics.median(ratios):.3f} "
                f"(per repeat {' '.join(f'{q:.3f}' for q in ratios)})"
            )


if __name__ == "__main__":
    main()
