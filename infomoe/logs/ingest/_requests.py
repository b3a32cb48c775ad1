"""The importer skeleton for per-request routing arrays (vLLM, SGLang, Megatron inference).

Serving stacks that return the experts of each request give one integer
array ``[rows, num_layers, top_k]`` per request, row ``j`` belonging to the
token at position ``start + j`` of the request's ``prompt + output`` token ids
(the last sampled token is never routed).  Every such importer does the same
four things, which live here once:

1. *load*: the stack-specific code turns each item into a :class:`Request`
   (ids as ``int64``, the position of row 0, the full token ids or ``None``);
2. *records*: :func:`moe_layer_axis` decides which entries of the layer axis
   are MoE layers (named by the user, read from the model config, or
   detected: upstream buffers are zero-initialised, so a dense layer is all
   ``0``), and :func:`clean_ids` turns sentinels into ``-1``;
3. *shared writer*: :func:`write_requests` writes them, grouped into shards,
   into a staged (all-or-nothing) log;
4. *result*: an :class:`~infomoe.logs.ingest.ImportResult`.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from infomoe._validate import describe
from infomoe.logs.ingest._common import (
    INT32_MAX,
    INT64_MAX,
    ImportResult,
    check_int,
    check_layer_ids,
    int_array,
    write_log,
)

__all__ = ["Request", "SENTINELS", "clean_ids", "moe_layers_from_config", "moe_layer_axis", "write_requests",
           "request_items", "per_request", "request_ids_and_labels", "row_offsets"]

#: Values that mark an empty slot rather than an expert: ``-1`` (int32 padding), ``255`` and ``65535``
#: (``-1`` or a "no expert" fill stored as uint8/uint16, SGLang #9499-style shared/padded slots).  They
#: are dropped (``-1`` in the log) only when they are not a valid expert id of the layer.
SENTINELS = (-1, 255, 65535)


@dataclass
class Request:
    """One request's routing rows, as the shared writer takes them.

    Attributes
    ----------
    ids : ndarray, int64 ``[rows, num_layers, top_k]``
        Expert ids (the full layer axis of the source).
    start : int
        Position (index into the request's token ids) of row 0.
    tokens : ndarray or None
        All token ids of the request (prompt + output), indexed by position.
    seq_id : int
        The request's ``seq_id`` in the log.
    label : int or None
        Its label (``-1``: unlabelled).
    where : str
        How error messages name it.
    """

    ids: np.ndarray
    start: int
    tokens: Optional[np.ndarray]
    seq_id: int
    label: Optional[int]
    where: str


def clean_ids(a: np.ndarray, num_experts: int, where: str) -> np.ndarray:
    """Map sentinel slots (:data:`SENTINELS` beyond ``num_experts - 1``) to ``-1``; refuse other bad ids.

    Examples
    --------
    >>> clean_ids(np.array([[3, 255], [-1, 0]]), 8, "ids").tolist()
    [[3, -1], [-1, 0]]
    >>> clean_ids(np.array([[9]]), 8, "ids")
    Traceback (most recent call last):
    ...
    ValueError: ids has an expert id outside [-1, 8): 9 at index [0, 0] (not a sentinel either: -1, 255, 65535).
    """
    a = np.asarray(a, dtype=np.int64)
    sentinel = np.isin(a, SENTINELS) & ((a < 0) | (a >= num_experts))
    bad = ~sentinel & ((a < 0) | (a >= num_experts))
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]]
        raise ValueError(f"{where} has an expert id outside [-1, {num_experts}): {int(a[tuple(idx)])} at index "
                         f"{idx} (not a sentinel either: {', '.join(map(str, SENTINELS))}).")
    return np.where(sentinel, -1, a)


def _cfg_get(cfg, key, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def moe_layers_from_config(config) -> list:
    """Indices of the MoE layers among ``num_hidden_layers``, from a Hugging Face model config.

    ``config`` is a ``transformers`` config object or its ``to_dict()``
    (``text_config`` is used when present).  Rules, as the modelling code
    of ``transformers`` 5 applies them: DeepSeek-V2/V3, Kimi, GLM-4-MoE
    (``first_k_dense_replace``, ``moe_layer_freq``): layer ``l`` is MoE if
    ``l >= first_k_dense_replace and l % moe_layer_freq == 0``; Qwen-MoE
    (``decoder_sparse_step``, ``mlp_only_layers``): if ``l not in
    mlp_only_layers and (l + 1) % decoder_sparse_step == 0``; otherwise
    (Mixtral, OLMoE, GPT-OSS, Qwen3-MoE without those fields) every layer.

    Examples
    --------
    >>> moe_layers_from_config({"num_hidden_layers": 4, "first_k_dense_replace": 1, "moe_layer_freq": 1})
    [1, 2, 3]
    >>> moe_layers_from_config({"num_hidden_layers": 4, "decoder_sparse_step": 2, "mlp_only_layers": []})
    [1, 3]
    """
    text = _cfg_get(config, "text_config")
    if text is not None and _cfg_get(text, "num_hidden_layers") is not None:
        config = text
    n = check_int(_cfg_get(config, "num_hidden_layers"), "model config 'num_hidden_layers'", minimum=1,
                  maximum=10**6)
    first = _cfg_get(config, "first_k_dense_replace")
    freq = _cfg_get(config, "moe_layer_freq")
    step = _cfg_get(config, "decoder_sparse_step")
    mlp_only = _cfg_get(config, "mlp_only_layers")
    if first is not None or isinstance(freq, numbers.Integral):
        first = check_int(first or 0, "model config 'first_k_dense_replace'", minimum=0)
        freq = check_int(freq if freq is not None else 1, "model config 'moe_layer_freq'", minimum=1)
        return [l for l in range(n) if l >= first and l % freq == 0]
    if step is not None or mlp_only is not None:
        step = check_int(step if step is not None else 1, "model config 'decoder_sparse_step'", minimum=1)
        dense = set(check_layer_ids(list(mlp_only or []), "model config 'mlp_only_layers'"))
        return [l for l in range(n) if l not in dense and (l + 1) % step == 0]
    return list(range(n))


def moe_layer_axis(requests: Sequence[Request], *, moe_layers=None, layer_ids=None,
                   detect_dense: bool = True) -> tuple:
    """Which entries of the layer axis to keep, and the layer id each gets.

    Parameters
    ----------
    requests : sequence of Request
        All requests (the layer axis must agree).
    moe_layers : sequence of int, model config or None
        Axis indices of the MoE layers, or a model config (see
        :func:`moe_layers_from_config`).  They also become the layer ids.
    layer_ids : sequence of int, optional
        A layer id for every entry of the axis (all entries kept).
    detect_dense : bool
        With neither given: drop entries that are ``0`` in every row and
        column of every request (what upstream writes for a dense layer;
        impossible for a MoE layer with ``top_k >= 2``, whose columns are
        distinct experts).

    Returns
    -------
    (axis, ids, how) : list of int, list of int, str
    """
    n_axis, k = requests[0].ids.shape[1:]
    if moe_layers is not None and layer_ids is not None:
        raise ValueError("pass either `moe_layers` or `layer_ids`, not both.")
    if moe_layers is not None:
        if isinstance(moe_layers, (list, tuple, range, np.ndarray)):
            axis = check_layer_ids(list(moe_layers), "`moe_layers`")
            how = "moe_layers"
        else:
            axis = moe_layers_from_config(moe_layers)
            how = "model config"
        out = [a for a in axis if a >= n_axis]
        if out:
            raise ValueError(f"`moe_layers` names layers {out}, but the routed-experts arrays have {n_axis} "
                             f"layers (axis indices 0..{n_axis - 1}).")
        return sorted(axis), sorted(axis), how
    if layer_ids is not None:
        if isinstance(layer_ids, (str, bytes)) or not hasattr(layer_ids, "__len__"):
            raise TypeError(f"`layer_ids` must be a sequence of layer ids, got {describe(layer_ids)}.")
        lids = check_layer_ids(list(layer_ids), "`layer_ids`")
        if len(lids) != n_axis:
            raise ValueError(f"`layer_ids` has {len(lids)} entries, routed_experts of {requests[0].where} has "
                             f"{n_axis} layers.")
        return list(range(n_axis)), lids, "layer_ids"
    axis = list(range(n_axis))
    if detect_dense and k >= 2:
        nonzero = np.zeros(n_axis, bool)
        rows = 0
        for r in requests:
            nonzero |= (r.ids != 0).any(axis=(0, 2))
            rows += r.ids.shape[0]
        if rows:
            axis = [a for a in axis if nonzero[a]]
        return axis, list(axis), "detected (all-zero layers are dense)"
    return axis, list(axis), "all"


def write_requests(requests: Sequence[Request], out, *, source: str, num_experts: int, axis: Sequence[int],
                   layer_ids: Sequence[int], shard_tokens: int, model_id, score_function: str,
                   topk_order: str, metadata: dict) -> ImportResult:
    """Write requests (rows of the kept ``axis`` entries, named ``layer_ids``) into a staged log.

    ``position`` = ``start + row``; ``token_id`` = ``tokens[start + row]``
    when the request has token ids; ``seq_id`` and ``label`` per request.
    """
    from infomoe.logs import LayerSpec

    if not axis:
        raise ValueError(f"no MoE layer left among the {requests[0].ids.shape[1]} layers of the routed-experts "
                         "arrays (all are all-zero, i.e. dense); name them with `moe_layers`.")
    k = requests[0].ids.shape[2]
    if k > num_experts:
        raise ValueError(f"{requests[0].where}: routed_experts has topk={k} > `num_experts`={num_experts}.")
    with_tokens = requests[0].tokens is not None
    prepared = []
    for r in requests:
        if (r.tokens is not None) != with_tokens:
            raise ValueError(f"token ids are available for some requests but not others ({r.where} "
                             f"{'has' if r.tokens is not None else 'has none'}).")
        n = r.ids.shape[0]
        if r.start + n > INT32_MAX:
            raise ValueError(f"{r.where}: positions up to {r.start + n - 1} exceed the int32 position column.")
        if with_tokens and r.tokens.shape[0] < r.start + n:
            raise ValueError(f"{r.where}: {r.tokens.shape[0]} token ids for {n} routed rows starting at "
                             f"position {r.start} (need at least {r.start + n}).")
        ids = clean_ids(r.ids[:, axis, :], num_experts, f"{r.where}: routed_experts")
        prepared.append((r, ids))
    meta = dict(metadata)
    meta.setdefault("layer_axis", [int(a) for a in axis])

    def shard(pending):
        cols = {key: (np.concatenate([p[key] for p in pending]) if key in pending[0] else None)
                for key in ("ids", "seq", "pos", "tok", "lab")}
        return cols["ids"], {"seq_id": cols["seq"], "position": cols["pos"], "token_id": cols["tok"],
                             "label": cols["lab"]}

    def blocks():
        pending, pending_n = [], 0
        for r, ids in prepared:
            n = ids.shape[0]
            if n == 0:
                continue
            col = {"ids": ids, "seq": np.full(n, r.seq_id, np.int64),
                   "pos": np.arange(r.start, r.start + n, dtype=np.int64)}
            if with_tokens:
                col["tok"] = r.tokens[r.start:r.start + n]
            if r.label is not None:
                col["lab"] = np.full(n, r.label, np.int64)
            pending.append(col)
            pending_n += n
            if pending_n >= shard_tokens:
                yield shard(pending)
                pending, pending_n = [], 0
        if pending:
            yield shard(pending)

    layers = [LayerSpec(l, num_experts, k) for l in layer_ids]
    tokens, _, shards = write_log(out, source=source, layers=layers, blocks=blocks(), model_id=model_id,
                                  score_function=score_function, topk_order=topk_order, metadata=meta)
    return ImportResult(str(out), tokens, 0, shards, 0)


def request_ids_array(value, where: str) -> np.ndarray:
    """A request's routed-experts value as ``int64 [rows, layers, k]`` (sentinels kept for :func:`clean_ids`)."""
    return int_array(value, f"{where}: routed_experts [seq_len, layer_num, topk]", ndim=3, minimum=-1)


def request_items(value, name: str) -> list:
    """The per-request items of an importer's first argument, as a non-empty list."""
    if isinstance(value, (str, bytes, os.PathLike, dict)) or not isinstance(value, Iterable):
        raise TypeError(f"`{name}` must be a list with one item per request, got {describe(value)}.")
    items = list(value)
    if not items:
        raise ValueError(f"`{name}` is empty; at least one request is needed.")
    return items


def per_request(seq, name: str, n: int):
    """`seq` checked to be a sequence of one entry per request (None stays None)."""
    if seq is None:
        return None
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__") or not hasattr(seq, "__getitem__"):
        raise TypeError(f"`{name}` must be a sequence with one entry per request, got {describe(seq)}.")
    if len(seq) != n:
        raise ValueError(f"`{name}` has {len(seq)} entries for {n} requests.")
    return seq


def request_ids_and_labels(request_ids, labels, n: int):
    """The optional ``request_ids`` (distinct, >= 0) and ``labels`` (>= -1) of `n` requests, as int lists."""
    request_ids = per_request(request_ids, "request_ids", n)
    labels = per_request(labels, "labels", n)
    if request_ids is not None:
        request_ids = [check_int(x, f"`request_ids`[{i}]", minimum=0, maximum=INT64_MAX)
                       for i, x in enumerate(request_ids)]
        if len(set(request_ids)) != n:
            raise ValueError("`request_ids` must be distinct.")
    if labels is not None:
        labels = [check_int(x, f"`labels`[{i}]", minimum=-1, maximum=INT32_MAX) for i, x in enumerate(labels)]
    return request_ids, labels


def row_offsets(value, name: str, n: int):
    """Position of row 0 of each of `n` requests: one int for all, or one per request (None stays None)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        return [check_int(value, f"`{name}`", minimum=0, maximum=INT32_MAX)] * n
    return [check_int(x, f"`{name}`[{i}]", minimum=0, maximum=INT32_MAX)
            for i, x in enumerate(per_request(value, name, n))]
