"""Tests for infomoe._entropy: entropy estimators from counts and shannon_entropy."""

import math
import re

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, special

import infomoe
from infomoe import ESTIMATORS, Estimate, entropy, mutual_information_table, shannon_entropy
from infomoe._entropy import _dirichlet_entropy_moments


# ---------------------------------------------------------------- closed forms


def test_uniform_16_is_4_bits():
    assert float(entropy(np.full(16, 10))) == pytest.approx(4.0, abs=1e-12)
    assert float(entropy(np.full(16, 10), base=math.e)) == pytest.approx(math.log(16), abs=1e-12)
    assert float(entropy(np.full(16, 10), base=16)) == pytest.approx(1.0, abs=1e-12)
    assert shannon_entropy(np.full(16, 1 / 16)) == pytest.approx(4.0, abs=1e-12)


def test_closed_forms_small():
    assert float(entropy([3, 1])) == pytest.approx(2 - 0.75 * math.log2(3), abs=1e-12)
    assert float(entropy([7])) == 0.0
    assert shannon_entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5, abs=1e-15)
    assert shannon_entropy([1.0, 0.0, 0.0]) == 0.0          # 0 log 0 = 0


def test_public_names():
    assert ESTIMATORS == ("plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger",
                          "james_stein")
    assert infomoe.shannon_entropy is shannon_entropy
    assert infomoe.Estimate is Estimate


def test_estimate_result_type():
    e = entropy([5, 3, 2], estimator="jackknife", base=math.e)
    assert e.unit == "nats" and e.estimator == "jackknife" and e.n == 10 and e.k == 3
    assert e.std is not None and e.std > 0
    r = repr(e)
    assert "nats" in r and "jackknife" in r
    assert entropy([1, 1]).unit == "bits"
    assert entropy([1, 1]).std is None
    b = entropy([[1, 1], [2, 0]])
    assert b.value.shape == (2,)
    with pytest.raises(TypeError, match="value"):
        float(b)
    with pytest.raises(AttributeError):
        b.value = 3                                        # frozen


# ---------------------------------------------------------------- independent implementations


def test_plugin_matches_scipy_and_dit():
    dit = pytest.importorskip("dit")
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(2, 40))
        c = rng.integers(0, 50, size=k)
        c[0] += 1
        ours = float(entropy(c))
        assert ours == pytest.approx(scipy.stats.entropy(c, base=2), abs=1e-10)
        p = c / c.sum()
        d = dit.Distribution([str(i) for i in range(k) if p[i] > 0], p[p > 0].tolist())
        assert ours == pytest.approx(dit.shannon.entropy(d), abs=1e-10)
        assert shannon_entropy(p) == pytest.approx(ours, abs=1e-12)


def test_shannon_entropy_batched_matches_scipy():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7) * 0.3, size=(3, 5))
    p[0, 0] = [1, 0, 0, 0, 0, 0, 0]
    h = shannon_entropy(p, base=math.e)
    assert h.shape == (3, 5)
    np.testing.assert_allclose(h, scipy.stats.entropy(p, axis=-1), atol=1e-12)


def test_miller_madow_formula():
    c = np.array([4, 0, 3, 1, 0, 2])
    n, kplus = 10, 4
    mm = float(entropy(c, estimator="miller_madow", base=math.e))
    assert mm == pytest.approx(scipy.stats.entropy(c) + (kplus - 1) / (2 * n), abs=1e-12)
    # uses the observed support: declaring a larger alphabet does not change it
    assert float(entropy(c, estimator="miller_madow", k=100)) == pytest.approx(
        float(entropy(c, estimator="miller_madow")), abs=1e-15)


def _jackknife_brute(c):
    """n delete-one re-evaluations of the plug-in entropy (nats)."""
    samples = np.repeat(np.arange(c.size), c)
    n = samples.size
    loo = np.array([scipy.stats.entropy(np.bincount(np.delete(samples, s), minlength=c.size))
                    for s in range(n)])
    h = scipy.stats.entropy(c)
    value = n * h - (n - 1) * loo.mean()
    se = math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    return value, se


