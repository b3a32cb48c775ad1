"""Issue 13: estimators exact at the edges (Chao-Shen clip, masked arrays, sparse labels,
huge counts) and the measures added with it (conditional/joint entropy, total
correlation, AMI/NMI, KL/JS)."""

import math

import numpy as np
import pytest

import infomoe as im


# ---------------------------------------------------------------- Chao-Shen <= log K
def test_chao_shen_never_exceeds_log_k():
    # was 1.6422 bits > log2(3) = 1.585 for counts [3, 2, 3]
    assert float(im.entropy([3, 2, 3], estimator="chao_shen")) <= math.log2(3) + 1e-15
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(2, 8))
        c = rng.integers(0, 4, size=k)
        if c.sum() == 0:
            continue
        assert float(im.entropy(c, estimator="chao_shen")) <= math.log2(k) + 1e-12


# ---------------------------------------------------------------- masked arrays
MASKED_F = np.ma.array([5.0, 5.0, 100.0], mask=[0, 0, 1])
MASKED_I = np.ma.array([0, 1, 1, 0], mask=[0, 0, 0, 1])


@pytest.mark.parametrize("call", [
    lambda: im.entropy(MASKED_F),
    lambda: im.entropy(MASKED_F, estimator="nsb"),
    lambda: im.mutual_information_table(np.ma.array(np.eye(2) * 5, mask=[[0, 1], [0, 0]])),
    lambda: im.conditional_mutual_information_table(np.ma.array(np.ones((2, 2, 2)))),
    lambda: im.channel_information(np.ma.array(np.eye(2), mask=[[0, 1], [0, 0]])),
    lambda: im.mutual_information(MASKED_I, [0, 1, 1, 0]),
    lambda: im.mutual_information([0, 1, 1, 0], MASKED_I),
    lambda: im.mutual_information(MASKED_I, [0, 1, 1, 0], estimator="nsb"),
    lambda: im.conditional_mutual_information(MASKED_I, [0, 1, 1, 0], [0, 0, 1, 1]),
    lambda: im.bootstrap_mutual_information(MASKED_I, [0, 1, 1, 0], n_resamples=10),
    lambda: im.independence_test(MASKED_I, [0, 1, 1, 0], n_permutations=10),
    lambda: im.mutual_information([(MASKED_I, np.array([0, 1, 1, 0]))]),
    lambda: im.mutual_information(iter([(np.array([0, 1]), np.array([0, 1])),
                                        (np.array([1]), np.ma.array([1]))])),
    lambda: im.bootstrap_mutual_information([(MASKED_I, np.array([0, 1, 1, 0]))],
                                            n_resamples=10),
    lambda: im.conditional_entropy(MASKED_I, [0, 1, 1, 0]),
    lambda: im.total_correlation(MASKED_I, [0, 1, 1, 0]),
    lambda: im.adjusted_mutual_information(MASKED_I, [0, 1, 1, 0]),
])
def test_masked_arrays_are_refused(call):
    with pytest.raises(TypeError, match="masked array"):
        call()


def test_masked_arrays_refused_by_blahut_arimoto():
    pytest.importorskip("jax")
    with pytest.raises(TypeError, match="masked array"):
        im.channel_capacity(np.ma.array(np.eye(2), mask=[[0, 1], [0, 0]]))
    with pytest.raises(TypeError, match="masked array"):
        im.rate_distortion(np.ma.array(np.ones((3, 2)), mask=np.zeros((3, 2))), betas=[1.0])


# ---------------------------------------------------------------- sparse labels
def test_mutual_information_of_huge_labels_is_sparse():
    # was: a 2**41-cell table (16 TiB), MemoryError
    v = im.mutual_information([0, 2 ** 40], [0, 1])
    assert float(v) == pytest.approx(1.0, abs=1e-15) and v.k == (2 ** 40 + 1, 2)
    x = np.array([0, 2 ** 40, 7, 7, 2 ** 40, 3], dtype=np.int64)
    y = np.array([1, 0, 5, 5, 0, 2 ** 35])
    dense = im.mutual_information(np.unique(x, return_inverse=True)[1],
                                  np.unique(y, return_inverse=True)[1])
    assert float(im.mutual_information(x, y)) == pytest.approx(float(dense), abs=1e-14)


@pytest.mark.parametrize("estimator", im.ESTIMATORS)
def test_sparse_route_matches_dense_route(estimator):
    from infomoe import _information as I
    rng = np.random.default_rng(3)
    x, y, z = rng.integers(0, 6, 200), rng.integers(0, 5, 200), rng.integers(0, 3, 200)
    kx, ky, kz = 6, 5, 3
    d = im.mutual_information(x, y, estimator=estimator, kx=kx, ky=ky)
    s, var = I._sparse_estimate([x, y], [kx, ky], I._MI_GROUPS, estimator)
    assert s / math.log(2) == pytest.approx(float(d), abs=1e-12)
    if estimator == "jackknife":
        assert math.sqrt(var) / math.log(2) == pytest.approx(d.std, rel=1e-10)
    dc = im.conditional_mutual_information(x, y, z, estimator=estimator, kx=kx, ky=ky, kz=kz)
    sc, _ = I._sparse_estimate([z, x, y], [kz, kx, ky], I._CMI_GROUPS, estimator)
    assert sc / math.log(2) == pytest.approx(float(dc), abs=1e-12)


