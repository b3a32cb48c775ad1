"""Assertion helpers for checking bounds and estimates in a pytest suite.

Each helper returns quietly (with the numbers it computed) when the check
passes and raises ``AssertionError`` with a message that shows the measured
values, the interval, the bound, the sizes and the units when it fails;
invalid arguments raise ``ValueError``/``TypeError`` instead.

Examples
--------
>>> import numpy as np
>>> from infomoe.testing import assert_gap_below_bound
>>> rng = np.random.default_rng(0)
>>> train = rng.binomial(1, 0.10, size=(40, 100))   # 40 repetitions
>>> test = rng.binomial(1, 0.12, size=(40, 400))
>>> g = assert_gap_below_bound(train, test, bound=0.1)
>>> g.estimand
'expected'
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from infomoe._bounds_gap import GapEstimate, generalization_gap
from infomoe._validate import as_float_array, check_positive_float, check_unit_interval

__all__ = ["assert_gap_below_bound", "assert_mi_close", "assert_bound_holds"]


def _finite_real(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {x!r}.")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {x!r}.")
    return v


def _check_flag(x, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {x!r}.")
    return bool(x)


def _check_gap_is_a_number(g: GapEstimate, bound_name: str, bound: float, units: str) -> None:
    """Fail when the gap or its interval is NaN, or the gap is infinite (float64 overflow).

    Every comparison with NaN is False, so without this a NaN interval would
    pass ``low > bound`` and ``high > bound`` alike.
    """
    numbers_ = {"gap": g.gap, "low": g.low, "high": g.high, "standard error": g.standard_error}
    bad = [k for k, v in numbers_.items() if math.isnan(v)]
    if not math.isfinite(g.gap) and "gap" not in bad:
        bad.insert(0, "gap")
    if bad:
        raise AssertionError(
            f"generalization gap could not be measured, so it cannot be compared with the {bound_name} "
            f"({bound:.6g} {units}): {', '.join(bad)} = "
            + ", ".join(f"{numbers_[k]!r}" for k in bad)
            + f" (gap = {g.gap!r}, {g.confidence_level:.0%} CI [{g.low!r}, {g.high!r}], n_train={g.n_train}, "
            f"n_test={g.n_test}, repetitions={g.n_repetitions}). The means or standard deviations of the "
            "losses overflow float64; rescale the losses (e.g. divide by their largest magnitude and the "
            "bound alike).")


def assert_gap_below_bound(train_losses, test_losses, bound, *, confidence_level=0.95,
                           strict=False, two_sided=False, bound_name="bound",
                           units="loss units") -> GapEstimate:
    """Assert that a measured generalization gap is consistent with a bound.

    Parameters
    ----------
    train_losses, test_losses : array_like
        Per-sample losses, 1-D (one trained model) or 2-D
        ``(repetitions, samples)``; see
        :func:`infomoe.bounds.generalization_gap` for what each form measures
        (1-D: the gap of one model, for high-probability bounds; 2-D: the
        expected gap, for in-expectation bounds).
    bound : float
        The bound's value, in the same units as the losses.
    confidence_level : float, default 0.95
        Coverage of the two-sided t interval ``[low, high]`` of the gap.
    strict : bool, default False
        Which side of the interval is compared (see Notes).
    two_sided : bool, default False
        Also check the lower side, ``gap >= -bound`` (for bounds on
        ``|gen|``).
    bound_name : str, default "bound"
        Name shown in the failure message (e.g. ``"Xu-Raginsky"``).
    units : str, default "loss units"
        Units shown in the failure message.

    Returns
    -------
    GapEstimate
        The measured gap, when the assertion passes.

    Raises
    ------
    AssertionError
        When the check fails; the message shows gap, interval, standard
        error, bound, sample sizes and units.  Also when the gap or its
        interval is not a number (losses so large that their means or
        spread overflow float64): a NaN interval is never taken as a pass.

    Notes
    -----
    ``strict=False`` (default) fails only on *significant evidence of a
    violation*: the **lower** end of the interval exceeds the bound
    (``low > bound``).  For a valid bound this fails with probability at most
    about ``(1 - confidence_level) / 2`` (exactly so for normal data), so it
    is the right check for "the bound holds" in a test suite, even for bounds
    that are nearly tight (for an exact identity such as Aminian's, raise
    ``confidence_level`` to keep false alarms rare).  ``strict=True`` requires the **upper** end
    below the bound (``high <= bound``): the data must *demonstrate* that the
    gap lies below the bound, which also fails when the sample is too small
    to tell, so use it for loose bounds and large samples.  With
    ``two_sided`` the mirror-image check against ``-bound`` is added.

    Examples
    --------
    >>> g = assert_gap_below_bound([0, 0, 0, 1], [0, 1, 0, 0, 1, 0], bound=0.5)
    >>> round(g.gap, 4), round(g.high, 4)
    (0.0833, 0.6253)
    """
    b = _finite_real(bound, "bound")
    strict = _check_flag(strict, "strict")
    two_sided = _check_flag(two_sided, "two_sided")
    g = generalization_gap(train_losses, test_losses, confidence_level=confidence_level)
    _check_gap_is_a_number(g, bound_name, b, units)
    problems = []
    if strict:
        if g.high > b:
            problems.append(f"upper end of the interval {g.high:.6g} > {bound_name} {b:.6g} "
                            f"(strict: the whole interval must lie below the bound)")
        if two_sided and g.low < -b:
            problems.append(f"lower end of the interval {g.low:.6g} < -{bound_name} {-b:.6g} "
                            f"(strict, two-sided)")
    else:
        if g.low > b:
            problems.append(f"lower end of the interval {g.low:.6g} > {bound_name} {b:.6g}: "
                            f"significant violation (exceeds it by {g.low - b:.6g})")
        if two_sided and g.high < -b:
            problems.append(f"upper end of the interval {g.high:.6g} < -{bound_name} {-b:.6g}: "
                            f"significant violation of the two-sided bound")
    if problems:
        sizes = f"n_train={g.n_train}, n_test={g.n_test}"
        if g.estimand == "expected":
            sizes += f", repetitions={g.n_repetitions}"
        raise AssertionError(
            f"generalization gap is not below the {bound_name}: gap = {g.gap:.6g} "
            f"({g.confidence_level:.0%} CI [{g.low:.6g}, {g.high:.6g}], standard error "
            f"{g.standard_error:.3g}, {g.estimand} gap) vs {bound_name} = {b:.6g}; "
            + "; ".join(problems)
            + f". Inputs: {sizes}. Units: {units} (gap, interval and bound alike).")
    return g


def assert_mi_close(estimate, expected, *, n_std=3.0, std=None, atol=0.0, unit=None):
    """Assert that an information estimate matches a known value within its error.

    Parameters
    ----------
    estimate : Estimate or float or array_like
        An :class:`infomoe.Estimate` (its ``value``, ``std`` and ``unit`` are
        used) or a plain value (then give ``std`` or ``atol``).
    expected : float or array_like
        The known value, in the same unit as the estimate.
    n_std : float, default 3.0
        Allowed number of standard errors.
    std : float or array_like, optional
        Standard error of the estimate; overrides ``estimate.std``.
    atol : float, default 0.0
        Extra absolute tolerance (e.g. a known bias bound); the check is
        ``|value - expected| <= n_std * std + atol``.
    unit : str, optional
        Unit shown in messages; default the estimate's ``unit`` or "units".

    Returns
    -------
    float
        The largest ``|value - expected| / std`` (``nan`` when only ``atol``
        is used).

    Raises
    ------
    AssertionError
        When the difference exceeds the tolerance (the message shows value,
        expected, difference, standard error, tolerance and unit).
    ValueError
        When there is no standard error and ``atol`` is 0 (nothing to compare
        with), or inputs are invalid.

    Examples
    --------
    >>> round(assert_mi_close(0.52, 0.5, std=0.01), 6)   # 2 standard errors away
    2.0
    """
    n_std = check_positive_float(n_std, "n_std", allow_zero=True)
    atol = check_positive_float(atol, "atol", allow_zero=True)
    if hasattr(estimate, "value"):
        value = estimate.value
        est_std = getattr(estimate, "std", None)
        unit = unit if unit is not None else getattr(estimate, "unit", None)
    else:
        value, est_std = estimate, None
    unit = unit if unit is not None else "units"
    v = as_float_array(value, "estimate")
    e = as_float_array(expected, "expected")
    s = std if std is not None else est_std
    if s is None or np.any(np.isnan(np.asarray(s, dtype=float))):
        if atol == 0:
            raise ValueError(
                "`estimate` carries no standard error (e.g. a plug-in Estimate has std=None): "
                "pass `std=` (e.g. a bootstrap standard error) or an absolute tolerance `atol=`.")
        s_arr = np.zeros_like(v)
        have_std = False
    else:
        s_arr = as_float_array(s, "std")
        if (s_arr < 0).any():
            raise ValueError(f"`std` must be >= 0, got {s_arr[s_arr < 0].flat[0]!r}.")
        have_std = True
    v, e, s_arr = np.broadcast_arrays(v, e, s_arr)
    diff = np.abs(v - e)
    tol = n_std * s_arr + atol
    bad = ~(diff <= tol)  # NaN in diff or tol fails instead of passing
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s_arr > 0, diff / s_arr, np.where(diff > 0, np.inf, 0.0))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {idx}" if v.ndim else ""
        zs = f" = {z[idx]:.3g} standard errors" if have_std else ""
        raise AssertionError(
            f"information estimate {v[idx]:.6g} {unit} differs from the expected {e[idx]:.6g} "
            f"{unit}{where} by {diff[idx]:.3g} {unit}{zs}; allowed: {n_std:g} x std "
            f"({s_arr[idx]:.3g}) + atol ({atol:g}) = {tol[idx]:.3g} {unit}"
            + (f"; {int(bad.sum())} of {bad.size} entries fail" if bad.size > 1 else "") + ".")
    return float(np.max(z)) if have_std else math.nan


def assert_bound_holds(gaps, bounds, *, delta=0.0, confidence_level=0.95, bound_name="bound",
                       units="loss units") -> int:
    """Assert that a bound holds in (nearly) every Monte Carlo repetition.

    Parameters
    ----------
    gaps : array_like, shape (repetitions,)
        The bounded quantity in every repetition (e.g. the gap
        ``L_mu(W) - L_S(W)`` with the population risk known, or the population
        risk ``L(Q)`` for a PAC-Bayes bound).
    bounds : float or array_like, shape (repetitions,)
        The bound in every repetition (or one value for all).
    delta : float, default 0.0
        The failure probability the bound allows (``[0, 1)``): 0 for a bound
        that must always hold, e.g. 0.05 for a "with probability 0.95" bound.
    confidence_level : float, default 0.95
        With ``delta > 0``, the check fails when the number of violations
        ``V`` is significantly above ``delta * R``:
        ``P(Binomial(R, delta) >= V) < 1 - confidence_level``.
    bound_name, units : str
        Shown in the failure message.

    Returns
    -------
    int
        The number of violations, when the assertion passes.

    Raises
    ------
    AssertionError
        Showing the number and rate of violations, the allowed ``delta``, the
        binomial tail probability and the worst violation.

    Notes
    -----
    A valid bound with failure probability ``delta`` produces at most
    ``Binomial(R, delta)`` violations, so the check fails for it with
    probability at most ``1 - confidence_level``.

    Examples
    --------
    >>> assert_bound_holds([0.01, 0.02, 0.05], [0.1, 0.1, 0.04], delta=0.5)
    1
    """
    g = as_float_array(gaps, "gaps", ndim=1)
    b = as_float_array(bounds, "bounds", ndim=(0, 1))
    if b.ndim == 1 and b.shape[0] != g.shape[0]:
        raise ValueError(f"`bounds` must be a number or have one value per repetition "
                         f"({g.shape[0]}), got {b.shape[0]}.")
    d = check_unit_interval(delta, "delta", open_left=False)
    cl = check_unit_interval(confidence_level, "confidence_level")
    b = np.broadcast_to(b, g.shape)
    viol = ~(g <= b)  # a NaN gap or bound would count as a violation, never as a pass
    v, r = int(viol.sum()), g.shape[0]
    if v == 0:
        return 0
    excess = np.where(viol, g - b, -np.inf)
    worst = int(np.argmax(excess))
    if d == 0:
        p_tail, fail = 0.0, True
    else:
        from scipy import stats

        p_tail = float(stats.binom.sf(v - 1, r, d))
        fail = p_tail < 1.0 - cl
    if fail:
        allowed = ("none allowed (delta = 0)" if d == 0 else
                   f"delta = {d:g} allows about {d * r:.3g}; P(Binomial({r}, {d:g}) >= {v}) = "
                   f"{p_tail:.3g} < {1 - cl:.3g}")
        raise AssertionError(
            f"{bound_name} violated in {v} of {r} repetitions (rate {v / r:.3g}); {allowed}. "
            f"Worst: repetition {worst}, value {g[worst]:.6g} > {bound_name} {b[worst]:.6g} "
            f"(by {g[worst] - b[worst]:.3g}). Units: {units}.")
    return v
