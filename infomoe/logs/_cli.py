"""``infomoe report LOG --out DIR``: summarise a routing log (JSON, PNG figures, a table)."""

from __future__ import annotations

import argparse
import os

from infomoe.logs import _distributed  # imports no Dask until a cluster is asked for

__all__ = ["register", "run_report"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "report", help="summarise a routing log: load balance and information per layer",
        description="Stream a routing log once and write summary.json, load_heatmap.png and "
                    "layer_information.png to --out, printing a per-layer table.",
        epilog="example: infomoe report run.log --out run-report")
    p.add_argument("log", help="routing-log directory (holding manifest.json)")
    p.add_argument("--out", required=True, help="directory for summary.json and the figures")
    p.add_argument("--estimator", default="plugin",
                   help="MI / entropy estimator (plugin, miller_madow, jackknife, chao_shen, nsb, grassberger, james_stein)")
    p.add_argument("--base", type=float, default=2.0, help="logarithm base (default 2: bits)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layer ids (default all)")
    p.add_argument("--token-buckets", type=int, default=2048,
                   help="token ids counted modulo this (default 2048)")
    p.add_argument("--label-buckets", type=int, default=1024,
                   help="labels counted modulo this (default 1024)")
    p.add_argument("--max-set-alphabet", type=int, default=1 << 18,
                   help="largest C(E, k) for which top-k sets are counted (default 262144)")
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
    _distributed.add_scheduler_argument(p)  # --scheduler ADDRESS|local|none, --workers N (Dask)
    p.set_defaults(func=run_report)
    return p


def run_report(args) -> int:
    """Run ``infomoe report`` for parsed arguments; return the exit status."""
    from infomoe.cli import check_output_dir
    from infomoe.logs._reader import open_log

    check_output_dir(args.out)  # before any counting: a report is never computed only to be lost
    analyze_log = _distributed.report_analyzer(args)  # analyze_log, or its Dask version (checked)

    log = open_log(args.log, verify=not args.no_verify)
    report = analyze_log(log, layers=args.layers, estimator=args.estimator, base=args.base,
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

    from infomoe.plot._logs import layer_information, load_heatmap

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
    return paths
