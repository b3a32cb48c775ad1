"""Import vLLM ``routed_experts`` arrays (``--enable-return-routed-experts``).

With the flag on, each ``CompletionOutput`` carries ``routed_experts``: an
integer array ``[seq_len, num_hidden_layers, top_k]`` (``uint8`` up to 256
experts, else ``uint16``; ``RoutedExpertsCapturer.snapshot_routing_data`` in
``vllm/model_executor/layers/fused_moe/routed_experts_capturer.py``, vLLM
0.33.0) with the logical experts that routed every token of the request from
``SamplingParams.routed_experts_prompt_start`` on (prompt and generated
tokens; dense layers are rows of ``0``).

Every array and argument is checked before it is used (integers only, never
truncated or wrapped; ranges of the log columns), and errors name the
request and the field.  The log is assembled beside its destination and moved
into place only when complete, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from infomoe._validate import describe
from infomoe.logs.ingest._common import (
    INT32_MAX,
    ImportResult,
    check_int,
    check_num_experts,
    int_array,
)
from infomoe.logs.ingest._requests import (Request, clean_ids, moe_layer_axis, per_request, request_ids_and_labels,
                                          request_ids_array, request_items, row_offsets, write_requests)

__all__ = ["import_vllm"]


def _tokens(value, where: str) -> np.ndarray:
    return int_array(value, where, ndim=1, minimum=0, maximum=INT32_MAX)


def _load_npy(path, where: str) -> np.ndarray:
    """Read a ``.npy`` file of integers; header, dtype and size checked before anything is allocated."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: the .npy file does not exist.")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # any failure to parse the header (ValueError, SyntaxError, TokenError...)
            raise ValueError(f"{where}: not a readable .npy file ({type(exc).__name__}: {exc}); routed_experts "
                             "files hold one integer array saved with np.save.") from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "iu":
            raise TypeError(f"{where}: routed_experts must hold integers, the file holds dtype {dtype}.")
        count = math.prod(shape)
        need = count * dtype.itemsize                     # Python ints: no overflow
        have = os.fstat(f.fileno()).st_size - f.tell()
        if have != need:
            raise ValueError(f"{where}: the .npy file holds {have} bytes of data, its header {tuple(shape)} "
                             f"{dtype} needs {need}; the file is truncated or corrupted.")
        data = np.fromfile(f, dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran else "C")


def _routed(item, i):
    """(routed_experts array, token ids or None, prompt start or None, where) from one request item."""
    where = f"request {i}"
    tokens = start = None
    if isinstance(item, (str, os.PathLike)):
        where = f"request {i} ({os.fspath(item)})"
        arr = _load_npy(item, where)
    elif isinstance(item, dict):  # a JSON-friendly record (fixtures, serialized outputs)
        if "routed_experts" not in item:
            raise ValueError(f"{where}: the dict has no 'routed_experts' key (keys: {sorted(map(str, item))[:10]}).")
        arr = item["routed_experts"]
        parts = [_tokens(item[name], f"{where}: {name!r}") for name in ("prompt_token_ids", "token_ids")
                 if item.get(name) is not None]
        tokens = np.concatenate(parts) if parts else None
        if item.get("routed_experts_prompt_start") is not None:
            start = check_int(item["routed_experts_prompt_start"], f"{where}: 'routed_experts_prompt_start'",
                              minimum=0, maximum=INT32_MAX)
    elif hasattr(item, "outputs") and not hasattr(item, "routed_experts"):  # RequestOutput
        outs = item.outputs
        if not isinstance(outs, (list, tuple)) or not outs:
            raise ValueError(f"{where}: `outputs` must be a non-empty list of completions, got {describe(outs)}.")
        comp = outs[0]
        arr = getattr(comp, "routed_experts", None)
        prompt = getattr(item, "prompt_token_ids", None)
        generated = getattr(comp, "token_ids", None)
        parts = [_tokens(x, f"{where}: {name}") for x, name in
                 ((prompt, "prompt_token_ids"), (generated, "outputs[0].token_ids")) if x is not None]
        tokens = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    elif hasattr(item, "routed_experts"):  # CompletionOutput
        arr = item.routed_experts
    else:
        arr = item
    if arr is None:
        raise ValueError(f"{where} has no routed_experts; start vLLM with --enable-return-routed-experts.")
    return request_ids_array(arr, where), tokens, start, where


