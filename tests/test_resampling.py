"""Tests for infomoe._resampling: bootstrap intervals and the permutation test."""

import math

import numpy as np
import pytest
from scipy import stats

from infomoe import (BootstrapResult, PermutationResult, bootstrap_mutual_information,
                     independence_test, mutual_information, mutual_information_table)
from infomoe._resampling import _permuted_tables

P_DEP = np.array([[0.2, 0.05, 0.05], [0.05, 0.2, 0.05], [0.05, 0.05, 0.3]])
P_DEP = P_DEP / P_DEP.sum()


def _draw(rng, p, n):
    idx = rng.choice(p.size, size=n, p=p.ravel())
    return idx // p.shape[1], idx % p.shape[1]


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_result_and_reproducibility():
    rng = np.random.default_rng(0)
    x, y = _draw(rng, P_DEP, 300)
    a = bootstrap_mutual_information(x, y, n_resamples=200, random_state=3)
    b = bootstrap_mutual_information(x, y, n_resamples=200, random_state=3)
    assert isinstance(a, BootstrapResult)
    np.testing.assert_array_equal(a.bootstrap_distribution, b.bootstrap_distribution)
    assert a.estimate.value == pytest.approx(float(mutual_information(x, y)), abs=1e-15)
    assert a.n_resamples == 200 and a.confidence_level == 0.95 and a.method == "bca"
    lo, hi = a.confidence_interval
    assert lo < a.estimate.value < hi
    assert a.standard_error == pytest.approx(np.std(a.bootstrap_distribution, ddof=1))
    assert "bits" in repr(a)
    # batch size does not change the draws' distribution, only their grouping
    c = bootstrap_mutual_information(x, y, n_resamples=200, random_state=3, batch_size=7,
                                     progress=True)
    assert c.bootstrap_distribution.shape == (200,)


def test_bootstrap_methods_relations():
    rng = np.random.default_rng(1)
    x, y = _draw(rng, P_DEP, 400)
    kw = dict(n_resamples=400, random_state=5)
    perc = bootstrap_mutual_information(x, y, method="percentile", **kw)
    basic = bootstrap_mutual_information(x, y, method="basic", **kw)
    theta = perc.estimate.value
    q = np.quantile(perc.bootstrap_distribution, [0.025, 0.975])
    np.testing.assert_allclose(perc.confidence_interval, q)
    np.testing.assert_allclose(basic.confidence_interval, [2 * theta - q[1], 2 * theta - q[0]])
    narrow = bootstrap_mutual_information(x, y, confidence_level=0.5, method="percentile", **kw)
    assert narrow.confidence_interval[1] - narrow.confidence_interval[0] < q[1] - q[0]


def test_bootstrap_multinomial_equals_sample_resampling():
    """Resampling the table ~ resampling the pairs (same bootstrap distribution)."""
    rng = np.random.default_rng(2)
    x, y = _draw(rng, P_DEP, 150)
    ours = bootstrap_mutual_information(x, y, n_resamples=3000, random_state=1,
                                        method="percentile").bootstrap_distribution
    naive = np.empty(3000)
    for i in range(3000):
        s = rng.integers(0, x.size, x.size)
        t = np.zeros((3, 3), dtype=np.int64)
        np.add.at(t, (x[s], y[s]), 1)
        naive[i] = float(mutual_information_table(t))
    assert stats.ks_2samp(ours, naive).pvalue > 0.001
    assert ours.std() == pytest.approx(naive.std(), rel=0.1)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_coverage_near_nominal(method):
    rng = np.random.default_rng(3)
    truth = float(mutual_information_table(P_DEP, weighted=True))  # I of p itself
    reps, hits = 120, 0
    for r in range(reps):
        x, y = _draw(rng, P_DEP, 500)
        lo, hi = bootstrap_mutual_information(x, y, n_resamples=300, random_state=r,
                                              method=method).confidence_interval
        hits += lo <= truth <= hi
    # nominal 0.95; binomial sd at 120 reps ~0.02
    assert 0.87 <= hits / reps <= 0.995


def test_bootstrap_other_estimators_and_chunks():
    rng = np.random.default_rng(4)
    x, y = _draw(rng, P_DEP, 200)
    for est in ("miller_madow", "jackknife", "chao_shen"):
        r = bootstrap_mutual_information(x, y, estimator=est, n_resamples=100, random_state=0)
        assert r.estimate.estimator == est
        assert r.confidence_interval[0] < r.confidence_interval[1]
    chunks = [(x[:50], y[:50]), (x[50:], y[50:])]
    a = bootstrap_mutual_information(chunks, n_resamples=50, random_state=9, base=math.e)
    b = bootstrap_mutual_information(x, y, n_resamples=50, random_state=9, base=math.e)
    np.testing.assert_allclose(a.bootstrap_distribution, b.bootstrap_distribution)
    assert a.estimate.unit == "nats"


def test_bootstrap_bca_falls_back_when_undefined():
    # plug-in I = 0 exactly; every resampled table is dependent, so all I* > I
    x, y = np.array([0, 0, 1, 1] * 25), np.array([0, 1, 0, 1] * 25)
    with pytest.warns(RuntimeWarning, match="percentile"):
        r = bootstrap_mutual_information(x, y, n_resamples=50, random_state=0)
    assert r.method == "percentile"
    assert (r.bootstrap_distribution > 0).all()


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(n_resamples=1), ValueError, "n_resamples"),
    (dict(n_resamples=10.5), TypeError, "n_resamples"),
    (dict(confidence_level=1.5), ValueError, "confidence_level"),
    (dict(confidence_level=0), ValueError, "confidence_level"),
    (dict(method="studentized"), ValueError, "method"),
    (dict(estimator="ksg"), ValueError, "estimator"),
    (dict(base=1), ValueError, "base"),
    (dict(batch_size=0), ValueError, "batch_size"),
])
def test_bootstrap_errors(kwargs, exc, msg):
    x = np.array([0, 1, 1, 0, 2])
    with pytest.raises(exc, match=msg):
        bootstrap_mutual_information(x, x[::-1], **kwargs)


