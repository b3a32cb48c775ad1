"""Mutual information and conditional mutual information from samples or
contingency tables, and the channel form I(X;T) from rows p(t|x).

Tables carry the variables on their last axes (``[..., kx, ky]`` or
``[..., kz, kx, ky]``); leading axes are batched.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from scipy import special

from infomoe import _validate as V
from infomoe._entropy import (ESTIMATORS, Estimate, EstimatorWarning, UndersampledWarning,
                              _check_counts, _entropy_nats,
                              _jackknife_d, _james_stein_lambda, _n_out, _shape_out)
from infomoe._repr import fmt_number as _fmt

__all__ = [
    "mutual_information",
    "mutual_information_table",
    "conditional_mutual_information",
    "conditional_mutual_information_table",
    "channel_information",
    "ChannelInformation",
    "conditional_entropy",
    "joint_entropy",
    "total_correlation",
    "adjusted_mutual_information",
    "normalized_mutual_information",
    "kl_divergence",
    "jensen_shannon_divergence",
    "EstimatorWarning",
    "UndersampledWarning",
]

#: Plug-in values in (-_CLIP, 0) are floating-point rounding of an exact zero.
_CLIP = 1e-13


#: Appended to the error for non-integer tables.
_TABLE_FIX = ("For a table of joint probabilities or of sums of sample weights pass "
              "weighted=True (estimator='plugin' only); from labels with sample weights use "
              "the `weights=` argument of mutual_information / conditional_mutual_information.")


def _flat_tables(table, name: str, estimator: str, nvars: int, weighted: bool = False):
    c = _check_counts(table, name, estimator, min_ndim=nvars, weighted=weighted, fix=_TABLE_FIX)
    lead = c.shape[:-nvars]
    dims = c.shape[-nvars:]
    c = c.reshape((-1,) + dims)
    n = c.reshape(c.shape[0], -1).sum(axis=-1)
    if np.any(n <= 0):
        row = np.unravel_index(int(np.argmax(n <= 0)), lead) if lead else ()
        raise ValueError(f"`{name}` table {tuple(int(i) for i in row)} sums to zero; "
                         "at least one count is needed.")
    return c, lead, dims, n


def _clip_rounding(v: np.ndarray) -> np.ndarray:
    return np.where((v < 0) & (v > -_CLIP), 0.0, v)


def _sum_xlogratio(t: np.ndarray, w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """sum over cells of t * log(w) / n per table, in place in ``w`` (ratios at t > 0)."""
    np.copyto(w, 1.0, where=~(t > 0))
    np.log(w, out=w)
    w *= t
    return _clip_rounding(w.reshape(t.shape[0], -1).sum(axis=-1) / n)


def _plugin_mi(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact plug-in I(X;Y) of tables (B, kx, ky), nats: sum p_xy log(n_xy N / (n_x n_y)).

    Each term's ratio is formed from count ratios (relative error ~1e-16), so
    the sum has no cancellation beyond the final pairwise summation.
    """
    nx = t.sum(axis=2, keepdims=True)
    ny = t.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = t / nx
        w *= n[:, None, None] / ny
    return _sum_xlogratio(t, w, n)


