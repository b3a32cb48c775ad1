"""Import SGLang expert-distribution dumps (``/dump_expert_distribution_record``).

SGLang (``python/sglang/srt/eplb/expert_distribution.py``, 0.5.23) writes
``.pt`` files with ``torch.save``:

``stat`` mode (``_StatAccumulator.dump``; written by rank 0 only, counts
already all-reduced over ranks)::

    {"rank": int, "logical_count": int32 [buffered_steps, L, E_logical],
     "average_utilization_rate_over_window": float | None}

The buffer is circular with ``expert_distribution_recorder_buffer_size``
rows; slots never written are all zero.

``per_token`` mode (``_DetailAccumulator.dump``; one file per rank)::

    {"records": [{"forward_pass_id": int, "rank": int, "gatherer_key": str,
                  "input_ids": [T ints], "positions": [T ints],
                  "extend_seq_lens": [per-request lengths] | None, "forward_mode": int,
                  "topk_ids_of_layer": int32 [L, T, 8] (physical ids, -1 padded),
                  "misc_objects": [...], "global_physical_count": [L, P]}, ...],
     "last_physical_to_logical_map": int [L, P]}

``per_pass`` mode (``_DetailAccumulator`` fed by ``_SelectExpertsSinglePassGatherer``;
one file per rank): the same, but each record carries only
``forward_pass_id``, ``rank``, ``gatherer_key`` and this rank's (not reduced)
``global_physical_count`` ``[L, P]``.

The first recorder (sglang <= 0.4.5, ``python/sglang/srt/managers/expert_distribution.py``)
wrote one ``expert_distribution_rank{r}_timestamp{t}.csv`` per rank with the
lines ``layer_id,expert_id,count`` of that rank's (not reduced) counts.

Per-request routed experts (``meta_info["routed_experts"]``) are imported by
:func:`import_sglang_requests`.

Files are read with ``torch.load(..., weights_only=True)``: only tensors and
plain containers can be loaded, never arbitrary pickled objects.  Every field
is then checked before it is used (integers only, never truncated or
wrapped; ids within the slot count; sizes within what a log can hold), errors
name the file, the record and the field, and the log is assembled beside its
destination and moved into place only when complete.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from infomoe._validate import describe
from infomoe.logs.ingest._common import (
    INT32_MAX,
    INT64_MAX,
    MAX_EXPERTS,
    MAX_LAYER_ID,
    ImportResult,
    check_int,
    check_num_experts,
    content_key,
    int_array,
    write_log,
)
from infomoe.logs.ingest._requests import clean_ids

__all__ = ["import_sglang", "import_sglang_requests", "load_sglang_dump", "decode_routed_experts"]


def load_sglang_dump(path) -> dict:
    """Load one SGLang dump safely (``torch.load(weights_only=True)`` on CPU).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file cannot be loaded that way (corrupt, truncated, or holding
        pickled objects), or is not an expert-distribution dump.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SGLang dump {p} does not exist (or is not a file).")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any corruption: zip, pickle opcodes, recursion, unsafe globals
        raise ValueError(f"{p}: cannot be loaded with torch.load(weights_only=True) ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); SGLang dumps hold only tensors, numbers, strings, lists and "
                         "dicts.") from None
    if not isinstance(obj, dict) or not ({"records", "logical_count"} & set(obj)):
        keys = sorted(repr(k) for k in obj)[:10] if isinstance(obj, dict) else describe(obj)
        raise ValueError(f"{p}: not an SGLang expert-distribution dump (expected a dict with 'records' "
                         f"(per_token mode) or 'logical_count' (stat mode), got {keys}).")
    return obj


def _files(source) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            files = sorted(p.glob("*.pt")) or sorted(p.glob("*.csv"))
            if not files:
                raise FileNotFoundError(f"no .pt (or .csv) files in {p}.")
            return files
        return [p]
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise TypeError(f"`source` must be a path or a list of paths, got {describe(source)}.")
    files = []
    for f in source:
        if not isinstance(f, (str, os.PathLike)):
            raise TypeError(f"`source` must hold paths, got {describe(f)}.")
        files.append(Path(f))
    if not files:
        raise ValueError("`source` is an empty list of dump files.")
    return files


