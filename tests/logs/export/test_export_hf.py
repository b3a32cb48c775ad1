"""Hugging Face adapters: recorded decisions equal an independent recomputation of each router."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from infomoe.logs import open_log  # noqa: E402
from infomoe.logs.export import ADAPTERS, TINY_ARCHS, RoutingRecorder, get_adapter, tiny_model  # noqa: E402

SOFTMAX_TOPK = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
LOGIT_TOPK = ("granitemoe", "gpt_oss")


def _softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _topk_desc(x, k):
    idx = np.argsort(-x, axis=-1, kind="stable")[:, :k]
    return idx, np.take_along_axis(x, idx, -1)


def _expected(arch, model, logits):
    """Independent numpy recomputation of (ids, weights) from the router logits (T, E)."""
    cfg = model.config
    k = cfg.num_experts_per_tok
    if arch in SOFTMAX_TOPK:
        ids, w = _topk_desc(_softmax(logits), k)
        if arch == "mixtral" or cfg.norm_topk_prob:
            w = w / w.sum(-1, keepdims=True)
        return ids, w
    if arch in LOGIT_TOPK:
        ids, top = _topk_desc(logits, k)
        return ids, _softmax(top)
    raise AssertionError(arch)


def _routers(model):
    ad = get_adapter(model.config.model_type)
    return [s.module for s in ad.sites(model)]


def _deepseek_expected(cfg, logits, bias):
    """Sigmoid + correction bias, group-limited top-k (DeepSeek-V3 technical report, Sec. 2.1.2)."""
    s = 1 / (1 + np.exp(-logits.astype(np.float64)))
    choice = s + bias
    e, g = cfg.n_routed_experts, cfg.n_group
    grouped = choice.reshape(len(s), g, e // g)
    gscore = np.sort(grouped, axis=-1)[:, :, -2:].sum(-1)
    keep_groups = np.argsort(-gscore, axis=-1)[:, :cfg.topk_group]
    mask = np.zeros((len(s), g), bool)
    np.put_along_axis(mask, keep_groups, True, -1)
    choice = np.where(np.repeat(mask, e // g, axis=1), choice, -np.inf)
    ids = np.argsort(-choice, axis=-1)[:, :cfg.num_experts_per_tok]
    w = np.take_along_axis(s, ids, -1)
    if cfg.norm_topk_prob:
        w = w / (w.sum(-1, keepdims=True) + 1e-20)
    return ids, w * cfg.routed_scaling_factor


def _switch_expected(cfg, logits_bse):
    p = _softmax(logits_bse.astype(np.float64))
    arg = p.argmax(-1)                                   # (B, S)
    onehot = np.eye(cfg.num_experts, dtype=np.int64)[arg]
    priority = np.cumsum(onehot, axis=1)                 # per sequence, per expert
    kept = (priority * onehot).sum(-1) <= cfg.expert_capacity
    ids = np.where(kept, arg, -1).reshape(-1, 1)
    w = np.where(kept, p.max(-1), 0.0).reshape(-1, 1)
    return ids, w


def _sorted_pairs(ids, w):
    order = np.argsort(ids, axis=-1)
    return np.take_along_axis(ids, order, -1), np.take_along_axis(w, order, -1)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_recorded_ids_match_router(arch, tmp_path):
    model = tiny_model(arch, **({"expert_capacity": 2} if arch == "switch_transformers" else {}))
    torch.manual_seed(1)
    if arch == "deepseek_v3":  # make the correction bias matter
        for r in _routers(model):
            r.e_score_correction_bias.copy_(torch.randn(r.num_experts) * 0.3)
    ids_in = torch.randint(3, 99, (3, 7))
    mask = torch.ones_like(ids_in)
    mask[0, :2] = 0                                      # left padding in row 0
    kw = {"decoder_input_ids": ids_in[:, :3]} if arch == "switch_transformers" else {}
    path = tmp_path / "log"
    with RoutingRecorder(model, path, record_logits=True) as rec, torch.no_grad():
        out = model(input_ids=ids_in, attention_mask=mask, output_router_logits=True, **kw)
    assert rec.num_tokens_recorded == 21
    router_logits = out.encoder_router_logits if arch == "switch_transformers" else out.router_logits
    log = open_log(path)
    m = log.manifest
    assert m.source == f"torch:{rec.adapter.name}"
    assert m.score_function == rec.adapter.score_function
    data = log.read()
    assert log.num_tokens == 21
    np.testing.assert_array_equal(data["seq_id"], np.repeat([0, 1, 2], 7))
    np.testing.assert_array_equal(data["position"][:7], [0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(data["position"][7:14], np.arange(7))
    np.testing.assert_array_equal(data["valid"][:7], [0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(data["token_id"], ids_in.reshape(-1).numpy())
    assert len(router_logits) == len(m.layers) == 2
    routers = _routers(model)
    for i, spec in enumerate(m.layers):
        lg = router_logits[i].detach().float().numpy()
        got_ids = data["expert_ids"][spec.layer_id].astype(np.int64)
        got_w = data["gate_weights"][spec.layer_id]
        np.testing.assert_allclose(data["router_logits"][spec.layer_id], lg.reshape(-1, lg.shape[-1]),
                                   rtol=1e-6, atol=1e-6)
        if arch == "switch_transformers":
            exp_ids, exp_w = _switch_expected(model.config, lg)
            assert (exp_ids == -1).any(), "capacity 2 with 7 tokens per sequence must drop tokens"
        elif arch == "deepseek_v3":
            bias = routers[i].e_score_correction_bias.detach().numpy()
            exp_ids, exp_w = _deepseek_expected(model.config, lg, bias)
            got_ids, got_w = _sorted_pairs(got_ids, got_w)       # DeepSeek's top-k is unordered
            exp_ids, exp_w = _sorted_pairs(exp_ids, exp_w)
        else:
            exp_ids, exp_w = _expected(arch, model, lg)
        np.testing.assert_array_equal(got_ids, exp_ids)
        np.testing.assert_allclose(got_w, exp_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,expected", [
    ("mixtral", ("softmax", "descending", True)), ("qwen2_moe", ("softmax", "descending", False)),
    ("qwen3_moe", ("softmax", "descending", True)), ("olmoe", ("softmax", "descending", False)),
    ("granitemoe", ("topk_softmax", "descending", True)), ("gpt_oss", ("topk_softmax", "descending", True)),
    ("deepseek_v3", ("sigmoid", "unordered", True)), ("switch_transformers", ("softmax", "descending", False)),
])
def test_manifest_semantics(arch, expected, tmp_path):
    model = tiny_model(arch)
    with RoutingRecorder(model, tmp_path / "log"):
        pass
    m = open_log(tmp_path / "log").manifest
    assert (m.score_function, m.topk_order, m.norm_topk_prob) == expected
    assert m.metadata["adapter"].startswith(arch)
    assert "routing_rule" in m.metadata


def test_switch_decoder_layer_ids_are_offset(tmp_path):
    model = tiny_model("switch_transformers")
    ids = torch.randint(3, 99, (2, 5))
    with RoutingRecorder(model, tmp_path / "log", adapter="switch_transformers:decoder") as rec, torch.no_grad():
        model(input_ids=ids, decoder_input_ids=ids[:, :4])
    assert rec.layer_ids == [2, 3]                       # encoder has 2 blocks
    assert open_log(tmp_path / "log").num_tokens == 8   # decoder tokens


def test_unknown_model_type_lists_supported():
    with pytest.raises(ValueError, match="unknown model type 'llama'.*mixtral.*qwen3_moe"):
        get_adapter("llama")
    with pytest.raises(ValueError, match="unknown tiny architecture"):
        tiny_model("llama")


def test_auto_adapter_on_unsupported_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, vocab_size=99)
    model = transformers.LlamaForCausalLM(cfg)
    with pytest.raises(ValueError, match="unknown model type 'llama'; supported: deepseek_v3"):
        RoutingRecorder(model, tmp_path / "log")
    assert not (tmp_path / "log").exists()


def test_every_supported_type_has_a_tiny_model():
    base = {k.split(":")[0] for k in ADAPTERS}
    assert base == set(TINY_ARCHS)


def _version(dist):
    from importlib import metadata
    return metadata.version(dist)


@pytest.mark.parametrize("arch", ["mixtral", "deepseek_v3"])
def test_renamed_router_class_fails_loudly_naming_the_version(arch, tmp_path):
    # upstream drift: transformers renames the router class -> no router found, the message says which
    # transformers is installed and which range the adapters are written for
    model = tiny_model(arch)
    for r in _routers(model):
        r.__class__ = type(type(r).__name__ + "V2", (type(r),), {})
    with pytest.raises(ValueError, match="found no router modules") as err:
        RoutingRecorder(model, tmp_path / "log")
    assert f"transformers {_version('transformers')}" in str(err.value)
    assert "transformers >=5.0,<6" in str(err.value)


def test_changed_router_output_fails_loudly_naming_the_version(tmp_path):
    # upstream drift: the router returns (logits, indices) instead of (logits, scores, indices)
    from infomoe.logs.export import RouterSignatureError

    model = tiny_model("olmoe")
    for r in _routers(model):
        orig = r.forward
        r.forward = lambda h, _orig=orig: (_orig(h)[0], _orig(h)[2])
    with pytest.raises(RouterSignatureError, match="returned a tuple of 2") as err:
        with RoutingRecorder(model, tmp_path / "log"), torch.no_grad():
            model(input_ids=torch.randint(3, 99, (1, 4)))
    assert f"transformers {_version('transformers')}" in str(err.value)


def test_installed_versions_are_in_the_supported_range():
    # fails loudly when pip serves a torch/transformers release outside the range setup.cfg states
    from infomoe.logs.export._adapter import SUPPORTED_UPSTREAM
    tv = tuple(int(x) for x in _version("transformers").split(".")[:1])
    assert tv[0] == 5, (f"transformers {_version('transformers')} is outside the supported range "
                        f"({SUPPORTED_UPSTREAM}); check the adapters and update setup.cfg")
    pt = tuple(int(x) for x in _version("torch").split("+")[0].split(".")[:2])
    assert (2, 4) <= pt < (3, 0), f"torch {_version('torch')} is outside {SUPPORTED_UPSTREAM}"


def test_adapter_modules_import_one_way():
    # the interface (_adapter) <- the Hugging Face table (_hf) <- the recorder (_torch); no cycle back
    import pathlib
    import re
    here = pathlib.Path(__file__).resolve().parents[3] / "infomoe" / "logs" / "export"
    imports = {name: set(re.findall(r"from infomoe\.logs\.export\.(\w+) import", (here / f"{name}.py").read_text()))
               for name in ("_adapter", "_hf", "_torch")}
    assert imports["_adapter"] == set()
    assert imports["_hf"] <= {"_adapter"}
    assert "_torch" not in imports["_hf"] | imports["_adapter"]