def test_conditional_mutual_information_of_huge_labels():
    x = np.array([0, 2 ** 40, 0, 2 ** 40])
    z = np.array([0, 0, 2 ** 33, 2 ** 33])
    v = im.conditional_mutual_information(x, x, z)
    assert float(v) == pytest.approx(1.0, abs=1e-15)


def test_resampling_refuses_huge_dense_table():
    with pytest.raises(ValueError, match="cells"):
        im.bootstrap_mutual_information([0, 2 ** 40], [0, 1], n_resamples=10)


def test_no_int64_overflow_with_huge_cell_counts():
    # scikit-learn's mutual_info_score overflows int64 on such tables; ours works in float
    t = np.array([[10 ** 12, 1], [3, 10 ** 12]], dtype=np.int64)
    p = t / t.sum()
    exact = float(np.sum(p * np.log2(p / np.outer(p.sum(1), p.sum(0)))))
    assert float(im.mutual_information_table(t)) == pytest.approx(exact, rel=1e-12)


# ---------------------------------------------------------------- new measures
from hypothesis import given, settings, strategies as st

labels = st.lists(st.integers(0, 5), min_size=2, max_size=60)


@pytest.mark.parametrize("method", ["arithmetic", "min", "geometric", "max"])
def test_ami_nmi_agree_with_scikit_learn(method):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(2, 120))
        x = rng.integers(0, int(rng.integers(1, 8)), n)
        y = rng.integers(0, int(rng.integers(1, 8)), n) if rng.random() < 0.7 else x[::-1]
        assert im.adjusted_mutual_information(x, y, average_method=method) == pytest.approx(
            metrics.adjusted_mutual_info_score(x, y, average_method=method), abs=1e-10)
        assert im.normalized_mutual_information(x, y, average_method=method) == pytest.approx(
            metrics.normalized_mutual_info_score(x, y, average_method=method), abs=1e-10)