def import_sglang(source: Union[str, os.PathLike, Iterable], out, *, top_k: Optional[int] = None,
                  num_experts: Optional[int] = None, to_logical: bool = True,
                  drop_empty_layers: bool = True, deduplicate: bool = True, count_replicas: Optional[int] = None,
                  model_id: Optional[str] = None, score_function: str = "unknown",
                  metadata: Optional[dict] = None) -> ImportResult:
    """Convert SGLang expert-distribution dumps into a routing log.

    Parameters
    ----------
    source : path or iterable of paths
        A ``.pt`` file, a directory of them (or of ``.csv`` files), or a
        list.  All must be of one mode (``stat``, ``per_pass``,
        ``per_token``, or the per-rank CSVs).
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    top_k : int, optional
        Experts per token.  ``per_token``: default is the largest number of
        non-padding ids of any token (columns beyond it, all ``-1``, are
        cut; a routed id beyond column `top_k` is an error, never dropped).
        ``stat``, ``per_pass`` and CSV: required (counts do not reveal it).
    num_experts : int, optional
        Logical experts per layer (default: ``max(physical_to_logical) + 1``
        for ``per_token``, at most the number of physical slots; the last
        axis of ``logical_count`` for ``stat``).
    to_logical : bool
        ``per_token`` only: map physical slot ids to logical expert ids
        through ``last_physical_to_logical_map`` (default).  With False the
        log keeps physical ids, ``expert_id_space="physical"`` and the map in
        the manifest.
    drop_empty_layers : bool
        ``per_token``: leave out layers whose ids are ``-1`` for every token
        (dense layers of e.g. DeepSeek-V3).  ``stat``: leave out layers with
        zero counts throughout.
    deduplicate : bool
        Skip replicated records (see Notes).
    count_replicas : int
        ``stat`` only, and required there: how many ranks route each token
        (the TP size under plain tensor parallelism, where every TP rank runs
        the router on the same tokens; 1 when each rank routes its own
        tokens).  SGLang all-reduces the counts with SUM, so they are divided
        by it (a count that is not a multiple is an error).
    model_id, score_function, metadata
        Manifest fields.

    Returns
    -------
    ImportResult

    Raises
    ------
    ValueError, TypeError
        Naming the file, record and field, for anything that is not a valid
        dump: a float, bool or string where an integer belongs (never
        truncated), a value beyond ``int64`` or the log column's range (never
        wrapped), a physical id outside ``[-1, slots)``, a missing key,
        shapes that disagree, ``extend_seq_lens`` that do not sum to the
        record's tokens.  Nothing is written then.

    Notes
    -----
    ``stat`` files become aggregate count records (one window per buffered
    step, all-zero slots of SGLang's circular buffer skipped), layer ``l``
    keeping the logical counts ``logical_count[:, l, :] // count_replicas``.
    ``per_pass`` records become one count window per (forward pass, rank),
    physical counts summed into logical ones through the map (SGLang's own
    ``scatter_add``); CSV files one window per rank.

    ``per_token`` records become token shards, one per forward pass:
    ``token_id`` = ``input_ids``, ``position`` = ``positions``, ``step`` =
    ``forward_pass_id``, ``rank`` = the dumping rank; ``seq_id`` numbers the
    requests of a forward pass using ``extend_seq_lens`` (prefill/extend
    batches) or one request per token (decode), counting up across passes.
    SGLang dumps no request ids, so decode tokens of one request are not
    linked to its prefill.  Padding ids (``-1``) are kept as ``-1``, and so
    are sentinel slots (``255`` or ``65535`` beyond the slot count, e.g.
    fused shared experts): they are never an expert id.  SGLang's
    grouped and biased top-k use ``torch.topk(sorted=False)``, so the
    manifest says ``topk_order="unordered"``.

    Merging ranks without double counting: ``stat`` dumps are already summed
    over all ranks (SGLang all-reduces with SUM before rank 0 writes), which
    counts a token once per rank that routed it: the counts are divided by
    `count_replicas`, and a ``stat`` file whose counts are identical to one
    already imported is a copy and is skipped.  ``per_token`` files are per rank; ranks that share a batch
    (tensor parallel without DP attention) record identical records, ranks
    with their own batches (DP attention) different ones.  A record whose
    ``forward_pass_id``, ``input_ids``, ``positions`` and expert ids equal a
    record already imported is a replica and is skipped (however many padding
    columns each carries).  Pipeline parallel: each stage records its own
    layers of the same passes (``-1`` elsewhere); records of one pass with the
    same ``input_ids`` and ``positions`` that agree on the layers both route
    and bring new layers are merged into the same tokens
    (``ImportResult.num_merged``).  ``per_pass`` and CSV counts are per rank
    and not reduced: identical ones are tensor-parallel replicas (skipped),
    others are summed.

    The ``last_physical_to_logical_map`` is the map at dump time; if EPLB
    rebalanced during recording, earlier records were routed under another
    map (SGLang does not dump the history).

    References
    ----------
    SGLang ``python/sglang/srt/eplb/expert_distribution.py``; no equation.

    Examples
    --------
    A ``per_token`` dump of one forward pass (two requests of 2 and 1
    tokens, one MoE layer, 4 physical slots holding 3 logical experts):

    >>> import os, tempfile, torch
    >>> from infomoe.logs import open_log
    >>> d = tempfile.mkdtemp()
    >>> topk = torch.tensor([[[0, 3, -1], [1, 2, -1], [3, 1, -1]]], dtype=torch.int32)   # [L, T, 3] physical
    >>> record = {"forward_pass_id": 0, "rank": 0, "input_ids": [5, 6, 7], "positions": [0, 1, 0],
    ...           "extend_seq_lens": [2, 1], "topk_ids_of_layer": topk}
    >>> p2l = torch.tensor([[0, 1, 2, 0]])                                      # slot 3 replicates expert 0
    >>> torch.save({"records": [record], "last_physical_to_logical_map": p2l}, os.path.join(d, "r0.pt"))
    >>> import_sglang(d, os.path.join(d, "log")).num_tokens
    3
    >>> log = open_log(os.path.join(d, "log"))
    >>> log.read()["expert_ids"][0].tolist(), log.read()["seq_id"].tolist()
    ([[0, 0], [1, 2], [0, 1]], [0, 0, 1])
    >>> record["positions"] = [0, 1.0, 0]                                       # never truncated
    >>> torch.save({"records": [record], "last_physical_to_logical_map": p2l}, os.path.join(d, "r0.pt"))
    >>> import_sglang(d, os.path.join(d, "log2"))
    Traceback (most recent call last):
    ...
    TypeError: .../r0.pt record 0: 'positions' must hold integers, found 1.0.
    """
    from infomoe.logs import LayerSpec

    files = _files(source)
    if top_k is not None:
        top_k = check_int(top_k, "`top_k`", minimum=1)
    if num_experts is not None:
        num_experts = check_num_experts(num_experts, "`num_experts`")
    if count_replicas is not None:
        count_replicas = check_int(count_replicas, "`count_replicas`", minimum=1, maximum=1 << 20)
    if any(f.suffix == ".csv" for f in files):
        if not all(f.suffix == ".csv" for f in files):
            raise ValueError(f"`source` mixes .csv and .pt dumps ({[str(f) for f in files]}); import them into "
                             "separate logs.")
        return _import_csv(files, out, top_k=top_k, num_experts=num_experts, drop_empty=drop_empty_layers,
                           deduplicate=deduplicate, model_id=model_id, score_function=score_function,
                           metadata=metadata, LayerSpec=LayerSpec)
    dumps = [(f, load_sglang_dump(f)) for f in files]
    modes = {_mode(f, d) for f, d in dumps}
    if len(modes) != 1:
        raise ValueError(f"`source` mixes SGLang recorder modes {sorted(modes)} ({[str(f) for f in files]}); "
                         "import them into separate logs.")
    mode = modes.pop()
    meta = {"sglang_mode": mode, "files": [f.name for f in files]}
    meta.update(metadata or {})
    if mode == "stat":
        return _import_stat(dumps, out, top_k=top_k, num_experts=num_experts, drop_empty=drop_empty_layers,
                            deduplicate=deduplicate, count_replicas=count_replicas, model_id=model_id,
                            score_function=score_function, meta=meta, LayerSpec=LayerSpec)

    p2l, n_layers, n_phys, n_logical = _physical_to_logical(files, dumps, num_experts)
    if mode == "per_pass":
        return _import_per_pass(dumps, out, p2l=p2l, n_logical=n_logical, top_k=top_k, to_logical=to_logical,
                                drop_empty=drop_empty_layers, deduplicate=deduplicate, model_id=model_id,
                                score_function=score_function, meta=meta, LayerSpec=LayerSpec)

    # -- per_token ---------------------------------------------------------
    records = []
    for f, d, i, r, where in _records(dumps):
        for key in ("topk_ids_of_layer", "input_ids", "positions", "forward_pass_id"):
            if key not in r:
                raise ValueError(f"{where}: missing {key!r}.")
        fpid = check_int(r["forward_pass_id"], f"{where}: 'forward_pass_id'", minimum=0, maximum=INT64_MAX)
        rank = check_int(r.get("rank", 0), f"{where}: 'rank'", minimum=0, maximum=INT32_MAX)
        ids = int_array(r["topk_ids_of_layer"], f"{where}: 'topk_ids_of_layer' (physical ids)", ndim=3,
                        minimum=-1)
        tok = int_array(r["input_ids"], f"{where}: 'input_ids'", ndim=1, minimum=0, maximum=INT32_MAX)
        pos = int_array(r["positions"], f"{where}: 'positions'", ndim=1, minimum=0, maximum=INT32_MAX)
        if ids.shape[0] != n_layers or ids.shape[1] != tok.shape[0] or ids.shape[2] < 1:
            raise ValueError(f"{where}: topk_ids_of_layer has shape {ids.shape}, expected "
                             f"[{n_layers}, {tok.shape[0]}, k >= 1] (layers x input_ids x k).")
        ids = clean_ids(ids, n_phys, f"{where}: 'topk_ids_of_layer' (physical ids)")
        if pos.shape != tok.shape:
            raise ValueError(f"{where}: {pos.shape[0]} positions for {tok.shape[0]} input_ids.")
        lens = None
        if r.get("extend_seq_lens") is not None:
            lens = int_array(r["extend_seq_lens"], f"{where}: 'extend_seq_lens'", ndim=1, minimum=0,
                             maximum=tok.shape[0])
            total = sum(lens.tolist())                       # Python ints: no overflow
            if total != tok.shape[0]:
                raise ValueError(f"{where}: 'extend_seq_lens' sum to {total}, the record has "
                                 f"{tok.shape[0]} input_ids.")
        records.append((where, fpid, rank, ids, tok, pos, lens))
    if not records:
        raise ValueError(f"no per_token records in {[str(f) for f in files]}.")

    valid_per_row = max(int((r[3] >= 0).sum(axis=2).max(initial=0)) for r in records)
    k = valid_per_row if top_k is None else top_k
    if k < 1:
        raise ValueError(f"every expert id in {[str(f) for f in files]} is -1; nothing was routed.")
    for where, _, _, ids, *_ in records:
        if ids.shape[2] < k:
            raise ValueError(f"{where}: topk_ids_of_layer has {ids.shape[2]} id columns, fewer than top_k={k}.")
        if (ids[:, :, k:] >= 0).any():
            raise ValueError(f"{where}: topk_ids_of_layer routes a token to an expert beyond column top_k={k}; "
                             "cutting it would drop a choice (pass a larger `top_k`).")
    n_ids = n_logical if to_logical else n_phys
    if k > n_ids:
        raise ValueError(f"top_k={k} exceeds the {n_ids} {'logical' if to_logical else 'physical'} experts of "
                         f"{[str(f) for f in files]}.")
    passes, skipped, merged = _merge_passes(records, k, deduplicate)
    layer_used = np.zeros(n_layers, bool)
    for p in passes:
        layer_used |= p["used"]
    keep = [l for l in range(n_layers) if layer_used[l] or not drop_empty_layers]
    if not keep:  # pragma: no cover - k >= 1 means some id is routed
        raise ValueError("no layer has any routed token.")

    if to_logical:
        layers = [LayerSpec(l, n_logical, k) for l in keep]
        space, p2l_meta = "logical", None
    else:
        layers = [LayerSpec(l, n_phys, k) for l in keep]
        space, p2l_meta = "physical", {l: p2l[l].tolist() for l in keep}
    if merged:
        meta = dict(meta, pipeline_merge=f"{merged} records of other pipeline stages (same forward pass and "
                                         "tokens, other layers) merged into their tokens")
    def blocks():
        next_seq = 0
        for p in passes:
            ids, tok, pos, lens, fpid, rank = p["ids"], p["tok"], p["pos"], p["lens"], p["fpid"], p["rank"]
            n = tok.shape[0]
            if n == 0:
                continue
            if to_logical:
                lid = np.arange(n_layers)[:, None, None]
                ids = np.where(ids >= 0, p2l[lid, np.clip(ids, 0, None)], -1)
            if lens is None:
                lens = np.ones(n, np.int64)
            seq = next_seq + np.repeat(np.arange(lens.shape[0]), lens)
            next_seq += lens.shape[0]
            yield {l: ids[l] for l in keep}, {"seq_id": seq, "position": pos, "token_id": tok,
                                              "step": np.full(n, fpid, np.int64), "rank": np.full(n, rank, np.int64)}

    tokens, _, shards = write_log(out, source="sglang", layers=layers, blocks=blocks(), model_id=model_id,
                                  score_function=score_function, topk_order="unordered", expert_id_space=space,
                                  physical_to_logical=p2l_meta, metadata=meta)
    return ImportResult(str(out), tokens, 0, shards, skipped, merged)


