"""Expert forcing and the router's point against the frontier (issue 18)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from infomoe.logs.export import (
    expert_loss_matrix,
    forced_routing,
    get_adapter,
    rate_lower_bound,
    router_frontier_point,
    tiny_model,
)

ARCHS = ("olmoe", "qwen3_moe", "mixtral", "gpt_oss")


def _ids(seed=0, shape=(3, 7)):
    return torch.randint(3, 99, shape, generator=torch.Generator().manual_seed(seed))


def _ce(logits, x):
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             x[:, 1:].reshape(-1), reduction="none").numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_forcing_the_learned_routing_reproduces_the_models_loss(arch):
    model, x = tiny_model(arch), _ids()
    router = get_adapter(model.config.model_type).sites(model)[0].module
    seen = []
    h = router.register_forward_hook(lambda m, i, o: seen.append((o[2].clone(), o[1].clone())))
    with torch.no_grad():
        own = _ce(model(x).logits, x)
    h.remove()
    ids, w = seen[0]
    with torch.no_grad(), forced_routing(model, ids, w, layer=0):
        forced = _ce(model(x).logits, x)
    np.testing.assert_allclose(forced, own, atol=1e-6)
    m = expert_loss_matrix(model, x, layer=0)
    np.testing.assert_allclose(m.routed_loss, own, atol=1e-6)


def test_forcing_one_expert_equals_a_manual_computation():
    """Last layer, one expert: the MoE output is that expert's MLP; recompute the logits by hand."""
    model, x = tiny_model("olmoe"), _ids(1, (2, 5))
    layer = model.model.layers[1]
    m = expert_loss_matrix(model, x, layer=1)
    ex = layer.mlp.experts
    with torch.no_grad():
        hid = model(x, output_hidden_states=True).hidden_states[1]  # input of layer 1
        for e in range(4):
            pos = torch.arange(x.shape[1]).unsqueeze(0)
            emb = model.model.rotary_emb(hid, pos)
            h2 = hid + _attn(model, layer, hid, emb)  # attention with an explicit causal mask
            z = layer.post_attention_layernorm(h2).reshape(-1, h2.shape[-1])
            g, u = torch.nn.functional.linear(z, ex.gate_up_proj[e]).chunk(2, dim=-1)
            y = torch.nn.functional.linear(ex.act_fn(g) * u, ex.down_proj[e])
            out = h2 + y.reshape(h2.shape)
            logits = model.lm_head(model.model.norm(out))
            np.testing.assert_allclose(m.loss[:, e], _ce(logits, x), atol=1e-5)


def _attn(model, layer, hid, emb):
    S = hid.shape[1]
    mask = torch.full((S, S), float("-inf")).triu(1)[None, None]
    return layer.self_attn(layer.input_layernorm(hid), position_embeddings=emb, attention_mask=mask)[0]


def test_token_mode_forces_only_that_token():
    model, x = tiny_model("olmoe"), _ids(2, (2, 6))
    tok = expert_loss_matrix(model, x, layer=0, mode="token")
    allm = expert_loss_matrix(model, x, layer=0, mode="all")
    # position 0 has no context: both modes agree there; later positions differ (context forced too)
    first = tok.position == 0
    np.testing.assert_allclose(tok.loss[first], allm.loss[first], atol=1e-6)
    assert not np.allclose(tok.loss[~first], allm.loss[~first])
    # a token's row in token mode = forcing that one token by hand in the full sequence
    B, S = x.shape
    t, e = 3, 2
    rows = torch.zeros((B, S), dtype=torch.bool)
    rows[:, t] = True
    with torch.no_grad(), forced_routing(model, e, layer=0, rows=rows.reshape(-1)):
        ce = _ce(model(x).logits, x).reshape(B, S - 1)[:, t]
    np.testing.assert_allclose(tok.loss[tok.position == t, e], ce, atol=1e-6)


def test_padding_rows_are_left_out():
    model, x = tiny_model("qwen3_moe"), _ids(3, (2, 6))
    mask = torch.ones_like(x)
    mask[1, 4:] = 0
    m = expert_loss_matrix(model, x, layer=1, attention_mask=mask)
    assert m.num_tokens == 5 + 3
    assert m.loss.shape == (8, 4) and np.allclose(m.router_probs.sum(1), 1)


def test_bad_arguments_name_themselves():
    model, x = tiny_model("olmoe"), _ids()
    with pytest.raises(ValueError, match="`layer` 7"):
        expert_loss_matrix(model, x, layer=7)
    with pytest.raises(ValueError, match="`mode`"):
        expert_loss_matrix(model, x, layer=0, mode="bogus")
    with pytest.raises(ValueError, match="`input_ids`"):
        expert_loss_matrix(model, x[0], layer=0)
    with pytest.raises(ValueError, match="`ids` 9"), forced_routing(model, 9, layer=0):
        pass


def test_the_router_is_never_below_the_frontier():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, e = rng.integers(5, 60), rng.integers(2, 7)
        d = rng.exponential(size=(n, e)) * rng.uniform(0.1, 3)
        logits = rng.normal(size=(n, e)) * rng.uniform(0, 5)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        fp = router_frontier_point(d, p)
        assert not fp.below_frontier, trial
        assert fp.excess_loss_upper >= fp.excess_loss >= -1e-9
        assert fp.wasted_rate_upper >= fp.wasted_rate >= -1e-9
        assert fp.frontier_rate_lower <= fp.rate + 1e-7
        # the frontier's own points (time-sharing of solved channels) are not below their bounds
        c = fp.curve
        for r, dd in zip(c.rate, c.distortion):
            assert rate_lower_bound(c, dd) <= r + 1e-7


def test_a_point_below_the_frontier_is_flagged():
    d = np.array([[0.0, 1.0], [1.0, 0.0]] * 4)
    p = np.full(d.shape, 0.5)  # rate 0
    fp = router_frontier_point(d, p, router_loss=0.1)  # loss 0.1 at rate 0: impossible
    assert fp.below_frontier and fp.excess_loss < 0 and fp.wasted_rate < 0
    below_oracle = router_frontier_point(d, p, router_loss=-0.5 + 0.5)
    assert below_oracle.frontier_rate is not None  # d_min = 0 reached exactly
    with pytest.raises(ValueError, match="router_probs"):
        router_frontier_point(d, p[:, :1])
