"""Plug-in (conditional) mutual information straight from label arrays (numba).

:func:`infomoe.mutual_information` with the plug-in estimator, two label
arrays, no weights and many samples per table cell comes here instead of
building the ``int64`` contingency table: each worker counts its share of the
pairs into a private ``uint8`` table (the kernel of :mod:`infomoe._counting`,
with its log of counters that wrapped past 255), and one pass over those
small tables evaluates

.. math::

    N\\,\\hat I = \\sum_a \\Big(\\sum_b n_{ab}\\ln n_{ab} - n_a \\ln n_a\\Big)
                 - \\Big(\\sum_b n_b \\ln n_b - N \\ln N\\Big)

with :math:`c \\ln c` read from a lookup table for counts below
:data:`_LOOKUP` (almost every cell) and the counts of wrapped cells rebuilt
from the logs.  The ``int64`` table (16 MB for 32,000 x 64) is never
written, which is where the time of the two-step path went: measured on the
2-core development machine (``benchmarks/bench_mi.py``, 2e7 ``int64`` pairs,
32,000 x 64) this path takes 19-21 ms (counting 17-19 ms of it, the pass
over the tables 1.3 ms per core) against 37-39 ms for counting the table
and then evaluating the plug-in on it.

:func:`infomoe.conditional_mutual_information` comes here too: its rows are
``z * kx + x`` (counted from the three arrays, no index array), and
:math:`N\\hat I(X;Y|Z)` subtracts :math:`\\sum_z(\\sum_y n_{zy}\\ln n_{zy} -
n_z\\ln n_z)` instead of the single column term.

The value is a difference of entropies, so it carries a rounding error of a
few ulps of :math:`H(Y)` (about 1e-15 of it, against 1e-16 of
:math:`\\hat I` for the ratio form of :func:`mutual_information_table`); it
is used only from :data:`_MIN_SAMPLES` samples on, where that is far below
the estimator's own standard error.  The result does not depend on the
number of threads: counts are exact integers and the row blocks are summed
in a fixed order.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from infomoe import _counting as C
from infomoe._validate import check_same_length

#: Counts below this have ``c ln c`` read from a table (computed once).
_LOOKUP = 4096

#: The fused path is used from this many samples on (below it the two-step
#: path is fast anyway and gives the ratio-form value, exact to the last ulp
#: on small closed-form cases).
_MIN_SAMPLES = C._MIN_PARALLEL

#: The MI pass sums row blocks of this many rows in block order (a fixed
#: order, so the value does not depend on the number of threads).
_ROWS_PER_BLOCK = 2048

_XLOGX: Optional[np.ndarray] = None


def _xlogx_table() -> np.ndarray:
    """``c * ln(c)`` for ``c = 0 .. _LOOKUP - 1`` (0 at c = 0)."""
    global _XLOGX
    if _XLOGX is None:
        c = np.arange(_LOOKUP, dtype=np.float64)
        f = np.zeros(_LOOKUP)
        f[1:] = c[1:] * np.log(c[1:])
        _XLOGX = f
    return _XLOGX


def _wraps_by_row(logs, nlogs, kx: int, ky: int):
    """All logged wrap-arounds, grouped by row.

    Returns ``(start, cells)``: the cells that wrapped in row ``a`` are
    ``cells[start[a]:start[a + 1]]`` (a cell appears once per wrap).  In
    numpy, not numba: there are at most ``samples / 256`` entries, and a
    numba kernel with array allocations cost 0.6-0.9 s to compile on a cold
    cache (``benchmarks/bench_cold.py``).
    """
    cells = np.concatenate([logs[w, :nlogs[w]] for w in range(logs.shape[0])])
    rows = cells // ky
    order = np.argsort(rows, kind="stable")
    start = np.zeros(kx + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=kx), out=start[1:])
    return start, cells[order]


@C.kernel
def _row_terms(tables, start, cells, ky, r0, r1, xlogx, col, row):
    """``sum_a (sum_b c ln c - n_a ln n_a)`` over rows ``r0 <= a < r1``.

    Adds each column's count into ``col`` (``int64``, length ``ky``); ``row``
    is an ``int64`` scratch array of length ``ky``.  Rows without a wrapped
    counter (almost all) take a fast path for one or two tables, where every
    count is below 512 and so in the lookup table.  The kernel allocates and
    slices nothing (that cost 0.3 s more to compile on a cold cache).
    """
    nt = tables.shape[0]
    nlook = xlogx.shape[0]
    total = 0.0
    for a in range(r0, r1):
        base = a * ky
        s = 0.0
        na = 0
        if start[a] == start[a + 1] and nt <= 2:
            if nt == 2:
                for b in range(ky):
                    c = np.int64(tables[0, base + b]) + np.int64(tables[1, base + b])
                    s += xlogx[c]
                    na += c
                    col[b] += c
            else:
                for b in range(ky):
                    c = np.int64(tables[0, base + b])
                    s += xlogx[c]
                    na += c
                    col[b] += c
        else:
            for b in range(ky):
                row[b] = tables[0, base + b]
            for w in range(1, nt):
                for b in range(ky):
                    row[b] += tables[w, base + b]
            for e in range(start[a], start[a + 1]):
                row[cells[e] - base] += 256
            for b in range(ky):
                c = row[b]
                s += xlogx[c] if c < nlook else c * math.log(c)
                na += c
                col[b] += c
        if na > 0:
            total += s - na * math.log(na)
    return total


def plugin_mi_nats(x, y, kx: Optional[int], ky: Optional[int]) -> Optional[tuple[float, int, int, int]]:
    """Plug-in I(X;Y) in nats of two label arrays, or None when not worth it.

    Returns ``(value, n, kx, ky)``; None (nothing counted) when the inputs are
    not two arrays or have fewer than :data:`_MIN_SAMPLES` pairs or fewer
    than 1/8 pair per table cell, where :func:`infomoe.contingency` and the
    table estimator are the better route.  Labels are validated exactly as
    :func:`infomoe.contingency` does (same errors).
    """
    names = (("x", "kx"), ("y", "ky"))
    if C._is_chunks(x) or C._is_chunks(y):
        return None
    xa = C._label_array(x, "x")
    ya = C._label_array(y, "y")
    check_same_length(xa, ya, "x", "y")
    n = xa.shape[0]
    if n < _MIN_SAMPLES:  # decided before the sizes are inferred (a pass over the labels)
        return None
    kx_, ky_ = C._sizes_for(xa, ya, C._declared_size(kx, "kx"), C._declared_size(ky, "ky"), names)
    if not _worth_fusing(n, kx_ * ky_):
        return None
    return _fused_nats(xa, ya, None, 1, kx_, ky_, names), n, kx_, ky_


def plugin_cmi_nats(x: np.ndarray, y: np.ndarray, z: np.ndarray, kz: int, kx: int,
                    ky: int) -> Optional[float]:
    """Plug-in I(X;Y|Z) in nats of checked label arrays (every label already
    known to be below its alphabet size), or None when not worth it (the
    same rule as :func:`plugin_mi_nats`)."""
    if not _worth_fusing(x.shape[0], kz * kx * ky):
        return None
    return _fused_nats(x, y, z, kz, kx, ky, (("x", "kx"), ("y", "ky")))


def _worth_fusing(n: int, m: int) -> bool:
    """Enough samples, and enough per cell of an ``m``-cell table, for the fused path."""
    return n >= _MIN_SAMPLES and n >= C._SAMPLES_PER_CELL_FOR_PRIVATE * m


def _fused_nats(x, y, z, kz: int, kx: int, ky: int, names) -> float:
    """Count ``(z, x, y)`` cells into uint8 tables and sum the plug-in from them.

    ``N I(X;Y|Z) = sum_{zx} (sum_y c ln c - n_zx ln n_zx)
    - sum_z (sum_y n_zy ln n_zy - n_z ln n_z)``; with ``z`` None (``kz = 1``)
    that is ``N I(X;Y)``.  Rows of the tables are ``z * kx + x``.
    """
    n = x.shape[0]
    rows_total = kz * kx
    m = rows_total * ky
    nt = C._num_threads() if m <= C._MAX_THREAD_TABLE_BYTES else 1
    uz = None if z is None else np.uint64(kz)
    with C._zeroed_tables(nt, m) as tables:
        logs, nlogs, bad = C._scatter_private(x, y, np.uint64(kx), np.uint64(ky), tables, z, uz)
        if bad:
            C._raise_for_bad_pairs(x, y, kx, ky, names)
        start, cells = _wraps_by_row(logs, nlogs, rows_total, ky)
        del logs
        xlogx = _xlogx_table()
        per_z = -(-kx // _ROWS_PER_BLOCK)          # row blocks never straddle two values of z
        nb = kz * per_z
        parts = np.zeros(nb)
        cols = np.zeros((nt, kz, ky), np.int64)    # n_zy, per worker
        scratch = np.empty((nt, ky), np.int64)      # one row buffer per worker

        def rows(w, b):
            zz, i = divmod(b, per_z)
            r0 = zz * kx + i * _ROWS_PER_BLOCK
            r1 = zz * kx + min((i + 1) * _ROWS_PER_BLOCK, kx)
            parts[b] = _row_terms(tables, start, cells, ky, r0, r1, xlogx, cols[w, zz], scratch[w])

        C._run_blocks(rows, nb, nt)
    col = cols.sum(axis=0)                         # (kz, ky)
    assert int(col.sum()) == n  # every sample was counted exactly once
    cf = col.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(col > 0, cf * np.log(np.where(col > 0, cf, 1.0)), 0.0).sum(axis=1)
    nzs = cf.sum(axis=1)
    zlogz = np.where(nzs > 0, nzs * np.log(np.where(nzs > 0, nzs, 1.0)), 0.0)
    value = (float(parts.sum()) - float((ylogy - zlogz).sum())) / n
    # plug-in (C)MI is >= 0 (Gibbs): a negative value is rounding, of order
    # 1e-16 * H * sqrt(rows) nats; anything far below zero would be a bug
    if value < -1e-9:
        raise AssertionError(f"fused plug-in gave {value!r} nats < 0")  # pragma: no cover
    return max(value, 0.0)
