"""``infomoe report LOG --out DIR``: summarise a routing log (JSON, PNG figures, a table)."""

from __future__ import annotations

import argparse
import functools
import os

from infomoe._validate import check_positive_int

__all__ = ["register", "run_report", "add_scheduler_argument", "report_analyzer"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "report", help="summarise a routing log: load balance and information per layer",
        description="Stream a routing log once and write summary.json, load_heatmap.png, "
                    "layer_information.png and coactivation.png to --out, printing per-layer tables of load, "
                    "health and information (with intervals and permutation-null significance).",
        epilog="example: infomoe report run.log --out run-report")
    p.add_argument("log", help="routing-log directory (holding manifest.json)")
    p.add_argument("--out", required=True, help="directory for summary.json and the figures")
    p.add_argument("--estimator", default="shuffle",
                   help="MI estimator: shuffle (default: plug-in minus its permutation null), plugin, miller_madow, "
                        "jackknife, chao_shen, nsb, grassberger, james_stein")
    p.add_argument("--permutations", type=int, default=50,
                   help="permutations of the expert ids for each MI's null (default 50; 0: none)")
    p.add_argument("--groups", type=int, default=None,
                   help="groups of sequences resampled by the jackknife intervals (default 64, or the "
                        "setting of the log's count tables)")
    p.add_argument("--no-intervals", action="store_true", help="skip the jackknife intervals")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise level of the significance marks, and 1 - level of the intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--capacity-factor", type=float, default=1.25,
                   help="expert capacity as a multiple of the mean load (default 1.25)")
    p.add_argument("--ep-ranks", type=int, default=None,
                   help="expert-parallel ranks (experts placed contiguously) for the rank balancedness")
    p.add_argument("--base", type=float, default=2.0, help="logarithm base (default 2: bits)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layer ids (default all)")
    p.add_argument("--token-buckets", type=int, default=None,
                   help="token ids counted modulo this (default 2048, or the setting of the log's count tables)")
    p.add_argument("--label-buckets", type=int, default=None,
                   help="labels counted modulo this (default 1024, or the setting of the log's count tables)")
    p.add_argument("--max-set-alphabet", type=int, default=None,
                   help="largest C(E, k) for which top-k sets are counted (default 262144, or the setting "
                        "of the log's count tables)")
    p.add_argument("--expert-space", choices=("logical", "as_logged"), default="logical",
                   help="map physical expert ids to logical ones when the log has a map")
    p.add_argument("--chunk-tokens", type=int, default=1 << 16, help="tokens per chunk")
    p.add_argument("--threads", type=int, default=1,
                   help="numba threads for counting (default 1; see analyze_log)")
    p.add_argument("--no-verify", action="store_true", help="skip shard checksum verification")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="warn about and skip corrupted shards instead of failing")
    p.add_argument("--no-plots", action="store_true", help="write only summary.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_scheduler_argument(p)  # --scheduler ADDRESS|local|none, --workers N (Dask)
    p.set_defaults(func=run_report)
    return p


def run_report(args) -> int:
    """Run ``infomoe report`` for parsed arguments; return the exit status."""
    from infomoe.cli import check_output_dir
    from infomoe.logs._reader import open_log

    check_output_dir(args.out)  # before any counting: a report is never computed only to be lost
    analyze_log = report_analyzer(args)  # analyze_log, or its Dask version (checked)

    log = open_log(args.log, verify=not args.no_verify)
    report = analyze_log(log, layers=args.layers, estimator=args.estimator, base=args.base,
                         permutations=args.permutations, groups=args.groups, intervals=not args.no_intervals,
                         alpha=args.alpha, seed=args.seed, capacity_factor=args.capacity_factor,
                         expert_placement=args.ep_ranks,
                         token_buckets=args.token_buckets, label_buckets=args.label_buckets,
                         max_set_alphabet=args.max_set_alphabet, expert_space=args.expert_space,
                         chunk_tokens=args.chunk_tokens, num_threads=args.threads,
                         on_error="skip" if args.skip_corrupt else "raise",
                         progress=not args.no_progress)
    os.makedirs(args.out, exist_ok=True)
    written = [os.path.join(args.out, "summary.json")]
    with open(written[0], "w", encoding="utf-8") as f:
        f.write(report.to_json())
        f.write("\n")
    if not args.no_plots:
        written += _figures(report, args.out)
    print(f"{log!r}{'' if log.complete else '  (writer not closed: partial log)'}")
    print(report.format_table())
    for path in written:
        print(f"wrote {path}")
    return 0


def _figures(report, out: str) -> list:
    from matplotlib.figure import Figure

    import numpy as np

    from infomoe.plot._logs import coactivation_heatmap, layer_information, load_heatmap

    paths = []
    L = len(report.layer_ids)
    fig = Figure(figsize=(max(6.0, 0.12 * int(report.num_experts.max()) + 3), max(3.0, 0.3 * L + 1.5)),
                 layout="constrained")
    load_heatmap(report, ax=fig.subplots())
    paths.append(os.path.join(out, "load_heatmap.png"))
    fig.savefig(paths[-1], dpi=120)
    fig = Figure(figsize=(max(6.0, 0.35 * L + 2), 4.0), layout="constrained")
    layer_information(report, ax=fig.subplots())
    paths.append(os.path.join(out, "layer_information.png"))
    fig.savefig(paths[-1], dpi=120)
    multi = [int(lid) for lid, k in zip(report.layer_ids, report.top_k) if k >= 2]
    if multi:  # co-activation of up to four layers, first to last
        shown = [multi[j] for j in sorted({round(t * (len(multi) - 1) / 3) for t in range(4)})]
        E = int(report.num_experts.max())
        fig = Figure(figsize=(4.2 * len(shown), 3.6 + 0.02 * E), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(shown)))
        for ax, lid in zip(axes, shown):
            coactivation_heatmap(report, layer=lid, ax=ax)
        paths.append(os.path.join(out, "coactivation.png"))
        fig.savefig(paths[-1], dpi=120)
    return paths


