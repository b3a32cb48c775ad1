"""Kernels of the report's uncertainty: grouped sparse tables, the jackknife, the permutation null, Holm."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infomoe import mutual_information_table
from infomoe.logs._uncertainty import (GroupedCounts, holm, jackknife_se, jackknife_weights, permutation_null,
                                       plugin_mi_sparse, replicate_tables, token_groups)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(1, 5), st.integers(0, 200), st.integers(0, 2 ** 31))
def test_grouped_counts_merge_and_total(G, R, C, n, seed):
    rng = np.random.default_rng(seed)
    g, r, c = rng.integers(0, G, n), rng.integers(0, R, n), rng.integers(0, C, n)
    whole = GroupedCounts.from_labels(g, r, c, (G, R, C))
    cut = rng.integers(0, n + 1)
    parts = GroupedCounts.from_labels(g[:cut], r[:cut], c[:cut], (G, R, C)) + \
        GroupedCounts.from_labels(g[cut:], r[cut:], c[cut:], (G, R, C))
    np.testing.assert_array_equal(parts.keys, whole.keys)
    np.testing.assert_array_equal(parts.counts, whole.counts)
    dense = np.zeros((R, C), np.int64)
    np.add.at(dense, (r, c), 1)
    np.testing.assert_array_equal(whole.total(), dense)
    rr, cc, nn = whole.total_sparse()
    np.testing.assert_array_equal(dense[rr, cc], nn)
    assert int(nn.sum()) == n and (nn > 0).all()


def test_grouped_counts_refuse_other_shapes():
    a = GroupedCounts.from_labels([0], [0], [0], (1, 2, 2))
    b = GroupedCounts.from_labels([0], [0], [0], (1, 3, 2))
    with pytest.raises(ValueError, match="shapes"):
        a + b


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 9), st.integers(2, 6), st.integers(5, 300), st.integers(0, 2 ** 31))
def test_plugin_mi_sparse_equals_the_dense_estimator(R, C, n, seed):
    rng = np.random.default_rng(seed)
    t = rng.multinomial(n, rng.dirichlet(np.ones(R * C))).reshape(R, C)
    r, c = np.nonzero(t)
    got = float(plugin_mi_sparse(r, c, t[r, c], 2))
    want = float(mutual_information_table(t, estimator="plugin", base=2).value)
    assert got == pytest.approx(want, abs=1e-12)
    assert float(plugin_mi_sparse(r, c, t[r, c], math.e)) == pytest.approx(want * math.log(2), abs=1e-12)


def test_replicate_tables_reweight_groups():
    g = np.array([0, 0, 1, 2, 2, 2])
    r = np.array([0, 1, 1, 0, 0, 1])
    c = np.zeros(6, int)
    t = GroupedCounts.from_labels(g, r, c, (3, 2, 1))
    W = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    rows, cols, counts = replicate_tables(t, W)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 0]
    assert counts.tolist() == [[3.0, 3.0], [2.0, 3.0]]


def test_jackknife_of_a_mean_is_the_standard_error_of_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    loo = (x.sum() - x) / (x.size - 1)  # delete-one means
    assert jackknife_se(loo) == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=1e-12)
    assert math.isnan(jackknife_se(np.array([1.0])))


def test_jackknife_weights_skip_empty_groups_and_merge():
    w = jackknife_weights(np.array([3, 0, 2, 5]))
    assert w.tolist() == [[0, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]
    merged = jackknife_weights(np.array([3, 0, 2, 5]), max_groups=2)  # groups {0, 2} and {1, 3}
    assert merged.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]


def test_token_groups_keep_sequences_together_and_blocks_without_them():
    seq = np.array([5, 5, 9, 9, 5, 1 << 40])
    g = token_groups({"seq_id": seq}, 6, 64)
    assert g[0] == g[1] == g[4] and g[2] == g[3] and g.min() >= 0 and g.max() < 64
    whole = token_groups({}, 1000, 64)
    chunked = np.concatenate([token_groups({"offset": a}, 100, 64) for a in range(0, 1000, 100)])
    np.testing.assert_array_equal(whole, chunked)  # the same groups however the log is chunked
    assert len(set(whole[:256].tolist())) == 1  # one block of 256 tokens, one group
    # sequences spread over the groups
    many = token_groups({"seq_id": np.arange(6400)}, 6400, 64)
    assert np.bincount(many, minlength=64).min() > 50


def test_permutation_null_matches_brute_force_shuffling():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 30, 400)
    y = rng.integers(0, 5, 400)
    t = np.zeros((30, 5), np.int64)
    np.add.at(t, (x, y), 1)
    r, c = np.nonzero(t)
    mean, sd, how = permutation_null(r, c, t[r, c], permutations=400, seed=3, base=2)
    assert how == "permutation"
    brute = []
    for _ in range(400):
        tp = np.zeros_like(t)
        np.add.at(tp, (x, rng.permutation(y)), 1)
        brute.append(float(mutual_information_table(tp, estimator="plugin").value))
    assert mean == pytest.approx(np.mean(brute), rel=0.03)
    assert sd == pytest.approx(np.std(brute, ddof=1), rel=0.15)
    # the same seed, the same null
    assert permutation_null(r, c, t[r, c], permutations=400, seed=3, base=2) == (mean, sd, how)


def test_permutation_null_edge_cases():
    # a constant variable: the MI is 0 under every shuffle
    assert permutation_null(np.array([0, 1]), np.array([0, 0]), np.array([3, 4]), permutations=10,
                            seed=0, base=2) == (0.0, 0.0, "exact")
    # a well-filled table: the chi-square law, mean df / 2N nats
    t = np.full((3, 4), 100)
    r, c = np.nonzero(t)
    mean, sd, how = permutation_null(r, c, t[r, c], permutations=10, seed=0, base=math.e)
    assert how == "chi-square" and mean == pytest.approx(6 / 2400) and sd == pytest.approx(math.sqrt(12) / 2400)


def test_holm_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04, then the running maximum
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm(np.array([np.nan]))).all()
    assert holm(np.array([0.9, 0.8])).max() <= 1.0
