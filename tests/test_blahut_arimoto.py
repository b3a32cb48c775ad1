"""Tests for infomoe._blahut_arimoto: closed forms, a numpy reference, properties, validation.

Sizes are small and shapes are shared between tests where possible: every new
shape costs a JIT compilation.
"""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from infomoe import (
    AccuracyRateCurve,
    CapacityResult,
    RateDistortionResult,
    accuracy_rate_curve,
    channel_capacity,
    rate_distortion,
)

LN2 = math.log(2)


def h2(p):
    """Binary entropy in bits."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p <= 0) | (p >= 1), 0.0, v)


def reference_ba(d, beta, p=None, tol=1e-14, max_iter=200_000):
    """Textbook Blahut–Arimoto (Cover & Thomas §10.8) in numpy, one slope.

    Returns (rate_bits, distortion, certificate_bits).
    """
    n, E = d.shape
    p = np.full(n, 1.0 / n) if p is None else np.asarray(p, float)
    A = np.exp(-beta * (d - d.min(axis=1, keepdims=True)))
    r = np.full(E, 1.0 / E)
    for _ in range(max_iter):
        c = A.T @ (p / (A @ r))
        r_new = r * c
        r_new /= r_new.sum()
        done = np.max(np.abs(r_new - r)) <= tol
        r = r_new
        if done:
            break
    Z = A @ r
    c = A.T @ (p / Z)
    q = A * r / Z[:, None]
    rq = p @ q
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(p[:, None] * q * np.log2(q / rq))
    return mi, float(p @ (q * d).sum(axis=1)), float(np.log2(c.max()))


# ---------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------

HAMMING = np.array([[0.0, 1.0], [1.0, 0.0]])
P_BERN = [0.75, 0.25]
# slope beta gives D = 1 / (1 + e^beta) above the critical slope ln 3 (where D = 0.25)
BERN_BETAS = np.array([0.0, 0.5, np.log(4.0), np.log(9.0), 8.0, 1e4, 1e6, np.inf])


@pytest.fixture(scope="module")
def bernoulli():
    return rate_distortion(HAMMING, BERN_BETAS, p_x=P_BERN)


def test_bernoulli_hamming_closed_form(bernoulli):
    res = bernoulli
    assert isinstance(res, RateDistortionResult)
    assert res.unit == "bits" and res.base == 2.0
    D_expected = np.where(BERN_BETAS < np.log(3.0), 0.25, 1 / (1 + np.exp(np.minimum(BERN_BETAS, 700))))
    R_expected = h2(0.25) - h2(np.minimum(D_expected, 0.25))
    np.testing.assert_allclose(res.distortion[1:], D_expected[1:], atol=1e-9)
    np.testing.assert_allclose(res.rate[1:], R_expected[1:], atol=1e-8)
    # the oracle values of docs/theory.md#closed-form-test-oracles
    assert res.rate[3] == pytest.approx(0.34228, abs=5e-6)
    assert res.distortion[3] == pytest.approx(0.1, abs=1e-9)
    assert res.rate[-1] == pytest.approx(0.81128, abs=5e-6)
    assert res.rate[-1] == pytest.approx(h2(0.25), abs=1e-12)
    # beta = 0: any r is optimal; rate 0
    assert res.rate[0] == pytest.approx(0.0, abs=1e-12)


def test_no_nan_at_extreme_slopes(bernoulli):
    res = bernoulli
    for a in (res.rate, res.distortion, res.q_t, res.certificate):
        assert np.all(np.isfinite(a))
    assert res.converged.all()
    assert np.all(res.certificate <= res.tol)
    np.testing.assert_allclose(res.q_t.sum(axis=1), 1.0, atol=1e-12)


def test_float32(bernoulli):
    res = rate_distortion(HAMMING, BERN_BETAS, p_x=P_BERN, dtype=np.float32)
    assert res.converged.all() and res.tol == 1e-4
    assert np.all(np.isfinite(res.rate)) and np.all(np.isfinite(res.distortion))
    np.testing.assert_allclose(res.rate, bernoulli.rate, atol=2e-4)
    np.testing.assert_allclose(res.distortion, bernoulli.distortion, atol=2e-5)


# ---------------------------------------------------------------------------
# numpy reference and properties on a random problem
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(7)
D_RAND = RNG.uniform(0, 1, size=(30, 5)) ** 2
P_RAND = RNG.dirichlet(np.ones(30))
BETAS_RAND = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0])


SLOPE = 4.0


SWEEP_BETAS = np.concatenate([BETAS_RAND, [SLOPE * (1 - 1e-4), SLOPE * (1 + 1e-4)]])


@pytest.fixture(scope="module")
def random_sweep():
    return rate_distortion(D_RAND, SWEEP_BETAS, p_x=P_RAND)


@pytest.fixture(scope="module")
def random_problem(random_sweep):
    r = random_sweep
    k = BETAS_RAND.size
    return RateDistortionResult(r.beta[:k], r.rate[:k], r.distortion[:k], r.q_t[:k],
                                r.certificate[:k], r.converged[:k], r.iterations[:k],
                                r.base, r.unit, r.tol)


def test_agrees_with_numpy_reference(random_problem):
    res = random_problem
    checked = 0
    for i, b in enumerate(BETAS_RAND):
        R, D, cert = reference_ba(D_RAND, b, P_RAND)
        if cert > 1e-10:  # the reference did not converge here: nothing to compare with
            continue
        checked += 1
        assert res.rate[i] == pytest.approx(R, abs=1e-6)
        assert res.distortion[i] == pytest.approx(D, abs=1e-6)
    assert checked >= 4


def test_properties(random_problem):
    res = random_problem
    assert res.converged.all() and np.all(res.certificate <= 1e-9)
    assert np.all(res.rate >= 0) and np.all(res.rate <= np.log2(5) + 1e-12)
    # larger slope: less distortion, more rate
    assert np.all(np.diff(res.distortion) < 0) and np.all(np.diff(res.rate) > 0)
    d_min = P_RAND @ D_RAND.min(axis=1)
    d_max = (P_RAND @ D_RAND).min()
    assert np.all(res.distortion >= d_min - 1e-12) and np.all(res.distortion <= d_max + 1e-12)
    # R is convex in D: chords lie above
    s = np.diff(res.rate) / np.diff(res.distortion)
    assert np.all(np.diff(s) < 0)


def test_slope_is_minus_beta(random_sweep):
    rate, dist = random_sweep.rate[-2:], random_sweep.distortion[-2:]
    slope_bits = np.diff(rate)[0] / np.diff(dist)[0]
    assert slope_bits == pytest.approx(-SLOPE / LN2, rel=1e-5)


def test_blocked_equals_unblocked_and_compression(random_problem):
    blocked = rate_distortion(D_RAND, BETAS_RAND, p_x=P_RAND, block_size=7, compress=False)
    np.testing.assert_allclose(blocked.rate, random_problem.rate, atol=1e-10)
    np.testing.assert_allclose(blocked.distortion, random_problem.distortion, atol=1e-10)
    np.testing.assert_allclose(blocked.q_t, random_problem.q_t, atol=1e-8)
    # duplicated rows with split weights = the same source (merged again by compression)
    d2 = np.concatenate([D_RAND, D_RAND])
    p2 = np.concatenate([P_RAND, P_RAND]) / 2
    dup = rate_distortion(d2, SWEEP_BETAS, p_x=p2)
    np.testing.assert_allclose(dup.rate[:BETAS_RAND.size], random_problem.rate, atol=1e-9)
    # the all-slopes-together form gives the same answers
    batched = rate_distortion(D_RAND, SWEEP_BETAS, p_x=P_RAND, sweep="batched")
    np.testing.assert_allclose(batched.rate[:BETAS_RAND.size], random_problem.rate, atol=1e-8)
    assert batched.converged.all()


def test_base_e_and_iteration_cap():
    nats = rate_distortion(HAMMING, BERN_BETAS, p_x=P_BERN, base=math.e)
    assert nats.unit == "nats"
    assert nats.rate[3] == pytest.approx(0.34228 * LN2, abs=5e-6)
    capped = rate_distortion(D_RAND, SWEEP_BETAS, p_x=P_RAND, max_iter=1)
    assert not capped.converged.all()
    assert np.all(capped.iterations <= 1)
    assert np.all(np.isfinite(capped.rate)) and np.all(np.isfinite(capped.certificate))
    assert np.all(capped.certificate >= -1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, (12, 4), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])))
def test_property_random_banks(d):
    betas = np.array([0.1, 1.0, 10.0, 1e3])
    res = rate_distortion(d, betas, compress=False)  # fixed shape: one compilation
    assert res.converged.all()
    assert np.all(res.certificate <= 1e-9)
    assert np.all(res.rate >= 0) and np.all(res.rate <= 2 + 1e-9)
    assert np.all(np.diff(res.distortion) <= 1e-12)
    assert np.all(np.diff(res.rate) >= -1e-9)
    assert np.all(res.distortion >= d.min(axis=1).mean() - 1e-12)


# ---------------------------------------------------------------------------
# accuracy-rate curve
# ---------------------------------------------------------------------------

def test_curve_endpoints_and_tie_breaking():
    # sample 0 is solved by experts {0, 1}, 1 by {1}, 2 by {1, 2}, 3 by {2}
    err = np.array([[0, 0, 1], [1, 0, 1], [1, 0, 0], [1, 1, 0]], dtype=float)
    c = accuracy_rate_curve(err, betas=[0.5, 2.0, 8.0])
    assert isinstance(c, AccuracyRateCurve)
    assert c.d_max == pytest.approx(0.25) and c.best_expert == 1
    assert c.d_min == 0.0
    # least-rate oracle: r = (0, 2/3, 1/3), R = 3/4 h(1/3) (a first-index tie-break gives 1.5 bits)
    assert c.rate_at_d_min == pytest.approx(0.75 * h2(1 / 3), abs=1e-8)
    assert c.beta[0] == 0 and np.isinf(c.beta[-1])
    assert c.rate[0] == 0 and c.distortion[0] == pytest.approx(0.25)
    assert c.distortion[-1] == 0.0
    np.testing.assert_allclose(c.accuracy, 1 - c.distortion)
    assert c.is_zero_one and c.converged.all()


def test_curve_monotone_convex_default_grid():
    rng = np.random.default_rng(3)
    err = (rng.random((200, 6)) < rng.uniform(0.2, 0.6, 6)).astype(float)
    c = accuracy_rate_curve(err)
    assert c.beta.size == 66 and c.converged.all()
    assert c.d_max == pytest.approx(err.mean(axis=0).min())
    assert c.d_min == pytest.approx(err.min(axis=1).mean())
    assert np.all(np.diff(c.rate) >= -1e-12)
    assert np.all(np.diff(c.distortion) <= 1e-15)
    # convexity of D(R): slopes between distinct-rate neighbours increase
    keep = np.concatenate([[True], np.diff(c.rate) > 1e-9])
    r, dd = c.rate[keep], c.distortion[keep]
    s = np.diff(dd) / np.diff(r)
    assert np.all(np.diff(s) >= -1e-6)
    assert 0 <= c.max_adjustment < 1e-7
    assert np.all(c.distortion <= c.raw_distortion)
    assert c.rate[-1] <= np.log2(6)


def test_curve_real_valued_losses_have_no_accuracy():
    c = accuracy_rate_curve(D_RAND, p_x=P_RAND, betas=SWEEP_BETAS[:-1])
    assert c.accuracy is None and not c.is_zero_one
    assert c.d_min == pytest.approx(P_RAND @ D_RAND.min(axis=1))


# ---------------------------------------------------------------------------
# channel capacity
# ---------------------------------------------------------------------------

def reference_arimoto(W, iters=20_000):
    p = np.full(W.shape[0], 1.0 / W.shape[0])
    for _ in range(iters):
        q = p @ W
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.nansum(W * np.log(W / q), axis=1)
        p = p * np.exp(D)
        p /= p.sum()
    return float(p @ D) / LN2


def test_capacity_closed_forms():
    bsc = channel_capacity([[0.9, 0.1], [0.1, 0.9]])
    assert isinstance(bsc, CapacityResult)
    assert bsc.capacity == pytest.approx(0.53100, abs=5e-6)
    assert bsc.capacity == pytest.approx(1 - h2(0.1), abs=1e-9)
    e = 0.3
    bec = channel_capacity([[1 - e, e, 0.0], [0.0, e, 1 - e]])
    assert bec.capacity == pytest.approx(1 - e, abs=1e-9)
    K, eps = 4, 0.2
    ksym = np.full((K, K), eps / (K - 1)) + np.eye(K) * (1 - eps - eps / (K - 1))
    row = ksym[0]
    res = channel_capacity(ksym)
    assert res.capacity == pytest.approx(np.log2(K) + np.sum(row * np.log2(row)), abs=1e-9)
    np.testing.assert_allclose(res.p_x, 0.25, atol=1e-6)
    for r in (bsc, bec, res):
        assert r.converged and 0 <= r.certificate <= 1e-9
        assert r.upper_bound >= r.capacity


def test_capacity_z_channel_needs_iteration():
    p = 0.3  # Z channel: 0 -> 0 always, 1 -> 0 with probability p
    res = channel_capacity([[1.0, 0.0], [p, 1 - p]])
    expected = np.log2(1 + (1 - p) * p ** (p / (1 - p)))
    assert res.converged and res.iterations > 0
    assert res.capacity == pytest.approx(expected, abs=1e-8)
    assert res.capacity <= expected + 1e-12 <= res.upper_bound + 2e-9


def test_capacity_random_channel_matches_reference():
    W = np.random.default_rng(5).dirichlet(np.ones(4) * 0.5, size=6)
    res = channel_capacity(W, base=math.e)
    assert res.unit == "nats"
    assert res.capacity / LN2 == pytest.approx(reference_arimoto(W), abs=1e-7)
    assert res.converged and res.certificate <= 1e-9


def near_duplicate_channel(seed):
    """Random 4 x 3 channel whose last two rows are within 1e-3 of each other."""
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(3), size=4)
    W[3] = np.abs(W[2] + rng.uniform(-1e-3, 1e-3, 3))
    W[3] /= W[3].sum()
    return W


def scipy_capacity(W):
    """Independent capacity (bits): SLSQP on the input simplex from several starts."""
    from scipy.optimize import minimize

    N = W.shape[0]

    def f(p):
        q = np.clip(p, 0, None) @ W
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.nansum(W * np.log2(W / q), axis=1)
        return -float(np.clip(p, 0, None) @ D), -(D - 1 / LN2)

    starts = [np.full(N, 1.0 / N)] + [0.5 * np.eye(N)[i] + 0.5 / N for i in range(N)]
    best = -np.inf
    for p0 in starts:
        r = minimize(f, p0, jac=True, method="SLSQP", bounds=[(0, 1)] * N,
                     constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1,
                                   "jac": lambda p: np.ones(N)}],
                     options={"ftol": 1e-16, "maxiter": 1000})
        best = max(best, -float(r.fun))
    return best


def mp_bounds(p, W):
    """``sum_x p(x) D_x`` and ``max_x D_x`` in bits, in 40-digit arithmetic (Gallager's
    bounds ``lower <= C <= upper`` hold for every input distribution ``p``)."""
    import mpmath

    with mpmath.workdps(40):
        P = [mpmath.mpf(float(v)) for v in p]
        s = sum(P)
        P = [v / s for v in P]
        Wm = [[mpmath.mpf(float(v)) for v in row] for row in W]
        q = [sum(P[i] * Wm[i][t] for i in range(len(P))) for t in range(len(Wm[0]))]
        D = [sum(Wm[i][t] * mpmath.log(Wm[i][t] / q[t], 2) for t in range(len(q)) if Wm[i][t] > 0)
             for i in range(len(P))]
        return float(sum(P[i] * D[i] for i in range(len(P)))), float(max(D))


def test_capacity_near_duplicate_rows_certified_in_tens_of_iterations():
    """Issue 13 item 5: near-duplicate rows with optimal weight near 0 made Arimoto's
    iteration stall (seeds 1, 8, 13 and 23 missed the tolerance at max_iter=10,000).
    Projected Newton certifies 1e-9 bits on all of them in tens of iterations."""
    for seed in range(24):
        W = near_duplicate_channel(seed)
        res = channel_capacity(W)
        assert res.converged and res.certificate <= 1e-9, (seed, res)
        assert res.iterations <= 100, (seed, res.iterations)
        assert res.capacity == pytest.approx(scipy_capacity(W), abs=1e-9), seed
        lo, up = mp_bounds(res.p_x, W)  # the certificate holds in high precision
        assert up - lo <= 1e-9 + 1e-12, (seed, lo, up)
        assert lo - 1e-12 <= res.capacity <= up + 1e-12


def test_capacity_newton_and_arimoto_paths_agree(monkeypatch):
    """Above _NEWTON_INPUTS inputs the accelerated Arimoto iteration is used; both
    forms certify the same capacity."""
    from infomoe import _blahut_arimoto as ba

    W = np.random.default_rng(11).dirichlet(np.ones(5) * 0.5, size=9)
    newton = channel_capacity(W)
    monkeypatch.setattr(ba, "_NEWTON_INPUTS", 0)
    arimoto = channel_capacity(W)
    assert newton.converged and arimoto.converged
    assert newton.capacity == pytest.approx(arimoto.capacity, abs=2e-9)
    assert newton.iterations < arimoto.iterations


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(distortion=[[0.0, np.nan]]), ValueError, "NaN"),
    (dict(distortion=[[0.0, -1.0]]), ValueError, "negative"),
    (dict(distortion=[0.0, 1.0]), ValueError, "dimension"),
    (dict(betas=[-1.0]), ValueError, "betas"),
    (dict(betas=[np.nan]), ValueError, "NaN"),
    (dict(p_x=[0.5, 0.6]), ValueError, "sum to 1"),
    (dict(p_x=[1.0]), ValueError, "length"),
    (dict(dtype=np.int32), ValueError, "dtype"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(base=1), ValueError, "base"),
    (dict(block_size=0), ValueError, "block_size"),
    (dict(distortion="abc"), TypeError, "distortion"),
])
def test_rate_distortion_rejects_bad_input(kwargs, exc, match):
    args = dict(distortion=HAMMING, betas=[1.0])
    args.update(kwargs)
    d, b = args.pop("distortion"), args.pop("betas")
    with pytest.raises(exc, match=match):
        rate_distortion(d, b, **args)


def test_capacity_and_curve_reject_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        channel_capacity([[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="negative"):
        channel_capacity([[1.5, -0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="2-D"):
        channel_capacity(np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="negative"):
        accuracy_rate_curve([[0.0, -1.0]])
    with pytest.raises(ValueError, match="inf"):
        accuracy_rate_curve([[0.0, np.inf]])


# ---------------------------------------------------------------------------
# short reprs
# ---------------------------------------------------------------------------

def test_reprs_stay_short_and_name_the_key_numbers():
    n = 1000
    conv = np.ones(n, dtype=bool)
    conv[5] = False
    curve = AccuracyRateCurve(
        beta=np.concatenate([[0.0], np.geomspace(0.01, 100, n - 2), [np.inf]]),
        rate=np.linspace(0.0, 3.91, n), distortion=np.linspace(0.13, 0.0, n),
        accuracy=np.linspace(0.87, 1.0, n), raw_distortion=np.linspace(0.13, 0.0, n),
        max_adjustment=0.0, certificate=np.zeros(n), converged=conv, d_max=0.13, d_min=0.0,
        rate_at_d_min=3.91, best_expert=17, is_zero_one=True, base=2.0, unit="bits")
    r = repr(curve)
    assert len(r) < 200, r
    for part in ("AccuracyRateCurve(", "n_points=1000", "rate=[0, 3.91] bits",
                 "accuracy=[0.87, 1]", "best_expert=17", "converged=999/1000"):
        assert part in r, (part, r)
    lossy = dataclasses.replace(curve, accuracy=None, is_zero_one=False,
                                converged=np.ones(n, dtype=bool))
    assert "distortion=[0, 0.13]" in repr(lossy) and "converged=True" in repr(lossy)

    experts = 64
    rd = RateDistortionResult(
        beta=np.geomspace(0.1, 100, n), rate=np.linspace(0.0, 2.5, n),
        distortion=np.linspace(0.4, 0.01, n), q_t=np.full((n, experts), 1.0 / experts),
        certificate=np.full(n, 2e-10), converged=np.ones(n, dtype=bool),
        iterations=np.full(n, 7), base=math.e, unit="nats", tol=1e-9)
    r = repr(rd)
    assert len(r) < 250, r
    for part in ("n_beta=1000", "n_experts=64", "beta=[0.1, 100]", "rate=[0, 2.5] nats",
                 "distortion=[0.01, 0.4]", "converged=True", "max_certificate=2e-10 nats"):
        assert part in r, (part, r)

    cap = CapacityResult(capacity=1.5, upper_bound=1.5 + 3e-10, certificate=3e-10,
                         p_x=np.full(100_000, 1e-5), converged=True, iterations=12, base=2.0,
                         unit="bits")
    r = repr(cap)
    assert len(r) < 200, r
    for part in ("capacity=1.5 bits", "certificate=3e-10 bits", "n_inputs=100000",
                 "converged=True", "iterations=12"):
        assert part in r, (part, r)


def test_solved_curve_repr(bernoulli):
    c = accuracy_rate_curve(HAMMING, p_x=P_BERN, betas=BERN_BETAS[1:-1])
    r = repr(c)
    assert f"rate=[0, {c.rate.max():.4g}] bits" in r and "converged=True" in r
    assert f"accuracy=[{c.accuracy.min():.4g}, 1]" in r
    r = repr(bernoulli)
    assert f"n_beta={BERN_BETAS.size}" in r and "beta=[0, inf]" in r


# ---------------------------------------------------------------------------
# first call of a process: persistent compilation cache and shape buckets (issue 17)
# ---------------------------------------------------------------------------

_CACHE_SCRIPT = """
import json, os, sys
import numpy as np
import jax
from infomoe import rate_distortion
d = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.5], [0.3, 0.2, 0.0]])
res = rate_distortion(d, [0.5, 4.0])
print("RESULT " + json.dumps({"rate": res.rate.tolist(),
                               "jax_dir": jax.config.jax_compilation_cache_dir,
                               "min_time": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""


def _run_fresh(env_extra):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("INFOMOE_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _files(path):
    import os

    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_persistent_jax_cache_is_used_restored_and_can_be_turned_off(tmp_path):
    """Fresh processes: the compiled solver is written under $INFOMOE_CACHE/jax and
    read back; JAX's own configuration is as before after the call;
    INFOMOE_JAX_CACHE=0 writes nothing; a cache the user configured is left alone."""
    ours = tmp_path / "infomoe"
    first = _run_fresh({"INFOMOE_CACHE": str(ours)})
    files = _files(ours / "jax")
    # the compiled solver: under its own name, or as the stored traced program (infomoe._ba_export)
    assert any(f.startswith(("jit_rd_solve", "jit_call_exported")) for f in files), files
    assert first["jax_dir"] is None and first["min_time"] == 1.0  # restored after the call
    again = _run_fresh({"INFOMOE_CACHE": str(ours)})  # loads from the cache: same numbers
    assert again["rate"] == first["rate"] and _files(ours / "jax") == files

    off = tmp_path / "off"
    res = _run_fresh({"INFOMOE_CACHE": str(off), "INFOMOE_JAX_CACHE": "0"})
    assert _files(off / "jax") == [] and res["rate"] == first["rate"]

    user = tmp_path / "user_jax"
    mine = tmp_path / "unused"
    res = _run_fresh({"INFOMOE_CACHE": str(mine), "JAX_COMPILATION_CACHE_DIR": str(user)})
    assert _files(mine / "jax") == [] and res["jax_dir"] == str(user)
    assert res["rate"] == first["rate"]


def test_jax_cache_dir_follows_infomoe_cache(monkeypatch, tmp_path):
    import os

    from infomoe._blahut_arimoto import jax_cache_dir

    monkeypatch.setenv("INFOMOE_CACHE", str(tmp_path))
    monkeypatch.delenv("INFOMOE_JAX_CACHE", raising=False)
    assert jax_cache_dir() == os.path.join(str(tmp_path), "jax")
    for off in ("0", "false", "OFF", " no "):
        monkeypatch.setenv("INFOMOE_JAX_CACHE", off)
        assert jax_cache_dir() is None
    monkeypatch.setenv("INFOMOE_JAX_CACHE", "1")
    assert jax_cache_dir() == os.path.join(str(tmp_path), "jax")
    from infomoe._blahut_arimoto import _usable_dir

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert _usable_dir(str(tmp_path / "new" / "jax")) and not _usable_dir(str(blocker / "jax"))


def test_shape_buckets_share_one_program():
    from infomoe._blahut_arimoto import _blocks, _bucket

    for n in range(1, 3000):
        b = _bucket(n)
        assert n <= b <= 1.25 * n
    shapes = {_blocks(np.zeros((n, 4)), np.full(n, 1.0 / n), 5, None, np.float64)[0].shape
              for n in range(1, 257)}
    assert shapes == {(1, 256, 4)}  # every small problem: one compiled solver
    assert _blocks(np.zeros((1900, 4)), np.ones(1900), 5, None, np.float64)[0].shape == (1, 2048, 4)
    assert _blocks(np.zeros((2000, 4)), np.ones(2000), 5, None, np.float64)[0].shape == (1, 2048, 4)


@pytest.mark.parametrize("n, E, blocks", [(37, 5, False), (300, 8, False), (700, 6, True)])
def test_padding_rows_change_no_result(monkeypatch, n, E, blocks):
    """Bucketed (zero-weight padded) and unpadded solves agree to 1e-12 (the
    summation order differs, nothing else), use the same iterations, and the
    certificates stay valid bounds (checked in numpy at the returned marginal)."""
    from infomoe import _blahut_arimoto as ba

    if blocks:  # several blocks, the block count bucketed (700 rows / 256 -> 3 blocks)
        monkeypatch.setattr(ba, "_BLOCK_ELEMENTS", 256 * 4 * (E + 9))
    rng = np.random.default_rng(n)
    d = rng.random((n, E)) * (rng.random((n, E)) < 0.7)
    p = rng.random(n)
    p /= p.sum()
    b = [0.3, 2.0, 15.0, np.inf]
    dd, pw, _ = ba._prepare(d, p, True)
    ddb, _ = ba._blocks(dd, pw, len(b), None, np.float64)
    assert ddb.shape[0] * ddb.shape[1] > dd.shape[0]  # really padded
    padded = rate_distortion(d, b, p_x=p)
    plain = rate_distortion(d, b, p_x=p, block_size=dd.shape[0])
    for f in ("rate", "distortion", "certificate", "q_t"):
        np.testing.assert_allclose(getattr(padded, f), getattr(plain, f), rtol=0, atol=1e-12,
                                   err_msg=f)
    np.testing.assert_array_equal(padded.iterations, plain.iterations)
    np.testing.assert_array_equal(padded.converged, plain.converged)
    assert padded.converged.all()
    for k, beta in enumerate(b[:-1]):  # the certificate of the returned marginal, in numpy
        A = np.exp(-beta * (d - d.min(axis=1, keepdims=True)))
        c = A.T @ (p / (A @ padded.q_t[k]))
        assert np.log2(c.max()) <= padded.tol + 1e-10
