r"""The one driver of the routing-log analysis: count the log's shards, then report.

:func:`analyze_log` opens the log, builds the :class:`~infomoe.logs.CountSpec`,
counts every shard into :class:`~infomoe.logs.LogTables`
(:mod:`infomoe.logs._tables`) either in this process or as Dask tasks
(:mod:`infomoe.logs._distributed`), and turns the merged tables into a
:class:`~infomoe.logs.LogReport` (:mod:`infomoe.logs._report`).  Both paths
count the same tables, so the report is the same whichever runs.
"""

from __future__ import annotations

from typing import Optional, Sequence

from infomoe._progress import progress_bar
from infomoe._validate import check_base, check_choice, check_positive_int
from infomoe.logs._report import MI_ESTIMATORS, report_from_tables
from infomoe.logs._tables import ANALYSED_COLUMNS, CountSpec, _Accumulator

__all__ = ["analyze_log", "analyze_log_distributed", "DEFAULT_CHUNK_TOKENS"]

#: Tokens per chunk, in this process and inside each Dask task.
DEFAULT_CHUNK_TOKENS = 1 << 16


def analyze_log(log, *, layers=None, estimator: str = "shuffle", base: float = 2,
                token_buckets: Optional[int] = None, position_edges: Optional[Sequence[int]] = None,
                label_buckets: Optional[int] = None, max_set_alphabet: Optional[int] = None,
                expert_space: str = "logical", intervals: bool = True, permutations: int = 50,
                groups: Optional[int] = None, alpha: float = 0.05, seed: int = 0, capacity_factor: float = 1.25,
                expert_placement=None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                on_error: str = "raise", verify: Optional[bool] = None,
                num_threads: Optional[int] = 1, progress: bool = False,
                scheduler=None, n_workers: Optional[int] = None, fan_in: int = 8,
                connect_timeout: Optional[float] = None):
    """Stream a routing log once and report load balance, health and information per layer.

    Parameters
    ----------
    log : RoutingLog or path
        The log (a path is opened with :func:`open_log`).
    layers : sequence of int, optional
        Layer ids to analyse (default all).
    estimator : str, default "shuffle"
        Estimator of the mutual informations: ``"shuffle"`` (plug-in minus
        the mean of its permutation null, chosen as the default from the
        bias measured on tables of routing shape; see
        :func:`~infomoe.logs.report_from_tables`) or any of
        :data:`infomoe.ESTIMATORS`.  Entropies of the top-k set use NSB
        when ``"shuffle"`` is chosen.
    base : float, default 2
        Logarithm base (2: bits).
    token_buckets : int, optional
        Token ids are counted modulo this many buckets, bounding the table
        at ``token_buckets x E`` per layer; exact when all ids are smaller
        (the report says how many were folded).  Default 2048, or the
        setting the log's count tables were recorded with (a recorder in
        counts mode); likewise for the next four settings.
    position_edges : sequence of int, optional
        Position bucket edges; default powers of two.
    label_buckets : int, optional
        As `token_buckets`, for labels (default 1024).
    max_set_alphabet : int, optional
        Count top-k sets only where ``C(E, k)`` is at most this (default 2**18).
    expert_space : {"logical", "as_logged"}
        See :meth:`CountSpec.from_manifest`.
    intervals : bool, default True
        Intervals from a delete-one-group jackknife over groups of sequences.
    permutations : int, default 50
        Permutations of the expert ids within each layer for the null of
        every mutual information (0: no null, no significance).
    groups : int, optional
        Default 64.  Sequences are hashed into this many groups, the resampling units of
        the intervals (tokens of one sequence are dependent, so they are
        resampled together).
    alpha : float, default 0.05
        Family-wise level of the significance marks (Holm over the table).
    seed : int, default 0
        Seed of the permutations.
    capacity_factor : float, default 1.25
        Capacity of an expert, as a multiple of the balanced load, for the
        oversubscription measures.
    expert_placement : int or dict or array, optional
        Expert-parallel placement for the rank balancedness: a number of
        ranks (experts placed contiguously), an ``(E,)`` array of rank ids,
        or a dict ``{layer_id: array}``.
    chunk_tokens : int, default 2**16
        Tokens per chunk: memory is the tables plus one chunk.
    on_error : {"raise", "skip"}
        For corrupted shards, as in :meth:`RoutingLog.iter_chunks`.
    verify : bool, optional
        Verify shard checksums (default: the log's setting).
    num_threads : int or None, default 1
        numba threads used by the counting kernels (restored afterwards);
        None keeps numba's setting.  One thread is the default because the
        analysis makes many calls of moderate size (two threads measured 8x
        slower on a loaded 2-core machine); parallelism across shards (Dask)
        is the way to scale.
    progress : bool, default False
        Show a progress bar on stderr (``infomoe report`` shows one unless
        ``--no-progress``).
    scheduler : None, "local", str, cluster or distributed.Client, optional
        None (default) counts in this process.  Otherwise each shard is
        counted by a Dask task (:func:`~infomoe.logs._distributed.count_log_distributed`):
        ``"local"`` starts a ``LocalCluster`` of `n_workers` for this call; a
        scheduler address or scheduler file connects to a running cluster; a
        cluster or ``Client`` is used as it is.  The report is the same.
    n_workers : int, optional
        Workers of the local cluster when ``scheduler="local"``.
    fan_in : int, default 8
        Tables merged per addition task of the Dask reduction tree.
    connect_timeout : float, optional
        Seconds to wait for a scheduler given by address or file.

    Returns
    -------
    LogReport

    Notes
    -----
    The counting convention for top-k routing is in :mod:`infomoe.logs._tables`;
    the formulas, intervals and nulls are in :func:`report_from_tables`.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, analyze_log
    >>> rng = np.random.default_rng(0)
    >>> tok = rng.integers(0, 8, 4000)
    >>> ids = np.stack([tok % 4, (tok + 1) % 4], axis=1)[:, None, :]  # expert set = f(token)
    >>> d = os.path.join(tempfile.mkdtemp(), "log")
    >>> r = analyze_log(write_log(d, ids, num_experts=4, token_id=tok))
    >>> round(float(r.normalized_entropy[0]), 2), round(float(r.mi_token[0]), 2)
    (1.0, 1.0)
    >>> bool(r.significant["mi_token"][0]), r.info_cell("mi_token", 0)
    (True, '0.998±0.000*')
    """
    from infomoe.logs._reader import RoutingLog, open_log

    distributed = not (scheduler is None or (isinstance(scheduler, str) and scheduler.lower() == "none"))
    if not isinstance(log, RoutingLog):
        log = open_log(log, verify=bool(verify))
    elif verify is not None and bool(verify) != log.verify:
        log = RoutingLog(log.path, log.manifest, verify=bool(verify))
    check_choice(estimator, "estimator", MI_ESTIMATORS)
    check_base(base)
    check_choice(on_error, "on_error", ("raise", "skip"))
    chunk_tokens = check_positive_int(chunk_tokens, "chunk_tokens")
    if num_threads is not None:
        num_threads = check_positive_int(num_threads, "num_threads")
    recorded = _recorded_spec(log)
    settings = dict(token_buckets=token_buckets, position_edges=position_edges, label_buckets=label_buckets,
                    max_set_alphabet=max_set_alphabet, groups=groups)
    for name, value in settings.items():
        if value is None and recorded is not None:
            settings[name] = getattr(recorded, name)
    defaults = dict(token_buckets=2048, label_buckets=1024, max_set_alphabet=1 << 18, groups=64)
    settings = {k: defaults.get(k) if v is None else v for k, v in settings.items()}
    spec = CountSpec.from_manifest(log.manifest, layers=layers, expert_space=expert_space, **settings)
    report_options = dict(estimator=estimator, base=base, manifest=log.manifest, expert_space=expert_space,
                          intervals=intervals, permutations=permutations, alpha=alpha, seed=seed,
                          capacity_factor=capacity_factor, expert_placement=expert_placement)
    report_from_tables(None, spec, check_only=True, **report_options)  # bad options fail before counting
    if not log.shards:
        raise ValueError(f"routing log {log.path!r} has no committed shards; nothing to analyse.")
    if distributed:
        from contextlib import ExitStack

        from infomoe.logs._distributed import _client, count_log_distributed

        with ExitStack() as stack:
            client = _client(scheduler, n_workers, stack, connect_timeout)
            total = count_log_distributed(log, spec, client, chunk_tokens=chunk_tokens, on_error=on_error,
                                          fan_in=fan_in, num_threads=num_threads, progress=progress)
    else:
        total = _count_locally(log, spec, chunk_tokens=chunk_tokens, on_error=on_error,
                               num_threads=num_threads, progress=progress)
    if total.tokens == 0 and not total.record_pairs.any():
        raise ValueError(f"routing log {log.path!r} has no valid tokens or counts to analyse.")
    return report_from_tables(total, spec, **report_options)