def _mode(f, d) -> str:
    if "logical_count" in d and "records" not in d:
        return "stat"
    recs = d["records"]
    if not isinstance(recs, (list, tuple)):
        raise ValueError(f"{f}: 'records' must be a list, got {describe(recs)}.")
    if recs and all(isinstance(r, dict) and "topk_ids_of_layer" not in r and "global_physical_count" in r
                    for r in recs):
        return "per_pass"
    return "per_token"


def _records(dumps):
    for f, d in dumps:
        if not isinstance(d["records"], (list, tuple)):
            raise ValueError(f"{f}: 'records' must be a list, got {describe(d['records'])}.")
        for i, r in enumerate(d["records"]):
            where = f"{f} record {i}"
            if not isinstance(r, dict):
                raise ValueError(f"{where}: not a dict, got {describe(r)}.")
            yield f, d, i, r, where


def _physical_to_logical(files, dumps, num_experts):
    maps = []
    for f, d in dumps:
        if "last_physical_to_logical_map" not in d:
            raise ValueError(f"{f}: {_mode(f, d)} dump has no 'last_physical_to_logical_map'.")
        m = int_array(d["last_physical_to_logical_map"], f"{f}: 'last_physical_to_logical_map' [layers, physical]",
                      ndim=2, minimum=0)
        if 0 in m.shape:
            raise ValueError(f"{f}: 'last_physical_to_logical_map' has shape {m.shape}; it needs at least one "
                             "layer and one physical slot.")
        maps.append(m)
    p2l = maps[0]
    for f, m in zip(files, maps):
        if not np.array_equal(m, p2l):
            raise ValueError(f"{f}: physical-to-logical map differs from {files[0]}'s; import dumps taken "
                             "under different expert placements separately.")
    n_layers, n_phys = p2l.shape
    check_num_experts(n_phys, f"{files[0]}: 'last_physical_to_logical_map' physical slots")
    top_logical = int(p2l.max())
    if top_logical >= n_phys:
        raise ValueError(f"{files[0]}: 'last_physical_to_logical_map' maps a slot to logical expert "
                         f"{top_logical}, but there are only {n_phys} physical slots (SGLang places every "
                         "logical expert on at least one slot).")
    n_logical = top_logical + 1 if num_experts is None else num_experts
    if not top_logical < n_logical <= n_phys:
        raise ValueError(f"`num_experts`={n_logical} must lie in [{top_logical + 1}, {n_phys}]: above the largest "
                         f"logical id of 'last_physical_to_logical_map' and at most its {n_phys} physical slots.")
    return p2l, n_layers, n_phys, n_logical


