"""Hugging Face transformers (5.x) router adapters and tiny random-config models.

One :class:`~infomoe.logs.export.RouterAdapter` per supported model type.
Module names and outputs follow transformers 5.23
(``transformers/models/<model>/modeling_<model>.py``):

* ``mixtral``: ``MixtralTopKRouter`` at ``model.layers.i.mlp.gate``; softmax
  over all experts, top-k, renormalised.
* ``qwen2_moe``, ``qwen3_moe``, ``olmoe``: ``*TopKRouter`` at ``mlp.gate``;
  softmax over all experts, top-k, renormalised iff ``norm_topk_prob``.
* ``granitemoe``: ``GraniteMoeTopKRouter`` at ``block_sparse_moe.router``;
  top-k of the logits, softmax over the k (``topk_softmax``).
* ``gpt_oss``: ``GptOssTopKRouter`` at ``mlp.router``; top-k of the logits
  (with bias), softmax over the k.
* ``deepseek_v3``: ``DeepseekV3TopkRouter`` at ``mlp.gate``; sigmoid scores
  plus ``e_score_correction_bias``, group-limited, unordered top-k; weights
  are the chosen sigmoid scores (renormalised iff ``norm_topk_prob``) times
  ``routed_scaling_factor`` -- not recomputable from the logits alone.
* ``switch_transformers``: ``SwitchTransformersTop1Router`` at
  ``encoder.block.i.layer.1.mlp.router`` (``switch_transformers:decoder``:
  ``decoder.block.j.layer.2.mlp.router``, layer id ``num_layers + j``);
  softmax, top-1, per-sequence expert capacity.

Every ``*TopKRouter`` returns ``(router_logits, scores, indices)``; the
recorder reads ``indices`` (element 2) and ``scores`` (element 1), the
values the experts consume.  The Switch router returns
``(expert_index, router_probs, router_logits)`` where ``expert_index`` is a
one-hot ``(batch, seq, E)`` dispatch mask with capacity overflow already
zeroed: a token whose row is all zero was dropped and is recorded as expert
``-1`` with gate weight ``0``.
"""

from __future__ import annotations

from typing import Any

from infomoe.logs.export._adapter import RouterAdapter

__all__ = ["ADAPTERS", "get_adapter", "resolve_adapter", "tiny_config", "tiny_model", "TINY_ARCHS"]


def _cfg(model):
    return getattr(model, "config", None)


def _norm_from_config(default=None):
    def f(model):
        return getattr(_cfg(model), "norm_topk_prob", default)
    return f


def _switch_convert(module, output):
    import torch

    onehot, max_prob, logits = output
    flat = onehot.reshape(-1, onehot.shape[-1])
    kept = flat.sum(-1) > 0
    ids = torch.where(kept, flat.argmax(-1), torch.full_like(kept, -1, dtype=torch.long)).reshape(-1, 1)
    w = torch.where(kept, max_prob.reshape(-1).float(), torch.zeros((), dtype=torch.float32,
                                                                     device=max_prob.device)).reshape(-1, 1)
    return ids, w, logits.reshape(flat.shape[0], -1)


def _build_adapters():
    def deepseek_meta(model):
        c = _cfg(model)
        return {"routed_scaling_factor": getattr(c, "routed_scaling_factor", None),
                "n_group": getattr(c, "n_group", None), "topk_group": getattr(c, "topk_group", None),
                "routing_rule": "sigmoid(logits) + e_score_correction_bias, group-limited top-k; "
                                "gate weights = sigmoid scores of the chosen experts"
                                + (" renormalised" if getattr(c, "norm_topk_prob", False) else "")
                                + " times routed_scaling_factor"}

    def softmax_meta(model):
        return {"routing_rule": "softmax over all experts, top-k"}

    def logit_topk_meta(model):
        return {"routing_rule": "top-k of the logits, softmax over the k selected"}

    ad = {
        "mixtral": RouterAdapter(
            "mixtral", ("MixtralTopKRouter",), score_function="softmax", topk_order="descending",
            norm_topk_prob=True, metadata=softmax_meta),
        "qwen2_moe": RouterAdapter(
            "qwen2_moe", ("Qwen2MoeTopKRouter",), score_function="softmax", topk_order="descending",
            norm_topk_prob=_norm_from_config(False), metadata=softmax_meta),
        "qwen3_moe": RouterAdapter(
            "qwen3_moe", ("Qwen3MoeTopKRouter",), score_function="softmax", topk_order="descending",
            norm_topk_prob=_norm_from_config(False), metadata=softmax_meta),
        "olmoe": RouterAdapter(
            "olmoe", ("OlmoeTopKRouter",), score_function="softmax", topk_order="descending",
            norm_topk_prob=_norm_from_config(False), metadata=softmax_meta),
        "granitemoe": RouterAdapter(
            "granitemoe", ("GraniteMoeTopKRouter",), score_function="topk_softmax",
            topk_order="descending", norm_topk_prob=True, metadata=logit_topk_meta),
        "gpt_oss": RouterAdapter(
            "gpt_oss", ("GptOssTopKRouter",), score_function="topk_softmax", topk_order="descending",
            norm_topk_prob=True, metadata=logit_topk_meta),
        "deepseek_v3": RouterAdapter(
            "deepseek_v3", ("DeepseekV3TopkRouter",), score_function="sigmoid", topk_order="unordered",
            norm_topk_prob=_norm_from_config(True), metadata=deepseek_meta),
    }
    for stack in ("encoder", "decoder"):
        def layer_id(model, name):
            import re
            m = re.search(r"(encoder|decoder)\.block\.(\d+)\.", name)
            if m is None:  # pragma: no cover - defensive
                raise ValueError(f"unexpected Switch Transformers router name {name!r}")
            off = int(getattr(_cfg(model), "num_layers", 0) or 0) if m.group(1) == "decoder" else 0
            return int(m.group(2)) + off

        def match(name, module, _stack=stack):
            return (type(module).__name__ == "SwitchTransformersTop1Router"
                    and (name.startswith(_stack + ".") or f".{_stack}." in name))

        def input_module(model, _stack=stack):
            return model.get_encoder() if _stack == "encoder" else model.get_decoder()

        ad[f"switch_transformers:{stack}"] = RouterAdapter(
            f"switch_transformers:{stack}", ("SwitchTransformersTop1Router",), match=match,
            convert=_switch_convert, num_experts=lambda m: m.num_experts, top_k=lambda m: 1,
            score_function="softmax", topk_order="descending", norm_topk_prob=False,
            layer_id=layer_id, input_module=input_module,
            metadata=lambda model, _stack=stack: {
                "stack": _stack, "expert_capacity": getattr(_cfg(model), "expert_capacity", None),
                "routing_rule": "softmax, top-1 (argmax), per-sequence expert capacity; dropped -> -1, "
                                "gate weight 0; decoder layer ids are offset by the encoder's num_layers"})
    ad["switch_transformers"] = ad["switch_transformers:encoder"]
    return ad


