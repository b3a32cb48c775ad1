"""Tests for infomoe.bounds.

Oracles: the union-bound table of docs/theory.md#union-bound-over-a-finite-class;
hand/closed-form values; scipy
(brentq, t intervals) and scikit-learn (mutual_info_score) as independent
implementations; and a synthetic finite bank whose every expectation is
computed *exactly* by enumerating the sufficient statistic of the training
set (multinomial counts of loss patterns), plus a seeded Monte Carlo run of
the same bank for the quantities that need samples.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.optimize import brentq
from scipy.special import gammaln, logsumexp
from sklearn.metrics import mutual_info_score

import infomoe
from infomoe import bounds as B
from infomoe.testing import assert_bound_holds, assert_gap_below_bound, assert_mi_close

# ---------------------------------------------------------------- the bank
# Z matters to the bank only through its loss pattern: pattern a occurs with
# probability P_PAT[a], and hypothesis k errs on it iff LOSS[a, k] == 1.
P_PAT = np.array([0.55, 0.15, 0.12, 0.10, 0.08])
LOSS = np.array([[0, 0, 0, 0, 0, 0],
                 [1, 0, 0, 1, 0, 1],
                 [0, 1, 0, 1, 1, 0],
                 [0, 0, 1, 0, 1, 1],
                 [1, 1, 1, 0, 0, 1]], dtype=float)
N_PAT, K = LOSS.shape
L_MU = P_PAT @ LOSS                      # exact population risks
N = 30                                   # training-set size
GAMMA = 15.0                             # Gibbs inverse temperature (alpha = 0.5)
DELTA = 0.05


def _compositions(n, parts):
    if parts == 1:
        return np.array([[n]])
    blocks = []
    for first in range(n + 1):
        rest = _compositions(n - first, parts - 1)
        blocks.append(np.column_stack([np.full(len(rest), first), rest]))
    return np.vstack(blocks)


def _multinomial_pmf(counts, n):
    return np.exp(gammaln(n + 1) - gammaln(counts + 1).sum(1) + (counts * np.log(P_PAT)).sum(1))


def _gibbs(counts, n, gamma=GAMMA):
    """Uniform prior; returns q(w|S) and the empirical risks L_S(w)."""
    ls = counts @ LOSS / n
    logits = -gamma * ls
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True)), ls


@pytest.fixture(scope="module")
def exact():
    """Exact E gen, I(S;W), L(S;W), I(W;Z_i) by enumeration of pattern counts."""
    counts = _compositions(N, N_PAT)
    w = _multinomial_pmf(counts, N)
    q, ls = _gibbs(counts, N)
    egen = float(w @ (q * (L_MU - ls)).sum(1))
    # I and L computed here directly (independently of channel_information)
    qbar = w @ q
    mi = float(w @ (q * np.log(q / qbar)).sum(1))
    lautum = float(w @ (qbar * np.log(qbar / q)).sum(1))
    # I(W; Z_i) = I(W; pattern_i): P(W | pattern_i = a) averages over the other n-1 samples
    c1 = _compositions(N - 1, N_PAT)
    w1 = _multinomial_pmf(c1, N - 1)
    pw_a = np.array([w1 @ _gibbs(c1 + np.eye(N_PAT, dtype=int)[a], N)[0] for a in range(N_PAT)])
    ismi = float(P_PAT @ (pw_a * np.log(pw_a / qbar)).sum(1))
    return dict(egen=egen, mi=mi, lautum=lautum, ismi=ismi, qbar=qbar, counts=counts, w=w, q=q)


def _simulate(rng, reps, n_test=60):
    """Supersample runs of the hard Gibbs rule (W sampled from q(.|S))."""
    zt = rng.choice(N_PAT, size=(reps, N, 2), p=P_PAT)          # supersample patterns
    u = rng.integers(0, 2, size=(reps, N))                        # mask bits
    s = np.take_along_axis(zt, u[:, :, None], 2)[:, :, 0]         # training patterns
    counts = np.stack([(s == a).sum(1) for a in range(N_PAT)], 1)
    q, ls = _gibbs(counts, N)
    w = np.minimum((rng.random((reps, 1)) > q.cumsum(1)).sum(1), K - 1)
    return dict(zt=zt, u=u, s=s, q=q, ls=ls, w=w,
                losses=LOSS[zt, w[:, None, None]],                # (reps, N, 2)
                train=LOSS[s, w[:, None]],
                test=LOSS[rng.choice(N_PAT, size=(reps, n_test), p=P_PAT), w[:, None]])


@pytest.fixture(scope="module")
def mc():
    return _simulate(np.random.default_rng(20261123), 4000)


# ------------------------------------------------------------ known values
def test_union_bound_table_from_theory():
    assert B.union_bound(25, 256) == pytest.approx(0.0793, abs=5e-5)
    assert B.union_bound(25, 256, delta=0.05, two_sided=True) == pytest.approx(0.1162, abs=5e-5)
    assert B.union_bound(25, 256) == pytest.approx(math.sqrt(math.log(25) / 512), rel=1e-15)
    assert B.union_bound(25, 256, delta=0.05) == pytest.approx(
        math.sqrt((math.log(25) + math.log(20)) / 512), rel=1e-15)
    assert B.union_bound(25, 256, two_sided=True) == pytest.approx(math.sqrt(math.log(50) / 512))
    assert B.union_bound(1, 10) == 0.0


def test_xu_raginsky_values():
    assert B.xu_raginsky(math.log(25), 256) == pytest.approx(B.union_bound(25, 256), rel=1e-15)
    assert B.xu_raginsky(0.5, 100) == pytest.approx(0.05)            # sqrt(0.5 / 200)
    assert B.xu_raginsky(0.5, 100, sigma=1.0) == pytest.approx(0.1)  # sqrt(2 * 0.5 / 100)
    assert B.xu_raginsky(0.0, 5) == 0.0


def test_simple_closed_forms():
    assert B.gibbs_generalization(0.2, 0.3, 10) == pytest.approx(0.05)
    assert B.cmi_bound(0.5, 4) == pytest.approx(0.5)
    assert B.samplewise_cmi_bound([0.5, 0.0]) == pytest.approx(0.5)
    assert B.samplewise_cmi_bound([[0.5, 0.0], [0.0, 0.0]]) == pytest.approx(0.25)
    assert B.individual_sample_bound([0.5, 0.0], sigma=1.0) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(2, 10_000), n=st.integers(1, 100_000), frac=st.floats(0.0, 1.0))
def test_xu_raginsky_below_union_when_information_below_log_k(k, n, frac):
    mi = frac * math.log(k)
    assert B.xu_raginsky(mi, n) <= B.union_bound(k, n) * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 1000), n=st.integers(1, 10_000),
       d1=st.floats(1e-6, 0.99), d2=st.floats(1e-6, 0.99))
def test_union_bound_orderings(k, n, d1, d2):
    lo, hi = sorted([d1, d2])
    assert B.union_bound(k, n, delta=hi) <= B.union_bound(k, n, delta=lo)
    assert B.union_bound(k, n, delta=lo) <= B.union_bound(k, n, delta=lo, two_sided=True)
    assert B.union_bound(k, n) <= B.union_bound(k, n, two_sided=True)


# ------------------------------------------------ exact results on the bank
def test_aminian_identity_exact_by_enumeration(exact):
    """E gen = (I + L) / gamma, with every term computed exactly."""
    assert exact["egen"] > 0.02
    assert B.gibbs_generalization(exact["mi"], exact["lautum"], GAMMA) == pytest.approx(
        exact["egen"], rel=1e-10)
    # and through channel_information with exact weights
    assert B.gibbs_generalization_from_posteriors(exact["q"], GAMMA, weights=exact["w"]) == \
        pytest.approx(exact["egen"], rel=1e-10)


def test_identity_fails_for_wrong_gamma(exact):
    # the identity is specific: the wrong temperature gives a clearly different value
    wrong = B.gibbs_generalization(exact["mi"], exact["lautum"], 2 * GAMMA)
    assert abs(wrong - exact["egen"]) > 0.3 * exact["egen"]


def test_exact_bound_ordering(exact):
    """E gen <= ISMI <= Xu-Raginsky <= union, and sum_i I(W;Z_i) <= I(S;W)."""
    ismi = np.full(N, exact["ismi"])
    assert N * exact["ismi"] <= exact["mi"]
    assert exact["mi"] <= math.log(K)
    eg = exact["egen"]
    b_ismi = B.individual_sample_bound(ismi)
    b_xr = B.xu_raginsky(exact["mi"], N)
    b_union = B.union_bound(K, N)
    assert eg <= b_ismi <= b_xr <= b_union
    assert eg <= B.cmi_bound(math.log(K), N)    # CMI <= H(W) <= ln K


# ------------------------------------------------------------ Monte Carlo
def test_monte_carlo_gap_matches_exact_and_lies_below_bounds(exact, mc):
    g = B.generalization_gap(mc["train"], mc["test"])
    assert g.estimand == "expected" and g.n_repetitions == 4000
    # unbiased for E gen: within 4 standard errors (a 95% CI alone would fail 1 seed in 20)
    assert abs(g.gap - exact["egen"]) <= 4 * g.standard_error
    for name, bound in [("Xu-Raginsky", B.xu_raginsky(exact["mi"], N)),
                        ("ISMI", B.individual_sample_bound(np.full(N, exact["ismi"]))),
                        ("union", B.union_bound(K, N))]:
        assert_gap_below_bound(mc["train"], mc["test"], bound, bound_name=name)
    # the Aminian value is an equality: a 95% check fails 2.5% of the time by design,
    # so the exact identity is checked with a stricter false-alarm rate
    aminian = B.gibbs_generalization(exact["mi"], exact["lautum"], GAMMA)
    assert_gap_below_bound(mc["train"], mc["test"], aminian, confidence_level=0.9999,
                           two_sided=True, bound_name="Aminian (exact)")
    # the check has power: a bound at half the true expected gap is caught
    with pytest.raises(AssertionError, match="half"):
        assert_gap_below_bound(mc["train"], mc["test"], exact["egen"] / 2, bound_name="half")


def test_aminian_identity_monte_carlo(exact, mc):
    """The plug-in I^ + L^ over 4000 resampled sets matches E gen within bootstrap error."""
    q = mc["q"]
    est = B.gibbs_generalization_from_posteriors(q, GAMMA)
    soft_gen = (q * (L_MU - mc["ls"])).sum(1)
    rng = np.random.default_rng(7)
    boot = [B.gibbs_generalization_from_posteriors(q[rng.integers(0, len(q), len(q))], GAMMA)
            for _ in range(100)]
    se = float(np.std(boot, ddof=1))
    assert 0 < se < 0.005
    assert_mi_close(est, exact["egen"], std=se, n_std=4, unit="loss units")
    assert_mi_close(est, soft_gen.mean(),
                    std=math.hypot(se, soft_gen.std(ddof=1) / math.sqrt(len(q))), n_std=4)


def test_high_probability_bounds_hold(mc):
    """Union (one- and two-sided) and PAC-Bayes hold in >= 1 - delta of repetitions."""
    reps = len(mc["w"])
    idx = np.arange(reps)
    gap = L_MU[mc["w"]] - mc["ls"][idx, mc["w"]]
    assert_bound_holds(gap, B.union_bound(K, N, delta=DELTA), delta=DELTA, bound_name="union")
    assert_bound_holds(np.abs(gap), B.union_bound(K, N, delta=DELTA, two_sided=True),
                       delta=DELTA)
    with pytest.raises(AssertionError, match="violated in"):
        assert_bound_holds(gap, B.union_bound(K, N, delta=DELTA) / 4, delta=DELTA)
    # PAC-Bayes with Q = the Gibbs posterior, P = uniform prior (1000 repetitions for speed)
    sub = idx[:1000]
    q = mc["q"][sub]
    kl = (q * np.log(q * K)).sum(1)
    emp = (q * mc["ls"][sub]).sum(1)
    true = q @ L_MU
    mca = np.array([B.mcallester(a, N, b, delta=DELTA) for a, b in zip(kl, emp)])
    see = np.array([B.seeger(a, N, b, delta=DELTA) for a, b in zip(kl, emp)])
    cat = np.array([B.catoni(a, N, b, delta=DELTA, c=[0.5, 1, 2, 4]) for a, b in zip(kl, emp)])
    for name, bnd in [("McAllester", mca), ("Seeger", see), ("Catoni", cat)]:
        assert_bound_holds(true, bnd, delta=DELTA, bound_name=name)
    assert np.all(see <= mca + 1e-12)          # Pinsker: kl form is never looser
    with pytest.raises(AssertionError, match="Seeger"):
        assert_bound_holds(true, emp + 0.1 * (see - emp), delta=DELTA, bound_name="Seeger")


def test_individual_sample_mi_estimates_exact_value(exact, mc):
    pooled = B.individual_sample_mi(mc["w"], mc["s"], pooled=True)
    assert pooled.shape == (N,) and np.all(pooled == pooled[0])
    # plug-in bias allowance (K - 1)(P - 1) / (2 R) with the conservative R = 4000
    bias = (K - 1) * (N_PAT - 1) / (2 * 4000)
    assert abs(pooled[0] - exact["ismi"]) <= bias
    per = B.individual_sample_mi(mc["w"], mc["s"])
    assert abs(per.mean() - exact["ismi"]) <= 2 * bias
    # labels from the bank's loss vectors give the same estimate (same partition)
    pat = B.loss_pattern_labels(LOSS[mc["s"]])
    assert pat.shape == mc["s"].shape
    assert B.individual_sample_mi(mc["w"], pat, pooled=True)[0] == pytest.approx(pooled[0])
    # independent implementation for one sample index
    assert per[3] == pytest.approx(mutual_info_score(mc["w"], mc["s"][:, 3]), abs=1e-12)
    assert B.individual_sample_bound(pooled) <= B.xu_raginsky(exact["mi"], N) * 1.05


def test_supersample_cmi_estimators_and_bounds(exact, mc):
    u, losses = mc["u"], mc["losses"]
    ld = B.loss_difference_cmi(u, losses)
    ev = B.evaluated_cmi(u, losses)
    assert ld.shape == ev.shape == (N,)
    assert np.all(ld <= ev + 1e-12)              # data processing holds for plug-in exactly
    # independent implementation (scikit-learn) for one pair
    i = 5
    pair = losses[:, i, 0] * 2 + losses[:, i, 1]
    diff = losses[:, i, 1] - losses[:, i, 0]
    assert ev[i] == pytest.approx(mutual_info_score(u[:, i], pair), abs=1e-12)
    assert ld[i] == pytest.approx(mutual_info_score(u[:, i], diff), abs=1e-12)
    fc = B.functional_cmi(u, losses[..., None])   # outputs = losses: same as e-CMI
    np.testing.assert_allclose(fc, ev, atol=1e-15)
    b_ld, b_e = B.samplewise_cmi_bound(ld), B.samplewise_cmi_bound(ev)
    assert b_ld <= b_e
    tr, te = B.split_supersample_losses(u, losses)
    g = B.generalization_gap(tr, te)
    assert abs(g.gap - exact["egen"]) <= 4 * g.standard_error
    assert exact["egen"] <= b_ld
    assert_gap_below_bound(tr, te, b_ld, bound_name="ld-CMI")
    pooled = B.loss_difference_cmi(u, losses, pooled=True)
    assert exact["egen"] <= B.samplewise_cmi_bound(pooled)


def test_bias_corrected_estimators_are_passed_through(mc):
    """Other estimators of the package work on the same tables (values stay >= 0)."""
    u, losses = mc["u"][:500], mc["losses"][:500]
    plug = B.loss_difference_cmi(u, losses)
    for name in ("miller_madow", "jackknife"):
        other = B.loss_difference_cmi(u, losses, estimator=name)
        assert other.shape == plug.shape and np.all(other >= 0)
        assert not np.allclose(other, plug)
    mm = B.individual_sample_mi(mc["w"], mc["s"], pooled=True, estimator="miller_madow")
    assert mm[0] >= 0


def test_conditional_cmi_groups_match_manual():
    rng = np.random.default_rng(3)
    reps, n, groups = 60, 4, 3
    ids = np.repeat(np.arange(groups), reps // groups)
    u = rng.integers(0, 2, size=(reps, n))
    # outputs depend on the mask and on the supersample
    out = np.stack([u ^ (ids[:, None] % 2), rng.integers(0, 2, size=(reps, n))], axis=2)
    got = B.functional_cmi(u, out, supersample_ids=ids)
    assert got.shape == (groups, n)
    for g in range(groups):
        rows = ids == g
        for i in range(n):
            lab = out[rows, i, 0] * 2 + out[rows, i, 1]
            assert got[g, i] == pytest.approx(mutual_info_score(u[rows, i], lab), abs=1e-12)
    assert B.samplewise_cmi_bound(got) == pytest.approx(np.mean(np.sqrt(2 * got)))


def test_split_supersample_losses():
    u = np.array([[0, 1, 1]])
    losses = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]])
    tr, te = B.split_supersample_losses(u, losses)
    np.testing.assert_allclose(tr, [[0.1, 0.8, 0.7]])
    np.testing.assert_allclose(te, [[0.9, 0.2, 0.3]])


def test_loss_pattern_labels():
    lab = B.loss_pattern_labels([[[0, 1], [1, 0]], [[0, 1], [0, 0]]])
    assert lab.shape == (2, 2)
    assert lab[0, 0] == lab[1, 0] and len({lab[0, 0], lab[0, 1], lab[1, 1]}) == 3


# ------------------------------------------------------ generalization gap
def test_gap_one_model_matches_scipy():
    rng = np.random.default_rng(0)
    train = rng.random(50)
    test = rng.random(80)
    g = B.generalization_gap(train, test, confidence_level=0.9)
    assert g.gap == pytest.approx(test.mean() - train.mean())
    assert g.standard_error == pytest.approx(stats.sem(test))
    lo, hi = stats.t.interval(0.9, 79, loc=g.gap, scale=stats.sem(test))
    assert (g.low, g.high) == pytest.approx((lo, hi))
    assert (g.n_train, g.n_test, g.n_repetitions, g.estimand) == (50, 80, 1, "conditional")
    with pytest.raises(AttributeError):
        g.gap = 0.0                                  # frozen


def test_gap_repetitions_matches_manual():
    rng = np.random.default_rng(1)
    train = rng.random((10, 20))
    test = rng.random((10, 30))
    g = B.generalization_gap(train, test)
    gaps = test.mean(1) - train.mean(1)
    assert g.gap == pytest.approx(gaps.mean())
    assert g.standard_error == pytest.approx(stats.sem(gaps))
    assert (g.low, g.high) == pytest.approx(stats.t.interval(0.95, 9, loc=gaps.mean(),
                                                             scale=stats.sem(gaps)))
    assert (g.n_train, g.n_test, g.n_repetitions, g.estimand) == (20, 30, 10, "expected")


def test_gap_interval_coverage():
    """Seeded: the 95% interval of the expected gap covers the truth in 92-98% of 400 runs."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(400):
        train = rng.binomial(1, 0.1, size=(20, 50))
        test = rng.binomial(1, 0.25, size=(20, 50))
        g = B.generalization_gap(train, test)
        hits += g.low <= 0.15 <= g.high
    assert 0.92 <= hits / 400 <= 0.98