def _merge_passes(records, k, deduplicate):
    """Records -> forward passes: replicas skipped, pipeline stages of one pass merged.

    Records of one forward pass with the same ``input_ids`` and
    ``positions`` are compared on the layers both route (ids other than
    ``-1``): equal there and no new layer -> a replica (tensor parallel);
    equal there (or no common layer) with new layers -> another pipeline
    stage of the same tokens, merged in; different -> other tokens (DP
    attention ranks), kept apart.
    """
    groups: dict = {}
    passes, skipped, merged = [], 0, 0
    for where, fpid, rank, ids, tok, pos, lens in sorted(records, key=lambda r: (r[1], r[2])):
        ids = ids[:, :, :k]                                  # padding columns cut: not part of the routing
        used = (ids >= 0).any(axis=(1, 2))
        entries = groups.setdefault((fpid, content_key(tok, pos)), [])
        for e in entries:
            both = used & e["used"]
            if not np.array_equal(ids[both], e["ids"][both]):
                continue
            new = used & ~e["used"]
            if not new.any():
                if deduplicate:
                    skipped += 1
                    break
                continue
            if not both.any() or deduplicate:
                e["ids"] = e["ids"].copy()
                e["ids"][new] = ids[new]
                e["used"] = e["used"] | used
                merged += 1
                break
        else:
            e = {"ids": ids, "used": used, "tok": tok, "pos": pos, "lens": lens, "fpid": fpid, "rank": rank}
            entries.append(e)
            passes.append(e)
    return passes, skipped, merged


