"""Tests for infomoe.routing._synthetic."""

import numpy as np
import pytest

from infomoe.routing import (coherent_dictionary, low_coherence_frame, mutual_coherence, sparse_tokens,
                             welch_bound)


@pytest.mark.parametrize("e, d", [(4, 8), (8, 8), (16, 8), (24, 12)])
def test_low_coherence_frame(e, d):
    W = low_coherence_frame(e, d, seed=1)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0)
    mu = mutual_coherence(W)
    if e <= d:
        assert mu < 1e-12
    else:
        rand = mutual_coherence(np.random.default_rng(1).normal(size=(e, d)))
        assert welch_bound(e, d) - 1e-12 <= mu < rand


@pytest.mark.parametrize("e, d, mu", [(6, 10, 0.05), (16, 8, 0.5), (32, 16, 0.95), (10, 10, 0.3)])
def test_coherent_dictionary_hits_target(e, d, mu):
    W = coherent_dictionary(e, d, mu, seed=2)
    assert W.shape == (e, d)
    assert mutual_coherence(W) == pytest.approx(mu, abs=1e-8)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0)


def test_coherent_dictionary_deterministic_and_base():
    a = coherent_dictionary(10, 5, 0.6, seed=3)
    np.testing.assert_array_equal(a, coherent_dictionary(10, 5, 0.6, seed=3))
    base = np.eye(5)
    W = coherent_dictionary(5, 5, 0.2, base=base)
    assert mutual_coherence(W) == pytest.approx(0.2, abs=1e-8)


def test_sparse_tokens_model():
    W = coherent_dictionary(10, 6, 0.5, seed=4) * 3.0  # norms are ignored
    s = sparse_tokens(W, 50, 3, coef_range=(1.0, 2.0), seed=5)
    u = W / np.linalg.norm(W, axis=1, keepdims=True)
    np.testing.assert_allclose(s.tokens, np.einsum("tk,tkd->td", s.coefficients, u[s.support]))
    assert np.all(np.diff(s.support, axis=1) > 0)
    assert np.all((np.abs(s.coefficients) >= 1.0) & (np.abs(s.coefficients) <= 2.0))
    assert np.any(s.coefficients < 0)
    noisy = sparse_tokens(W, 50, 3, noise=0.1, seed=5)
    assert 0.05 < np.std(noisy.tokens - s.tokens) < 0.2


def test_errors():
    with pytest.raises(ValueError, match="below the base"):
        coherent_dictionary(16, 4, 0.1)
    with pytest.raises(ValueError, match="< 1"):
        coherent_dictionary(4, 4, 1.0)
    with pytest.raises(ValueError, match="shape"):
        coherent_dictionary(4, 4, 0.5, base=np.eye(3))
    with pytest.raises(ValueError, match="coef_range"):
        sparse_tokens(np.eye(3), 2, 1, coef_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="at most"):
        sparse_tokens(np.eye(3), 2, 4)


def test_sparse_tokens_argument_checks():
    with pytest.raises(ValueError, match="`coef_range` must be a pair"):
        sparse_tokens(np.eye(3), 2, 1, coef_range=(1.0, 2.0, 3.0))
    with pytest.raises(TypeError, match="`random_signs` must be True or False"):
        sparse_tokens(np.eye(3), 2, 1, random_signs="no")
