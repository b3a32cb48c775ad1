"""Synthetic expert dictionaries with controlled coherence, and sparse tokens.

Used to reproduce Paper A's coherence barrier: build experts whose mutual
coherence is a chosen ``mu``, draw tokens that are exact ``k``-sparse
combinations of them, and ask which routing rule recovers the support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infomoe._repr import dataclass_repr
from infomoe._validate import as_float_array, check_positive_float, check_positive_int
from infomoe.routing._checks import check_flag
from infomoe.routing._coherence import mutual_coherence, normalize_rows, welch_bound

__all__ = ["low_coherence_frame", "coherent_dictionary", "sparse_tokens", "SparseTokens"]


def low_coherence_frame(n_experts: int, dim: int, *, n_iter: int = 300, seed: int = 0) -> np.ndarray:
    """Unit vectors with low mutual coherence, by alternating projection.

    Parameters
    ----------
    n_experts : int
        Number of vectors ``E``.
    dim : int
        Dimension ``d``.
    n_iter : int, default 300
    seed : int, default 0

    Returns
    -------
    ndarray, shape (n_experts, dim)
        Unit rows.  For ``E <= d`` they are orthonormal (coherence 0); for
        ``E > d`` the coherence approaches (but need not reach) the Welch bound.

    Notes
    -----
    Alternates between Gram matrices whose off-diagonal entries are clipped to
    ``[-mu_t, mu_t]`` (``mu_t`` = Welch bound) and the nearest rank-``d`` tight
    frame Gram matrix ``(E/d) V V^T`` (top-``d`` eigenvectors ``V``); keeps the
    least coherent iterate.

    References
    ----------
    Tropp, Dhillon, Heath & Strohmer 2005, "Designing structured tight frames
    via an alternating projection method", IEEE T-IT 51(1), Algorithm 1.

    Examples
    --------
    >>> from infomoe.routing import mutual_coherence
    >>> round(mutual_coherence(low_coherence_frame(4, 8)), 12)
    0.0
    """
    n = check_positive_int(n_experts, "n_experts")
    d = check_positive_int(dim, "dim")
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    rng = np.random.default_rng(seed)
    if n <= d:
        q, _ = np.linalg.qr(rng.standard_normal((d, n)))
        return q.T.copy()
    target = welch_bound(n, d)
    w = normalize_rows(rng.standard_normal((n, d)))
    best, best_mu = w, mutual_coherence(w)
    for _ in range(n_iter):
        g = w @ w.T
        g = np.clip(g, -target, target)
        np.fill_diagonal(g, 1.0)
        vals, vecs = np.linalg.eigh(g)
        w = normalize_rows(vecs[:, -d:] * np.sqrt(np.maximum(vals[-d:], 1e-12)))
        mu = mutual_coherence(w)
        if mu < best_mu:
            best, best_mu = w, mu
    return best


def coherent_dictionary(n_experts: int, dim: int, coherence: float, *, base=None, seed: int = 0,
                        tol: float = 1e-9) -> np.ndarray:
    """Expert vectors whose mutual coherence is exactly ``coherence``.

    Parameters
    ----------
    n_experts, dim : int
    coherence : float
        Target ``mu`` in ``[mu(base), 1)``.
    base : array_like, shape (n_experts, dim), optional
        Starting dictionary (default: :func:`low_coherence_frame`).
    seed : int, default 0
        Seeds the base (if not given) and the shared direction.
    tol : float, default 1e-9
        Tolerance on the achieved coherence.

    Returns
    -------
    ndarray, shape (n_experts, dim)
        Unit rows with ``|mutual_coherence - coherence| <= tol``.

    Notes
    -----
    ``w_i(t) = normalize(b_i + t u)`` pulls every expert towards one random
    direction ``u``; ``mu(t)`` is continuous with ``mu(0) = mu(base)`` and
    ``mu(t) -> 1``, and ``t`` is found by bisection.  Larger ``t`` makes all
    experts look alike: the regime where greedy routing fails.

    Examples
    --------
    >>> from infomoe.routing import mutual_coherence
    >>> W = coherent_dictionary(16, 8, 0.6)
    >>> round(mutual_coherence(W), 6)
    0.6
    """
    n = check_positive_int(n_experts, "n_experts")
    d = check_positive_int(dim, "dim")
    if n < 2:
        raise ValueError("`n_experts` must be >= 2 for mutual coherence to be defined.")
    mu = check_positive_float(coherence, "coherence", allow_zero=True)
    if mu >= 1:
        raise ValueError(f"`coherence` must be < 1, got {coherence!r}.")
    tol = check_positive_float(tol, "tol")
    if base is None:
        b = low_coherence_frame(n, d, seed=seed)
    else:
        b = normalize_rows(base, name="base")
        if b.shape != (n, d):
            raise ValueError(f"`base` must have shape {(n, d)}, got {b.shape}.")
    mu0 = mutual_coherence(b)
    if mu < mu0 - tol:
        raise ValueError(f"`coherence` = {mu:g} is below the base dictionary's coherence {mu0:.6g} "
                         f"(Welch bound for E={n}, d={d}: {welch_bound(n, d):.6g}); ask for more, or pass a "
                         "less coherent `base`.")
    if abs(mu - mu0) <= tol:
        return b
    u = np.random.default_rng([seed, 1]).standard_normal(d)
    u /= np.linalg.norm(u)

    def make(t):
        return normalize_rows(b + t * u)

    lo, hi = 0.0, 1.0
    while mutual_coherence(make(hi)) < mu:
        hi *= 2.0
        if hi > 1e12:  # pragma: no cover - mu < 1 is always reached
            raise RuntimeError("could not reach the requested coherence")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        m = mutual_coherence(make(mid))
        if abs(m - mu) <= tol:
            return make(mid)
        if m < mu:
            lo = mid
        else:
            hi = mid
    return make(0.5 * (lo + hi))  # pragma: no cover


@dataclass(frozen=True)
class SparseTokens:
    """Tokens that are sparse combinations of expert vectors.

    Attributes
    ----------
    tokens : ndarray, shape (n_tokens, dim)
        ``x_t = sum_{i in S_t} c_{t,i} w_i / ||w_i|| + noise``.
    support : ndarray of int64, shape (n_tokens, k)
        True support ``S_t``, ascending.
    coefficients : ndarray, shape (n_tokens, k)
        ``c_t`` on the unit-normalised experts, in support order.
    """

    __repr__ = dataclass_repr  # arrays as shape and range: one short line

    tokens: np.ndarray
    support: np.ndarray
    coefficients: np.ndarray


def sparse_tokens(W, n_tokens: int, k: int, *, coef_range=(1.0, 2.0), random_signs: bool = True,
                  noise: float = 0.0, seed: int = 0) -> SparseTokens:
    """Draw tokens ``x = W_S^T c`` with a uniformly random support of size ``k``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    n_tokens, k : int
    coef_range : (float, float), default (1, 2)
        Magnitudes ``|c_i|`` are uniform in this range; its ratio is the dynamic
        range that thresholding is sensitive to.
    random_signs : bool, default True
    noise : float, default 0
        Standard deviation of added Gaussian noise per coordinate.
    seed : int, default 0

    Returns
    -------
    SparseTokens

    Examples
    --------
    >>> import numpy as np
    >>> s = sparse_tokens(np.eye(4), 3, 2)
    >>> s.tokens.shape, s.support.shape
    ((3, 4), (3, 2))
    """
    u = normalize_rows(W)
    n_tokens = check_positive_int(n_tokens, "n_tokens")
    k = check_positive_int(k, "k")
    if k > u.shape[0]:
        raise ValueError(f"`k` must be at most the number of experts ({u.shape[0]}), got {k}.")
    cr = as_float_array(coef_range, "coef_range", ndim=1)
    if cr.shape != (2,):
        raise ValueError(f"`coef_range` must be a pair (low, high), got {cr.shape[0]} values.")
    lo, hi = float(cr[0]), float(cr[1])
    random_signs = check_flag(random_signs, "random_signs")
    if not 0 < lo <= hi:
        raise ValueError(f"`coef_range` must be (low, high) with 0 < low <= high, got {coef_range!r}.")
    noise = check_positive_float(noise, "noise", allow_zero=True)
    rng = np.random.default_rng(seed)
    support = np.sort(np.argsort(rng.random((n_tokens, u.shape[0])), axis=1)[:, :k], axis=1)
    c = rng.uniform(lo, hi, size=(n_tokens, k))
    if random_signs:
        c *= rng.choice([-1.0, 1.0], size=(n_tokens, k))
    x = np.einsum("tk,tkd->td", c, u[support])
    if noise:
        x = x + noise * rng.standard_normal(x.shape)
    return SparseTokens(x, support.astype(np.int64), c)
