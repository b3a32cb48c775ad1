"""Counting integer labels into histograms and contingency tables (numba).

:func:`label_counts` counts one label array, :func:`contingency` counts pairs
of labels into a ``(kx, ky)`` table.  Both accept whole arrays or an iterable
of chunks (memory O(table + one chunk), not O(samples)), optional sample
weights, and declared or inferred alphabet sizes.

Design of the kernel (measured on a 2-core machine, see
``benchmarks/bench_mi.py``):

* Labels of any integer dtype are read as they are (numba compiles one
  specialisation per dtype), so an ``int32``/``uint8`` array is never copied
  to ``int64``.  Negative labels and labels ``>= k`` are detected *inside* the
  counting loop (one unsigned comparison per label), so validation costs no
  extra pass over memory; the error message is built afterwards.
* Work is cut into blocks that ``_num_threads()`` threads (the
  caller and helpers running GIL-free numba kernels) take first come, first
  served, so a busy machine degrades gracefully (see "Threads" below).
  Threads are used only while the per-thread tables are small
  (``_MAX_THREAD_TABLE_BYTES``, 8 MiB): beyond that the private tables
  would no longer fit the shared cache together.
* When there are many samples per table cell, each thread counts its blocks
  into a private table of ``uint8`` counters: 1 byte per cell, so a
  32,000 x 64 table takes 2 MB instead of 16 MB of ``int64`` (the development
  machine has 1 MiB of L2 per core and 32 MiB of shared L3); scattering into
  the ``uint8`` table measured 2-4x faster than into ``int64``.  A counter
  that wraps past 255 appends its cell to a per-thread log (at most
  ``samples / 256`` entries); the tables and the logs are then added into
  the ``int64`` result, so counts are exact ``int64`` at any sample count.
  The ``uint8`` tables come from one scratch buffer kept between calls
  (``_zeroed_tables``): zeroing it is cheaper than the page faults of a
  fresh allocation.  :mod:`infomoe._plugin_labels` reads the same tables
  to evaluate the plug-in mutual information without the ``int64`` table.
* When the table is large relative to the input (fewer than 1/8 sample per
  cell), zeroing and summing the small tables would cost more than it saves,
  so one thread counts directly into the result.  Inputs shorter than
  65,536 samples are counted by one thread (waking the pool costs more), or,
  unweighted and while numba is not loaded yet, with numpy (``np.add.at``,
  the same counts; see ``_NUMPY_SHORT_CALLS``).
* numba itself is imported only when a kernel first runs (see "numba,
  imported on first use" below), so counting short inputs never loads it.
* Weighted counting adds ``float64`` weights: with threads, thread 0 adds into
  the result and the others into private ``float64`` tables that are summed
  (only from one sample per cell on, and for tables of at most 64K cells);
  otherwise one thread adds into the result.

The number of threads is :func:`numba.get_num_threads` (set it with
:func:`numba.set_num_threads`); the counts do not depend on it, nor on which
thread took which block (weighted sums may differ in the last bits because
floating-point addition is not associative).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Optional

import numpy as np

from infomoe._validate import (
    as_labels,
    as_weights,
    check_positive_int,
    check_same_length,
    reject_masked,
)

__all__ = ["label_counts", "contingency"]

#: Count through ``uint8`` tables only when there are at least this many
#: samples per table cell; below it, one thread counts straight into the
#: ``int64`` result, because zeroing and adding up the small tables would cost
#: more than it saves (measured break-even: about 1/16 to 1/8 sample per cell
#: for a 32,000 x 64 table).
_SAMPLES_PER_CELL_FOR_PRIVATE = 0.125

#: Inputs shorter than this are handled by one thread: waking the thread pool
#: costs more than it saves (and much more when other processes hold the cores).
_MIN_PARALLEL = 1 << 16

#: Below this many labels, an inferred alphabet size comes from numpy's
#: ``min()`` and ``max()`` (two passes) instead of the :func:`_min_max` kernel:
#: while the labels fit the 32 MiB L3 cache the two passes cost at most 1.3x
#: the kernel (measured 0.62 against 0.47 ms for 1e6 int64 labels, 2.3
#: against 1.7 ms for 4e6), and a first call then compiles or loads one
#: kernel less (0.4-0.5 s on a cold cache, 10-15 ms warm, per label dtype).
#: Beyond it the kernel wins (19 against 10 ms for 1.6e7).
_MIN_NUMBA_MIN_MAX = 1 << 22

#: Helper threads count through private ``uint8`` tables only while each
#: table takes at most this many bytes (they must stay cache-resident: the
#: development machine has 1 MiB of L2 per core and 32 MiB of shared L3).
#: Measured there with 2e7 pairs into 32,000 x 64 (2 MB tables): two threads
#: 19-20 ms against 21-23 ms for one (session 1 measured no gain when each
#: call also paid the page faults of fresh tables; see ``_zeroed_tables``).
_MAX_THREAD_TABLE_BYTES = 8 << 20

#: ... and only with at least this many samples per cell: each extra thread
#: costs zeroing its table and adding it into the ``int64`` result.  Measured
#: for 32,000 x 64: one and two threads break even at 4 samples per cell,
#: two win by ~10% at 10, lose 30-50% at 1-2 (1e6-sample chunks of a stream).
#: (:mod:`infomoe._plugin_labels` adds no ``int64`` table: it uses threads from
#: 1/8 sample per cell.)
_SAMPLES_PER_CELL_FOR_THREADS = 6

#: The same limit for the ``float64`` tables of weighted counting (8 bytes a
#: cell): measured to gain 15-25% with 32-256 KiB tables.
_MAX_WEIGHTED_THREAD_TABLE_BYTES = 1 << 19

#: Private tables hold ``uint8`` counters; a wrap-around adds this much.
_WRAP = 256


# ---------------------------------------------------------------------------
# numba, imported on first use.  Importing numba takes 0.15-0.25 s and its
# first kernel in a process another 0.2-0.3 s (initialising numba's CPU
# target, which also imports scipy.linalg), so this module imports numba only
# when a kernel is called or the thread count is needed: inputs shorter than
# _MIN_PARALLEL samples are counted with numpy and never load it.
# ---------------------------------------------------------------------------

_KERNEL_LOCK = threading.Lock()

#: True once any kernel of this module (or of :mod:`infomoe._plugin_labels`)
#: has been made in this process: numba's start-up is then paid.
_KERNELS_LOADED = False

#: Short unweighted inputs (fewer than :data:`_MIN_PARALLEL` pairs) are
#: counted with numpy while no kernel is loaded, for at most this many calls
#: per process; then, or as soon as a kernel is loaded for another reason, the
#: kernels count them.  A rent-or-buy rule: ``np.add.at`` costs up to ~0.1 ms
#: more per call than the kernels (measured 0.13-0.25 ms against 0.09 ms for
#: 5e4 pairs into 100 x 8), numba's start-up 0.4-0.5 s once, so a process
#: with few short calls never loads numba and one with many pays at most
#: about the start-up twice.  The counts are exact integers on either route,
#: so results never depend on which one ran.
_NUMPY_SHORT_CALLS = 2000

_short_calls = 0


def _num_threads() -> int:
    """:func:`numba.get_num_threads` (imports numba)."""
    import numba

    return numba.get_num_threads()


class _LazyKernel:
    """A ``@njit(nogil=True, cache=True)`` kernel made on its first call.

    ``njit`` is applied to the module-level function then, so numba's disk
    cache finds it exactly as it would a decorated function (same qualified
    name, file and line).  Attributes of the numba dispatcher
    (``signatures``, ``stats``, ``py_func``, ...) are forwarded.  A kernel
    cannot call another one from inside numba code (it would see this
    object, not a dispatcher); none does.
    """

    def __init__(self, py_func):
        self.py_func = py_func
        self._dispatcher = None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__doc__ = py_func.__doc__
        self.__module__ = py_func.__module__

    def dispatcher(self):
        """The numba dispatcher (created on the first call, thread-safe)."""
        d = self._dispatcher
        if d is None:
            with _KERNEL_LOCK:
                d = self._dispatcher
                if d is None:
                    global _KERNELS_LOADED
                    from numba import njit

                    d = self._dispatcher = njit(nogil=True, cache=True)(self.py_func)
                    _KERNELS_LOADED = True
        return d

    def __call__(self, *args):
        return (self._dispatcher or self.dispatcher())(*args)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("py_func", "_dispatcher"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)

    def __repr__(self):
        return f"<lazy numba kernel {self.__module__}.{self.__qualname__}>"


def kernel(py_func) -> _LazyKernel:
    """Decorator: ``py_func`` becomes a numba kernel, compiled or loaded on first call."""
    return _LazyKernel(py_func)


# ---------------------------------------------------------------------------
# numba kernels.  They never index out of bounds: a label outside
# [0, kx) x [0, ky) is skipped and counted as "bad"; the Python wrapper then
# raises a ValueError that names the argument and the first offending label.
# ---------------------------------------------------------------------------

@kernel
def _scatter_direct(x, y, lo, hi, kx, ky, out):
    """Add 1 to ``out[x[i] * ky + y[i]]`` for ``lo <= i < hi``; return #bad."""
    bad = 0
    for i in range(lo, hi):
        a = np.uint64(x[i])
        b = np.uint64(y[i])
        if a < kx and b < ky:
            out[a * ky + b] += 1
        else:
            bad += 1
    return bad


