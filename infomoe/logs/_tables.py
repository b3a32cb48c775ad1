r"""Count tables of routing logs: what one chunk contributes, and how parts add.

:func:`count_shard` turns one chunk of a log (a dict from
:meth:`RoutingLog.iter_chunks` or :meth:`RoutingLog.read_shard`) into
count tables (:class:`LogTables`).  It is a pure function of the chunk and
a :class:`CountSpec`, and tables of different chunks merge by ``+``, so
``sum(map(count_shard, chunks))`` (or a Dask ``fold``) gives the tables of
the whole log.  Memory is that of the tables plus one chunk.  The report
(:mod:`infomoe.logs._report`) is computed from the merged tables only, and
:func:`~infomoe.logs.analyze_log` (:mod:`infomoe.logs._analysis`) drives both.

Counting convention for top-k routing
-------------------------------------
A token routed to ``k`` experts contributes one count for every (token,
chosen expert) pair: expert load is the number of pairs an expert received,
and the contingency table of a token attribute ``A`` (token id, position
bucket, label) against the expert has ``k`` entries per token.  Normalised,
this table is the joint law of ``(A, E)`` when ``E`` is one of the token's
chosen experts drawn uniformly at random, so the reported ``I(A; E)`` is the
information a single routed slot carries about ``A`` (for ``k = 1`` it is
the usual ``I(A; E)``).  Between consecutive layers every pair (expert chosen
at layer l, expert chosen at layer l+1) counts once (``k_l k_{l+1}`` per
token).  Choices recorded as ``-1`` (dropped by capacity, or padding) are
skipped, and tokens with ``valid == False`` are skipped entirely.  The
chosen *set* is analysed as one symbol: each sorted k-set is mapped to its
rank in the combinatorial number system, an alphabet of ``C(E, k)`` symbols.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from infomoe._repr import dataclass_repr
from infomoe._validate import check_choice, check_positive_int
from infomoe.logs._manifest import LayerSpec, Manifest

__all__ = ["CountSpec", "LogTables", "count_shard", "tables_to_arrays", "tables_from_arrays",
           "DEFAULT_POSITION_EDGES", "ANALYSED_COLUMNS"]

#: Token columns the analysis reads (the others are never sent to :func:`count_shard`).
ANALYSED_COLUMNS = ("expert_ids", "router_logits", "valid", "token_id", "position", "label", "seq_id")

#: Default position buckets: [0,1), [1,2), [2,4), [4,8), ..., [2**16, inf).
DEFAULT_POSITION_EDGES = (0,) + tuple(2 ** i for i in range(17))

#: Rows of router logits turned into probabilities at a time.
_LOGIT_BLOCK_ELEMENTS = 1 << 21


# ============================================================================= spec
@dataclass(frozen=True, eq=False)
class CountSpec:
    """What :func:`count_shard` counts (built from a manifest by :meth:`from_manifest`).

    Attributes
    ----------
    layers : tuple of LayerSpec
        Layers analysed, with ``num_experts`` in the analysed id space.
    luts : tuple of (ndarray or None)
        Per layer, the physical-to-logical map (with ``-1`` appended so that
        ``lut[-1] == -1``), or None to use ids as logged.
    token_buckets : int
        Token ids are counted modulo this (exact when every id is smaller).
    position_edges : tuple of int
        Left edges of the position buckets (increasing; the last is open).
    label_buckets : int
        Labels are counted modulo this; negative labels mean "unlabelled".
    max_set_alphabet : int
        Top-k sets are counted only for layers with ``C(E, k)`` at most this.
    score_function : {"softmax", "sigmoid"}
        How router logits become the soft gate ``p(e | x)``: a softmax over
        all experts, or (sigmoid routers such as DeepSeek-V3) the sigmoid
        scores normalised over all experts, ``sigma(z_e) / sum_j sigma(z_j)``
        (a correction bias only moves the top-k selection, not the scores).
    groups : int
        Resampling groups of sequences for the bootstrap
        (:mod:`infomoe.logs._uncertainty`).
    """

    layers: tuple
    luts: tuple
    token_buckets: int = 2048
    position_edges: tuple = DEFAULT_POSITION_EDGES
    label_buckets: int = 1024
    max_set_alphabet: int = 1 << 18
    score_function: str = "softmax"
    groups: int = 64

    def __repr__(self) -> str:
        return dataclass_repr(self)

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, layers=None, token_buckets: int = 2048,
                      position_edges: Optional[Sequence[int]] = None, label_buckets: int = 1024,
                      max_set_alphabet: int = 1 << 18,
                      expert_space: str = "logical", groups: int = 64) -> "CountSpec":
        """Spec for a log.

        Parameters
        ----------
        manifest : Manifest
        layers : sequence of int, optional
            Layer ids to analyse (default all, in manifest order).
        token_buckets, label_buckets, max_set_alphabet : int
            See the attributes.
        position_edges : sequence of int, optional
            Default :data:`DEFAULT_POSITION_EDGES` (powers of two).
        expert_space : {"logical", "as_logged"}, default "logical"
            For a log in physical ids with a ``physical_to_logical`` map,
            ``"logical"`` maps ids to logical experts (replicas of an expert
            are merged); ``"as_logged"`` keeps the ids as recorded.
        groups : int, default 64
            Resampling groups of sequences (see the attribute).
        """
        check_choice(expert_space, "expert_space", ("logical", "as_logged"))
        token_buckets = check_positive_int(token_buckets, "token_buckets")
        label_buckets = check_positive_int(label_buckets, "label_buckets")
        max_set_alphabet = check_positive_int(max_set_alphabet, "max_set_alphabet")
        groups = check_positive_int(groups, "groups")
        edges = DEFAULT_POSITION_EDGES if position_edges is None else position_edges
        edges = tuple(int(v) for v in edges)
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"`position_edges` must be a non-empty increasing sequence, got {edges}.")
        specs = manifest.layers if layers is None else tuple(manifest.layer(int(i)) for i in layers)
        out_layers, luts = [], []
        for s in specs:
            p2l = manifest.physical_to_logical
            if expert_space == "logical" and p2l is not None and s.layer_id in p2l:
                lut = np.asarray(p2l[s.layer_id], dtype=np.int32)
                e = int(lut.max()) + 1
                out_layers.append(LayerSpec(s.layer_id, e, min(s.top_k, e)))
                luts.append(np.append(lut, np.int32(-1)))
            else:
                out_layers.append(s)
                luts.append(None)
        return cls(layers=tuple(out_layers), luts=tuple(luts), token_buckets=token_buckets,
                   position_edges=edges, label_buckets=label_buckets,
                   max_set_alphabet=max_set_alphabet, groups=groups,
                   score_function="sigmoid" if manifest.score_function == "sigmoid" else "softmax")

    def to_json(self) -> str:
        """The spec as canonical JSON (stored with count tables, compared when they are merged)."""
        import json

        return json.dumps({"layers": [[s.layer_id, s.num_experts, s.top_k] for s in self.layers],
                           "luts": [None if t is None else t[:-1].tolist() for t in self.luts],
                           "token_buckets": self.token_buckets, "position_edges": list(self.position_edges),
                           "label_buckets": self.label_buckets, "max_set_alphabet": self.max_set_alphabet,
                           "score_function": self.score_function, "groups": self.groups}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CountSpec":
        """Inverse of :meth:`to_json`; a clear ValueError for anything else."""
        import json

        try:
            d = json.loads(text)
            layers = tuple(LayerSpec(int(a), int(b), int(c)) for a, b, c in d["layers"])
            luts = tuple(None if t is None else np.append(np.asarray(t, dtype=np.int32), np.int32(-1))
                         for t in d["luts"])
            spec = cls(layers=layers, luts=luts, token_buckets=int(d["token_buckets"]),
                       position_edges=tuple(int(v) for v in d["position_edges"]),
                       label_buckets=int(d["label_buckets"]), max_set_alphabet=int(d["max_set_alphabet"]),
                       score_function=str(d["score_function"]), groups=int(d["groups"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a CountSpec in JSON ({exc}).") from None
        if len(spec.luts) != len(spec.layers) or spec.score_function not in ("softmax", "sigmoid"):
            raise ValueError("not a CountSpec in JSON (luts or score_function malformed).")
        return spec

    def differences(self, other: "CountSpec") -> list:
        """Names of the settings in which two specs differ (empty: they count the same tables)."""
        import json

        a, b = json.loads(self.to_json()), json.loads(other.to_json())
        return [k for k in sorted(a) if a[k] != b[k]]

    def set_alphabet(self, i: int) -> int:
        """``C(E, k)`` of layer ``i`` (in spec order)."""
        s = self.layers[i]
        return math.comb(s.num_experts, s.top_k)

    def counts_sets(self, i: int) -> bool:
        return self.set_alphabet(i) <= self.max_set_alphabet


# ============================================================================= tables
def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True, eq=False)
class LogTables:
    """Count tables of part of a log; tables of disjoint parts add with ``+``.

    All per-layer entries are tuples in the order of ``CountSpec.layers``;
    an entry is None when the log lacks the column it needs.

    Attributes
    ----------
    tokens : int
        Valid tokens counted.
    load : tuple of ndarray (E,)
        (token, chosen expert) pairs per expert, from token shards and count records.
    record_pairs : ndarray (L,)
        The part of ``load`` that came from count records.
    dropped : ndarray (L,)
        Choices recorded as ``-1`` among valid tokens.
    token : tuple of ndarray (token_buckets, E) or None
        Token-id bucket x expert.
    position : tuple of ndarray (len(position_edges), E) or None
        Position bucket x expert.
    label : tuple of ndarray (label_buckets, E) or None
        Label bucket x expert (unlabelled tokens skipped).
    transition : tuple of ndarray (E_l, E_{l+1})
        Expert at one layer x expert at the next (``L - 1`` tables).
    sets : tuple of ndarray (C(E, k),) or None
        Counts of each chosen top-k set (None where the alphabet is too large).
    incomplete_sets : ndarray (L,)
        Valid tokens whose set has a ``-1`` or a repeated expert (not counted in ``sets``).
    prob_sum : tuple of ndarray (G, E) or None
        Per resampling group, the sum over tokens of the soft gate
        ``p(e | x)`` (see ``CountSpec.score_function``).
    router_entropy_sum : ndarray (L, G)
        Per group, the sum over tokens of the entropy of the soft gate, in nats.
    logit_tokens : ndarray (L, G)
        Per group, the tokens that contributed to ``prob_sum``.
    tokens_dropping : ndarray (L,)
        Valid tokens with at least one choice recorded as ``-1``.
    coactivation : tuple of ndarray (E, E)
        Tokens that chose both experts ``i`` and ``j`` (symmetric; the
        diagonal counts a repeated expert in one token's set).
    group_tokens : ndarray (G,)
        Valid tokens per resampling group.
    grouped_token, grouped_position, grouped_label : tuple of GroupedCounts or None
        The tables above per resampling group ``(G, rows, E)``, sparse.
    grouped_transition : tuple of GroupedCounts
        Per group, ``(G, E_l, E_{l+1})``.
    grouped_sets : tuple of GroupedCounts or None
        Per group, the set counts ``(G, 1, C(E, k))``.
    grouped_token_set : tuple of GroupedCounts or None
        Per group, token bucket x chosen top-k set ``(G, token_buckets, C(E, k))``
        (layers with ``k >= 2``).
    token_ids_folded, labels_folded : int
        Valid tokens whose token id (label) was >= the number of buckets and
        was folded modulo it.
    seq_id_tokens : int
        Valid tokens whose resampling group came from their ``seq_id`` (the
        others were grouped in blocks of consecutive tokens).
    """

    tokens: int
    load: tuple
    record_pairs: np.ndarray
    dropped: np.ndarray
    token: tuple
    position: tuple
    label: tuple
    transition: tuple
    sets: tuple
    incomplete_sets: np.ndarray
    prob_sum: tuple
    router_entropy_sum: np.ndarray
    logit_tokens: np.ndarray
    tokens_dropping: np.ndarray
    coactivation: tuple
    group_tokens: np.ndarray
    grouped_token: tuple
    grouped_position: tuple
    grouped_label: tuple
    grouped_transition: tuple
    grouped_sets: tuple
    grouped_token_set: tuple
    token_ids_folded: int = 0
    labels_folded: int = 0
    seq_id_tokens: int = 0

    def __repr__(self) -> str:
        present = [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), tuple)
                   and any(t is not None for t in getattr(self, f.name))]
        return (f"LogTables(tokens={self.tokens}, layers={len(self.load)}, groups={self.group_tokens.shape[0]}, "
                f"pairs={int(sum(int(c.sum()) for c in self.load))}, tables={present}, "
                f"token_ids_folded={self.token_ids_folded}, labels_folded={self.labels_folded})")

    @classmethod
    def zeros(cls, spec: CountSpec) -> "LogTables":
        """The neutral element: no tokens, zero load."""
        return _Accumulator(spec).result()

    def __add__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if not isinstance(other, LogTables):
            return NotImplemented
        if len(self.load) != len(other.load):
            raise ValueError("cannot add LogTables of different layer selections.")
        kw = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, tuple):
                if len(a) != len(b):
                    raise ValueError(f"cannot add LogTables whose {f.name!r} differ in length.")
                kw[f.name] = tuple(_add(x, y) for x, y in zip(a, b))
            else:
                kw[f.name] = a + b
        return LogTables(**kw)

    __radd__ = __add__


# ============================================================================= stored tables
#: Separator of the file keys of a stored table (``"load@3"``, ``"grouped_token@3@keys"``).
_SEP = "@"

#: Whole-log tables that are their per-group tables (``grouped_<name>``) summed over groups.
_SUMMED = ("token", "position", "label", "transition", "sets")


def summed_tables(grouped: dict) -> dict:
    """The whole-log tables of :data:`_SUMMED` from the per-group ones.

    ``grouped`` maps each name to a tuple (one entry per layer, or per pair
    of layers) of :class:`~infomoe.logs._uncertainty.GroupedCounts` or
    None; the result maps it to the dense tables (sets: ``(C,)``).
    """
    out = {name: tuple(None if c is None else c.total() for c in grouped[name]) for name in _SUMMED}
    out["sets"] = tuple(None if c is None else c[0] for c in out["sets"])
    return out


def stored_spec(arrays: dict) -> CountSpec:
    """The :class:`CountSpec` stored with count tables (``arrays["spec"]``: UTF-8 JSON bytes)."""
    if "spec" not in arrays:
        raise ValueError("the stored count tables have no 'spec'.")
    return CountSpec.from_json(bytes(np.asarray(arrays["spec"], dtype=np.uint8)).decode("utf-8", "replace"))


def _table_shape(spec: CountSpec, name: str, i: int):
    """Shape of entry ``i`` of the tuple field `name` of tables counted under `spec`."""
    s = spec.layers[i]
    E, G, TB = s.num_experts, spec.groups, spec.token_buckets
    if name == "transition" or name == "grouped_transition":
        shape = (E, spec.layers[i + 1].num_experts)
    else:
        C = spec.set_alphabet(i) if spec.counts_sets(i) else None
        shape = {"load": (E,), "token": (TB, E), "position": (len(spec.position_edges), E),
                 "label": (spec.label_buckets, E), "sets": (C,), "prob_sum": (G, E), "coactivation": (E, E),
                 "grouped_token": (TB, E), "grouped_position": (len(spec.position_edges), E),
                 "grouped_label": (spec.label_buckets, E), "grouped_sets": (1, C),
                 "grouped_token_set": (TB, C)}[name]
    return (G,) + shape if name.startswith("grouped_") else shape


def tables_to_arrays(tables: LogTables, spec: CountSpec) -> dict:
    """Flatten count tables into named arrays, for storing them as a ``"tables"`` record of a log.

    The inverse is :func:`tables_from_arrays`; ``"spec"`` holds the
    :class:`CountSpec` the tables were counted under, as UTF-8 JSON bytes.
    The whole-log tables that are sums of the per-group ones are not
    stored: they are derived again when the tables are read.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs import CountSpec, LayerSpec, Manifest, count_shard
    >>> from infomoe.logs._tables import tables_from_arrays, tables_to_arrays
    >>> spec = CountSpec.from_manifest(Manifest(source="demo", layers=(LayerSpec(0, 3, 1),)))
    >>> t = count_shard({"expert_ids": {0: np.array([[0], [2], [2]])}}, spec=spec)
    >>> tables_from_arrays(tables_to_arrays(t, spec), spec).load[0].tolist()
    [1, 0, 2]
    """
    from infomoe.logs._uncertainty import GroupedCounts

    out = {"spec": np.frombuffer(spec.to_json().encode("utf-8"), dtype=np.uint8).copy()}
    for f in dataclasses.fields(tables):
        v = getattr(tables, f.name)
        if f.name in _SUMMED:
            continue
        if not isinstance(v, tuple):
            out[f.name] = np.asarray(v).reshape(-1) if np.ndim(v) == 0 else np.asarray(v)  # scalars as (1,)
            continue
        for i, x in enumerate(v):
            if isinstance(x, GroupedCounts):
                out[f"{f.name}{_SEP}{i}{_SEP}keys"] = x.keys.astype(np.int64)
                out[f"{f.name}{_SEP}{i}{_SEP}counts"] = x.counts.astype(np.int64)
            elif x is not None:
                out[f"{f.name}{_SEP}{i}"] = np.asarray(x)
    return out


def tables_from_arrays(arrays: dict, spec: CountSpec) -> LogTables:
    """Count tables from :func:`tables_to_arrays` arrays, checked against the `spec` of the analysis.

    Raises
    ------
    ValueError
        If the tables were counted under another spec (the message names the
        settings that differ), or an array is missing, misshapen, negative
        or otherwise not a count table.
    """
    from infomoe.logs._uncertainty import GroupedCounts

    stored = stored_spec(arrays)
    diff = stored.differences(spec)
    if "layers" in diff and "luts" in diff and all(t is None for t in stored.luts + spec.luts):
        diff.remove("luts")  # the maps differ only in length
    if diff:
        def show(sp):
            def value(k):
                if k == "layers":
                    return [s.layer_id for s in sp.layers]
                if k == "luts":
                    return ["as logged" if t is None else "logical" for t in sp.luts]
                return getattr(sp, k)
            return ", ".join(f"{'expert_space' if k == 'luts' else k}={value(k)!r}" for k in diff)

        raise ValueError(f"the log's count tables were recorded with {show(stored)} but this analysis asks "
                         f"for {show(spec)}; analyse it with the settings they were recorded with (the same "
                         "layers and expert space, token/label buckets, position edges, set alphabet and groups).")
    L = len(spec.layers)
    known = set()

    def get(key, shape=None, integer=True):
        known.add(key)
        if key not in arrays:
            return None
        a = np.asarray(arrays[key])
        if shape is not None and a.shape != tuple(shape):
            raise ValueError(f"stored count table {key!r} has shape {a.shape}, expected {tuple(shape)}.")
        if integer:
            if a.dtype.kind not in "iu":
                raise ValueError(f"stored count table {key!r} is {a.dtype}, not integer counts.")
            if a.size and a.min() < 0:
                raise ValueError(f"stored count table {key!r} holds a negative count {a.min()}.")
            return a.astype(np.int64)
        if a.dtype.kind != "f" or not np.isfinite(a).all():
            raise ValueError(f"stored table {key!r} must hold finite floats.")
        return a.astype(np.float64)

    def need(key, shape=None, integer=True):
        a = get(key, shape, integer)
        if a is None:
            raise ValueError(f"the stored count tables lack {key!r}.")
        return a

    kw = {}
    for f in dataclasses.fields(LogTables):
        name = f.name
        if name in _SUMMED:
            continue
        if name in ("tokens", "token_ids_folded", "labels_folded", "seq_id_tokens"):
            kw[name] = int(need(name, (1,))[0])
        elif name in ("record_pairs", "dropped", "incomplete_sets", "tokens_dropping"):
            kw[name] = need(name, (L,))
        elif name == "group_tokens":
            kw[name] = need(name, (spec.groups,))
        elif name in ("router_entropy_sum", "logit_tokens"):
            kw[name] = need(name, (L, spec.groups), integer=name == "logit_tokens")
        else:
            n = L - 1 if name.endswith("transition") else L
            n = max(n, 0)
            entries = []
            for i in range(n):
                key = f"{name}{_SEP}{i}"
                if name.startswith("grouped_"):
                    keys, counts = get(key + _SEP + "keys"), get(key + _SEP + "counts")
                    if keys is None and counts is None:
                        entries.append(None)
                        continue
                    shape = _table_shape(spec, name, i)
                    if keys is None or counts is None or keys.shape != counts.shape or keys.ndim != 1:
                        raise ValueError(f"stored grouped table {key!r} needs 1-d 'keys' and 'counts' "
                                         "of equal length.")
                    if (keys.size and (keys[-1] >= math.prod(shape) or (np.diff(keys) <= 0).any())) \
                            or (counts.size and counts.min() <= 0):
                        raise ValueError(f"stored grouped table {key!r} has keys that are not increasing "
                                         f"cells of {shape}, or a zero count.")
                    entries.append(GroupedCounts(shape, keys, counts))
                elif name == "load":
                    entries.append(need(key, _table_shape(spec, name, i)))
                else:
                    entries.append(get(key, _table_shape(spec, name, i), integer=name != "prob_sum"))
            kw[name] = tuple(entries)
    extra = sorted(set(arrays) - known - {"spec"})
    if extra:
        raise ValueError(f"the stored count tables hold unknown arrays {extra}.")
    kw.update(summed_tables({name: kw["grouped_" + name] for name in _SUMMED}))
    return LogTables(**kw)


# ============================================================================= counting
def _bucket_positions(pos: np.ndarray, edges: tuple) -> np.ndarray:
    b = np.searchsorted(np.asarray(edges, dtype=np.int64), pos, side="right") - 1
    b[b < 0] = len(edges)  # before the first edge: excluded (sentinel)
    return b.astype(np.int32)


def _mod_buckets(v: np.ndarray, k: int):
    """``v mod k`` for ``v >= 0``, sentinel ``k`` for negative; and how many were folded."""
    v = np.asarray(v, dtype=np.int64)
    neg = v < 0
    folded = int(np.count_nonzero(v >= k))
    out = (v % k).astype(np.int32)
    out[neg] = k
    return out, folded


def _gate_stats(logits, rows_ok: Optional[np.ndarray], E: int, score_function: str,
                groups: np.ndarray, G: int):
    """Per resampling group: sums of the soft gate ``p(e | x)``, of its entropy (nats), and token counts.

    ``p`` is ``softmax(z)`` (max-shifted), or for sigmoid routers
    ``sigma(z) / sum sigma(z)``; ``H = log S - sum_e p_e log w_e`` with ``w``
    the unnormalised weights and ``S`` their sum, ``0 log 0 = 0``.
    """
    from scipy.special import log_expit

    prob_sum = np.zeros((G, E))
    ent = np.zeros(G)
    n_ok = np.zeros(G, np.int64)
    block = max(1, _LOGIT_BLOCK_ELEMENTS // max(E, 1))
    for a in range(0, logits.shape[0], block):
        x = np.asarray(logits[a:a + block], dtype=np.float64)
        g = groups[a:a + block]
        if rows_ok is not None:
            x, g = x[rows_ok[a:a + block]], g[rows_ok[a:a + block]]
        if x.shape[0] == 0:
            continue
        if score_function == "sigmoid":
            if np.isnan(x).any():
                raise ValueError("router logits contain NaN; the sigmoid gate is undefined there.")
            logw = log_expit(x)  # log sigma(z), finite except at z = -inf
        else:
            m = x.max(axis=1, keepdims=True)
            if not np.isfinite(m).all():
                raise ValueError("router logits have a row that is all -inf (or +inf) or NaN; "
                                 "softmax is undefined for it.")
            logw = x - m
        w = np.exp(logw)
        s = w.sum(axis=1, keepdims=True)
        if not (s > 0).all():
            raise ValueError("router logits give a row whose gate weights are all zero; the gate is undefined.")
        p = w / s
        pz = np.where(p > 0, p * np.where(np.isfinite(logw), logw, 0.0), 0.0)
        h = np.log(s[:, 0]) - pz.sum(axis=1)
        onehot = np.zeros((G, x.shape[0]))
        onehot[g, np.arange(x.shape[0])] = 1.0
        prob_sum += onehot @ p
        ent += np.bincount(g, weights=h, minlength=G)
        n_ok += np.bincount(g, minlength=G)
    return prob_sum, ent, n_ok


def _sort_rows(e: np.ndarray) -> np.ndarray:
    """Sort each row of a narrow ``(n, k)`` array (odd-even transposition network for
    ``k <= 8``: ``k`` vectorised passes, much faster than ``np.sort`` on tiny rows)."""
    k = e.shape[1]
    if k == 1:
        return e
    if k > 8:
        return np.sort(e, axis=1)
    cols = [np.ascontiguousarray(e[:, j]) for j in range(k)]
    for p in range(k):
        for j in range(p % 2, k - 1, 2):
            lo = np.minimum(cols[j], cols[j + 1])
            np.maximum(cols[j], cols[j + 1], out=cols[j + 1])
            cols[j] = lo
    return np.stack(cols, axis=1)


def _comb_table(E: int, k: int) -> np.ndarray:
    t = np.zeros((k, E), dtype=np.int64)
    for i in range(k):
        for v in range(E):
            t[i, v] = math.comb(v, i + 1)
    return t


class _Accumulator:
    """Mutable running tables: each chunk's table is added in place as soon as it is counted,
    so memory holds the totals plus one layer's temporary tables, never a second full set."""

    _DENSE = ("prob_sum", "coactivation")  # the other dense tables are the grouped ones summed over groups
    _GROUPED = ("token", "position", "label", "sets", "token_set")

    def __init__(self, spec: CountSpec):
        L, G = len(spec.layers), spec.groups
        self.spec = spec
        self.tokens = 0
        self.load = [np.zeros(s.num_experts, np.int64) for s in spec.layers]
        self.record_pairs = np.zeros(L, np.int64)
        self.dropped = np.zeros(L, np.int64)
        self.tables = {name: [None] * L for name in self._DENSE}
        self.grouped = {name: [None] * L for name in self._GROUPED}
        self.grouped["transition"] = [None] * max(L - 1, 0)
        self.incomplete_sets = np.zeros(L, np.int64)
        self.router_entropy_sum = np.zeros((L, G))
        self.logit_tokens = np.zeros((L, G), np.int64)
        self.tokens_dropping = np.zeros(L, np.int64)
        self.group_tokens = np.zeros(G, np.int64)
        self.token_ids_folded = 0
        self.labels_folded = 0
        self.seq_id_tokens = 0

    def _add(self, name: str, i: int, table) -> None:
        cur = self.tables[name][i]
        if cur is None:
            self.tables[name][i] = np.array(table)  # compact copy (table may be a slice)
        else:
            cur += table

    def _add_grouped(self, name: str, i: int, group, row, col, shape) -> None:
        from infomoe.logs._uncertainty import GroupedAccumulator, GroupedCounts

        acc = self.grouped[name][i]
        if acc is None:
            acc = self.grouped[name][i] = GroupedAccumulator(shape)
        acc.add(GroupedCounts.from_labels(group, row, col, shape))

    def _add_tables(self, t: LogTables) -> None:
        """Add finished tables (a stored ``"tables"`` record) in place."""
        self.tokens += t.tokens
        self.token_ids_folded += t.token_ids_folded
        self.labels_folded += t.labels_folded
        self.seq_id_tokens += t.seq_id_tokens
        for name in ("record_pairs", "dropped", "incomplete_sets", "router_entropy_sum", "logit_tokens",
                     "tokens_dropping", "group_tokens"):
            getattr(self, name).__iadd__(getattr(t, name))
        for i, c in enumerate(t.load):
            self.load[i] += c
        for name in self._DENSE:
            for i, c in enumerate(getattr(t, name)):
                if c is not None:
                    self._add(name, i, c)
        for name in self._GROUPED + ("transition",):
            for i, c in enumerate(getattr(t, "grouped_" + name)):
                if c is not None:
                    from infomoe.logs._uncertainty import GroupedAccumulator

                    if self.grouped[name][i] is None:
                        self.grouped[name][i] = GroupedAccumulator(c.shape)
                    self.grouped[name][i].add(c)

    def result(self) -> LogTables:
        t = self.tables

        g = {name: tuple(None if a is None else a.result() for a in accs) for name, accs in self.grouped.items()}
        return LogTables(tokens=self.tokens, load=tuple(self.load),
                         record_pairs=self.record_pairs, dropped=self.dropped, **summed_tables(g),
                         incomplete_sets=self.incomplete_sets,
                         prob_sum=tuple(t["prob_sum"]), router_entropy_sum=self.router_entropy_sum,
                         logit_tokens=self.logit_tokens, tokens_dropping=self.tokens_dropping,
                         coactivation=tuple(np.zeros((s.num_experts, s.num_experts), np.int64) if c is None else c
                                            for c, s in zip(t["coactivation"], self.spec.layers)),
                         group_tokens=self.group_tokens, grouped_token=g["token"],
                         grouped_position=g["position"], grouped_label=g["label"],
                         grouped_transition=g["transition"], grouped_sets=g["sets"],
                         grouped_token_set=g["token_set"], token_ids_folded=self.token_ids_folded,
                         labels_folded=self.labels_folded, seq_id_tokens=self.seq_id_tokens)

    def count(self, shard: dict) -> "_Accumulator":
        from infomoe._counting import contingency, label_counts
        from infomoe.logs._uncertainty import token_groups

        spec = self.spec
        G = spec.groups
        if not isinstance(shard, dict):
            raise TypeError(f"`shard` must be a chunk dict from iter_chunks/read_shard, "
                            f"got {type(shard).__name__}.")
        if shard.get("kind") == "tables":
            self._add_tables(tables_from_arrays(shard["tables"], spec))
            return self
        if shard.get("kind") == "counts" or ("counts" in shard and "expert_ids" not in shard):
            for i, s in enumerate(spec.layers):
                c = np.asarray(shard["counts"][s.layer_id], dtype=np.int64).sum(axis=0)
                lut = spec.luts[i]
                if lut is not None:
                    c = np.bincount(lut[:-1], weights=c, minlength=s.num_experts).astype(np.int64)
                self.load[i] += c
                self.record_pairs[i] += int(c.sum())
            return self
        if "expert_ids" not in shard:
            raise ValueError("`shard` has neither 'expert_ids' nor 'counts'.")

        ids = shard["expert_ids"]
        n = int(np.shape(ids[spec.layers[0].layer_id])[0])
        invalid = None
        if shard.get("valid") is not None:
            invalid = ~np.asarray(shard["valid"], dtype=bool)
            if not invalid.any():
                invalid = None
        n_valid = n if invalid is None else n - int(invalid.sum())
        self.tokens += n_valid
        if shard.get("seq_id") is not None:
            self.seq_id_tokens += n_valid
        grp = token_groups(shard, n, G)
        self.group_tokens += np.bincount(grp if invalid is None else grp[~invalid], minlength=G)

        def folded(v, k):
            big = np.asarray(v) >= k
            return int(np.count_nonzero(big if invalid is None else big & ~invalid))

        tok = pos = lab = None
        if shard.get("token_id") is not None:
            tok, _ = _mod_buckets(shard["token_id"], spec.token_buckets)
            self.token_ids_folded += folded(shard["token_id"], spec.token_buckets)
        if shard.get("position") is not None:
            pos = _bucket_positions(np.asarray(shard["position"], dtype=np.int64),
                                    spec.position_edges)
        if shard.get("label") is not None:
            lab, _ = _mod_buckets(shard["label"], spec.label_buckets)
            self.labels_folded += folded(shard["label"], spec.label_buckets)
        logits = shard.get("router_logits")
        rows_ok = None if invalid is None else ~invalid

        prev = None  # (E, k, transposed ids with sentinels) of the previous layer
        for i, s in enumerate(spec.layers):
            E = s.num_experts
            e = np.array(ids[s.layer_id], dtype=np.int32)  # (n, k) copy
            if e.ndim != 2 or e.shape[0] != n:
                raise ValueError(f"`shard['expert_ids'][{s.layer_id}]` must have shape ({n}, k), "
                                 f"got {e.shape}.")
            if spec.luts[i] is not None:
                e = spec.luts[i][e]  # -1 indexes the appended -1
            k = e.shape[1]
            lo, hi = (int(e.min()), int(e.max())) if e.size else (0, 0)
            if hi >= E or lo < -1:
                bad = hi if hi >= E else lo
                raise ValueError(f"layer {s.layer_id}: expert id {bad} outside [-1, {E - 1}] "
                                 f"(the manifest declares {E} experts); the log is inconsistent.")
            # transposed (k, n): sentinel E for dropped, E + 1 for invalid tokens
            et = e.T.copy()  # C-ordered copy (e.T may already be contiguous for k = 1)
            et[et < 0] = E
            if invalid is not None:
                et[:, invalid] = E + 1
            flat = et.reshape(-1)
            lc = label_counts(flat, k=E + 2)
            self.load[i] += lc[:E]
            self.dropped[i] += lc[E]
            any_drop = (e < 0).any(axis=1)
            self.tokens_dropping[i] += int(np.count_nonzero(any_drop if invalid is None else any_drop & ~invalid))
            routed = flat < E
            gflat = np.tile(grp, k)

            for name, x, kx in (("token", tok, spec.token_buckets),
                                ("position", pos, len(spec.position_edges)),
                                ("label", lab, spec.label_buckets)):
                if x is not None:
                    xt = np.tile(x, k)
                    ok = routed & (xt < kx)
                    self._add_grouped(name, i, gflat[ok], xt[ok], flat[ok], (G, kx, E))
            if prev is not None:
                pE, pk, pet = prev
                for j in range(pk):
                    xt = np.tile(pet[j], k)
                    ok = routed & (xt < pE)
                    self._add_grouped("transition", i - 1, gflat[ok], xt[ok], flat[ok], (G, pE, E))
            prev = (E, k, et)

            co = None
            for a in range(k):
                for b in range(a + 1, k):
                    c = contingency(et[a], et[b], kx=E + 2, ky=E + 2)[:E, :E]
                    co = c + c.T if co is None else co + c + c.T
            if co is not None:
                self._add("coactivation", i, co)

            if spec.counts_sets(i):
                C = spec.set_alphabet(i)
                srt = _sort_rows(e)
                ok = srt[:, 0] >= 0
                if k > 1:
                    ok &= (np.diff(srt, axis=1) > 0).all(axis=1)
                if invalid is not None:
                    ok &= ~invalid
                ct = _comb_table(E, k)
                rank = np.zeros(n, np.int64)
                safe = np.where(srt >= 0, srt, 0)
                for j in range(k):
                    rank += ct[j][safe[:, j]]
                rank[~ok] = C
                self._add_grouped("sets", i, grp[ok], np.zeros(int(ok.sum()), np.int64), rank[ok], (G, 1, C))
                if tok is not None and k >= 2:  # for k = 1 the set is the expert: I(token; E) already
                    okt = ok & (tok < spec.token_buckets)
                    self._add_grouped("token_set", i, grp[okt], tok[okt], rank[okt], (G, spec.token_buckets, C))
                n_ok = int(np.count_nonzero(ok))
                self.incomplete_sets[i] += (n if invalid is None else int(rows_ok.sum())) - n_ok

            lg = None if logits is None else logits.get(s.layer_id)
            if lg is not None and spec.luts[i] is None:
                ps, ent, m = _gate_stats(lg, rows_ok, s.num_experts, spec.score_function, grp, G)
                self._add("prob_sum", i, ps)
                self.router_entropy_sum[i] += ent
                self.logit_tokens[i] += m
        return self


def count_shard(shard: dict, *, spec: CountSpec) -> LogTables:
    """Count tables of one chunk of a routing log (pure; results add with ``+``).

    Parameters
    ----------
    shard : dict
        A chunk as yielded by :meth:`RoutingLog.iter_chunks` or
        :meth:`RoutingLog.read_shard`: a token chunk (``"expert_ids"``:
        ``{layer_id: (n, k)}`` plus optional ``"router_logits"``, ``"valid"``,
        ``"token_id"``, ``"position"``, ``"label"``), or a count record
        (``"kind": "counts"``, ``"counts"``: ``{layer_id: (window, E)}``).
    spec : CountSpec
        What to count.

    Returns
    -------
    LogTables

    Notes
    -----
    The counting convention for top-k routing is in the module docstring.
    Expert load and co-activation are counted with :func:`infomoe.label_counts`
    / :func:`infomoe.contingency`; the tables of a token attribute against the
    expert (and the transition and set tables) are counted per resampling
    group, sparse, and the whole-log table is their sum over groups (one
    count, so the two can never disagree).  Memory is one chunk plus the tables.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs import CountSpec, LayerSpec, Manifest, count_shard
    >>> spec = CountSpec.from_manifest(Manifest(source="demo", layers=(LayerSpec(0, 3, 1),)))
    >>> chunk = {"expert_ids": {0: np.array([[0], [2], [2], [-1]])}}
    >>> t = count_shard(chunk, spec=spec)
    >>> t.load[0].tolist(), int(t.dropped[0])
    ([1, 0, 2], 1)
    >>> (t + t).load[0].tolist()
    [2, 0, 4]
    """
    return _Accumulator(spec).count(shard).result()