def _plugin_cmi(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact plug-in I(X;Y|Z) of tables (B, kz, kx, ky), nats."""
    nz = t.sum(axis=(2, 3), keepdims=True)
    nzx = t.sum(axis=3, keepdims=True)
    nzy = t.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = t / nzx
        w *= nz / nzy
    return _sum_xlogratio(t, w, n)


def _combined(t: np.ndarray, n: np.ndarray, groups, estimator: str):
    """sum_g sign_g H(margin_g) with a bias-corrected estimator, nats, plus variance.

    ``groups`` lists (sign, kept axes of the table dims).  The jackknife
    standard error of the combination uses the cell-level delete-one values:
    deleting a sample in a cell changes every margin it falls in.
    """
    dims = t.shape[1:]
    all_axes = tuple(range(len(dims)))
    value = np.zeros(t.shape[0])
    e = np.zeros_like(t) if estimator == "jackknife" else None
    for sign, keep in groups:
        drop = tuple(1 + a for a in all_axes if a not in keep)
        m = t.sum(axis=drop, keepdims=True) if drop else t
        K = int(np.prod([dims[a] for a in keep]))
        h, _ = _entropy_nats(m.reshape(t.shape[0], -1), K, estimator)
        value += sign * h
        if e is not None:
            e = e + sign * _jackknife_d(np.broadcast_to(m, t.shape))
    var = None
    if e is not None:
        p = t / n.reshape((-1,) + (1,) * len(dims))
        ax = tuple(range(1, t.ndim))
        ebar = (p * e).sum(axis=ax, keepdims=True)
        var = (p * (e - ebar) ** 2).sum(axis=ax) / (n - 1.0)
    return value, var


def _shrunk_joint(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Tables (B, ...) with every cell's count replaced by N times its James-Stein
    shrunk frequency (towards the uniform over all cells of the table)."""
    flat = t.reshape(t.shape[0], -1).astype(np.float64)
    cells = flat.shape[1]
    lam = _james_stein_lambda(flat, n, cells)[:, None]
    shrunk = lam / cells + (1.0 - lam) * flat / n[:, None]
    return (shrunk * n[:, None]).reshape(t.shape)


def _result(value_nats, var, base, estimator, n, k, lead):
    lb = math.log(base)
    std = None if var is None else np.sqrt(var) / lb
    return Estimate(value=_shape_out(value_nats / lb, lead), std=_shape_out(std, lead),
                    base=base, unit=V.unit_name(base), estimator=estimator,
                    n=_n_out(n, lead), k=k)


_MI_DOC_NOTES = r"""
    * ``"plugin"``: :math:`\hat I = \sum_{xy} \hat p_{xy}
      \log\frac{n_{xy} N}{n_x n_y}`, summed term by term from the count ratios
      (no difference of entropies, so no cancellation); it is never negative
      (rounding below 1e-13 is clipped to 0).  Under independence it is biased
      up by about :math:`(K_X-1)(K_Y-1)/(2N)` nats (Panzeri & Treves 1996).
    * ``"james_stein"``: the plug-in value of the joint table after James–Stein
      shrinkage of its cell frequencies towards the uniform over all
      :math:`K_X K_Y` cells (Hausser & Strimmer 2009, their ``mi.shrink``);
      never negative.
    * other estimators: :math:`\hat H(X) + \hat H(Y) - \hat H(X,Y)` with the
      chosen entropy estimator on each margin (alphabets :math:`K_X`,
      :math:`K_Y`) and on the joint (alphabet :math:`K_X K_Y`); rows or
      columns of zeros in the table count as unobserved outcomes.  **These
      may be negative** (the bias correction can overshoot when the true
      information is near zero); the value is not clipped.  ``std`` is the
      jackknife standard error for ``"jackknife"`` (delete-one over samples,
      each deletion changing its cell, row and column), else None.
"""


def _table_estimate(table, estimator: str, base, nvars: int, plugin, groups,
                    weighted: bool) -> Estimate:
    """Estimate on `nvars`-way tables: ``plugin(t, n)`` for ``"plugin"``, else the
    signed sum of marginal entropies ``groups`` (see :func:`_combined`)."""
    V.check_choice(estimator, "estimator", ESTIMATORS)
    b = V.check_base(base)
    t, lead, dims, n = _flat_tables(table, "table", estimator, nvars, weighted)
    if estimator == "plugin":
        value, var = plugin(t, n), None
        _warn_undersampled(int(np.prod(dims)), n)
    elif estimator == "james_stein":  # plug-in of the shrunk joint (Hausser & Strimmer 2009)
        value, var = plugin(_shrunk_joint(t, n), n), None
    else:
        value, var = _combined(t, n, groups, estimator)
    return _result(value, var, b, estimator, n, tuple(int(d) for d in dims), lead)


def mutual_information_table(table, *, estimator: str = "plugin", base: float = 2,
                             weighted: bool = False) -> Estimate:
    r"""Mutual information I(X;Y) of contingency tables.

    Parameters
    ----------
    table : array_like, shape (..., kx, ky)
        Joint counts of X (rows) and Y (columns): non-negative integers
        (integer-valued floats are fine); leading axes are batched (e.g. one
        table per layer gives one value per layer).
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Entropy estimator used on the margins and the joint (see Notes).
    base : float, default 2
        Logarithm base (2: bits).
    weighted : bool, default False
        ``table`` holds sums of sample weights (e.g. from
        ``contingency(x, y, weights=w)``) or joint probabilities: any
        non-negative reals.  Only with ``estimator="plugin"``, whose value
        depends on the table only through ``table / table.sum()``.

    Returns
    -------
    Estimate
        ``value`` (float or array of shape ``table.shape[:-2]``), ``std``,
        ``unit``, ``estimator``, ``n`` (total count) and ``k = (kx, ky)``.

    Raises
    ------
    ValueError
        Negative/NaN/inf counts, fewer than 2 dimensions, a table summing to
        zero, non-integer counts (unless ``weighted=True``), ``weighted=True``
        with an estimator other than ``"plugin"``.

    Notes
    -----
    NOTES_PLACEHOLDER
    References
    ----------
    T. M. Cover and J. A. Thomas (2006), Elements of Information Theory, 2nd
    ed., eq. (2.28).  S. Panzeri and A. Treves (1996), "Analytical estimates of
    limited sampling biases in different information measures", Network 7,
    for the bias (equation number not checked).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import mutual_information_table
    >>> float(mutual_information_table(np.eye(4) * 25))      # Y = X, uniform
    2.0
    >>> float(mutual_information_table(np.full((3, 5), 7)))  # independent
    0.0
    >>> mutual_information_table(np.stack([np.eye(2), np.ones((2, 2))])).value
    array([1., 0.])
    >>> float(mutual_information_table([[0.5, 0.0], [0.0, 0.5]], weighted=True))
    1.0
    """
    return _table_estimate(table, estimator, base, 2, _plugin_mi,
                           [(1, (0,)), (1, (1,)), (-1, (0, 1))], weighted)


def _check_label_options(estimator: str, base, weights) -> None:
    """Checks shared by the label-array estimators: estimator, base, weights only with plug-in."""
    V.check_choice(estimator, "estimator", ESTIMATORS)
    V.check_base(base)
    if weights is not None and estimator != "plugin":
        raise ValueError(f"`weights` are supported only with estimator='plugin', "
                         f"got estimator={estimator!r} (its bias correction needs integer counts).")


def mutual_information(x, y=None, *, estimator: str = "plugin", kx: Optional[int] = None,
                       ky: Optional[int] = None, weights=None, base: float = 2) -> Estimate:
    r"""Mutual information I(X;Y) from paired integer labels.

    Parameters
    ----------
    x : array_like of int, shape (n,), or iterable of chunks
        Labels of X (``0 <= x < kx``).  Or, with ``y=None``, an iterable of
        ``(x, y)`` or ``(x, y, w)`` chunks, counted one at a time (memory
        O(table), not O(samples)), as accepted by :func:`infomoe.contingency`.
    y : array_like of int, shape (n,), optional
        Labels of Y.
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        See :func:`mutual_information_table`.
    kx, ky : int, optional
        Alphabet sizes (default: largest label + 1).  Declared values make
        unobserved labels count in the bias-corrected estimators.
    weights : array_like, shape (n,), optional
        Sample weights (plug-in only).
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        As :func:`mutual_information_table` for the table of counts.

    Raises
    ------
    ValueError, TypeError
        Invalid labels (negative, non-integer, NaN), length mismatch, labels
        not below a declared ``kx``/``ky``, weights with a bias-corrected
        estimator, empty input.

    Notes
    -----
    Counts the joint table with :func:`infomoe.contingency` (numba, int64)
    and evaluates :func:`mutual_information_table` on it.  The plug-in of two
    label arrays with at least 65,536 pairs and 1/8 pair per table cell
    skips the ``int64`` table: the pairs are counted into small ``uint8``
    tables and the value is summed from them in one pass (1.8x faster for
    2e7 pairs in a 32,000 x 64 table).  It is then a difference of
    entropies, equal to the table route to about 1e-15 of :math:`H(Y)`.
    NOTES_PLACEHOLDER
    References
    ----------
    Cover and Thomas (2006), eq. (2.28); Panzeri and Treves (1996) for the bias.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import mutual_information
    >>> x = np.array([0, 1, 2, 3] * 4)
    >>> float(mutual_information(x, x))             # H(X) = 2 bits
    2.0
    >>> float(mutual_information(x, np.zeros(16, dtype=int)))
    0.0
    >>> chunks = [(x[:8], x[:8]), (x[8:], x[8:])]  # streamed in chunks
    >>> float(mutual_information(chunks))
    2.0
    """
    from infomoe._counting import contingency
    from infomoe._plugin_labels import plugin_mi_nats

    _check_label_options(estimator, base, weights)
    if y is not None:
        (xa, ya), (kx_, ky_) = _label_inputs([x, y], ["x", "y"], [kx, ky], ["kx", "ky"])
        if _too_dense(kx_ * ky_, xa.shape[0]):  # sparse labels: never allocate the table
            if weights is not None:
                raise ValueError(f"`weights` with a {kx_} x {ky_} table (more than "
                                 f"{_DENSE_MAX_CELLS} cells and than samples) is not supported; "
                                 "relabel x and y with np.unique(..., return_inverse=True).")
            value, var = _sparse_estimate([xa, ya], [kx_, ky_], _MI_GROUPS, estimator)
            return _result(np.array([value]), None if var is None else np.array([var]),
                           V.check_base(base), estimator, np.array([float(xa.shape[0])]),
                           (kx_, ky_), ())
        x, y, kx, ky = xa, ya, kx_, ky_
    if y is not None and weights is None and estimator == "plugin":
        fused = plugin_mi_nats(x, y, kx, ky)  # None: not worth it, use the table
        if fused is not None:
            value, n, kx_, ky_ = fused
            return _result(value, None, V.check_base(base), "plugin", n, (kx_, ky_), ())
    if y is None:
        if isinstance(x, np.ndarray) or weights is not None:
            raise TypeError("`y` is missing: pass two label arrays `x, y`, or an iterable of "
                            "(x, y) / (x, y, w) chunks as `x` alone.")
        table = contingency(_unmasked_chunks(x), kx=kx, ky=ky)
        weighted = table.dtype.kind == "f"  # (x, y, w) chunks: sums of weights
        if weighted and estimator != "plugin":
            raise ValueError(f"weighted (x, y, w) chunks are supported only with "
                             f"estimator='plugin', got estimator={estimator!r} (its bias "
                             "correction needs integer counts).")
    else:
        table = contingency(x, y, kx=kx, ky=ky, weights=weights)
        weighted = weights is not None
    return mutual_information_table(table, estimator=estimator, base=base, weighted=weighted)


for _f in (mutual_information_table, mutual_information):
    _f.__doc__ = _f.__doc__.replace("    NOTES_PLACEHOLDER\n", _MI_DOC_NOTES.lstrip("\n") + "\n")
del _f


def conditional_mutual_information_table(table, *, estimator: str = "plugin",
                                         base: float = 2, weighted: bool = False) -> Estimate:
    r"""Conditional mutual information I(X;Y|Z) of three-way tables.

    Parameters
    ----------
    table : array_like, shape (..., kz, kx, ky)
        Joint counts indexed ``[z, x, y]`` (non-negative integers); leading
        axes are batched.
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Entropy estimator (see Notes).
    base : float, default 2
        Logarithm base (2: bits).
    weighted : bool, default False
        ``table`` holds sums of sample weights or joint probabilities (any
        non-negative reals); only with ``estimator="plugin"``.

    Returns
    -------
    Estimate
        ``k = (kz, kx, ky)``.

    Raises
    ------
    ValueError
        As :func:`mutual_information_table`; fewer than 3 dimensions.

    Notes
    -----
    ``"plugin"``: :math:`\sum_z \hat p(z)\, \hat I(X;Y|Z=z) = \sum_{zxy}
    \hat p_{zxy}\log\frac{n_{zxy} n_z}{n_{zx} n_{zy}}`, term by term, never
    negative.  ``"james_stein"``: the same plug-in value of the table after
    James–Stein shrinkage of its cells towards the uniform over all
    :math:`K_Z K_X K_Y` cells.  Other estimators: :math:`\hat H(X,Z) +
    \hat H(Y,Z) - \hat H(X,Y,Z) - \hat H(Z)` with alphabets :math:`K_X K_Z`,
    :math:`K_Y K_Z`, :math:`K_X K_Y K_Z`, :math:`K_Z`; may be negative (not
    clipped).  ``std``: jackknife standard error for ``"jackknife"``.

    References
    ----------
    Cover and Thomas (2006), eq. (2.60) (definition of conditional mutual
    information).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import conditional_mutual_information_table
    >>> t = np.stack([np.eye(2), np.ones((2, 2))])   # z=0: Y=X; z=1: independent
    >>> round(float(conditional_mutual_information_table(t)), 12)
    0.333333333333
    """
    return _table_estimate(table, estimator, base, 3, _plugin_cmi,
                           [(1, (0, 1)), (1, (0, 2)), (-1, (0, 1, 2)), (-1, (0,))], weighted)


def _alphabet(labels: np.ndarray, k, name: str, kname: str) -> int:
    """Alphabet size of checked labels: ``max + 1``, or the declared ``k`` (which
    must exceed every label).  One parallel min/max pass; negatives are errors."""
    from infomoe._counting import _observed_size

    top = _observed_size(labels, name)
    if k is None:
        return top
    k = V.check_positive_int(k, kname)
    if top > k:
        raise ValueError(f"`{name}` has label {top - 1}, but `{kname}`={k} declares labels "
                         f"0..{k - 1}; raise `{kname}` or remap the labels.")
    return k


#: conditional_mutual_information forms the row index ``z * kx + x`` this many
#: samples at a time (at least one table's worth), so its extra memory is one
#: chunk, not one int64 array of the whole input.
_CMI_CHUNK = 1 << 20


def conditional_mutual_information(x, y, z, *, estimator: str = "plugin",
                                   kx: Optional[int] = None, ky: Optional[int] = None,
                                   kz: Optional[int] = None, weights=None,
                                   base: float = 2) -> Estimate:
    r"""Conditional mutual information I(X;Y|Z) from integer labels.

    Parameters
    ----------
    x, y, z : array_like of int, shape (n,)
        Labels (e.g. input class, selected expert, layer or context bucket).
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        See :func:`conditional_mutual_information_table`.
    kx, ky, kz : int, optional
        Alphabet sizes (default: largest label + 1).
    weights : array_like, shape (n,), optional
        Sample weights (plug-in only).
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        ``k = (kz, kx, ky)``.

    Raises
    ------
    ValueError, TypeError
        Invalid labels, length mismatch, labels not below a declared alphabet
        size, weights with a bias-corrected estimator.

    Notes
    -----
    Counts the ``(kz, kx, ky)`` table as ``contingency(z * kx + x, y)`` and
    evaluates :func:`conditional_mutual_information_table` on it:
    :math:`I(X;Y|Z) = \sum_z p(z) I(X;Y|Z=z)`.  The plug-in without weights
    from 65,536 samples and 1/8 sample per cell on skips the ``int64`` table
    as :func:`mutual_information` does (2e7 samples into 4 x 8,000 x 64: 40 ms
    instead of 87 ms), equal to the table route to about 1e-15 of
    :math:`H(Y|Z)`.  Otherwise the table is counted
    straight from the three arrays when there are many samples per cell, else
    (and with weights) the row index ``z * kx + x`` is formed about a million
    samples at a time: the memory beyond the inputs is the table and at most
    one chunk; integer labels of any dtype are read without a copy.

    References
    ----------
    Cover and Thomas (2006), eq. (2.60).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import conditional_mutual_information
    >>> x = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    >>> z = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    >>> float(conditional_mutual_information(x, x ^ z, z))  # Y = X xor Z
    1.0
    """
    from infomoe._counting import _contingency_zxy, contingency

    _check_label_options(estimator, base, weights)
    (xa, ya, za), (kx_, ky_, kz_) = _label_inputs([x, y, z], ["x", "y", "z"], [kx, ky, kz],
                                                  ["kx", "ky", "kz"], alphabet=_alphabet)
    n = xa.shape[0]
    if _too_dense(kz_ * kx_ * ky_, n):  # sparse labels: never allocate the table
        if weights is not None:
            raise ValueError(f"`weights` with a {kz_} x {kx_} x {ky_} table (more than "
                             f"{_DENSE_MAX_CELLS} cells and than samples) is not supported; "
                             "relabel x, y and z with np.unique(..., return_inverse=True).")
        value, var = _sparse_estimate([za, xa, ya], [kz_, kx_, ky_], _CMI_GROUPS, estimator)
        return _result(np.array([value]), None if var is None else np.array([var]),
                       V.check_base(base), estimator, np.array([float(n)]), (kz_, kx_, ky_), ())
    w = None if weights is None else V.as_weights(weights, "weights", n)
    if w is None and estimator == "plugin":
        from infomoe._plugin_labels import plugin_cmi_nats
        fused = plugin_cmi_nats(xa, ya, za, kz_, kx_, ky_)
        if fused is not None:
            return _result(fused, None, V.check_base(base), "plugin", n, (kz_, kx_, ky_), ())
    table = None if w is not None else _contingency_zxy(za, xa, ya, kz_, kx_, ky_)
    if table is not None:
        return conditional_mutual_information_table(table, estimator=estimator, base=base)
    step = max(_CMI_CHUNK, kz_ * kx_ * ky_)

    def chunks():  # every label is in range already, so a chunk never fails
        for s in range(0, n, step):
            rows = za[s:s + step].astype(np.int64)  # the one chunk-sized temporary
            rows *= kx_
            rows += xa[s:s + step]
            yield (rows, ya[s:s + step]) if w is None else (rows, ya[s:s + step], w[s:s + step])
            del rows  # before the next chunk is made

    table = contingency(chunks(), kx=kz_ * kx_, ky=ky_).reshape(kz_, kx_, ky_)
    return conditional_mutual_information_table(table, estimator=estimator, base=base,
                                                weighted=w is not None)


# --------------------------------------------------------------------------
# sparse labels: cells counted by sorting, never a dense table

#: A dense table with more cells than this (and than samples) is not allocated: the
#: labels are counted by sorting instead (2**25 cells = 256 MiB of int64).
_DENSE_MAX_CELLS = 1 << 25

_MI_GROUPS = [(1, (0,)), (1, (1,)), (-1, (0, 1))]
_CMI_GROUPS = [(1, (0, 1)), (1, (0, 2)), (-1, (0, 1, 2)), (-1, (0,))]


def _too_dense(cells: int, n: int) -> bool:
    return cells > _DENSE_MAX_CELLS and cells > n


def _combine_keys(cols, sizes):
    """One int64 key per row of several rank columns (np.unique over rows when the
    product of the sizes would overflow)."""
    if math.prod(sizes) < (1 << 62):
        key = np.asarray(cols[0], dtype=np.int64).copy()
        for c, s in zip(cols[1:], sizes[1:]):
            key *= s
            key += c
        return key
    return np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _cells(arrays):
    """Observed cells of the joint of label ``arrays``: per-cell ranks (m, d), counts (m,)."""
    ranks, sizes = [], []
    for a in arrays:
        u, inv = np.unique(a, return_inverse=True)
        ranks.append(inv.reshape(-1).astype(np.int64))
        sizes.append(int(u.size))
    key = _combine_keys(ranks, sizes)
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    vals = np.stack([r[first] for r in ranks], axis=1)
    return vals, counts.astype(np.float64), sizes


def _group(vals, counts, sizes, keep):
    """Counts of the margin on variables ``keep`` and the margin cell of each joint cell."""
    if len(keep) == vals.shape[1]:
        return counts, np.arange(counts.size)
    key = _combine_keys([vals[:, i] for i in keep], [sizes[i] for i in keep])
    _, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    return np.bincount(inv, weights=counts), inv


def _shrunk_entropy(c, n, K, lam):
    """Plug-in entropy (nats) of lam/K + (1-lam) c/n over K bins (c: observed counts)."""
    t = lam / K
    return float(special.entr(t + (1.0 - lam) * c / n).sum() + (K - c.size) * special.entr(t))


def _sparse_estimate(arrays, ks, groups, estimator: str):
    """sum_g sign_g H(margin_g) of label arrays in nats (and the jackknife variance),
    from the observed cells only: memory O(samples), whatever the alphabet sizes ``ks``
    (declared or max + 1, used by NSB and James-Stein).  The plug-in is summed term by
    term from count ratios, as the table route does."""
    vals, counts, sizes = _cells(arrays)
    n = float(counts.sum())
    margins = []
    for sign, keep in groups:
        g, inv = _group(vals, counts, sizes, keep)
        margins.append((sign, g, inv, float(math.prod(float(ks[i]) for i in keep))))
    if estimator == "plugin":
        num = np.ones_like(counts)
        den = np.ones_like(counts)
        for sign, g, inv, _ in margins:
            if sign < 0:
                num *= g[inv]
            else:
                den *= g[inv]
        ratio = num / den * n ** float(sum(s for s, *_ in margins))
        return float(_clip_rounding(np.array([(counts * np.log(ratio)).sum() / n]))[0]), None
    if estimator == "james_stein":
        k_joint = float(math.prod(float(k) for k in ks))
        lam = float(_james_stein_lambda_sparse(counts, n, k_joint))
        value = sum(sign * _shrunk_entropy(g, n, K, lam) for sign, g, _, K in margins)
        return value, None
    value = 0.0
    e = np.zeros_like(counts) if estimator == "jackknife" else None
    for sign, g, inv, K in margins:
        h, _ = _entropy_nats(g[None, :], K, estimator)
        value += sign * float(h[0])
        if e is not None:
            e += sign * _jackknife_d(g[inv])
    var = None
    if e is not None:
        p = counts / n
        ebar = (p * e).sum()
        var = float((p * (e - ebar) ** 2).sum() / (n - 1.0))
    return value, var


def _james_stein_lambda_sparse(c, n, K):
    """James-Stein shrinkage intensity of observed counts ``c`` over ``K`` bins."""
    return _james_stein_lambda(c[None, :], np.array([n]), K)[0]


def _unmasked_chunks(chunks):
    """Pass chunks through, refusing masked arrays inside them (TypeError)."""
    for c, chunk in enumerate(chunks):
        for part, name in zip(chunk if isinstance(chunk, (tuple, list)) else (chunk,),
                              ("x", "y", "weights")):
            V.reject_masked(part, f"{name} (chunk {c})")
        yield chunk


def _label_inputs(arrays, names, ks, knames, alphabet=None):
    """Checked label arrays (masks refused) and their alphabet sizes."""
    from infomoe._counting import _label_array

    out, sizes = [], []
    for a, name, k, kname in zip(arrays, names, ks, knames):
        V.reject_masked(a, name)
        la = _label_array(a, name)
        if out:
            V.check_same_length(out[0], la, names[0], name)
        out.append(la)
        sizes.append((alphabet or _checked_alphabet)(la, k, name, kname))
    return out, sizes


def _checked_alphabet(labels: np.ndarray, k, name: str, kname: str) -> int:
    """As :func:`_alphabet`, with the counting kernel's message (and index) for a
    label outside a declared alphabet."""
    from infomoe._counting import _observed_size, _raise_bad_labels

    top = _observed_size(labels, name)
    if k is None:
        return top
    k = V.check_positive_int(k, kname)
    if top > k:
        _raise_bad_labels(labels, name, k, kname)
    return k


# --------------------------------------------------------------------------
# channel form


@dataclass(frozen=True, eq=False)
class ChannelInformation:
    """Information quantities of a channel given by rows p(t|x).

    Attributes
    ----------
    entropy : float or numpy.ndarray
        :math:`H(T)` of the output marginal :math:`\\bar g(t) = \\sum_x p(x) p(t|x)`.
    conditional_entropy : float or numpy.ndarray
        :math:`H(T|X) = \\sum_x p(x) H(p(\\cdot|x))`.
    mutual_information : float or numpy.ndarray
        :math:`I(X;T) = H(T) - H(T|X)`, computed as :math:`\\sum_x p(x)
        \\mathrm{KL}(p(\\cdot|x)\\,\\|\\,\\bar g)` (never negative).
    lautum_information : float or numpy.ndarray
        :math:`L(X;T) = \\sum_x p(x) \\mathrm{KL}(\\bar g\\,\\|\\,p(\\cdot|x))`;
        ``inf`` when some row with ``p(x) > 0`` puts zero mass on an outcome
        that :math:`\\bar g` gives positive mass.
    base : float
        Logarithm base of every field.
    unit : str
        ``"bits"``, ``"nats"``, ...
    """

    entropy: Union[float, np.ndarray]
    conditional_entropy: Union[float, np.ndarray]
    mutual_information: Union[float, np.ndarray]
    lautum_information: Union[float, np.ndarray]
    base: float
    unit: str

    def __repr__(self) -> str:
        u = self.unit
        return (f"ChannelInformation(entropy={_fmt(self.entropy)} {u}, "
                f"conditional_entropy={_fmt(self.conditional_entropy)} {u}, "
                f"mutual_information={_fmt(self.mutual_information)} {u}, "
                f"lautum_information={_fmt(self.lautum_information)} {u})")


def channel_information(p_t_given_x, *, weights=None, base: float = 2,
                        atol: float = V.ROW_SUM_ATOL) -> ChannelInformation:
    r"""H(T), H(T|X), I(X;T) and the lautum information of a channel p(t|x).

    One function serves two uses: the **soft-gate estimator** of the routing
    rate :math:`I(X;T)` (rows = router probabilities :math:`g(t|x)` of ``N``
    tokens, uniform weights), and the **closed-form** :math:`\hat I(S;W)` of
    Paper B (rows = selection posteriors :math:`q(W|S_j)` of ``M`` resampled
    training sets :math:`S_1..S_M`).

    Parameters
    ----------
    p_t_given_x : array_like, shape (..., n_rows, n_outcomes)
        Conditional distributions on the last axis, one row per input
        :math:`x`; leading axes are batched (e.g. one channel per layer).
        Every row must sum to 1 within ``atol`` (rows are then renormalised
        exactly).  One-hot rows describe a hard (deterministic) channel.
    weights : array_like, shape (n_rows,) or (..., n_rows), optional
        Input distribution :math:`p(x)` (non-negative, normalised here);
        default uniform :math:`1/n_{rows}`.
    base : float, default 2
        Logarithm base (2: bits).
    atol : float, default 1e-6
        Tolerance for the row sums.

    Returns
    -------
    ChannelInformation
        ``entropy``, ``conditional_entropy``, ``mutual_information``,
        ``lautum_information``, ``base``, ``unit``: floats, or arrays of shape
        ``p_t_given_x.shape[:-2]``.

    Raises
    ------
    ValueError
        Rows not summing to 1, negative/NaN/inf entries, fewer than 2
        dimensions, weights of the wrong shape, negative or all-zero weights.

    Notes
    -----
    With :math:`\bar g(t) = \sum_x p(x)\, p(t|x)`:

    .. math::

        I(X;T) = \sum_x p(x) \sum_t p(t|x) \log\frac{p(t|x)}{\bar g(t)}
               = H(T) - H(T|X),

        L(X;T) = \sum_x p(x) \sum_t \bar g(t) \log\frac{\bar g(t)}{p(t|x)}.

    The forms of docs/theory.md#mutual-information-and-the-channel-form: the
    soft-gate estimator :math:`\hat I = \frac1N \sum_x
    \sum_t g(t|x)\log(g(t|x)/\bar g(t))`, :math:`\bar g = \frac1N\sum_x
    g(\cdot|x)`; and Paper B's :math:`\hat I(S;W) = H(\frac1M\sum_j
    q(\cdot|S_j)) - \frac1M\sum_j H(q(\cdot|S_j))`.  For a hard gate over
    distinct samples :math:`I(X;T) = H(T)`; for a deterministic selection rule
    it is the plug-in entropy of the selection histogram (biased low by about
    :math:`(K_+-1)/(2M)` nats).  :math:`I + L` is the symmetrized KL
    information :math:`I_{SKL}` of Aminian et al. (2021), whose ratio to the
    Gibbs inverse temperature equals the expected generalization gap of a
    Gibbs rule.  The lautum information is infinite when some row with
    :math:`p(x) > 0` gives zero probability to an outcome :math:`t` with
    :math:`\bar g(t) > 0` (always the case for hard gates with more than one
    used outcome).

    References
    ----------
    Cover and Thomas (2006), §2.3 (I as a KL divergence).
    D. Palomar and S. Verdú (2008), "Lautum information", IEEE Trans. Inf.
    Theory 54 (definition of L).  G. Aminian et al. (2021), "An exact
    characterization of the generalization error for the Gibbs algorithm",
    arXiv 2107.13656 (main theorem: E gen = I_SKL / gamma).  Paper B: arXiv
    2605.05278 (the estimator above is reconstructed; the paper's equation is
    not public).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import channel_information
    >>> ci = channel_information(np.eye(4))        # hard gate, 4 distinct inputs
    >>> ci.mutual_information, ci.entropy, ci.conditional_entropy
    (2.0, 2.0, 0.0)
    >>> float(channel_information(np.full((3, 4), 0.25)).mutual_information)
    0.0
    """
    b = V.check_base(base)
    atol = V.check_positive_float(atol, "atol")
    p = V.as_probability_rows(p_t_given_x, "p_t_given_x", atol=atol, min_ndim=2)
    p = p / p.sum(axis=-1, keepdims=True)
    lead = p.shape[:-2]
    n_rows = p.shape[-2]
    if weights is None:
        w = np.full(p.shape[:-1], 1.0 / n_rows)
    else:
        wa = V.as_float_array(weights, "weights", min_ndim=1)
        if wa.shape[-1] != n_rows:
            raise ValueError(f"`weights` must have length {n_rows} (one per row of "
                             f"`p_t_given_x`) on its last axis, got shape {wa.shape}.")
        try:
            wa = np.broadcast_to(wa, p.shape[:-1])
        except ValueError:
            raise ValueError(f"`weights` of shape {wa.shape} does not broadcast to the rows "
                             f"of `p_t_given_x` {p.shape[:-1]}.") from None
        if (wa < 0).any():
            raise ValueError(f"`weights` has a negative weight {wa[wa < 0][0]!r}; "
                             "weights must be >= 0.")
        s = wa.sum(axis=-1, keepdims=True)
        if (s <= 0).any():
            raise ValueError("`weights` sums to zero (for some batch entry); "
                             "at least one weight must be positive.")
        w = wa / s
    gbar = (w[..., None] * p).sum(axis=-2)                       # (..., n_out)
    gb = gbar[..., None, :]
    live = w > 0
    h_t = special.entr(gbar).sum(axis=-1)
    h_t_x = (w * special.entr(p).sum(axis=-1)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # I: sum_x p(x) sum_t p log(p / gbar), terms with p(t|x) = 0 are 0
        r = p / gb
        np.copyto(r, 1.0, where=~(p > 0))
        np.log(r, out=r)
        r *= p
        kl = np.where(live, r.sum(axis=-1), 0.0)
        # L: sum_x p(x) sum_t gbar log(gbar / p), inf where p(t|x) = 0 < gbar(t)
        np.divide(gb, p, out=r)
        np.copyto(r, 1.0, where=~(gb > 0))
        np.log(r, out=r)
        r *= gb
        lt = np.where(live, r.sum(axis=-1), 0.0)
    mi = _clip_rounding((w * kl).sum(axis=-1))
    lautum = _clip_rounding((w * lt).sum(axis=-1))
    lb = math.log(b)

    def out(v):
        v = np.asarray(v / lb).reshape(lead)
        return float(v) if v.ndim == 0 else v

    return ChannelInformation(entropy=out(h_t), conditional_entropy=out(h_t_x),
                              mutual_information=out(mi), lautum_information=out(lautum),
                              base=b, unit=V.unit_name(b))


# --------------------------------------------------------------------------
# warnings


#: The plug-in warns when a table has more than this many cells per sample (and
#: at least _WARN_MIN_CELLS cells).
_WARN_CELLS_PER_SAMPLE = 10.0
_WARN_MIN_CELLS = 64


def _warn_undersampled(cells: int, n, what: str = "table") -> None:
    n_min = float(np.min(n))
    if cells >= _WARN_MIN_CELLS and cells > _WARN_CELLS_PER_SAMPLE * n_min:
        warnings.warn(
            f"the {what} has {cells} cells but only {n_min:g} samples: the plug-in estimate is "
            "dominated by its bias (about +(kx-1)(ky-1)/(2N) nats for a mutual information). "
            "Use estimator='nsb' or 'james_stein', or test against a permutation null "
            "(infomoe.independence_test).", UndersampledWarning, stacklevel=4)


# --------------------------------------------------------------------------
# entropies and dependence of several label arrays


def _labels_estimate(arrays, names, ks, groups, estimator, base, k_out=None):
    V.check_choice(estimator, "estimator", ESTIMATORS)
    b = V.check_base(base)
    arrays, sizes = _label_inputs(arrays, names, ks, [f"k{nm}" if len(nm) == 1 else f"k[{i}]"
                                                      for i, nm in enumerate(names)])
    n = arrays[0].shape[0]
    value, var = _sparse_estimate(arrays, sizes, groups, estimator)
    if estimator == "plugin":
        _warn_undersampled(int(min(math.prod(sizes), 2 ** 62)), n, "joint alphabet")
    return _result(np.array([value]), None if var is None else np.array([var]), b, estimator,
                   np.array([float(n)]), tuple(sizes) if k_out is None else k_out, ())


def conditional_entropy(y, x, *, estimator: str = "plugin", ky: Optional[int] = None,
                        kx: Optional[int] = None, base: float = 2) -> Estimate:
    r"""Conditional entropy H(Y|X) from paired integer labels.

    Parameters
    ----------
    y, x : array_like of int, shape (n,)
        Labels of Y (whose uncertainty is measured) and of X (the condition).
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Entropy estimator, applied to the joint (alphabet :math:`K_X K_Y`) and
        to X (alphabet :math:`K_X`).
    ky, kx : int, optional
        Alphabet sizes (default: largest label + 1); used by NSB and James-Stein.
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        ``k = (ky, kx)``; ``std`` is the jackknife standard error for
        ``"jackknife"``.

    Notes
    -----
    :math:`H(Y|X) = H(X,Y) - H(X)`.  The plug-in is summed term by term,
    :math:`\sum_{xy}\hat p_{xy}\log(n_x/n_{xy}) \ge 0`; the other estimators
    are the difference of the two estimated entropies (may be negative when
    the true value is near 0).  Counted from the observed cells (sorting), so
    label values may be arbitrarily large.

    References
    ----------
    Cover and Thomas (2006), eq. (2.10) and the chain rule, eq. (2.14).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import conditional_entropy
    >>> x = np.array([0, 0, 1, 1])
    >>> float(conditional_entropy(x ^ np.array([0, 1, 0, 1]), x))   # a fair coin per x
    1.0
    >>> float(conditional_entropy(x, x))
    0.0
    """
    return _labels_estimate([y, x], ["y", "x"], [ky, kx], [(1, (0, 1)), (-1, (1,))],
                            estimator, base)


def joint_entropy(*labels, estimator: str = "plugin", k=None, base: float = 2) -> Estimate:
    r"""Joint entropy H(X_1, ..., X_L) of several paired label arrays.

    Parameters
    ----------
    *labels : array_like of int, shape (n,)
        One or more label arrays of the same length (e.g. the expert chosen
        for each token at layers 1..L).
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Entropy estimator applied to the joint (alphabet :math:`\prod_l K_l`).
    k : sequence of int, optional
        Alphabet size of each array (default: largest label + 1 of each).
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        ``k`` is the tuple of alphabet sizes.

    Notes
    -----
    The entropy of the tuples :math:`(x_1, ..., x_L)`, counted from the
    observed tuples only, so :math:`\prod_l K_l` may be astronomically large.

    References
    ----------
    Cover and Thomas (2006), eq. (2.8).

    Examples
    --------
    >>> from infomoe import joint_entropy
    >>> float(joint_entropy([0, 0, 1, 1], [0, 1, 0, 1]))
    2.0
    """
    ks = _ks_for(labels, k)
    return _labels_estimate(list(labels), [f"labels[{i}]" for i in range(len(labels))], ks,
                            [(1, tuple(range(len(labels))))], estimator, base)


def _ks_for(labels, k):
    if len(labels) < 1:
        raise TypeError("at least one label array is needed.")
    if k is None:
        return [None] * len(labels)
    if isinstance(k, (str, bytes)) or not hasattr(k, "__len__") or len(k) != len(labels):
        raise ValueError(f"`k` must be a sequence of {len(labels)} alphabet sizes (one per "
                         f"label array), got {k!r}.")
    return list(k)


def total_correlation(*labels, estimator: str = "plugin", k=None, base: float = 2) -> Estimate:
    r"""Total correlation (multi-information) of several paired label arrays.

    Parameters
    ----------
    *labels : array_like of int, shape (n,)
        Two or more label arrays of the same length, e.g. the experts chosen
        for each token at layers 1..L.
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        Entropy estimator applied to every margin and to the joint.
    k : sequence of int, optional
        Alphabet size of each array (default: largest label + 1 of each).
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        ``k`` is the tuple of alphabet sizes.

    Notes
    -----
    :math:`C(X_1..X_L) = \sum_l H(X_l) - H(X_1, ..., X_L) =
    \mathrm{KL}(p(x_1..x_L)\,\|\,\prod_l p(x_l))` (Watanabe 1960); for two
    arrays it is the mutual information.  The plug-in is summed term by term
    from count ratios (never negative); the other estimators combine the
    estimated entropies and may be negative near 0.

    References
    ----------
    S. Watanabe (1960), "Information theoretical analysis of multivariate
    correlation", IBM J. Res. Dev. 4 (definition).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import total_correlation
    >>> a = np.array([0, 1, 0, 1]); b = np.array([0, 0, 1, 1])
    >>> float(total_correlation(a, b, a ^ b))     # pairwise independent, jointly 1 bit
    1.0
    """
    if len(labels) < 2:
        raise TypeError(f"total_correlation needs at least 2 label arrays, got {len(labels)}.")
    ks = _ks_for(labels, k)
    L = len(labels)
    groups = [(1, (i,)) for i in range(L)] + [(-1, tuple(range(L)))]
    return _labels_estimate(list(labels), [f"labels[{i}]" for i in range(L)], ks, groups,
                            estimator, base)


# --------------------------------------------------------------------------
# chance-adjusted comparison of two labellings

_AVERAGES = ("min", "geometric", "arithmetic", "max")


def _generalized_mean(u: float, v: float, method: str) -> float:
    if method == "min":
        return min(u, v)
    if method == "geometric":
        return math.sqrt(u * v)
    if method == "arithmetic":
        return 0.5 * (u + v)
    return max(u, v)


def _two_labellings(x, y, average_method):
    V.check_choice(average_method, "average_method", _AVERAGES)
    (xa, ya), _ = _label_inputs([x, y], ["x", "y"], [None, None], ["kx", "ky"])
    vals, counts, sizes = _cells([xa, ya])
    a = np.bincount(vals[:, 0], weights=counts)
    b = np.bincount(vals[:, 1], weights=counts)
    n = float(counts.sum())
    mi = float((counts / n * np.log(counts / a[vals[:, 0]] * (n / b[vals[:, 1]]))).sum())
    mi = max(mi, 0.0)
    hx = float(special.entr(a / n).sum())
    hy = float(special.entr(b / n).sum())
    return a, b, n, mi, hx, hy, sizes


def _expected_mi(a: np.ndarray, b: np.ndarray, n: float) -> float:
    """E[I] (nats) under the hypergeometric model of random labellings with margins
    ``a``, ``b`` (Vinh, Epps & Bailey 2010, eq. 24a)."""
    lg = special.gammaln
    const = lg(n + 1.0)
    emi = 0.0
    for ai in a:
        for bj in b:
            lo = max(1.0, ai + bj - n)
            hi = min(ai, bj)
            if hi < lo:
                continue
            nij = np.arange(lo, hi + 1.0)
            logp = (lg(ai + 1) + lg(bj + 1) + lg(n - ai + 1) + lg(n - bj + 1) - const
                    - lg(nij + 1) - lg(ai - nij + 1) - lg(bj - nij + 1)
                    - lg(n - ai - bj + nij + 1))
            emi += float((nij / n * np.log(n * nij / (ai * bj)) * np.exp(logp)).sum())
    return emi


def normalized_mutual_information(x, y, *, average_method: str = "arithmetic") -> float:
    r"""Normalised mutual information of two labellings (e.g. two routings).

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Two labellings of the same samples (e.g. the expert each token goes
        to under two routers, or at two layers); the label values are names
        only (any non-negative integers).
    average_method : {"arithmetic", "min", "geometric", "max"}
        Mean of :math:`H(X)` and :math:`H(Y)` used as the normaliser.

    Returns
    -------
    float
        :math:`\hat I(X;Y) / \mathrm{mean}(\hat H(X), \hat H(Y))` in [0, 1]
        (plug-in; unitless, so no ``base``).  1.0 when both labellings are
        constant, 0.0 when the MI is 0; as scikit-learn's
        ``normalized_mutual_info_score``.

    References
    ----------
    A. Strehl and J. Ghosh (2002), "Cluster ensembles", JMLR 3 (geometric);
    N. X. Vinh, J. Epps and J. Bailey (2010), JMLR 11, Table 2 (the variants).

    Examples
    --------
    >>> from infomoe import normalized_mutual_information
    >>> normalized_mutual_information([0, 0, 1, 1], [1, 1, 0, 0])   # same partition
    1.0
    """
    a, b, _, mi, hx, hy, _ = _two_labellings(x, y, average_method)
    if a.size == b.size == 1:
        return 1.0
    if mi == 0.0:
        return 0.0
    return float(mi / _generalized_mean(hx, hy, average_method))


def adjusted_mutual_information(x, y, *, average_method: str = "arithmetic") -> float:
    r"""Adjusted-for-chance mutual information of two labellings (AMI).

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Two labellings of the same samples (label values are names only).
    average_method : {"arithmetic", "min", "geometric", "max"}
        Mean of :math:`H(X)`, :math:`H(Y)` in the normaliser.

    Returns
    -------
    float
        :math:`(\hat I - E[\hat I]) / (\mathrm{mean}(\hat H(X), \hat H(Y)) -
        E[\hat I])`: 1 for identical partitions, about 0 for independent
        random ones (may be negative); unitless.

    Notes
    -----
    :math:`E[\hat I]` is the exact expectation of the plug-in MI over random
    labellings with the observed margins (hypergeometric model, Vinh, Epps &
    Bailey 2010, eq. 24a), cost :math:`O(K_X K_Y \min(a_i, b_j))`.  The
    conventions of scikit-learn's ``adjusted_mutual_info_score`` are kept: 1.0
    when both labellings are constant, and numerator and denominator kept at
    least machine epsilon in size with their sign.

    References
    ----------
    N. X. Vinh, J. Epps and J. Bailey (2010), "Information theoretic measures
    for clusterings comparison", JMLR 11, eqs. (24a) and Table 2.

    Examples
    --------
    >>> from infomoe import adjusted_mutual_information
    >>> adjusted_mutual_information([0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 4, 4])
    1.0
    """
    a, b, n, mi, hx, hy, _ = _two_labellings(x, y, average_method)
    if a.size == b.size == 1:
        return 1.0
    if a.size == 1 or b.size == 1:  # one labelling constant: no information, as scikit-learn
        return 0.0
    emi = _expected_mi(a, b, n)
    eps = np.finfo(np.float64).eps
    den = _generalized_mean(hx, hy, average_method) - emi
    den = min(den, -eps) if den < 0 else max(den, eps)
    num = mi - emi
    num = min(num, -eps) if num < 0 else max(num, eps)
    return float(num / den)


# --------------------------------------------------------------------------
# divergences between two distributions or count vectors


def _two_distributions(p, q):
    pa = V.as_counts(p, "p", min_ndim=1)
    qa = V.as_counts(q, "q", min_ndim=1)
    if pa.shape[-1] != qa.shape[-1]:
        raise ValueError(f"`p` and `q` must have the same number of outcomes on the last axis, "
                         f"got {pa.shape[-1]} and {qa.shape[-1]}.")
    try:
        pa, qa = np.broadcast_arrays(pa, qa)
    except ValueError:
        raise ValueError(f"`p` of shape {pa.shape} and `q` of shape {qa.shape} do not "
                         "broadcast.") from None
    for name, a in (("p", pa), ("q", qa)):
        if np.any(a.sum(axis=-1) <= 0):
            raise ValueError(f"`{name}` has a row summing to zero; it must hold a distribution "
                             "or counts with at least one positive entry.")
    return pa, qa


def kl_divergence(p, q, *, base: float = 2) -> Estimate:
    r"""Kullback-Leibler divergence KL(p || q) between distributions or count vectors.

    Parameters
    ----------
    p, q : array_like, shape (..., K)
        Non-negative weights on the last axis (probabilities, or counts such
        as two layers' expert loads); each row is normalised here.  Leading
        axes are batched (and broadcast).
    base : float, default 2
        Logarithm base (2: bits).

    Returns
    -------
    Estimate
        ``value`` :math:`\sum_i \hat p_i \log(\hat p_i / \hat q_i)`, ``inf``
        where some :math:`\hat q_i = 0 < \hat p_i`; ``estimator="plugin"``,
        ``n`` the total of ``p`` and ``q``, ``k = K``.

    Notes
    -----
    Plug-in only: no standard bias correction of KL between two estimated
    distributions is offered (its first-order bias involves the unknown
    :math:`\sum_i p_i/q_i` and is infinite when some :math:`q_i` may be 0).
    For the bias-corrected, always-finite comparison of two count vectors use
    :func:`jensen_shannon_divergence` with ``estimator=``.  Agrees with
    ``scipy.stats.entropy(p, q, base=base)``.

    References
    ----------
    S. Kullback and R. A. Leibler (1951), Ann. Math. Stat. 22; Cover and Thomas
    (2006), eq. (2.26).

    Examples
    --------
    >>> from infomoe import kl_divergence
    >>> float(kl_divergence([0.5, 0.5], [0.25, 0.75]))
    0.20751874963942185
    >>> float(kl_divergence([3, 1], [3, 1]))                  # counts, normalised
    0.0
    """
    b = V.check_base(base)
    pa, qa = _two_distributions(p, q)
    n = pa.sum(axis=-1) + qa.sum(axis=-1)
    pn = pa / pa.sum(axis=-1, keepdims=True)
    qn = qa / qa.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pn > 0, pn / np.where(qn > 0, qn, 0.0), 1.0)
        terms = np.where(pn > 0, pn * np.log(r), 0.0)
    v = _clip_rounding(terms.sum(axis=-1).reshape(-1))
    lead = pa.shape[:-1]
    return Estimate(value=_shape_out(v / math.log(b), lead), std=None, base=b,
                    unit=V.unit_name(b), estimator="plugin", n=_n_out(n, lead),
                    k=int(pa.shape[-1]))


def jensen_shannon_divergence(p, q, *, estimator: str = "plugin", weights: str = "equal",
                              base: float = 2) -> Estimate:
    r"""Jensen-Shannon divergence between two distributions or count vectors.

    Parameters
    ----------
    p, q : array_like, shape (..., K)
        Non-negative weights on the last axis (probabilities or counts, e.g.
        the expert loads of two layers or two runs); normalised here; leading
        axes batched.
    estimator : {"plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"}
        ``"plugin"``: the divergence of the normalised rows.  Any other
        estimator needs integer counts and ``weights="counts"`` (see Notes).
    weights : {"equal", "counts"}
        Mixture weights :math:`\pi_p, \pi_q`: ``"equal"`` (1/2 each, the usual
        JSD, as ``scipy.spatial.distance.jensenshannon(p, q) ** 2``) or
        ``"counts"`` (:math:`N_p/N, N_q/N`, the sample proportions).
    base : float, default 2
        Logarithm base (2: bits; then the value lies in [0, 1]).

    Returns
    -------
    Estimate
        ``k = (2, K)``, ``n`` the total of ``p`` and ``q``.

    Notes
    -----
    :math:`JS_\pi(p, q) = H(\pi_p p + \pi_q q) - \pi_p H(p) - \pi_q H(q)`.
    With the count weights this is exactly the mutual information between the
    source (p or q) and the outcome in the 2 x K table ``[p; q]`` (Grosse et
    al. 2002), and the bias-corrected estimators are those of
    :func:`mutual_information_table` on that table (e.g. ``"miller_madow"``:
    the Panzeri–Treves/Miller correction; ``"nsb"``, ``"james_stein"``);
    such values may be slightly negative when the divergence is near 0.

    References
    ----------
    J. Lin (1991), "Divergence measures based on the Shannon entropy", IEEE
    Trans. Inf. Theory 37 (definition); I. Grosse et al. (2002), "Analysis of
    symbolic sequences using the Jensen-Shannon divergence", Phys. Rev. E 65
    (JS as a mutual information).

    Examples
    --------
    >>> from infomoe import jensen_shannon_divergence
    >>> float(jensen_shannon_divergence([1, 0], [0, 1]))      # disjoint supports
    1.0
    >>> float(jensen_shannon_divergence([10, 30], [20, 20], estimator="miller_madow",
    ...                                 weights="counts")) < 0.05
    True
    """
    V.check_choice(estimator, "estimator", ESTIMATORS)
    V.check_choice(weights, "weights", ("equal", "counts"))
    b = V.check_base(base)
    pa, qa = _two_distributions(p, q)
    if estimator != "plugin":
        if weights != "counts":
            raise ValueError(f"estimator={estimator!r} needs weights='counts': its bias "
                             "correction is that of the mutual information of the 2 x K table "
                             "of counts, whose mixture weights are the sample proportions.")
        return mutual_information_table(np.stack([pa, qa], axis=-2), estimator=estimator,
                                        base=b)
    lead = pa.shape[:-1]
    npt, nqt = pa.sum(axis=-1, keepdims=True), qa.sum(axis=-1, keepdims=True)
    pn, qn = pa / npt, qa / nqt
    if weights == "equal":
        wp = np.full(npt.shape, 0.5)
    else:
        wp = npt / (npt + nqt)
    m = wp * pn + (1.0 - wp) * qn
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(pn > 0, pn * np.log(pn / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)
        tq = np.where(qn > 0, qn * np.log(qn / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)
    v = _clip_rounding((wp[..., 0] * tp + (1.0 - wp[..., 0]) * tq).reshape(-1))
    return Estimate(value=_shape_out(v / math.log(b), lead), std=None, base=b,
                    unit=V.unit_name(b), estimator="plugin",
                    n=_n_out((npt + nqt)[..., 0], lead), k=(2, int(pa.shape[-1])))
