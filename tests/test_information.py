"""Tests for infomoe._information: MI, CMI and the channel form."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from infomoe import (ESTIMATORS, ChannelInformation, channel_information,
                     conditional_mutual_information, conditional_mutual_information_table,
                     entropy, mutual_information, mutual_information_table, shannon_entropy)


def _random_table(rng, kx, ky, n=200, sparsity=0.3):
    p = rng.dirichlet(np.ones(kx * ky) * 0.5)
    p[rng.random(kx * ky) < sparsity] = 0
    p[0] += 1e-3
    return rng.multinomial(n, p / p.sum()).reshape(kx, ky)


def _samples(table):
    kx, ky = table.shape
    idx = np.repeat(np.arange(kx * ky), table.ravel())
    return idx // ky, idx % ky


# ---------------------------------------------------------------- closed forms


def test_closed_forms():
    assert float(mutual_information_table(np.eye(4) * 25)) == pytest.approx(2.0, abs=1e-15)
    assert float(mutual_information_table(np.full((3, 5), 7))) == 0.0
    assert float(mutual_information_table(np.eye(8) * 3, base=8)) == pytest.approx(1.0, abs=1e-14)
    # binary symmetric channel with uniform input, flip 0.1: 1 - h(0.1) bits
    t = np.array([[90, 10], [10, 90]])
    h = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert float(mutual_information_table(t)) == pytest.approx(1 - h, abs=1e-14)
    # Y = X xor Z with X, Z uniform: I(X;Y) = 0, I(X;Y|Z) = 1 bit
    x = np.array([0, 1] * 8)
    z = np.repeat([0, 1], 8)
    assert float(mutual_information(x, x ^ z)) == pytest.approx(0.0, abs=1e-15)
    assert float(conditional_mutual_information(x, x ^ z, z)) == pytest.approx(1.0, abs=1e-15)


def test_result_fields():
    e = mutual_information_table(np.eye(3) * 4, estimator="jackknife", base=math.e)
    assert e.unit == "nats" and e.k == (3, 3) and e.n == 12 and e.estimator == "jackknife"
    assert e.std is not None
    c = conditional_mutual_information_table(np.ones((2, 3, 4)))
    assert c.k == (2, 3, 4) and c.unit == "bits"


# ---------------------------------------------------------------- scikit-learn, scipy, dit


def test_matches_sklearn_mutual_info_score():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = _random_table(rng, int(rng.integers(2, 9)), int(rng.integers(2, 9)))
        x, y = _samples(t)
        ref = metrics.mutual_info_score(x, y)                                  # nats
        assert float(mutual_information_table(t, base=math.e)) == pytest.approx(ref, abs=1e-10)
        assert float(mutual_information(x, y, base=math.e)) == pytest.approx(ref, abs=1e-10)
        assert float(mutual_information_table(t, base=math.e)) == pytest.approx(
            metrics.mutual_info_score(None, None, contingency=t), abs=1e-10)


def test_matches_scipy_entropy_identity():
    rng = np.random.default_rng(1)
    for _ in range(10):
        t = _random_table(rng, 5, 7)
        ref = (scipy.stats.entropy(t.sum(1), base=2) + scipy.stats.entropy(t.sum(0), base=2)
               - scipy.stats.entropy(t.ravel(), base=2))
        assert float(mutual_information_table(t)) == pytest.approx(ref, abs=1e-10)


def test_matches_dit():
    dit = pytest.importorskip("dit")
    rng = np.random.default_rng(2)
    for _ in range(6):
        t = _random_table(rng, 3, 4)
        p = t / t.sum()
        outs = [(i, j) for i in range(3) for j in range(4) if p[i, j] > 0]
        d = dit.Distribution(outs, [p[o] for o in outs])
        assert float(mutual_information_table(t)) == pytest.approx(
            dit.shannon.mutual_information(d, [0], [1]), abs=1e-10)
        assert float(mutual_information_table(t)) == pytest.approx(
            dit.multivariate.coinformation(d, [[0], [1]]), abs=1e-10)
        t3 = rng.multinomial(300, rng.dirichlet(np.ones(24) * 0.7)).reshape(2, 3, 4)
        p3 = t3 / t3.sum()
        outs = [o for o in itertools.product(range(2), range(3), range(4)) if p3[o] > 0]
        d3 = dit.Distribution(outs, [p3[o] for o in outs])
        assert float(conditional_mutual_information_table(t3)) == pytest.approx(
            dit.multivariate.coinformation(d3, [[1], [2]], [0]), abs=1e-10)


def test_plugin_is_accurate_near_independence_with_huge_counts():
    # terms of size ~0.35 cancel to I ~ 3e-26 nats; the ratio form keeps it >= 0 and tiny
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    t = [[10 ** 12, 10 ** 12], [10 ** 12, 10 ** 12 + 1]]
    n = sum(map(sum, t))
    r = [sum(row) for row in t]
    c = [t[0][j] + t[1][j] for j in range(2)]
    exact = float(sum(mp.mpf(t[i][j]) / n * mp.log(mp.mpf(t[i][j]) * n / (r[i] * c[j]))
                      for i in range(2) for j in range(2)))
    ours = float(mutual_information_table(np.array(t, dtype=np.int64), base=math.e))
    assert 0.0 <= ours
    assert ours == pytest.approx(exact, abs=1e-16)


# ---------------------------------------------------------------- bias-corrected MI


@pytest.mark.parametrize("estimator", [e for e in ESTIMATORS if e not in ("plugin", "james_stein")])
def test_bias_corrected_is_sum_of_entropies(estimator):
    rng = np.random.default_rng(3)
    t = _random_table(rng, 4, 6, n=120, sparsity=0.0)
    t[:, 5] = 0                                         # an unobserved column still counts
    mi = float(mutual_information_table(t, estimator=estimator, base=math.e))
    hx = float(entropy(t.sum(1), estimator=estimator, k=4, base=math.e))
    hy = float(entropy(t.sum(0), estimator=estimator, k=6, base=math.e))
    hxy = float(entropy(t.ravel(), estimator=estimator, k=24, base=math.e))
    assert mi == pytest.approx(hx + hy - hxy, abs=1e-10)
    t3 = rng.multinomial(150, rng.dirichlet(np.ones(18))).reshape(2, 3, 3)
    cmi = float(conditional_mutual_information_table(t3, estimator=estimator, base=math.e))
    h = lambda c, k: float(entropy(c.ravel(), estimator=estimator, k=k, base=math.e))  # noqa: E731
    ref = h(t3.sum(2), 6) + h(t3.sum(1), 6) - h(t3, 18) - h(t3.sum((1, 2)), 2)
    assert cmi == pytest.approx(ref, abs=1e-10)


def test_jackknife_mi_matches_brute_force_delete_one():
    rng = np.random.default_rng(4)
    t = _random_table(rng, 3, 4, n=40, sparsity=0.2)
    x, y = _samples(t)
    n = x.size
    loo = np.array([float(mutual_information(np.delete(x, s), np.delete(y, s), kx=3, ky=4,
                                             base=math.e)) for s in range(n)])
    full = float(mutual_information_table(t, base=math.e))
    est = mutual_information_table(t, estimator="jackknife", base=math.e)
    assert float(est) == pytest.approx(n * full - (n - 1) * loo.mean(), abs=1e-10)
    se = math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    assert est.std == pytest.approx(se, abs=1e-10)


def test_bias_corrected_may_be_negative_and_is_not_clipped():
    rng = np.random.default_rng(5)
    tables = rng.multinomial(60, np.full(16, 1 / 16), size=200).reshape(200, 4, 4)
    mm = mutual_information_table(tables, estimator="miller_madow", base=math.e).value
    plug = mutual_information_table(tables, base=math.e).value
    assert (plug >= 0).all()
    assert (mm < -1e-3).any()                                  # real negatives are kept
    kx = (tables.sum(2) > 0).sum(1)
    ky = (tables.sum(1) > 0).sum(1)
    kxy = (tables > 0).sum((1, 2))
    np.testing.assert_allclose(mm, plug + (kx - 1 + ky - 1 - (kxy - 1)) / 120, atol=1e-12)


def test_plugin_mi_bias_under_independence():
    # Panzeri & Treves: E[I_plugin] ~ (Kx - 1)(Ky - 1) / (2N) nats when X, Y independent
    rng = np.random.default_rng(6)
    kx, ky, n, reps = 4, 5, 1000, 3000
    p = np.outer(np.linspace(1, 2, kx), np.linspace(1, 3, ky)).ravel()
    tables = rng.multinomial(n, p / p.sum(), size=reps).reshape(reps, kx, ky)
    mean = mutual_information_table(tables, base=math.e).value.mean()
    assert mean == pytest.approx((kx - 1) * (ky - 1) / (2 * n), rel=0.08)
    corrected = mutual_information_table(tables, estimator="miller_madow", base=math.e).value
    assert abs(corrected.mean()) < 0.1 * mean


# ---------------------------------------------------------------- properties


tables_strategy = hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
                             elements=st.integers(0, 20))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(tables_strategy, st.randoms(use_true_random=False))
def test_mi_properties(t, rnd):
    t = t.copy()
    t[0, 0] += 1
    i = float(mutual_information_table(t))
    hx = float(entropy(t.sum(1)))
    hy = float(entropy(t.sum(0)))
    assert i >= 0.0
    assert i <= min(hx, hy) + 1e-12
    assert float(mutual_information_table(t.T)) == pytest.approx(i, abs=1e-12)     # symmetry
    rows = list(range(t.shape[0]))
    cols = list(range(t.shape[1]))
    rnd.shuffle(rows)
    rnd.shuffle(cols)
    assert float(mutual_information_table(t[rows][:, cols])) == pytest.approx(i, abs=1e-12)
    # data processing: merge columns with a random map f
    f = np.array([rnd.randrange(max(1, t.shape[1] - 1)) for _ in cols])
    merged = np.zeros((t.shape[0], f.max() + 1), dtype=np.int64)
    np.add.at(merged.T, f, t.T)
    assert float(mutual_information_table(merged)) <= i + 1e-12


@settings(max_examples=40, deadline=None, derandomize=True)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
                  elements=st.integers(0, 15)))
def test_cmi_properties(t):
    t = t.copy()
    t[0, 0, 0] += 1
    c = float(conditional_mutual_information_table(t))
    assert c >= 0.0
    # sum_z p(z) I(X;Y|Z=z)
    nz = t.sum((1, 2))
    ref = sum(nz[z] / nz.sum() * float(mutual_information_table(t[z]))
              for z in range(t.shape[0]) if nz[z] > 0)
    assert c == pytest.approx(ref, abs=1e-12)
    assert float(conditional_mutual_information_table(t.transpose(0, 2, 1))) == pytest.approx(
        c, abs=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 2 ** 32 - 1), st.lists(st.integers(0, 100), max_size=4))
def test_chunked_equals_unchunked(seed, cuts):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, 100)
    y = (x + rng.integers(0, 3, 100)) % 6
    edges = [0] + sorted(cuts) + [100]
    chunks = [(x[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    for est in ("plugin", "jackknife"):
        a = mutual_information(x, y, estimator=est, kx=5, ky=6)
        b = mutual_information(iter(chunks), estimator=est, kx=5, ky=6)
        assert float(a) == pytest.approx(float(b), abs=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_batched_equals_loop(estimator):
    rng = np.random.default_rng(7)
    t = rng.multinomial(50, rng.dirichlet(np.ones(12)), size=6).reshape(2, 3, 3, 4)
    out = mutual_information_table(t, estimator=estimator)
    assert out.value.shape == (2, 3)
    c3 = conditional_mutual_information_table(t, estimator=estimator)
    assert c3.value.shape == (2,)
    for idx in np.ndindex(2, 3):
        assert out.value[idx] == pytest.approx(
            float(mutual_information_table(t[idx], estimator=estimator)), abs=1e-12)
    for i in range(2):
        assert c3.value[i] == pytest.approx(
            float(conditional_mutual_information_table(t[i], estimator=estimator)), abs=1e-12)


# ---------------------------------------------------------------- samples API


def test_samples_api_weights_and_declared_sizes():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, 200)
    y = rng.integers(0, 4, 200)
    w = rng.random(200)
    t = np.zeros((3, 4))
    np.add.at(t, (x, y), w)
    assert float(mutual_information(x, y, weights=w)) == pytest.approx(
        float(mutual_information_table(t, weighted=True)), abs=1e-12)
    e = mutual_information(x, y, kx=5, ky=4, estimator="miller_madow")
    assert e.k == (5, 4)
    z = rng.integers(0, 2, 200)
    t3 = np.zeros((2, 3, 4), dtype=np.int64)
    np.add.at(t3, (z, x, y), 1)
    for est in ("plugin", "nsb"):
        assert float(conditional_mutual_information(x, y, z, estimator=est)) == pytest.approx(
            float(conditional_mutual_information_table(t3, estimator=est)), abs=1e-12)
    assert conditional_mutual_information(x, y, z, kx=4, kz=3).k == (3, 4, 4)
    assert float(conditional_mutual_information(x, y, z, weights=w)) >= 0


@pytest.mark.filterwarnings("ignore::infomoe.UndersampledWarning")
def test_cmi_from_samples_streams_the_row_index(monkeypatch):
    """The z * kx + x index is formed chunk by chunk: same table, weights kept."""
    import infomoe._information as info
    monkeypatch.setattr(info, "_CMI_CHUNK", 1000)
    rng = np.random.default_rng(21)
    n = 10_007                                     # 11 chunks, the last one short
    x = rng.integers(0, 5, n).astype(np.int32)
    z = rng.integers(0, 3, n).astype(np.uint8)
    y = (x + z + rng.integers(0, 2, n)) % 4
    w = rng.random(n)
    t3 = np.zeros((3, 5, 4), dtype=np.int64)
    np.add.at(t3, (z, x, y), 1)
    tw = np.zeros((3, 5, 4))
    np.add.at(tw, (z, x, y), w)
    est = conditional_mutual_information(x, y, z)  # many samples per cell: 3-way kernel
    assert est.n == n and est.k == (3, 5, 4)
    assert float(est) == float(conditional_mutual_information_table(t3))
    # weighted: chunks of z * kx + x
    assert float(conditional_mutual_information(x, y, z, weights=w)) == pytest.approx(
        float(conditional_mutual_information_table(tw, weighted=True)), rel=1e-12)
    # sparse (declared kx far above the labels): chunks of z * kx + x too
    sparse = conditional_mutual_information(x, y, z, kx=50_000)
    assert sparse.k == (3, 50_000, 4)
    big = np.zeros((3, 50_000, 4), dtype=np.int64)
    big[:, :5, :] = t3
    assert float(sparse) == float(conditional_mutual_information_table(big))


@pytest.mark.parametrize("threads", [1, 2])
def test_cmi_three_way_kernel_counts_exactly(threads):
    import numba

    from infomoe._counting import _contingency_zxy
    rng = np.random.default_rng(23)
    n = 300_000
    z = rng.integers(0, 3, n)
    x = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 7, n)).astype(np.int16)  # heavy cells wrap
    y = ((x + z) % 5).astype(np.uint8)
    ref = np.zeros((3, 7, 5), dtype=np.int64)
    np.add.at(ref, (z, x, y), 1)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got = _contingency_zxy(z, x, y, 3, 7, 5)
    finally:
        numba.set_num_threads(before)
    assert got.dtype == np.int64 and np.array_equal(got, ref)
    assert _contingency_zxy(z[:10], x[:10], y[:10], 3, 7, 5) is None  # too sparse: caller streams


def test_cmi_from_samples_memory_is_one_chunk_not_the_input():
    import tracemalloc
    n = 4_000_000
    rng = np.random.default_rng(22)
    x = rng.integers(0, 100, n).astype(np.int32)
    y = rng.integers(0, 8, n).astype(np.uint8)
    z = rng.integers(0, 4, n).astype(np.uint8)
    conditional_mutual_information(x[:100_000], y[:100_000], z[:100_000])  # compile, fill caches
    tracemalloc.start()
    try:
        conditional_mutual_information(x, y, z)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one int64 row-index chunk (8 MiB) plus small tables; an int64 copy of one
    # input alone would be 32 MB
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_cmi_label_errors_name_the_argument():
    x = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match="`x` has label 2, but `kx`=2"):
        conditional_mutual_information(x, x % 2, x % 2, kx=2)
    with pytest.raises(ValueError, match="`y` has negative label -1"):
        conditional_mutual_information(x, -(x % 2), x % 2)


def test_james_stein_mi_is_plugin_of_the_shrunk_joint():
    rng = np.random.default_rng(31)
    t = _random_table(rng, 4, 5, n=60)
    n, cells = t.sum(), t.size
    p = t.ravel() / n
    msp = ((p - 1 / cells) ** 2).sum()
    lam = min(1.0, max(0.0, (1 - (p * p).sum()) / ((n - 1) * msp)))
    shrunk = (lam / cells + (1 - lam) * p).reshape(t.shape)
    px, py = shrunk.sum(1, keepdims=True), shrunk.sum(0, keepdims=True)
    ref = (shrunk * np.log(shrunk / (px * py))).sum()
    got = mutual_information_table(t, estimator="james_stein", base=math.e)
    assert float(got) == pytest.approx(ref, rel=1e-12)
    assert got.estimator == "james_stein" and got.std is None
    # CMI: the same on the 3-way table
    t3 = rng.multinomial(80, rng.dirichlet(np.ones(12))).reshape(2, 2, 3)
    q = t3.ravel() / 80
    lam3 = min(1.0, max(0.0, (1 - (q * q).sum()) / (79 * ((q - 1 / 12) ** 2).sum())))
    s3 = (lam3 / 12 + (1 - lam3) * q).reshape(2, 2, 3)
    ref3 = (s3 * np.log(s3 * s3.sum((1, 2), keepdims=True)
                        / (s3.sum(2, keepdims=True) * s3.sum(1, keepdims=True)))).sum()
    assert float(conditional_mutual_information_table(t3, estimator="james_stein", base=math.e)) == \
        pytest.approx(ref3, rel=1e-12)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 5)), elements=st.integers(0, 20)))
def test_james_stein_and_grassberger_mi_properties(t):
    if t.sum() == 0:
        t[0, 0] = 1
    js = float(mutual_information_table(t, estimator="james_stein"))
    assert js >= 0.0                                          # plug-in of a proper joint
    assert js == pytest.approx(float(mutual_information_table(t.T, estimator="james_stein")), abs=1e-12)
    g = float(mutual_information_table(t, estimator="grassberger"))
    assert math.isfinite(g)
    assert g == pytest.approx(float(mutual_information_table(t.T, estimator="grassberger")), abs=1e-12)


def test_samples_errors():
    x = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match="weights"):
        mutual_information(x, x, weights=np.ones(4), estimator="nsb")
    with pytest.raises(ValueError, match="weights"):
        conditional_mutual_information(x, x, x, weights=np.ones(4), estimator="jackknife")
    with pytest.raises(ValueError):
        mutual_information(x, x[:3])
    with pytest.raises((ValueError, TypeError)):
        mutual_information(x, np.array([0.5, 1, 2, 1]))
    with pytest.raises(ValueError):
        mutual_information(x, -x)
    with pytest.raises(ValueError):
        mutual_information(x, x, kx=2)
    with pytest.raises(TypeError, match="`y` is missing"):
        mutual_information(x)
    with pytest.raises(ValueError, match="estimator"):
        mutual_information(x, x, estimator="ksg")
    with pytest.raises(ValueError, match="same length"):
        conditional_mutual_information(x, x, x[:2])
    with pytest.raises(ValueError, match="`kz`=2 declares labels 0..1"):
        conditional_mutual_information(x, x, x, kz=2)
    with pytest.raises(ValueError, match="negative"):
        conditional_mutual_information(x, x, -x)
    with pytest.raises(TypeError, match="integer"):
        conditional_mutual_information(x, x, x + 0.5)


@pytest.mark.parametrize("bad,msg", [
    (np.array([[1.0, np.nan], [1, 1]]), "NaN"),
    (np.array([[1, -1], [1, 1]]), "negative"),
    (np.zeros((2, 2)), "sums to zero"),
    (np.ones(3), "dimension"),
    (np.ones((0, 2)), "empty"),
])
def test_table_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        mutual_information_table(bad)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_tables_need_integer_counts(estimator):
    """A probability table used to be taken as counts by the plug-in, silently."""
    for f, table, idx in ((mutual_information_table, [[1, 1], [1, 0.5]], "(1, 1)"),
                          (conditional_mutual_information_table, np.full((2, 2, 2), 0.125),
                           "(0, 0, 0)")):
        with pytest.raises(ValueError) as info:
            f(table, estimator=estimator)
        msg = str(info.value)
        assert "`table`" in msg and f"at index {idx}" in msg and "non-negative integers" in msg
        assert "weighted=True" in msg
    # integer-valued floats are counts
    assert float(mutual_information_table(np.eye(3) * 4.0, estimator=estimator)) == pytest.approx(
        float(mutual_information_table(np.eye(3, dtype=np.int64) * 4, estimator=estimator)),
        abs=1e-15)


def test_weighted_tables():
    rng = np.random.default_rng(23)
    p = rng.dirichlet(np.ones(12)).reshape(3, 4)
    px, py = p.sum(1), p.sum(0)
    ref = float((p * np.log2(p / np.outer(px, py))).sum())
    assert float(mutual_information_table(p, weighted=True)) == pytest.approx(ref, abs=1e-14)
    assert float(mutual_information_table(7.5 * p, weighted=True)) == pytest.approx(ref, abs=1e-14)
    assert mutual_information_table(7.5 * p, weighted=True).n == pytest.approx(7.5)
    p3 = rng.dirichlet(np.ones(12)).reshape(2, 3, 2)
    pz = p3.sum((1, 2))
    ref3 = sum(pz[z] * float(mutual_information_table(p3[z], weighted=True)) for z in range(2))
    assert float(conditional_mutual_information_table(p3, weighted=True)) == pytest.approx(
        ref3, abs=1e-14)
    for est in ESTIMATORS[1:]:
        with pytest.raises(ValueError, match="weighted=True.*plugin"):
            mutual_information_table(p, estimator=est, weighted=True)
        with pytest.raises(ValueError, match="weighted=True.*plugin"):
            conditional_mutual_information_table(p3, estimator=est, weighted=True)


def test_weighted_chunks_only_with_plugin():
    x = np.array([0, 1, 0, 1])
    chunks = [(x, x, np.array([0.5, 1.0, 2.0, 1.0]))]
    assert float(mutual_information(iter(chunks))) == pytest.approx(
        float(mutual_information_table([[2.5, 0], [0, 2.0]], weighted=True)), abs=1e-15)
    with pytest.raises(ValueError, match=r"weighted \(x, y, w\) chunks .*plugin"):
        mutual_information(iter(chunks), estimator="miller_madow")


def test_table_errors_more():
    with pytest.raises(ValueError, match="dimension"):
        conditional_mutual_information_table(np.ones((2, 2)))
    with pytest.raises(ValueError, match="estimator"):
        conditional_mutual_information_table(np.ones((2, 2, 2)), estimator="x")
    with pytest.raises(ValueError, match="base"):
        mutual_information_table(np.ones((2, 2)), base=-2)


# ---------------------------------------------------------------- channel form


def test_channel_hard_rows_give_entropy_of_histogram():
    rng = np.random.default_rng(9)
    t = rng.integers(0, 6, 50)                              # expert chosen per distinct token
    ci = channel_information(np.eye(6)[t])
    h = float(entropy(np.bincount(t, minlength=6)))
    assert isinstance(ci, ChannelInformation)
    assert ci.mutual_information == pytest.approx(h, abs=1e-12)
    assert ci.entropy == pytest.approx(h, abs=1e-12)
    assert ci.conditional_entropy == 0.0
    assert ci.lautum_information == (math.inf if (np.bincount(t) > 0).sum() > 1 else 0.0)


def test_channel_independent_rows_give_zero():
    row = np.array([0.1, 0.2, 0.3, 0.4])
    ci = channel_information(np.tile(row, (7, 1)))
    assert ci.mutual_information == 0.0
    assert ci.lautum_information == 0.0
    assert ci.entropy == pytest.approx(shannon_entropy(row), abs=1e-14)
    assert ci.conditional_entropy == pytest.approx(shannon_entropy(row), abs=1e-14)


def test_channel_equals_plugin_mi_of_joint_and_lautum_formula():
    rng = np.random.default_rng(10)
    q = rng.dirichlet(np.ones(5) * 0.8, size=9)
    w = rng.random(9)
    px = w / w.sum()
    ci = channel_information(q, weights=w, base=math.e)
    joint = px[:, None] * q
    assert ci.mutual_information == pytest.approx(
        float(mutual_information_table(joint, base=math.e, weighted=True)), abs=1e-12)
    g = joint.sum(0)
    lautum = sum(px[x] * sum(g[t] * math.log(g[t] / q[x, t]) for t in range(5)) for x in range(9))
    assert ci.lautum_information == pytest.approx(lautum, abs=1e-12)
    assert ci.entropy - ci.conditional_entropy == pytest.approx(ci.mutual_information, abs=1e-12)
    # Paper B's closed form with uniform weights: H(mean_j q_j) - mean_j H(q_j)
    cu = channel_information(q)
    assert cu.mutual_information == pytest.approx(
        shannon_entropy(q.mean(0)) - shannon_entropy(q).mean(), abs=1e-12)


def test_channel_aminian_gibbs_identity():
    """E gen = (I(S;W) + L(S;W)) / gamma for the Gibbs rule (Aminian et al. 2021)."""
    rng = np.random.default_rng(11)
    nz, m, nw, gamma = 3, 3, 4, 2.5
    mu = rng.dirichlet(np.ones(nz))
    loss = rng.random((nw, nz))                             # loss(w, z) in [0, 1]
    prior = rng.dirichlet(np.ones(nw))
    sets = np.array(list(itertools.product(range(nz), repeat=m)))
    ps = np.prod(mu[sets], axis=1)                          # P(S)
    ls = loss[:, sets].mean(axis=2).T                       # L_S(w), shape (sets, nw)
    q = prior * np.exp(-gamma * ls)
    q /= q.sum(1, keepdims=True)
    gen = np.sum(ps[:, None] * q * ((loss @ mu)[None, :] - ls))
    ci = channel_information(q, weights=ps, base=math.e)
    assert gen == pytest.approx((ci.mutual_information + ci.lautum_information) / gamma, rel=1e-10)


def test_channel_batched_and_units():
    rng = np.random.default_rng(12)
    q = rng.dirichlet(np.ones(4), size=(3, 6))
    ci = channel_information(q)
    assert ci.mutual_information.shape == (3,)
    for i in range(3):
        assert ci.mutual_information[i] == pytest.approx(
            channel_information(q[i]).mutual_information, abs=1e-14)
    w = rng.random((3, 6))
    cw = channel_information(q, weights=w)
    assert cw.entropy[1] == pytest.approx(channel_information(q[1], weights=w[1]).entropy)
    nats = channel_information(q[0], base=math.e)
    assert nats.unit == "nats" and "nats" in repr(nats)
    assert nats.mutual_information == pytest.approx(
        channel_information(q[0]).mutual_information * math.log(2), abs=1e-14)
    # a zero-weight row with zeros does not make the lautum information infinite
    rows = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert channel_information(rows, weights=[1, 0]).lautum_information == 0.0
    assert channel_information(rows).lautum_information == math.inf


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(p_t_given_x=[[0.5, 0.6]]), ValueError, "sum to 1"),
    (dict(p_t_given_x=[[1.5, -0.5]]), ValueError, "negative"),
    (dict(p_t_given_x=[[np.nan, 1.0]]), ValueError, "NaN"),
    (dict(p_t_given_x=[0.5, 0.5]), ValueError, "dimension"),
    (dict(p_t_given_x=np.eye(2), weights=[1, 1, 1]), ValueError, "length 2"),
    (dict(p_t_given_x=np.eye(2), weights=[1, -1]), ValueError, "negative"),
    (dict(p_t_given_x=np.eye(2), weights=[0, 0]), ValueError, "sums to zero"),
    (dict(p_t_given_x=np.eye(2), weights=[1, np.inf]), ValueError, "inf"),
    (dict(p_t_given_x=np.eye(2), atol=-1), ValueError, "atol"),
    (dict(p_t_given_x=np.eye(2), base=0), ValueError, "base"),
])
def test_channel_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        channel_information(**kwargs)


def test_channel_atol():
    p = np.array([[0.5, 0.5 + 1e-4]])
    with pytest.raises(ValueError, match="sum to 1"):
        channel_information(p)
    assert channel_information(p, atol=1e-3).mutual_information == 0.0


def test_channel_information_repr_stays_short():
    q = np.random.default_rng(13).dirichlet(np.ones(4), size=(40, 30, 10))
    ci = channel_information(q)
    r = repr(ci)
    assert len(r) < 300, r
    mi = ci.mutual_information
    assert f"mutual_information=array of shape (40, 30) in [{mi.min():.4g}, {mi.max():.4g}] bits" in r
    assert repr(channel_information(np.eye(4))).startswith(
        "ChannelInformation(entropy=2 bits, conditional_entropy=0 bits")
