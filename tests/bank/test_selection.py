import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import special, stats

from infomoe.bank import draw_training_sets, empirical_risks, gibbs_selection, sample_selection


def test_gibbs_matches_scipy_softmax(rng):
    L = rng.random((20, 7))
    pi = rng.dirichlet(np.ones(7))
    q = gibbs_selection(L, 0.3, 50, prior=pi)
    np.testing.assert_allclose(q, special.softmax(np.log(pi) - 0.3 * 50 * L, axis=1), rtol=1e-12)


def test_gibbs_endpoints():
    L = np.array([[0.3, 0.1, 0.2], [0.2, 0.2, 0.5]])
    np.testing.assert_allclose(gibbs_selection(L, 0.0, 100), np.full((2, 3), 1 / 3))
    q = gibbs_selection(L, 1e6, 100)  # ERM; ties shared by the (uniform) prior
    np.testing.assert_allclose(q, [[0, 1, 0], [0.5, 0.5, 0]], atol=1e-12)
    assert np.isfinite(gibbs_selection(L, 1e300, 10**6)).all()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 5), elements=st.floats(0, 1)), st.floats(0, 50), st.floats(-3, 3))
def test_gibbs_rows_sum_to_one_and_shift_invariant(L, alpha, c):
    q = gibbs_selection(L, alpha, 16)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
    assert (q >= 0).all()
    np.testing.assert_allclose(gibbs_selection(L + c, alpha, 16), q, atol=1e-9)
    # a lower empirical risk never gets a lower probability
    for row_L, row_q in zip(L, q):
        order = np.argsort(row_L, kind="stable")
        assert np.all(np.diff(row_q[order]) <= 1e-12)


def test_gibbs_validation():
    with pytest.raises(ValueError, match="alpha"):
        gibbs_selection([0.1, 0.2], -1.0, 10)
    with pytest.raises(TypeError, match="alpha"):
        gibbs_selection([0.1, 0.2], "1", 10)
    with pytest.raises(ValueError, match="NaN"):
        gibbs_selection([0.1, np.nan], 1.0, 10)
    with pytest.raises(ValueError, match="prior"):
        gibbs_selection([0.1, 0.2], 1.0, 10, prior=[0.5, 0.4])
    with pytest.raises(ValueError, match="prior"):
        gibbs_selection([0.1, 0.2], 1.0, 10, prior=[1.0, 0.0])
    with pytest.raises(ValueError, match="`m`"):
        gibbs_selection([0.1, 0.2], 1.0, 0)


def test_empirical_risks_brute_force(rng):
    losses = rng.integers(0, 2, size=(30, 4)).astype(float)
    sets = draw_training_sets(30, 9, 6, seed=1)
    expected = np.array([[losses[s, k].mean() for k in range(4)] for s in sets])
    np.testing.assert_allclose(empirical_risks(losses, sets), expected, rtol=1e-12)


def test_empirical_risks_validation():
    with pytest.raises(ValueError, match="outside the pool"):
        empirical_risks(np.zeros((5, 2)), [[0, 5]])
    with pytest.raises(TypeError, match="integer"):
        empirical_risks(np.zeros((5, 2)), [[0.5, 1.0]])
    with pytest.raises(ValueError, match="2-D"):
        empirical_risks(np.zeros((5, 2)), [0, 1])


def test_draw_training_sets():
    s = draw_training_sets(50, 20, 40, seed=2)
    assert s.shape == (40, 20) and s.min() >= 0 and s.max() < 50
    np.testing.assert_array_equal(s, draw_training_sets(50, 20, 40, seed=2))
    u = draw_training_sets(50, 20, 10, seed=2, replace=False)
    assert all(len(set(row)) == 20 for row in u)
    with pytest.raises(ValueError, match="exceeds the pool"):
        draw_training_sets(10, 20, 3, replace=False)
    # with replacement every pool element is uniform: chi-square goodness of fit
    big = draw_training_sets(10, 100, 200, seed=0)
    counts = np.bincount(big.ravel(), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sample_selection_frequencies_match_q():
    q = np.array([0.5, 0.0, 0.3, 0.2])
    draws = sample_selection(np.tile(q, (20000, 1)), seed=0)
    counts = np.bincount(draws, minlength=4)
    assert counts[1] == 0  # zero-probability expert is never drawn
    res = stats.chisquare(counts[[0, 2, 3]], 20000 * q[[0, 2, 3]])
    assert res.pvalue > 1e-3
    np.testing.assert_array_equal(draws, sample_selection(np.tile(q, (20000, 1)), seed=0))
    with pytest.raises(ValueError, match="sum to 1"):
        sample_selection([[0.5, 0.4]])
    with pytest.raises(ValueError, match="2-D"):
        sample_selection([0.5, 0.5])
