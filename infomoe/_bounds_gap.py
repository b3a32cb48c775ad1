"""The measured generalization gap, with a confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infomoe._entropy import _NumberLike
from infomoe._validate import as_float_array, check_unit_interval

__all__ = ["GapEstimate", "generalization_gap", "split_supersample_losses"]


@dataclass(frozen=True, eq=False)
class GapEstimate(_NumberLike):
    """A measured generalization gap with a Student-t confidence interval.

    Attributes
    ----------
    gap : float
        Point estimate, mean test loss minus mean train loss (loss units).
    low, high : float
        Two-sided confidence interval at ``confidence_level``.
    standard_error : float
        Standard error of ``gap`` (0 when the data show no spread).
    n_train, n_test : int
        Train and test samples per repetition.
    confidence_level : float
        Coverage of ``[low, high]``.
    n_repetitions : int
        Independent repetitions (rows) averaged; 1 for 1-D input.
    estimand : str
        ``"conditional"`` (1-D input: the gap ``L_mu(W) - L_S(W)`` of one
        trained model) or ``"expected"`` (2-D input: ``E[L_mu(W) - L_S(W)]``
        over training sets and the learning rule's randomness).

    Notes
    -----
    A GapEstimate behaves like its number ``gap``, as
    :class:`infomoe.Estimate` does like its ``value``: ``float(g)``,
    ``np.asarray``, ``math.isclose``, format specs, comparisons and
    arithmetic with numbers give what they give for ``g.gap`` (plain
    floats; the interval is not propagated).  ``==`` compares ``gap`` only,
    and a GapEstimate hashes like it.

    Examples
    --------
    >>> g = generalization_gap([0, 0, 1, 0], [0, 1, 1, 0, 1, 0])
    >>> g == 0.25, g < 0.5, round(2 * g, 6), f"{g:.2f}"
    (True, True, 0.5, '0.25')
    """

    _headline_field = "gap"

    gap: float
    low: float
    high: float
    standard_error: float
    n_train: int
    n_test: int
    confidence_level: float
    n_repetitions: int = 1
    estimand: str = "conditional"


def generalization_gap(train_losses, test_losses, *, confidence_level=0.95) -> GapEstimate:
    """Estimate the generalization gap from per-sample losses, with a t interval.

    Parameters
    ----------
    train_losses : array_like, shape (n_train,) or (repetitions, n_train)
        Per-sample losses of the trained model on its own training set.
    test_losses : array_like, shape (n_test,) or (repetitions, n_test)
        Per-sample losses of the same model on fresh samples from the
        population.  Must have the same number of dimensions (and, for 2-D,
        of rows) as ``train_losses``; row ``r`` of both belongs to the same
        repetition.
    confidence_level : float, default 0.95
        Coverage of the two-sided interval, in ``(0, 1)``.

    Returns
    -------
    GapEstimate
        ``gap = mean(test) - mean(train)`` and its interval, in the units of
        the losses.

    Notes
    -----
    **1-D input (one trained model, estimand ``"conditional"``).** The gap of
    one model is ``L_mu(W) - L_S(W)``.  The training mean *is* ``L_S(W)``,
    a fixed number given ``(S, W)`` rather than an estimate, so only the
    test mean carries sampling error:
    ``SE = sd(test) / sqrt(n_test)`` and the interval is
    ``gap ± t_{n_test-1} SE`` (needs ``n_test >= 2``).  This is the quantity
    high-probability bounds (union bound, PAC-Bayes) control.

    **2-D input (independent repetitions, estimand ``"expected"``).** Each
    row is one repetition: a fresh training set, the model trained on it, and
    a fresh test set.  The per-row gaps ``g_r = mean(test_r) - mean(train_r)``
    are i.i.d. draws whose mean is ``E gen``, the quantity the in-expectation
    bounds (Xu-Raginsky, individual-sample, CMI, Aminian) control; the
    analysis is *paired* by repetition: ``SE = sd(g) / sqrt(R)`` and the
    interval is ``mean(g) ± t_{R-1} SE`` (needs ``R >= 2``).  Reusing one test
    set for all rows makes the rows dependent and the interval too narrow
    unless the test set is much larger than the training sets.

    The interval is exact for normal data and asymptotically valid otherwise
    (central limit theorem); for bounded losses and moderate sizes it is
    close to nominal.

    References
    ----------
    No paper equation: a standard Student-t interval (e.g. Wasserman, *All of
    Statistics*, 2004, §6.3.2).  The definition of the gap follows Xu &
    Raginsky, arXiv:1705.07809 (2017), eq. (2).

    Examples
    --------
    >>> g = generalization_gap([0, 0, 1, 0], [0, 1, 1, 0, 1, 0])
    >>> round(g.gap, 4), g.n_train, g.n_test, g.estimand
    (0.25, 4, 6, 'conditional')
    >>> rng = np.random.default_rng(0)
    >>> train = rng.binomial(1, 0.1, size=(50, 100))
    >>> test = rng.binomial(1, 0.2, size=(50, 200))
    >>> g = generalization_gap(train, test)
    >>> g.low < 0.1 < g.high, g.n_repetitions
    (True, 50)
    """
    cl = check_unit_interval(confidence_level, "confidence_level")
    train = as_float_array(train_losses, "train_losses", ndim=(1, 2))
    test = as_float_array(test_losses, "test_losses", ndim=(1, 2))
    if train.ndim != test.ndim:
        raise ValueError(
            "`train_losses` and `test_losses` must both be 1-D (one model) or both 2-D "
            f"(repetitions, samples); got shapes {train.shape} and {test.shape}.")
    from scipy import stats

    if train.ndim == 1:
        n_train, n_test = train.shape[0], test.shape[0]
        if n_test < 2:
            raise ValueError(
                "`test_losses` needs at least 2 samples to estimate a standard error, "
                f"got {n_test}.")
        gap = float(test.mean() - train.mean())
        se = float(test.std(ddof=1) / math.sqrt(n_test))
        df = n_test - 1
        reps, estimand = 1, "conditional"
    else:
        if train.shape[0] != test.shape[0]:
            raise ValueError(
                "`train_losses` and `test_losses` must have the same number of rows "
                f"(repetitions); got {train.shape[0]} and {test.shape[0]}.")
        reps = train.shape[0]
        if reps < 2:
            raise ValueError(
                f"2-D losses need at least 2 repetitions (rows) for a standard error, got {reps}; "
                "pass 1-D arrays for a single model.")
        if train.shape[1] < 1 or test.shape[1] < 1:
            raise ValueError("`train_losses` and `test_losses` need at least one column.")
        n_train, n_test = train.shape[1], test.shape[1]
        gaps = test.mean(axis=1) - train.mean(axis=1)
        gap = float(gaps.mean())
        se = float(gaps.std(ddof=1) / math.sqrt(reps))
        df = reps - 1
        estimand = "expected"
    half = float(stats.t.ppf(0.5 + cl / 2.0, df)) * se
    return GapEstimate(gap=gap, low=gap - half, high=gap + half, standard_error=se,
                       n_train=int(n_train), n_test=int(n_test), confidence_level=cl,
                       n_repetitions=int(reps), estimand=estimand)


def split_supersample_losses(masks, losses):
    """Split supersample losses into train and test halves by the mask bits.

    Parameters
    ----------
    masks : array_like of {0, 1}, shape (repetitions, n)
        ``U_i``: which member of pair ``i`` was in the training set.
    losses : array_like, shape (repetitions, n, 2)
        ``losses[r, i, j] = loss(W_r, Z~_{i,j})`` for both members of every
        pair of the supersample.

    Returns
    -------
    train, test : ndarray, shape (repetitions, n)
        ``train[r, i] = losses[r, i, U_ri]``, ``test[r, i] = losses[r, i, 1 - U_ri]``;
        pass them to :func:`generalization_gap` (2-D form) to measure the
        expected gap that the CMI bounds control.

    Notes
    -----
    In the supersample construction ``S = (Z~_{i, U_i})_i`` and the other
    member of every pair is a ghost test sample, so
    ``E[mean(test) - mean(train)] = E gen``.

    References
    ----------
    Steinke & Zakynthinou, "Reasoning about generalization via conditional
    mutual information", COLT 2020, arXiv:2001.09122, §1 (the supersample
    construction); no equation number.

    Examples
    --------
    >>> tr, te = split_supersample_losses([[1, 0]], [[[0.0, 0.2], [0.5, 1.0]]])
    >>> tr.tolist(), te.tolist()
    ([[0.2, 0.5]], [[0.0, 1.0]])
    """
    u = _as_masks(masks)
    lo = as_float_array(losses, "losses", ndim=3)
    _check_pairs(lo, u, "losses")
    idx = u[:, :, None]
    train = np.take_along_axis(lo, idx, axis=2)[:, :, 0]
    test = np.take_along_axis(lo, 1 - idx, axis=2)[:, :, 0]
    return train, test


def _as_masks(masks) -> np.ndarray:
    m = as_float_array(masks, "masks", ndim=2)
    if not np.all((m == 0) | (m == 1)):
        bad = m[(m != 0) & (m != 1)][0]
        raise ValueError(f"`masks` must hold bits 0/1 (U_i), got {bad!r}.")
    return m.astype(np.int64)


def _check_pairs(values: np.ndarray, masks: np.ndarray, name: str) -> None:
    if values.shape[:2] != masks.shape or values.shape[2] != 2:
        raise ValueError(
            f"`{name}` must have shape (repetitions, n, 2, ...) matching `masks` of shape "
            f"{masks.shape}; got {values.shape}.")
