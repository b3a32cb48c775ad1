"""Coherence of expert representations: mutual coherence, Babel, Welch, ERC.

Expert vectors are the rows of ``W`` with shape ``(experts, dim)`` (the router
weight matrix: logits are ``W x``).  As a dictionary for sparse recovery the
atoms are the columns of ``W.T``.  Every measure here normalises the rows
first, so only angles matter.
"""

from __future__ import annotations

import math

import numpy as np

from infomoe._validate import as_float_array, as_labels, check_positive_int

__all__ = [
    "normalize_rows",
    "gram_matrix",
    "mutual_coherence",
    "babel",
    "welch_bound",
    "exact_recovery_condition",
]


def normalize_rows(W, *, name: str = "W") -> np.ndarray:
    """Rows of ``W`` scaled to unit Euclidean norm.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    name : str
        Argument name for error messages.

    Returns
    -------
    ndarray, float64, shape (experts, dim)

    Raises
    ------
    ValueError
        If a row is zero (its direction is undefined).

    Examples
    --------
    >>> normalize_rows([[3.0, 4.0]])
    array([[0.6, 0.8]])
    """
    a = as_float_array(W, name, ndim=2)
    # scale by the largest entry first: ||w|| of a row like [1e200, 1e200] or [1e-200, 0] would
    # overflow to inf (a zero row after division) or underflow to 0 (a spurious "zero row")
    peak = np.abs(a).max(axis=1) if a.shape[1] else np.zeros(a.shape[0])
    if (peak == 0).any():
        raise ValueError(f"row {int(np.argmin(peak))} of `{name}` is zero; every expert vector needs a "
                         "direction.")
    a = a / peak[:, None]
    return a / np.linalg.norm(a, axis=1)[:, None]


def gram_matrix(W) -> np.ndarray:
    """Gram matrix ``G = U U^T`` of the unit-normalised rows ``U`` of ``W``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)

    Returns
    -------
    ndarray, shape (experts, experts)
        ``G_ij = <w_i, w_j> / (||w_i|| ||w_j||)``; unit diagonal.

    Examples
    --------
    >>> gram_matrix([[1.0, 0.0], [1.0, 1.0]]).round(4)
    array([[1.    , 0.7071],
           [0.7071, 1.    ]])
    """
    u = normalize_rows(W)
    g = u @ u.T
    np.fill_diagonal(g, 1.0)
    return g


def _gram_or_vectors(x, gram: bool) -> np.ndarray:
    if not gram:
        return gram_matrix(x)
    g = as_float_array(x, "gram", ndim=2)
    if g.shape[0] != g.shape[1]:
        raise ValueError(f"`gram` must be square, got shape {g.shape}.")
    if not np.allclose(g, g.T, atol=1e-8):
        raise ValueError("`gram` must be symmetric.")
    if not np.allclose(np.diag(g), 1.0, atol=1e-6):
        raise ValueError("`gram` must have a unit diagonal (Gram matrix of unit vectors); "
                         "pass the vectors instead, or normalise.")
    return g


def mutual_coherence(W, *, gram: bool = False) -> float:
    """Mutual coherence ``mu = max_{i != j} |<w_i, w_j>| / (||w_i|| ||w_j||)``.

    Parameters
    ----------
    W : array_like, shape (experts, dim), or (experts, experts) with ``gram=True``
        Expert vectors as rows, or their unit-diagonal Gram matrix.
    gram : bool, default False

    Returns
    -------
    float
        In ``[0, 1]``; 0 for orthogonal experts, 1 when two are parallel.  At
        least :func:`welch_bound` ``(E, d)``.

    Notes
    -----
    ``mu = max_{i != j} |G_ij|``.  Tropp's sufficient condition for OMP (and
    basis pursuit) to recover every ``k``-sparse support is
    ``k < (1 + 1/mu) / 2``.

    References
    ----------
    Donoho & Huo 2001, "Uncertainty principles and ideal atomic decomposition",
    IEEE T-IT 47(7); Tropp 2004, "Greed is Good", IEEE T-IT 50(10), Cor. 3.6.

    Examples
    --------
    >>> round(mutual_coherence([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 4)
    0.7071
    """
    g = _gram_or_vectors(W, gram)
    if g.shape[0] < 2:
        raise ValueError("mutual coherence needs at least two experts.")
    off = np.abs(g - np.diag(np.diag(g)))
    return float(min(off.max(), 1.0))


