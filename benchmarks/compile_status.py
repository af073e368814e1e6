"""Benchmark: does ``torch.compile`` of the loss module work, and does it pay?

Compiles ``DecomposedELBO(lrt=True)(model, guide)`` of the layer-wise LeNet-5 with each
backend, counts the graphs and graph breaks Dynamo finds (with their reasons) and times
forward + backward eager vs compiled, interleaved. Run by hand:

    python benchmarks/compile_status.py --batch 100 --steps 20
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import pyro
import torch
import torch._dynamo

from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import DecomposedELBO, initialize
from pyro_varnet.models import Classifier, LeNet5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--backends", default="inductor,aot_eager")
    args = p.parse_args()
    torch.manual_seed(0)
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    model = Classifier(LeNet5(), num_data=60000)
    guide = NetworkGuide(model, default="layer")
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    loss(x, y)
    pyro.enable_validation(False)
    ex = torch._dynamo.explain(loss)(x, y)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}: {ex.graph_count} graphs, {ex.graph_break_count} breaks")
    reasons = collections.Counter()
    for r in ex.break_reasons:
        where = r.user_stack[-1] if r.user_stack else None
        at = f" at {where.filename.rsplit('site-packages/', 1)[-1]}:{where.lineno}" if where else ""
        reasons[str(r.reason).splitlines()[0][:100] + at] += 1
    for reason, n in reasons.most_common():
        print(f"  {n} x {reason}")

    def step(f):
        return lambda: f(x, y).backward()

    for backend in args.backends.split(","):
        torch._dynamo.reset()
        try:
            compiled = torch.compile(loss, backend=backend)
            t = time.perf_counter()
            step(compiled)()
            first = time.perf_counter() - t
            fns = {"eager": step(loss), backend: step(compiled)}
            times = {k: [] for k in fns}
            for _ in range(args.steps):
                for k, fn in fns.items():
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            ratio = statistics.median(a / b for a, b in zip(times[backend], times["eager"]))
            print(
                f"{backend}: first call {first:.1f} s; eager {med['eager']:.1f} ms, compiled {med[backend]:.1f} ms, "
                f"compiled / eager {ratio:.3f} (median of per-step ratios)"
            )
        except Exception as e:  # report, do not hide: the status is the point
            print(f"{backend}: FAILED {type(e).__name__}: {str(e)[:300]}")


if __name__ == "__main__":
    main()