def test_jackknife_matches_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(10):
        c = rng.integers(0, 9, size=int(rng.integers(2, 12)))
        c[0] += 2
        v, se = _jackknife_brute(c)
        e = entropy(c, estimator="jackknife", base=math.e)
        assert float(e) == pytest.approx(v, abs=1e-10)
        assert e.std == pytest.approx(se, abs=1e-10)


def test_jackknife_precise_for_huge_counts():
    # N ~ 1e12: the naive N H - (N-1) mean(H_-s) would lose ~1e-4 to cancellation
    c = np.array([6e11, 4e11, 3.0])
    h = float(entropy(c, estimator="plugin", base=math.e))
    jk = float(entropy(c, estimator="jackknife", base=math.e))
    # jackknife bias correction ~ (K - 1) / (2N) to first order
    assert jk - h == pytest.approx(2 / (2 * c.sum()), rel=1e-2)


def test_chao_shen_closed_forms():
    # no singletons: coverage 1, p~ = p; counts (2, 2): -2 * 0.5 log 0.5 / (1 - 0.5^4)
    # (declared k = 10: with k = 2 the value 0.739 > log 2 is clipped to log 2, issue 16)
    assert float(entropy([2, 2], estimator="chao_shen", base=math.e, k=10)) == pytest.approx(
        math.log(2) / (1 - 0.5 ** 4), abs=1e-12)
    assert float(entropy([2, 2], estimator="chao_shen", base=math.e)) == pytest.approx(
        math.log(2), abs=1e-15)
    # all singletons (f1 = N is replaced by N - 1): C = 1/N, p~ = 1/N^2
    n = 5
    pa = 1 / n ** 2
    expected = n * (-pa * math.log(pa)) / (1 - (1 - pa) ** n)
    assert float(entropy(np.ones(n), estimator="chao_shen", base=math.e, k=1000)) == \
        pytest.approx(expected, abs=1e-12)
    # k = 5: the estimate 3.49 nats exceeds log 5 and is clipped there (issue 16)
    assert float(entropy(np.ones(n), estimator="chao_shen", base=math.e)) == pytest.approx(
        math.log(n), abs=1e-15)
    # one singleton among (3, 1): C = 3/4
    pa = np.array([3, 1]) / 4 * 0.75
    expected = np.sum(-pa * np.log(pa) / (1 - (1 - pa) ** 4))
    assert float(entropy([3, 1], estimator="chao_shen", base=math.e, k=100)) == pytest.approx(
        expected, abs=1e-12)


# ---------------------------------------------------------------- NSB


def test_dirichlet_moments_match_monte_carlo():
    rng = np.random.default_rng(3)
    c = np.array([5.0, 0, 2, 1, 0, 7])
    vals, mult = np.unique(c, return_counts=True)
    for a in (0.05, 0.7, 5.0):
        m, s = _dirichlet_entropy_moments(vals, mult.astype(float), np.array([a]))
        h = special.entr(rng.dirichlet(c + a, size=200_000)).sum(axis=1)
        assert m[0] == pytest.approx(h.mean(), abs=4 * h.std() / math.sqrt(h.size))
        assert s[0] - m[0] ** 2 == pytest.approx(h.var(), rel=0.02)


