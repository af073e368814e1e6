"""The ``varnet`` command: ``demo`` (embedded toy problem), ``train`` (a paper model on MNIST)."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch

from . import _json as json
from . import data as datasets
from ._pool import map_processes
from .distributed import DistributedError
from .infer.checkpoint import CheckpointError
from .priors import prior_names
from .runs import RunFolder, RunLockedError, RunWriter, safe_name
from .threads import resolve_threads

MODELS = (
    "lenet5",
    "lenet5-bn",
    "lenet5-tanh",
    "lenet5-tanh-bn",
    "lenet300-100",
    "lenet500-300",
    "wn-lenet300-100",
    "wn-lenet300-100-reverse",
    "wn-lenet5",
    "wn-lenet5-reverse",
)


def _models():
    from . import models

    return {
        "lenet5": lambda prior, bayesian: models.LeNet5(bayesian, prior=prior),
        "lenet5-bn": lambda prior, bayesian: models.LeNet5(bayesian, prior=prior, batchnorm=True),
        # VN appendix C / Table 3: tanh, no biases (anti-symmetric). A zero-mean fc1 cannot learn
        # there: the likelihood of an antithetic weight pair is the same for every label
        # (tests/models/test_antisymmetric.py); conv2 can, max-pooling is not odd.
        "lenet5-tanh": lambda prior, bayesian: models.LeNet5(bayesian, prior=prior, activation="tanh", bias=False),
        # the same in the authors' BatchNorm LeNet-5: BN's learned shift breaks the anti-symmetry
        "lenet5-tanh-bn": lambda prior, bayesian: models.LeNet5(
            bayesian, prior=prior, activation="tanh", bias=False, batchnorm=True
        ),
        "lenet300-100": lambda prior, bayesian: models.LeNet300_100(bayesian, prior=prior),
        # the thesis' variational WeightNorm model (priors fixed by WN §4.1: g log-uniform, angle uniform)
        "wn-lenet300-100": lambda prior, bayesian: models.WNLeNet300_100(),
        "wn-lenet300-100-reverse": lambda prior, bayesian: models.WNLeNet300_100(reverse=True),
        "wn-lenet5": lambda prior, bayesian: models.WNLeNet5(),
        "wn-lenet5-reverse": lambda prior, bayesian: models.WNLeNet5(reverse=True),
        "lenet500-300": lambda prior, bayesian: models.LeNet500_300(bayesian, prior=prior),
    }


def split_column(spec: str, bayesian: str = "") -> tuple[str, str]:
    """``"zero-mean@fc1"`` → guide ``"zero-mean"`` with only fc1 Bayesian (``+`` joins layers;
    the other layers deterministic, without KL); a spec without ``@`` keeps ``bayesian``."""
    if "@" not in spec:
        return spec, bayesian
    guide, layers = spec.split("@", 1)
    if not guide or not layers or "@" in layers or any(not name for name in layers.split("+")):
        raise ValueError(f"cannot read guide {spec!r}: expected GUIDE@LAYER[+LAYER...], e.g. zero-mean@fc1")
    return guide, layers.replace("+", ",")


def parse_guide(spec: str) -> tuple[str, dict[str, str]]:
    """``"layer"`` → layer-wise everywhere; ``"zero-mean-fc1"`` → zero-mean on fc1 (``+`` joins
    layers), layer-wise elsewhere; ``"fc1=zero-mean,default=neuron"`` → explicit mapping;
    ``"zero-mean@fc1"`` → zero-mean on fc1, the other layers deterministic (no prior)."""
    from .guides import FAMILIES

    spec, _ = split_column(spec)
    if "=" in spec:
        pairs = dict(p.split("=", 1) for p in spec.split(","))
        default = pairs.pop("default", "layer")
        families = pairs
    elif spec in FAMILIES:
        default, families = spec, {}
    else:
        fam = next((f for f in sorted(FAMILIES, key=len, reverse=True) if spec.startswith(f + "-")), None)
        if fam is None:
            raise ValueError(
                f"cannot read guide {spec!r}: expected a family of {sorted(FAMILIES)}, FAMILY-LAYER or k=v,..."
            )
        default, families = "layer", {layer: fam for layer in spec[len(fam) + 1 :].split("+")}
    for f in [default, *families.values()]:
        if f not in FAMILIES:
            raise ValueError(f"unknown family {f!r} in guide {spec!r}; expected one of {sorted(FAMILIES)}")
    return default, families


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per process under torchrun
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: the MPS backend is not available here")
    return torch.device(name)


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def demo(args: argparse.Namespace) -> int:
    from .analysis import elbo_decomposition, plot_bottleneck
    from .guides import NetworkGuide, ZeroMean
    from .infer import MODES, accuracy, fit, predict
    from .models import Classifier, ToyNet

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    train, test = datasets.toy_problem(500, seed=args.seed), datasets.toy_problem(500, seed=args.seed + 1)
    model = Classifier(ToyNet(), num_data=len(train[0]))
    guide = NetworkGuide(model, default=ZeroMean())
    print("VN §3.2 toy problem: 4 classes x 500 points; ToyNet with a zero-mean 2-unit bottleneck (fc5)")
    history = fit(
        model,
        guide,
        train,
        epochs=args.epochs,
        batch_size=200,
        lr=args.lr,
        lr_schedule="linear",
        seed=args.seed,
        progress=not args.no_progress,
    )
    elbo = elbo_decomposition(model, guide, train, num_samples=10)
    print("\nELBO decomposition on the training set (nats, mean of 10 passes):")
    _print_table(
        [
            ("ELBO", f"{elbo['elbo']:.1f}"),
            ("data term E_q log p(T|X,W)", f"{elbo['data']:.1f} ± {elbo['data_se']:.1f}"),
            ("KL(q || p)", f"{elbo['kl']:.2f}  (zero-mean vs log-uniform: constant, VN appx F)"),
        ]
    )
    print(f"\nTest accuracy by prediction mode ({len(test[0])} points, {args.samples}-sample ensembles):")
    accs = {m: accuracy(predict(model, guide, test[0], mode=m, num_samples=args.samples), test[1]) for m in MODES}
    singles = torch.tensor([accuracy(predict(model, guide, test[0], mode="sample"), test[1]) for _ in range(20)])
    accs["sample"] = float(singles.mean())
    names = {"mean": "mean propagation", "ensemble": "test-time averaging", "zero_mean": "zero-mean approximation"}
    rows = [(names[m], f"{100 * accs[m]:.1f} %") for m in ("mean", "ensemble", "zero_mean")]
    rows.insert(1, ("one weight sample (mean ± sd of 20)", f"{100 * singles.mean():.1f} ± {100 * singles.std():.1f} %"))
    _print_table(rows)
    fig_path = out / "bottleneck.png"
    plot_bottleneck(model, guide, model.net.fc5, test[0][:400], test[1][:400], fig_path)
    report = {
        "elbo": elbo,
        "test_accuracy": accs,
        "epochs": args.epochs,
        "seed": args.seed,
        "seconds": time.perf_counter() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    history.to_dataframe().to_csv(out / "history.csv", index=False)
    print(f"\nreport: {out}/ (bottleneck.png, metrics.json, history.csv) in {report['seconds']:.0f} s")
    return 0


def _load(args):
    _set_threads(args.threads)
    x, y = datasets.load_mnist(args.data_root, train=True)
    xt, yt = datasets.load_mnist(args.data_root, train=False)
    if args.limit:
        x, y, xt, yt = x[: args.limit], y[: args.limit], xt[: args.limit], yt[: args.limit]
    return (x, y), (xt, yt)


RUN_ARGS = (
    "model",
    "prior",
    "bayesian",
    "epochs",
    "batch_size",
    "lr",
    "lr_schedule",
    "lr_mult",
    "lrt",
    "decorrelate_directions",
    "eval_lrt",
    "seed",
)


def _lr_multipliers(specs: list[str]) -> dict[str, float]:
    """``["*log_alpha*=10"]`` → ``{"*log_alpha*": 10.0}``."""
    out = {}
    for spec in specs:
        pattern, sep, factor = spec.rpartition("=")
        try:
            out[pattern] = float(factor)
        except ValueError:
            sep = ""
        if not sep or not pattern:
            raise ValueError(f"cannot read --lr-mult {spec!r}: expected PATTERN=FACTOR, e.g. '*log_alpha*=10'")
    return out


def _build(model_name: str, prior: str, bayesian: str, guide_spec: str, num_data: int, seed: int | None = None):
    """A fresh (model, guide) pair as ``varnet train`` builds it (clears the param store; seeds
    first, so that the deterministic layers' initial values follow ``seed``)."""
    from .guides import NetworkGuide
    from .models import Classifier

    guide_spec, bayesian = split_column(guide_spec, bayesian)
    default, families = parse_guide(guide_spec)
    pyro.clear_param_store()
    if seed is not None:
        pyro.set_rng_seed(seed)
    layers = [] if bayesian == "none" else bayesian.split(",") if bayesian else None
    model = Classifier(_models()[model_name](prior, layers), num_data=num_data)
    return model, NetworkGuide(model, default=default, families=families)


def _run(args, guide_spec: str, out: Path, train_data, test_data):
    """Train one (model, guide) pair as ``varnet train`` does; returns model, guide, history.

    Every check (arguments, data, the checkpoint and its configuration) passes before anything
    in ``out`` is written; the run folder is locked for the run's life (see
    :mod:`pyro_varnet.runs`)."""
    from . import distributed
    from .infer import fit
    from .infer.loop import StopOnSignal

    main = distributed.is_main()
    folder = RunFolder(out)
    if folder.checkpoint.exists() and not args.resume:
        raise FileExistsError(
            f"checkpoint {folder.checkpoint} exists; pass --resume to continue that run, or choose another --out"
        )
    model, guide = _build(args.model, args.prior, args.bayesian, guide_spec, len(train_data[0]), args.seed)
    run_args = {**{k: getattr(args, k) for k in RUN_ARGS}, "guide": guide_spec}
    config = {k: v for k, v in run_args.items() if k not in ("epochs", "lr", "batch_size", "lr_schedule", "seed")}

    def log(epoch, m):
        accs = "  ".join(f"{k[9:]} {100 * v:.2f}%" for k, v in m.items() if k.startswith("test_acc_"))
        note = f"  [{m['override']}]" if "override" in m else ""
        prefix = getattr(args, "log_prefix", "")
        print(
            f"{prefix}epoch {epoch}: ELBO {m['elbo']:.1f} (data {m['data']:.1f}, KL {m['kl']:.1f})  {accs}  "
            f"[{m['seconds']:.0f} s]{note}",
            flush=True,
        )

    world_size = distributed.world()[1]
    # rank 0 holds the folder's lock and writes its files; every rank reads the checkpoint
    with folder if main else contextlib.nullcontext():
        if main:
            procs = f", {world_size} processes" if world_size > 1 else ""
            print(
                f"{args.model} on MNIST ({len(train_data[0])} train / {len(test_data[0])} test), guide {guide_spec}, "
                f"prior {args.prior}{procs}",
                flush=True,
            )
        history = fit(
            model,
            guide,
            train_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_schedule=None if args.lr_schedule == "constant" else args.lr_schedule,
            lr_multipliers=_lr_multipliers(args.lr_mult),
            lrt={"auto": None, "on": True, "off": False, "moment-matching": True, "flipout": "flipout"}[args.lrt],
            lrt_options={
                **({"decorrelate_directions": True} if args.decorrelate_directions else {}),
                **({"moment_matching": True} if args.lrt == "moment-matching" else {}),
            },
            test_data=test_data,
            eval_modes=args.eval_modes.split(","),
            eval_samples=args.eval_samples,
            eval_every=args.eval_every,
            eval_lrt=args.eval_lrt,
            seed=args.seed,
            device=resolve_device(args.device),
            checkpoint=folder.checkpoint,
            resume=args.resume,
            config=config,
            overrides=_overrides(args.override),
            callbacks=[StopOnSignal(), *([RunWriter(folder, run_args, echo=log)] if main else [])],
            progress=not args.no_progress,
            sync_batchnorm={"auto": None, "on": True, "off": False}[getattr(args, "sync_batchnorm", "auto")],
        )
    return model, guide, history


def _overrides(specs: list[str]) -> set[str]:
    """``["lr,seed", "prior"]`` -> ``{"lr", "seed", "prior"}``."""
    return {k.strip() for spec in specs for k in spec.split(",") if k.strip()}


def _default_out(model: str, guide: str, prior: str) -> Path:
    """``runs/<model>-<guide>-<prior>``; names from the command line never leave ``runs/``."""
    return Path("runs") / safe_name(f"{model}-{guide}-{prior}", "run name (from --model/--guide/--prior)")


def _launch(args: argparse.Namespace, argv: list[str]) -> int:
    """``--devices N`` (N > 1) outside torchrun: start N copies of this command on this machine
    through torchrun's launcher (``python -m torch.distributed.run --standalone``)."""
    rest, skip = [], False
    for a in argv:  # the same command without --devices
        if skip:
            skip = False
        elif a == "--devices":
            skip = True
        elif not a.startswith("--devices="):
            rest.append(a)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.devices}",
        "-m", "pyro_varnet.cli", *rest,
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.devices)))
    print("launching: " + " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd, env=env)


def train(args: argparse.Namespace) -> int:
    from . import distributed

    if args.devices > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch(args, args.argv)
    started = distributed.init_from_env()  # under torchrun / SLURM's srun with torchrun's variables
    finished = False
    try:
        code = _train(args)
        finished = True
        return code
    finally:
        if started:
            distributed.leave(finished)


def _train(args: argparse.Namespace) -> int:
    from . import distributed

    t0 = time.perf_counter()
    # weight-normalized models bring their own families (q(g), q(angle)); the rest default to VN Table 2's
    guide = args.guide or ("layer" if args.model.startswith("wn-") else "zero-mean-fc1")
    parse_guide(guide)
    out = Path(args.out) if args.out else _default_out(args.model, guide, args.prior)
    train_data, test_data = _load(args)
    _run(args, guide, out, train_data, test_data)
    if distributed.is_main():
        print(f"done in {time.perf_counter() - t0:.0f} s; checkpoint and metrics in {out}/")
    return 0


def _load_run(args, run=None):
    """Rebuild a ``varnet train`` run folder's model and guide with its trained parameters."""
    from .infer import restore

    run = Path(run or args.run)
    if not (run / "args.json").exists() or not (run / "checkpoint.pt").exists():
        raise FileNotFoundError(f"{run} is not a varnet train run folder (needs args.json and checkpoint.pt)")
    spec = RunFolder(run).read_args()
    _set_threads(args.threads)
    x, _ = datasets.load_mnist(args.data_root, train=True)
    test = datasets.load_mnist(args.data_root, train=False)
    if args.limit:
        test = (test[0][: args.limit], test[1][: args.limit])
    model, guide = _build(spec["model"], spec["prior"], spec["bayesian"], spec["guide"], len(x))
    restore(model, guide, run / "checkpoint.pt", example_x=x[:2])
    return run, model, guide, test


def prune_run(args: argparse.Namespace) -> int:
    from .analysis import plot_prune_curve, prune_curve

    run, model, guide, test = _load_run(args)
    site = args.site if "." in args.site else f"net.{args.site}.weight"
    pyro.set_rng_seed(args.seed)
    rows = prune_curve(model, guide, test, site, num_samples=args.samples)
    base = rows[0]["accuracy"]
    print(f"pruning {site} of {run} by sigma ({args.samples}-sample ensembles on {len(test[0])} test images)")
    _print_table(
        [("zeroed", "ensemble accuracy (change)")]
        + [
            (f"{100 * r['sparsity']:.1f} %", f"{100 * r['accuracy']:.2f} % ({100 * (r['accuracy'] - base):+.2f})")
            for r in rows
        ]
    )
    plot_prune_curve(rows, run / "prune.png", title=f"Pruning {site} by σ (VN Fig. 5)")
    (run / "prune.json").write_text(json.dumps(rows, indent=2))
    print(f"curve in {run}/prune.png, prune.json")
    return 0


class MissingExtraError(RuntimeError):
    """A command needs an optional dependency that is not installed."""


def _require(command: str, *modules: str) -> None:
    """Refuse ``command`` in one line when the ``experiments`` extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"varnet {command} needs {', '.join(missing)}: pip install 'pyro-varnet[experiments]'")


def attack(args: argparse.Namespace) -> int:
    _require("attack", "torchattacks")
    from .experiments.adversarial import DeepEnsemble, PredictiveNet, attack_success_curve, random_targets
    from .experiments.plots import plot_attack_curves

    store = pyro.get_param_store()
    nets, test = {}, None
    for spec in args.net:
        name, _, runs = spec.partition("=")
        if not runs:
            raise ValueError(f"cannot read --net {spec!r}: expected NAME=RUN or NAME=RUN1+RUN2+...")
        members = []
        for run in runs.split("+"):
            with store.scope() as state:
                _, model, guide, test = _load_run(args, run)
            stochastic = bool(guide.site_names)
            mode = "ensemble" if stochastic else "mean"
            members.append(PredictiveNet(model, guide, mode, args.samples, param_state=state))
        nets[name] = members[0] if len(members) == 1 else DeepEnsemble(members)
    x, y = test[0][: args.n], test[1][: args.n]
    targets = random_targets(y, seed=args.seed)
    curves = {}
    for name, net in nets.items():
        pyro.set_rng_seed(args.seed)
        curves[name] = attack_success_curve(net, x, targets, args.steps, args.step_size)
        marks = sorted({m for m in (1, 5, 10, args.steps) if m <= args.steps})
        rates = " / ".join(f"{100 * curves[name][m - 1]:.1f} %" for m in marks)
        print(f"{name:>20}: success after {'/'.join(map(str, marks))} steps: {rates}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attack.json").write_text(json.dumps({"step_size": args.step_size, "n": len(x), "curves": curves}, indent=2))
    plot_attack_curves(curves, out / "attack.png", title=f"targeted iterative FGSM, step {args.step_size}")
    print(f"curves in {out}/attack.png, attack.json")
    return 0


def rl(args: argparse.Namespace) -> int:
    _require("rl", "gymnasium")
    from .experiments.plots import plot_rl_curves
    from .experiments.rl import compare_exploration

    t0 = time.perf_counter()
    kinds = args.methods.split(",")
    options = {
        "sigma_scale": args.sigma_scale,
        "sigma_lr_mult": args.sigma_lr_mult,
        "baseline": args.baseline,
        "episodes_per_update": args.episodes_per_update,
    }
    res = compare_exploration(args.env, kinds, args.seeds, args.episodes, args.lr, args.last, args.processes, **options)
    print(
        f"REINFORCE on {args.env}: mean return over the last {args.last} of {args.episodes} episodes, "
        f"{args.seeds} seeds"
    )
    _print_table([(k, f"{m:.1f} ± {se:.1f} (SE)") for k, (m, se) in res["final"].items()])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rl.json").write_text(json.dumps({**res, "options": options, "seconds": time.perf_counter() - t0}))
    plot_rl_curves(res["returns"], out / "rl.png", title=f"REINFORCE on {args.env} (VN Fig. 6)")
    print(f"curves in {out}/rl.png, rl.json ({time.perf_counter() - t0:.0f} s)")
    return 0


def wn_report(args: argparse.Namespace) -> int:
    from .analysis import plot_weightnorm_posteriors, structured_sparsity, weightnorm_posteriors

    run, model, guide, _ = _load_run(args)
    layers = sorted({n.rsplit(".", 1)[0] for n in guide.site_names if n.endswith(".angle")})
    if not layers:
        raise ValueError(f"{run} has no weight-normalized layers (train a wn- model)")
    table = structured_sparsity(guide, layers, args.log_alpha_threshold)
    print(f"neurons whose magnitude is noise-dominated (log alpha > {args.log_alpha_threshold}) in {run}:")
    print(table.to_string(index=False))
    table.to_csv(run / "wn_sparsity.csv", index=False)
    for layer in layers:
        weightnorm_posteriors(guide, layer).to_csv(run / f"wn_posteriors_{layer}.csv", index=False)
    layer = args.layer if args.layer.startswith("net.") else f"net.{args.layer}"
    plot_weightnorm_posteriors(guide, layer, run / "wn_posteriors.png")
    print(f"q(g), q(angle) of {layer} in {run}/wn_posteriors.png; per-neuron tables wn_posteriors_*.csv")
    return 0


def _compare_column(args: argparse.Namespace, spec: str, out: Path, data=None, threads: int | None = None):
    """Train one column of ``varnet compare`` on ``data`` (train, test) and write its report
    (``data=None``: a worker process of ``--processes``, which loads the data itself and runs on
    ``threads``); returns the :class:`ELBOReport` and the column's wall-clock seconds."""
    from .analysis import elbo_report, plot_phase_transition, plot_sample_accuracies

    t0 = time.perf_counter()
    if threads is not None:  # a worker: its lines interleave with the other columns'
        args.threads, args.no_progress, args.log_prefix = threads, True, f"[{spec}] "
    train_data, test_data = _load(args) if data is None else data
    model, guide, history = _run(args, spec, out / safe_name(spec, "guide"), train_data, test_data)
    report = elbo_report(
        model,
        guide,
        train_data,
        test_data,
        num_samples=args.eval_samples,
        elbo_samples=args.elbo_samples,
        num_draws=args.draws,
        name=spec,
        history=history,
        seed=args.seed,
    )
    report.save(out / f"{spec}.nc")
    plot_phase_transition(history, out / f"phase_transition_{spec}.png", title=f"{spec}: phase transition")
    plot_sample_accuracies(
        report.sample_accuracies, report.metrics["acc_ensemble"], out / f"sample_accuracies_{spec}.png"
    )
    seconds = time.perf_counter() - t0
    print(f"{spec}: trained and reported in {seconds:.0f} s ({torch.get_num_threads()} threads)", flush=True)
    return report, seconds


def _compare_worker(job):
    args, spec, out, threads = job
    return _compare_column(args, spec, out, threads=threads)


def _compare_defaults() -> dict:
    """``varnet compare``'s training defaults: VN Table 1's recipe (``VN_TABLE1_RECIPE``)."""
    from .analysis.report import VN_TABLE1_RECIPE as r

    lr_mult = [f"{pattern}={factor:g}" for pattern, factor in r["lr_multipliers"].items()]
    keys = ("epochs", "batch_size", "lr", "lr_schedule")
    return {**{k: r[k] for k in keys}, "lr_mult": lr_mult}


def compare_guides(args: argparse.Namespace) -> int:
    from .analysis import VN_TABLE1, compare, plot_elbo_decomposition, plot_kl_priors, vn_table1_column

    t0 = time.perf_counter()
    specs = args.guides.split(",")
    for spec in specs:  # every name is checked before anything is created
        parse_guide(safe_name(spec, "guide"))
    if args.lr_mult is None:
        args.lr_mult = _compare_defaults()["lr_mult"]
    _lr_multipliers(args.lr_mult)
    out = Path(args.out) if args.out else Path("reports") / safe_name(f"compare-{args.model}-{args.prior}", "name")
    processes = min(args.processes, len(specs))
    if processes > 1:
        total = args.threads if isinstance(args.threads, int) else resolve_threads("auto")
        threads = max(1, total // processes)
        print(f"{len(specs)} columns on {processes} processes, {threads} thread(s) each", flush=True)
        done = map_processes(_compare_worker, [(args, spec, out, threads) for spec in specs], processes)
    else:
        data = _load(args)  # once for every column
        done = [_compare_column(args, spec, out, data) for spec in specs]
    reports = {spec: report for spec, (report, _) in zip(specs, done)}
    wall = {spec: seconds for spec, (_, seconds) in zip(specs, done)}
    reference = {spec: VN_TABLE1[col] for spec in specs if (col := vn_table1_column(spec)) is not None}
    table, markdown, az_table = compare(reports, ic=args.ic, reference=reference)
    plot_kl_priors(out / "kl_priors.png")
    plot_elbo_decomposition(reports, out / "elbo_decomposition.png")
    (out / "table.md").write_text(markdown + "\n")
    summary = {
        name: {
            "elbo": r.elbo,
            "data": r.data,
            "kl": r.kl,
            **r.metrics,
            "log_alpha": r.log_alpha,
            "mmd_bound": r.mmd_bound,
            "train_seconds": float(sum(r.history["seconds"])) if len(r.history) else None,
            "wall_seconds": wall[name],
        }
        for name, r in reports.items()
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    print(
        "\nVN Table 1 as measured (ELBO, data term and KL in nats over the training set; '(VN)': the paper's, "
        "over 60 000 images):\n" + markdown
    )
    if az_table is not None:
        az_table.to_csv(out / "az_compare.csv")
        print(f"\naz.compare on pointwise test log-likelihoods ({args.ic.upper()}):\n" + az_table.to_string())
        for warning in az_table.attrs["warnings"]:
            print(f"warning: {warning}")
    print(f"\nreport in {out}/ ({time.perf_counter() - t0:.0f} s)")
    return 0


def _add_training_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--model", choices=MODELS, default="lenet5")
    t.add_argument("--prior", choices=prior_names(), default="log-uniform")
    t.add_argument(
        "--bayesian",
        default="",
        help="comma list of layers with a prior (default all; 'none': a deterministic net); the rest are det",
    )
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=200)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-schedule", choices=("linear", "hold-linear", "constant"), default="linear")
    t.add_argument(
        "--lr-mult",
        action="append",
        default=[],
        metavar="PATTERN=FACTOR",
        help="learn parameters whose name matches the glob at FACTOR x lr (repeatable), e.g. '*log_alpha*=10'",
    )
    t.add_argument(
        "--lrt",
        choices=("auto", "on", "off", "moment-matching", "flipout"),
        default="auto",
        help="local reparameterization (auto: on when exact for every family; off: one draw per batch; "
        "moment-matching: fast dropout for Bernoulli/uniform layers; flipout: one draw, decorrelated)",
    )
    t.add_argument(
        "--decorrelate-directions",
        action="store_true",
        help="WeightNorm models: a tangent direction phi per object, not per mini-batch (WN §4.2)",
    )
    t.add_argument("--eval-modes", default="mean,sample,ensemble", help="comma list of mean,sample,ensemble,zero_mean")
    t.add_argument("--eval-samples", type=_positive, default=20)
    t.add_argument(
        "--eval-lrt",
        action="store_true",
        help="sample/ensemble evaluation by local reparameterization (as trained: needed for zero-mean convs)",
    )
    t.add_argument("--eval-every", type=int, default=1)
    t.add_argument("--data-root", default=None, help=f"folder holding MNIST/raw (default ${datasets.ENV_VAR})")
    t.add_argument("--resume", action="store_true", help="continue the run(s) in --out from the checkpoint(s)")
    t.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY[,KEY]",
        help="with --resume: settings that may differ from the checkpoint's run (e.g. lr), recorded in the history",
    )
    t.add_argument("--limit", type=_nonnegative, default=0, help="use only the first N train and test images (smoke)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    t.add_argument(
        "--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="auto: cuda when available, else cpu"
    )
    t.add_argument("--no-progress", action="store_true")


THREADS_HELP = "CPU threads: N, or auto (default: $OMP_NUM_THREADS, else the cores other processes leave idle)"


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    return _positive(text)


def _set_threads(threads: int | str) -> None:
    torch.set_num_threads(resolve_threads(threads))


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="varnet", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train the VN §3.2 toy variance network (no download)")
    d.add_argument("--out", default="varnet-demo", help="report folder")
    d.add_argument("--epochs", type=int, default=250)
    d.add_argument("--lr", type=float, default=3e-3)
    d.add_argument("--samples", type=int, default=101, help="ensemble size (101, as the authors' toy experiment)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=demo)
    t = sub.add_parser("train", help="train a paper model on MNIST")
    t.add_argument(
        "--guide",
        default=None,
        help="layer | zero-mean-fc1 | fc1=zero-mean,default=neuron ... (default zero-mean-fc1; wn- models: their own)",
    )
    t.add_argument("--out", default=None, help="run folder (checkpoint.pt, metrics.jsonl, history.csv)")
    _add_training_args(t)
    t.add_argument(
        "--devices",
        type=_positive,
        default=1,
        help="N > 1: data-parallel over N processes on this machine (one GPU each with --device cuda; torchrun's "
        "launcher); --batch-size stays the global batch. Under torchrun itself leave it out",
    )
    t.add_argument(
        "--sync-batchnorm",
        choices=("auto", "on", "off"),
        default="auto",
        help="data-parallel runs: BatchNorm statistics of the global batch (SyncBatchNorm, GPUs; auto: on with "
        "CUDA) or per process (off; needed to run a BatchNorm model on CPU processes)",
    )
    t.set_defaults(func=train)
    c = sub.add_parser("compare", help="train several guides and compare their ELBO reports (VN Table 1)")
    c.add_argument(
        "--guides",
        default="zero-mean@fc1,layer,neuron,weight,additive",
        help="comma list of guide specs, VN Table 1's columns by default (zero-mean@fc1: fc1 a variance layer, "
        "the other layers deterministic)",
    )
    c.add_argument(
        "--processes",
        type=_positive,
        default=1,
        help="train the columns in this many processes at once (the threads are split between them)",
    )
    c.add_argument("--out", default=None, help="report folder")
    c.add_argument(
        "--draws",
        type=_positive,
        default=100,
        help="iid weight draws for Fig. 4, LOO and the ArviZ export (PSIS-LOO wants ~100 or more)",
    )
    c.add_argument("--ic", choices=("loo", "waic"), default="loo", help="information criterion of az.compare")
    c.add_argument("--elbo-samples", type=int, default=3, help="passes over the training set for the data term")
    _add_training_args(c)
    # VN Table 1's recipe; --lr-mult given replaces the lever (e.g. --lr-mult '*=1' for none)
    c.set_defaults(func=compare_guides, **{**_compare_defaults(), "lr_mult": None, "model": "lenet5-bn"})
    r = sub.add_parser("prune", help="prune a trained run's layer by sigma: sparsity vs accuracy (VN Fig. 5)")
    r.add_argument("run", help="a varnet train run folder (args.json, checkpoint.pt)")
    r.add_argument("--site", default="fc1", help="layer name or full site name (default fc1)")
    r.add_argument("--samples", type=int, default=20)
    r.add_argument("--data-root", default=None)
    r.add_argument("--limit", type=_nonnegative, default=0, help="use only the first N test images (smoke runs)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    r.set_defaults(func=prune_run)
    w = sub.add_parser(
        "wn-report", help="a trained wn- run: q(g), q(angle) per neuron (WN Fig. 6), structured sparsity"
    )
    w.add_argument("run", help="a varnet train run folder of a wn- model")
    w.add_argument("--layer", default="fc1", help="layer to plot (default fc1)")
    w.add_argument("--log-alpha-threshold", type=float, default=3.0)
    w.add_argument("--data-root", default=None)
    w.add_argument("--limit", type=_nonnegative, default=0)
    w.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    w.set_defaults(func=wn_report)
    a = sub.add_parser("attack", help="targeted iterative FGSM on trained runs, EOT gradients (VN Fig. 7)")
    a.add_argument(
        "--net",
        action="append",
        required=True,
        metavar="NAME=RUN[+RUN...]",
        help="a trained run (several joined by + form a deep ensemble); repeat for each model",
    )
    a.add_argument("--n", type=int, default=500, help="test images attacked")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--step-size", type=float, default=0.01, help="fixed FGSM step (inputs in [0, 1])")
    a.add_argument("--samples", type=int, default=10, help="weight draws per prediction (and per gradient)")
    a.add_argument("--out", default="reports/attack")
    a.add_argument("--data-root", default=None)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    a.add_argument("--limit", type=_nonnegative, default=0)
    a.set_defaults(func=attack)
    q = sub.add_parser("rl", help="REINFORCE with deterministic / parameter-noise / variance policies (VN Fig. 6)")
    q.add_argument("--env", default="CartPole-v1")
    q.add_argument("--methods", default="deterministic,parameter-noise,variance")
    q.add_argument("--seeds", type=int, default=5)
    q.add_argument("--episodes", type=int, default=300)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--last", type=int, default=20, help="episodes averaged into a seed's final score")
    q.add_argument("--processes", type=int, default=1)
    q.add_argument("--sigma-scale", type=float, default=1.0, help="the noisy layer's σ initialisation times this")
    q.add_argument("--sigma-lr-mult", type=float, default=1.0, help="σ's learning rate is --lr times this")
    q.add_argument("--baseline", choices=("running", "per-step", "none"), default="running")
    q.add_argument("--episodes-per-update", type=_positive, default=1, help="episodes summed into one Adam step")
    q.add_argument("--out", default="reports/rl")
    q.set_defaults(func=rl)
    return p


#: errors the CLI reports in one line (exit status 2); ``--debug`` shows their traceback
USER_ERRORS = (OSError, ValueError, TypeError, CheckpointError, RunLockedError, MissingExtraError, DistributedError)


def main(argv: list[str] | None = None) -> int:
    from .infer.loop import Interrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"varnet {args.command}: {e}; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"varnet {args.command}: interrupted; the last checkpoint is intact (--resume)", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"varnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
