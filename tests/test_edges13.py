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
