"""Plug-in mutual information straight from two label arrays (numba).

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

import numba
import numpy as np
from numba import njit

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


@njit(nogil=True, cache=True)
def _wraps_by_row(logs, nlogs, kx, ky):
    """Counting sort of all logged wrap-arounds by row.

    Returns ``(start, cells)``: the cells that wrapped in row ``a`` are
    ``cells[start[a]:start[a + 1]]`` (a cell appears once per wrap).
    """
    start = np.zeros(kx + 1, np.int64)
    for w in range(logs.shape[0]):
        for e in range(nlogs[w]):
            start[logs[w, e] // ky + 1] += 1
    for a in range(kx):
        start[a + 1] += start[a]
    pos = start[:-1].copy()
    cells = np.empty(start[kx], np.int64)
    for w in range(logs.shape[0]):
        for e in range(nlogs[w]):
            j = logs[w, e]
            r = j // ky
            cells[pos[r]] = j
            pos[r] += 1
    return start, cells


@njit(nogil=True, cache=True)
def _row_terms(tables, start, cells, ky, r0, r1, xlogx, col):
    """``sum_a (sum_b c ln c - n_a ln n_a)`` over rows ``r0 <= a < r1``.

    Adds each column's count into ``col`` (``int64``, length ``ky``).  Rows
    without a wrapped counter (almost all) take a fast path for one or two
    tables, where every count is below 512 and so in the lookup table.
    """
    nt = tables.shape[0]
    nlook = xlogx.shape[0]
    row = np.empty(ky, np.int64)
    total = 0.0
    for a in range(r0, r1):
        base = a * ky
        s = 0.0
        na = 0
        if start[a] == start[a + 1] and nt <= 2:
            t0 = tables[0, base:base + ky]
            t1 = tables[nt - 1, base:base + ky]
            for b in range(ky):
                c = np.int64(t0[b]) + np.int64(t1[b]) if nt == 2 else np.int64(t0[b])
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
    if n < _MIN_SAMPLES:
        return None
    kx_, ky_ = C._sizes_for(xa, ya, C._declared_size(kx, "kx"), C._declared_size(ky, "ky"), names)
    m = kx_ * ky_
    if n < C._SAMPLES_PER_CELL_FOR_PRIVATE * m:
        return None
    nt = numba.get_num_threads() if m <= C._MAX_THREAD_TABLE_BYTES else 1
    with C._zeroed_tables(nt, m) as tables:
        logs, nlogs, bad = C._scatter_private(xa, ya, np.uint64(kx_), np.uint64(ky_), tables)
        if bad:
            C._raise_for_bad_pairs(xa, ya, kx_, ky_, names)
        start, cells = _wraps_by_row(logs, nlogs, kx_, ky_)
        del logs
        xlogx = _xlogx_table()
        nb = -(-kx_ // _ROWS_PER_BLOCK)
        parts = np.zeros(nb)
        cols = np.zeros((nt, ky_), np.int64)

        def rows(w, b):
            r0, r1 = b * _ROWS_PER_BLOCK, min((b + 1) * _ROWS_PER_BLOCK, kx_)
            parts[b] = _row_terms(tables, start, cells, ky_, r0, r1, xlogx, cols[w])

        C._run_blocks(rows, nb, nt)
    col = cols.sum(axis=0)
    assert int(col.sum()) == n  # every pair was counted exactly once
    nz = col[col > 0].astype(np.float64)
    hy_term = float(np.dot(nz, np.log(nz))) - n * math.log(n)  # = -N H(Y)
    value = (float(parts.sum()) - hy_term) / n
    return max(value, 0.0), n, kx_, ky_  # plug-in MI is >= 0 (Gibbs); a negative is rounding