def _nsb_mp(c, k, dps=30):
    """NSB posterior mean and standard deviation (nats) by mpmath quadrature over
    x = log alpha on the whole real line (no truncation of alpha), from the
    textbook formulas: evidence from log-Gamma functions, prior
    K psi_1(K a + 1) - psi_1(a + 1), E[H|a] and E[H^2|a] of Wolpert & Wolf (1995)."""
    import mpmath as mp

    with mp.workdps(dps):
        c = np.asarray(c)
        vals, mult = np.unique(c[c > 0], return_counts=True)
        vals = [mp.mpf(int(v)) for v in vals]
        mult = [int(m) for m in mult]
        z0 = k - sum(mult)
        if z0:
            vals, mult = [mp.mpf(0)] + vals, [z0] + mult
        K, N = mp.mpf(k), sum(m * v for v, m in zip(vals, mult))

        def prior(a):  # K psi_1(Ka+1) - psi_1(a+1): ~1/(2a^2), digits to spare at a ~ 1e35
            with mp.workdps(dps + 100):
                a = mp.mpf(a)
                return +(K * mp.psi(1, K * a + 1) - mp.psi(1, a + 1))

        def parts(x):
            with mp.workdps(dps + 80):  # E[H^2|a] cancels ~ 2 log10(a) digits at large a
                return [+v for v in parts_hp(mp.mpf(x))]

        def parts_hp(x):
            a = mp.exp(x)
            ev = (mp.loggamma(K * a) - mp.loggamma(N + K * a)
                  + sum(m * (mp.loggamma(v + a) - mp.loggamma(a)) for v, m in zip(vals, mult)))
            w = mp.exp(ev + N * mp.log(K)) * prior(a) * a
            A = N + K * a
            al = [v + a for v in vals]
            mean = mp.psi(0, A + 1) - sum(m * q * mp.psi(0, q + 1) for q, m in zip(al, mult)) / A
            u = [mp.psi(0, q + 1) - mp.psi(0, A + 2) for q in al]
            s1 = sum(m * q * uu for q, uu, m in zip(al, u, mult))
            t1 = mp.psi(1, A + 2)
            off = (s1 ** 2 - sum(m * q * q * uu * uu for q, uu, m in zip(al, u, mult))
                   - t1 * (A * A - sum(m * q * q for q, m in zip(al, mult))))
            diag = sum(m * q * (q + 1) * ((mp.psi(0, q + 2) - mp.psi(0, A + 2)) ** 2
                                         + mp.psi(1, q + 2) - t1) for q, m in zip(al, mult))
            return w, mean, (off + diag) / (A * (A + 1))

        cache = {}

        def f(x):
            if x not in cache:
                cache[x] = parts(x)
            return cache[x]

        def logw(x):
            with mp.workdps(dps + 80):
                return +logw_hp(mp.mpf(x))

        def logw_hp(x):
            a = mp.exp(x)
            return (mp.loggamma(K * a) - mp.loggamma(N + K * a) + N * mp.log(K)
                    + sum(m * (mp.loggamma(v + a) - mp.loggamma(a)) for v, m in zip(vals, mult))
                    + mp.log(prior(a) * a))

        lk = float(mp.log(K))
        scan = np.linspace(-lk - 70.0, 70.0 + math.log1p(float(N)), 281)
        lw = np.array([float(logw(mp.mpf(x))) for x in scan])
        inside = np.flatnonzero(lw > lw.max() - 70.0)
        lo, hi = scan[max(inside[0] - 1, 0)], scan[min(inside[-1] + 1, scan.size - 1)]
        pts = [mp.mpf(v) for v in np.linspace(lo, hi, 25)]
        z = mp.quad(lambda x: f(x)[0], pts)
        m1 = mp.quad(lambda x: f(x)[0] * f(x)[1], pts) / z
        m2 = mp.quad(lambda x: f(x)[0] * f(x)[2], pts) / z
        return float(m1), float(mp.sqrt(m2 - m1 * m1))


@pytest.mark.parametrize("k,n", [(2, 3), (10, 5), (40, 12)])
def test_nsb_matches_quadrature(k, n):
    rng = np.random.default_rng(k + n)
    c = rng.multinomial(n, rng.dirichlet(np.ones(k) * 0.5))
    ours = entropy(c, estimator="nsb", base=math.e)
    mean, std = _nsb_mp(c, k)
    assert float(ours) == pytest.approx(mean, rel=1e-11)
    assert ours.std == pytest.approx(std, rel=1e-9)


@pytest.mark.parametrize("k", [10, 10**6, 10**9, 10**12, 10**15])
def test_nsb_one_sample_is_exactly_half_log_k(k):
    # with N = 1 the evidence is constant in alpha: the posterior is the flat prior on
    # xi = E[H|alpha] over [0, ln K], and the posterior mean is exactly ln(K)/2.  Before
    # the fix the integral stopped at alpha = 1e8/K: k=1e9 gave 9.4222 (exact 10.3616).
    e = entropy([1], estimator="nsb", k=k, base=math.e)
    assert float(e) == pytest.approx(math.log(k) / 2, rel=1e-12)