def test_gap_constant_losses_give_zero_width():
    g = B.generalization_gap(np.zeros(5), np.ones(7))
    assert (g.gap, g.low, g.high, g.standard_error) == (1.0, 1.0, 1.0, 0.0)


@pytest.mark.parametrize("train, test, match", [
    ([0.1, np.nan], [0.1, 0.2], "train_losses.*NaN"),
    ([0.1, 0.2], [[0.1, 0.2]], "both be 1-D"),
    ([[0.1], [0.2]], [[0.1, 0.2]], "same number of rows"),
    ([[0.1, 0.2]], [[0.1, 0.2]], "at least 2 repetitions"),
    ([0.1, 0.2], [0.3], "at least 2 samples"),
    ([], [0.1, 0.2], "empty"),
])
def test_gap_rejects_bad_input(train, test, match):
    with pytest.raises(ValueError, match=match):
        B.generalization_gap(train, test)


def test_gap_estimate_behaves_like_its_gap():
    g = B.generalization_gap([0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    v = g.gap
    assert v == 0.25                                   # 1/2 - 1/4, by hand
    assert float(g) == v and type(float(g)) is float
    for other in (0.1, 0.25, 1):
        assert (g < other, g <= other, g > other, g >= other, g == other, g != other) == \
            (v < other, v <= other, v > other, v >= other, v == other, v != other)
        assert (other - g, g * other, g / other, other + g) == \
            (other - v, v * other, v / other, other + v)
    assert -g == -v and abs(-g) == v and round(g, 1) == round(v, 1)
    assert math.isclose(g, 0.25) and np.isclose(g, 0.25)
    assert np.asarray([g, g]).tolist() == [v, v]
    assert f"{g:.3f}" == "0.250"
    assert hash(g) == hash(0.25) and g == B.generalization_gap(np.zeros(4), np.full(3, 0.25))
    # a gap and an information estimate have no common unit to check: plain numbers
    assert g * infomoe.entropy([1, 1]) == v


def test_gap_rejects_bad_confidence_level():
    with pytest.raises(ValueError, match="confidence_level"):
        B.generalization_gap([0.0, 1.0], [0.0, 1.0], confidence_level=1.0)


# ------------------------------------------------------ kl inverse and PAC
def _kl(q, p):
    a = q * math.log(q / p) if q > 0 else 0.0
    b = (1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0
    return a + b


def test_kl_inverse_edges_are_exact():
    assert B.kl_inverse_upper(0.3, 0.0) == 0.3
    assert B.kl_inverse_upper(1.0, 2.0) == 1.0
    assert B.kl_inverse_upper(0.0, 2.0) == pytest.approx(1 - math.exp(-2.0), rel=1e-15)
    assert B.kl_inverse_upper(0.0, 0.0) == 0.0
    assert B.kl_inverse_upper(0.2, 1e6) == 1.0
    assert B.kl_inverse_lower(0.0, 3.0) == 0.0
    assert B.kl_inverse_lower(1.0, 2.0) == pytest.approx(math.exp(-2.0), rel=1e-12)
    out = B.kl_inverse_upper(np.array([0.0, 1e-300, 0.5, 1 - 1e-16, 1.0]),
                             np.array([1e-300, 0.0, 700.0, 1e-12, 0.0]))
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("q, c", [(0.1, 0.05), (0.5, 0.2), (0.01, 1e-4), (0.9, 0.5),
                                  (0.3, 5.0), (1e-8, 1e-3), (0.999, 1e-6)])
def test_kl_inverse_matches_brentq(q, c):
    ref = brentq(lambda p: _kl(q, p) - c, q, 1 - 1e-16, xtol=1e-15)
    assert B.kl_inverse_upper(q, c) == pytest.approx(ref, abs=1e-12)
    ref_lo = brentq(lambda p: _kl(q, p) - c, 1e-300, q, xtol=1e-15) \
        if _kl(q, 1e-300) > c else 0.0
    assert B.kl_inverse_lower(q, c) == pytest.approx(ref_lo, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(q=st.floats(0.0, 1.0), c1=st.floats(0.0, 50.0), c2=st.floats(0.0, 50.0))
def test_kl_inverse_properties(q, c1, c2):
    lo_c, hi_c = sorted([c1, c2])
    p1 = B.kl_inverse_upper(q, lo_c)
    p2 = B.kl_inverse_upper(q, hi_c)
    assert not math.isnan(p1) and q <= p1 <= p2 <= 1.0        # monotone in c, in [q, 1]
    # accuracy 1e-12: kl <= c just below p*, kl >= c just above it (or p* at 1)
    assert float(B.binary_kl(q, max(q, p1 - 1e-12))) <= lo_c
    assert p1 + 1e-12 >= 1.0 or float(B.binary_kl(q, p1 + 1e-12)) >= lo_c


@settings(max_examples=100, deadline=None)
@given(q1=st.floats(0.0, 1.0), q2=st.floats(0.0, 1.0), c=st.floats(0.0, 20.0))
def test_kl_inverse_monotone_in_q(q1, q2, c):
    a, b = sorted([q1, q2])
    assert B.kl_inverse_upper(a, c) <= B.kl_inverse_upper(b, c) + 1e-12
    assert B.kl_inverse_lower(a, c) <= B.kl_inverse_lower(b, c) + 1e-12


def test_kl_inverse_vectorised_equals_scalar():
    q = np.linspace(0, 1, 11)
    c = np.array([0.0, 0.01, 0.1, 1.0])[:, None]
    grid = B.kl_inverse_upper(q, c)
    assert grid.shape == (4, 11)
    for i in range(4):
        for j in range(11):
            assert grid[i, j] == B.kl_inverse_upper(q[j], float(c[i, 0]))


def test_maurer_xi_below_two_sqrt_n():
    """ln(2 sqrt(n)/delta) in mcallester/seeger needs xi(n) <= 2 sqrt(n); Maurer proves n >= 8."""
    for n in range(1, 201):
        k = np.arange(n + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
                    + np.where(k > 0, k * np.log(k / n), 0.0)
                    + np.where(k < n, (n - k) * np.log1p(-k / n), 0.0))
        xi = float(np.exp(logsumexp(logs)))
        assert math.sqrt(n) <= xi * (1 + 1e-12) and xi <= 2 * math.sqrt(n) * (1 + 1e-12)


def test_pac_bayes_values_and_precedence():
    n, kl, r, d = 1000, 2.0, 0.1, 0.05
    budget = (kl + math.log(2 * math.sqrt(n) / d)) / n
    assert B.mcallester(kl, n, r, delta=d) == pytest.approx(r + math.sqrt(budget / 2))
    # the pacbb precedence bug, log(2 sqrt n)/delta, would give a far larger value
    buggy = r + math.sqrt((kl + math.log(2 * math.sqrt(n)) / d) / (2 * n))
    assert B.mcallester(kl, n, r, delta=d) < buggy - 0.05
    ref = brentq(lambda p: _kl(r, p) - budget, r, 1 - 1e-16, xtol=1e-15)
    assert B.seeger(kl, n, r, delta=d) == pytest.approx(ref, abs=1e-12)
    cat = (1 - math.exp(-1.0 * r - (kl + math.log(1 / d)) / n)) / (1 - math.exp(-1.0))
    assert B.catoni(kl, n, r, delta=d) == pytest.approx(cat, rel=1e-14)
    grid = [0.5, 1.0, 2.0]
    expect = min((1 - math.exp(-c * r - (kl + math.log(3 / d)) / n)) / (1 - math.exp(-c))
                 for c in grid)
    assert B.catoni(kl, n, r, delta=d, c=grid) == pytest.approx(expect, rel=1e-14)


@settings(max_examples=80, deadline=None)
@given(kl=st.floats(0.0, 100.0), n=st.integers(1, 100_000), r=st.floats(0.0, 1.0),
       d=st.floats(1e-6, 0.5))
def test_seeger_never_looser_than_mcallester(kl, n, r, d):
    s = B.seeger(kl, n, r, delta=d)
    assert r <= s <= 1.0
    assert s <= B.mcallester(kl, n, r, delta=d) + 1e-12
    assert r <= B.catoni(kl, n, r, delta=d)        # may exceed 1 (vacuous), never below r


# ------------------------------------------------------------- validation
@pytest.mark.parametrize("call, exc, match", [
    (lambda: B.xu_raginsky(-0.1, 10), ValueError, "mi_nats"),
    (lambda: B.xu_raginsky(float("nan"), 10), ValueError, "mi_nats"),
    (lambda: B.xu_raginsky(0.1, 0), ValueError, "`n`"),
    (lambda: B.xu_raginsky(0.1, 2.5), TypeError, "`n`"),
    (lambda: B.xu_raginsky(0.1, 10, sigma=0), ValueError, "sigma"),
    (lambda: B.union_bound(0, 10), ValueError, "n_hypotheses"),
    (lambda: B.union_bound(5, 10, delta=0.0), ValueError, "delta"),
    (lambda: B.union_bound(5, 10, delta=1.0), ValueError, "delta"),
    (lambda: B.union_bound(5, 10, two_sided="yes"), TypeError, "two_sided"),
    (lambda: B.gibbs_generalization(0.1, -0.2, 1.0), ValueError, "lautum_nats"),
    (lambda: B.gibbs_generalization(0.1, 0.2, 0.0), ValueError, "gamma"),
    (lambda: B.gibbs_generalization_from_posteriors([[0.5, 0.6]], 1.0), ValueError, "sum to 1"),
    (lambda: B.individual_sample_bound([0.1, -0.1]), ValueError, "mi_nats_per_sample"),
    (lambda: B.individual_sample_mi([0, 1], [[0], [1], [2]]), ValueError, "one row"),
    (lambda: B.individual_sample_mi([0, 1], [0, 1]), ValueError, "2-D"),
    (lambda: B.cmi_bound(float("inf"), 10), ValueError, "cmi_nats"),
    (lambda: B.samplewise_cmi_bound([np.nan]), ValueError, "NaN"),
    (lambda: B.evaluated_cmi([[0, 2]], [[[0, 1], [1, 0]]]), ValueError, "bits"),
    (lambda: B.evaluated_cmi([[0, 1]], [[[0, 1, 1], [1, 0, 0]]]), ValueError, "shape"),
    (lambda: B.functional_cmi([[0, 1], [1, 0]], [[[0, 1], [1, 0]], [[0, 1], [1, 0]]],
                              supersample_ids=[0, 1]), ValueError, "at least 2"),
    (lambda: B.loss_difference_cmi([[0, 1]], [[[0, 1], [1, 0]]], pooled=1), TypeError, "pooled"),
    (lambda: B.evaluated_cmi([[0, 1]] * 2, [[[0, 1], [1, 0]]] * 2, estimator="bogus"),
     ValueError, "estimator"),
    (lambda: B.individual_sample_mi([0, 1], [[0], [1]], estimator="bogus"), ValueError,
     "estimator"),
    (lambda: B.individual_sample_mi([0, 1], [[0], [-1]]), ValueError, "negative label"),
    (lambda: B.loss_difference_cmi([[0, 1]] * 2, [[[0, 2], [1, 0]]] * 2), ValueError,
     r"\[0, 1\]"),
    (lambda: B.evaluated_cmi([[0, 1]] * 2, [[[0, -1], [1, 0]]] * 2), ValueError, "rescale"),
    (lambda: B.mcallester(-1.0, 10, 0.1, delta=0.05), ValueError, "kl_nats"),
    (lambda: B.seeger(1.0, 10, 1.5, delta=0.05), ValueError, "empirical_risk"),
    (lambda: B.seeger(1.0, 10, 0.1, delta=1.5), ValueError, "delta"),
    (lambda: B.catoni(1.0, 10, 0.1, delta=0.05, c=0.0), ValueError, "`c`"),
    (lambda: B.catoni(1.0, 0, 0.1, delta=0.05), ValueError, "`n`"),
    (lambda: B.kl_inverse_upper(1.2, 0.1), ValueError, "`q`"),
    (lambda: B.kl_inverse_upper(0.2, -0.1), ValueError, "`c`"),
    (lambda: B.kl_inverse_upper(0.2, np.nan), ValueError, "NaN"),
    (lambda: B.binary_kl(0.5, -0.1), ValueError, "`p`"),
])
def test_invalid_inputs_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_public_api():
    assert infomoe.bounds is B
    for name in B.__all__:
        assert callable(getattr(B, name))


def test_docstring_examples():
    import infomoe._bounds_gap as g
    import infomoe._bounds_mi as m
    import infomoe._bounds_pacbayes as p

    for mod in (g, m, p, B):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, f"{mod.__name__}: {res.failed} doctest failure(s)"
    assert sum(doctest.testmod(mod).attempted for mod in (g, m, p)) > 20


def test_binary_kl_precise_near_diagonal():
    """Relative accuracy ~1e-12 against 60-digit arithmetic, also for p within 1e-12 of q."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    rng = np.random.default_rng(5)
    for _ in range(300):
        q = float(rng.random() ** rng.integers(1, 20))
        p = float(np.clip(q + (rng.random() - 0.5) * 10.0 ** -rng.integers(0, 15), 1e-300,
                          1 - 1e-16))
        if q in (0.0, 1.0) or p == q:
            continue
        mq, mp_ = mpmath.mpf(q), mpmath.mpf(p)
        ref = float(mq * mpmath.log(mq / mp_) + (1 - mq) * mpmath.log((1 - mq) / (1 - mp_)))
        assert B.binary_kl(q, p) == pytest.approx(ref, rel=1e-11)
