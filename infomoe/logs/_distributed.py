"""Routing-log analysis on a Dask cluster: per-shard counting as tasks, a tree of additions.

Count tables are sufficient statistics of the report and tables of disjoint
parts of a log add (:class:`~infomoe.logs.LogTables` ``+``), so the
analysis distributes without approximation:

1. one task per shard, :func:`count_shard_for_path`, receives the *path* of
   the log and the shard's index (never its data), memory-maps that shard
   on the worker, streams it in chunks through
   :func:`~infomoe.logs.count_shard` and returns the shard's tables;
2. the tables are summed by a tree of addition tasks (``fan_in`` at a time,
   so no single worker receives every table);
3. the client (:func:`~infomoe.logs.analyze_log` with ``scheduler=``) turns
   the root's tables into a :class:`~infomoe.logs.LogReport` with
   :func:`~infomoe.logs.report_from_tables`.

Every task is a pure function of files that are only ever appended to, so
when a worker dies mid-run Dask recomputes its tasks elsewhere and the
result does not change.  Integer tables are exact whatever the order of
additions; the only floating-point sums (router-probability sums and
router entropies) may differ from the single-process path in the last bits
because the additions are grouped differently.

Dask (``dask`` and ``distributed``, the ``dask`` extra) is imported only
inside this module.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Sequence

from infomoe._validate import check_choice, check_positive_int
from infomoe.logs._tables import ANALYSED_COLUMNS

__all__ = ["count_shard_for_path", "count_log_distributed", "local_cluster", "read_scheduler_file",
           "check_scheduler_reachable"]

#: Tables merged by one addition task.
DEFAULT_FAN_IN = 8

#: Seconds ``infomoe report --scheduler ADDRESS`` waits for the scheduler to answer.
CLI_CONNECT_TIMEOUT = 5.0



# ============================================================================= worker side
@dataclass(frozen=True)
class _ShardFailure:
    """A shard a worker could not read (picklable stand-in for ``ShardError``)."""

    shard: int
    path: str
    reason: str


@functools.lru_cache(maxsize=8)
def _open_cached(path: str, verify: bool, mtime_ns: int, size: int):
    """The log at `path`, opened once per worker process and manifest version."""
    from infomoe.logs._reader import open_log

    return open_log(path, verify=verify)


def _open_on_worker(path: str, verify: bool):
    from infomoe.logs._manifest import MANIFEST_NAME

    st = os.stat(os.path.join(path, MANIFEST_NAME))
    return _open_cached(path, bool(verify), st.st_mtime_ns, st.st_size)


def count_shard_for_path(path, shard: int, *, spec, columns: Sequence[str] = (),
                         chunk_tokens: int = 1 << 16, verify: bool = False,
                         num_threads: Optional[int] = 1, expected_path: Optional[str] = None):
    """Count tables of one shard of the log at `path` (the task a Dask worker runs).

    Parameters
    ----------
    path : str or os.PathLike
        The log directory, as the worker sees it (a shared file system).
    shard : int
        Index of the shard in the manifest (token shard or count record).
    spec : CountSpec
        What to count (from :meth:`CountSpec.from_manifest`).
    columns : sequence of str
        Token columns to read (a subset of those the log has); ignored for
        count records.
    chunk_tokens : int, default 2**16
        Tokens per chunk: worker memory is the tables plus one chunk.
    verify : bool, default False
        Verify the shard's checksums before counting.
    num_threads : int or None, default 1
        numba threads of the counting kernels during the task (restored
        afterwards); None keeps the worker's setting.  One thread per
        single-threaded worker process is the efficient layout.
    expected_path : str, optional
        The shard's directory as the client saw it in the manifest; a
        mismatch (the log was replaced) is reported as a failure.

    Returns
    -------
    LogTables or _ShardFailure
        The shard's tables, or a record of why the shard could not be read
        (the client raises or warns, following ``on_error``).

    Notes
    -----
    Pure: the result depends only on the shard's bytes, so a task that is
    re-run after a worker failure returns the same tables.
    """
    from infomoe.logs._tables import LogTables, count_shard
    from infomoe.logs._manifest import ShardError

    path = os.fspath(path)
    try:
        log = _open_on_worker(path, verify)
        if shard >= len(log.shards):
            return _ShardFailure(shard, expected_path or "?",
                                 "not in the manifest the worker read (log replaced?)")
        rec = log.shards[shard]
        if expected_path is not None and rec.path != expected_path:
            return _ShardFailure(shard, expected_path,
                                 f"the worker's manifest names {rec.path!r} (log replaced?)")
        lids = [s.layer_id for s in spec.layers]
        total = LogTables.zeros(spec)
        if rec.kind == "tokens":
            if not columns:
                return total
            chunks = log.iter_chunks(lids, list(columns), chunk_tokens, shards=[shard])
        else:
            chunks = log.iter_chunks(lids, kind=rec.kind, shards=[shard])
        with _numba_threads(num_threads):
            for chunk in chunks:
                total = total + count_shard(chunk, spec=spec)
        return total
    except ShardError as exc:
        prefix = f"shard {exc.shard} ({exc.path}): "
        msg = str(exc)
        msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        return _ShardFailure(exc.shard, exc.path, msg)


@contextmanager
def _numba_threads(n: Optional[int]):
    if n is None:
        yield
        return
    import numba

    restore = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(restore)


def _merge(*parts):
    """Sum of tables; failures are collected into a tuple beside the sum."""
    total, failures = None, []
    for p in parts:
        if isinstance(p, tuple):  # an already merged (tables, failures) pair
            t, f = p
            failures.extend(f)
        elif isinstance(p, _ShardFailure):
            t = None
            failures.append(p)
        else:
            t = p
        if t is not None:
            total = t if total is None else total + t
    return total, tuple(failures)


# ============================================================================= client side
def local_cluster(n_workers: Optional[int] = None):
    """A ``distributed.LocalCluster`` of single-threaded worker processes suited to counting.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: one per CPU core).

    Returns
    -------
    distributed.LocalCluster
        Use it as a context manager, or close it.

    Notes
    -----
    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), which also switches off
    glibc's adaptive mmap threshold: every count table of a few MB is then
    mapped and page-faulted afresh.  Measured on the 2-core development
    machine, counting a 25,000-token shard (4 layers, 64 experts) took
    about 3x longer in such a worker than in a plain process (31 ms
    against 10 ms).  The cluster made
    here keeps the other variables (``OMP_NUM_THREADS=1``...) and leaves
    the malloc ones out; on your own cluster, drop
    ``MALLOC_TRIM_THRESHOLD_`` from that configuration key.
    """
    import dask
    from distributed import LocalCluster

    n = (os.cpu_count() or 1) if n_workers is None else check_positive_int(n_workers, "n_workers")
    env = dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                            dashboard_address=":0")


def _is_scheduler_file(s: str) -> bool:
    return s.endswith(".json") or os.path.isfile(s)


def read_scheduler_file(path) -> str:
    """The scheduler address in a Dask scheduler file (as written by ``dask scheduler``, dask-mpi...).

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file (``{"address": "tcp://host:port", ...}``).

    Returns
    -------
    str
        The address.

    Raises
    ------
    FileNotFoundError
        When there is no such file (Dask itself would wait for it to appear).
    ValueError
        When it is not JSON holding an ``"address"`` string.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from infomoe.logs._distributed import read_scheduler_file
    >>> f = os.path.join(tempfile.mkdtemp(), "scheduler.json")
    >>> with open(f, "w") as fh:
    ...     json.dump({"type": "Scheduler", "address": "tcp://10.0.0.5:8786"}, fh)
    >>> read_scheduler_file(f)
    'tcp://10.0.0.5:8786'
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"scheduler file {path!r} does not exist (the scheduler writes it when started with "
            f"`dask scheduler --scheduler-file {path}`, or by dask-mpi / dask-jobqueue)")
    try:
        with open(path, "rb") as f:
            info = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise ValueError(f"scheduler file {path!r} is not JSON: {exc}") from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str) or not address:
        raise ValueError(f"scheduler file {path!r} holds no \"address\" of a Dask scheduler")
    return address