def _import_per_pass(dumps, out, *, p2l, n_logical, top_k, to_logical, drop_empty, deduplicate, model_id,
                     score_function, meta, LayerSpec) -> ImportResult:
    """``per_pass`` recorder mode: one count window per (forward pass, rank) record."""
    if top_k is None:
        raise ValueError("`top_k` is required for per_pass dumps: per-expert counts do not reveal how many "
                         "experts each token chose.")
    n_layers, n_phys = p2l.shape
    recs = []
    for f, d, i, r, where in _records(dumps):
        for key in ("forward_pass_id", "global_physical_count"):
            if key not in r:
                raise ValueError(f"{where}: missing {key!r}.")
        fpid = check_int(r["forward_pass_id"], f"{where}: 'forward_pass_id'", minimum=0, maximum=INT64_MAX)
        rank = check_int(r.get("rank", 0), f"{where}: 'rank'", minimum=0, maximum=INT32_MAX)
        c = int_array(r["global_physical_count"], f"{where}: 'global_physical_count' [layers, physical]", ndim=2,
                      minimum=0, maximum=2**40)
        if c.shape != (n_layers, n_phys):
            raise ValueError(f"{where}: 'global_physical_count' has shape {c.shape}, the physical-to-logical map "
                             f"{(n_layers, n_phys)}.")
        recs.append((fpid, rank, c))
    if not recs:
        raise ValueError("no per_pass records in the dumps.")
    n_ids = n_logical if to_logical else n_phys
    if top_k > n_ids:
        raise ValueError(f"`top_k`={top_k} exceeds the {n_ids} experts.")
    used = np.zeros(n_layers, bool)
    for _, _, c in recs:
        used |= c.any(axis=1)
    keep = [l for l in range(n_layers) if used[l] or not drop_empty]
    if not keep:
        raise ValueError("all per_pass counts are zero.")
    seen, skipped, windows = set(), 0, []
    for fpid, rank, c in sorted(recs, key=lambda x: (x[0], x[1])):
        if deduplicate:
            key = (fpid, content_key(c))
            if key in seen:
                skipped += 1
                continue
            seen.add(key)
        if to_logical:
            lc = np.zeros((n_layers, n_logical), np.int64)
            np.add.at(lc, (np.arange(n_layers)[:, None], p2l), c)   # SGLang's scatter_add over the map
            c = lc
        windows.append((fpid, rank, c))
    if to_logical:
        layers, space, p2l_meta = [LayerSpec(l, n_logical, top_k) for l in keep], "logical", None
    else:
        layers = [LayerSpec(l, n_phys, top_k) for l in keep]
        space, p2l_meta = "physical", {l: p2l[l].tolist() for l in keep}
    meta = dict(meta, merge_rule="per_pass records are per rank and not reduced; a record equal to one already "
                                 "imported for the same forward pass is a replica (tensor parallel) and skipped")
    counts = [(np.stack([x[2][keep] for x in windows]), {"step": np.array([x[0] for x in windows], np.int64),
                                                         "rank": np.array([x[1] for x in windows], np.int64)})]
    write_log(out, source="sglang", layers=layers, counts=counts, model_id=model_id, score_function=score_function,
              topk_order="unordered", expert_id_space=space, physical_to_logical=p2l_meta, metadata=meta)
    return ImportResult(str(out), 0, len(windows), 1, skipped)


