"""Uncertainty of mutual-information estimates: bootstrap confidence intervals
and a permutation test of independence, both resampling the contingency
table (O(table) per resample) instead of the samples (O(n)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import special

from infomoe import _validate as V
from infomoe._entropy import ESTIMATORS, Estimate, EstimatorWarning, _jackknife_d
from infomoe._information import mutual_information_table
from infomoe._progress import progress_bar
from infomoe._repr import fmt_number as _fmt

__all__ = ["bootstrap_mutual_information", "independence_test",
           "BootstrapResult", "PermutationResult"]

_METHODS = ("bca", "percentile", "basic")
_BATCH_CELLS = 4_000_000       # cells per resampled batch (32 MB of int64)
_BCA_MAX_WORK = 500_000_000    # nonzero cells x table cells for a brute-force jackknife


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Bootstrap confidence interval of a mutual-information estimate.

    Attributes
    ----------
    estimate : Estimate
        The estimate on the observed data (value, unit, estimator, n, k).
    confidence_interval : tuple of float
        ``(low, high)`` in ``estimate.unit``.
    standard_error : float
        Standard deviation of the bootstrap distribution.
    n_resamples : int
        Number of bootstrap resamples.
    confidence_level : float
        Nominal coverage of the interval.
    method : str
        ``"bca"``, ``"percentile"`` or ``"basic"`` (the method actually used).
    bootstrap_distribution : numpy.ndarray
        The ``n_resamples`` resampled estimates.
    """

    estimate: Estimate
    confidence_interval: tuple
    standard_error: float
    n_resamples: int
    confidence_level: float
    method: str
    bootstrap_distribution: np.ndarray

    def __repr__(self) -> str:
        lo, hi = self.confidence_interval
        u = self.estimate.unit
        return (f"BootstrapResult(estimate={_fmt(self.estimate.value)} {u}, "
                f"confidence_interval=({lo:.6g}, {hi:.6g}) {u}, "
                f"standard_error={self.standard_error:.6g} {u}, "
                f"confidence_level={self.confidence_level}, method={self.method!r}, "
                f"n_resamples={self.n_resamples})")


