"""Import Megatron-Core router traces (``--moe-routing-trace-path``) as a routing log.

Megatron-Core's ``RouterTracer`` (``megatron/core/transformer/moe/router_trace.py``,
megatron-core 0.19.2) writes, per rank, ``router_trace_rank{r}.jsonl`` with
one JSON object per (step, block, layer) -- and, in training, per
micro-batch and activation recompute::

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
from typing import Iterable, Mapping, Optional, Union

import numpy as np

from infomoe._validate import describe
from infomoe.logs.ingest._common import (
    INT32_MAX,
    INT64_MAX,
    MAX_LAYER_ID,
    ImportResult,
    check_int,
    check_num_experts,
    content_key,
    int_array,
    write_log,
)

__all__ = ["import_megatron", "import_megatron_requests", "read_bf16"]

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
            mtp_idx = rec.get("mtp_idx")
            if mtp_idx is not None:
                mtp_idx = check_int(mtp_idx, f"{where}: 'mtp_idx'", minimum=0, maximum=999)
            out.append({"where": where, "path": path, "step": step, "layer": layer, "rank": rank,
                        "mtp_idx": mtp_idx, "ids": ids, "k": k, "raw": rec})
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


def _groups_of(pipelines, ranks) -> dict:
    """rank -> (group index, stage index) from `pipelines` (default: every rank its own group)."""
    if pipelines is None:
        return {r: (r, 0) for r in ranks}
    if isinstance(pipelines, (str, bytes)) or not isinstance(pipelines, Iterable):
        raise TypeError(f"`pipelines` must be a list of rank lists (the stages of each pipeline), got "
                        f"{describe(pipelines)}.")
    out = {}
    for g, group in enumerate(pipelines):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise TypeError(f"`pipelines`[{g}] must be a list of ranks, got {describe(group)}.")
        group = [check_int(r, f"`pipelines`[{g}][{s}]", minimum=0, maximum=INT32_MAX) for s, r in enumerate(group)]
        for s, r in enumerate(group):
            if r in out:
                raise ValueError(f"`pipelines` lists rank {r} twice.")
            out[r] = (min(group), s)
    missing = sorted(set(ranks) - set(out))
    if missing:
        raise ValueError(f"`pipelines` does not list the ranks {missing} that wrote traces.")
    return out


def import_megatron(source: Union[str, os.PathLike, Iterable], out, *, num_experts: Optional[int] = None,
                    block: str = "decoder", logits: bool = False, deduplicate: bool = True, layer_base: int = 0,
                    layer_offsets: Optional[Mapping[int, int]] = None, pipelines=None,
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
        Also import router logits from ``logits_rank{r}.bin``; each row's
        ids are then sorted by logit (the gate weight's order), and the
        manifest says ``topk_order="descending"``.
    deduplicate : bool
        Drop replicated records (see Notes).
    layer_base : {0, 1}
        What the records' ``layer`` counts from: 0 for the forward-hook path
        (``decoder.layers.<i>``, default), 1 for ``RouterTracer.record_indices``
        called with Megatron's 1-based ``layer_number`` (the inference
        engine's ``RouterReplay`` path).  Log layer ids are 0-based.
    layer_offsets : mapping rank -> int, optional
        Pipeline parallel: the global index of the first layer of each
        rank's stage (the hook path writes stage-local ``decoder.layers.<i>``).
        Ranks not listed get 0.
    pipelines : list of rank lists, optional
        Pipeline parallel: the ranks of the stages of each pipeline (they
        hold the same tokens), e.g. ``[[0, 2], [1, 3]]`` for DP=2, PP=2; their
        records of one step and micro-batch are merged into one token block.
        Default: every rank holds its own tokens.
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
        ``[-1, num_experts)``, a logits block beyond its sidecar, two stages
        of one pipeline that disagree on a layer.  Nothing is written then:
        the log is assembled beside `out` and moved there only once complete.

    Notes
    -----
    A layer is identified by ``(block, mtp_idx, layer)`` as the tracer does.
    MTP heads (``block="mtp"``) become layer ids ``mtp_idx * S + layer``
    with ``S`` the number of inner layers per head (the map is in the
    manifest metadata ``mtp_layers``).

    Micro-batches: in training, every micro-batch (and every activation
    recompute) of a step writes one record per layer.  The ``m``-th distinct
    record of a layer in a (rank, step) is micro-batch ``m``; a record
    byte-identical to an earlier one of the same layer and step is a
    recompute and is skipped.  One shard per (pipeline, step, micro-batch):
    the layers of its tokens, aligned row by row; a layer absent there is
    written as ``-1``.  Columns ``step`` and ``rank`` (the pipeline's lowest
    rank) come from the records; Megatron keeps no sequence ids or
    positions.  Megatron's hook path takes the ids from
    ``routing_map.nonzero()`` (ascending expert id, not by score), so
    without logits the manifest says ``topk_order="unordered"``.  Virtual
    pipeline chunks number their layers locally too and cannot be told
    apart from micro-batches in the trace; import them per chunk.

    Merging ranks without double counting: ranks that hold different tokens
    (data/sequence/context parallel) write different traces, ranks that
    replicate the same tokens (tensor parallel without sequence parallel,
    expert parallel replicas) write identical ones.  A block whose
    layer set and ``top_indices`` arrays are byte-identical to one already
    imported for the same step and micro-batch is treated as a replica and
    skipped (``deduplicate=False`` keeps everything).  Two data-parallel
    ranks that route identical token streams identically would also be
    merged; give them different steps or pass ``deduplicate=False``.

    References
    ----------
    Megatron-Core ``megatron/core/transformer/moe/router_trace.py``
    (``RouterTracer``, 0.19.2); no equation.

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
    from infomoe.logs import LayerSpec

    if not isinstance(block, str):
        raise TypeError(f"`block` must be a string ('decoder' or 'mtp'), got {describe(block)}.")
    if num_experts is not None:
        num_experts = check_num_experts(num_experts, "`num_experts`")
    layer_base = check_int(layer_base, "`layer_base`", minimum=0, maximum=1)
    offsets = {}
    if layer_offsets is not None:
        if not isinstance(layer_offsets, Mapping):
            raise TypeError(f"`layer_offsets` must map rank -> first global layer, got {describe(layer_offsets)}.")
        offsets = {check_int(r, "`layer_offsets` rank", minimum=0, maximum=INT32_MAX):
                   check_int(o, f"`layer_offsets`[{r}]", minimum=0, maximum=MAX_LAYER_ID)
                   for r, o in layer_offsets.items()}
    want_logits = bool(logits)
    files = _trace_files(source)
    recs = [rec for f in files for rec in _read_jsonl(f, block)]
    if not recs:
        raise ValueError(f"no {block!r} records in {[str(f) for f in files]}.")
    stride = 1 + max(r["layer"] for r in recs) if block == "mtp" else None
    mtp_map = {}
    for r in recs:
        layer = r["layer"] - layer_base
        if layer < 0:
            raise ValueError(f"{r['where']}: 'layer' is {r['layer']}, below `layer_base`={layer_base} (records of "
                             "the hook path count layers from 0; pass layer_base=0).")
        if block == "mtp":
            head = r["mtp_idx"] or 0
            layer = head * (stride - layer_base) + layer
            mtp_map[layer] = [head, r["layer"]]
        layer += offsets.get(r["rank"], 0)
        if layer > MAX_LAYER_ID:
            raise ValueError(f"{r['where']}: global layer {layer} exceeds {MAX_LAYER_ID}.")
        r["lid"] = layer
    group_of = _groups_of(pipelines, {r["rank"] for r in recs})

    # micro-batches: the m-th distinct record of a layer in a (rank, step); identical repeats are recomputes
    occurrences: dict = {}   # (rank, step, lid) -> [content keys]
    blocks: dict = {}        # (group, step, m) -> {lid: record}
    first_of_layer: dict = {}
    skipped = merged = recomputed = 0
    for r in recs:
        lid = r["lid"]
        if r["k"] is not None:
            first = first_of_layer.setdefault(lid, r)
            if first["k"] != r["k"]:
                raise ValueError(f"{r['where']}: layer {lid} has top-k {r['k']}, {first['where']} has {first['k']}.")
        seen = occurrences.setdefault((r["rank"], r["step"], lid), [])
        ck = content_key(r["ids"])
        if ck in seen:
            recomputed += 1
            continue
        m = len(seen)
        seen.append(ck)
        g = blocks.setdefault((group_of[r["rank"]][0], r["step"], m), {})
        if lid in g:
            other = g[lid]
            if other["rank"] != r["rank"] and np.array_equal(other["ids"], r["ids"]):
                skipped += 1
                continue
            raise ValueError(f"{r['where']}: layer {lid} of step {r['step']}, micro-batch {m} was already written by "
                             f"{other['where']} (rank {other['rank']}) in the same pipeline; check `pipelines` and "
                             "`layer_offsets`.")
        g[lid] = r
    records = [r for g in blocks.values() for r in g.values()]
    for r in records:
        if r["lid"] not in first_of_layer:
            raise ValueError(f"{r['where']}: layer {r['lid']} has only empty records and no 'topk' field, "
                             "so its top-k is unknown.")
    merged = sum(len({x["rank"] for x in g.values()}) - 1 for g in blocks.values())

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
    for (grp, step, m), g in blocks.items():
        n = {lid: r["ids"].shape[0] for lid, r in g.items()}
        if len(set(n.values())) != 1:
            where = next(iter(g.values()))["where"]
            raise ValueError(f"{where}: rank {grp}, step {step}, micro-batch {m}: layers have different token "
                             f"counts {n}.")
        if want_logits and set(g) != set(layer_ids):
            missing = sorted(set(layer_ids) - set(g))
            raise ValueError(f"{next(iter(g.values()))['where']}: rank {grp}, step {step}, micro-batch {m} has no "
                             f"record of layer(s) {missing}, so its logits cannot be aligned; import without logits.")

    meta = {"megatron_block": block, "layer_base": layer_base,
            "merge_rule": "blocks byte-identical to one already imported for the same step and micro-batch are "
                          "replicas and are skipped" if deduplicate else "none",
            "micro_batches": "the m-th distinct record of a layer in a (rank, step) is micro-batch m; identical "
                             f"repeats are activation recomputes ({recomputed} skipped)"}
    if offsets:
        meta["layer_offsets"] = {str(r): o for r, o in sorted(offsets.items())}
    if pipelines is not None:
        meta["pipelines"] = sorted({g for g, _ in group_of.values()})
    if mtp_map:
        meta["mtp_layers"] = {str(l): v for l, v in sorted(mtp_map.items())}
    meta.update(metadata or {})
    seen_blocks: set = set()

    def token_blocks():
        nonlocal skipped
        for (grp, step, m), g in sorted(blocks.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            n_tok = next(iter(g.values()))["ids"].shape[0]
            if deduplicate:
                key = (step, m, tuple(sorted(g)), content_key(*[g[lid]["ids"] for lid in sorted(g)]))
                if key in seen_blocks:
                    skipped += 1
                    continue
                seen_blocks.add(key)
            if n_tok == 0:
                continue
            ids = {lid: (g[lid]["ids"] if lid in g else np.full((n_tok, top_k[lid]), -1, np.int64))
                   for lid in layer_ids}
            cols = {"step": np.full(n_tok, step, np.int64),
                    "rank": np.full(n_tok, min(r["rank"] for r in g.values()), np.int64)}
            if want_logits:
                cols["router_logits"] = {}
                for lid in layer_ids:
                    cols["router_logits"][lid] = lg = _read_logits(g[lid], shapes[id(g[lid])])
                    ids[lid] = _sort_by_logit(ids[lid], lg)
            yield ids, cols

    tokens, _, shards = write_log(
        out, source="megatron", layers=[LayerSpec(lid, num_experts, top_k[lid]) for lid in layer_ids],
        blocks=token_blocks(), model_id=model_id, score_function=score_function,
        topk_order="descending" if want_logits else "unordered", metadata=meta)
    return ImportResult(str(out), tokens, 0, shards, skipped, merged)


def _read_logits(r: dict, shape) -> np.ndarray:
    """The bfloat16 logits block of record `r` from its rank's sidecar, as float32 (errors name the record)."""
    raw = r["raw"]
    sidecar = r["path"].parent / f"logits_rank{r['rank']}.bin"
    offset = check_int(raw["logit_offset"], f"{r['where']}: 'logit_offset'", minimum=0)
    nbytes = check_int(raw["logit_bytes"], f"{r['where']}: 'logit_bytes'", minimum=0)
    try:
        lg = read_bf16(sidecar, offset, nbytes, shape)
    except ValueError as exc:
        raise ValueError(f"{r['where']}: {exc}") from None
    if np.isnan(lg).any():
        raise ValueError(f"{r['where']}: the logits block in {sidecar.name} holds NaN; the sidecar is corrupted.")
    return lg