@pytest.mark.parametrize("c,k", [([1], 10**15), ([2, 1], 10**12), ([1, 1, 1], 10**9)])
def test_nsb_large_alphabet_matches_mpmath(c, k):
    e = entropy(c, estimator="nsb", k=k, base=math.e)
    mean, std = _nsb_mp(np.array(c), k)
    assert float(e) == pytest.approx(mean, rel=1e-11)
    assert e.std == pytest.approx(std, rel=1e-9)


def test_nsb_huge_counts_no_index_error():
    # was IndexError: the log-weights of counts ~1e18 lost every digit
    e = entropy([1e18, 1e18, 1], estimator="nsb")
    assert float(e) == pytest.approx(1.0, abs=1e-12)
    assert 0 <= e.std < 1e-12


def test_nsb_std_keeps_digits_when_tiny():
    # Var = E[H^2] - E[H]^2 lost every digit below ~1e-7 H; now computed without cancellation
    c = np.full(50, 10**7)
    e = entropy(c, estimator="nsb", base=math.e)
    mean, std = _nsb_mp(c, 50, dps=40)
    assert float(e) == pytest.approx(mean, rel=1e-12)
    assert e.std == pytest.approx(std, rel=1e-6)


def test_nsb_depends_on_declared_k_and_edge_cases():
    c = np.array([3, 2, 1, 1])
    h4 = float(entropy(c, estimator="nsb"))
    h50 = float(entropy(c, estimator="nsb", k=50))
    assert h50 > h4                                        # more possible outcomes
    padded = np.concatenate([c, np.zeros(46, dtype=int)])
    assert float(entropy(padded, estimator="nsb")) == pytest.approx(h50, abs=1e-12)
    one = entropy([9], estimator="nsb")
    assert float(one) == 0.0 and one.std == 0.0


def test_nsb_std_covers_truth():
    rng = np.random.default_rng(4)
    k, n, reps = 200, 60, 60
    hits = 0
    for _ in range(reps):
        p = rng.dirichlet(np.ones(k))
        e = entropy(rng.multinomial(n, p), estimator="nsb")
        hits += abs(e.value - scipy.stats.entropy(p, base=2)) <= 2 * e.std
    assert hits / reps >= 0.85


# ---------------------------------------------------------------- bias (Monte Carlo)


def test_plugin_bias_matches_miller_formula():
    # E[H_plugin] ~ H - (K - 1) / (2N) nats for N >> K
    rng = np.random.default_rng(5)
    k, n, reps = 8, 400, 4000
    p = np.linspace(1, 2, k)
    p /= p.sum()
    counts = rng.multinomial(n, p, size=reps)
    bias = entropy(counts, base=math.e).value.mean() - scipy.stats.entropy(p)
    assert bias == pytest.approx(-(k - 1) / (2 * n), rel=0.1)


@pytest.mark.parametrize("dist", ["dirichlet", "zipf"])
def test_bias_corrected_estimators_reduce_bias(dist):
    """Mean bias (bits) over 40 draws, K = 500, N = 150 (N << K)."""
    rng = np.random.default_rng(6)
    k, n, reps = 500, 150, 40
    bias = {e: [] for e in ESTIMATORS}
    for _ in range(reps):
        p = rng.dirichlet(np.ones(k)) if dist == "dirichlet" else 1 / np.arange(1, k + 1)
        p = p / p.sum()
        h = scipy.stats.entropy(p, base=2)
        c = rng.multinomial(n, p)
        for e in ESTIMATORS:
            bias[e].append(float(entropy(c, estimator=e, k=k)) - h)
    mean = {e: abs(np.mean(b)) for e, b in bias.items()}
    assert mean["plugin"] > 1.0
    for e in ("miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein"):
        assert mean[e] < 0.75 * mean["plugin"], (e, mean)
    assert mean["nsb"] < 0.5 * mean["plugin"]
    assert mean["chao_shen"] < 0.5 * mean["plugin"]


