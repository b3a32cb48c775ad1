"""Tests for infomoe.routing._posterior (sparse posterior and routing entropies)."""

import itertools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from infomoe.routing import (aggregate_kl_to_uniform, aggregate_posterior, posterior_summary,
                             renyi2_entropy, router_probabilities, routing_ambiguity,
                             routing_information, sparse_posterior_error, sparse_posterior_regret,
                             topk_support)


def test_theory_oracle_sparse_error():
    # docs/theory.md#sparse-posterior: p = (0.5, 0.3, 0.2), k = 2 -> -ln 0.8 = 0.2231 nats
    assert sparse_posterior_error([0.5, 0.3, 0.2], 2, base=math.e) == pytest.approx(-math.log(0.8))
    assert sparse_posterior_error([0.5, 0.3, 0.2], 2, base=math.e) == pytest.approx(0.2231, abs=1e-4)
    assert sparse_posterior_error([0.5, 0.3, 0.2], 2) == pytest.approx(-math.log2(0.8))
    assert sparse_posterior_error([0.5, 0.3, 0.2], 3) == 0.0


def test_sparse_error_is_reverse_kl_of_renormalised_q():
    # KL(q*||p) with q* = p restricted to S and renormalised, computed independently
    p = np.array([0.1, 0.4, 0.15, 0.35])
    s = [1, 3]
    q = np.zeros(4)
    q[s] = p[s] / p[s].sum()
    kl = float(np.sum(q[s] * np.log(q[s] / p[s])))  # KL(q || p), 0 log 0 = 0 off S
    assert sparse_posterior_error(p, support=s, base=math.e) == pytest.approx(kl)


prob_rows = st.integers(2, 6).flatmap(
    lambda e: arrays(np.float64, (3, e), elements=st.floats(0.01, 1.0)))


@settings(max_examples=40, deadline=None)
@given(prob_rows, st.data())
def test_topk_is_optimal_support_brute_force(raw, data):
    p = raw / raw.sum(axis=1, keepdims=True)
    e = p.shape[1]
    k = data.draw(st.integers(1, e))
    best = sparse_posterior_error(p, k, base=math.e)
    for t in range(p.shape[0]):
        brute = min(-math.log(p[t, list(s)].sum()) for s in itertools.combinations(range(e), k))
        assert best[t] == pytest.approx(brute, abs=1e-12)
        for s in itertools.combinations(range(e), k):
            assert sparse_posterior_regret(p[t], list(s), base=math.e) >= -1e-15
    topk = topk_support(p, k)
    np.testing.assert_allclose(sparse_posterior_regret(p, topk), 0.0, atol=1e-12)


def test_regret_value_and_logits():
    assert sparse_posterior_regret([0.5, 0.3, 0.2], [0, 2], base=math.e) == pytest.approx(math.log(0.8 / 0.7))
    z = np.log([0.5, 0.3, 0.2]) + 7.0  # logits defined up to a constant
    assert sparse_posterior_error(z, 2, from_logits=True, base=math.e) == pytest.approx(-math.log(0.8))


def test_router_probabilities_stable_softmax():
    z = np.array([[1000.0, 999.0, -1000.0], [0.1, 0.2, 0.3]])
    p = router_probabilities(z, from_logits=True)
    np.testing.assert_allclose(p, scipy.special.softmax(z, axis=-1), rtol=1e-12)
    assert np.isfinite(p).all()


def test_entropies_against_scipy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 6))
    p = scipy.special.softmax(z, axis=1)
    h_rows = scipy.stats.entropy(p, axis=1, base=2)
    assert routing_ambiguity(z, from_logits=True) == pytest.approx(h_rows.mean())
    qbar = p.mean(axis=0)
    np.testing.assert_allclose(aggregate_posterior(p), qbar)
    assert aggregate_kl_to_uniform(p, base=math.e) == pytest.approx(
        scipy.stats.entropy(qbar, np.full(6, 1 / 6)))
    # I(X;E) = (1/N) sum_x sum_e q log(q/qbar), computed directly
    mi = np.mean(np.sum(p * np.log2(p / qbar), axis=1))
    assert routing_information(p) == pytest.approx(mi)
    assert 0 <= routing_information(p) <= math.log2(6)


def test_extreme_routers():
    onehot = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    assert routing_ambiguity(onehot) == 0.0
    assert routing_information(onehot) == pytest.approx(2.0)  # log2 E: deterministic, balanced
    assert aggregate_kl_to_uniform(onehot) == pytest.approx(0.0, abs=1e-12)
    collapsed = np.tile([1.0, 0, 0, 0], (5, 1))
    assert aggregate_kl_to_uniform(collapsed) == pytest.approx(2.0)
    assert routing_information(collapsed) == 0.0


def test_renyi2_and_soft_switch_identity():
    assert renyi2_entropy(np.full(8, 1 / 8)) == pytest.approx(3.0)
    p = np.array([0.7, 0.2, 0.1])
    h2 = renyi2_entropy(p, base=math.e)
    assert 3 * np.sum(p ** 2) == pytest.approx(3 * math.exp(-h2))
    assert h2 <= scipy.stats.entropy(p) + 1e-12  # H_2 <= H


def test_posterior_summary_identities():
    rng = np.random.default_rng(1)
    p = scipy.special.softmax(rng.normal(size=(40, 5)) * 2, axis=1)
    s = posterior_summary(p, 2, base=math.e)
    assert s.information + s.ambiguity == pytest.approx(s.aggregate_entropy)
    assert s.kl_to_uniform + s.aggregate_entropy == pytest.approx(math.log(5))
    assert s.soft_balance == pytest.approx(5 * math.exp(-s.renyi2))
    assert s.sparse_error == pytest.approx(sparse_posterior_error(p, 2, base=math.e).mean())
    assert (s.n_tokens, s.n_experts, s.unit) == (40, 5, "nats")


@pytest.mark.parametrize("bad, exc, match", [
    ([0.5, np.nan, 0.5], ValueError, "NaN"),
    ([0.5, 0.6], ValueError, "sum to 1"),
    ([1.2, -0.2], ValueError, "negative"),
    ("abc", TypeError, "probs"),
])
def test_bad_probabilities(bad, exc, match):
    with pytest.raises(exc, match=match):
        sparse_posterior_error(bad, 1)


def test_bad_k_and_support():
    with pytest.raises(ValueError, match="at most"):
        sparse_posterior_error([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="exactly one"):
        sparse_posterior_error([0.5, 0.5], 1, support=[0])
    with pytest.raises(ValueError, match="repeats"):
        sparse_posterior_error([0.5, 0.3, 0.2], support=[1, 1])
    with pytest.raises(ValueError, match="only 3 experts"):
        sparse_posterior_error([0.5, 0.3, 0.2], support=[3])
    with pytest.raises(ValueError, match="leading shape"):
        sparse_posterior_regret([[0.5, 0.5]], [[0], [1]])
    with pytest.raises(ValueError, match="base"):
        routing_ambiguity([0.5, 0.5], base=1)
    with pytest.raises(ValueError, match="inf"):
        router_probabilities([0.0, np.inf], from_logits=True)
