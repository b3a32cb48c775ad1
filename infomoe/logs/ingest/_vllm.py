"""Import vLLM ``routed_experts`` arrays (``--enable-return-routed-experts``).

With the flag on, each ``CompletionOutput`` carries ``routed_experts``: an
integer array ``[seq_len, num_moe_layers, top_k]`` with the experts that
routed every token of the request (prompt and generated tokens).

Every array and argument is checked before it is used (integers only, never
truncated or wrapped; ranges of the log columns), and errors name the
request and the field.  The log is assembled beside its destination and moved
into place only when complete, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from infomoe.logs.ingest._common import (
    INT32_MAX,
    INT64_MAX,
    ImportResult,
    check_int,
    check_layer_ids,
    check_num_experts,
    describe,
    int_array,
    staged_log_dir,
)

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
    """(routed_experts array, token ids or None, where) from an array, a .npy path or a vLLM output object."""
    where = f"request {i}"
    tokens = None
    if isinstance(item, (str, os.PathLike)):
        where = f"request {i} ({os.fspath(item)})"
        arr = _load_npy(item, where)
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
    a = int_array(arr, f"{where}: routed_experts [seq_len, layer_num, topk]", ndim=3, minimum=-1)
    return a, tokens, where


def _per_request(seq, name: str, n: int):
    if seq is None:
        return None
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__") or not hasattr(seq, "__getitem__"):
        raise TypeError(f"`{name}` must be a sequence with one entry per request, got {describe(seq)}.")
    if len(seq) != n:
        raise ValueError(f"`{name}` has {len(seq)} entries for {n} requests.")
    return seq


def import_vllm(outputs: Iterable, out, *, num_experts: int, layer_ids: Optional[Sequence[int]] = None,
                request_ids: Optional[Sequence[int]] = None, token_ids: Optional[Sequence] = None,
                labels: Optional[Sequence[int]] = None, shard_tokens: int = 1 << 20,
                model_id: Optional[str] = None, score_function: str = "unknown",
                metadata: Optional[dict] = None) -> ImportResult:
    """Convert per-request vLLM ``routed_experts`` arrays into a routing log.

    Parameters
    ----------
    outputs : iterable
        One item per request: an integer array ``[seq_len, layer_num, topk]``,
        a path to a ``.npy`` file holding one (its header is parsed as a
        literal, never unpickled, and checked against the file size), a ``CompletionOutput`` or a
        ``RequestOutput`` (its first completion; token ids are then taken
        from ``prompt_token_ids + outputs[0].token_ids``).
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    num_experts : int
        Experts per MoE layer (vLLM's array does not record it).
    layer_ids : sequence of int, optional
        Model layer index of each of the ``layer_num`` MoE layers (default
        ``0..layer_num-1``); distinct, in ``[0, 999999999]``.
    request_ids : sequence of int, optional
        ``seq_id`` of each request (default ``0, 1, ...``); distinct, >= 0.
    token_ids : sequence of arrays, optional
        Token ids per request (at least ``seq_len`` each; the first
        ``seq_len`` are used, since the last sampled token is never routed).
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
        ``-1``), an expert id outside ``[-1, num_experts)``, requests that
        disagree on ``[layer_num, topk]``, an argument of the wrong type,
        length or range.  Nothing is written then.

    Notes
    -----
    Row ``t`` of a request becomes a token with ``seq_id`` = the request id
    and ``position = t``.  Requests are independent outputs, so nothing is
    merged or deduplicated.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> reqs = [np.zeros((3, 2, 2), np.int32), np.ones((5, 2, 2), np.int32)]
    >>> r = import_vllm(reqs, os.path.join(tempfile.mkdtemp(), "log"), num_experts=4)
    >>> r.num_tokens, r.num_shards
    (8, 1)
    """
    from infomoe._validate import check_positive_int
    from infomoe.logs import LayerSpec, LogWriter

    num_experts = check_num_experts(num_experts, "`num_experts`")
    shard_tokens = check_positive_int(shard_tokens, "shard_tokens")
    if isinstance(outputs, (str, bytes, os.PathLike)) or not isinstance(outputs, Iterable):
        raise TypeError(f"`outputs` must be a list with one item per request, got {describe(outputs)}.")
    items = list(outputs)
    if not items:
        raise ValueError("`outputs` is empty; at least one request is needed.")
    request_ids = _per_request(request_ids, "request_ids", len(items))
    token_ids = _per_request(token_ids, "token_ids", len(items))
    labels = _per_request(labels, "labels", len(items))
    if layer_ids is not None:
        if isinstance(layer_ids, (str, bytes)) or not hasattr(layer_ids, "__len__"):
            raise TypeError(f"`layer_ids` must be a sequence of layer ids, got {describe(layer_ids)}.")
        layer_ids = check_layer_ids(list(layer_ids), "`layer_ids`")
    if request_ids is not None:
        request_ids = [check_int(x, f"`request_ids`[{i}]", minimum=0, maximum=INT64_MAX)
                       for i, x in enumerate(request_ids)]
        if len(set(request_ids)) != len(items):
            raise ValueError("`request_ids` must be distinct.")
    if labels is not None:
        labels = [check_int(x, f"`labels`[{i}]", minimum=-1, maximum=INT32_MAX) for i, x in enumerate(labels)]
    layout = None
    with_tokens = None
    pending, pending_n = [], 0
    tokens_written = shards = 0
    with staged_log_dir(out) as tmp, contextlib.ExitStack() as stack:
        writer = None
        for i, item in enumerate(items):
            a, toks, where = _routed(item, i)
            if token_ids is not None:
                toks = _tokens(token_ids[i], f"`token_ids`[{i}]")
            if layout is None:
                layout = a.shape[1:]
                if layout[0] < 1 or layout[1] < 1:
                    raise ValueError(f"{where}: routed_experts has [layer_num, topk] = {list(layout)}; both must "
                                     "be >= 1.")
                if layout[1] > num_experts:
                    raise ValueError(f"{where}: routed_experts has topk={layout[1]} > `num_experts`={num_experts}.")
                lids = list(range(layout[0])) if layer_ids is None else layer_ids
                if len(lids) != layout[0]:
                    raise ValueError(f"`layer_ids` has {len(lids)} entries, routed_experts of {where} has "
                                     f"{layout[0]} layers.")
                meta = {"vllm_field": "CompletionOutput.routed_experts"}
                meta.update(metadata or {})
                writer = stack.enter_context(LogWriter(
                    tmp, source="vllm", layers=[LayerSpec(l, num_experts, layout[1]) for l in lids],
                    model_id=model_id, score_function=score_function, metadata=meta))
                with_tokens = toks is not None
            elif a.shape[1:] != layout:
                raise ValueError(f"routed_experts of {where} has [layers, topk] = {list(a.shape[1:])}, "
                                 f"request 0 has {list(layout)}.")
            if a.size and int(a.max()) >= num_experts:
                raise ValueError(f"routed_experts of {where} has an expert id outside [-1, {num_experts}): "
                                 f"{int(a.max())}.")
            if (toks is not None) != with_tokens:
                raise ValueError(f"token ids are available for some requests but not others ({where} "
                                 f"{'has' if toks is not None else 'has none'}).")
            n = a.shape[0]
            if with_tokens and toks.shape[0] < n:
                raise ValueError(f"{where}: {toks.shape[0]} token ids for {n} routed tokens.")
            if n == 0:
                continue
            col = {"ids": a, "seq": np.full(n, i if request_ids is None else request_ids[i], np.int64),
                   "pos": np.arange(n, dtype=np.int64)}
            if with_tokens:
                col["tok"] = toks[:n]
            if labels is not None:
                col["lab"] = np.full(n, labels[i], np.int64)
            pending.append(col)
            pending_n += n
            if pending_n >= shard_tokens:
                tokens_written += _flush(writer, pending)
                shards += 1
                pending, pending_n = [], 0
        if pending:
            tokens_written += _flush(writer, pending)
            shards += 1
    return ImportResult(str(out), tokens_written, 0, shards, 0)


def _flush(writer, pending) -> int:
    def cat(key):
        if key not in pending[0]:
            return None
        return np.concatenate([p[key] for p in pending])
    ids = cat("ids")
    writer.append(ids, seq_id=cat("seq"), position=cat("pos"), token_id=cat("tok"), label=cat("lab"))
    return ids.shape[0]