def test_grassberger_g_is_the_integral_form():
    """G(n) = psi(n) + (-1)^n int_0^1 x^(n-1) / (1 + x) dx (Grassberger 2003)."""
    import scipy.integrate
    import scipy.special

    from infomoe._entropy import _grassberger_g
    n = np.arange(1, 41, dtype=np.float64)
    quad = np.array([scipy.integrate.quad(lambda x, m=m: x ** (m - 1) / (1 + x), 0, 1,
                                          epsabs=1e-14, epsrel=1e-13)[0] for m in n])
    ref = scipy.special.digamma(n) + (-1.0) ** n * quad
    np.testing.assert_allclose(_grassberger_g(n), ref, rtol=1e-12, atol=1e-13)


def test_grassberger_closed_forms():
    # two singletons: log 2 - G(1), G(1) = -gamma - log 2
    assert float(entropy([1, 1], estimator="grassberger", base=math.e)) == pytest.approx(
        2 * math.log(2) + np.euler_gamma, rel=1e-14)
    # unobserved bins contribute nothing: k does not change the value
    assert float(entropy([3, 1, 0], estimator="grassberger", k=50)) == float(
        entropy([3, 1], estimator="grassberger"))
    # large counts: G(n) = log n - (1 - (-1)^n) / (2n) + O(1/n^2), so odd counts add 1/(2N)
    c = np.array([40_001, 25_000, 34_999])
    n = c.sum()
    odd = (c % 2 == 1).sum()
    plugin_nats = float(entropy(c, base=math.e))
    assert float(entropy(c, estimator="grassberger", base=math.e)) == pytest.approx(
        plugin_nats + odd / n, abs=1e-9)


def _james_stein_reference(y, k):
    """Hausser & Strimmer (2009), written out bin by bin as in their R package."""
    y = [float(v) for v in y] + [0.0] * (k - len(y))
    n = sum(y)
    u = [v / n for v in y]
    t = 1.0 / k
    if n <= 1:
        lam = 1.0
    else:
        msp = sum((ui - t) ** 2 for ui in u)
        lam = 1.0 if msp == 0 else sum(ui * (1 - ui) / (n - 1) for ui in u) / msp
        lam = min(1.0, max(0.0, lam))
    f = [lam * t + (1 - lam) * ui for ui in u]
    return -sum(fi * math.log(fi) for fi in f if fi > 0)


@pytest.mark.parametrize("y, k", [
    ([4, 2, 3, 0, 2, 4, 0, 0, 2, 1, 1], 11),
    ([4, 2, 3, 0, 2, 4, 0, 0, 2, 1, 1], 40),     # declared alphabet beyond the vector
    ([100, 1, 1], 3), ([1], 4), ([5, 5, 5, 5], 4), ([7], 1), ([9], 3), ([1, 0, 1], 2),
])
def test_james_stein_matches_written_out_formula(y, k):
    got = float(entropy(y, estimator="james_stein", k=k, base=math.e))
    assert got == pytest.approx(_james_stein_reference([v for v in y if v] if k < len(y) else y, k),
                                rel=1e-13, abs=1e-15)


def test_james_stein_closed_forms():
    assert float(entropy([1], estimator="james_stein", k=8)) == pytest.approx(3.0)   # N = 1: uniform
    assert float(entropy([6, 6, 6], estimator="james_stein")) == pytest.approx(math.log2(3))
    assert float(entropy([9], estimator="james_stein", k=3)) == 0.0    # lambda = 0: no shrinkage
    # declaring more (unobserved) outcomes moves mass to them: the estimate grows
    c = np.array([5, 3, 1])
    vals = [float(entropy(c, estimator="james_stein", k=k)) for k in (3, 6, 12, 48)]
    assert all(a < b for a, b in zip(vals, vals[1:]))


