"""Tests for infomoe.routing._coherence."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infomoe.routing import (babel, coherent_dictionary, exact_recovery_condition, gram_matrix,
                             mutual_coherence, normalize_rows, omp, welch_bound)


def test_welch_oracles():
    assert welch_bound(8, 4) == pytest.approx(0.37796, abs=1e-5)
    assert welch_bound(64, 16) == pytest.approx(0.21822, abs=1e-5)
    assert welch_bound(4, 4) == 0.0 and welch_bound(3, 8) == 0.0


def test_simplex_etf_meets_welch():
    # d + 1 vectors of a regular simplex in R^d: |<w_i, w_j>| = 1/d = Welch bound
    d = 5
    v = np.eye(d + 1) - 1.0 / (d + 1)
    basis = np.linalg.svd(v)[2][:d]  # orthonormal basis of the sum-zero hyperplane
    W = v @ basis.T
    assert mutual_coherence(W) == pytest.approx(1 / d)
    assert mutual_coherence(W) == pytest.approx(welch_bound(d + 1, d))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.integers(1, 6), st.integers(0, 2 ** 16))
def test_random_vectors_respect_welch(n, d, seed):
    W = np.random.default_rng(seed).normal(size=(n, d))
    assert mutual_coherence(W) >= welch_bound(n, d) - 1e-12


def test_coherence_is_scale_invariant_and_orthonormal_zero():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 3))
    assert mutual_coherence(W * rng.uniform(0.1, 10, size=(5, 1))) == pytest.approx(mutual_coherence(W))
    assert mutual_coherence(np.eye(4)) == 0.0
    assert mutual_coherence(gram_matrix(W), gram=True) == pytest.approx(mutual_coherence(W))


def brute_babel(W, m):
    g = np.abs(gram_matrix(W))
    n = g.shape[0]
    best = 0.0
    for j in range(n):
        others = [i for i in range(n) if i != j]
        for L in itertools.combinations(others, m):
            best = max(best, g[j, list(L)].sum())
    return best


def test_babel_brute_force():
    W = np.random.default_rng(1).normal(size=(7, 4))
    mu = mutual_coherence(W)
    curve = babel(W)
    assert curve.shape == (6,)
    for m in range(1, 7):
        assert babel(W, m) == pytest.approx(brute_babel(W, m))
        assert babel(W, m) <= m * mu + 1e-12
    assert babel(W, 1) == pytest.approx(mu)
    assert np.all(np.diff(curve) >= 0)


def brute_erc(W, S):
    U = normalize_rows(W)
    A = U[list(S)].T
    out = [j for j in range(U.shape[0]) if j not in S]
    return max(np.abs(np.linalg.lstsq(A, U[j], rcond=None)[0]).sum() for j in out)


def test_erc_against_lstsq_and_babel_bound():
    W = coherent_dictionary(10, 8, 0.25, seed=2)
    for S in ([0, 1], [2, 5, 7]):
        erc = exact_recovery_condition(W, S)
        assert erc == pytest.approx(brute_erc(W, S))
        k = len(S)
        assert erc <= babel(W, k) / (1 - babel(W, k - 1)) + 1e-12  # Tropp 2004, Thm 3.5
    assert exact_recovery_condition(np.eye(3), [0, 1]) == 0.0


def test_erc_below_one_implies_omp_success():
    rng = np.random.default_rng(3)
    W = coherent_dictionary(12, 6, 0.45, seed=3)
    checked = 0
    for _ in range(30):
        S = np.sort(rng.choice(12, 2, replace=False))
        if exact_recovery_condition(W, S) < 1:
            c = rng.uniform(0.2, 3.0, size=(20, 2)) * rng.choice([-1, 1], size=(20, 2))
            X = c @ normalize_rows(W)[S]
            np.testing.assert_array_equal(omp(W, X, 2).support, np.tile(S, (20, 1)))
            checked += 1
    assert checked >= 5


def test_errors():
    with pytest.raises(ValueError, match="zero"):
        mutual_coherence([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="two experts"):
        mutual_coherence([[1.0, 0.0]])
    with pytest.raises(ValueError, match="unit diagonal"):
        mutual_coherence(2 * np.eye(3), gram=True)
    with pytest.raises(ValueError, match="square"):
        babel(np.ones((2, 3)), gram=True)
    with pytest.raises(ValueError, match="at most"):
        babel(np.eye(3), 3)
    with pytest.raises(ValueError, match="distinct"):
        exact_recovery_condition(np.eye(3), [1, 1])
    with pytest.raises(ValueError, match="only 3"):
        exact_recovery_condition(np.eye(3), [5])
    with pytest.raises(TypeError, match="n_vectors"):
        welch_bound(2.5, 2)
    with pytest.raises(ValueError, match="2 dimension"):
        mutual_coherence(np.ones(3))


def test_normalize_rows_neither_overflows_nor_underflows():
    # ||[1e200, 1e200]|| overflows in float64 and ||[1e-200, 0]|| underflows: both are fine directions
    big = np.array([[1e200, 1e200], [1e200, 0.0]])
    tiny = np.array([[1e-200, 1e-200], [1e-200, 0.0]])
    for W in (big, tiny):
        u = normalize_rows(W)
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-15)
        assert mutual_coherence(W) == pytest.approx(1 / np.sqrt(2), rel=1e-15)
    with pytest.raises(ValueError, match="row 1 of `W` is zero"):
        normalize_rows([[1e-200, 0.0], [0.0, 0.0]])
