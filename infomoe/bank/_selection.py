"""The data-dependent selection rule over a finite bank: a Gibbs posterior.

``q_alpha(w | S) ∝ pi(w) exp(-alpha * m * L_S(w))`` with ``L_S`` the
empirical risk of expert ``w`` on the training set ``S`` of ``m`` samples.
``alpha = 0`` ignores the data (``q = pi``); ``alpha -> inf`` is empirical
risk minimisation.  The *soft* rule keeps the whole row ``q(.|S)``; the
*sampled* rule draws one expert from it.
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from infomoe._softmax import softmax
from infomoe._validate import (as_float_array, as_probability_rows, check_positive_float,
                               check_positive_int)

__all__ = ["draw_training_sets", "empirical_risks", "gibbs_selection", "sample_selection"]


def draw_training_sets(n_pool: int, m: int, n_sets: int, *, seed: int = 0,
                       replace: bool = True) -> np.ndarray:
    """Indices of ``n_sets`` training sets of ``m`` samples drawn from a pool.

    Parameters
    ----------
    n_pool : int
        Size of the pool.
    m : int
        Samples per training set.
    n_sets : int
        Number of training sets ``M``.
    seed : int
        Seed.
    replace : bool
        Draw with replacement (default).  Then every ``S`` is an i.i.d.
        sample of ``m`` draws from the uniform distribution on the pool, so the
        pool *is* the population and the pool risk is the exact population risk.

    Returns
    -------
    ndarray of shape (n_sets, m), int64

    Notes
    -----
    Without replacement each row is a uniformly random ``m``-subset; every
    pool element is still marginally uniform, so ``E_S L_S(w)`` equals the pool
    risk either way.

    Examples
    --------
    >>> from infomoe.bank import draw_training_sets
    >>> draw_training_sets(100, 8, 3, seed=0).shape
    (3, 8)
    """
    n_pool = check_positive_int(n_pool, "n_pool")
    m = check_positive_int(m, "m")
    n_sets = check_positive_int(n_sets, "n_sets")
    if not replace and m > n_pool:
        raise ValueError(f"`m` = {m} exceeds the pool size {n_pool}; use replace=True or a "
                         "smaller m.")
    rng = np.random.default_rng([seed, 23])
    if replace:
        return rng.integers(0, n_pool, size=(n_sets, m), dtype=np.int64)
    return np.stack([rng.choice(n_pool, m, replace=False) for _ in range(n_sets)]).astype(np.int64)


def empirical_risks(losses, sets) -> np.ndarray:
    """Empirical risk ``L_S(w)`` of every expert on every training set.

    Parameters
    ----------
    losses : array_like of shape (n_pool, K)
        Loss of expert ``k`` on pool sample ``i`` (0/1 or any bounded loss).
    sets : array_like of shape (M, m), int
        Row ``j`` holds the pool indices of training set ``S_j``.

    Returns
    -------
    ndarray of shape (M, K)
        ``L[j, k] = mean_{i in S_j} losses[i, k]``.

    Notes
    -----
    Computed as ``C @ losses / m`` with ``C`` the (M, n_pool) count matrix
    of the sets, so repeated indices count with multiplicity.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.bank import empirical_risks
    >>> empirical_risks([[1., 0.], [0., 0.], [1., 1.]], [[0, 1], [2, 2]])
    array([[0.5, 0. ],
           [1. , 1. ]])
    """
    L = as_float_array(losses, "losses", ndim=2)
    idx = np.asarray(sets)
    if idx.ndim != 2 or idx.size == 0:
        raise ValueError(f"`sets` must be a non-empty 2-D array of pool indices (M, m), got shape "
                         f"{idx.shape}.")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"`sets` must hold integer indices, got dtype {idx.dtype}.")
    if idx.min() < 0 or idx.max() >= L.shape[0]:
        bad = int(idx.max() if idx.max() >= L.shape[0] else idx.min())
        raise ValueError(f"`sets` holds index {bad} outside the pool of {L.shape[0]} samples (rows of `losses`).")
    M, m = idx.shape
    counts = np.zeros((M, L.shape[0]))
    np.add.at(counts, (np.repeat(np.arange(M), m), idx.ravel()), 1.0)
    return counts @ L / m


def gibbs_selection(train_risks, alpha, m: int, *, prior=None) -> np.ndarray:
    """Gibbs selection rule ``q_alpha(w|S) ∝ pi(w) exp(-alpha m L_S(w))``.

    Parameters
    ----------
    train_risks : array_like of shape (M, K) or (K,)
        Empirical risks ``L_S(w)`` (one row per training set).
    alpha : float
        Data dependence, >= 0; the inverse temperature is ``gamma = alpha * m``.
    m : int
        Training-set size.
    prior : array_like of shape (K,), optional
        Prior ``pi(w)`` (positive, summing to 1); default uniform.

    Returns
    -------
    ndarray of the shape of ``train_risks``
        Rows ``q(.|S_j)``, each summing to 1.

    Notes
    -----
    Computed in the log domain, ``log q = log pi - gamma L_S - logsumexp(.)``,
    so ``alpha`` of any size is safe (``alpha -> inf`` gives ERM with ties
    shared according to the prior).

    References
    ----------
    Aminian et al. (2021), "Characterizing the generalization error of Gibbs
    algorithm with symmetrized KL information", arXiv 2107.13656, eq. (3).

    Examples
    --------
    >>> from infomoe.bank import gibbs_selection
    >>> gibbs_selection([0.1, 0.2], 0.0, 10)
    array([0.5, 0.5])
    >>> gibbs_selection([0.1, 0.2], 1e9, 10).round(6)
    array([1., 0.])
    """
    L = as_float_array(train_risks, "train_risks", ndim=(1, 2))
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"`alpha` must be a real number >= 0, got {alpha!r}.")
    alpha = check_positive_float(alpha, "alpha", allow_zero=True)
    m = check_positive_int(m, "m")
    K = L.shape[-1]
    if prior is None:
        log_pi = np.full(K, -np.log(K))
    else:
        pi = as_probability_rows(prior, "prior")
        if pi.shape != (K,):
            raise ValueError(f"`prior` must have shape ({K},) (one weight per expert), "
                             f"got {pi.shape}.")
        if (pi <= 0).any():
            raise ValueError("`prior` must be positive for every expert.")
        log_pi = np.log(pi)
    return softmax(log_pi - (alpha * m) * L)


def sample_selection(q, *, seed: Optional[int] = 0) -> np.ndarray:
    """Draw one expert per row of ``q`` (the sampled/hard variant of the rule).

    Parameters
    ----------
    q : array_like of shape (M, K)
        Selection distributions ``q(.|S_j)``.
    seed : int, optional
        Seed (``None``: fresh randomness).

    Returns
    -------
    ndarray of shape (M,), int64
        ``W_j ~ q(.|S_j)``, drawn by inverting the cumulative sums.

    Examples
    --------
    >>> from infomoe.bank import sample_selection
    >>> sample_selection([[0., 1.], [1., 0.]])
    array([1, 0])
    """
    Q = as_probability_rows(q, "q")
    if Q.ndim != 2:
        raise ValueError(f"`q` must be 2-D (training sets, experts), got shape {Q.shape}.")
    rng = np.random.default_rng(None if seed is None else [seed, 29])
    u = rng.random(Q.shape[0])
    c = np.cumsum(Q, axis=1)
    c[:, -1] = np.inf  # guard against round-off: the last expert takes the remainder
    w = (u[:, None] >= c).sum(axis=1)  # experts of zero probability are never drawn
    return w.astype(np.int64)
