"""Import Megatron-Core router traces (``--moe-routing-trace-path``) as a routing log.

Megatron's ``RouterTracer`` writes, per rank, ``router_trace_rank{r}.jsonl``
with one JSON object per (step, block, layer)::

    {"step": 0, "stage": "pre_dispatch", "block": "decoder", "layer": 3, "rank": 0,
     "num_tokens": 128, "topk": 8, "top_indices": [[12, 45, ...], ...]}

MTP layers carry an extra ``mtp_idx``.  With ``capture_logits`` each record
also has ``logit_offset``, ``logit_bytes``, ``logit_shape`` locating a
``[num_tokens, E]`` bfloat16 block in the sidecar ``logits_rank{r}.bin``.
Bfloat16 is read without torch: the bytes are viewed as ``uint16`` and
shifted into the high half of a ``float32`` (bf16 is the top 16 bits of an
IEEE float32, so this conversion is exact).

Every field is checked before it is used: integers must be JSON integers in
the range of the log column they go to (a float, a bool, a string or
``Infinity`` is refused, never truncated), sizes are checked against the
sidecar before anything is read, and errors name ``file:line`` and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from infomoe.logs.ingest._common import (
    INT32_MAX,
    INT64_MAX,
    MAX_LAYER_ID,
    ImportResult,
    check_int,
    check_num_experts,
    content_key,
    describe,
    int_array,
    staged_log_dir,
)

__all__ = ["import_megatron", "read_bf16"]

_RANK_RE = re.compile(r"router_trace_rank(\d+)\.jsonl$")


def read_bf16(path, offset: int, nbytes: int, shape) -> np.ndarray:
    """Read a bfloat16 block from a binary file as ``float32`` without torch.

    Parameters
    ----------
    path : str or os.PathLike
        Binary sidecar file.
    offset, nbytes : int
        Byte offset and length of the block.
    shape : sequence of int
        Shape of the block (``prod(shape) * 2 == nbytes``).

    Returns
    -------
    ndarray, float32

    Raises
    ------
    TypeError
        If `offset`, `nbytes` or an entry of `shape` is not an integer.
    ValueError
        If they are negative, disagree with each other, or the block lies
        beyond the end of the file (checked before anything is allocated).

    Notes
    -----
    A bfloat16 value is the upper 16 bits of the float32 with the same sign,
    exponent and leading 7 mantissa bits, so ``uint32(u16) << 16`` viewed as
    float32 reproduces it exactly.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> x = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    >>> p = os.path.join(tempfile.mkdtemp(), "l.bin")
    >>> (x.view(np.uint32) >> 16).astype(np.uint16).tofile(p)
    >>> read_bf16(p, 0, 6, [3]).tolist()
    [1.0, -2.5, 0.15625]
    """
    name = os.fspath(path)
    offset = check_int(offset, f"{name}: `offset`", minimum=0)
    nbytes = check_int(nbytes, f"{name}: `nbytes`", minimum=0)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (list, tuple)):
        raise TypeError(f"{name}: `shape` must be a list of integers, got {describe(shape)}.")
    shape = tuple(check_int(s, f"{name}: `shape`[{i}]", minimum=0) for i, s in enumerate(shape))
    need = math.prod(shape) * 2                                  # Python ints: no overflow
    if need != nbytes:
        raise ValueError(f"{name}: shape {list(shape)} needs {need} bytes of bfloat16, the record says {nbytes}.")
    if not os.path.isfile(name):
        raise ValueError(f"{name}: the logits sidecar does not exist (or is not a file).")
    size = os.path.getsize(name)
    if offset + nbytes > size:
        raise ValueError(f"{name}: block [{offset}, {offset + nbytes}) lies beyond the end of the "
                         f"file ({size} bytes); the sidecar is truncated.")
    u16 = np.fromfile(name, dtype="<u2", count=nbytes // 2, offset=offset)
    return (u16.astype(np.uint32) << 16).view(np.float32).reshape(shape)


def _file_rank(path: Path) -> Optional[int]:
    m = _RANK_RE.search(path.name)
    return int(m.group(1)) if m else None


def _trace_files(source) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            files = sorted(p.glob("router_trace_rank*.jsonl"), key=lambda f: (_file_rank(f) or 0, f.name))
            if not files:
                raise FileNotFoundError(f"no router_trace_rank*.jsonl files in {p}.")
            return files
        if not p.exists():
            raise FileNotFoundError(f"Megatron trace {p} does not exist.")
        return [p]
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise TypeError(f"`source` must be a path or a list of paths, got {describe(source)}.")
    files = []
    for f in source:
        if not isinstance(f, (str, os.PathLike)):
            raise TypeError(f"`source` must hold paths, got {describe(f)}.")
        files.append(Path(f))
    if not files:
        raise ValueError("`source` is an empty list of trace files.")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"Megatron trace {f} does not exist (or is not a file).")
    return files


def _parse_line(raw: bytes, where: str):
    """One JSONL line -> dict (or None for a blank line), with our errors for any corruption."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (byte {exc.start} of the line is {raw[exc.start]:#04x}); "
                         "the trace is corrupted.") from None
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to be a router-trace record; the trace is "
                         "corrupted.") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        msg = getattr(exc, "msg", str(exc))
        raise ValueError(f"{where}: not valid JSON ({msg}); the trace may be truncated.") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: a router-trace record must be a JSON object, got {describe(rec)}.")
    return rec