@kernel
def _scatter_small(x, y, lo, hi, kx, ky, table, log):
    """Count into ``uint8`` counters, logging each cell whose counter wraps.

    Returns ``(number of log entries, number of bad labels)``.
    """
    nlog = 0
    bad = 0
    for i in range(lo, hi):
        a = np.uint64(x[i])
        b = np.uint64(y[i])
        if a < kx and b < ky:
            j = a * ky + b
            v = np.uint8(table[j] + 1)
            table[j] = v
            if v == 0:
                log[nlog] = j
                nlog += 1
        else:
            bad += 1
    return nlog, bad


@kernel
def _scatter_small_zx(z, x, y, lo, hi, kz, kx, ky, table, log):
    """:func:`_scatter_small` for the cell ``(z[i] * kx + x[i]) * ky + y[i]``
    of a ``(kz, kx, ky)`` table (conditional MI), without an index array.

    The counter update is written out in both kernels on purpose: moving it
    into a shared ``@njit(inline="always")`` helper measured 230 ms instead
    of 29 ms for 2e7 pairs.
    """
    nlog = 0
    bad = 0
    for i in range(lo, hi):
        c = np.uint64(z[i])
        a = np.uint64(x[i])
        b = np.uint64(y[i])
        if c < kz and a < kx and b < ky:
            j = (c * kx + a) * ky + b
            v = np.uint8(table[j] + 1)
            table[j] = v
            if v == 0:
                log[nlog] = j
                nlog += 1
        else:
            bad += 1
    return nlog, bad


