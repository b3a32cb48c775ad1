"""Tests for infomoe.routing._subset (best subset, thresholding, OMP)."""

import itertools

import numpy as np
import pytest

from infomoe.routing import (best_subset, coherent_dictionary, mutual_coherence, normalize_rows, omp,
                             recovery_rate, sparse_tokens, thresholding)


def brute_rss(W, x, k):
    """Independent reference: numpy lstsq on every support."""
    U = W.T
    best = (np.inf, None)
    for S in itertools.combinations(range(W.shape[0]), k):
        c, *_ = np.linalg.lstsq(U[:, S], x, rcond=None)
        r = float(np.sum((x - U[:, S] @ c) ** 2))
        if r < best[0] - 1e-12:
            best = (r, S)
    return best


def test_exhaustive_matches_lstsq_reference():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(9, 5))
    X = rng.normal(size=(15, 5))
    res = best_subset(W, X, 3, method="exhaustive")
    for t in range(15):
        rss, S = brute_rss(W, X[t], 3)
        assert tuple(res.support[t]) == S
        assert res.residual[t] ** 2 == pytest.approx(rss, abs=1e-10)
    # coefficients reconstruct on the original (unnormalised) rows
    recon = np.einsum("tk,tkd->td", res.coefficients, W[res.support])
    np.testing.assert_allclose(np.linalg.norm(X - recon, axis=1), res.residual, atol=1e-10)


