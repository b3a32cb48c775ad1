"""The coherence barrier: support recovery of exact, OMP and top-k routing versus coherence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infomoe._progress import progress_bar
from infomoe._repr import dataclass_repr
from infomoe._validate import as_float_array, check_choice, check_positive_int
from infomoe.routing._coherence import mutual_coherence, normalize_rows, welch_bound
from infomoe.routing._subset import best_subset, omp, recovery_rate, thresholding
from infomoe.routing._synthetic import coherent_dictionary, sparse_tokens

__all__ = ["CoherenceBarrier", "coherence_barrier", "support_recovery"]

_METHODS = ("exact", "omp", "thresholding")


def support_recovery(W, tokens, support, *, methods=_METHODS) -> dict:
    """Recovery rate of each routing rule on tokens with a known support.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    tokens : array_like, shape (tokens, dim)
    support : array_like of int, shape (tokens, k)
        The true supports.
    methods : sequence of {"exact", "omp", "thresholding"}

    Returns
    -------
    dict
        ``{method: recovery rate}``.

    Notes
    -----
    ``"exact"`` is :func:`best_subset`, ``"thresholding"`` is top-k of
    ``|<w_i, x>|``.

    References
    ----------
    Tropp 2004, "Greed is Good", IEEE T-IT 50(10).

    Examples
    --------
    >>> import numpy as np
    >>> support_recovery(np.eye(4), [[1.0, 2.0, 0.0, 0.0]], [[0, 1]])
    {'exact': 1.0, 'omp': 1.0, 'thresholding': 1.0}
    """
    from infomoe.routing._subset import _as_supports

    n_experts = normalize_rows(W).shape[0]
    s = _as_supports(support, "support", n_experts)
    n_tokens = np.atleast_2d(np.asarray(tokens)).shape[0]
    if s.shape[0] != n_tokens:
        raise ValueError(f"`support` has {s.shape[0]} rows but `tokens` has {n_tokens}; give one true "
                         "support per token.")
    k = s.shape[1]
    fns = {"exact": best_subset, "omp": omp, "thresholding": thresholding}
    for m in methods:
        check_choice(m, "methods", _METHODS)
    return {m: recovery_rate(s, fns[m](W, tokens, k).support, n_experts=n_experts) for m in methods}


@dataclass(frozen=True)
class CoherenceBarrier:
    """Recovery rates along a coherence sweep (see :func:`coherence_barrier`).

    Attributes
    ----------
    coherence : ndarray, shape (n_points,)
        Measured mutual coherence of each dictionary.
    recovery : dict of str -> ndarray, shape (n_points,)
        Fraction of tokens whose support each method recovered.
    n_experts, dim, k, n_tokens : int
    welch : float
        Welch bound for ``(n_experts, dim)``.
    omp_threshold : float
        ``1 / (2k - 1)``: below it OMP provably recovers every support.
    """

    __repr__ = dataclass_repr  # arrays as shape and range: one short line

    coherence: np.ndarray
    recovery: dict
    n_experts: int
    dim: int
    k: int
    n_tokens: int
    welch: float
    omp_threshold: float


def coherence_barrier(n_experts: int, dim: int, k: int, coherences, *, n_tokens: int = 200,
                      methods=_METHODS, coef_range=(1.0, 2.0), noise: float = 0.0, seed: int = 0,
                      progress: bool = False) -> CoherenceBarrier:
    """Sweep the experts' mutual coherence and measure support recovery.

    For each ``mu`` in ``coherences`` build a dictionary with exactly that
    coherence (:func:`coherent_dictionary`), draw ``n_tokens`` ``k``-sparse
    tokens (:func:`sparse_tokens`) and record how often exact best-subset,
    OMP and thresholding (top-k routing) return the true support.

    Parameters
    ----------
    n_experts, dim, k : int
    coherences : array_like of float
        Targets in ``[mu_min, 1)``; ``mu_min`` is that of the base frame.
    n_tokens : int, default 200
    methods : sequence of {"exact", "omp", "thresholding"}
    coef_range : (float, float), default (1, 2)
    noise : float, default 0
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    CoherenceBarrier

    Notes
    -----
    Paper A's claim: exact selection keeps recovering as ``mu`` grows, OMP
    is guaranteed only below ``1 / (2k - 1)``, and thresholding degrades first.

    References
    ----------
    Paper A (arXiv 2601.03577), "Coherence Barrier" (reconstruction); Tropp
    2004, Cor. 3.6.

    Examples
    --------
    >>> r = coherence_barrier(12, 8, 2, [0.3, 0.9], n_tokens=50)
    >>> r.recovery["exact"].tolist()
    [1.0, 1.0]
    """
    n = check_positive_int(n_experts, "n_experts")
    d = check_positive_int(dim, "dim")
    k = check_positive_int(k, "k")
    mus = as_float_array(coherences, "coherences", ndim=1)
    for m in methods:
        check_choice(m, "methods", _METHODS)
    from infomoe.routing._synthetic import low_coherence_frame

    base = low_coherence_frame(n, d, seed=seed)
    measured = np.empty(mus.size)
    rec = {m: np.empty(mus.size) for m in methods}
    for i in progress_bar(range(mus.size), enabled=progress, desc="coherence sweep"):
        W = coherent_dictionary(n, d, float(mus[i]), base=base, seed=seed)
        measured[i] = mutual_coherence(W)
        toks = sparse_tokens(W, n_tokens, k, coef_range=coef_range, noise=noise, seed=seed + 1 + i)
        res = support_recovery(W, toks.tokens, toks.support, methods=methods)
        for m in methods:
            rec[m][i] = res[m]
    return CoherenceBarrier(measured, rec, n, d, k, int(n_tokens), welch_bound(n, d), 1.0 / (2 * k - 1))