@kernel
def _scatter_weighted(x, y, w, lo, hi, kx, ky, out):
    """Add ``w[i]`` to ``out[x[i] * ky + y[i]]``; return #bad."""
    bad = 0
    for i in range(lo, hi):
        a = np.uint64(x[i])
        b = np.uint64(y[i])
        if a < kx and b < ky:
            out[a * ky + b] += w[i]
        else:
            bad += 1
    return bad


@kernel
def _add_tables(tables, out, lo, hi):
    """``out[lo:hi] += tables[:, lo:hi].sum(axis=0)``."""
    for j in range(lo, hi):
        s = out[j]
        for c in range(tables.shape[0]):
            s += tables[c, j]
        out[j] = s


@kernel
def _add_wraps(out, log, nlog):
    """Add 256 to ``out`` once per logged wrap-around of a uint8 counter."""
    for e in range(nlog):
        out[log[e]] += 256


@kernel
def _min_max(x, lo, hi):
    """``(min, max)`` of ``x[lo:hi]`` (``hi > lo``).

    Eight independent running minima/maxima: one pair of accumulators makes
    every step wait for the previous one (measured 27 ms for 2e7 int64
    labels, against 7.5 ms with eight; numpy's ``max`` alone takes 4.5 ms).
    They are eight scalars written out, not an array: ``np.full`` and the
    array ``min``/``max`` methods cost 1.0 s more of compilation on a cold
    cache (1.5 s against 0.2 s for this kernel; ``benchmarks/bench_cold.py``).
    """
    v = x[lo]
    mn0 = mn1 = mn2 = mn3 = mn4 = mn5 = mn6 = mn7 = v
    mx0 = mx1 = mx2 = mx3 = mx4 = mx5 = mx6 = mx7 = v
    m = lo + (hi - lo) // 8 * 8
    for i in range(lo, m, 8):
        v = x[i]
        mn0 = min(mn0, v)
        mx0 = max(mx0, v)
        v = x[i + 1]
        mn1 = min(mn1, v)
        mx1 = max(mx1, v)
        v = x[i + 2]
        mn2 = min(mn2, v)
        mx2 = max(mx2, v)
        v = x[i + 3]
        mn3 = min(mn3, v)
        mx3 = max(mx3, v)
        v = x[i + 4]
        mn4 = min(mn4, v)
        mx4 = max(mx4, v)
        v = x[i + 5]
        mn5 = min(mn5, v)
        mx5 = max(mx5, v)
        v = x[i + 6]
        mn6 = min(mn6, v)
        mx6 = max(mx6, v)
        v = x[i + 7]
        mn7 = min(mn7, v)
        mx7 = max(mx7, v)
    a = min(min(min(mn0, mn1), min(mn2, mn3)), min(min(mn4, mn5), min(mn6, mn7)))
    b = max(max(max(mx0, mx1), max(mx2, mx3)), max(max(mx4, mx5), max(mx6, mx7)))
    for i in range(m, hi):
        a = min(a, x[i])
        b = max(b, x[i])
    return a, b


def _count_one_part(x, y, kx, ky, table, log, out):
    """One-thread counting through one uint8 table (no thread pool at all).

    Plain Python calling three kernels: a kernel calling kernels would be
    compiled, and loaded from the cache, as one more kernel.
    """
    nl, bad = _scatter_small(x, y, 0, x.shape[0], kx, ky, table, log)
    _add_tables(table.reshape(1, -1), out, 0, out.shape[0])
    _add_wraps(out, log, nl)
    return bad


# ---------------------------------------------------------------------------
# Threads.  The kernels above release the GIL (nogil=True); the work is cut
# into blocks that the calling thread and ``nt - 1`` helper threads take
# first come, first served.  A thread that gets no CPU (other processes on
# the machine) simply takes fewer blocks, so a busy machine degrades to
# one-thread speed instead of stalling at a barrier, which is what a static
# split (numba prange with OpenMP) measured: 10-20x slower than one thread
# when the second core was busy.
# ---------------------------------------------------------------------------