def check_scheduler_reachable(address: str, timeout: float = CLI_CONNECT_TIMEOUT) -> None:
    """Open (and close) a TCP connection to a scheduler address, to fail fast when none listens.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` (also ``tls://``, ``ws://``, ``wss://``, or a bare
        ``host:port``).  Other protocols (``inproc://``, ``ucx://``) are not
        checked.
    timeout : float, default :data:`CLI_CONNECT_TIMEOUT`
        Seconds to wait for the connection.

    Raises
    ------
    ValueError
        When the address has no port number (or an invalid one).
    OSError
        When nothing accepts a connection there within `timeout`
        (``ConnectionRefusedError``, ``TimeoutError``, an unknown host...).

    Notes
    -----
    Dask's own client retries the connection until
    ``distributed.comm.timeouts.connect`` (30 s by default) has passed; a
    single socket connection answers at once for a closed port.

    Examples
    --------
    >>> import socket
    >>> from infomoe.logs._distributed import check_scheduler_reachable
    >>> server = socket.create_server(("127.0.0.1", 0))
    >>> check_scheduler_reachable(f"tcp://127.0.0.1:{server.getsockname()[1]}")
    >>> server.close()
    """
    from urllib.parse import urlsplit

    protocol, sep, rest = address.partition("://")
    if not sep:
        protocol, rest = "tcp", address
    if protocol not in ("tcp", "tls", "ws", "wss"):
        return
    where = urlsplit("//" + rest)
    try:
        port = where.port
    except ValueError:
        port = -1
    if port is None or port < 0 or not where.hostname:
        raise ValueError(f"scheduler address {address!r} needs a host and a port number, "
                         "e.g. tcp://10.0.0.5:8786 (8786 is the Dask default)")
    socket.create_connection((where.hostname, port), timeout=timeout).close()


