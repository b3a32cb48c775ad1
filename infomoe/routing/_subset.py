"""Routing as sparse subset selection: exact best subset, thresholding, OMP.

A token ``x`` (dimension ``d``) is approximated by ``k`` expert vectors,
``x ~ W_S^T c`` with ``W`` of shape ``(experts, dim)``: a sparse code in the
dictionary whose atoms are the (unit-normalised) rows of ``W``.  Choosing the
best ``S`` is NP-hard (Natarajan 1995).  Top-k routing scores ``<w_i, x>`` and
keeps the ``k`` largest: one-shot *thresholding*.  OMP re-scores against the
residual after each pick.  :func:`best_subset` solves the problem exactly, by
enumeration for small ``C(E, k)`` and by branch-and-bound beyond it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from infomoe._progress import progress_bar
from infomoe._repr import dataclass_repr
from infomoe._validate import as_float_array, check_choice, check_positive_int
from infomoe.routing._coherence import babel, normalize_rows

__all__ = [
    "SubsetSelection",
    "best_subset",
    "thresholding",
    "omp",
    "recovery_rate",
]


@dataclass(frozen=True)
class SubsetSelection:
    """Chosen expert subsets for a batch of tokens.

    Attributes
    ----------
    support : ndarray of int64, shape (tokens, k)
        Expert ids per token, ascending.
    coefficients : ndarray, shape (tokens, k)
        Least-squares weights of ``W[support]`` (rows of the original ``W``),
        ``x ~ sum_j coefficients[j] * W[support[j]]``.
    residual : ndarray, shape (tokens,)
        ``||x - W_S^T c||_2`` at the least-squares ``c``.
    method : str
        ``"exhaustive"``, ``"branch_and_bound"``, ``"thresholding"`` or ``"omp"``.
    nodes : ndarray of int64, shape (tokens,)
        Subsets evaluated per token (search effort; ``k`` for the greedy
        methods, ``C(E, k)`` for enumeration).
    """

    __repr__ = dataclass_repr  # arrays as shape and range: one short line

    support: np.ndarray
    coefficients: np.ndarray
    residual: np.ndarray
    method: str
    nodes: np.ndarray


def _prepare(W, X, k):
    u = normalize_rows(W)
    norms = np.linalg.norm(as_float_array(W, "W", ndim=2), axis=1)
    x = as_float_array(X, "X", ndim=(1, 2))
    single = x.ndim == 1
    x = np.atleast_2d(x)
    if x.shape[1] != u.shape[1]:
        raise ValueError(f"`X` has dimension {x.shape[1]} but the expert vectors (rows of `W`) have "
                         f"dimension {u.shape[1]}.")
    k = check_positive_int(k, "k")
    if k > u.shape[0]:
        raise ValueError(f"`k` must be at most the number of experts ({u.shape[0]}), got {k}.")
    return u, norms, x, k, single


def _least_squares(u, x, support):
    """Batched least squares of each token on its support (unit atoms).

    Returns coefficients on the unit atoms and residual norms.
    """
    a = u[support]  # (T, k, d)
    g = np.einsum("tkd,tld->tkl", a, a)
    b = np.einsum("tkd,td->tk", a, x)
    c = np.einsum("tkl,tl->tk", np.linalg.pinv(g, hermitian=True), b)
    r = x - np.einsum("tk,tkd->td", c, a)
    return c, np.linalg.norm(r, axis=1)


def _finish(u, norms, x, support, method, nodes, single):
    support = np.sort(np.asarray(support, dtype=np.int64), axis=1)
    c, res = _least_squares(u, x, support)
    coef = c / norms[support]
    nodes = np.broadcast_to(np.asarray(nodes, dtype=np.int64), (support.shape[0],)).copy()
    if single:
        return SubsetSelection(support[0], coef[0], res[:1], method, nodes[:1])
    return SubsetSelection(support, coef, res, method, nodes)


def thresholding(W, X, k: int, *, absolute: bool = True) -> SubsetSelection:
    """One-shot thresholding: keep the ``k`` experts with the largest scores.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
        Expert vectors as rows (normalised internally).
    X : array_like, shape (tokens, dim) or (dim,)
    k : int
    absolute : bool, default True
        Rank by ``|<w_i, x>|`` (sparse-recovery thresholding).  ``False`` ranks
        by the signed score ``<w_i, x>`` exactly as a top-k router ranks its
        logits.

    Returns
    -------
    SubsetSelection

    Notes
    -----
    ``S = top-k_i |<w_i, x>| / ||w_i||``.  For ``x = sum_{i in S} c_i w_i`` it
    recovers ``S`` when ``min_S |c_i| > 2 mu k max_S |c_i|`` (roughly), so it
    depends on the dynamic range of the coefficients, unlike OMP.

    References
    ----------
    Paper A (arXiv 2601.03577): top-k routing as greedy selection;
    Schnass & Vandergheynst 2008, "Dictionary preconditioning for greedy
    algorithms", IEEE T-SP 56(5), for thresholding's recovery condition.

    Examples
    --------
    >>> import numpy as np
    >>> thresholding(np.eye(3), [0.0, 2.0, 1.0], 2).support
    array([1, 2])
    """
    u, norms, x, k, single = _prepare(W, X, k)
    s = x @ u.T
    if absolute:
        s = np.abs(s)
    support = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return _finish(u, norms, x, support, "thresholding", k, single)


def omp(W, X, k: int) -> SubsetSelection:
    """Orthogonal matching pursuit with ``k`` steps.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    X : array_like, shape (tokens, dim) or (dim,)
    k : int

    Returns
    -------
    SubsetSelection

    Notes
    -----
    ``r_0 = x``; at step ``t`` pick ``argmax_{i not in S} |<w_i, r_t>|``, add it to
    ``S`` and set ``r_{t+1} = x - P_S x``.  Recovers every ``k``-sparse support
    when ``mu_1(k-1) + mu_1(k) < 1``, in particular when ``mu < 1/(2k - 1)``.

    References
    ----------
    Pati, Rezaiifar & Krishnaprasad 1993; Tropp 2004, "Greed is Good", IEEE
    T-IT 50(10), Algorithm 2.1 and Thm. 3.5 / Cor. 3.6.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> omp(W, [1.0, 0.2], 1).support
    array([0])
    """
    u, norms, x, k, single = _prepare(W, X, k)
    t = x.shape[0]
    chosen = np.zeros((t, 0), dtype=np.int64)
    taken = np.zeros((t, u.shape[0]), dtype=bool)
    r = x.copy()
    rows = np.arange(t)
    for _ in range(k):
        s = np.abs(r @ u.T)
        s[taken] = -np.inf
        j = np.argmax(s, axis=1)
        taken[rows, j] = True
        chosen = np.concatenate([chosen, j[:, None]], axis=1)
        a = u[chosen]
        c = np.einsum("tkl,tl->tk", np.linalg.pinv(np.einsum("tkd,tld->tkl", a, a), hermitian=True),
                      np.einsum("tkd,td->tk", a, x))
        r = x - np.einsum("tk,tkd->td", c, a)
    return _finish(u, norms, x, chosen, "omp", k, single)


def best_subset(W, X, k: int, *, method: str = "auto", max_exhaustive: int = 20_000,
                progress: bool = False) -> SubsetSelection:
    """Exact best ``k``-subset: ``argmin_{|S| = k} min_c ||x - W_S^T c||``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    X : array_like, shape (tokens, dim) or (dim,)
    k : int
    method : {"auto", "exhaustive", "branch_and_bound"}
        ``"auto"`` enumerates when ``C(E, k) <= max_exhaustive`` and uses
        branch-and-bound otherwise.  Both are exact.
    max_exhaustive : int, default 20000
    progress : bool, default False
        Show a tqdm bar over tokens for branch-and-bound (if tqdm is installed).

    Returns
    -------
    SubsetSelection
        With ``nodes`` the number of subsets or search nodes evaluated.

    Notes
    -----
    Enumeration maximises ``||P_S x||^2 = b_S^T G_S^{-1} b_S`` (``b = U x``,
    ``G = U U^T``) over all ``C(E, k)`` supports, vectorised over tokens.

    Branch-and-bound searches depth-first over included sets ``F`` with free
    experts ``R``, ordered by ``|<w_i, x>|``, starting from the OMP solution as
    incumbent.  A node is pruned when a lower bound on the residual of every
    completion reaches the incumbent:

    * monotonicity: ``RSS(F u T) >= RSS(F u R)`` (used while ``|F u R| < d``);
    * coherence: with ``r_F = x - P_F x`` and ``lambda = 1 - mu_1(k - 1) > 0``
      (Gershgorin: the smallest eigenvalue of any ``k``-atom Gram matrix),
      ``RSS(F u T) >= ||r_F||^2 - (sum of the k - |F| largest <w_j, r_F>^2, j in R) / lambda``,
      because the Schur complement of ``G_F`` in ``G_{F u T}`` has eigenvalues
      ``>= lambda``.

    Both bounds are valid, so the search returns a global optimum.  Ties
    (several optimal supports) are broken by search order, so the support may
    then differ from enumeration's while the residual is the same.

    References
    ----------
    Natarajan 1995, "Sparse approximate solutions to linear systems", SIAM J.
    Comput. 24(2) (NP-hardness); Furnival & Wilson 1974, "Regressions by
    leaps and bounds", Technometrics 16(4) (monotone bound); Tropp 2004,
    Def. 3.1 (Babel function) for the eigenvalue bound.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    >>> best_subset(W, [1.0, 1.0, 0.5], 2).support
    array([2, 3])
    """
    u, norms, x, k, single = _prepare(W, X, k)
    check_choice(method, "method", ("auto", "exhaustive", "branch_and_bound"))
    max_exhaustive = check_positive_int(max_exhaustive, "max_exhaustive")
    n_sub = math.comb(u.shape[0], k)
    if method == "auto":
        method = "exhaustive" if n_sub <= max_exhaustive else "branch_and_bound"
    if method == "exhaustive":
        support = _exhaustive(u, x, k)
        nodes = n_sub
    else:
        support, nodes = _branch_and_bound(u, x, k, progress)
    return _finish(u, norms, x, support, method, nodes, single)


def _exhaustive(u, x, k):
    n = u.shape[0]
    combos = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)  # lexicographic
    corr = x @ u.T  # (T, E)
    t = x.shape[0]
    best_val = np.full(t, -np.inf)
    best_idx = np.zeros(t, dtype=np.int64)
    chunk = max(1, 2_000_000 // max(t * k, 1))
    for lo in range(0, combos.shape[0], chunk):
        cs = combos[lo:lo + chunk]
        a = u[cs]  # (s, k, d)
        ginv = np.linalg.pinv(np.einsum("skd,sld->skl", a, a), hermitian=True)
        b = corr[:, cs]  # (T, s, k)
        energy = np.einsum("tsk,skl,tsl->ts", b, ginv, b)
        j = np.argmax(energy, axis=1)
        val = energy[np.arange(t), j]
        if lo == 0:
            better = np.ones(t, dtype=bool)
        else:  # strict improvement: ties keep the lexicographically first support
            better = val > best_val + 1e-12 * np.maximum(1.0, np.abs(best_val))
        best_val = np.where(better, val, best_val)
        best_idx = np.where(better, lo + j, best_idx)
    return combos[best_idx]


def _branch_and_bound(u, x, k, progress):
    lam = 1.0 - babel(u @ u.T, k - 1, gram=True) if k > 1 else 1.0
    incumbent = omp(u, x, k).support
    supports = np.empty((x.shape[0], k), dtype=np.int64)
    nodes = np.empty(x.shape[0], dtype=np.int64)
    for i in progress_bar(range(x.shape[0]), enabled=progress, desc="branch and bound"):
        supports[i], nodes[i] = _bnb_one(u, x[i], k, lam, incumbent[i])
    return supports, nodes


def _rss(u, x, support):
    a = u[list(support)].T
    c, *_ = np.linalg.lstsq(a, x, rcond=None)
    r = x - a @ c
    return float(r @ r)


def _bnb_one(u, x, k, lam, start):
    n, d = u.shape
    order = np.argsort(-np.abs(u @ x), kind="stable")
    best = {"rss": _rss(u, x, start), "support": np.sort(np.asarray(start)), "nodes": 1}
    tol = 1e-12 * max(float(x @ x), 1e-300)

    def visit(f_ids, q, r, pos):
        # f_ids: included experts; q: (d, m) orthonormal basis of span(F); r = x - P_F x
        if best["rss"] <= tol:  # RSS >= 0: nothing can beat a zero-residual incumbent
            return
        need = k - len(f_ids)
        rss_f = float(r @ r)
        if need == 0:
            best["nodes"] += 1
            if rss_f < best["rss"] - tol:
                best["rss"], best["support"] = rss_f, np.sort(np.array(f_ids))
            return
        free = order[pos:]
        if free.size < need:
            return
        # coherence bound
        if lam > 0:
            c2 = np.square(u[free] @ r)
            top = np.partition(c2, free.size - need)[free.size - need:].sum() if need < free.size else c2.sum()
            if rss_f - top / lam >= best["rss"] - tol:
                return
        # monotone bound: all free experts together
        if len(f_ids) + free.size < d:
            if _rss(u, x, list(f_ids) + list(free)) >= best["rss"] - tol:
                return
        for j in range(pos, n - need + 1):
            e = order[j]
            v = u[e] - (q @ (q.T @ u[e]) if q.shape[1] else 0.0)
            nv = np.linalg.norm(v)
            if nv <= 1e-12:
                # atom in span(F): the residual does not change
                visit(f_ids + [e], q, r, j + 1)
                continue
            v = v / nv
            visit(f_ids + [e], np.column_stack([q, v]), r - (v @ r) * v, j + 1)

    visit([], np.zeros((d, 0)), x.astype(np.float64), 0)
    return best["support"], best["nodes"]


def _as_supports(x, name: str, n_experts: int | None) -> np.ndarray:
    """Expert-id supports as a ``(tokens, k)`` int64 array: integers, ``>= 0``, ``< n_experts``, distinct per token."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be an integer array of expert ids, got {type(x).__name__}.")
    v = np.asarray(x)
    if v.dtype == bool or not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer expert ids, got dtype {v.dtype}.")
    if v.size == 0:
        raise ValueError(f"`{name}` is empty.")
    if v.ndim not in (1, 2):
        raise ValueError(f"`{name}` must have shape (tokens, k) (or (k,) for one token), got shape {v.shape}.")
    v = np.atleast_2d(v).astype(np.int64, copy=False)
    if v.min() < 0:
        idx = tuple(int(i) for i in np.argwhere(v < 0)[0])
        raise ValueError(f"`{name}` has a negative expert id {int(v[idx])} at index {idx}; ids must be >= 0.")
    if n_experts is not None and v.max() >= n_experts:
        idx = tuple(int(i) for i in np.argwhere(v >= n_experts)[0])
        raise ValueError(f"`{name}` has expert id {int(v[idx])} at index {idx} but there are only "
                         f"{n_experts} experts.")
    srt = np.sort(v, axis=1)
    dup = (np.diff(srt, axis=1) == 0).any(axis=1)
    if dup.any():
        raise ValueError(f"`{name}` repeats an expert id in token {int(np.argmax(dup))}; a support holds "
                         "distinct experts.")
    return srt


