"""Tests for infomoe.testing: every helper passes on good input and fails loudly on bad."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import infomoe
import infomoe.testing as T
from infomoe.bounds import GapEstimate
from infomoe.testing import assert_bound_holds, assert_gap_below_bound, assert_mi_close


# ------------------------------------------------------ assert_gap_below_bound
def test_gap_below_bound_passes_and_returns_estimate():
    rng = np.random.default_rng(0)
    train = rng.binomial(1, 0.10, size=(30, 100))
    test = rng.binomial(1, 0.15, size=(30, 300))
    g = assert_gap_below_bound(train, test, 0.2)
    assert isinstance(g, GapEstimate) and g.estimand == "expected"
    assert g.high < 0.2
    g1 = assert_gap_below_bound(train[0], test[0], 0.5, strict=True)
    assert g1.estimand == "conditional"


def test_gap_below_bound_failure_message_shows_everything():
    rng = np.random.default_rng(1)
    train = rng.binomial(1, 0.05, size=200)
    test = rng.binomial(1, 0.40, size=500)
    with pytest.raises(AssertionError) as info:
        assert_gap_below_bound(train, test, 0.1, bound_name="Xu-Raginsky", units="0/1 error")
    msg = str(info.value)
    for part in ["gap = ", "95% CI [", "standard error", "Xu-Raginsky = 0.1", "lower end",
                 "n_train=200", "n_test=500", "Units: 0/1 error", "conditional gap"]:
        assert part in msg, (part, msg)
    g = infomoe.bounds.generalization_gap(train, test)
    assert f"{g.gap:.6g}" in msg and f"{g.low:.6g}" in msg


def test_gap_below_bound_repetitions_in_message():
    train = np.zeros((5, 10))
    test = np.ones((5, 20))
    test[0, 0] = 0.0
    with pytest.raises(AssertionError, match=r"repetitions=5.*Units: loss units"):
        assert_gap_below_bound(train, test, 0.5)


def test_strict_compares_the_upper_end():
    # an interval that straddles the bound: no significant violation, but not demonstrated
    rng = np.random.default_rng(2)
    train = np.zeros(50)
    test = rng.binomial(1, 0.2, size=60).astype(float)
    g = infomoe.bounds.generalization_gap(train, test)
    bound = g.gap                              # low < bound < high
    assert g.low < bound < g.high
    assert_gap_below_bound(train, test, bound)
    with pytest.raises(AssertionError, match="upper end of the interval.*strict"):
        assert_gap_below_bound(train, test, bound, strict=True)


def test_two_sided_checks_negative_gaps():
    train = np.full(100, 0.5)
    test = np.r_[np.zeros(99), 1.0]            # gap about -0.49
    assert_gap_below_bound(train, test, 0.1)   # one-sided: a negative gap is fine
    with pytest.raises(AssertionError, match="two-sided"):
        assert_gap_below_bound(train, test, 0.1, two_sided=True)
    with pytest.raises(AssertionError, match="strict, two-sided"):
        assert_gap_below_bound(train, test, 0.1, two_sided=True, strict=True)
    assert_gap_below_bound(train, test, 0.6, two_sided=True, strict=True)


def test_non_strict_false_alarm_rate_is_at_most_half_alpha():
    """With the bound equal to the true expected gap the check fails about 2.5% of the time."""
    rng = np.random.default_rng(3)
    fails = 0
    runs = 400
    for _ in range(runs):
        train = rng.binomial(1, 0.1, size=(20, 40))
        test = rng.binomial(1, 0.2, size=(20, 40))
        try:
            assert_gap_below_bound(train, test, 0.1)
        except AssertionError:
            fails += 1
    assert fails / runs <= 0.06


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(bound=float("nan")), ValueError, "bound"),
    (dict(bound="0.1"), TypeError, "bound"),
    (dict(bound=0.1, strict="yes"), TypeError, "strict"),
    (dict(bound=0.1, two_sided=1), TypeError, "two_sided"),
    (dict(bound=0.1, confidence_level=0), ValueError, "confidence_level"),
])
def test_gap_below_bound_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        assert_gap_below_bound([0.0, 1.0], [0.0, 1.0, 0.0], **kwargs)


def test_gap_below_bound_bad_losses():
    with pytest.raises(ValueError, match="test_losses.*NaN"):
        assert_gap_below_bound([0.0, 1.0], [0.0, np.nan], 0.1)


# ------------------------------------------------------------ assert_mi_close
def _bsc_sample(n, flip, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    return x, x ^ (rng.random(n) < flip)


BSC_01 = 1 + 0.1 * math.log2(0.1) + 0.9 * math.log2(0.9)   # 1 - h(0.1) = 0.53100 bits


def test_mi_close_with_estimate_std():
    x, y = _bsc_sample(20_000, 0.1, 4)
    est = infomoe.mutual_information(x, y, estimator="jackknife")
    assert est.std is not None and est.std > 0
    z = assert_mi_close(est, BSC_01, n_std=4)
    assert 0 <= z < 4
    with pytest.raises(AssertionError) as info:
        assert_mi_close(est, 0.6)
    msg = str(info.value)
    for part in ["differs from the expected 0.6 bits", "standard errors", "3 x std", "bits"]:
        assert part in msg, (part, msg)


def test_mi_close_needs_an_error_scale():
    x, y = _bsc_sample(5000, 0.1, 5)
    est = infomoe.mutual_information(x, y)               # plug-in: std is None
    with pytest.raises(ValueError, match="no standard error"):
        assert_mi_close(est, BSC_01)
    assert math.isnan(assert_mi_close(est, BSC_01, atol=0.03))
    assert assert_mi_close(est, BSC_01, std=0.02) < 3
    with pytest.raises(AssertionError, match="allowed"):
        assert_mi_close(est, BSC_01 + 0.2, atol=0.03)


def test_mi_close_plain_values_and_arrays():
    assert assert_mi_close(1.0, 1.05, std=0.02) == pytest.approx(2.5)
    with pytest.raises(AssertionError, match=r"at index \(1,\).*1 of 3 entries fail"):
        assert_mi_close([0.1, 0.5, 0.3], [0.1, 0.2, 0.3], std=[0.01, 0.01, 0.01])
    with pytest.raises(AssertionError, match="nats"):
        assert_mi_close(0.3, 0.1, std=0.01, unit="nats")
    with pytest.raises(ValueError, match="std"):
        assert_mi_close(0.3, 0.1, std=-0.01)
    with pytest.raises(ValueError, match="expected.*NaN"):
        assert_mi_close(0.3, float("nan"), std=0.01)
    with pytest.raises(ValueError, match="n_std"):
        assert_mi_close(0.3, 0.3, std=0.01, n_std=-1)


# ---------------------------------------------------------- assert_bound_holds
def test_bound_holds_always():
    assert assert_bound_holds([0.1, 0.2], 0.3) == 0
    with pytest.raises(AssertionError, match=r"violated in 1 of 3 .*none allowed.*repetition 2"):
        assert_bound_holds([0.1, 0.2, 0.4], [0.3, 0.3, 0.35], bound_name="union")


def test_bound_holds_with_failure_probability():
    gaps = np.zeros(1000)
    gaps[:40] = 1.0                          # 4% violations, delta = 5%: fine
    assert assert_bound_holds(gaps, 0.5, delta=0.05) == 40
    gaps[:80] = 1.0                          # 8%: significantly above 5%
    with pytest.raises(AssertionError, match=r"80 of 1000.*delta = 0.05.*Binomial"):
        assert_bound_holds(gaps, 0.5, delta=0.05)


@pytest.mark.parametrize("args, kwargs, match", [
    (([0.1, 0.2], [0.3, 0.3, 0.3]), {}, "one value per repetition"),
    (([0.1, 0.2], 0.3), dict(delta=1.0), "delta"),
    (([[0.1, 0.2]], 0.3), {}, "gaps"),
    (([0.1, np.nan], 0.3), {}, "NaN"),
])
def test_bound_holds_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        assert_bound_holds(*args, **kwargs)


def test_docstring_examples():
    res = doctest.testmod(T)
    assert res.failed == 0 and res.attempted >= 4


# ----------------------------------------------------- NaN never passes (issue 16)
@pytest.mark.parametrize("train, test", [
    ([1e308, 1e308], [-1e308, 1e308]),            # test mean and sd overflow: high is NaN
    ([0.0, 0.0], [1e308, 1e308, -1e308]),         # low is NaN, gap +inf
    ([[1e308], [1e308]], [[-1e308], [1e308]]),    # 2-D: the per-row gaps overflow
    ([0.0, 0.0], [1e308, 1e308]),                 # constant losses whose mean overflows
])
@pytest.mark.parametrize("strict", [False, True])
def test_gap_below_bound_fails_when_the_interval_is_nan(train, test, strict):
    with np.errstate(all="ignore"):
        g = infomoe.bounds.generalization_gap(train, test)
    assert not all(map(math.isfinite, (g.gap, g.low, g.high)))  # the hole this closes
    for two_sided in (False, True):
        with pytest.raises(AssertionError, match="could not be measured") as info, np.errstate(all="ignore"):
            assert_gap_below_bound(train, test, 0.1, strict=strict, two_sided=two_sided, bound_name="Xu-Raginsky")
        msg = str(info.value)
        assert "Xu-Raginsky" in msg and "overflow" in msg and ("nan" in msg or "inf" in msg)


def test_gap_below_bound_nan_losses_and_bound_raise_value_error():
    with pytest.raises(ValueError, match="train_losses.*NaN"):
        assert_gap_below_bound([np.nan, 1.0], [0.0, 1.0], 0.1)
    with pytest.raises(ValueError, match="bound"):
        assert_gap_below_bound([0.0, 1.0], [0.0, 1.0], math.nan)
    with pytest.raises(ValueError, match="repetitions"):   # a single repetition has no standard error
        assert_gap_below_bound([[0.0, 1.0]], [[0.0, 1.0]], 0.1)


def test_gap_below_bound_constant_losses_are_a_number():
    # zero spread is a measured standard error of 0, not NaN: the check still compares
    g = assert_gap_below_bound([[0.0], [0.0]], [[0.05], [0.05]], 0.1, strict=True)
    assert g.standard_error == 0 and g.low == g.high == pytest.approx(0.05)
    with pytest.raises(AssertionError, match="significant violation"):
        assert_gap_below_bound([[0.0], [0.0]], [[0.5], [0.5]], 0.1)


def test_mi_close_and_bound_holds_reject_nan_instead_of_passing():
    with pytest.raises(ValueError, match="estimate.*NaN"):
        assert_mi_close(math.nan, 0.5, std=0.1)
    with pytest.raises(ValueError, match="expected.*NaN"):
        assert_mi_close(0.5, math.nan, std=0.1)
    with pytest.raises(ValueError, match="std.*inf"):
        assert_mi_close(0.5, 0.4, std=math.inf)
    with pytest.raises(ValueError, match="n_std"):
        assert_mi_close(0.5, 0.4, std=0.1, n_std=math.nan)
    # a difference that overflows is a failure, not a pass
    with pytest.raises(AssertionError, match="differs"), np.errstate(over="ignore"):
        assert_mi_close(1e308, -1e308, std=1.0)
    with pytest.raises(ValueError, match="gaps.*NaN"):
        assert_bound_holds([0.1, math.nan], 0.2)
    with pytest.raises(ValueError, match="bounds.*NaN"):
        assert_bound_holds([0.1, 0.1], [0.2, math.nan])
    with pytest.raises(ValueError, match="delta"):
        assert_bound_holds([0.1], 0.2, delta=math.nan)