_POOL: Optional[ThreadPoolExecutor] = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _helpers(n: int) -> ThreadPoolExecutor:
    """A shared pool of at least ``n`` helper threads (created on first use)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n:
            if _POOL is not None:
                _POOL.shutdown(wait=False)  # queued work still runs
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="infomoe-count")
            _POOL_SIZE = n
        return _POOL


def _run_blocks(task, nblocks: int, nt: int) -> None:
    """Call ``task(worker, block)`` for every block with ``nt`` workers.

    Worker 0 is the calling thread; a worker keeps its index for all the
    blocks it takes, so per-worker buffers need no locking.
    """
    blocks = itertools.count()  # next() on it is atomic under the GIL

    def work(worker):
        for b in iter(blocks.__next__, None):
            if b >= nblocks:
                return
            task(worker, b)

    futures = [_helpers(nt - 1).submit(work, w) for w in range(1, nt)] if nt > 1 else []
    work(0)
    for f in futures:
        f.result()


def _nblocks(n: int, nt: int) -> int:
    """About 8 blocks per worker, none shorter than 2**15 items."""
    return max(1, min(8 * nt, n // (1 << 15)))


def _bounds(b: int, nblocks: int, n: int):
    return b * n // nblocks, (b + 1) * n // nblocks


#: The uint8 counting tables are taken from one scratch buffer kept between
#: calls (at most this many bytes): a fresh allocation is paid in page faults
#: on first touch, measured at 5-6 ms for the 4 MB of two 32,000 x 64 tables
#: on the development VM, against 0.2 ms to zero a kept buffer.
_MAX_SCRATCH_BYTES = 64 << 20

_SCRATCH: Optional[np.ndarray] = None
_SCRATCH_LOCK = threading.Lock()


@contextmanager
def _zeroed_tables(nt: int, m: int):
    """A zeroed ``(nt, m)`` uint8 array, from the kept scratch buffer when free.

    Concurrent callers each get their own buffer (only one is kept).
    """
    global _SCRATCH
    size = nt * m
    with _SCRATCH_LOCK:
        buf, _SCRATCH = _SCRATCH, None
    if buf is None or buf.size < size:
        buf = np.zeros(size, np.uint8)
    else:
        buf[:size] = 0
    try:
        yield buf[:size].reshape(nt, m)
    finally:
        if buf.size <= _MAX_SCRATCH_BYTES:
            with _SCRATCH_LOCK:
                if _SCRATCH is None or _SCRATCH.size < buf.size:
                    _SCRATCH = buf


def _scatter_private(x, y, kx, ky, tables, z=None, kz=None):
    """Count ``(x, y)`` with one worker per row of ``tables`` (zeroed uint8).

    Worker ``w`` counts its share of the pairs into ``tables[w]``.  Returns
    ``(logs, nlogs, bad)``: ``logs[w, :nlogs[w]]`` lists the cells whose
    counter wrapped in worker ``w`` (each entry adds 256), ``bad`` is the
    number of labels out of range.  The count of cell ``j`` is
    ``sum_w tables[w, j] + 256 * (number of j in the logs)``.  With ``z``
    (and ``kz``), the cells are those of a ``(kz, kx, ky)`` table.
    """
    n = x.shape[0]
    nt = tables.shape[0]
    logs = np.empty((nt, n // _WRAP + 1), np.int64)  # a worker wraps at most n/256 times
    nlogs = np.zeros(nt, np.int64)
    bads = [0] * nt
    nb = _nblocks(n, nt)

    def count(w, b):
        lo, hi = _bounds(b, nb, n)
        if z is None:
            nl, bd = _scatter_small(x, y, lo, hi, kx, ky, tables[w], logs[w, nlogs[w]:])
        else:
            nl, bd = _scatter_small_zx(z, x, y, lo, hi, kz, kx, ky, tables[w], logs[w, nlogs[w]:])
        nlogs[w] += nl
        bads[w] += bd

    _run_blocks(count, nb, nt)
    return logs, nlogs, sum(bads)


def _private_threads(n: int, m: int) -> int:
    """Workers for counting ``n`` samples into an ``int64`` table of ``m`` cells
    through private uint8 tables (1: the caller alone)."""
    if (n >= _MIN_PARALLEL and m <= _MAX_THREAD_TABLE_BYTES
            and n >= _SAMPLES_PER_CELL_FOR_THREADS * m):
        return _num_threads()
    return 1


def _count_private(x, y, kx, ky, out, nt, z=None, kz=None):
    """Unweighted counting by ``nt`` workers, each through its own uint8 table.

    Adds into ``out`` (flat int64) and returns the number of bad labels.
    """
    m = out.shape[0]
    with _zeroed_tables(nt, m) as tables:
        logs, nlogs, bad = _scatter_private(x, y, kx, ky, tables, z, kz)
        nb_cells = _nblocks(m, nt)
        _run_blocks(lambda w, b: _add_tables(tables, out, *_bounds(b, nb_cells, m)), nb_cells, nt)
    for w in range(nt):
        _add_wraps(out, logs[w], nlogs[w])
    return bad


def _contingency_zxy(z, x, y, kz: int, kx: int, ky: int) -> Optional[np.ndarray]:
    """The ``(kz, kx, ky)`` int64 table of checked label arrays, or None.

    Counts the cell ``(z, x, y)`` straight from the three arrays (no
    ``z * kx + x`` index array), through private uint8 tables; None when
    there are too few samples per cell for that to pay (fewer than
    :data:`_SAMPLES_PER_CELL_FOR_PRIVATE`) -- the caller then streams chunks
    through :func:`contingency`.  The labels must already be known to be in
    range (a label out of range is an internal error here).
    """
    n = x.shape[0]
    m = kz * kx * ky
    if n < _SAMPLES_PER_CELL_FOR_PRIVATE * m:
        return None
    out = np.zeros(m, np.int64)
    bad = _count_private(x, y, np.uint64(kx), np.uint64(ky), out, _private_threads(n, m), z, np.uint64(kz))
    if bad:
        raise AssertionError("labels out of range reached the 3-way counting kernel")  # pragma: no cover
    return out.reshape(kz, kx, ky)


def _count_weighted_private(x, y, w, kx, ky, out, nt):
    """Weighted counting by ``nt`` workers: worker 0 adds into ``out``, the
    others into private float64 tables that are then added."""
    n = x.shape[0]
    m = out.shape[0]
    tables = np.zeros((max(nt - 1, 0), m), np.float64)
    bads = [0] * nt
    nb = _nblocks(n, nt)

    def count(k, b):
        lo, hi = _bounds(b, nb, n)
        bads[k] += _scatter_weighted(x, y, w, lo, hi, kx, ky, out if k == 0 else tables[k - 1])

    _run_blocks(count, nb, nt)
    if nt > 1:
        nb_cells = _nblocks(m, nt)
        _run_blocks(lambda k, b: _add_tables(tables, out, *_bounds(b, nb_cells, m)), nb_cells, nt)
    return sum(bads)


def _max_label(x, nt):
    """``(min, max)`` of a label array, read by ``nt`` workers."""
    n = x.shape[0]
    nb = _nblocks(n, nt)
    found = [None] * nb
    _run_blocks(lambda w, b: found.__setitem__(b, _min_max(x, *_bounds(b, nb, n))), nb, nt)
    return min(f[0] for f in found), max(f[1] for f in found)


# ---------------------------------------------------------------------------
# Python side: validation, dispatch, chunking.
# ---------------------------------------------------------------------------

def _label_array(x, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A 1-D integer label array, without copying integer input.

    Integer arrays (any width, signed or not) pass through unchanged; their
    sign and range are checked inside the counting kernel.  ``bool`` is
    viewed as ``uint8``; everything else goes through :func:`as_labels`
    (integer-valued floats accepted and converted, anything else rejected).
    """
    reject_masked(x, name)
    if isinstance(x, np.ndarray) and x.ndim == 1 and x.size and x.dtype.isnative:
        if x.dtype == np.bool_:
            return x.view(np.uint8)
        if np.issubdtype(x.dtype, np.integer):
            return x
    return as_labels(x, name, allow_empty=allow_empty)


