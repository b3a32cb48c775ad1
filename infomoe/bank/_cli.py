"""``infomoe demo``: the finite expert bank experiment, and ``infomoe demo router``, from the command line.

``infomoe demo`` (options as before) runs the expert bank of Paper B;
``infomoe demo router`` trains a small MoE language model on the standard
library's source and places its router against its layer's accuracy-rate
frontier (:mod:`infomoe._router_demo`).
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["register"]


def _alpha_list(text: str):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas must be a comma-separated list of numbers, e.g. 0,0.01,0.1,1; got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("--alphas needs at least one value")
    return values


def register(subparsers) -> None:
    """Add the ``demo`` subcommand to an ``argparse`` subparsers object."""
    from infomoe.bank._experiment import DEFAULT_ALPHAS

    p = subparsers.add_parser(
        "demo",
        help="reproduce Paper B: finite expert bank, I(S;W), gap and bounds",
        description=(
            "Train (or load from the cache) a bank of small CNN experts on scikit-learn's digits, "
            "select among them with a Gibbs rule of data dependence alpha on M resampled "
            "training sets of size m, and report I^(S;W), the generalization gap, the "
            "Xu-Raginsky and union bounds, the Aminian identity, the gate's I(X;T) and the "
            "Blahut-Arimoto accuracy-rate curve.  Writes JSON and PNG files to --out."))
    p.add_argument("--experts", type=int, default=25, metavar="K", help="bank size (default 25)")
    p.add_argument("--m", type=int, default=256, metavar="SIZE",
                   help="training-set size m (default 256)")
    p.add_argument("--sets", type=int, default=300, metavar="COUNT",
                   help="number M of resampled training sets (default 300)")
    p.add_argument("--alphas", type=_alpha_list, default=list(DEFAULT_ALPHAS),
                   help="comma-separated alpha grid (default %s)"
                        % ",".join(f"{a:g}" for a in DEFAULT_ALPHAS))
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="results", metavar="OUT_DIR",
                   help="output folder, created if needed (default ./results)")
    p.add_argument("--cache", default=None, metavar="CACHE_DIR",
                   help="expert cache folder (default $INFOMOE_CACHE or ~/.cache/infomoe)")
    p.add_argument("--mnist", default=None, metavar="PATH",
                   help="use MNIST from a folder of IDX files (raw or .gz) or an .npz archive "
                        "instead of the embedded digits")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_demo)
    kinds = p.add_subparsers(dest="demo", metavar="{router}",
                             title="other demos (default: the expert bank above)")
    _register_router(kinds)


def _register_router(kinds) -> None:
    r = kinds.add_parser(
        "router", help="train a small MoE language model on CPU; its routing and distance to the frontier",
        description=(
            "Train a small Hugging Face OLMoE model (4 layers, hidden 128, 8 experts, top-2) on the Python "
            "standard library's own source files (bytes; split by file into train and held-out), with "
            "checkpoints; record its routing on held-out text and print the report (load balance, "
            "information, soft-gate I(X;T), co-activation, router saturation across checkpoints); force one "
            "layer's experts to get the (tokens x experts) loss matrix, solve that layer's accuracy-rate "
            "frontier by Blahut-Arimoto and place the learned router against it.  Writes checkpoints, "
            "routing logs, PNG figures and results.json to --out.  About 3 minutes on 2 CPU cores; no "
            "download."))
    r.add_argument("--out", default="results-router", metavar="OUT_DIR",
                   help="output folder, created if needed (default ./results-router)")
    r.add_argument("--steps", type=int, default=None, metavar="N",
                   help="training steps (default 300; 12 with --quick)")
    r.add_argument("--layer", type=int, default=None, metavar="LAYER_ID",
                   help="MoE layer to force and place on its frontier (default 2; 1 with --quick)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--quick", action="store_true",
                   help="tiny settings (2 layers, hidden 32, 4 experts): a run of seconds, for tests")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    r.set_defaults(func=_run_router_demo)


def _run_router_demo(args) -> int:
    from infomoe.cli import UsageError, check_output_dir, require_extra

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    check_output_dir(args.out)
    require_extra("torch", "torch", "infomoe demo router")
    require_extra("transformers", "torch", "infomoe demo router")
    from infomoe._router_demo import settings_for

    s = settings_for(quick=args.quick, steps=args.steps, layer=args.layer)
    if not 0 <= s.forcing_layer < s.layers:
        raise UsageError(f"--layer must be a layer id in 0..{s.layers - 1}, got {s.forcing_layer}")
    from infomoe._router_demo import run_router_demo

    t0 = time.perf_counter()
    run_router_demo(args.out, settings=s, seed=args.seed, progress=not args.no_progress)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    sys.stdout.flush()
    return 0


def _run_demo(args) -> int:
    from infomoe.bank._data import load_mnist
    from infomoe.bank._experiment import run_experiment, write_results
    from infomoe.bank._experts import default_cache_dir
    from infomoe.cli import check_output_dir

    t0 = time.perf_counter()
    # Before any training: a minute of work must not end in a traceback at the last step.
    check_output_dir(args.out)  # UsageError: one line and exit status 2 from infomoe.cli.main
    data = load_mnist(args.mnist) if args.mnist else None
    cache = args.cache if args.cache is not None else default_cache_dir()
    result = run_experiment(n_experts=args.experts, m=args.m, n_sets=args.sets,
                            alphas=args.alphas, seed=args.seed, data=data, cache_dir=cache,
                            progress=not args.no_progress)
    paths = write_results(result, args.out)
    print(result.summary())
    print("wrote " + ", ".join(paths.values()))
    print(f"done in {time.perf_counter() - t0:.1f} s (expert cache: {cache})")
    sys.stdout.flush()
    return 0