def _sort_by_logit(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Each row's ids in descending order of their logit (ties: lower id first); ``-1`` last.

    Softmax and sigmoid gate weights are increasing in the logit, so this is
    the order of the gate weights (an expert bias changes which experts are
    chosen, not their weights).

    Examples
    --------
    >>> _sort_by_logit(np.array([[0, 2, -1]]), np.array([[0.1, 5.0, 3.0]], np.float32)).tolist()
    [[2, 0, -1]]
    """
    val = np.where(ids >= 0, np.take_along_axis(logits, np.clip(ids, 0, None), axis=1), -np.inf)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -val), axis=-1)
    return np.take_along_axis(ids, order, axis=1)


# ----------------------------------------------------------------------------- per-request routing indices
def _request_parts(item, i):
    """(routing array, token ids or None, where) of one Megatron inference request or completion choice."""
    where = f"request {i}"
    if isinstance(item, dict):
        if "choices" in item:
            raise ValueError(f"{where}: a completions response; pass its 'choices' (one item per choice).")
        for key in ("moe_topk_indices", "routing_indices", "prompt_moe_topk_indices"):
            if item.get(key) is not None:
                arr, field = item[key], key
                break
        else:
            raise ValueError(f"{where}: no 'moe_topk_indices', 'routing_indices' or 'prompt_moe_topk_indices' "
                             "(enable routing recording in the inference engine).")
        prompt = item.get("prompt_token_ids", item.get("prompt_tokens"))
        generated = item.get("generation_token_ids", item.get("generated_tokens"))
    else:
        arr, field = getattr(item, "routing_indices", None), "routing_indices"
        if arr is None:
            raise ValueError(f"{where}: the request has no routing_indices (enable routing recording).")
        prompt, generated = getattr(item, "prompt_tokens", None), getattr(item, "generated_tokens", None)
    parts = []
    for x, name in ((prompt, "prompt tokens"), (generated, "generated tokens")):
        if x is not None:
            if type(x).__module__.split(".")[0] == "torch":
                x = x.detach().cpu().numpy()
            parts.append(int_array(np.asarray(x) if isinstance(x, (list, tuple)) and not x else x,
                                   f"{where}: {name}", ndim=1, minimum=0, maximum=INT32_MAX))
    tokens = np.concatenate(parts) if parts else None
    return int_array(arr, f"{where}: {field!r} [tokens, num_layers, topk]", ndim=3, minimum=-1), tokens, where


def import_megatron_requests(requests: Iterable, out, *, num_experts: int, layer_ids=None,
                             request_ids=None, labels=None, shard_tokens: int = 1 << 20,
                             model_id: Optional[str] = None, score_function: str = "softmax",
                             metadata: Optional[dict] = None):
    """Convert Megatron inference routing indices (per request) into a routing log.

    Parameters
    ----------
    requests : iterable
        One item per request: a ``DynamicInferenceRequest`` (or any object
        with ``routing_indices``, ``prompt_tokens``, ``generated_tokens``),
        its ``serialize()`` dict, or a choice of the ``/v1/completions``
        response (``moe_topk_indices`` -- or only ``prompt_moe_topk_indices``
        --, ``prompt_token_ids``, ``generation_token_ids``).
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    num_experts : int
        Experts per MoE layer.
    layer_ids : sequence of int, optional
        Layer id of each entry of the layer axis (the MoE layers, in the order
        of ``RouterReplay`` instances); default ``0..num_layers-1``.
    request_ids, labels, shard_tokens, model_id, score_function, metadata
        As for :func:`~infomoe.logs.ingest.import_vllm`.

    Returns
    -------
    ImportResult

    Notes
    -----
    ``routing_indices`` is ``[prompt_len + generated - 1, num_moe_layers,
    topk]`` (``megatron/core/inference/inference_request.py``,
    megatron-core 0.19.2; the last generated token is never routed): row
    ``t`` is position ``t`` and gets token id ``(prompt + generated)[t]``.
    The completions endpoint returns the same array as ``moe_topk_indices``
    and its first ``prompt_len`` rows as ``prompt_moe_topk_indices``.
    ``topk_order="unordered"`` (the recorded ``top_indices`` follow the
    routing's ``torch.topk`` over possibly biased scores, not the gate
    weights).

    Examples
    --------
    >>> import os, tempfile
    >>> choice = {"prompt_token_ids": [3, 4], "generation_token_ids": [5],
    ...           "moe_topk_indices": [[[0, 1]], [[2, 3]]]}
    >>> import_megatron_requests([choice], os.path.join(tempfile.mkdtemp(), "log"), num_experts=4).num_tokens
    2
    """
    from infomoe._validate import check_positive_int
    from infomoe.logs.ingest._requests import (Request, clean_ids, moe_layer_axis, request_ids_and_labels,
                                               request_items, write_requests)

    num_experts = check_num_experts(num_experts, "`num_experts`")
    shard_tokens = check_positive_int(shard_tokens, "shard_tokens")
    items = request_items(requests, "requests")
    request_ids, labels = request_ids_and_labels(request_ids, labels, len(items))
    reqs = []
    for i, item in enumerate(items):
        a, toks, where = _request_parts(item, i)
        if a.shape[1] < 1 or a.shape[2] < 1:
            raise ValueError(f"{where}: routing indices have [layers, topk] = {list(a.shape[1:])}; both must be >= 1.")
        if reqs and a.shape[1:] != reqs[0].ids.shape[1:]:
            raise ValueError(f"routing indices of {where} have [layers, topk] = {list(a.shape[1:])}, request 0 has "
                             f"{list(reqs[0].ids.shape[1:])}.")
        clean_ids(a, num_experts, f"routing indices of {where}")
        reqs.append(Request(a, 0, toks, i if request_ids is None else request_ids[i],
                            None if labels is None else labels[i], where))
    if layer_ids is None:
        layer_ids = list(range(reqs[0].ids.shape[1]))
    axis, lids, _ = moe_layer_axis(reqs, layer_ids=layer_ids)
    meta = {"megatron_field": "DynamicInferenceRequest.routing_indices / completions moe_topk_indices"}
    meta.update(metadata or {})
    return write_requests(reqs, out, source="megatron", num_experts=num_experts, axis=axis, layer_ids=lids,
                          shard_tokens=shard_tokens, model_id=model_id, score_function=score_function,
                          topk_order="unordered", metadata=meta)