def _import_stat(dumps, out, *, top_k, num_experts, drop_empty, deduplicate, count_replicas, model_id,
                 score_function, meta, LayerSpec) -> ImportResult:
    if top_k is None:
        raise ValueError("`top_k` is required for stat dumps: per-expert counts do not reveal how many "
                         "experts each token chose.")
    if count_replicas is None:
        raise ValueError("`count_replicas` is required for stat dumps: SGLang all-reduces (SUM) the counts of "
                         "every rank, so a token routed on several ranks is counted once per rank. Pass the "
                         "number of ranks that route each token: the TP size under plain tensor parallelism "
                         "(every TP rank runs the router on the same tokens), 1 when each rank routes its own "
                         "tokens (DP attention with DeepEP/expert parallel dispatch).")
    counts_all = []
    for f, d in dumps:
        raw = d["logical_count"]
        nested = isinstance(raw, (list, tuple)) and raw and isinstance(raw[0], (list, tuple)) and raw[0] \
            and isinstance(raw[0][0], (list, tuple))
        ndim = getattr(raw, "ndim", 3 if nested else 2)
        c = int_array(raw, f"{f}: 'logical_count' ([steps, layers, experts] or [layers, experts])",
                      ndim=3 if ndim == 3 else 2, minimum=0)
        if c.ndim == 2:
            c = c[None]
        if 0 in c.shape[1:]:
            raise ValueError(f"{f}: 'logical_count' has shape {c.shape}; it needs at least one layer and expert.")
        if c.size and float(c.sum(dtype=np.float64)) > 2.0**62:
            raise ValueError(f"{f}: 'logical_count' sums to more than 2**62; such counts would overflow the "
                             "int64 sums of any analysis (the dump is corrupted).")
        if count_replicas > 1:
            if (c % count_replicas).any():
                idx = [int(i) for i in np.argwhere(c % count_replicas)[0]]
                raise ValueError(f"{f}: 'logical_count'{idx} = {int(c[tuple(idx)])} is not a multiple of "
                                 f"`count_replicas`={count_replicas}, so these counts were not summed over "
                                 f"{count_replicas} ranks routing the same tokens; check `count_replicas`.")
            c = c // count_replicas
        rank = check_int(d.get("rank", 0), f"{f}: 'rank'", minimum=0, maximum=INT32_MAX)
        counts_all.append((f, rank, c))
    shapes = {c.shape[1:] for _, _, c in counts_all}
    if len(shapes) != 1:
        raise ValueError(f"stat dumps disagree on [layers, experts]: "
                         f"{ {str(f): list(c.shape[1:]) for f, _, c in counts_all} }.")
    n_layers, e = shapes.pop()
    check_num_experts(e, f"{counts_all[0][0]}: 'logical_count' experts")
    if num_experts is not None and num_experts != e:
        raise ValueError(f"`num_experts`={num_experts} but logical_count has {e} experts.")
    if top_k > e:
        raise ValueError(f"`top_k`={top_k} exceeds the {e} experts of 'logical_count'.")
    used = np.zeros(n_layers, bool)
    for _, _, c in counts_all:
        used |= (c > 0).any(axis=(0, 2))
    keep = [l for l in range(n_layers) if used[l] or not drop_empty]
    if not keep:
        raise ValueError(f"all counts are zero in {[str(f) for f, _, _ in counts_all]}.")
    seen, skipped, windows, shards = set(), 0, 0, 0
    meta = dict(meta, count_replicas=count_replicas,
                merge_rule=f"stat dumps are all-reduced (SUM) over ranks; counts divided by count_replicas="
                           f"{count_replicas} (ranks routing the same tokens); identical files are copies and "
                           "imported once")
    def counts():
        nonlocal skipped
        for f, rank, c in counts_all:
            if deduplicate:
                key = content_key(c)
                if key in seen:
                    skipped += 1
                    continue
                seen.add(key)
            c = c[(c > 0).any(axis=(1, 2))]  # unused slots of the circular buffer
            if c.shape[0]:
                yield c[:, keep, :], {"rank": rank}

    _, windows, shards = write_log(out, source="sglang", layers=[LayerSpec(l, e, top_k) for l in keep],
                                   counts=counts(), model_id=model_id, score_function=score_function,
                                   topk_order="unordered", metadata=meta)
    return ImportResult(str(out), 0, windows, shards, skipped)


# ----------------------------------------------------------------------------- per-rank CSV (sglang <= 0.4.5)
_CSV_RANK = re.compile(r"expert_distribution_rank(\d+)_")
_CSV_INT = re.compile(r"-?[0-9]{1,19}")


def _read_csv(f: Path) -> dict:
    """``{(layer, expert): count}`` of one ``expert_distribution_rank{r}_timestamp{t}.csv``."""
    try:
        text = f.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{f}: not UTF-8 text (byte {exc.start}); not an SGLang expert-distribution CSV.") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "layer_id,expert_id,count":
        raise ValueError(f"{f}: the first line must be the header 'layer_id,expert_id,count', got "
                         f"{describe(lines[0] if lines else '')}.")
    out = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.strip().split(",")
        if len(cells) != 3 or not all(_CSV_INT.fullmatch(c) for c in cells):
            hint = " ('UNKNOWN' layer: the recorder ran outside a MoE layer)" if cells[0] == "UNKNOWN" else ""
            raise ValueError(f"{f}:{n}: expected three integers 'layer_id,expert_id,count', got "
                             f"{describe(line)}{hint}.")
        layer, expert, count = (int(c) for c in cells)
        check_int(layer, f"{f}:{n}: layer_id", minimum=0, maximum=MAX_LAYER_ID)
        check_int(expert, f"{f}:{n}: expert_id", minimum=-1, maximum=MAX_EXPERTS)
        check_int(count, f"{f}:{n}: count", minimum=0, maximum=2**53)
        if (layer, expert) in out:
            raise ValueError(f"{f}:{n}: layer {layer}, expert {expert} appears twice.")
        out[(layer, expert)] = count
    return out


def _import_csv(files, out, *, top_k, num_experts, drop_empty, deduplicate, model_id, score_function, metadata,
                LayerSpec) -> ImportResult:
    """Per-rank CSVs of SGLang's first recorder: one count window per rank, replica files imported once."""
    if top_k is None:
        raise ValueError("`top_k` is required for CSV dumps: per-expert counts do not reveal how many experts each "
                         "token chose.")
    tables = []
    for f in files:
        m = _CSV_RANK.search(f.name)
        rank = int(m.group(1)) if m else 0
        tables.append((f, check_int(rank, f"{f}: rank in the file name", minimum=0, maximum=INT32_MAX),
                       _read_csv(f)))
    ids = [e for _, _, t in tables for (_, e) in t if e >= 0]
    if num_experts is None:
        routed = [e for e in ids if e not in (255, 65535)]
        if not routed:
            raise ValueError(f"no expert ids in {[str(f) for f in files]}.")
        num_experts = check_num_experts(max(routed) + 1, "largest expert_id + 1")
    layers_all = sorted({l for _, _, t in tables for (l, e), c in t.items()
                         if (c > 0 and 0 <= e < num_experts) or not drop_empty})
    if not layers_all:
        raise ValueError(f"no routed counts in {[str(f) for f in files]}.")
    if top_k > num_experts:
        raise ValueError(f"`top_k`={top_k} exceeds the {num_experts} experts.")
    pos = {l: i for i, l in enumerate(layers_all)}
    seen, skipped, windows, ranks, dropped = set(), 0, [], [], 0
    for f, rank, t in tables:
        c = np.zeros((len(layers_all), num_experts), np.int64)
        for (l, e), n in t.items():
            if e == -1 or (e >= num_experts and e in (255, 65535)):
                dropped += n                                  # sentinel slots: not an expert
                continue
            if e >= num_experts:
                raise ValueError(f"{f}: expert_id {e} outside [0, {num_experts}) (`num_experts`).")
            if l in pos:
                c[pos[l], e] += n
        if deduplicate:
            key = content_key(c)
            if key in seen:                                   # tensor-parallel ranks record the same tokens
                skipped += 1
                continue
            seen.add(key)
        windows.append(c)
        ranks.append(rank)
    meta = {"sglang_mode": "csv", "files": [f.name for f in files], "sentinel_choices_dropped": dropped,
            "merge_rule": "per-rank counts (not reduced) summed; files with identical counts are replicas "
                          "(tensor parallel) and imported once"}
    meta.update(metadata or {})
    write_log(out, source="sglang", layers=[LayerSpec(l, num_experts, top_k) for l in layers_all],
              counts=[(np.stack(windows), {"rank": np.array(ranks, np.int64)})], model_id=model_id,
              score_function=score_function, topk_order="unordered", metadata=meta)
    return ImportResult(str(out), 0, len(windows), 1, skipped)