def _read_jsonl(path: Path, block: str) -> list[dict]:
    """Parse and check the records of one trace file that belong to `block`."""
    out = []
    file_rank = _file_rank(path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            rec = _parse_line(raw, where)
            if rec is None:
                continue
            for key in ("step", "layer", "rank", "top_indices"):
                if key not in rec:
                    raise ValueError(f"{where}: record has no {key!r} field.")
            rec_block = rec.get("block", "decoder")
            if not isinstance(rec_block, str):
                raise TypeError(f"{where}: 'block' must be a string, got {describe(rec_block)}.")
            if rec_block != block:
                continue
            step = check_int(rec["step"], f"{where}: 'step'", minimum=0, maximum=INT64_MAX)
            layer = check_int(rec["layer"], f"{where}: 'layer'", minimum=0, maximum=MAX_LAYER_ID)
            rank = check_int(rec["rank"], f"{where}: 'rank'", minimum=0, maximum=INT32_MAX)
            if file_rank is not None and rank != file_rank:
                raise ValueError(f"{where}: 'rank' is {rank} in rank {file_rank}'s trace file.")
            ids = int_array(rec["top_indices"], f"{where}: 'top_indices'", ndim=2, minimum=-1)
            k = ids.shape[1] if ids.shape[0] else None
            if "topk" in rec:
                topk = check_int(rec["topk"], f"{where}: 'topk'", minimum=1, maximum=INT32_MAX)
                if k is not None and topk != k:
                    raise ValueError(f"{where}: 'topk' is {topk} but 'top_indices' has {k} columns.")
                k = topk
            if ids.shape[0] and ids.shape[1] == 0:
                raise ValueError(f"{where}: 'top_indices' has {ids.shape[0]} rows of no expert ids.")
            if "num_tokens" in rec:
                n = check_int(rec["num_tokens"], f"{where}: 'num_tokens'", minimum=0)
                if n != ids.shape[0]:
                    raise ValueError(f"{where}: num_tokens={n} but top_indices has {ids.shape[0]} rows.")
            out.append({"where": where, "path": path, "step": step, "layer": layer, "rank": rank,
                        "ids": ids, "k": k, "raw": rec})
    return out


def _logit_shape(rec: dict, *, required: bool) -> Optional[tuple]:
    """``(rows, E)`` from a record's ``logit_shape``, checked against its ``top_indices``."""
    where = rec["where"]
    if "logit_shape" not in rec["raw"]:
        if required:
            raise ValueError(f"{where}: record has no 'logit_shape' field.")
        return None
    shape = int_array(rec["raw"]["logit_shape"], f"{where}: 'logit_shape'", ndim=1, minimum=0)
    if shape.shape != (2,) or shape[0] != rec["ids"].shape[0] or shape[1] < 1:
        raise ValueError(f"{where}: 'logit_shape' must be [num_tokens, num_experts] = "
                         f"[{rec['ids'].shape[0]}, E >= 1], got {shape.tolist()}.")
    check_num_experts(int(shape[1]), f"{where}: 'logit_shape'[1] (experts)")
    return int(shape[0]), int(shape[1])


def import_megatron(source: Union[str, os.PathLike, Iterable], out, *, num_experts: Optional[int] = None,
                    block: str = "decoder", logits: bool = False, deduplicate: bool = True,
                    model_id: Optional[str] = None, score_function: str = "softmax",
                    metadata: Optional[dict] = None):
    """Convert Megatron router traces into a routing log.

    Parameters
    ----------
    source : path or iterable of paths
        A trace directory (all ``router_trace_rank*.jsonl`` in it) or JSONL files.
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    num_experts : int, optional
        Experts per layer.  Default: from ``logit_shape`` when logits were
        captured; otherwise required (the JSONL does not record it).
    block : str
        Which records to import: ``"decoder"`` (default) or ``"mtp"``.
    logits : bool
        Also import router logits from ``logits_rank{r}.bin``.
    deduplicate : bool
        Drop replicated records (see Notes).
    model_id, score_function, metadata
        Manifest fields.

    Returns
    -------
    ImportResult

    Raises
    ------
    ValueError, TypeError
        For any record that is not a valid trace record, naming
        ``file:line`` and the field: text that is not UTF-8 JSON, a missing
        field, a float, bool or string where an integer belongs, a value
        outside its column's range (``rank`` must also match the file's
        rank), ragged ``top_indices``, an expert id outside
        ``[-1, num_experts)``, a logits block beyond its sidecar.  Nothing is
        written then: the log is assembled beside `out` and moved there only
        once complete.

    Notes
    -----
    One shard per (rank, step): all layers of that rank's tokens in that
    step, aligned row by row (Megatron's layers of one step see the same
    tokens of one rank); a layer absent from a step is written as ``-1``.
    Columns ``step`` and ``rank`` come from the records; Megatron keeps no
    sequence ids or positions.  Megatron takes the ids from
    ``routing_map.nonzero()`` (ascending expert id, not by score), so the
    manifest says ``topk_order="unordered"``.

    Merging ranks without double counting: ranks that hold different tokens
    (data/sequence/context parallel) write different traces, ranks that
    replicate the same tokens (tensor parallel without sequence parallel,
    expert parallel replicas) write identical ones.  A (rank, step) group
    whose ``block``/``layer`` set and ``top_indices`` arrays are
    byte-identical to a group already imported for the same step is treated
    as a replica and skipped (``deduplicate=False`` keeps everything).  Two
    data-parallel ranks that route identical token streams identically would
    also be merged; give them different steps or pass ``deduplicate=False``.

    References
    ----------
    Megatron-Core ``megatron/core/transformer/moe/router_trace.py`` (trace
    format); no equation.

    Examples
    --------
    >>> import json, tempfile, os
    >>> from infomoe.logs import open_log
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "router_trace_rank0.jsonl"), "w") as f:
    ...     for layer in (0, 1):
    ...         print(json.dumps({"step": 0, "stage": "pre_dispatch", "block": "decoder", "layer": layer,
    ...                           "rank": 0, "num_tokens": 2, "topk": 2,
    ...                           "top_indices": [[0, 1], [2, 3]]}), file=f)
    >>> import_megatron(d, os.path.join(d, "log"), num_experts=4).num_tokens
    2
    >>> open_log(os.path.join(d, "log")).manifest.source
    'megatron'
    """
    from infomoe.logs import LayerSpec, LogWriter

    if not isinstance(block, str):
        raise TypeError(f"`block` must be a string ('decoder' or 'mtp'), got {describe(block)}.")
    if num_experts is not None:
        num_experts = check_num_experts(num_experts, "`num_experts`")
    want_logits = bool(logits)
    files = _trace_files(source)
    groups: dict = {}  # (rank, step) -> {layer: record}
    first_of_layer: dict = {}  # layer -> first record with a known top-k
    for f in files:
        for rec in _read_jsonl(f, block):
            layer, key = rec["layer"], (rec["rank"], rec["step"])
            if rec["k"] is not None:
                first = first_of_layer.setdefault(layer, rec)
                if first["k"] != rec["k"]:
                    raise ValueError(f"{rec['where']}: layer {layer} has top-k {rec['k']}, "
                                     f"{first['where']} has {first['k']}.")
            g = groups.setdefault(key, {})
            if layer in g:
                raise ValueError(f"{rec['where']}: layer {layer} appears twice in rank {key[0]}, step {key[1]} "
                                 f"(first at {g[layer]['where']}); traces with several micro-batches per step "
                                 "are not supported.")
            g[layer] = rec
    if not groups:
        raise ValueError(f"no {block!r} records in {[str(f) for f in files]}.")
    records = [r for g in groups.values() for r in g.values()]
    for r in records:
        if r["layer"] not in first_of_layer:
            raise ValueError(f"{r['where']}: layer {r['layer']} has only empty records and no 'topk' field, "
                             "so its top-k is unknown.")

    shapes = {}
    if want_logits or num_experts is None:
        for r in records:
            if want_logits:
                for key in ("logit_offset", "logit_bytes"):
                    if key not in r["raw"]:
                        raise ValueError(f"{r['where']}: `logits=True` but the record has no {key!r} (run "
                                         "Megatron with capture_logits) -- import without logits.")
            shape = _logit_shape(r, required=want_logits)
            if shape is not None:
                shapes[id(r)] = shape
    if num_experts is None:
        if not shapes:
            raise ValueError("`num_experts` is required: the traces carry no logits to read it from.")
        by_e: dict = {}
        for r in records:
            if id(r) in shapes:
                by_e.setdefault(shapes[id(r)][1], r["where"])
        if len(by_e) > 1:
            raise ValueError(f"the records disagree on the number of experts in 'logit_shape': "
                             f"{ {e: w for e, w in sorted(by_e.items())} } (experts: first record).")
        num_experts = next(iter(by_e))
    for r in records:
        if r["ids"].size and int(r["ids"].max()) >= num_experts:
            raise ValueError(f"{r['where']}: 'top_indices' has an expert id outside [-1, {num_experts}): "
                             f"{int(r['ids'].max())} (num_experts={num_experts}).")
        if want_logits and shapes[id(r)][1] != num_experts:
            raise ValueError(f"{r['where']}: 'logit_shape' {list(shapes[id(r)])} has "
                             f"{shapes[id(r)][1]} experts, `num_experts` is {num_experts}.")
    layer_ids = sorted(first_of_layer)
    top_k = {lid: first_of_layer[lid]["k"] for lid in layer_ids}
    for lid in layer_ids:
        if top_k[lid] > num_experts:
            raise ValueError(f"{first_of_layer[lid]['where']}: layer {lid} chooses {top_k[lid]} experts of "
                             f"num_experts={num_experts}.")
    for (rank, step), g in groups.items():
        n = {lid: r["ids"].shape[0] for lid, r in g.items()}
        if len(set(n.values())) != 1:
            where = next(iter(g.values()))["where"]
            raise ValueError(f"{where}: rank {rank}, step {step}: layers have different token counts {n}.")
        if want_logits and set(g) != set(layer_ids):
            missing = sorted(set(layer_ids) - set(g))
            raise ValueError(f"{next(iter(g.values()))['where']}: rank {rank}, step {step} has no record of "
                             f"layer(s) {missing}, so its logits cannot be aligned; import without logits.")

    meta = {"megatron_block": block, "merge_rule": "(rank, step) groups byte-identical to one already "
            "imported for the same step are replicas and are skipped" if deduplicate else "none"}
    meta.update(metadata or {})
    seen: set = set()
    skipped = tokens = shards = 0
    with staged_log_dir(out) as tmp, \
            LogWriter(tmp, source="megatron", layers=[LayerSpec(lid, num_experts, top_k[lid]) for lid in layer_ids],
                      model_id=model_id, score_function=score_function, topk_order="unordered",
                      metadata=meta) as w:
        for (rank, step), g in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            n_tok = next(iter(g.values()))["ids"].shape[0]
            if deduplicate:
                key = (step, tuple(sorted(g)), content_key(*[g[lid]["ids"] for lid in sorted(g)]))
                if key in seen:
                    skipped += 1
                    continue
                seen.add(key)
            if n_tok == 0:
                continue
            ids = {lid: (g[lid]["ids"] if lid in g else np.full((n_tok, top_k[lid]), -1, np.int64))
                   for lid in layer_ids}
            kw = {}
            if want_logits:
                lg = {}
                for lid in layer_ids:
                    r = g[lid]
                    raw = r["raw"]
                    sidecar = r["path"].parent / f"logits_rank{rank}.bin"
                    offset = check_int(raw["logit_offset"], f"{r['where']}: 'logit_offset'", minimum=0)
                    nbytes = check_int(raw["logit_bytes"], f"{r['where']}: 'logit_bytes'", minimum=0)
                    try:
                        lg[lid] = read_bf16(sidecar, offset, nbytes, shapes[id(r)])
                    except ValueError as exc:
                        raise ValueError(f"{r['where']}: {exc}") from None
                    if np.isnan(lg[lid]).any():
                        raise ValueError(f"{r['where']}: the logits block in {sidecar.name} holds NaN; the "
                                         "sidecar is corrupted.")
                kw["router_logits"] = lg
            w.append(ids, step=np.full(n_tok, step, np.int64), rank=np.full(n_tok, rank, np.int64), **kw)
            tokens += n_tok
            shards += 1
    return ImportResult(str(out), tokens, 0, shards, skipped)
