"""Tests for infomoe.routing._balance (NumPy load-balancing losses)."""

import math

import numpy as np
import pytest
import scipy.special

from infomoe.routing import (aux_free_bias_update, deepseek_balance_loss, expert_load,
                             gshard_load_balancing_loss, hf_load_balancing_loss, max_violation,
                             renyi2_entropy, router_z_loss, switch_load_balancing_loss)


def balanced_probs(e, reps=3):
    """Each token sends most mass to one expert, every expert equally often."""
    p = np.full((e, e), 0.1 / (e - 1))
    np.fill_diagonal(p, 0.9)
    return np.tile(p, (reps, 1))


@pytest.mark.parametrize("e", [2, 4, 8])
def test_switch_equals_one_at_balance_and_e_at_collapse(e):
    assert switch_load_balancing_loss(balanced_probs(e)) == pytest.approx(1.0)
    collapsed = np.tile(np.eye(e)[0], (10, 1))
    assert switch_load_balancing_loss(collapsed) == pytest.approx(e)


def test_switch_topk_normalisation_and_f_equals_p_form():
    # top-2 on a balanced, symmetric router: still 1
    p = np.array([[0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]])
    assert switch_load_balancing_loss(p, top_k=2) == pytest.approx(1.0)
    # dispatch given explicitly, with f = P: E * sum P^2 = E exp(-H_2(P))
    ids = np.array([[0], [0], [1], [2]])
    probs = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    P = probs.mean(axis=0)
    assert switch_load_balancing_loss(probs, expert_ids=ids) == pytest.approx(
        3 * math.exp(-renyi2_entropy(P, base=math.e)))


def test_hf_equals_k_at_balance():
    z = np.log(balanced_probs(4))
    assert hf_load_balancing_loss(z, top_k=2) == pytest.approx(2.0)
    assert hf_load_balancing_loss([z, z, z], top_k=1) == pytest.approx(1.0)
    assert hf_load_balancing_loss(z, top_k=2) == pytest.approx(2 * switch_load_balancing_loss(
        z, top_k=2, from_logits=True))


def test_hf_matches_transformers_implementation():
    torch = pytest.importorskip("torch")
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    rng = np.random.default_rng(0)
    batch, seq, e = 3, 5, 6
    layers = [rng.normal(size=(batch * seq, e)) * 2 for _ in range(3)]
    mask = (rng.random((batch, seq)) > 0.3).astype(np.int64)
    mask[0, 0] = 1
    for k in (1, 2, 3):
        for m in (None, mask):
            ref = mixtral.load_balancing_loss_func(
                tuple(torch.tensor(z, dtype=torch.float32) for z in layers), e, k,
                None if m is None else torch.tensor(m))
            ours = hf_load_balancing_loss(layers, top_k=k, attention_mask=m)
            assert ours == pytest.approx(float(ref), rel=1e-5)


def test_gshard_scaled_is_switch_top1_and_unscaled_paper_form():
    rng = np.random.default_rng(2)
    p = scipy.special.softmax(rng.normal(size=(30, 5)), axis=1)
    assert gshard_load_balancing_loss(p) == pytest.approx(switch_load_balancing_loss(p))
    e = 4
    assert gshard_load_balancing_loss(balanced_probs(e), scaled=False) == pytest.approx(1 / e ** 2)
    # with top-2 ids only the first choice counts
    ids = np.stack([p.argmax(axis=1), (p.argmax(axis=1) + 1) % 5], axis=1)
    assert gshard_load_balancing_loss(p, expert_ids=ids) == pytest.approx(gshard_load_balancing_loss(p))


def test_router_z_loss_against_scipy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 7)) * 5
    ref = np.mean(scipy.special.logsumexp(z, axis=1) ** 2)
    assert router_z_loss(z) == pytest.approx(ref)
    assert router_z_loss([[1000.0, 1000.0]]) == pytest.approx((1000 + math.log(2)) ** 2)