def test_bootstrap_input_errors():
    x = np.array([0, 1, 1, 0, 2])
    with pytest.raises(TypeError, match="`y` is missing"):
        bootstrap_mutual_information(x)
    with pytest.raises(ValueError):
        bootstrap_mutual_information(x, x[:3])
    with pytest.raises(ValueError, match="weighted"):
        bootstrap_mutual_information([(x, x, np.ones(5))], n_resamples=10)


# ---------------------------------------------------------------- permutation test


def test_permuted_tables_match_shuffling():
    rng = np.random.default_rng(5)
    rows, cols = np.array([5, 1, 7, 3]), np.array([2, 6, 4, 4])
    tabs = _permuted_tables(rows, cols, 20000, rng)
    assert (tabs.sum(2) == rows).all() and (tabs.sum(1) == cols).all() and (tabs >= 0).all()
    x, y0 = np.repeat(np.arange(4), rows), np.repeat(np.arange(4), cols)
    shuf = np.zeros((20000, 4, 4), dtype=np.int64)
    for i in range(20000):
        np.add.at(shuf[i], (x, rng.permutation(y0)), 1)
    # hypergeometric means n_i n_j / n, and the same distribution of the statistic
    np.testing.assert_allclose(tabs.mean(0), np.outer(rows, cols) / 16, atol=0.03)
    a = mutual_information_table(tabs).value
    b = mutual_information_table(shuf).value
    assert stats.ks_2samp(a, b).pvalue > 0.001


def test_permutation_result_and_plus_one_rule():
    rng = np.random.default_rng(6)
    x, y = _draw(rng, P_DEP, 200)
    r = independence_test(x, y, n_permutations=199, random_state=0)
    assert isinstance(r, PermutationResult)
    assert r.statistic == pytest.approx(float(mutual_information(x, y)), abs=1e-15)
    assert r.null_distribution.shape == (199,)
    assert r.pvalue == (1 + np.sum(r.null_distribution >= r.statistic)) / 200
    assert r.pvalue == 1 / 200                                # strongly dependent
    assert r.unit == "bits" and "bits" in repr(r)
    same = independence_test(x, y, n_permutations=199, random_state=0)
    np.testing.assert_array_equal(same.null_distribution, r.null_distribution)
    # independent of the sample size: chunks, estimators, progress bar
    chunked = independence_test([(x[:100], y[:100]), (x[100:], y[100:])], n_permutations=199,
                                random_state=0, batch_size=13, progress=True)
    assert chunked.statistic == r.statistic
    nsb = independence_test(x, y, estimator="nsb", n_permutations=20, random_state=0)
    assert nsb.estimator == "nsb" and nsb.pvalue == 1 / 21


def test_permutation_pvalues_uniform_under_independence():
    rng = np.random.default_rng(7)
    ps = np.array([independence_test(rng.integers(0, 3, 80), rng.integers(0, 4, 80),
                                     n_permutations=99, random_state=rng).pvalue
                   for _ in range(300)])
    assert ps.min() >= 0.01
    # P(p <= a) ~ a; binomial sd at 300 draws <= 0.029
    for a in (0.1, 0.25, 0.5):
        assert abs(np.mean(ps <= a) - a) < 0.09
    # and the permutation null is not the plug-in's bias: statistic > 0 yet p ~ U(0, 1)


def test_permutation_small_pvalues_under_weak_dependence():
    rng = np.random.default_rng(8)
    p = np.full((4, 4), 1.0) + 0.6 * np.eye(4)
    p /= p.sum()
    ps = [independence_test(*_draw(rng, p, 400), n_permutations=199, random_state=i).pvalue
          for i in range(20)]
    assert np.median(ps) < 0.01


def test_permutation_errors():
    x = np.array([0, 1, 1, 0, 2])
    with pytest.raises(ValueError, match="n_permutations"):
        independence_test(x, x, n_permutations=0)
    with pytest.raises(ValueError, match="estimator"):
        independence_test(x, x, estimator="nope")
    with pytest.raises(TypeError, match="`y` is missing"):
        independence_test(x)
    with pytest.raises(ValueError):
        independence_test(x, -x)


def test_plugin_jackknife_closed_form_matches_brute_force():
    from infomoe._resampling import _jackknife_values
    rng = np.random.default_rng(9)
    t = rng.multinomial(60, rng.dirichlet(np.ones(12))).reshape(3, 4)
    fast, w = _jackknife_values(t, "plugin", 2.0, 1000)
    cells = np.flatnonzero(t)
    for c, v in zip(cells, fast):
        tt = t.ravel().copy()
        tt[c] -= 1
        assert v == pytest.approx(float(mutual_information_table(tt.reshape(3, 4))), abs=1e-12)
    np.testing.assert_array_equal(w, t.ravel()[cells])
    slow, _ = _jackknife_values(t, "miller_madow", 2.0, 5)
    assert slow.shape == fast.shape