# ---------------------------------------------------------------- batching, k, properties


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_batched_equals_loop(estimator):
    rng = np.random.default_rng(7)
    c = rng.integers(0, 6, size=(2, 3, 9))
    c[..., 0] += 2
    out = entropy(c, estimator=estimator, k=12)
    assert out.value.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        one = entropy(c[idx], estimator=estimator, k=12)
        assert out.value[idx] == pytest.approx(one.value, abs=1e-12)
        if one.std is not None:
            assert out.std[idx] == pytest.approx(one.std, abs=1e-12)
    assert out.n.shape == (2, 3)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_k_pads_with_zeros(estimator):
    c = np.array([5, 2, 0, 1, 1])
    a = entropy(c, estimator=estimator, k=9)
    b = entropy(np.concatenate([c, [0, 0, 0, 0]]), estimator=estimator)
    assert float(a) == pytest.approx(float(b), abs=1e-12)
    assert a.k == 9
    # k below the vector length but above the observed support drops empty bins
    assert float(entropy(c, estimator=estimator, k=4)) == pytest.approx(
        float(entropy(c[c > 0], estimator=estimator)), abs=1e-12)


def test_weighted_counts_need_weighted_true():
    expected = scipy.stats.entropy([1, 3], base=2)
    e = entropy([0.5, 1.5], weighted=True)
    assert float(e) == pytest.approx(expected, abs=1e-15)
    assert e.n == 2.0 and e.estimator == "plugin"
    # an integer table is a valid weighted table too: same value as the counts
    assert float(entropy([1, 3], weighted=True)) == pytest.approx(expected, abs=1e-15)
    # batched rows, each of its own total weight
    v = entropy([[0.5, 1.5], [0.25, 0.25]], weighted=True).value
    np.testing.assert_allclose(v, [expected, 1.0], rtol=0, atol=1e-15)


def test_probabilities_are_not_counts():
    """entropy([0.2, 0.8]) used to treat the probabilities as (weighted) counts."""
    with pytest.raises(ValueError) as info:
        entropy([0.2, 0.8])
    msg = str(info.value)
    assert "`counts`" in msg and "0.2" in msg and "non-negative integers" in msg
    assert "shannon_entropy" in msg and "weighted=True" in msg
    # what the message points to gives the entropy of the distribution
    assert shannon_entropy([0.2, 0.8]) == pytest.approx(scipy.stats.entropy([0.2, 0.8], base=2))


@pytest.mark.parametrize("estimator", [e for e in ESTIMATORS if e != "plugin"])
def test_weighted_true_only_with_plugin(estimator):
    with pytest.raises(ValueError, match=f"weighted=True.*plugin.*{estimator}"):
        entropy([1, 2], estimator=estimator, weighted=True)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_weighted_must_be_bool(bad):
    with pytest.raises(TypeError, match="`weighted` must be True or False"):
        entropy([1, 2], weighted=bad)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(hnp.arrays(np.int64, st.integers(1, 12), elements=st.integers(0, 30)),
       st.randoms(use_true_random=False))
