"""Benchmark: one training step of pyro-varnet's LeNet-5 under LRT vs hand-written PyTorch.

Three steps are timed interleaved in one process, each on the same batch: the step ``fit``
runs (Classifier(LeNet5) + NetworkGuide("layer"), ``DecomposedELBO(lrt=True)(model, guide)``
as the loss module with its lazy weights, ``torch.optim.Adam``, :class:`~pyro_varnet.infer.Step`),
a hand-written PyTorch LRT LeNet-5 in the authors' style (mean conv + variance conv + noise,
CE·N + KL, Adam), and a deterministic PyTorch LeNet-5. Prints medians, their spread and the
ratios. Run by hand:

    python benchmarks/svi_step.py --batch 100 --steps 50
    python benchmarks/svi_step.py --batch 100 --steps 200 --parts   # forward / backward / optimizer apart
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from _lenet import DeterministicLeNet5, HandLRTLeNet5

from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import DecomposedELBO, Step, initialize
from pyro_varnet.models import Classifier, LeNet5

N = 60000


def make_losses(batch: int, device: torch.device | str = "cpu"):
    """``{method: (loss closure, optimizer, our loss module or None)}`` on one fixed batch."""
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    pyro.clear_param_store()
    model = Classifier(LeNet5(), num_data=N).to(device)
    guide = NetworkGuide(model, default="layer")
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    hand = HandLRTLeNet5().to(device)
    det = DeterministicLeNet5().to(device)
    return {
        "pyro-varnet step (LRT)": (lambda: loss(x, y), torch.optim.Adam(loss.parameters(), lr=1e-3), (loss, x, y)),
        "hand-written PyTorch LRT step": (
            lambda: F.cross_entropy(hand(x), y, reduction="sum") * (N / batch) + hand.kl(),
            torch.optim.Adam(hand.parameters(), 1e-3),
            None,
        ),
        "deterministic PyTorch step": (
            lambda: F.cross_entropy(det(x), y),
            torch.optim.Adam(det.parameters(), 1e-3),
            None,
        ),
    }


def make_steps(batch: int, device: torch.device | str = "cpu"):
    """``{method: one training step}``: ours is :class:`~pyro_varnet.infer.Step`, what ``fit`` runs."""

    def plain(forward, opt):
        def step():
            loss = forward()
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    steps = {}
    for name, (forward, opt, ours) in make_losses(batch, device).items():
        if ours is None:
            steps[name] = plain(forward, opt)
        else:
            loss, x, y = ours
            steps[name] = functools.partial(Step(loss, opt), x, y)
    return steps


def time_parts(batch: int, rounds: int, device, sync) -> dict[str, list[tuple[float, float, float]]]:
    """Seconds of (forward, zero_grad + backward, optimizer step) of each method, interleaved."""
    losses = make_losses(batch, device)
    times = {k: [] for k in losses}
    for r in range(rounds + 3):  # three warm-up rounds
        for k, (forward, opt, _) in losses.items():
            sync()
            t0 = time.perf_counter()
            loss = forward()
            sync()
            t1 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            sync()
            t2 = time.perf_counter()
            opt.step()
            sync()
            if r >= 3:
                times[k].append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=50, help="timed steps per method (>= 30)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--validation", action="store_true", help="keep Pyro's argument validation on")
    p.add_argument("--device", default="cpu", help="cpu or cuda (timed with a synchronisation after every step)")
    p.add_argument("--parts", action="store_true", help="time forward, backward and optimizer step apart")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(args.validation)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.parts:
        print(f"LeNet-5, batch {args.batch}, {args.steps} interleaved steps, torch threads {torch.get_num_threads()}")
        print("  medians (ms): forward, zero_grad + backward, optimizer step")
        for k, v in time_parts(args.batch, args.steps, device, sync).items():
            parts = "  ".join(f"{1000 * statistics.median(c):7.2f}" for c in zip(*v))
            print(f"  {k:<32} {parts}")
        return
    steps = make_steps(args.batch, device)
    for fn in steps.values():  # warm-up
        for _ in range(3):
            fn()
    times = {k: [] for k in steps}
    for _ in range(args.steps):
        for k, fn in steps.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    q = {k: statistics.quantiles(v, n=4) for k, v in times.items()}
    print(
        f"LeNet-5, batch {args.batch}, {args.steps} interleaved steps each, torch threads {torch.get_num_threads()}, "
        f"pyro validation {'on' if args.validation else 'off'}"
    )
    for k, v in med.items():
        print(f"  {k:<32} median {1000 * v:7.1f} ms  (quartiles {1000 * q[k][0]:.1f}-{1000 * q[k][2]:.1f})")
    ours, hand, det = med.values()
    print(f"  ratio pyro-varnet / hand-written LRT  = {ours / hand:.3f}")
    print(f"  ratio hand-written LRT / deterministic = {hand / det:.3f}")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