#: ``{model_type: RouterAdapter}`` for the supported Hugging Face models
#: (``"switch_transformers"`` records the encoder; ``"switch_transformers:decoder"`` the decoder).
ADAPTERS = _build_adapters()


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS.keys())


def get_adapter(model_type: str):
    """The adapter for a Hugging Face ``model_type`` (ValueError listing the supported ones)."""
    if not isinstance(model_type, str) or model_type not in ADAPTERS:
        raise ValueError(f"unknown model type {model_type!r}; supported: {', '.join(supported_model_types())}. "
                         "For other models pass adapter=RouterAdapter(...).")
    return ADAPTERS[model_type]


def resolve_adapter(adapter: Any, model):
    """``"auto"`` -> adapter for ``model.config.model_type``; a name -> that adapter; an adapter -> itself."""
    if isinstance(adapter, RouterAdapter):
        ad = adapter
    elif adapter == "auto":
        mt = getattr(_cfg(model), "model_type", None)
        if mt is None:
            raise ValueError(f"adapter='auto' needs `model.config.model_type`; {type(model).__name__} has none. "
                             f"Pass adapter=RouterAdapter(...) or one of: {', '.join(supported_model_types())}.")
        ad = get_adapter(mt)
    elif isinstance(adapter, str):
        ad = get_adapter(adapter)
    else:
        raise TypeError(f"`adapter` must be 'auto', a model type name or a RouterAdapter, got {adapter!r}.")
    return ad


# -- tiny random-config models (no download) ----------------------------------

_COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
               vocab_size=99, intermediate_size=16, max_position_embeddings=64,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)
_TINY = {
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                      shared_expert_intermediate_size=16, norm_topk_prob=False),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, head_dim=8,
                      norm_topk_prob=True),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2),
    "granitemoe": dict(num_local_experts=4, num_experts_per_tok=2),
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, head_dim=8,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "deepseek_v3": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=16, n_group=2,
                        topk_group=1, first_k_dense_replace=0, kv_lora_rank=8, q_lora_rank=8,
                        qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, n_shared_experts=1,
                        norm_topk_prob=True, routed_scaling_factor=2.5),
}
_SWITCH = dict(d_model=32, d_ff=16, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=8, vocab_size=99,
               num_experts=4, expert_capacity=4, num_sparse_encoder_layers=2, num_sparse_decoder_layers=2,
               pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

#: Architectures :func:`tiny_model` can build.
TINY_ARCHS = tuple(sorted(list(_TINY) + ["switch_transformers"]))


def tiny_config(arch: str, **overrides):
    """A tiny random-init config (hidden 32, 2 layers, 4 heads, vocab 99) for ``arch``; no download."""
    from transformers import AutoConfig

    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; supported: {', '.join(TINY_ARCHS)}.")
    if arch == "switch_transformers":
        kw = dict(_SWITCH)
    else:
        kw = dict(_COMMON)
        kw.update(_TINY[arch])
    kw.update(overrides)
    return AutoConfig.for_model(arch, **kw)


def tiny_model(arch: str, *, seed: int = 0, **overrides):
    """Build a tiny random-init model of ``arch`` on CPU in eval mode (no download).

    Examples
    --------
    >>> from infomoe.logs.export import tiny_model
    >>> type(tiny_model("olmoe")).__name__
    'OlmoeForCausalLM'
    """
    import torch
    import transformers

    cfg = tiny_config(arch, **overrides)
    torch.manual_seed(seed)
    if arch == "switch_transformers":
        model = transformers.SwitchTransformersForConditionalGeneration(cfg)
    else:
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return model.eval()