# ----------------------------------------------------------------------------- per-request routed experts
def decode_routed_experts(value, where: str) -> np.ndarray:
    """SGLang's ``meta_info["routed_experts"]`` (base64 of int32 bytes) as a flat ``int64`` array.

    Also accepts the bytes themselves or an integer array/list (already
    decoded with ``extract_routed_experts_from_meta_info``).

    Examples
    --------
    >>> import base64
    >>> decode_routed_experts(base64.b64encode(np.array([3, 1, 0, 2], np.int32).tobytes()).decode(), "r").tolist()
    [3, 1, 0, 2]
    """
    import base64
    import binascii

    if isinstance(value, str):
        try:
            value = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise ValueError(f"{where}: 'routed_experts' is not base64 ({exc}); SGLang returns the int32 ids "
                             "base64-encoded.") from None
    if isinstance(value, (bytes, bytearray)):
        if len(value) % 4:
            raise ValueError(f"{where}: 'routed_experts' decodes to {len(value)} bytes, not a whole number of "
                             "int32 ids; the response is truncated or corrupted.")
        return np.frombuffer(bytes(value), dtype="<i4").astype(np.int64)
    a = np.asarray(value) if isinstance(value, (list, tuple)) else value
    return int_array(a, f"{where}: 'routed_experts'", ndim=int(getattr(a, "ndim", 1)), minimum=-1).reshape(-1)