def _declared_size(k, name: str) -> Optional[int]:
    if k is None:
        return None
    return check_positive_int(k, name)


def _raise_bad_labels(a: np.ndarray, name: str, k: int, kname: str, where: str = "") -> None:
    """Raise the ValueError for the first label of ``a`` outside ``[0, k)``."""
    if np.issubdtype(a.dtype, np.signedinteger):
        neg = np.flatnonzero(a < 0)
        if neg.size:
            i = int(neg[0])
            raise ValueError(
                f"`{name}{where}` has negative label {int(a[i])} at index {i}; labels must be >= 0 "
                "(remap them, e.g. with np.unique(x, return_inverse=True)).")
    big = np.flatnonzero(a >= k)
    if big.size:
        i = int(big[0])
        raise ValueError(
            f"`{name}{where}` has label {int(a[i])} at index {i}, but `{kname}`={k} allows only "
            f"labels 0..{k - 1}; increase `{kname}` or leave it as None to infer it.")


def _observed_size(a: np.ndarray, name: str, where: str = "") -> int:
    """``max(a) + 1`` after checking that no label is negative (one pass from
    :data:`_MIN_NUMBA_MIN_MAX` labels on, numpy's ``min`` and ``max`` below)."""
    if a.shape[0] < _MIN_NUMBA_MIN_MAX:
        mn, mx = a.min(), a.max()
    else:
        mn, mx = _max_label(a, _num_threads())
    if mn < 0:
        _raise_bad_labels(a, name, int(mx) + 1, "k", where)
    return int(mx) + 1