def _client(scheduler, n_workers, stack, connect_timeout=None):
    """A ``distributed.Client`` for `scheduler`; what this call opens is closed by `stack`."""
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    if isinstance(scheduler, str) and scheduler == "local":
        cluster = stack.enter_context(local_cluster(n_workers))
        return stack.enter_context(Client(cluster, set_as_default=False))
    if hasattr(scheduler, "scheduler_address"):  # a cluster object (LocalCluster, SLURMCluster...)
        return stack.enter_context(Client(scheduler, set_as_default=False))
    if isinstance(scheduler, (str, os.PathLike)):
        s = os.fspath(scheduler)
        kw = {} if connect_timeout is None else {"timeout": connect_timeout}
        if _is_scheduler_file(s):  # dask-mpi / dask-jobqueue scheduler file
            read_scheduler_file(s)  # Dask would wait for a missing file, then fail obscurely
            return stack.enter_context(Client(scheduler_file=s, set_as_default=False, **kw))
        return stack.enter_context(Client(s, set_as_default=False, **kw))
    raise TypeError("`scheduler` must be None, 'local', a scheduler address ('tcp://host:8786'), "
                    "a scheduler-file path (.json), a dask cluster or a distributed.Client; "
                    f"got {type(scheduler).__name__}.")


def count_log_distributed(log, spec, client, *, chunk_tokens: int = 1 << 16,
                          on_error: str = "raise", fan_in: int = DEFAULT_FAN_IN,
                          num_threads: Optional[int] = 1, progress: bool = False):
    """Count tables of a whole log on a Dask cluster (one task per shard, a tree of sums).

    Parameters
    ----------
    log : RoutingLog
        The log; its directory must be readable by every worker at the same
        path (a shared file system).
    spec : CountSpec
        What to count.
    client : distributed.Client
        The cluster to run on.
    chunk_tokens : int, default 2**16
        Tokens per chunk inside a task.
    on_error : {"raise", "skip"}, default "raise"
        A shard a worker cannot read (missing, truncated, corrupted): raise
        a :class:`~infomoe.logs.ShardError` naming it, or warn
        (``RuntimeWarning``) and count the others.
    fan_in : int, default 8
        Tables merged by one addition task.
    num_threads : int or None, default 1
        numba threads per task (see :func:`count_shard_for_path`).
    progress : bool, default False
        tqdm progress bar over tokens, advanced as shard tasks finish.

    Returns
    -------
    LogTables
        The sum of the tables of every shard.

    Notes
    -----
    Tasks carry ``(path, shard index, spec)``, never data, and return
    tables whose size does not grow with the log.  The reduction tree has
    depth ``ceil(log_fan_in(shards))``.
    """
    from distributed import as_completed

    from infomoe._progress import progress_bar
    from infomoe.logs._tables import LogTables
    from infomoe.logs._manifest import ShardError

    check_choice(on_error, "on_error", ("raise", "skip"))
    chunk_tokens = check_positive_int(chunk_tokens, "chunk_tokens")
    fan_in = check_positive_int(fan_in, "fan_in")
    if num_threads is not None:
        num_threads = check_positive_int(num_threads, "num_threads")
    if fan_in < 2:
        raise ValueError(f"`fan_in` must be at least 2, got {fan_in}.")
    path = os.path.abspath(log.path)
    cols = tuple(c for c in log.columns if c in ANALYSED_COLUMNS)
    run = uuid.uuid4().hex[:12]
    leaves = [client.submit(count_shard_for_path, path, s.index, spec=spec, columns=cols,
                            chunk_tokens=chunk_tokens, verify=log.verify, num_threads=num_threads,
                            expected_path=s.path,
                            key=f"infomoe-count-shard-{run}-{s.index}", pure=False)
              for s in log.shards]
    rows = {f.key: s.rows if s.kind == "tokens" else 0 for f, s in zip(leaves, log.shards)}
    level, depth = leaves, 0
    while len(level) > 1 or depth == 0:
        level = [client.submit(_merge, *level[j:j + fan_in],
                               key=f"infomoe-merge-tables-{run}-{depth}-{j // fan_in}",
                               pure=False)
                 for j in range(0, len(level), fan_in)]
        depth += 1
    root = level[0]
    # only the root and the not-yet-reported leaves are held: a shard's tables are
    # freed on its worker as soon as they have been merged
    pending = as_completed(leaves, loop=client.loop)
    del leaves, level
    bar = progress_bar(enabled=progress, desc="report (dask)", total=log.num_tokens, unit="tok", unit_scale=True)
    try:
        for fut in pending:
            bar.update(rows.pop(fut.key, 0))
        tables, failures = root.result()
    except BaseException:
        client.cancel([root])
        raise
    finally:
        bar.close()
    for f in failures:
        exc = ShardError(f.shard, f.path, f.reason)
        if on_error == "raise":
            raise exc
        warnings.warn(f"skipping {exc}", RuntimeWarning, stacklevel=2)
    return LogTables.zeros(spec) if tables is None else tables