def import_sglang_requests(responses: Iterable, out, *, num_experts: int, num_layers: Optional[int] = None,
                           top_k: Optional[int] = None, model_config=None, moe_layers=None,
                           layer_ids=None, start_len=None, token_ids: Optional[Sequence] = None,
                           request_ids: Optional[Sequence[int]] = None, labels: Optional[Sequence[int]] = None,
                           shard_tokens: int = 1 << 20, model_id: Optional[str] = None,
                           score_function: str = "unknown", metadata: Optional[dict] = None) -> ImportResult:
    """Convert SGLang per-request routed experts (``--enable-return-routed-experts``) into a routing log.

    Parameters
    ----------
    responses : iterable
        One item per request: a ``/generate`` response dict (its
        ``meta_info["routed_experts"]``; token ids from ``input_ids`` +
        ``output_ids`` when present), a ``meta_info`` dict, the base64 string
        itself, or an integer array ``[rows, num_layers, top_k]``.
    out : str or os.PathLike
        Log directory to create (must not exist, or be empty).
    num_experts : int
        Routed (logical) experts per MoE layer.
    num_layers, top_k : int, optional
        The model's ``num_hidden_layers`` and ``num_experts_per_tok``, to
        reshape the flat ids (default: from `model_config`; not needed for
        3-D arrays).
    model_config : model config, optional
        The Hugging Face config (object or dict): gives `num_layers`,
        `top_k` and, unless `moe_layers`/`layer_ids` is given, the MoE layers.
    moe_layers, layer_ids
        As for :func:`~infomoe.logs.ingest.import_vllm` (default: all-zero
        layers, what SGLang writes for dense layers, are left out).
    start_len : int or sequence of int, optional
        The request's ``routed_experts_start_len`` (default 0, or the item's
        ``routed_experts_start_len``): row ``j`` is position ``start_len + j``.
    token_ids : sequence of arrays, optional
        All token ids (prompt + output) of each request.
    request_ids, labels, shard_tokens, model_id, score_function, metadata
        As for :func:`~infomoe.logs.ingest.import_vllm`.

    Returns
    -------
    ImportResult

    Notes
    -----
    SGLang (``python/sglang/srt/state_capturer/routed_experts.py`` and
    ``managers/scheduler_components/batch_result_processor.py``, 0.5.23)
    returns rows for positions ``[start_len, seqlen - 1)`` of ``prompt +
    output``, ``num_hidden_layers`` layers of ``num_experts_per_tok`` logical
    ids each (fused shared-expert columns are cut by SGLang), int32 and
    base64-encoded; the capture buffer is zero-initialised, so dense layers
    are ``0``.  ``topk_order="unordered"`` (``torch.topk(sorted=False)`` in
    the grouped and biased top-k, and no weights to sort by).

    Examples
    --------
    >>> import base64, os, tempfile
    >>> ids = np.array([[[0, 0], [2, 1]], [[0, 0], [3, 2]]], np.int32)       # 2 rows, layer 0 dense
    >>> resp = {"input_ids": [4, 5, 6], "output_ids": [7],
    ...         "meta_info": {"routed_experts": base64.b64encode(ids.tobytes()).decode()}}
    >>> out = os.path.join(tempfile.mkdtemp(), "log")
    >>> _ = import_sglang_requests([resp], out, num_experts=4, num_layers=2, top_k=2, start_len=1)
    >>> from infomoe.logs import open_log
    >>> log = open_log(out)
    >>> log.layer_ids, log.read()["position"].tolist(), log.read()["token_id"].tolist()
    ((1,), [1, 2], [5, 6])
    """
    from infomoe._validate import check_positive_int
    from infomoe.logs.ingest._requests import (
        Request,
        _cfg_get,
        clean_ids,
        moe_layer_axis,
        moe_layers_from_config,
        write_requests,
    )
    from infomoe.logs.ingest._requests import per_request, request_ids_and_labels, request_items, row_offsets

    num_experts = check_num_experts(num_experts, "`num_experts`")
    shard_tokens = check_positive_int(shard_tokens, "shard_tokens")
    if model_config is not None:
        cfg = _cfg_get(model_config, "text_config") or model_config
        if num_layers is None and _cfg_get(cfg, "num_hidden_layers") is not None:
            num_layers = _cfg_get(cfg, "num_hidden_layers")
        if top_k is None and _cfg_get(cfg, "num_experts_per_tok") is not None:
            top_k = _cfg_get(cfg, "num_experts_per_tok")
        if moe_layers is None and layer_ids is None:
            moe_layers = moe_layers_from_config(model_config)
    if num_layers is not None:
        num_layers = check_int(num_layers, "`num_layers`", minimum=1, maximum=10**6)
    if top_k is not None:
        top_k = check_int(top_k, "`top_k`", minimum=1, maximum=num_experts)
    items = request_items(responses, "responses")
    token_ids = per_request(token_ids, "token_ids", len(items))
    request_ids, labels = request_ids_and_labels(request_ids, labels, len(items))
    start_len = row_offsets(start_len, "start_len", len(items))
    requests = []
    for i, item in enumerate(items):
        where = f"request {i}"
        toks, start, raw = None, 0, item
        if isinstance(item, dict):
            meta_info = item.get("meta_info", item)
            if not isinstance(meta_info, dict) or "routed_experts" not in meta_info:
                raise ValueError(f"{where}: no meta_info['routed_experts']; send the request with "
                                 "return_routed_experts=True to a server started with "
                                 "--enable-return-routed-experts.")
            raw = meta_info["routed_experts"]
            parts = [int_array(item[k], f"{where}: {k!r}", ndim=1, minimum=0, maximum=INT32_MAX)
                     for k in ("input_ids", "output_ids") if item.get(k) is not None]
            toks = np.concatenate(parts) if parts else None
            s = item.get("routed_experts_start_len", meta_info.get("routed_experts_start_len"))
            if s is not None:
                start = check_int(s, f"{where}: 'routed_experts_start_len'", minimum=0, maximum=INT32_MAX)
        if raw is None:
            raise ValueError(f"{where}: meta_info['routed_experts'] is None (the request did not ask for it).")
        if getattr(raw, "ndim", None) == 3:
            a = int_array(raw, f"{where}: routed_experts [rows, num_layers, top_k]", ndim=3, minimum=-1)
        else:
            flat = decode_routed_experts(raw, where)
            if num_layers is None or top_k is None:
                raise ValueError("`num_layers` and `top_k` (or `model_config`) are required to reshape SGLang's "
                                 "flat routed_experts into [rows, num_hidden_layers, num_experts_per_tok].")
            if flat.size % (num_layers * top_k):
                raise ValueError(f"{where}: {flat.size} routed-expert ids are not a whole number of rows of "
                                 f"num_layers x top_k = {num_layers} x {top_k}.")
            a = flat.reshape(-1, num_layers, top_k)
        if requests and a.shape[1:] != requests[0].ids.shape[1:]:
            raise ValueError(f"routed_experts of {where} has [layers, topk] = {list(a.shape[1:])}, request 0 has "
                             f"{list(requests[0].ids.shape[1:])}.")
        if a.shape[1] < 1 or a.shape[2] < 1:
            raise ValueError(f"{where}: routed_experts has [layers, topk] = {list(a.shape[1:])}; both must be >= 1.")
        if token_ids is not None:
            toks = int_array(token_ids[i], f"`token_ids`[{i}]", ndim=1, minimum=0, maximum=INT32_MAX)
        if start_len is not None:
            start = start_len[i]
        clean_ids(a, num_experts, f"routed_experts of {where}")
        requests.append(Request(a, start, toks, i if request_ids is None else request_ids[i],
                                None if labels is None else labels[i], where))
    axis, lids, how = moe_layer_axis(requests, moe_layers=moe_layers, layer_ids=layer_ids)
    meta = {"sglang_field": "meta_info['routed_experts']", "sglang_moe_layers": how}
    meta.update(metadata or {})
    return write_requests(requests, out, source="sglang", num_experts=num_experts, axis=axis, layer_ids=lids,
                          shard_tokens=shard_tokens, model_id=model_id, score_function=score_function,
                          topk_order="unordered", metadata=meta)
