"""Importers: convert routing records of serving and training stacks into routing logs.

* :func:`import_sglang` -- SGLang expert-distribution dumps (``stat`` ->
  aggregate count records, ``per_pass`` -> count windows per forward pass,
  ``per_token`` -> token shards), loaded with
  ``torch.load(weights_only=True)``; physical ids mapped to logical ones.
* :func:`import_sglang_requests` -- SGLang per-request routed experts
  (``meta_info["routed_experts"]``).
* :func:`import_vllm` -- vLLM ``routed_experts`` arrays, one per request.
* :func:`import_megatron` -- Megatron-Core router-trace JSONL plus the
  optional bfloat16 logits sidecar (read without torch).
* :func:`import_megatron_requests` -- Megatron inference ``routing_indices``
  and the completions endpoint's ``moe_topk_indices``.

Each returns an :class:`ImportResult`; each documents how per-rank dumps are
merged without double counting.  ``docs/ingest.md`` has the per-stack table of
what is imported and how ids, layers, positions and order are mapped.

Facade convention (:mod:`infomoe._facade`): eager.  Importing this package
imports neither torch nor JAX.
"""

from infomoe import _facade
from infomoe.logs.ingest._common import ImportResult as ImportResult
from infomoe.logs.ingest._megatron import import_megatron as import_megatron
from infomoe.logs.ingest._megatron import import_megatron_requests as import_megatron_requests
from infomoe.logs.ingest._megatron import read_bf16 as read_bf16
from infomoe.logs.ingest._requests import moe_layers_from_config as moe_layers_from_config
from infomoe.logs.ingest._sglang import decode_routed_experts as decode_routed_experts
from infomoe.logs.ingest._sglang import import_sglang as import_sglang
from infomoe.logs.ingest._sglang import import_sglang_requests as import_sglang_requests
from infomoe.logs.ingest._sglang import load_sglang_dump as load_sglang_dump
from infomoe.logs.ingest._vllm import import_vllm as import_vllm

__all__ = _facade.public_names(globals())