def import_vllm(outputs: Iterable, out, *, num_experts: int, moe_layers=None,
                layer_ids: Optional[Sequence[int]] = None, prompt_start=None,
                request_ids: Optional[Sequence[int]] = None, token_ids: Optional[Sequence] = None,
                labels: Optional[Sequence[int]] = None, shard_tokens: int = 1 << 20,
                model_id: Optional[str] = None, score_function: str = "unknown",
                metadata: Optional[dict] = None) -> ImportResult:
    """Convert per-request vLLM ``routed_experts`` arrays into a routing log.

    Parameters
    ----------
    outputs : iterable
        One item per request: an integer array ``[seq_len, num_hidden_layers,
        topk]`` (``uint8``/``uint16`` as vLLM returns it, or any integer
        dtype), a path to a ``.npy`` file holding one (its header is parsed as a
        literal, never unpickled, and checked against the file size), a
        ``CompletionOutput``, a ``RequestOutput`` (its first completion; token
        ids are then ``prompt_token_ids + outputs[0].token_ids``), or a dict
        with ``routed_experts`` and optionally ``prompt_token_ids``,
        ``token_ids`` and ``routed_experts_prompt_start``.
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    num_experts : int
        Routed experts per MoE layer (vLLM's array does not record it).
    moe_layers : sequence of int or model config, optional
        Which entries of the layer axis are MoE layers: their indices
        (``0..num_hidden_layers-1``, which also become the log's layer ids),
        or the model's Hugging Face config (object or dict; see
        :func:`~infomoe.logs.ingest.moe_layers_from_config`).  Default:
        entries that are ``0`` in every row of every request are dense layers
        and are left out (only decidable for ``topk >= 2``; with ``topk = 1``
        every entry is kept).
    layer_ids : sequence of int, optional
        Instead of `moe_layers`: keep every entry of the layer axis and name
        it with these ids (distinct, in ``[0, 999999999]``).
    prompt_start : int or sequence of int, optional
        vLLM's ``SamplingParams.routed_experts_prompt_start`` of each request
        (one int for all, or one per request; default 0, or the dict item's
        ``routed_experts_prompt_start``): row ``j`` is the token at position
        ``prompt_start + j``.
    request_ids : sequence of int, optional
        ``seq_id`` of each request (default ``0, 1, ...``); distinct, >= 0.
    token_ids : sequence of arrays, optional
        All token ids (prompt + output) of each request; row ``j`` gets
        ``token_ids[prompt_start + j]``.
    labels : sequence of int, optional
        One label/domain per request (``-1`` for unlabelled).
    shard_tokens : int
        Requests are grouped into shards of about this many tokens.
    model_id, score_function, metadata
        Manifest fields.

    Returns
    -------
    ImportResult

    Raises
    ------
    TypeError, ValueError
        Naming the request (and file) and field: routed_experts that is not
        a 3-D integer array (floats and bools are refused, never truncated;
        ``uint64`` values beyond ``int64`` are refused, never wrapped to
        ``-1``), an expert id outside ``[0, num_experts)`` that is not a
        sentinel, requests that disagree on ``[layer_num, topk]``, too few
        token ids for the rows, an argument of the wrong type, length or
        range.  Nothing is written then.

    Notes
    -----
    Row ``j`` of a request becomes a token with ``seq_id`` = the request id,
    ``position = prompt_start + j`` and ``token_id`` = the token id at that
    position.  The layer axis of vLLM's array counts *all* hidden layers
    (``model_config.get_total_num_hidden_layers()``), and its buffer is
    zero-initialised, so dense layers read as "every token to expert 0":
    they are left out as described under `moe_layers`.  Ids are logical
    expert ids.  Sentinel slots (``-1``, or ``255``/``65535`` when not a valid
    id) are dropped (``-1``).  vLLM's grouped and biased top-k use
    ``torch.topk(sorted=False)`` and the array carries no weights, so the
    manifest says ``topk_order="unordered"``.  Requests are independent
    outputs, so nothing is merged or deduplicated.

    Examples
    --------
    Two hidden layers, the first dense (all zeros, as vLLM returns it), and a
    prompt start of 1:

    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import open_log
    >>> routed = np.array([[[0, 0], [3, 1]], [[0, 0], [2, 0]]], np.uint8)   # [seq_len, layers, topk]
    >>> req = {"routed_experts": routed, "prompt_token_ids": [7, 8, 9], "token_ids": [5],
    ...        "routed_experts_prompt_start": 1}
    >>> out = os.path.join(tempfile.mkdtemp(), "log")
    >>> import_vllm([req], out, num_experts=4).num_tokens
    2
    >>> log = open_log(out)
    >>> log.layer_ids, log.read()["position"].tolist(), log.read()["token_id"].tolist()
    ((1,), [1, 2], [8, 9])
    """
    from infomoe._validate import check_positive_int

    num_experts = check_num_experts(num_experts, "`num_experts`")
    shard_tokens = check_positive_int(shard_tokens, "shard_tokens")
    items = request_items(outputs, "outputs")
    token_ids = per_request(token_ids, "token_ids", len(items))
    request_ids, labels = request_ids_and_labels(request_ids, labels, len(items))
    prompt_start = row_offsets(prompt_start, "prompt_start", len(items))
    if layer_ids is not None and (isinstance(layer_ids, (str, bytes)) or not hasattr(layer_ids, "__len__")):
        raise TypeError(f"`layer_ids` must be a sequence of layer ids, got {describe(layer_ids)}.")
    requests, layout = [], None
    for i, item in enumerate(items):
        a, toks, start, where = _routed(item, i)
        if token_ids is not None:
            toks = _tokens(token_ids[i], f"`token_ids`[{i}]")
        if prompt_start is not None:
            start = prompt_start[i]
        if layout is None:
            layout = a.shape[1:]
            if layout[0] < 1 or layout[1] < 1:
                raise ValueError(f"{where}: routed_experts has [layer_num, topk] = {list(layout)}; both must "
                                 "be >= 1.")
            if layout[1] > num_experts:
                raise ValueError(f"{where}: routed_experts has topk={layout[1]} > `num_experts`={num_experts}.")
        elif a.shape[1:] != layout:
            raise ValueError(f"routed_experts of {where} has [layers, topk] = {list(a.shape[1:])}, "
                             f"request 0 has {list(layout)}.")
        clean_ids(a, num_experts, f"routed_experts of {where}")
        requests.append(Request(a, start or 0, toks, i if request_ids is None else request_ids[i],
                                None if labels is None else labels[i], where))
    axis, lids, how = moe_layer_axis(requests, moe_layers=moe_layers, layer_ids=layer_ids)
    meta = {"vllm_field": "CompletionOutput.routed_experts", "vllm_moe_layers": how}
    meta.update(metadata or {})
    return write_requests(requests, out, source="vllm", num_experts=num_experts, axis=axis, layer_ids=lids,
                          shard_tokens=shard_tokens, model_id=model_id, score_function=score_function,
                          topk_order="unordered", metadata=meta)
