"""Tests for infomoe.routing._barrier: the coherence barrier."""

import numpy as np
import pytest
import scipy.stats

from infomoe.routing import coherence_barrier, support_recovery


def test_coherence_barrier_shape_of_the_claim():
    mus = np.array([0.3, 0.45, 0.6, 0.75, 0.9])
    r = coherence_barrier(24, 12, 3, mus, n_tokens=200, seed=0)
    np.testing.assert_allclose(r.coherence, mus, atol=1e-8)
    # exact selection recovers every support whatever the coherence
    np.testing.assert_array_equal(r.recovery["exact"], 1.0)
    # and is never beaten
    assert np.all(r.recovery["exact"] >= r.recovery["omp"])
    assert np.all(r.recovery["omp"] >= r.recovery["thresholding"] - 0.05)
    # thresholding (top-k routing) falls as mu grows
    rho = scipy.stats.spearmanr(r.coherence, r.recovery["thresholding"]).statistic
    assert rho < -0.8
    assert r.recovery["thresholding"][0] - r.recovery["thresholding"][-1] > 0.3
    assert r.welch == pytest.approx(np.sqrt(12 / (12 * 23)))
    assert r.omp_threshold == pytest.approx(0.2)


def test_omp_perfect_below_tropp_threshold_in_sweep():
    r = coherence_barrier(20, 24, 2, [0.1, 0.2, 0.3, 0.33], n_tokens=150, methods=("omp",), seed=1)
    assert r.omp_threshold == pytest.approx(1 / 3)
    np.testing.assert_array_equal(r.recovery["omp"], 1.0)
    assert set(r.recovery) == {"omp"}


def test_support_recovery_errors():
    with pytest.raises(ValueError, match="methods"):
        support_recovery(np.eye(3), [[1.0, 0, 0]], [[0]], methods=("lasso",))
    with pytest.raises(ValueError, match="coherences"):
        coherence_barrier(8, 4, 2, [])


def test_support_recovery_validates_the_true_support():
    W, x = np.eye(3), [[1.0, 0, 0], [0, 1.0, 0]]
    assert support_recovery(W, x, [[0], [1]]) == {"exact": 1.0, "omp": 1.0, "thresholding": 1.0}
    with pytest.raises(ValueError, match="negative expert id"):
        support_recovery(W, x, [[0], [-1]])
    with pytest.raises(ValueError, match="only 3 experts"):
        support_recovery(W, x, [[0], [3]])
    with pytest.raises(ValueError, match="`support` has 1 rows but `tokens` has 2"):
        support_recovery(W, x, [[0]])
    with pytest.raises(ValueError, match="`support` must have shape"):
        support_recovery(W, x, np.int64(0))
