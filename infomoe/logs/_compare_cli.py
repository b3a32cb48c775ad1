"""``infomoe compare A B --out DIR``: compare two routings of the same tokens (JSON, PNG, a table).

``infomoe compare --saturation LOG [LOG ...] --out DIR`` compares each
checkpoint's routing with the reference (default: the last) instead.
"""

from __future__ import annotations

import argparse
import math
import os

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "compare", help="compare two routings of the same tokens, or many checkpoints' routing",
        description="Compare the routing of the same tokens in two logs (two runs, engines, "
                    "checkpoints or seeds): per-layer exact-set match, Jaccard, top-1 agreement, "
                    "KL and JS of the expert loads and AMI; write comparison.json and "
                    "comparison.png to --out and print a table.  With --saturation, compare "
                    "each of several checkpoints' logs (or one log with a step column) with "
                    "the reference checkpoint and write saturation.json and saturation.png.",
        epilog="examples: infomoe compare train.log replay.log --out cmp;  "
               "infomoe compare --saturation ckpt100.log ckpt200.log final.log --out sat")
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="two routing-log directories (with --saturation: one per checkpoint, "
                        "oldest first, or one log with a step column)")
    p.add_argument("--out", required=True, help="directory for the JSON file and the figure")
    p.add_argument("--saturation", action="store_true",
                   help="router saturation: agreement of each checkpoint with the reference")
    p.add_argument("--reference", type=int, default=None,
                   help="with --saturation: index of the reference checkpoint (default -1, the last)")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="with --saturation: the checkpoints' steps (default: from the logs)")
    p.add_argument("--match", choices=("seq_position", "token", "order"), default=None,
                   help="pair tokens by (seq_id, position), by (seq_id, position) with equal "
                        "token_id, or by order (default seq_position; with --saturation, "
                        "seq_position when every log has those columns, else order)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="layer ids (default: those every log has)")
    p.add_argument("--base", type=float, default=2.0,
                   help="logarithm base of KL and JS (default 2: bits)")
    p.add_argument("--ami-label", choices=("auto", "top1", "set"), default="auto",
                   help="label of a token for the AMI (default auto: top-1 when known, else the set)")
    p.add_argument("--expert-space", choices=("logical", "as_logged"), default="logical",
                   help="map physical expert ids to logical ones when a log has a map")
    p.add_argument("--no-verify", action="store_true", help="skip shard checksum verification")
    p.add_argument("--no-plots", action="store_true", help="write only the JSON file")
    p.set_defaults(func=run)
    return p


def _check_args(args) -> None:
    """Every mistake on the command line, as a UsageError, before anything is read."""
    from infomoe.cli import UsageError, check_output_dir

    if not args.saturation:
        if len(args.logs) != 2:
            raise UsageError(f"compare takes two logs, A and B, got {len(args.logs)}; use "
                             "--saturation to compare several checkpoints")
        for opt, value in (("--reference", args.reference), ("--steps", args.steps)):
            if value is not None:
                raise UsageError(f"{opt} is an option of --saturation")
    elif args.steps is not None and len(args.steps) != len(args.logs):
        raise UsageError(f"--steps has {len(args.steps)} values for {len(args.logs)} logs")
    elif args.steps is not None and len(args.logs) == 1:
        raise UsageError("--steps is for one log per checkpoint; a single log's steps are its "
                         "step column")
    for path in args.logs:
        if not os.path.isfile(os.path.join(path, "manifest.json")):
            what = "does not exist" if not os.path.exists(path) else "is not a routing log " \
                "(no manifest.json in it)"
            raise UsageError(f"{path!r} {what}")
    if not (math.isfinite(args.base) and args.base > 0 and args.base != 1):
        raise UsageError(f"--base must be a positive number other than 1, got {args.base:g}")
    if args.layers is not None and any(v < 0 for v in args.layers):
        raise UsageError(f"--layers must be non-negative layer ids, got {args.layers}")
    check_output_dir(args.out)  # before any reading: a result is never computed only to be lost


def run(args) -> int:
    """Run ``infomoe compare`` for parsed arguments; return the exit status."""
    import warnings

    _check_args(args)
    from infomoe.logs._compare import compare_logs, router_saturation
    from infomoe.logs._reader import open_log

    logs = [open_log(p, verify=not args.no_verify) for p in args.logs]
    with warnings.catch_warnings():  # every warning is in the result, printed with the table
        warnings.simplefilter("ignore", RuntimeWarning)
        if args.saturation:
            result = router_saturation(
                logs if len(logs) > 1 else logs[0],
                reference=-1 if args.reference is None else args.reference, steps=args.steps,
                layers=args.layers, match=args.match or "auto", base=args.base,
                expert_space=args.expert_space)
            name = "saturation"
        else:
            result = compare_logs(logs[0], logs[1], layers=args.layers,
                                  match=args.match or "seq_position",
                                  base=args.base, ami_label=args.ami_label,
                                  expert_space=args.expert_space)
            name = "comparison"
    os.makedirs(args.out, exist_ok=True)
    written = [os.path.join(args.out, f"{name}.json")]
    with open(written[0], "w", encoding="utf-8") as f:
        f.write(result.to_json())
        f.write("\n")
    if not args.no_plots:
        written.append(_figure(result, name, args.out))
    for log in logs:
        print(f"{log!r}{'' if log.complete else '  (writer not closed: partial log)'}")
    print(result.format_table())
    for path in written:
        print(f"wrote {path}")
    return 0


def _figure(result, name: str, out: str) -> str:
    from matplotlib.figure import Figure

    from infomoe.plot._compare import comparison_plot, saturation_plot

    if name == "comparison":
        fig = Figure(figsize=(max(6.0, 0.3 * len(result.layer_ids) + 2), 4.0), layout="constrained")
        comparison_plot(result, ax=fig.subplots())
    else:
        fig = Figure(figsize=(7.0, 4.0), layout="constrained")
        saturation_plot(result, per_layer=len(result.layer_ids) > 1, ax=fig.subplots())
    path = os.path.join(out, f"{name}.png")
    fig.savefig(path, dpi=120)
    return path
