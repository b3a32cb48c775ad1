"""The ``infomoe`` command line: ``infomoe demo [router] | report | compare | export``.

Each subcommand lives beside the code it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func``; this module
only wires them together, importing each lazily so ``infomoe --help`` is fast.

A mistake of the user (a bad option value, a missing extra, an output
directory that cannot be written...) is raised as :class:`UsageError`;
:func:`main` prints it as one line, ``infomoe <command>: error: <message>``,
and returns exit status 2, the status of an ``argparse`` error.  Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["UsageError", "build_parser", "check_output_dir", "main", "require_extra"]

# subcommand -> module with register(subparsers)
_COMMANDS = {
    "demo": "infomoe.bank._cli",
    "report": "infomoe.logs._cli",
    "export": "infomoe.logs.export._cli",
    "compare": "infomoe.logs._compare_cli",
}


class UsageError(Exception):
    """A mistake on the command line: :func:`main` prints it as one line and exits with status 2.

    Examples
    --------
    >>> from infomoe.cli import UsageError
    >>> str(UsageError("--tokens must be positive, got 0"))
    '--tokens must be positive, got 0'
    """


def require_extra(module: str, extra: str, purpose: str):
    """Import `module`, or raise :class:`UsageError` saying which extra to install.

    Parameters
    ----------
    module : str
        Module to import (``"torch"``, ``"distributed"``...).
    extra : str
        The extra of infomoe that provides it (``"torch"``, ``"dask"``).
    purpose : str
        What needs it, for the message (``"infomoe export"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    UsageError
        When `module`, or a module it imports, is not installed.  Other
        import failures (a broken installation) propagate unchanged.

    Notes
    -----
    infomoe is installed from its source checkout (it is not on a package
    index), so the command given is ``pip install ".[EXTRA]"``.

    Examples
    --------
    >>> from infomoe.cli import require_extra
    >>> require_extra("json", "none", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise UsageError(
            f"{purpose} needs {module} (the {extra!r} extra), but {missing} is not installed: "
            f"run pip install \".[{extra}]\" in the infomoe checkout") from None


def check_output_dir(path, option: str = "--out") -> str:
    """Check that the directory `path` exists and is writable, or can be created.

    Run before any computation, so that a result is never computed only to
    be lost.  Nothing is created.

    Parameters
    ----------
    path : str or os.PathLike
        The output directory.
    option : str, default "--out"
        The option that gave it, for the message.

    Returns
    -------
    str
        `path` as a string.

    Raises
    ------
    UsageError
        When `path` is a file, lies under a file, or its nearest existing
        directory is not writable.

    Examples
    --------
    >>> import tempfile, os
    >>> from infomoe.cli import check_output_dir
    >>> d = tempfile.mkdtemp()
    >>> check_output_dir(os.path.join(d, "new", "report")) == os.path.join(d, "new", "report")
    True
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a file, not a directory")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):  # the nearest existing ancestor is where it would be created
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UsageError(f"{option} {path!r} cannot be created: {probe!r} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == os.path.abspath(path) else \
            f"cannot be created: {probe!r} is not writable"
        raise UsageError(f"{option} {path!r} {what}")
    _try_writing(path, probe, option)
    return path


def _try_writing(path: str, existing: str, option: str) -> None:
    """Create (then remove) what the command would create, so that file systems that refuse writes
    whatever the permission bits say (read-only mounts, /proc, root's squashed NFS) are caught now."""
    import tempfile

    target = os.path.abspath(path)
    made = []
    try:
        d = existing
        for part in os.path.relpath(target, existing).split(os.sep):
            if part in ("", os.curdir):
                continue
            d = os.path.join(d, part)
            os.mkdir(d)
            made.append(d)
        fd, tmp = tempfile.mkstemp(prefix=".infomoe-write-test-", dir=target)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"{option} {path!r} cannot be written: {exc.strerror or exc}") from None
    finally:
        for d in reversed(made):
            try:
                os.rmdir(d)
            except OSError:  # pragma: no cover - best effort
                pass


def build_parser() -> argparse.ArgumentParser:
    from infomoe import __version__

    parser = argparse.ArgumentParser(
        prog="infomoe",
        description="Information-theoretic analysis of Mixture-of-Experts routing.")
    parser.add_argument("--version", action="version", version=f"infomoe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen = set()
    for module_name in _COMMANDS.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # subcommand not built yet / optional extra missing
            continue
        module.register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    """Run the ``infomoe`` command line with `argv` (default ``sys.argv[1:]``); return the exit status.

    A :class:`UsageError`, or a ``ValueError``, ``TypeError`` or
    ``FileNotFoundError`` raised by infomoe's input checks, is printed to
    stderr as one line, ``infomoe <command>: error: <message>``, and gives
    status 2; other exceptions propagate with their traceback.

    Examples
    --------
    >>> from infomoe.cli import main
    >>> main(["report", "no-such.log", "--out", "rep"])  # the error line goes to stderr
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"infomoe {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    # `python -m infomoe.cli`: run the imported module's main, whose UsageError is the one
    # the subcommands raise (this file, run as __main__, defines a second class of that name)
    from infomoe.cli import main as _main

    sys.exit(_main())
