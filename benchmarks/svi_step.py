"""Benchmark: one training step of pyro-varnet's LeNet-5 under LRT vs hand-written PyTorch.

Three steps are timed interleaved in one process, each on the same batch: the step ``fit``
runs (Classifier(LeNet5) + NetworkGuide("layer"), ``DecomposedELBO(lrt=True)(model, guide)``
as the loss module with its lazy weights, ``torch.optim.Adam``, :class:`~pyro_varnet.infer.Step`),
a hand-written PyTorch LRT LeNet-5 in the authors' style (mean conv + variance conv + noise,
CE·N + KL, Adam), and a deterministic PyTorch LeNet-5. Prints medians, their spread and the
ratios. Run by hand:

    python benchmarks/svi_step.py --batch 100 --steps 50
"""

from __future__ import annotations

import argparse
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


def make_steps(batch: int, device: torch.device | str = "cpu"):
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    pyro.clear_param_store()
    model = Classifier(LeNet5(), num_data=N).to(device)
    guide = NetworkGuide(model, default="layer")
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    step = Step(loss, torch.optim.Adam(loss.parameters(), lr=1e-3))

    def ours():
        step(x, y)

    hand = HandLRTLeNet5().to(device)
    opt_h = torch.optim.Adam(hand.parameters(), 1e-3)

    def hand_step():
        loss = F.cross_entropy(hand(x), y, reduction="sum") * (N / batch) + hand.kl()
        opt_h.zero_grad()
        loss.backward()
        opt_h.step()

    det = DeterministicLeNet5().to(device)
    opt_d = torch.optim.Adam(det.parameters(), 1e-3)

    def det_step():
        loss = F.cross_entropy(det(x), y)
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()

    return {
        "pyro-varnet step (LRT)": ours,
        "hand-written PyTorch LRT step": hand_step,
        "deterministic PyTorch step": det_step,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=50, help="timed steps per method (>= 30)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--validation", action="store_true", help="keep Pyro's argument validation on")
    p.add_argument("--device", default="cpu", help="cpu or cuda (timed with a synchronisation after every step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(args.validation)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
