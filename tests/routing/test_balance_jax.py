"""Tests for infomoe.routing._balance_jax: agreement with NumPy, gradients, jit."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import infomoe.routing as npr  # noqa: E402
import infomoe.routing.jax_losses as jr  # noqa: E402


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def logits(seed, shape, scale=1.5):
    return np.random.default_rng(seed).normal(size=shape) * scale


@pytest.mark.parametrize("k", [1, 2, 3])
def test_switch_and_hf_agree_with_numpy(k):
    z = logits(0, (40, 6))
    assert float(jr.switch_load_balancing_loss(z, top_k=k, from_logits=True)) == pytest.approx(
        npr.switch_load_balancing_loss(z, top_k=k, from_logits=True), rel=1e-12)
    layers = [logits(i, (12, 6)) for i in range(3)]
    mask = (np.random.default_rng(9).random((3, 4)) > 0.4).astype(float)
    mask[0, 0] = 1
    for m in (None, mask):
        assert float(jr.hf_load_balancing_loss(layers, k, attention_mask=m)) == pytest.approx(
            npr.hf_load_balancing_loss(layers, k, attention_mask=m), rel=1e-12)


def test_other_losses_agree_with_numpy():
    z = logits(1, (30, 5))
    for scaled in (True, False):
        assert float(jr.gshard_load_balancing_loss(z, from_logits=True, scaled=scaled)) == pytest.approx(
            npr.gshard_load_balancing_loss(z, from_logits=True, scaled=scaled), rel=1e-12)
    assert float(jr.router_z_loss(z * 100)) == pytest.approx(npr.router_z_loss(z * 100), rel=1e-12)
    s = 1 / (1 + np.exp(-logits(2, (3, 16, 8))))
    for k in (1, 2):
        assert float(jr.deepseek_balance_loss(s, k, alpha=0.1)) == pytest.approx(
            npr.deepseek_balance_loss(s, k, alpha=0.1), rel=1e-12)
    load = np.array([[5.0, 3, 1, 3], [2, 2, 2, 2]])
    np.testing.assert_allclose(jr.aux_free_bias_update(np.zeros((2, 4)), load, gamma=0.2),
                               npr.aux_free_bias_update(np.zeros((2, 4)), load, gamma=0.2))
    np.testing.assert_allclose(jr.max_violation(load), npr.max_violation(load))


def test_explicit_ids_agree():
    z = logits(3, (10, 4))
    ids = np.random.default_rng(3).integers(0, 4, size=(10, 2))
    ids[:, 1] = (ids[:, 0] + 1) % 4
    assert float(jr.switch_load_balancing_loss(z, top_k=2, expert_ids=ids, from_logits=True)) == pytest.approx(
        npr.switch_load_balancing_loss(z, top_k=2, expert_ids=ids, from_logits=True))
    ids[0, 1] = -1  # dropped slot is ignored by both
    assert float(jr.switch_load_balancing_loss(z, top_k=2, expert_ids=ids, from_logits=True)) == pytest.approx(
        npr.switch_load_balancing_loss(z, top_k=2, expert_ids=ids, from_logits=True))


def test_gradients_match_finite_differences():
    z = jnp.asarray(logits(4, (16, 5)))
    # f_i is piecewise constant in z: finite differences with a tiny step do not flip top-k
    fns = [
        lambda x: jr.switch_load_balancing_loss(x, top_k=2, from_logits=True),
        lambda x: jr.hf_load_balancing_loss(x, 2),
        lambda x: jr.gshard_load_balancing_loss(x, from_logits=True),
        jr.router_z_loss,
        lambda x: jr.deepseek_balance_loss(jax.nn.sigmoid(x.reshape(2, 8, 5)), 2, alpha=0.5),
    ]
    for fn in fns:
        check_grads(fn, (z,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


def test_z_loss_gradient_closed_form():
    # d/dz mean(lse^2) = 2 lse softmax(z) / T
    z = jnp.asarray(logits(5, (6, 4)))
    g = jax.grad(jr.router_z_loss)(z)
    lse = jax.nn.logsumexp(z, axis=1, keepdims=True)
    np.testing.assert_allclose(g, 2 * lse * jax.nn.softmax(z, axis=1) / 6, rtol=1e-12)


def test_jit_compatible():
    z = jnp.asarray(logits(6, (8, 4)))
    f = jax.jit(lambda x: jr.switch_load_balancing_loss(x, top_k=2, from_logits=True)
                + jr.router_z_loss(x) + jr.hf_load_balancing_loss(x, 2))
    ref = (npr.switch_load_balancing_loss(np.asarray(z), top_k=2, from_logits=True)
           + npr.router_z_loss(np.asarray(z)) + npr.hf_load_balancing_loss(np.asarray(z), 2))
    assert float(f(z)) == pytest.approx(ref, rel=1e-12)


def test_jax_losses_is_the_module_and_the_old_name_warns():
    import importlib
    import sys

    import infomoe.routing as R
    assert R.jax_losses.switch_load_balancing_loss is jr.switch_load_balancing_loss
    sys.modules.pop("infomoe.routing.jax", None)
    with pytest.warns(DeprecationWarning, match="jax_losses"):
        old = importlib.import_module("infomoe.routing.jax")
    assert old.switch_load_balancing_loss is jr.switch_load_balancing_loss