def add_scheduler_argument(parser) -> None:
    """Add ``--scheduler [ADDRESS]`` and ``--workers N`` to the ``report`` parser."""
    parser.add_argument(
        "--scheduler", nargs="?", const="local", default=None, metavar="ADDRESS",
        help="count shards on a Dask cluster: a scheduler address (tcp://host:8786), a "
             "scheduler file (.json), or 'local' (also when ADDRESS is omitted) for a "
             "LocalCluster on this machine; 'none' (the default) counts in this process")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the local cluster (default: one per core)")


def report_analyzer(args):
    """The analysis function ``infomoe report`` should call for parsed `args`.

    Checks the Dask options first, in seconds and before the log is read:
    the ``dask`` extra is installed, ``--workers`` is positive, a scheduler
    file exists and names an address, and a scheduler listens at the
    address (:func:`check_scheduler_reachable`).  A failure raises
    :class:`infomoe.cli.UsageError`.
    """
    from infomoe.cli import UsageError, require_extra
    from infomoe.logs._analysis import analyze_log
    from infomoe.logs._distributed import (CLI_CONNECT_TIMEOUT, _is_scheduler_file, check_scheduler_reachable,
                                           read_scheduler_file)

    scheduler = getattr(args, "scheduler", None)
    if scheduler is None or scheduler.lower() == "none":
        return analyze_log
    for module in ("dask", "distributed"):
        require_extra(module, "dask", "infomoe report --scheduler")
    workers = getattr(args, "workers", None)
    if workers is not None:
        check_positive_int(workers, "--workers")
    if scheduler.lower() == "local":
        return functools.partial(analyze_log, scheduler="local", n_workers=workers)
    address = scheduler
    try:
        if _is_scheduler_file(scheduler):
            address = read_scheduler_file(scheduler)
        check_scheduler_reachable(address, CLI_CONNECT_TIMEOUT)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            detail = f"no Dask scheduler answers at {address} ({detail or type(exc).__name__}); " \
                     "is it running, and is the address right?"
        raise UsageError(f"--scheduler {scheduler}: {detail}") from None
    return functools.partial(analyze_log, scheduler=scheduler, n_workers=workers,
                             connect_timeout=CLI_CONNECT_TIMEOUT)
