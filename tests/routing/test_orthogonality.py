"""Tests for infomoe.routing._orthogonality (JAX regularisers and orthogonalize)."""

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

from infomoe.routing import (coherent_dictionary, dso_penalty, mc_penalty, mutual_coherence,  # noqa: E402
                             orthogonality_penalty, orthogonalize, so_penalty, sparse_tokens,
                             srip_penalty, support_recovery, welch_bound)


@pytest.fixture()
def x64():
    with jax.enable_x64(True):
        yield


def rand_w(seed, e=6, d=4):
    return np.random.default_rng(seed).normal(size=(e, d))


def test_values_against_numpy(x64):
    W = rand_w(0)
    G = W @ W.T - np.eye(6)
    H = W.T @ W - np.eye(4)
    assert float(so_penalty(W)) == pytest.approx(np.linalg.norm(G, "fro") ** 2)
    assert float(dso_penalty(W)) == pytest.approx(np.linalg.norm(G, "fro") ** 2 + np.linalg.norm(H, "fro") ** 2)
    assert float(mc_penalty(W)) == pytest.approx(np.abs(G).max())
    assert float(srip_penalty(W, n_iter=200)) == pytest.approx(np.linalg.norm(G, 2), rel=1e-8)
    assert float(mc_penalty(W, normalize=True)) == pytest.approx(mutual_coherence(W), abs=1e-12)
    assert float(orthogonality_penalty(W, "dso")) == float(dso_penalty(W))


def test_zero_on_orthonormal_rows(x64):
    q, _ = np.linalg.qr(rand_w(1, 5, 5))
    for kind in ("so", "dso", "mc", "srip"):
        assert float(orthogonality_penalty(q, kind)) == pytest.approx(0.0, abs=1e-10)


def test_smooth_mc_brackets_max(x64):
    W = rand_w(2)
    hard = float(mc_penalty(W, normalize=True))
    for tau in (0.1, 0.01, 0.001):
        soft = float(mc_penalty(W, normalize=True, temperature=tau))
        assert hard <= soft <= hard + tau * math.log(36) + 1e-12


def test_so_gradient_closed_form(x64):
    W = jnp.asarray(rand_w(3))
    g = jax.grad(so_penalty)(W)
    np.testing.assert_allclose(g, 4 * (W @ W.T - jnp.eye(6)) @ W, rtol=1e-10)


@pytest.mark.parametrize("kind", ["so", "dso", "mc", "srip"])
@pytest.mark.parametrize("normalize", [False, True])
def test_gradients_finite_differences(x64, kind, normalize):
    W = jnp.asarray(rand_w(4))
    fn = lambda w: orthogonality_penalty(w, kind, normalize=normalize)  # noqa: E731
    check_grads(fn, (W,), order=1, modes=("rev", "fwd"), eps=1e-6, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["so", "dso", "mc", "srip"])
def test_orthogonalize_reaches_zero_when_e_le_d(kind):
    W0 = coherent_dictionary(6, 8, 0.9, seed=1)
    r = orthogonalize(W0, kind, steps=1000, learning_rate=0.02, record_every=500)
    assert r.steps.tolist() == [0, 500, 1000]
    assert r.coherence[0] > 0.85  # the start of the selected run (W0 itself or W0 plus noise)
    assert r.restart_coherence[0] < 0.01  # the run from W0 itself reaches mu ~ 0
    assert r.coherence[-1] < 0.01
    np.testing.assert_allclose(np.linalg.norm(r.weights, axis=1), 1.0)


def test_mc_reaches_zero_when_e_eq_d():
    W0 = coherent_dictionary(5, 5, 0.9, seed=2)
    r = orthogonalize(W0, "mc", record_every=2000)
    assert r.coherence[-1] < 0.01
    np.testing.assert_allclose(r.weights @ r.weights.T, np.eye(5), atol=0.02)


# MC with the default schedule and 8 restarts, mu / Welch measured for seeds 0-2:
# (6, 3) 1.000 (an equiangular tight frame), (8, 4) 1.096, (12, 6) 1.049, (16, 8) 1.071-1.072,
# (24, 12) 1.079-1.083.  A single start can stop at 1.116-1.143 for (8, 4) and 1.106-1.169 for (12, 6).
@pytest.mark.parametrize("e, d, seed", [(6, 3, 0), (8, 4, 0), (8, 4, 1), (8, 4, 2), (12, 6, 0), (12, 6, 1),
                                        (12, 6, 2), (16, 8, 0), (16, 8, 2), (24, 12, 0), (24, 12, 1)])
def test_mc_within_10_percent_of_welch_when_e_gt_d(e, d, seed):
    W0 = coherent_dictionary(e, d, 0.9, seed=seed)
    r = orthogonalize(W0, "mc", record_every=2000)
    w = welch_bound(e, d)
    mu = r.coherence[-1]
    assert w <= mu + 1e-6  # the Welch bound holds
    assert mu <= 1.10 * w
    assert mu == pytest.approx(mutual_coherence(r.weights), abs=1e-6)  # float32 training
    assert mu == pytest.approx(r.restart_coherence.min(), abs=1e-6)  # the best restart (float32 penalty)
    if (e, d) == (6, 3):  # an ETF exists: mu = Welch = 1/sqrt(5)
        assert mu == pytest.approx(1 / math.sqrt(5), abs=1e-4)


