r"""Uncertainty of the report's information values: resampling sequences, and a permutation null.

Tokens of one sequence are dependent (they share a prompt, a topic, a
position ramp), so the intervals resample *sequences*, not tokens: while
counting, every token is given the group ``hash(seq_id) mod G``
(:func:`token_groups`; without a ``seq_id`` column, blocks of
:data:`GROUP_BLOCK_TOKENS` consecutive tokens stand in for sequences), and the
count tables are also kept per group, sparse (:class:`GroupedCounts`).
Groups are independent collections of whole sequences.  The standard error
is that of the delete-one-group jackknife (:func:`jackknife_weights`,
:func:`replicate_tables`, :func:`jackknife_se`; Künsch 1989 for blocks), not
of the bootstrap: on tables of routing shape (more cells than pairs) a
bootstrap replicate duplicates sequences, which inflates the plug-in value
by a random amount, and its standard error came out 1.9-8.3x the true one
(measured against independent draws, 2048 x 64 tables, 8,192 pairs,
``benchmarks/bench_report_bias.py``); the grouped jackknife was 1.1-1.4x
under dependence and conservative (3.4-3.6x) at independence, as the
Efron-Stein inequality makes it.

The null of a mutual information is the independence of the two variables:
shuffling the expert ids among the counted pairs of a layer keeps both margins
and destroys any association.  :func:`permutation_null` shuffles in a numba
kernel, O(pairs) per permutation and without materialising tables.  Once a
table is well filled (at least :data:`CHI_SQUARE_FILL` pairs per cell of the
observed margins) it uses the chi-square law of the G statistic instead
(``2 N I`` in nats has ``(K_x - 1)(K_y - 1)`` degrees of freedom), which is
accurate there; a large sparse table gets fewer permutations (at least
:data:`MIN_PERMUTATIONS`), so that one table costs at most
:data:`PERMUTATION_BUDGET` shuffled pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GroupedCounts", "token_groups", "jackknife_weights", "jackknife_se", "replicate_tables", "plugin_mi_sparse",
           "permutation_null", "holm", "GROUP_BLOCK_TOKENS", "CHI_SQUARE_FILL", "PERMUTATION_BUDGET",
           "MIN_PERMUTATIONS"]

#: Without a ``seq_id`` column, blocks of this many consecutive tokens of the log are the resampling units.
GROUP_BLOCK_TOKENS = 256

#: Pairs per cell (of the observed margins) from which the chi-square null replaces permutations.
CHI_SQUARE_FILL = 10

#: Shuffled pairs one table's permutations may cost (about half a second).
PERMUTATION_BUDGET = 1 << 26

#: Fewest permutations of a table (when the budget would allow fewer).
MIN_PERMUTATIONS = 10

#: Uncompacted entries an accumulator may hold before merging them (amortised O(n log n)).
_COMPACT_ENTRIES = 1 << 21


def _splitmix64(v: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed, well-mixed hash of 64-bit keys (wrapping arithmetic)."""
    z = v.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def token_groups(chunk: dict, n: int, groups: int) -> np.ndarray:
    """Resampling group of each token of a chunk, ``(n,)`` int32 in ``[0, groups)``.

    Parameters
    ----------
    chunk : dict
        A chunk from :meth:`RoutingLog.iter_chunks` (``"seq_id"`` if logged;
        otherwise ``"offset"``, the index of its first token in the log,
        places the tokens; 0 when absent).
    n : int
        Tokens in the chunk.
    groups : int
        Number of groups ``G``.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import token_groups
    >>> g = token_groups({"seq_id": np.array([7, 7, 8, 7])}, 4, 64)
    >>> bool(g[0] == g[1] == g[3]), g.dtype.name
    (True, 'int32')
    """
    seq = chunk.get("seq_id")
    if seq is not None:
        key = np.asarray(seq).astype(np.int64).view(np.uint64)
    else:
        start = int(chunk.get("offset", 0) or 0)
        key = (np.arange(start, start + n, dtype=np.int64) // GROUP_BLOCK_TOKENS).view(np.uint64)
    with np.errstate(over="ignore"):
        return (_splitmix64(key) % np.uint64(groups)).astype(np.int32)


@dataclass(frozen=True, eq=False)
class GroupedCounts:
    """Counts of ``(group, row, column)`` cells, stored sparse; parts of a log add with ``+``.

    Attributes
    ----------
    shape : tuple of int
        ``(groups, rows, columns)``.
    keys : ndarray of int64
        Sorted distinct cell keys ``(group * rows + row) * columns + column``.
    counts : ndarray of int64
        Count of each key (all positive).
    """

    shape: tuple
    keys: np.ndarray
    counts: np.ndarray

    def __repr__(self) -> str:
        return f"GroupedCounts(shape={self.shape}, nonzero={self.keys.size}, total={int(self.counts.sum())})"

    @classmethod
    def empty(cls, shape) -> "GroupedCounts":
        return cls(tuple(int(s) for s in shape), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_labels(cls, group, row, col, shape) -> "GroupedCounts":
        """Counts of label triples (all in range: the caller filters sentinels)."""
        G, R, C = shape
        key = (np.asarray(group, np.int64) * R + np.asarray(row, np.int64)) * C + np.asarray(col, np.int64)
        keys, counts = np.unique(key, return_counts=True)
        return cls(tuple(shape), keys, counts.astype(np.int64))

    @classmethod
    def merge(cls, parts, shape) -> "GroupedCounts":
        """Sum of several parts in one pass."""
        parts = [p for p in parts if p is not None and p.keys.size]
        if not parts:
            return cls.empty(shape)
        if len(parts) == 1:
            return parts[0]
        keys = np.concatenate([p.keys for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return cls(tuple(shape), keys[starts], np.add.reduceat(counts, starts))

    def __add__(self, other):
        if other is None:
            return self
        if not isinstance(other, GroupedCounts):
            return NotImplemented
        if other.shape != self.shape:
            raise ValueError(f"cannot add GroupedCounts of shapes {self.shape} and {other.shape}.")
        return GroupedCounts.merge([self, other], self.shape)

    __radd__ = __add__

    def cells(self):
        """``(rows, cols, group, counts)`` of the stored entries."""
        G, R, C = self.shape
        rc = self.keys % (R * C)
        return rc // C, rc % C, self.keys // (R * C), self.counts

    def total(self) -> np.ndarray:
        """The ``(rows, columns)`` table summed over groups (dense)."""
        _, R, C = self.shape
        return np.bincount(self.keys % (R * C), weights=self.counts, minlength=R * C).astype(np.int64).reshape(R, C)

    def total_sparse(self):
        """``(rows, cols, counts)`` of the nonzero cells of the table summed over groups."""
        _, R, C = self.shape
        cell = self.keys % (R * C)
        u, inv = np.unique(cell, return_inverse=True)
        return u // C, u % C, np.bincount(inv, weights=self.counts).astype(np.int64)


class GroupedAccumulator:
    """Running :class:`GroupedCounts`: chunk parts are kept and compacted when they outgrow the total."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.done = GroupedCounts.empty(shape)
        self.pending = []
        self.pending_entries = 0

    def add(self, part: GroupedCounts) -> None:
        self.pending.append(part)
        self.pending_entries += part.keys.size
        if self.pending_entries > max(_COMPACT_ENTRIES, self.done.keys.size):
            self.result()

    def result(self) -> GroupedCounts:
        if self.pending:
            self.done = GroupedCounts.merge([self.done] + self.pending, self.shape)
            self.pending, self.pending_entries = [], 0
        return self.done


def jackknife_weights(group_tokens: np.ndarray, max_groups: int = 0) -> np.ndarray:
    """``(m, G)`` 0/1 weights of the delete-one-group jackknife over the non-empty groups.

    Parameters
    ----------
    group_tokens : ndarray (G,)
        Tokens per group (empty groups are not deleted: their replicate
        would equal the full table and shrink the variance).
    max_groups : int, optional
        Merge groups ``g`` by ``g mod max_groups`` first (fewer replicates
        for costly estimators); 0 keeps every group.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import jackknife_weights
    >>> jackknife_weights(np.array([5, 0, 3])).tolist()
    [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    """
    G = group_tokens.shape[0]
    label = np.arange(G) % max_groups if max_groups and max_groups < G else np.arange(G)
    busy = np.unique(label[group_tokens > 0])
    return (label[None, :] != busy[:, None]).astype(np.float64)


def jackknife_se(values: np.ndarray) -> float:
    """Standard error from delete-one-group values, ``sqrt((m - 1) / m * sum (v_j - mean v)**2)``."""
    v = np.asarray(values, dtype=np.float64)
    m = v.size
    if m < 2:
        return float("nan")
    return float(math.sqrt((m - 1) / m * np.sum((v - v.mean()) ** 2)))


def replicate_tables(table: GroupedCounts, weights: np.ndarray):
    """Sparse cells and their counts in each replicate (group weights ``(replicates, G)``).

    Returns
    -------
    rows, cols : ndarray (cells,)
        The distinct nonzero cells of the summed table.
    counts : ndarray (replicates, cells)
        Counts of each cell in each replicate, ``sum_g w_g n_g(cell)``.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import GroupedCounts, replicate_tables
    >>> t = GroupedCounts.from_labels([0, 0, 1], [0, 1, 1], [0, 0, 0], (2, 2, 1))
    >>> r, c, n = replicate_tables(t, np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> r.tolist(), n.tolist()
    ([0, 1], [[1.0, 1.0], [0.0, 1.0]])
    """
    from scipy import sparse

    G, R, C = table.shape
    r, c, g, n = table.cells()
    cell = r * C + c
    u, inv = np.unique(cell, return_inverse=True)
    m = sparse.csr_matrix((n.astype(np.float64), (inv, g)), shape=(u.size, G))
    return u // C, u % C, np.asarray((m @ weights.T).T)


def plugin_mi_sparse(rows, cols, counts, base: float) -> np.ndarray:
    """Plug-in mutual information of tables given by their nonzero cells.

    Parameters
    ----------
    rows, cols : ndarray of int (cells,)
        Cell coordinates.
    counts : ndarray (..., cells)
        Counts (a batch of tables over the same cells; zeros allowed).
    base : float

    Returns
    -------
    ndarray (...)
        ``sum n log n - sum_r n_r log n_r - sum_c n_c log n_c + N log N``
        over ``N``, in ``base`` units (0 for an empty table).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import plugin_mi_sparse
    >>> float(plugin_mi_sparse(np.array([0, 1]), np.array([0, 1]), np.array([5.0, 5.0]), 2))
    1.0
    """
    from scipy.special import xlogy

    counts = np.asarray(counts, dtype=np.float64)
    batch = counts.reshape(-1, counts.shape[-1])
    _, ri = np.unique(rows, return_inverse=True)
    _, ci = np.unique(cols, return_inverse=True)
    out = np.zeros(batch.shape[0])
    for b in range(batch.shape[0]):
        n = batch[b]
        N = n.sum()
        if N <= 0:
            continue
        nr = np.bincount(ri, weights=n)
        nc = np.bincount(ci, weights=n)
        out[b] = (xlogy(n, n).sum() - xlogy(nr, nr).sum() - xlogy(nc, nc).sum() + N * math.log(N)) / N
    out = np.maximum(out, 0.0) / math.log(base)
    return out.reshape(counts.shape[:-1])


def _null_kernel():
    from numba import njit

    @njit(cache=True, nogil=True)
    def null_plugin(x, y, ky, nx_log, ny_log, permutations, seed):  # pragma: no cover - compiled
        np.random.seed(seed)
        n = x.size
        table = np.zeros((x.max() + 1) * ky, dtype=np.int32)
        yy = y.copy()
        out = np.empty(permutations)
        nlogn = n * math.log(n)
        for p in range(permutations):
            for i in range(n - 1, 0, -1):  # Fisher-Yates
                j = np.random.randint(0, i + 1)
                t = yy[i]
                yy[i] = yy[j]
                yy[j] = t
            for i in range(n):
                table[x[i] * ky + yy[i]] += 1
            s = 0.0
            for i in range(n):
                c = x[i] * ky + yy[i]
                v = table[c]
                if v > 0:
                    s += v * math.log(v)
                    table[c] = 0
            out[p] = (s - nx_log - ny_log + nlogn) / n
        return out

    return null_plugin


_NULL = None


def permutation_null(rows, cols, counts, *, permutations: int, seed: int, base: float):
    """Null distribution of the plug-in mutual information of a table, by shuffling one variable.

    Parameters
    ----------
    rows, cols, counts : ndarray (cells,)
        Nonzero cells of the table and their counts.
    permutations : int
        Number of shuffles (fewer, but at least :data:`MIN_PERMUTATIONS`,
        where they would cost more than :data:`PERMUTATION_BUDGET` pairs).
    seed : int
    base : float

    Returns
    -------
    mean, sd : float
        Mean and standard deviation of the null plug-in values (``base`` units).
    method : str
        ``"permutation"``, ``"chi-square"`` (a table with at least
        :data:`CHI_SQUARE_FILL` pairs per cell) or ``"exact"`` (a constant
        variable: the value is 0 under every shuffle).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import permutation_null
    >>> rng = np.random.default_rng(0)
    >>> r, c = np.divmod(np.arange(64), 8)
    >>> mean, sd, how = permutation_null(r, c, rng.integers(1, 5, 64), permutations=200, seed=0, base=2)
    >>> how, bool(0 < mean < 0.5)
    ('permutation', True)
    """
    global _NULL
    counts = np.asarray(counts, dtype=np.int64)
    N = int(counts.sum())
    _, ri = np.unique(rows, return_inverse=True)
    _, ci = np.unique(cols, return_inverse=True)
    nr = np.bincount(ri, weights=counts)
    nc = np.bincount(ci, weights=counts)
    kx, ky = int(np.count_nonzero(nr)), int(np.count_nonzero(nc))
    lb = math.log(base)
    if N == 0 or kx < 2 or ky < 2:
        return 0.0, 0.0, "exact"  # a constant variable: the MI is 0 under every shuffle
    if N >= CHI_SQUARE_FILL * kx * ky:
        df = (kx - 1) * (ky - 1)
        return df / (2.0 * N) / lb, math.sqrt(2.0 * df) / (2.0 * N) / lb, "chi-square"
    permutations = int(min(permutations, max(MIN_PERMUTATIONS, PERMUTATION_BUDGET // N)))
    if _NULL is None:
        _NULL = _null_kernel()
    x = np.repeat(ri.astype(np.int32), counts)
    y = np.repeat(ci.astype(np.int32), counts)
    from scipy.special import xlogy

    vals = _NULL(x, y, int(ci.max()) + 1, float(xlogy(nr, nr).sum()), float(xlogy(nc, nc).sum()),
                 int(permutations), int(seed) % (2 ** 32)) / lb
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0, "permutation"


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left NaN and not counted).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs._uncertainty import holm
    >>> holm(np.array([0.01, 0.04, np.nan, 0.03])).round(3).tolist()
    [0.03, 0.06, nan, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out