def test_ami_edge_cases():
    assert im.adjusted_mutual_information([3, 3, 3], [1, 1, 1]) == 1.0
    assert im.normalized_mutual_information([0, 1, 2], [0, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="average_method"):
        im.adjusted_mutual_information([0, 1], [0, 1], average_method="mean")


def test_kl_and_js_agree_with_scipy():
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy as sp_entropy
    rng = np.random.default_rng(1)
    for _ in range(50):
        k = int(rng.integers(2, 10))
        p, q = rng.dirichlet(np.ones(k)), rng.integers(1, 20, k).astype(float)
        for base in (2, math.e, 10):
            assert float(im.kl_divergence(p, q, base=base)) == pytest.approx(
                sp_entropy(p, q, base=base), rel=1e-12, abs=1e-15)
            assert float(im.jensen_shannon_divergence(p, q, base=base)) == pytest.approx(
                jensenshannon(p, q, base=base) ** 2, rel=1e-10, abs=1e-15)


def test_kl_js_closed_forms_and_errors():
    assert float(im.kl_divergence([1, 0], [0.5, 0.5])) == pytest.approx(1.0)
    assert float(im.kl_divergence([0.5, 0.5], [1, 0])) == math.inf
    assert float(im.jensen_shannon_divergence([1, 0], [0, 1])) == pytest.approx(1.0)
    v = im.jensen_shannon_divergence([[1, 0], [1, 1]], [[0, 1], [1, 1]])
    np.testing.assert_allclose(v.value, [1.0, 0.0], atol=1e-15)
    with pytest.raises(ValueError, match="same number of outcomes"):
        im.kl_divergence([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="weights='counts'"):
        im.jensen_shannon_divergence([3, 1], [1, 3], estimator="nsb")
    with pytest.raises(TypeError, match="masked"):
        im.kl_divergence(np.ma.array([1, 2]), [1, 2])


def test_js_count_weights_is_the_mi_of_the_stacked_table():
    p, q = np.array([10, 3, 0, 7]), np.array([2, 2, 9, 1])
    t = np.stack([p, q])
    assert float(im.jensen_shannon_divergence(p, q, weights="counts")) == pytest.approx(
        float(im.mutual_information_table(t)), abs=1e-14)
    for est in ("miller_madow", "nsb", "james_stein"):
        assert float(im.jensen_shannon_divergence(p, q, estimator=est, weights="counts")) == \
            pytest.approx(float(im.mutual_information_table(t, estimator=est)), abs=1e-14)


def test_js_miller_madow_reduces_bias():
    rng = np.random.default_rng(5)
    p = np.full(20, 1 / 20)
    plug, mm = [], []
    for _ in range(300):
        a, b = rng.multinomial(100, p), rng.multinomial(100, p)
        plug.append(float(im.jensen_shannon_divergence(a, b, weights="counts")))
        mm.append(float(im.jensen_shannon_divergence(a, b, weights="counts",
                                                     estimator="miller_madow")))
    assert abs(np.mean(mm)) < 0.25 * np.mean(plug)      # the truth is 0


@settings(max_examples=60, deadline=None)
@given(labels, st.data())
def test_conditional_joint_entropy_chain_rule(x, data):
    y = data.draw(st.lists(st.integers(0, 4), min_size=len(x), max_size=len(x)))
    hxy = float(im.joint_entropy(x, y))
    hx = float(im.entropy(np.bincount(x)))
    assert float(im.conditional_entropy(y, x)) == pytest.approx(hxy - hx, abs=1e-12)
    assert float(im.total_correlation(x, y)) == pytest.approx(
        float(im.mutual_information(x, y)), abs=1e-12)
    assert float(im.conditional_entropy(y, x)) >= 0


@pytest.mark.parametrize("estimator", im.ESTIMATORS)
def test_conditional_entropy_every_estimator_is_difference_of_entropies(estimator):
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, 80), rng.integers(0, 3, 80)
    t = im.contingency(x, y, kx=4, ky=3)
    hj = float(im.entropy(t.reshape(-1), estimator=estimator))
    hx = float(im.entropy(t.sum(axis=1), estimator=estimator))
    if estimator == "james_stein":  # plug-in of the shrunk joint table, as for the MI
        from infomoe._information import _shrunk_joint
        s = _shrunk_joint(t[None].astype(float), np.array([80.0]))[0]
        hj = float(im.entropy(s.reshape(-1), weighted=True))
        hx = float(im.entropy(s.sum(axis=1), weighted=True))
    assert float(im.conditional_entropy(y, x, estimator=estimator, kx=4, ky=3)) == \
        pytest.approx(hj - hx, abs=1e-12)
    hj = float(im.entropy(t.reshape(-1), estimator=estimator))
    assert float(im.joint_entropy(x, y, estimator=estimator, k=(4, 3))) == \
        pytest.approx(hj, abs=1e-12)


def test_total_correlation_agrees_with_dit():
    dit = pytest.importorskip("dit")
    rng = np.random.default_rng(9)
    cols = [rng.integers(0, 3, 400) for _ in range(3)]
    cols[2] = (cols[0] + cols[1] + (rng.random(400) < 0.2)) % 3   # dependent on both
    tuples, counts = np.unique(np.stack(cols, 1), axis=0, return_counts=True)
    d = dit.Distribution(["".join(map(str, t)) for t in tuples], counts / counts.sum())
    assert float(im.total_correlation(*cols)) == pytest.approx(
        dit.multivariate.total_correlation(d), abs=1e-10)
    assert float(im.total_correlation(*cols, base=math.e)) == pytest.approx(
        dit.multivariate.total_correlation(d) * math.log(2), abs=1e-10)


def test_total_correlation_of_xor_is_one_bit():
    a = np.array([0, 1, 0, 1] * 5)
    b = np.array([0, 0, 1, 1] * 5)
    assert float(im.total_correlation(a, b, a ^ b)) == pytest.approx(1.0, abs=1e-15)
    assert float(im.total_correlation(a, b)) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(TypeError, match="at least 2"):
        im.total_correlation(a)
    with pytest.raises(ValueError, match="sequence of 2"):
        im.total_correlation(a, b, k=(2,))


# ---------------------------------------------------------------- warnings
def test_undersampled_plugin_warns_and_can_be_filtered():
    import warnings
    t = np.zeros((30, 30))
    t[0, 0] = t[1, 1] = 2
    with pytest.warns(im.UndersampledWarning, match="estimator='nsb'"):
        im.mutual_information_table(t)
    assert issubclass(im.UndersampledWarning, im.EstimatorWarning)
    assert issubclass(im.EstimatorWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im.mutual_information_table(t, estimator="nsb")     # no warning
        im.mutual_information_table(np.eye(4) * 25)          # well sampled
    with warnings.catch_warnings(record=True) as rec:      # once, not once per resample
        warnings.simplefilter("always")
        im.bootstrap_mutual_information([0, 1] * 3, [0, 1] * 3, n_resamples=20, kx=30, ky=30)
    assert sum(issubclass(r.category, im.UndersampledWarning) for r in rec) == 1


def test_grassberger_single_symbol_warns():
    with pytest.warns(im.EstimatorWarning, match="single"):
        v = im.entropy([9], estimator="grassberger")
    assert float(v) > 0