def test_deepseek_loss_definition():
    # balance: every expert chosen equally, uniform normalised affinity -> alpha
    s = np.array([[0.9, 0.1, 0.5, 0.5], [0.1, 0.9, 0.5, 0.5], [0.5, 0.5, 0.9, 0.1], [0.5, 0.5, 0.1, 0.9]])
    assert deepseek_balance_loss(s, 1, alpha=0.3) == pytest.approx(0.3)
    # hand computation for one sequence, T = 2, E = 3, K = 1
    s = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2]])
    f = np.array([3 / (1 * 2) * 2, 0, 0])
    P = (s / s.sum(axis=1, keepdims=True)).mean(axis=0)
    assert deepseek_balance_loss(s, 1) == pytest.approx(np.dot(f, P))
    # batch: the mean of per-sequence losses (not the loss of the pooled batch)
    s2 = np.stack([s, s[:, [2, 1, 0]]])
    per = [deepseek_balance_loss(x, 1) for x in s2]
    assert deepseek_balance_loss(s2, 1) == pytest.approx(np.mean(per))
    ids = np.array([[[1], [2]], [[0], [0]]])
    assert deepseek_balance_loss(s2, 1, expert_ids=ids) != deepseek_balance_loss(s2, 1)


def test_bias_update_and_maxvio():
    assert max_violation([4, 2, 2, 0]) == pytest.approx(1.0)
    assert max_violation([3, 3, 3]) == 0.0
    assert max_violation([[6, 0, 0], [2, 2, 2]]).tolist() == [2.0, 0.0]
    np.testing.assert_allclose(aux_free_bias_update([0.0, 1.0, 2.0], [5, 3, 1], gamma=0.1), [-0.1, 1.0, 2.1])
    np.testing.assert_array_equal(expert_load([[0, 1], [1, -1]], 3), [1, 2, 0])


def test_aux_free_update_reduces_max_violation():
    # a skewed router; the bias shifts selection only (DeepSeek-V3)
    rng = np.random.default_rng(4)
    e, t, k = 8, 512, 2
    skew = np.linspace(1.5, 0.0, e)
    bias = np.zeros(e)
    vios = []
    for step in range(300):
        scores = 1 / (1 + np.exp(-(rng.normal(size=(t, e)) + skew)))
        ids = np.argsort(-(scores + bias), axis=1)[:, :k]
        load = expert_load(ids, e)
        vios.append(max_violation(load))
        bias = aux_free_bias_update(bias, load, gamma=0.01)
    assert np.mean(vios[-50:]) < 0.3 * vios[0]


def test_errors():
    with pytest.raises(ValueError, match="top_k"):
        switch_load_balancing_loss([[0.5, 0.5]], top_k=3)
    with pytest.raises(ValueError, match="expert_ids"):
        switch_load_balancing_loss([[0.5, 0.5]], expert_ids=[[0, 1]])
    with pytest.raises(ValueError, match="only 2 experts"):
        switch_load_balancing_loss([[0.5, 0.5]], expert_ids=[[2]])
    with pytest.raises(TypeError, match="integer"):
        expert_load([[0.5]], 2)
    with pytest.raises(ValueError, match="attention_mask"):
        hf_load_balancing_loss(np.zeros((4, 3)), 1, attention_mask=np.ones((1, 3)))
    with pytest.raises(ValueError, match="masks out"):
        hf_load_balancing_loss(np.zeros((4, 3)), 1, attention_mask=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        router_z_loss([[0.0, np.nan]])
    with pytest.raises(ValueError, match="non-negative"):
        deepseek_balance_loss([[-0.1, 1.0]], 1)
    with pytest.raises(ValueError, match="same shape"):
        aux_free_bias_update([0.0, 0.0], [1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        max_violation([1, -1])
    with pytest.raises(ValueError, match="all zero"):
        max_violation([0, 0])


def test_import_routing_does_not_import_jax():
    import subprocess
    import sys
    code = ("import sys, infomoe, infomoe.routing as r; r.switch_load_balancing_loss([[0.5, 0.5]]); "
            "assert 'jax' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
