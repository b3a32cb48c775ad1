"""JAX/Flax helpers: routing decisions out of captured intermediates."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from infomoe.logs import open_log  # noqa: E402
from infomoe.logs.export import (find_leaves, router_indices_to_ids, router_mask_to_ids,  # noqa: E402
                                 routing_from_intermediates, write_intermediates)

E, K = 6, 2


def _route(logits):
    w, idx = jax.lax.top_k(jax.nn.softmax(logits), K)
    return w, idx


def test_flax_nnx_capture(tmp_path):
    nnx = pytest.importorskip("flax.nnx")

    class Router(nnx.Module):
        def __init__(self, rngs):
            self.proj = nnx.Linear(4, E, rngs=rngs)

        def __call__(self, x):
            logits = self.proj(x)
            w, idx = _route(logits)
            return logits, w, idx

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.router = Router(rngs)

        def __call__(self, x):
            _, w, _ = self.router(x)
            return x + w.sum(-1, keepdims=True)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([Block(rngs) for _ in range(3)])

        def __call__(self, x):
            for b in self.layers:
                x = b(x)
            return x

    model = Model(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 4))
    _, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
    ids, w, lg = routing_from_intermediates(inter, ids=r"router/__call__/value/0/2$",
                                            weights=r"router/__call__/value/0/1$",
                                            logits=r"router/__call__/value/0/0$")
    assert sorted(ids) == [0, 1, 2]
    h = x
    for i, b in enumerate(model.layers):                  # independent recomputation
        logits = b.router.proj(h)
        ew, eidx = _route(logits)
        np.testing.assert_array_equal(ids[i], np.asarray(eidx).reshape(-1, K))
        np.testing.assert_allclose(w[i], np.asarray(ew).reshape(-1, K), rtol=1e-6)
        np.testing.assert_allclose(lg[i], np.asarray(logits).reshape(-1, E), rtol=1e-6)
        h = b(h)
    log = write_intermediates(tmp_path / "log", inter, ids=r"router/__call__/value/0/2$",
                              weights=r"router/__call__/value/0/1$", num_experts=E,
                              seq_id=np.repeat([0, 1], 5), position=np.tile(np.arange(5), 2))
    assert log.num_tokens == 10 and log.manifest.source == "flax"
    np.testing.assert_array_equal(open_log(tmp_path / "log").read()["expert_ids"][2], ids[2])


def test_flax_linen_capture_intermediates(tmp_path):
    nn = pytest.importorskip("flax.linen")

    class Router(nn.Module):
        @nn.compact
        def __call__(self, x):
            logits = nn.Dense(E)(x)
            w, idx = _route(logits)
            return logits, w, idx

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            for i in range(2):
                _, w, _ = Router(name=f"router_{i}")(x)
                x = x + w.sum(-1, keepdims=True)
            return x

    x = jax.random.normal(jax.random.key(2), (3, 4, 4))
    params = Model().init(jax.random.key(0), x)
    _, state = Model().apply(params, x, capture_intermediates=lambda m, _: isinstance(m, Router),
                             mutable=["intermediates"])
    ids, w, _ = routing_from_intermediates(state, ids=r"__call__/0/2$", weights=r"__call__/0/1$")
    assert sorted(ids) == [0, 1] and ids[1].shape == (12, K)
    h = x
    for i in range(2):
        logits = Router().apply({"params": params["params"][f"router_{i}"]}, h)[0]
        ew, eidx = _route(logits)
        np.testing.assert_array_equal(ids[i], np.asarray(eidx).reshape(-1, K))
        h = h + ew.sum(-1, keepdims=True)


def test_plain_pytree_scanned_layers_and_torch_leaves(tmp_path):
    torch = pytest.importorskip("torch")
    stacked = np.arange(3 * 4 * K).reshape(3, 4, K) % E               # (layers, tokens, k)
    tree = {"scan": {"router_ids": torch.from_numpy(stacked)}, "other": jnp.zeros(3)}
    ids, w, lg = routing_from_intermediates(tree, ids="router_ids", layer_axis=0)
    assert sorted(ids) == [0, 1, 2] and w == {} and lg == {}
    np.testing.assert_array_equal(ids[2], stacked[2])
    assert list(find_leaves(tree, "router")) == ["scan/router_ids"]


def test_flaxformer_style_indices_and_masks():
    # (groups=1, tokens=4, k=1, 2): expert 0 gets 3 tokens, capacity 2 -> third dropped
    di = np.array([[[[0, 0]], [[0, 1]], [[1, 0]], [[0, 2]]]])
    np.testing.assert_array_equal(router_indices_to_ids(di, expert_capacity=2).ravel(), [0, 0, 1, -1])
    mask = np.zeros((1, 3, 4, 2))                                      # (G, S, E, C)
    mask[0, 0, 1, 0] = mask[0, 0, 3, 1] = 1
    mask[0, 1, 2, 0] = 1
    np.testing.assert_array_equal(router_mask_to_ids(mask, top_k=2), [[1, 3], [2, -1], [-1, -1]])
    with pytest.raises(ValueError, match="more than top_k=1"):
        router_mask_to_ids(mask, top_k=1)
    with pytest.raises(ValueError, match=r"\(\.\.\., k, 2\)"):
        router_indices_to_ids(np.zeros((4, 3)), expert_capacity=2)


def test_bad_inputs():
    tree = {"layers_0": {"idx": np.zeros((4, 2), np.int32), "w": np.zeros((4, 3), np.float32)},
            "layers_1": {"idx": np.zeros((4, 2), np.int32)}}
    with pytest.raises(ValueError, match="no captured intermediate matches 'nope'"):
        routing_from_intermediates(tree, ids="nope")
    with pytest.raises(ValueError, match="`weights` leaves cover layers \\[0\\]"):
        routing_from_intermediates(tree, ids="idx", weights="/w")
    with pytest.raises(TypeError, match="must be integers"):
        routing_from_intermediates({"a": np.zeros((2, 2))}, ids="a")
    dup = {"a": {"layer_0": np.zeros((2, 1), np.int32), "x_0": np.zeros((2, 1), np.int32)}}
    with pytest.raises(ValueError, match="map to layer 0"):
        routing_from_intermediates(dup, ids=".")


def test_write_log_takes_jax_and_torch_arrays(tmp_path):
    """The documented path for arrays in hand: infomoe.logs.write_log, no helper needed."""
    torch = pytest.importorskip("torch")
    from infomoe.logs import write_log

    ids = np.array([[[0, 1], [2, 3]], [[3, 2], [1, -1]]])          # (N=2, L=2, k=2)
    w = np.full(ids.shape, 0.5, np.float32)
    a = write_log(tmp_path / "jax", jnp.asarray(ids), gate_weights=jnp.asarray(w, dtype=jnp.bfloat16),
                  num_experts=4).read()
    b = write_log(tmp_path / "torch", torch.from_numpy(ids), gate_weights=torch.from_numpy(w),
                  num_experts=4).read()
    for d in (a, b):
        np.testing.assert_array_equal(d["expert_ids"][1], ids[:, 1])
        np.testing.assert_array_equal(d["gate_weights"][0], w[:, 0])


def test_float16_weights_are_stored_alike_by_write_log_and_write_intermediates(tmp_path):
    # one host-array conversion: float16 stays float16 on both paths (it became float32 through one)
    from infomoe.logs import open_log, write_log
    from infomoe.logs.export import write_intermediates

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (6, 2))
    w = rng.random((6, 2)).astype(np.float16)
    tree = {"layers_0": {"router": {"ids": ids, "weights": w}}}
    write_intermediates(tmp_path / "a", tree, ids="ids", weights="weights", num_experts=4)
    write_log(tmp_path / "b", ids[:, None, :], gate_weights=w[:, None, :], num_experts=4)
    a, b = open_log(tmp_path / "a").read(), open_log(tmp_path / "b").read()
    assert a["gate_weights"][0].dtype == b["gate_weights"][0].dtype == np.float16
    np.testing.assert_array_equal(a["gate_weights"][0], b["gate_weights"][0])