@pytest.mark.parametrize("mu, noise, k", [(0.5, 0.05, 2), (0.7, 0.1, 3), (0.9, 0.3, 3)])
def test_branch_and_bound_equals_exhaustive(mu, noise, k):
    W = coherent_dictionary(14, 6, mu, seed=1)
    toks = sparse_tokens(W, 25, k, noise=noise, seed=2)
    ex = best_subset(W, toks.tokens, k, method="exhaustive")
    bb = best_subset(W, toks.tokens, k, method="branch_and_bound")
    np.testing.assert_allclose(bb.residual, ex.residual, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(bb.support, ex.support)  # generic data: unique optimum
    assert bb.method == "branch_and_bound" and ex.method == "exhaustive"


def test_branch_and_bound_prunes_with_low_coherence():
    W = coherent_dictionary(30, 20, 0.25, seed=3)
    toks = sparse_tokens(W, 10, 3, noise=0.02, seed=4)
    bb = best_subset(W, toks.tokens, 3, method="branch_and_bound")
    ex = best_subset(W, toks.tokens, 3, method="exhaustive")
    np.testing.assert_array_equal(bb.support, ex.support)
    assert bb.nodes.max() < ex.nodes[0]  # C(30, 3) = 4060


def test_auto_method_switch():
    W = np.random.default_rng(5).normal(size=(12, 6))
    x = np.random.default_rng(6).normal(size=6)
    assert best_subset(W, x, 3, max_exhaustive=100).method == "branch_and_bound"
    assert best_subset(W, x, 3).method == "exhaustive"
    assert best_subset(W, x, 3).support.shape == (3,)


def test_exact_is_always_optimal():
    for mu in (0.4, 0.6, 0.8, 0.95):
        W = coherent_dictionary(12, 6, mu, seed=7)
        toks = sparse_tokens(W, 60, 2, noise=0.05, seed=8)
        ex = best_subset(W, toks.tokens, 2)
        for greedy in (omp(W, toks.tokens, 2), thresholding(W, toks.tokens, 2)):
            assert np.all(ex.residual <= greedy.residual + 1e-10)
        clean = sparse_tokens(W, 60, 2, seed=8)
        ex_rate = recovery_rate(clean.support, best_subset(W, clean.tokens, 2).support)
        assert ex_rate == 1.0
        assert ex_rate >= recovery_rate(clean.support, omp(W, clean.tokens, 2).support)
        assert ex_rate >= recovery_rate(clean.support, thresholding(W, clean.tokens, 2).support)


@pytest.mark.parametrize("k, mu", [(2, 0.32), (3, 0.19), (4, 0.14)])
def test_omp_recovers_every_support_below_tropp_bound(k, mu):
    assert mu < 1 / (2 * k - 1)
    W = coherent_dictionary(24, 32, mu, seed=k)
    assert mutual_coherence(W) == pytest.approx(mu, abs=1e-8)
    # the hardest coefficient dynamic range still recovers
    toks = sparse_tokens(W, 400, k, coef_range=(0.05, 5.0), seed=10 + k)
    assert recovery_rate(toks.support, omp(W, toks.tokens, k).support) == 1.0


def test_thresholding_is_topk_routing():
    rng = np.random.default_rng(11)
    W = rng.normal(size=(8, 5))
    X = rng.normal(size=(20, 5))
    scores = X @ normalize_rows(W).T
    res = thresholding(W, X, 2, absolute=False)
    np.testing.assert_array_equal(res.support, np.sort(np.argsort(-scores, axis=1)[:, :2], axis=1))
    res_abs = thresholding(W, X, 2)
    np.testing.assert_array_equal(res_abs.support, np.sort(np.argsort(-np.abs(scores), axis=1)[:, :2], axis=1))


def test_greedy_exact_on_orthonormal_dictionary():
    W = np.eye(6)
    toks = sparse_tokens(W, 50, 3, seed=12)
    for fn in (omp, thresholding, best_subset):
        assert recovery_rate(toks.support, fn(W, toks.tokens, 3).support) == 1.0


def test_recovery_rate():
    assert recovery_rate([[0, 1], [2, 3]], [[1, 0], [2, 4]]) == 0.5
    with pytest.raises(ValueError, match="same shape"):
        recovery_rate([[0, 1]], [[0, 1, 2]])
    with pytest.raises(TypeError, match="integer"):
        recovery_rate([[0.5]], [[0]])


def test_errors():
    with pytest.raises(ValueError, match="dimension"):
        omp(np.eye(3), np.ones((2, 4)), 1)
    with pytest.raises(ValueError, match="at most"):
        thresholding(np.eye(3), np.ones(3), 4)
    with pytest.raises(ValueError, match="method"):
        best_subset(np.eye(3), np.ones(3), 1, method="greedy")
    with pytest.raises(ValueError, match="NaN"):
        best_subset(np.eye(3), [np.nan, 0, 0], 1)


@pytest.mark.parametrize("true, est, kwargs, exc, match", [
    ([[0, -1]], [[0, 1]], {}, ValueError, r"`true_support` has a negative expert id -1 at index \(0, 1\)"),
    ([[0, 1]], [[-3, 1]], {}, ValueError, r"`estimated_support` has a negative expert id -3"),
    ([[0, 1]], [[0, 4]], {"n_experts": 4}, ValueError, r"`estimated_support` has expert id 4 .* only 4 experts"),
    ([[0, 7]], [[0, 1]], {"n_experts": 4}, ValueError, r"`true_support` has expert id 7"),
    ([[0, 0]], [[0, 0]], {}, ValueError, r"`true_support` repeats an expert id in token 0"),
    ([[True, False]], [[1, 0]], {}, TypeError, r"`true_support` must hold integer"),
    ([[[0, 1]]], [[[0, 1]]], {}, ValueError, r"`true_support` must have shape \(tokens, k\)"),
    ([[0, 1]], [[0, 1]], {"n_experts": 0}, ValueError, r"`n_experts`"),
    ([[0, 1]], [[0, 1]], {"n_experts": True}, TypeError, r"`n_experts`"),
    (None, [[0, 1]], {}, TypeError, r"`true_support`"),
])
def test_recovery_rate_validates_ids(true, est, kwargs, exc, match):
    # before issue 16 the negative, duplicate and out-of-range cases returned a rate
    with pytest.raises(exc, match=match):
        recovery_rate(true, est, **kwargs)


def test_recovery_rate_compares_sets_and_accepts_one_token():
    assert recovery_rate([2, 0, 1], [1, 2, 0], n_experts=3) == 1.0
    assert recovery_rate([[3, 1], [0, 2]], [[1, 3], [0, 1]], n_experts=4) == 0.5