def babel(W, m: int | None = None, *, gram: bool = False):
    """Babel function ``mu_1(m)``: the largest total coherence of one atom with ``m`` others.

    Parameters
    ----------
    W : array_like, shape (experts, dim), or a Gram matrix with ``gram=True``
    m : int, optional
        Number of other atoms, ``1 <= m <= E - 1``.  Default: all ``m``.
    gram : bool, default False

    Returns
    -------
    float or ndarray
        ``mu_1(m)``; with ``m=None`` the array ``[mu_1(1), ..., mu_1(E-1)]``.

    Notes
    -----
    ``mu_1(m) = max_{|L| = m} max_{j not in L} sum_{i in L} |<w_i, w_j>|``, i.e.
    for each atom the sum of its ``m`` largest off-diagonal ``|G_ij|``,
    maximised over atoms.  ``mu_1(1) = mu`` and ``mu_1(m) <= m mu``.  OMP
    recovers every ``k``-sparse support when ``mu_1(k-1) + mu_1(k) < 1``.

    References
    ----------
    Tropp 2004, "Greed is Good", IEEE T-IT 50(10), Def. 3.1 and Thm. 3.5.

    Examples
    --------
    >>> import numpy as np
    >>> babel(np.eye(3), 2)
    0.0
    """
    g = _gram_or_vectors(W, gram)
    n = g.shape[0]
    if n < 2:
        raise ValueError("the Babel function needs at least two experts.")
    off = np.abs(g)
    np.fill_diagonal(off, -np.inf)
    srt = -np.sort(-off, axis=1)[:, : n - 1]  # drop the diagonal (sorted last)
    curve = np.cumsum(srt, axis=1).max(axis=0)
    if m is None:
        return curve
    m = check_positive_int(m, "m")
    if m > n - 1:
        raise ValueError(f"`m` must be at most E - 1 = {n - 1}, got {m}.")
    return float(curve[m - 1])


def welch_bound(n_vectors: int, dim: int) -> float:
    """Welch lower bound on the mutual coherence of ``n`` unit vectors in ``R^d``.

    Parameters
    ----------
    n_vectors : int
        Number of vectors (experts) ``N``.
    dim : int
        Ambient dimension ``d``.

    Returns
    -------
    float
        ``sqrt((N - d) / (d (N - 1)))`` for ``N > d``; 0 for ``N <= d`` (an
        orthonormal set exists).

    Notes
    -----
    Every set of ``N > d`` unit vectors has
    ``mu >= sqrt((N - d) / (d (N - 1)))``, with equality exactly for
    equiangular tight frames.  It is also the root-mean-square off-diagonal
    ``|G_ij|`` of any unit-norm tight frame.

    References
    ----------
    Welch 1974, "Lower bounds on the maximum cross correlation of signals",
    IEEE T-IT 20(3), eq. for k = 1; Strohmer & Heath 2003, Thm. 2.3.

    Examples
    --------
    >>> round(welch_bound(8, 4), 5), round(welch_bound(64, 16), 5), welch_bound(4, 8)
    (0.37796, 0.21822, 0.0)
    """
    n = check_positive_int(n_vectors, "n_vectors")
    d = check_positive_int(dim, "dim")
    if n <= d:
        return 0.0
    return math.sqrt((n - d) / (d * (n - 1)))


def exact_recovery_condition(W, support) -> float:
    """Tropp's exact-recovery coefficient ``max_{j not in S} ||pinv(Phi_S) phi_j||_1``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
        Expert vectors as rows; the dictionary is ``Phi = normalize(W).T``.
    support : array_like of int, shape (k,)
        The support ``S`` (distinct expert ids).

    Returns
    -------
    float
        ERC(S).  If it is ``< 1``, OMP and basis pursuit recover every signal
        supported on ``S`` exactly; ``inf`` if ``Phi_S`` is rank deficient.

    Notes
    -----
    ``ERC(S) = max_{j not in S} ||Phi_S^+ phi_j||_1`` with ``Phi_S^+`` the
    Moore-Penrose pseudo-inverse; ``ERC(S) <= mu_1(k) / (1 - mu_1(k-1))``.

    References
    ----------
    Tropp 2004, "Greed is Good", IEEE T-IT 50(10), Thm. 3.1 (eq. 3.1) and
    Thm. 3.5.

    Examples
    --------
    >>> import numpy as np
    >>> exact_recovery_condition(np.eye(3), [0, 1])
    0.0
    """
    u = normalize_rows(W)
    s = as_labels(support, "support")
    n = u.shape[0]
    if s.max() >= n:
        raise ValueError(f"`support` has id {int(s.max())} but `W` has only {n} experts.")
    if np.unique(s).size != s.size:
        raise ValueError("`support` repeats an expert id; ids must be distinct.")
    if s.size >= n:
        raise ValueError("`support` must leave at least one expert outside it.")
    phi_s = u[s].T  # (dim, k)
    if np.linalg.matrix_rank(phi_s) < s.size:
        return math.inf
    coef = np.linalg.pinv(phi_s) @ u[np.setdiff1d(np.arange(n), s)].T  # (k, n - k)
    return float(np.abs(coef).sum(axis=0).max())