@dataclass(frozen=True, eq=False)
class PermutationResult:
    """Permutation test of independence of X and Y.

    Attributes
    ----------
    statistic : float
        Mutual-information estimate on the observed pairing, in ``unit``.
    pvalue : float
        ``(1 + #{null >= statistic}) / (1 + n_permutations)``.
    null_distribution : numpy.ndarray
        The statistic on each of the ``n_permutations`` shuffled pairings.
    n_permutations : int
        Number of permutations.
    estimator : str
        Estimator used for the statistic.
    base : float
        Logarithm base of ``statistic``.
    unit : str
        ``"bits"``, ``"nats"``, ...
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    n_permutations: int
    estimator: str
    base: float
    unit: str

    def __repr__(self) -> str:
        return (f"PermutationResult(statistic={self.statistic:.6g} {self.unit}, "
                f"pvalue={self.pvalue:.6g}, n_permutations={self.n_permutations}, "
                f"estimator={self.estimator!r})")


def _table(x, y, kx, ky):
    from infomoe._counting import contingency

    if y is None:
        if isinstance(x, np.ndarray):
            raise TypeError("`y` is missing: pass two label arrays `x, y`, or an iterable of "
                            "(x, y) chunks as `x` alone.")
        from infomoe._information import _unmasked_chunks

        t = contingency(_unmasked_chunks(x), kx=kx, ky=ky)
    else:
        from infomoe._information import _DENSE_MAX_CELLS, _label_inputs, _too_dense

        (xa, ya), (kx_, ky_) = _label_inputs([x, y], ["x", "y"], [kx, ky], ["kx", "ky"])
        if _too_dense(kx_ * ky_, xa.shape[0]):  # checked before anything is allocated
            raise ValueError(
                f"the {kx_} x {ky_} contingency table of `x` and `y` has {kx_ * ky_} cells, more "
                f"than {_DENSE_MAX_CELLS} and than the {xa.shape[0]} samples; resampling needs "
                "the dense table. Relabel the observed values first: "
                "x = np.unique(x, return_inverse=True)[1] (and the same for y).")
        t = contingency(xa, ya, kx=kx_, ky=ky_)
    t = np.asarray(t)
    if t.dtype.kind == "f":
        raise ValueError("resampling needs integer counts; weighted chunks are not supported.")
    return t.astype(np.int64)


def _batches(total: int, size: int, progress: bool, desc: str):
    """Yield batch sizes summing to ``total``, with a progress bar if asked (and tqdm installed)."""
    sizes = [size] * (total // size) + ([total % size] if total % size else [])
    bar = progress_bar(enabled=progress, desc=desc, total=total, unit="resample")
    try:
        for s in sizes:
            yield s
            bar.update(s)
    finally:
        bar.close()


def _batch_size(batch_size, cells: int) -> int:
    if batch_size is None:
        return max(1, _BATCH_CELLS // max(cells, 1))
    return V.check_positive_int(batch_size, "batch_size")


def _statistic(tables: np.ndarray, estimator: str, base: float) -> np.ndarray:
    # resampled tables: the caller already saw (or not) the warning for the observed one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EstimatorWarning)
        return np.atleast_1d(mutual_information_table(tables, estimator=estimator,
                                                      base=base).value)


def _jackknife_values(t: np.ndarray, estimator: str, base: float, bs: int):
    """Delete-one values of the statistic: one per nonzero cell, weighted by its count.

    Plug-in: closed form, O(cells).  With f(m) = m log m and
    d(m) = f(m) - f(m - 1), deleting a sample of cell (i, j) gives
    I_{-ij} = [S_xy - d(n_ij) - S_x + d(n_i) - S_y + d(n_j) + f(N - 1)] / (N - 1).
    Other estimators: one batched evaluation per nonzero cell, O(cells x table).
    """
    flat = t.ravel()
    cells = np.flatnonzero(flat)
    counts = flat[cells].astype(np.float64)
    if estimator == "plugin":
        nx = t.sum(axis=1).astype(np.float64)
        ny = t.sum(axis=0).astype(np.float64)
        n = float(t.sum())
        i, j = np.divmod(cells, t.shape[1])
        f = special.xlogy
        s = f(counts, counts).sum() - f(nx, nx).sum() - f(ny, ny).sum()
        vals = (s - _jackknife_d(counts) + _jackknife_d(nx[i]) + _jackknife_d(ny[j])
                + f(n - 1.0, n - 1.0)) / (n - 1.0) / np.log(base)
        return vals, counts
    vals = np.empty(cells.size)
    for s0 in range(0, cells.size, bs):
        idx = cells[s0:s0 + bs]
        tabs = np.repeat(flat[None, :], idx.size, axis=0)
        tabs[np.arange(idx.size), idx] -= 1
        vals[s0:s0 + idx.size] = _statistic(tabs.reshape((-1,) + t.shape), estimator, base)
    return vals, counts


def bootstrap_mutual_information(x, y=None, *, estimator: str = "plugin",
                                 n_resamples: int = 1000, confidence_level: float = 0.95,
                                 method: str = "bca", kx: Optional[int] = None,
                                 ky: Optional[int] = None, random_state=None,
                                 base: float = 2, batch_size: Optional[int] = None,
                                 progress: bool = False) -> BootstrapResult:
    r"""Bootstrap confidence interval for the mutual information I(X;Y).

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Paired labels; or ``x`` an iterable of ``(x, y)`` chunks and
        ``y=None`` (see :func:`infomoe.mutual_information`).
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Estimator of the statistic (see :func:`infomoe.mutual_information_table`).
    n_resamples : int, default 1000
        Number of bootstrap resamples.
    confidence_level : float, default 0.95
        Nominal coverage, in (0, 1).
    method : {"bca", "percentile", "basic"}, default "bca"
        Interval construction (see Notes).
    kx, ky : int, optional
        Declared alphabet sizes.
    random_state : None, int or numpy.random.Generator
        Seed or generator.
    base : float, default 2
        Logarithm base (2: bits).
    batch_size : int, optional
        Resamples evaluated together (default: about 4 million table cells
        per batch).
    progress : bool, default False
        Show a progress bar (tqdm, if installed).

    Returns
    -------
    BootstrapResult
        ``estimate``, ``confidence_interval``, ``standard_error``,
        ``n_resamples``, ``confidence_level``, ``method``,
        ``bootstrap_distribution``.

    Raises
    ------
    ValueError, TypeError
        Invalid labels, ``n_resamples < 2``, ``confidence_level`` outside
        (0, 1), unknown ``method`` or ``estimator``, weighted chunks.

    Notes
    -----
    Resampling ``n`` pairs with replacement is the same as drawing the table
    from a multinomial :math:`\mathrm{Mult}(n, \hat p_{xy})`; this is done
    directly, at cost O(table) per resample instead of O(n).  With bootstrap
    quantiles :math:`q_\gamma` and :math:`\gamma = (1 - \text{level})/2`:
    percentile :math:`[q_\gamma, q_{1-\gamma}]`; basic :math:`[2\hat I -
    q_{1-\gamma}, 2\hat I - q_\gamma]`; BCa (Efron 1987) shifts the quantile
    levels by the bias correction :math:`z_0 = \Phi^{-1}(\#\{I^* <
    \hat I\}/B)` and the acceleration :math:`a` from the delete-one jackknife
    (one value per nonzero cell, weighted by its count; closed form for the
    plug-in, one table evaluation per nonzero cell otherwise).  When
    :math:`z_0` is infinite (every resample on one side of the estimate) BCa
    is undefined, and when a non-plug-in jackknife would exceed 5e8 cell
    evaluations it is too costly: then the percentile interval is returned
    with a ``RuntimeWarning`` and ``method="percentile"``.  The
    plug-in estimate is biased upward (about :math:`(K_X-1)(K_Y-1)/(2n)`
    nats); near independence prefer a bias-corrected estimator or
    :func:`independence_test`.

    References
    ----------
    B. Efron (1987), "Better bootstrap confidence intervals", JASA 82,
    (BCa); B. Efron and R. Tibshirani (1993), An Introduction to the Bootstrap,
    ch. 13 (percentile) and §14.3 (BCa); equation numbers not checked.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import bootstrap_mutual_information
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 4, 2000)
    >>> y = np.where(rng.random(2000) < 0.8, x, rng.integers(0, 4, 2000))
    >>> res = bootstrap_mutual_information(x, y, n_resamples=200, random_state=1)
    >>> lo, hi = res.confidence_interval
    >>> bool(lo < res.estimate.value < hi), res.estimate.unit
    (True, 'bits')
    """
    V.check_choice(estimator, "estimator", ESTIMATORS)
    V.check_choice(method, "method", _METHODS)
    b = V.check_base(base)
    B = V.check_positive_int(n_resamples, "n_resamples", minimum=2)
    level = V.check_unit_interval(confidence_level, "confidence_level")
    if batch_size is not None:
        V.check_positive_int(batch_size, "batch_size")
    rng = np.random.default_rng(random_state)
    t = _table(x, y, kx, ky)
    est = mutual_information_table(t, estimator=estimator, base=b)
    theta = float(est.value)
    n = int(t.sum())
    flat = t.ravel()
    nz = np.flatnonzero(flat)
    p = flat[nz] / n
    bs = _batch_size(batch_size, flat.size)
    boot = np.empty(B)
    pos = 0
    for size in _batches(B, bs, progress, "bootstrap"):
        tabs = np.zeros((size, flat.size), dtype=np.int64)
        tabs[:, nz] = rng.multinomial(n, p, size=size)
        boot[pos:pos + size] = _statistic(tabs.reshape((size,) + t.shape), estimator, b)
        pos += size
    gamma = (1.0 - level) / 2.0
    used = method
    if method == "bca":
        below = (np.sum(boot < theta) + 0.5 * np.sum(boot == theta)) / B
        z0 = special.ndtri(below)
        heavy = estimator != "plugin" and np.count_nonzero(flat) * flat.size > _BCA_MAX_WORK
        if not np.isfinite(z0) or n < 2:
            warnings.warn("BCa interval undefined (all bootstrap estimates on one side of the "
                          "estimate); returning the percentile interval.", RuntimeWarning,
                          stacklevel=2)
            used = "percentile"
        elif heavy:
            warnings.warn(f"BCa with estimator={estimator!r} needs one evaluation per nonzero "
                          "cell, too costly for this table; returning the percentile interval "
                          "(use estimator='plugin' or method='percentile').", RuntimeWarning,
                          stacklevel=2)
            used = "percentile"
        else:
            jk, w = _jackknife_values(t, estimator, b, bs)
            d = np.average(jk, weights=w) - jk
            den = 6.0 * np.sum(w * d ** 2) ** 1.5
            a = float(np.sum(w * d ** 3) / den) if den > 0 else 0.0
            levels = []
            for g in (gamma, 1.0 - gamma):
                zg = special.ndtri(g)
                levels.append(special.ndtr(z0 + (z0 + zg) / (1.0 - a * (z0 + zg))))
            lo, hi = np.quantile(boot, levels)
    if used == "percentile":
        lo, hi = np.quantile(boot, [gamma, 1.0 - gamma])
    elif used == "basic":
        qlo, qhi = np.quantile(boot, [gamma, 1.0 - gamma])
        lo, hi = 2.0 * theta - qhi, 2.0 * theta - qlo
    return BootstrapResult(estimate=est, confidence_interval=(float(lo), float(hi)),
                           standard_error=float(np.std(boot, ddof=1)), n_resamples=B,
                           confidence_level=level, method=used, bootstrap_distribution=boot)


def _permuted_tables(rows: np.ndarray, cols: np.ndarray, size: int, rng) -> np.ndarray:
    """Random tables with the given margins, as from shuffling one variable.

    Row by row, the column counts are a multivariate hypergeometric draw from
    the columns' remaining totals, sampled as successive univariate
    hypergeometrics (vectorised over the ``size`` tables).
    """
    R, C = rows.size, cols.size
    out = np.zeros((size, R, C), dtype=np.int64)
    remaining = np.tile(cols, (size, 1))
    for i in range(R - 1):
        need = np.full(size, rows[i], dtype=np.int64)
        rest = remaining.sum(axis=1)
        for j in range(C - 1):
            good = remaining[:, j]
            rest = rest - good
            draw = rng.hypergeometric(good, rest, need)
            out[:, i, j] = draw
            need -= draw
        out[:, i, C - 1] = need
        remaining -= out[:, i, :]
    out[:, R - 1, :] = remaining
    return out


def independence_test(x, y=None, *, estimator: str = "plugin", n_permutations: int = 1000,
                      kx: Optional[int] = None, ky: Optional[int] = None, random_state=None,
                      base: float = 2, batch_size: Optional[int] = None,
                      progress: bool = False) -> PermutationResult:
    r"""Permutation (shuffle) test of the independence of X and Y.

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Paired labels; or ``x`` an iterable of ``(x, y)`` chunks and
        ``y=None``.
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Mutual-information estimator used as the test statistic.
    n_permutations : int, default 1000
        Number of random pairings.
    kx, ky : int, optional
        Declared alphabet sizes.
    random_state : None, int or numpy.random.Generator
        Seed or generator.
    base : float, default 2
        Logarithm base of the statistic.
    batch_size : int, optional
        Permutations evaluated together.
    progress : bool, default False
        Show a progress bar (tqdm, if installed).

    Returns
    -------
    PermutationResult
        ``statistic``, ``pvalue``, ``null_distribution``, ``n_permutations``,
        ``estimator``, ``base``, ``unit``.

    Raises
    ------
    ValueError, TypeError
        Invalid labels; more than 1e9 samples (the table sampler's limit);
        invalid options.

    Notes
    -----
    Shuffling ``y`` against ``x`` keeps both margins and draws the table
    uniformly among pairings; this samples that table directly (successive
    hypergeometric draws, O(table) per permutation, independent of n).  The
    p-value :math:`(1 + \#\{I_\pi \ge \hat I\}) / (1 + B)` counts the
    observed pairing as one of the permutations, so it is never 0 and the test
    is exact (valid at every level) for any sample size.  Null values equal to
    the statistic up to 1e-12 relative rounding count as ``>=``.

    References
    ----------
    B. V. North, D. Curtis and P. C. Sham (2002), "A note on the calculation of
    empirical P values from Monte Carlo procedures", Am. J. Hum. Genet. 71,
    (the +1 correction; no equation number checked).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import independence_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 3, 300)
    >>> res = independence_test(x, (x + (rng.random(300) < 0.3)) % 3,
    ...                         n_permutations=199, random_state=0)
    >>> res.pvalue                                 # 1 / (1 + 199): none as large
    0.005
    """
    V.check_choice(estimator, "estimator", ESTIMATORS)
    b = V.check_base(base)
    P = V.check_positive_int(n_permutations, "n_permutations")
    if batch_size is not None:
        V.check_positive_int(batch_size, "batch_size")
    rng = np.random.default_rng(random_state)
    t = _table(x, y, kx, ky)
    n = int(t.sum())
    if n >= 10 ** 9:
        raise ValueError(f"independence_test supports fewer than 1e9 samples, got {n}; "
                         "for so many samples use the chi-squared approximation "
                         "2 n I (nats) ~ chi2((kx-1)(ky-1)).")
    stat = float(_statistic(t[None], estimator, b)[0])
    rows_nz = np.flatnonzero(t.sum(axis=1))
    cols_nz = np.flatnonzero(t.sum(axis=0))
    rows = t.sum(axis=1)[rows_nz]
    cols = t.sum(axis=0)[cols_nz]
    bs = _batch_size(batch_size, t.size)
    null = np.empty(P)
    pos = 0
    for size in _batches(P, bs, progress, "permutations"):
        sub = _permuted_tables(rows, cols, size, rng)
        full = np.zeros((size,) + t.shape, dtype=np.int64)
        full[:, rows_nz[:, None], cols_nz[None, :]] = sub
        null[pos:pos + size] = _statistic(full, estimator, b)
        pos += size
    tol = 1e-12 * max(1.0, abs(stat))
    pvalue = (1.0 + np.sum(null >= stat - tol)) / (1.0 + P)
    return PermutationResult(statistic=stat, pvalue=float(pvalue), null_distribution=null,
                             n_permutations=P, estimator=estimator, base=b,
                             unit=V.unit_name(b))