def _count_into(out2d: np.ndarray, x, y, w, names, where: str = "") -> None:
    """Add the (weighted) counts of ``(x, y)`` into ``out2d`` in place."""
    kx, ky = out2d.shape
    flat = out2d.reshape(-1)  # a view: out2d is C-contiguous
    n = x.shape[0]
    if w is None and n < _MIN_PARALLEL and _numpy_for_short():
        _count_numpy(x, y, kx, ky, flat, names, where)
        return
    ukx, uky = np.uint64(kx), np.uint64(ky)
    nt = _num_threads() if n >= _MIN_PARALLEL else 1
    private = n >= _SAMPLES_PER_CELL_FOR_PRIVATE * flat.shape[0]
    m = flat.shape[0]
    if w is None:
        nt_private = _private_threads(n, m)
        if nt_private > 1:
            bad = _count_private(x, y, ukx, uky, flat, nt_private)
        elif private:
            log = np.empty(n // _WRAP + 1, np.int64)
            with _zeroed_tables(1, m) as table:
                bad = _count_one_part(x, y, ukx, uky, table[0], log, flat)
        else:
            bad = _scatter_direct(x, y, 0, n, ukx, uky, flat)
    else:  # float64 private tables cost 8 bytes a cell: worth it from 1 sample a cell
        if nt > 1 and n >= m and 8 * m <= _MAX_WEIGHTED_THREAD_TABLE_BYTES:
            bad = _count_weighted_private(x, y, w, ukx, uky, flat, nt)
        else:
            bad = _scatter_weighted(x, y, w, 0, n, ukx, uky, flat)
    if bad:
        _raise_for_bad_pairs(x, y, kx, ky, names, where)


def _numpy_for_short() -> bool:
    """Whether this short unweighted input is counted with numpy (see
    :data:`_NUMPY_SHORT_CALLS`)."""
    global _short_calls
    if _KERNELS_LOADED:
        return False
    _short_calls += 1  # unlocked: an approximate count across threads is enough
    return _short_calls <= _NUMPY_SHORT_CALLS


def _count_numpy(x, y, kx: int, ky: int, flat: np.ndarray, names, where: str = "") -> None:
    """Unweighted counting of a short input (fewer than :data:`_MIN_PARALLEL`
    pairs) with numpy, into the flat ``int64`` table ``flat``.

    The counts are the kernels' (exact integers), and nothing of numba is
    imported or loaded: a first call on a short input in a new process costs
    no 0.4-0.5 s of numba start-up.  ``np.add.at`` measured 1-3x the numba
    kernels' time for 100 to 65,535 pairs (5-250 us; ``np.bincount`` needs a
    ``kx * ky`` temporary, 4-8x slower for large tables).
    """
    if x.shape[0] == 0:
        return
    if x.min() < 0 or x.max() >= kx or y.min() < 0 or y.max() >= ky:
        _raise_for_bad_pairs(x, y, kx, ky, names, where)
    idx = x.astype(np.int64)  # labels now known to be in [0, kx): no wrap-around
    if ky != 1:
        idx *= ky
        idx += y.astype(np.int64, copy=False)  # (uint64 + int64 would be float64)
    np.add.at(flat, idx, 1)


def _raise_for_bad_pairs(x, y, kx: int, ky: int, names, where: str = "") -> None:
    """Raise the ValueError for the first label of ``x`` or ``y`` out of range
    (a kernel reported some)."""
    (xname, kxname), (yname, kyname) = names
    _raise_bad_labels(x, xname, kx, kxname, where)
    if yname is not None:
        _raise_bad_labels(y, yname, ky, kyname, where)
    raise AssertionError("counting kernel reported bad labels it could not locate")  # pragma: no cover


def _is_chunks(obj) -> bool:
    """True when ``obj`` is an iterable of chunks rather than one label array."""
    if isinstance(obj, (np.ndarray, str, bytes, range)) or obj is None:
        return False
    if hasattr(obj, "__array__") or hasattr(obj, "__array_interface__"):
        return False
    if isinstance(obj, (list, tuple)):
        return len(obj) > 0 and isinstance(obj[0], (np.ndarray, list, tuple))
    return hasattr(obj, "__iter__") or hasattr(obj, "__next__")


class _Table:
    """A count table that grows when chunks reveal larger labels."""

    def __init__(self, kx, ky, weighted):
        self.kx_declared, self.ky_declared = kx, ky
        self.weighted = weighted
        self.out = None

    def ensure(self, need_x: int, need_y: int) -> np.ndarray:
        kx = self.kx_declared if self.kx_declared is not None else need_x
        ky = self.ky_declared if self.ky_declared is not None else need_y
        dtype = np.float64 if self.weighted else np.int64
        if self.out is None:
            self.out = np.zeros((kx, ky), dtype)
        elif kx > self.out.shape[0] or ky > self.out.shape[1]:
            kx, ky = max(kx, self.out.shape[0]), max(ky, self.out.shape[1])
            grown = np.zeros((kx, ky), dtype)
            grown[: self.out.shape[0], : self.out.shape[1]] = self.out
            self.out = grown
        return self.out


#: Largest dense table (cells) ``label_counts``/``contingency`` allocate: 2**31 int64 cells are 16 GiB.
MAX_TABLE_CELLS = 1 << 31


def _check_table_size(kx: int, ky: int, names) -> None:
    """A clear ValueError before allocating a dense table no machine holds (labels like 2**40)."""
    if kx * ky > MAX_TABLE_CELLS:
        (xname, _), (yname, _) = names
        what = f"{kx} x {ky}" if yname is not None else f"{kx}"
        raise ValueError(f"a dense count table of {what} cells ({kx * ky * 8 / 2**30:.3g} GiB) is too large: "
                         f"the labels of `{xname}`{'' if yname is None else f' / `{yname}`'} are sparse or "
                         "huge. Relabel them first (np.unique(x, return_inverse=True)), or use "
                         "infomoe.mutual_information, which counts only the observed cells.")


def _sizes_for(x, y, kx, ky, names, where=""):
    """Sizes a table must have to hold ``(x, y)``; declared sizes win."""
    (xname, _), (yname, _) = names
    need_x = kx if kx is not None else _observed_size(x, xname, where)
    if yname is None:
        _check_table_size(need_x, 1, names)
        return need_x, 1
    need_y = ky if ky is not None else _observed_size(y, yname, where)
    _check_table_size(need_x, need_y, names)
    return need_x, need_y


def _count_arrays(xa, ya, kx, ky, weights, names) -> np.ndarray:
    """Table of one pair of checked label arrays (``ya`` all zeros and ``ky = 1`` for
    :func:`label_counts`), ``int64`` or, with `weights`, ``float64``."""
    w = None if weights is None else as_weights(weights, "weights", xa.shape[0])
    need_x, need_y = _sizes_for(xa, ya, kx, ky, names)
    out = np.zeros((need_x, need_y), np.int64 if w is None else np.float64)
    _count_into(out, xa, ya, w, names)
    return out


def _count_chunks(chunks, kx, ky, names, *, paired: bool) -> np.ndarray:
    """Shared chunk loop of :func:`label_counts` and :func:`contingency`."""
    (xname, _), (yname, _) = names
    table = None
    total_weight = 0.0
    n_total = 0
    arity = None
    c = -1
    for chunk in chunks:  # not enumerate(): its cached result tuple would keep the last chunk alive
        c += 1
        where = f" (chunk {c})"
        if isinstance(chunk, tuple):
            parts = chunk
        elif paired and isinstance(chunk, list) and len(chunk) in (2, 3) and not np.isscalar(chunk[0]):
            parts = tuple(chunk)
        else:
            parts = (chunk,)
        allowed = (2, 3) if paired else (1, 2)
        if len(parts) not in allowed:
            form = "(x_chunk, y_chunk) or (x_chunk, y_chunk, w_chunk)" if paired \
                else "x_chunk or (x_chunk, w_chunk)"
            raise ValueError(f"chunk {c} must be {form}; got a {type(chunk).__name__} of "
                             f"{len(parts)} item(s).")
        if arity is None:
            arity = len(parts)
        elif len(parts) != arity:
            raise ValueError(f"chunk {c} has {len(parts)} item(s) but chunk 0 had {arity}; "
                             "either every chunk carries weights or none does.")
        xc = _label_array(parts[0], f"{xname}{where}", allow_empty=True)
        if paired:
            yc = _label_array(parts[1], f"{yname}{where}", allow_empty=True)
            check_same_length(xc, yc, f"{xname}{where}", f"{yname}{where}")
        else:
            yc = np.broadcast_to(np.zeros(1, np.uint8), xc.shape)
        weighted = len(parts) == (3 if paired else 2)
        wc = (as_weights(parts[-1], f"weights{where}", xc.shape[0], allow_zero_sum=True)
              if weighted else None)
        if table is None:
            table = _Table(kx, ky if paired else 1, weighted)
        if xc.shape[0] == 0:  # an empty chunk adds nothing (but was checked)
            continue
        n_total += xc.shape[0]
        need_x, need_y = _sizes_for(xc, yc, kx, ky if paired else 1,
                                    names if paired else (names[0], (None, None)), where)
        out = table.ensure(need_x, need_y)
        _count_into(out, xc, yc, wc, names, where)
        if weighted:
            total_weight += float(wc.sum())
        del chunk, parts, xc, yc, wc  # hold at most one chunk while the next one is made
    if n_total == 0:
        raise ValueError(f"`{xname}` is an empty iterable of chunks, or all its chunks are empty; "
                         "at least one sample is needed.")
    if table.weighted and total_weight <= 0:
        raise ValueError("the chunk weights sum to zero; at least one weight must be positive.")
    return table.out


def label_counts(x, *, k: Optional[int] = None, weights=None) -> np.ndarray:
    """Count how often each label ``0..k-1`` occurs (a fast, checked ``bincount``).

    Parameters
    ----------
    x : array_like of int, shape (n,), or iterable of chunks
        Non-negative integer labels (any integer dtype is read without a
        copy; integer-valued floats are accepted).  Instead of one array, an
        iterable (list, generator, ...) of chunks, each an array of labels or
        a tuple ``(x_chunk, w_chunk)``; only one chunk is held at a time.
    k : int, optional
        Alphabet size, so that labels that never occur still get a (zero)
        count.  Default: ``max(x) + 1``.  A label ``>= k`` is an error.
    weights : array_like of float, shape (n,), optional
        Non-negative finite sample weights (not allowed with chunks, which
        carry their own weights).

    Returns
    -------
    counts : ndarray, shape (k,)
        ``int64`` counts, or ``float64`` sums of weights when weighted.

    Notes
    -----
    ``counts[j] = sum_i w_i [x_i = j]`` with ``w_i = 1`` when unweighted.
    Counting runs in a parallel numba kernel (see the module docstring);
    integer counts are exact ``int64`` whatever the sample count.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import label_counts
    >>> label_counts(np.array([0, 2, 2, 1, 2]))
    array([1, 1, 3])
    >>> label_counts([1, 1], k=4)
    array([0, 2, 0, 0])
    >>> label_counts(iter([np.array([0, 1]), np.array([3])]))
    array([1, 1, 0, 1])
    """
    k = _declared_size(k, "k")
    names = (("x", "k"), (None, None))
    if _is_chunks(x):
        if weights is not None:
            raise ValueError("`weights` cannot be combined with an iterable of chunks; pass "
                             "(x_chunk, w_chunk) tuples instead.")
        return _count_chunks(x, k, None, names, paired=False)[:, 0]
    xa = _label_array(x, "x")
    y = np.broadcast_to(np.zeros(1, np.uint8), xa.shape)
    return _count_arrays(xa, y, k, 1, weights, names)[:, 0]


def contingency(x, y=None, *, kx: Optional[int] = None, ky: Optional[int] = None,
                weights=None) -> np.ndarray:
    """Joint counts of two integer label arrays: a ``(kx, ky)`` contingency table.

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Paired non-negative integer labels (e.g. token id and selected
        expert).  Any integer dtype is read without a copy; integer-valued
        floats are accepted.
        Alternatively ``x`` is an iterable (list, generator, ...) of chunks
        ``(x_chunk, y_chunk)`` or ``(x_chunk, y_chunk, w_chunk)`` and ``y``
        is None: only the table and one chunk are held in memory.
    kx, ky : int, optional
        Alphabet sizes (number of rows, columns).  Default: ``max + 1`` of the
        labels seen; with chunks the table grows as larger labels arrive.
        A label ``>=`` a declared size is an error.
    weights : array_like of float, shape (n,), optional
        Non-negative finite sample weights (with chunks, pass them inside
        the chunks instead).

    Returns
    -------
    table : ndarray, shape (kx, ky)
        ``table[a, b]`` = number of samples with ``x = a`` and ``y = b``
        (``int64``), or their total weight (``float64``) when weighted.

    Notes
    -----
    ``table[a, b] = sum_i w_i [x_i = a][y_i = b]`` with ``w_i = 1`` when
    unweighted.  Unweighted counts are exact ``int64``: they do not
    overflow past ``2**31`` samples.  The kernel uses every numba thread
    (:func:`numba.set_num_threads`) and gives the same counts for any
    thread count; the module docstring explains how.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import contingency
    >>> contingency(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 1]))
    array([[0, 2],
           [1, 0],
           [0, 1]])
    >>> contingency([0, 1], [0, 0], kx=2, ky=3, weights=[0.5, 2.0])
    array([[0.5, 0. , 0. ],
           [2. , 0. , 0. ]])
    >>> chunks = ((np.array([0, 1]), np.array([0, 0])) for _ in range(3))
    >>> contingency(chunks)
    array([[3],
           [3]])
    """
    kx = _declared_size(kx, "kx")
    ky = _declared_size(ky, "ky")
    names = (("x", "kx"), ("y", "ky"))
    if y is None:
        if not _is_chunks(x):
            raise TypeError("`y` is required unless `x` is an iterable of (x_chunk, y_chunk[, w_chunk]) "
                            f"chunks; got y=None and `x` of type {type(x).__name__}.")
        if weights is not None:
            raise ValueError("`weights` cannot be combined with an iterable of chunks; pass "
                             "(x_chunk, y_chunk, w_chunk) tuples instead.")
        return _count_chunks(x, kx, ky, names, paired=True)
    xa = _label_array(x, "x")
    ya = _label_array(y, "y")
    check_same_length(xa, ya, "x", "y")
    return _count_arrays(xa, ya, kx, ky, weights, names)