def recovery_rate(true_support, estimated_support, *, n_experts: int | None = None) -> float:
    """Fraction of tokens whose estimated support equals the true one (as sets).

    Parameters
    ----------
    true_support, estimated_support : array_like of int, shape (tokens, k)
        Distinct expert ids ``>= 0`` per token (a 1-D array is one token).
    n_experts : int, optional
        Number of experts; when given, every id must be below it.

    Returns
    -------
    float
        In ``[0, 1]``.

    Notes
    -----
    ``(1/T) sum_t 1[set(S_t) == set(S^_t)]``: exact support recovery, the
    success criterion of Tropp 2004.

    References
    ----------
    Tropp 2004, "Greed is Good", IEEE T-IT 50(10), §1.

    Examples
    --------
    >>> recovery_rate([[0, 1], [2, 3]], [[1, 0], [2, 4]])
    0.5
    >>> recovery_rate([[0, 1]], [[0, 5]], n_experts=4)
    Traceback (most recent call last):
    ...
    ValueError: `estimated_support` has expert id 5 at index (0, 1) but there are only 4 experts.
    """
    if n_experts is not None:
        n_experts = check_positive_int(n_experts, "n_experts")
    a = _as_supports(true_support, "true_support", n_experts)
    b = _as_supports(estimated_support, "estimated_support", n_experts)
    if a.shape != b.shape:
        raise ValueError(f"`true_support` and `estimated_support` must have the same shape, got "
                         f"{a.shape} and {b.shape}.")
    return float(np.mean(np.all(a == b, axis=1)))