@pytest.mark.parametrize("e, d, best_known", [(8, 4, math.sqrt(2) - 1), (7, 3, 1 / math.sqrt(3))])
def test_mc_reaches_best_known_packing(e, d, best_known):
    # Conway-Hardin-Sloane line packings: 8 lines in R^4 at arccos(sqrt(2) - 1) = 65.53 deg (1.096 x Welch),
    # 7 lines in R^3 at arccos(1/sqrt(3)) = 54.74 deg (1.225 x Welch: no penalty gets within 10% there)
    W0 = coherent_dictionary(e, d, 0.97, seed=0)
    r = orthogonalize(W0, "mc", record_every=2000)
    assert r.coherence[-1] == pytest.approx(best_known, abs=2e-4)
    assert r.coherence[-1] / welch_bound(e, d) == pytest.approx(best_known / welch_bound(e, d), abs=1e-3)


def test_mc_64_16_known_gap():
    # (64, 16): MC stops at 1.18-1.19 x Welch; 4 real mutually unbiased bases of R^16 give 1/4 = 1.146 x Welch
    # and we know of no packing within 10%, so this size is reported, not required
    W0 = coherent_dictionary(64, 16, 0.9, seed=0)
    r = orthogonalize(W0, "mc", record_every=2000)
    ratio = r.coherence[-1] / welch_bound(64, 16)
    assert 1.0 <= ratio < 1.22  # from 0.9 = 4.1 x Welch down to about 1.185 x
    if ratio > 1.10:
        pytest.xfail(f"(64, 16) stops at {ratio:.3f} x Welch (no known packing within 10%)")


def test_restarts_help_mc():
    # (12, 6) has local optima at 1.049 and 1.106 x Welch; the start from W0 (seed 2) ends in the worse one
    W0 = coherent_dictionary(12, 6, 0.9, seed=2)
    one = orthogonalize(W0, "mc", restarts=1, record_every=2000)
    many = orthogonalize(W0, "mc", record_every=2000)
    w = welch_bound(12, 6)
    assert one.restart_coherence.shape == (1,) and many.restart_coherence.shape == (8,)
    assert one.coherence[-1] == pytest.approx(many.restart_coherence[0], abs=1e-6)  # run 0 starts from W0
    assert one.coherence[-1] > 1.10 * w
    assert many.coherence[-1] < 1.06 * w


def test_so_reaches_tight_frame_not_welch():
    # SO / DSO / SRIP minimise a mean-square or spectral quantity: SO ends at a unit-norm tight frame
    # (W^T W = (E/d) I), whose rms off-diagonal |G_ij| equals the Welch bound while its max stays far above it
    e, d = 24, 12
    W0 = coherent_dictionary(e, d, 0.9, seed=0)
    r = orthogonalize(W0, "so", steps=1500, learning_rate=0.02, restarts=1, record_every=1500)
    W = r.weights
    np.testing.assert_allclose(W.T @ W, (e / d) * np.eye(d), atol=1e-3)
    G = W @ W.T
    rms = np.sqrt((np.sum(G ** 2) - e) / (e * (e - 1)))
    assert rms == pytest.approx(welch_bound(e, d), rel=1e-3)
    assert r.coherence[-1] > 2 * welch_bound(e, d)


def test_greedy_recovery_rises_after_regularisation():
    e, d, k = 16, 8, 2
    W0 = coherent_dictionary(e, d, 0.9, seed=3)
    r = orthogonalize(W0, "mc", record_every=2000)
    before, after = [], []
    for W, out in ((W0, before), (r.weights, after)):
        toks = sparse_tokens(W, 300, k, seed=5)
        out.append(support_recovery(W, toks.tokens, toks.support, methods=("thresholding", "omp")))
    assert after[0]["thresholding"] > before[0]["thresholding"] + 0.2
    assert after[0]["omp"] >= before[0]["omp"]


def test_errors():
    with pytest.raises(ValueError, match="kind"):
        orthogonality_penalty(np.eye(2), "fro")
    with pytest.raises(ValueError, match="2 dimensions"):
        so_penalty(np.ones(3))
    with pytest.raises(ValueError, match="steps"):
        orthogonalize(np.eye(2), "so", steps=0)
    with pytest.raises(ValueError, match="NaN"):
        orthogonalize(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="restarts"):
        orthogonalize(np.eye(2), restarts=0)
    with pytest.raises(ValueError, match="restart_noise"):
        orthogonalize(np.eye(2), restart_noise=-0.1)


def test_dso_is_twice_so_minus_constant(x64):
    # W W^T and W^T W share non-zero eigenvalues: DSO = 2 SO - (E - d) for E >= d
    W = rand_w(7, 7, 3)
    assert float(dso_penalty(W)) == pytest.approx(2 * float(so_penalty(W)) - 4)


def test_orthogonalize_argument_checks():
    # issue 16: a zero row with normalize=True trained on NaN; flags and the temperature pair unchecked
    with pytest.raises(ValueError, match="row 1 of `W` is zero"):
        orthogonalize(np.array([[1.0, 0.0], [0.0, 0.0]]), "so", steps=2)
    with pytest.raises(TypeError, match="`normalize` must be True or False"):
        orthogonalize(np.eye(2), "so", steps=2, normalize="yes")
    with pytest.raises(TypeError, match="`progress` must be True or False"):
        orthogonalize(np.eye(2), "so", steps=2, progress=1)
    with pytest.raises(ValueError, match="`mc_temperature` must be None or a pair"):
        orthogonalize(np.eye(2), "mc", steps=2, mc_temperature=(0.1, 0.01, 0.001))
    with pytest.raises(ValueError, match="mc_temperature"):
        orthogonalize(np.eye(2), "mc", steps=2, mc_temperature=(0.1, 0.0))
    # the recorded coherence needs every direction, so a zero row is refused up front either way
    with pytest.raises(ValueError, match="row 1 of `W` is zero.*records the mutual coherence"):
        orthogonalize(np.array([[1.0, 0.0], [0.0, 0.0]]), "so", steps=2, normalize=False, restarts=1)