def test_plugin_properties(c, rnd):
    c = c.copy()
    c[0] += 1
    h = float(entropy(c))
    assert 0 <= h <= math.log2(c.size) + 1e-12
    perm = list(range(c.size))
    rnd.shuffle(perm)
    assert float(entropy(c[perm])) == pytest.approx(h, abs=1e-12)      # relabelling
    assert float(entropy(3 * c)) == pytest.approx(h, abs=1e-12)        # scale invariance


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad,exc,msg", [
    ([1.0, np.nan], ValueError, "NaN"),
    ([1.0, np.inf], ValueError, "inf"),
    ([3, -1], ValueError, "negative"),
    ([0, 0], ValueError, "sums to zero"),
    ([], ValueError, "empty"),
    ("abc", TypeError, "counts"),
    (None, TypeError, "counts"),
    (5, ValueError, "dimension"),
])
def test_entropy_bad_counts(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        entropy(bad)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_needs_integer_counts(estimator):
    with pytest.raises(ValueError, match=r"non-integer count 1\.5 at index \(1, 0\)"):
        entropy([[1.0, 2.0], [1.5, 2.0]], estimator=estimator)
    # integer-valued floats are fine, and give the value of the integer counts
    assert float(entropy([1.0, 2.0], estimator=estimator)) == pytest.approx(
        float(entropy(np.array([1, 2]), estimator=estimator)), abs=1e-15)


def test_entropy_bad_options():
    with pytest.raises(ValueError, match="estimator"):
        entropy([1, 2], estimator="schurmann")
    with pytest.raises(ValueError, match="`k`=2 is smaller than the 3 bins"):
        entropy([1, 2, 3], k=2)
    with pytest.raises(TypeError, match="`k`"):
        entropy([1, 2], k=2.5)
    with pytest.raises(ValueError, match="`k`"):
        entropy([1, 2], k=0)
    with pytest.raises(ValueError, match="base"):
        entropy([1, 2], base=1)
    with pytest.raises(TypeError, match="base"):
        entropy([1, 2], base="2")
    with pytest.raises(ValueError, match="at least 2 samples"):
        entropy([1, 0], estimator="jackknife")
    with pytest.raises(ValueError, match=r"row \(1,\) sums to zero"):
        entropy([[1, 2], [0, 0]])


@pytest.mark.parametrize("bad,msg", [
    ([0.5, 0.6], "sum to 1"),
    ([1.2, -0.2], "negative"),
    ([0.5, np.nan], "NaN"),
    ([], "empty"),
])
def test_shannon_entropy_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        shannon_entropy(bad)


# ---------------------------------------------------------------- Estimate as a number

import operator  # noqa: E402


@pytest.fixture
def h31():
    """An Estimate and the plain float it holds: H(3/4, 1/4) in bits."""
    e = entropy([3, 1])
    assert e.value == pytest.approx(2 - 0.75 * math.log2(3), abs=1e-15)
    assert e.value == 0.8112781244591328                 # the value the tests compare with
    return e, 0.8112781244591328


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge,
                                operator.eq, operator.ne])
@pytest.mark.parametrize("other", [0.5, 0.8112781244591328, 0.82, 1, -3])
def test_estimate_compares_like_its_value(h31, op, other):
    e, v = h31
    assert op(e, other) is op(v, other)
    assert op(other, e) is op(other, v)                  # reflected
    assert op(e, np.float64(other)) == op(v, other)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv])
@pytest.mark.parametrize("other", [0.25, 3, -1.5])
def test_estimate_arithmetic_gives_floats(h31, op, other):
    e, v = h31
    for got, want in ((op(e, other), op(v, other)), (op(other, e), op(other, v))):
        assert type(got) is float and got == want
    e2 = entropy([1, 1, 2])                              # Estimate with Estimate
    got = op(e, e2)
    assert type(got) is float and got == op(v, e2.value)


def test_estimate_unary_abs_round_float(h31):
    e, v = h31
    assert -e == -v and +e == v and abs(e) == v
    assert type(-e) is float and type(+e) is float and type(abs(e)) is float
    neg = mutual_information_table(np.full((3, 3), 1), estimator="miller_madow")
    assert neg.value < 0                                 # the bias correction overshoots
    assert abs(neg) == -neg.value and -neg == -neg.value
    assert round(e) == round(v) and type(round(e)) is int
    assert round(e, 3) == round(v, 3) == 0.811 and type(round(e, 3)) is float
    assert float(e) == v and type(float(e)) is float
    assert sum([e, e]) == 2 * v


def test_estimate_in_numpy_and_math(h31):
    e, v = h31
    e2 = entropy(np.full(4, 3))
    a = np.asarray([e, e2])
    assert a.dtype == np.float64 and a.tolist() == [v, 2.0]
    assert np.asarray(e).shape == () and float(np.asarray(e)) == v
    assert np.asarray(e, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError):                       # numpy 2 copy=False: as for a float
        np.array(e, copy=False)
    assert np.isclose(e, v) and not np.isclose(e, v + 1e-3)
    assert math.isclose(e, v) and math.isclose(e2, 2.0)
    assert np.mean([e, e2]) == pytest.approx((v + 2.0) / 2)
    np.testing.assert_array_equal(np.array([1.0, 2.0]) + e, [1.0 + v, 2.0 + v])
    assert e == pytest.approx(v)
    assert f"{e:.3f}" == f"{v:.3f}" and f"{e}" == repr(e)