def _recorded_spec(log):
    """The CountSpec of the log's first tables record (counts mode), or None; only its spec is read."""
    from infomoe.logs._tables import stored_spec

    for s in log.shards:
        if s.kind == "tables":
            files = log._open_files(s, None, None, verify=log.verify)  # maps only: nothing but the spec is read
            return stored_spec({"spec": files["spec"].array})
    return None


def _count_locally(log, spec, *, chunk_tokens, on_error, num_threads, progress):
    """Fold every chunk of `log` into one accumulator (memory: the tables plus one chunk)."""
    from infomoe.logs._distributed import _numba_threads

    lids = [s.layer_id for s in spec.layers]
    cols = [c for c in log.columns if c in ANALYSED_COLUMNS]
    acc = _Accumulator(spec)
    bar = progress_bar(enabled=progress, desc="report", total=log.num_tokens, unit="tok", unit_scale=True)
    try:
        with _numba_threads(num_threads):
            if cols:
                for chunk in log.iter_chunks(lids, cols, chunk_tokens, on_error=on_error):
                    acc.count(chunk)
                    bar.update(next(iter(chunk["expert_ids"].values())).shape[0])
                    del chunk
            for kind in ("counts", "tables"):
                for chunk in log.iter_chunks(lids, kind=kind, on_error=on_error):
                    acc.count(chunk)
    finally:
        bar.close()
    return acc.result()


def analyze_log_distributed(log, *, scheduler="local", **options):
    """Deprecated: :func:`analyze_log` with ``scheduler=`` (default ``"local"``) is the one driver.

    Examples
    --------
    >>> import warnings
    >>> from infomoe.logs import analyze_log_distributed
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     analyze_log_distributed("/nonexistent/log")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    """
    import warnings

    warnings.warn("analyze_log_distributed is deprecated; call analyze_log(log, scheduler=...) instead",
                  DeprecationWarning, stacklevel=2)
    return analyze_log(log, scheduler=scheduler, **options)
