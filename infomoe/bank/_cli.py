"""``infomoe demo``: the finite expert bank experiment from the command line."""

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


def _run_demo(args) -> int:
    from infomoe.bank._data import load_mnist
    from infomoe.bank._experiment import run_experiment, write_results
    from infomoe.cli import check_output_dir
    from infomoe.bank._experts import default_cache_dir

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