def test_estimate_equality_and_hash():
    a = entropy([5, 5])
    b = entropy([5, 5], estimator="miller_madow")             # 1 + 1/(2*10*ln 2) bits
    c = entropy([2, 2], estimator="plugin")                    # 1 bit, other n
    assert a == c and hash(a) == hash(c) == hash(1.0)         # value equality, hashes agree
    assert a != b and b > a
    assert len({a, c, 1.0}) == 1
    assert {a: "x"}[1.0] == "x"
    assert (a == "1.0") is False and (a != None) is True      # noqa: E711
    with pytest.raises(TypeError):
        a + "1"
    nan = Estimate(value=math.nan, std=None, base=2.0, unit="bits", estimator="plugin", n=0, k=1)
    assert hash(nan) == hash(nan) and nan != nan


def test_estimates_in_different_units_do_not_mix():
    bits = entropy([5, 5])
    nats = entropy([5, 5], base=math.e)
    assert bits != nats and not (bits == nats)
    zero_nats = entropy([4], base=math.e)
    assert (zero_nats == 0.0) and zero_nats != entropy([4])
    for op, sym in ((operator.add, "+"), (operator.sub, "-"), (operator.mul, "*"),
                    (operator.truediv, "/"), (operator.lt, "<"), (operator.ge, ">=")):
        with pytest.raises(ValueError, match=rf"`{re.escape(sym)}`.*bits.*nats.*base="):
            op(bits, nats)
    # numbers are taken in the Estimate's own unit
    assert nats == pytest.approx(math.log(2))


def test_estimate_is_not_an_integer():
    e = entropy([4, 4])
    with pytest.raises(TypeError):
        int(e)
    with pytest.raises(TypeError):
        operator.index(e)
    with pytest.raises(TypeError):
        [0, 1, 2][e]


def test_batched_estimate_is_elementwise():
    e = entropy([[4, 4], [8, 0], [1, 3]])
    v = e.value
    np.testing.assert_array_equal(e < 0.5, v < 0.5)
    np.testing.assert_array_equal(0.5 <= e, 0.5 <= v)
    np.testing.assert_array_equal(e == 1.0, v == 1.0)
    np.testing.assert_array_equal(e != 1.0, v != 1.0)
    np.testing.assert_array_equal(e + 1, v + 1)
    np.testing.assert_array_equal(2 / (e + 1), 2 / (v + 1))
    np.testing.assert_array_equal(e - e, np.zeros(3))
    np.testing.assert_array_equal(-e, -v)
    np.testing.assert_array_equal(round(e, 2), np.round(v, 2))
    np.testing.assert_array_equal(np.asarray(e), v)
    with pytest.raises(TypeError, match="unhashable.*shape \\(3,\\)"):
        hash(e)
    with pytest.raises(TypeError, match="array of shape \\(3,\\)"):
        f"{e:.2f}"


def test_estimate_repr_stays_short():
    rng = np.random.default_rng(12)
    e = entropy(rng.integers(1, 9, size=(200, 300, 5)), estimator="jackknife")
    r = repr(e)
    assert len(r) < 250, r
    v, s = e.value, e.std
    assert f"value=array of shape (200, 300) in [{v.min():.4g}, {v.max():.4g}] bits" in r
    assert f"std=array of shape (200, 300) in [{s.min():.4g}, {s.max():.4g}] bits" in r
    assert "estimator='jackknife'" in r and "k=5" in r
    # small results list their numbers
    assert repr(entropy([[4, 4], [8, 0]])) == \
        "Estimate(value=[1, 0] bits, estimator='plugin', n=[8, 8], k=2)"
    assert repr(entropy([4, 4])) == "Estimate(value=1 bits, estimator='plugin', n=8, k=2)"
