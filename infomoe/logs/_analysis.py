r"""Streaming analysis of routing logs: load balance and information per layer.

The analysis runs in two stages so that it can be distributed:

1. :func:`count_shard` turns one chunk of a log (a dict from
   :meth:`RoutingLog.iter_chunks` or :meth:`RoutingLog.read_shard`) into
   count tables (:class:`LogTables`).  It is a pure function of the chunk and
   a :class:`CountSpec`, and tables of different chunks merge by ``+``, so
   ``sum(map(count_shard, chunks))`` (or a Dask ``fold``) gives the tables of
   the whole log.  Memory is that of the tables plus one chunk.
2. :func:`report_from_tables` turns the merged tables into a
   :class:`LogReport` with the estimators of :mod:`infomoe`.

:func:`analyze_log` does both over a log (with a progress bar if asked).

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
import json
import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from infomoe._progress import progress_bar
from infomoe._repr import dataclass_repr, short_value
from infomoe._validate import check_base, check_choice, check_positive_int, log_base, unit_name
from infomoe.logs._manifest import LayerSpec, Manifest

__all__ = ["CountSpec", "LogTables", "LogReport", "count_shard", "report_from_tables",
           "analyze_log", "DEFAULT_POSITION_EDGES", "DROP_WARNING_FRACTION", "TABLE_COLUMNS"]

#: Default position buckets: [0,1), [1,2), [2,4), [4,8), ..., [2**16, inf).
DEFAULT_POSITION_EDGES = (0,) + tuple(2 ** i for i in range(17))

#: Rows of router logits turned into probabilities at a time.
_LOGIT_BLOCK_ELEMENTS = 1 << 21

#: A layer whose dropped fraction exceeds this is named in a warning that opens
#: :meth:`LogReport.format_table` (and the first of ``LogReport.warnings``).
DROP_WARNING_FRACTION = 0.10

#: Columns of :meth:`LogReport.format_table`: (header, width, decimals or None for
#: integers, legend); ``{unit}`` in a legend is the report's unit.
TABLE_COLUMNS = (
    ("layer", 5, None, "layer id in the log"),
    ("E", 4, None, "number of experts (in the analysed id space)"),
    ("k", 2, None, "experts chosen per token (top-k)"),
    ("drop", 6, 3, "fraction of the tokens x k choices dropped (recorded as expert -1: over "
                   "capacity, or padding); 0 to 1"),
    ("CV", 6, 3, "coefficient of variation of the expert load, std / mean; 0 = balanced"),
    ("max/mu", 6, 2, "load of the busiest expert / mean load; 1 = balanced, E = all on one expert"),
    ("H_norm", 6, 3, "entropy of the load distribution / log E; 1 = balanced, 0 = one expert"),
    ("switch", 6, 3, "Switch load-balancing value E * sum_i f_i P_i (f: load fractions, P: mean "
                     "router probabilities, or f without logits); 1 = balanced, E = collapse"),
    ("H_route", 7, 3, "mean per-token entropy of softmax(router logits), H(E | x), in {unit}"),
    ("I(tok)", 7, 3, "mutual information I(token id; expert), in {unit}"),
    ("I(pos)", 7, 3, "mutual information I(position bucket; expert), in {unit}"),
    ("I(lab)", 7, 3, "mutual information I(label; expert), in {unit}"),
    ("I(next)", 7, 3, "mutual information I(expert here; expert at the next layer listed), "
                      "in {unit}"),
    ("H(set)", 7, 3, "entropy of the chosen set of k experts, in {unit}"),
)


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
    router_probs : bool
        Turn router logits into probabilities with a softmax (not for
        sigmoid routers).
    """

    layers: tuple
    luts: tuple
    token_buckets: int = 2048
    position_edges: tuple = DEFAULT_POSITION_EDGES
    label_buckets: int = 1024
    max_set_alphabet: int = 1 << 18
    router_probs: bool = True

    def __repr__(self) -> str:
        return dataclass_repr(self)

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, layers=None, token_buckets: int = 2048,
                      position_edges: Optional[Sequence[int]] = None, label_buckets: int = 1024,
                      max_set_alphabet: int = 1 << 18,
                      expert_space: str = "logical") -> "CountSpec":
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
        """
        check_choice(expert_space, "expert_space", ("logical", "as_logged"))
        token_buckets = check_positive_int(token_buckets, "token_buckets")
        label_buckets = check_positive_int(label_buckets, "label_buckets")
        max_set_alphabet = check_positive_int(max_set_alphabet, "max_set_alphabet")
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
                   max_set_alphabet=max_set_alphabet,
                   router_probs=manifest.score_function != "sigmoid")

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
    prob_sum : tuple of ndarray (E,) or None
        Sum over tokens of softmax(router logits).
    router_entropy_sum : ndarray (L,)
        Sum over tokens of the entropy of softmax(router logits), in nats.
    logit_tokens : ndarray (L,)
        Tokens that contributed to ``prob_sum``.
    token_ids_folded, labels_folded : int
        Valid tokens whose token id (label) was >= the number of buckets and
        was folded modulo it.
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
    token_ids_folded: int = 0
    labels_folded: int = 0

    def __repr__(self) -> str:
        return dataclass_repr(self)

    @classmethod
    def zeros(cls, spec: CountSpec) -> "LogTables":
        """The neutral element: no tokens, zero load."""
        L = len(spec.layers)
        none = (None,) * L
        return cls(tokens=0, load=tuple(np.zeros(s.num_experts, np.int64) for s in spec.layers),
                   record_pairs=np.zeros(L, np.int64), dropped=np.zeros(L, np.int64),
                   token=none, position=none, label=none, transition=(None,) * max(L - 1, 0),
                   sets=none, incomplete_sets=np.zeros(L, np.int64), prob_sum=none,
                   router_entropy_sum=np.zeros(L), logit_tokens=np.zeros(L, np.int64))

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
                kw[f.name] = tuple(_add(x, y) for x, y in zip(a, b))
            else:
                kw[f.name] = a + b
        return LogTables(**kw)

    __radd__ = __add__


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


def _softmax_stats(logits, rows_ok: Optional[np.ndarray], E: int):
    """Sum of softmax probabilities and of their entropies (nats) over valid rows."""
    prob_sum = np.zeros(E)
    ent = 0.0
    n_ok = 0
    block = max(1, _LOGIT_BLOCK_ELEMENTS // max(E, 1))
    for a in range(0, logits.shape[0], block):
        x = np.asarray(logits[a:a + block], dtype=np.float64)
        if rows_ok is not None:
            x = x[rows_ok[a:a + block]]
        if x.shape[0] == 0:
            continue
        m = x.max(axis=1, keepdims=True)
        if not np.isfinite(m).all():
            raise ValueError("router logits have a row that is all -inf (or +inf); "
                             "softmax is undefined for it.")
        z = x - m
        p = np.exp(z)
        s = p.sum(axis=1, keepdims=True)
        p /= s
        # H = log s - sum p z, with 0 * (-inf) taken as 0
        pz = np.where(p > 0, p * np.where(np.isfinite(z), z, 0.0), 0.0)
        ent += float(np.sum(np.log(s[:, 0]) - pz.sum(axis=1)))
        prob_sum += p.sum(axis=0)
        n_ok += x.shape[0]
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

    def __init__(self, spec: CountSpec):
        L = len(spec.layers)
        self.spec = spec
        self.tokens = 0
        self.load = [np.zeros(s.num_experts, np.int64) for s in spec.layers]
        self.record_pairs = np.zeros(L, np.int64)
        self.dropped = np.zeros(L, np.int64)
        self.tables = {name: [None] * L for name in ("token", "position", "label", "sets", "prob_sum")}
        self.tables["transition"] = [None] * max(L - 1, 0)
        self.incomplete_sets = np.zeros(L, np.int64)
        self.router_entropy_sum = np.zeros(L)
        self.logit_tokens = np.zeros(L, np.int64)
        self.token_ids_folded = 0
        self.labels_folded = 0

    def _add(self, name: str, i: int, table) -> None:
        cur = self.tables[name][i]
        if cur is None:
            self.tables[name][i] = np.array(table)  # compact copy (table may be a slice)
        else:
            cur += table

    def result(self) -> LogTables:
        t = self.tables
        return LogTables(tokens=self.tokens, load=tuple(self.load),
                         record_pairs=self.record_pairs, dropped=self.dropped,
                         token=tuple(t["token"]), position=tuple(t["position"]),
                         label=tuple(t["label"]), transition=tuple(t["transition"]),
                         sets=tuple(t["sets"]), incomplete_sets=self.incomplete_sets,
                         prob_sum=tuple(t["prob_sum"]), router_entropy_sum=self.router_entropy_sum,
                         logit_tokens=self.logit_tokens, token_ids_folded=self.token_ids_folded,
                         labels_folded=self.labels_folded)

    def count(self, shard: dict) -> "_Accumulator":
        from infomoe._counting import contingency, label_counts

        spec = self.spec
        if not isinstance(shard, dict):
            raise TypeError(f"`shard` must be a chunk dict from iter_chunks/read_shard, "
                            f"got {type(shard).__name__}.")
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
        self.tokens += n if invalid is None else n - int(invalid.sum())

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

            for name, x, kx in (("token", tok, spec.token_buckets),
                                ("position", pos, len(spec.position_edges)),
                                ("label", lab, spec.label_buckets)):
                if x is not None:
                    self._add(name, i, contingency(np.tile(x, k), flat, kx=kx + 1, ky=E + 2)[:kx, :E])
            if prev is not None:
                pE, pk, pet = prev
                for j in range(pk):
                    self._add("transition", i - 1, contingency(np.tile(pet[j], k), flat, kx=pE + 2,
                                                               ky=E + 2)[:pE, :E])
            prev = (E, k, et)

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
                self._add("sets", i, label_counts(rank, k=C + 1)[:C])
                n_ok = int(np.count_nonzero(ok))
                self.incomplete_sets[i] += (n if invalid is None else int(rows_ok.sum())) - n_ok

            lg = None if logits is None else logits.get(s.layer_id)
            if lg is not None and spec.router_probs and spec.luts[i] is None:
                ps, ent, m = _softmax_stats(lg, rows_ok, s.num_experts)
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
    Each table is counted with :func:`infomoe.contingency` /
    :func:`infomoe.label_counts`, so memory is one chunk plus the tables.

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


# ============================================================================= report
@dataclass(frozen=True, eq=False)
class LogReport:
    """Per-layer load balance and routing information of a routing log.

    Per-layer arrays have one entry per analysed layer (``layer_ids``);
    information values are in ``unit`` (base ``base``).  An entry is NaN
    only where the quantity is undefined (no routed pairs in that layer, or
    an empty table); each such case is listed in ``warnings``.

    Attributes
    ----------
    layer_ids, num_experts, top_k : ndarray of int (L,)
        The layers (``num_experts`` in the analysed id space).
    num_tokens : int
        Valid tokens in the token shards.
    load : tuple of ndarray (E,)
        (token, chosen expert) pairs per expert, count records included.
    record_pairs : ndarray (L,)
        Pairs that came from aggregate count records.
    dropped_fraction : ndarray (L,)
        Fraction of the ``tokens * k`` choices recorded as ``-1``.
    load_cv : ndarray (L,)
        Coefficient of variation of the load, ``std / mean`` (0 = balanced).
    max_over_mean : ndarray (L,)
        ``max / mean`` of the load (1 = balanced).
    load_entropy : ndarray (L,)
        Entropy of the load distribution ``f = load / sum(load)`` (plug-in).
    normalized_entropy : ndarray (L,)
        ``load_entropy / log E`` (1 = balanced).
    switch_balance : ndarray (L,)
        Switch load-balancing value ``E * sum_i f_i P_i``: 1 at perfect
        balance, ``E`` at collapse.
    switch_source : tuple of str
        Per layer ``"router_logits"`` (``P`` = mean softmax of the logged
        logits) or ``"load"`` (``P = f``, giving ``E * sum f_i**2``).
    router_entropy : ndarray (L,) or None
        Mean per-token entropy of softmax(router logits), the routing
        ambiguity ``H(E|X)``; None without logits.
    mi_token, mi_position : ndarray (L,) or None
        ``I(token id; E)`` and ``I(position bucket; E)``; None without the column.
    mi_label : ndarray (L,) or None
        ``I(label; E)`` when labels exist.
    mi_transition : ndarray (L - 1,)
        ``I(E_l; E_{l+1})`` between consecutive analysed layers.
    set_entropy : ndarray (L,)
        Entropy of the chosen top-k set (NaN where ``C(E, k)`` exceeds
        ``max_set_alphabet``).
    set_alphabet : tuple of int
        ``C(E, k)`` per layer.
    mi_bias : dict
        Per MI name, the plug-in bias expected under independence,
        ``(K_x - 1)(K_y - 1) / (2 N)`` with observed row/column counts
        (Panzeri & Treves 1996), in ``unit``: values of this size are noise.
    estimator : str
        Estimator of the MI and set entropies.
    base : float
    unit : str
    token_buckets, label_buckets : int
    token_ids_folded, labels_folded : int
        Tokens whose id / label exceeded the buckets (0 means exact).
    position_edges : tuple of int
    expert_space : str
        ``"logical"`` or ``"as_logged"``.
    source, model_id : str
    warnings : tuple of str
        Everything the numbers need to be read with; first, when a layer drops
        more than :data:`DROP_WARNING_FRACTION` of its choices, the warning
        naming those layers.
    """

    layer_ids: np.ndarray
    num_experts: np.ndarray
    top_k: np.ndarray
    num_tokens: int
    load: tuple
    record_pairs: np.ndarray
    dropped_fraction: np.ndarray
    load_cv: np.ndarray
    max_over_mean: np.ndarray
    load_entropy: np.ndarray
    normalized_entropy: np.ndarray
    switch_balance: np.ndarray
    switch_source: tuple
    router_entropy: Optional[np.ndarray]
    mi_token: Optional[np.ndarray]
    mi_position: Optional[np.ndarray]
    mi_label: Optional[np.ndarray]
    mi_transition: np.ndarray
    set_entropy: np.ndarray
    set_alphabet: tuple
    mi_bias: dict
    estimator: str
    base: float
    unit: str
    token_buckets: int
    label_buckets: int
    token_ids_folded: int
    labels_folded: int
    position_edges: tuple
    expert_space: str
    source: str = ""
    model_id: Optional[str] = None
    warnings: tuple = ()

    def __repr__(self) -> str:
        return (f"LogReport(layers={len(self.layer_ids)}, num_tokens={self.num_tokens}, "
                f"experts={short_value(np.unique(self.num_experts))}, estimator={self.estimator!r}, "
                f"unit={self.unit!r}, source={short_value(self.source)}, warnings={len(self.warnings)})")

    def load_matrix(self) -> np.ndarray:
        """Load fractions as an ``(L, max E)`` array, NaN-padded for smaller layers."""
        width = int(self.num_experts.max())
        m = np.full((len(self.layer_ids), width), np.nan)
        for i, c in enumerate(self.load):
            tot = c.sum()
            m[i, :c.shape[0]] = c / tot if tot else np.nan
        return m

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as null)."""
        def clean(v):
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (tuple, list)):
                return [clean(x) for x in v]
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, (float, np.floating)):
                return None if not math.isfinite(float(v)) else float(v)
            if isinstance(v, (np.integer,)):
                return int(v)
            return v

        per_layer = []
        for i, lid in enumerate(self.layer_ids):
            row = {"layer_id": int(lid), "num_experts": int(self.num_experts[i]),
                   "top_k": int(self.top_k[i]), "load": self.load[i],
                   "record_pairs": self.record_pairs[i],
                   "dropped_fraction": self.dropped_fraction[i], "load_cv": self.load_cv[i],
                   "max_over_mean": self.max_over_mean[i], "load_entropy": self.load_entropy[i],
                   "normalized_entropy": self.normalized_entropy[i],
                   "switch_balance": self.switch_balance[i], "switch_source": self.switch_source[i],
                   "set_entropy": self.set_entropy[i], "set_alphabet": int(self.set_alphabet[i])}
            for name in ("router_entropy", "mi_token", "mi_position", "mi_label"):
                arr = getattr(self, name)
                row[name] = None if arr is None else arr[i]
            per_layer.append(row)
        transitions = [{"from_layer": int(self.layer_ids[i]), "to_layer": int(self.layer_ids[i + 1]),
                        "mi": self.mi_transition[i]} for i in range(len(self.mi_transition))]
        return clean({
            "format": "infomoe.log-report", "version": 1,
            "source": self.source, "model_id": self.model_id, "num_tokens": self.num_tokens,
            "unit": self.unit, "base": self.base, "estimator": self.estimator,
            "expert_space": self.expert_space, "token_buckets": self.token_buckets,
            "token_ids_folded": self.token_ids_folded, "label_buckets": self.label_buckets,
            "labels_folded": self.labels_folded, "position_edges": list(self.position_edges),
            "counting": "one count per (token, chosen expert) pair; -1 and invalid tokens skipped",
            "layers": per_layer, "transitions": transitions, "mi_bias": self.mi_bias,
            "warnings": list(self.warnings)})

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def _table_row(self, i: int) -> tuple:
        """Values of layer `i` in the order of :data:`TABLE_COLUMNS` (None: not available)."""
        def g(arr):
            return None if arr is None else float(arr[i])
        nxt = float(self.mi_transition[i]) if i < len(self.mi_transition) else None
        return (int(self.layer_ids[i]), int(self.num_experts[i]), int(self.top_k[i]),
                float(self.dropped_fraction[i]), float(self.load_cv[i]),
                float(self.max_over_mean[i]), float(self.normalized_entropy[i]),
                float(self.switch_balance[i]), g(self.router_entropy), g(self.mi_token),
                g(self.mi_position), g(self.mi_label), nxt, float(self.set_entropy[i]))

    def format_table(self) -> str:
        """A fixed-width text table, one row per layer, with warnings and a legend of the columns.

        When a layer drops more than :data:`DROP_WARNING_FRACTION` of its
        choices, the text begins with a warning line naming those layers.

        Returns
        -------
        str
            The drop warning (if any), a title, the table, the other
            warnings, and one legend line per column.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from infomoe.logs import write_log, analyze_log
        >>> ids = np.array([[0], [1], [-1], [-1]] * 10)[:, None, :]  # half the choices dropped
        >>> r = analyze_log(write_log(os.path.join(tempfile.mkdtemp(), "log"), ids, num_experts=2))
        >>> print(r.format_table().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
        warning: layer 0 drops 50.0% of its top-k choices (recorded as expert -1: over capacity,
        or padding), more than 10%: load and information describe only the routed choices
        """
        def cell(v, width, decimals):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                return "-".rjust(width)
            return f"{v:>{width}d}" if decimals is None else f"{v:{width}.{decimals}f}"

        head = " ".join(f"{name:>{width}}" for name, width, _, _ in TABLE_COLUMNS)
        drop = _drop_warning(self.layer_ids, self.dropped_fraction)
        lines = [] if drop is None else [f"warning: {drop}"]
        lines += [f"routing log report: {self.num_tokens} tokens, information in {self.unit} "
                  f"({self.estimator})", head, "-" * len(head)]
        for i in range(len(self.layer_ids)):
            lines.append(" ".join(cell(v, width, decimals)
                                  for v, (_, width, decimals, _) in zip(self._table_row(i),
                                                                        TABLE_COLUMNS)))
        for w in self.warnings:
            if w != drop:  # already the first line
                lines.append(f"warning: {w}")
        lines.append("columns:")
        key = max(len(name) for name, _, _, _ in TABLE_COLUMNS)
        for name, _, _, legend in TABLE_COLUMNS:
            lines.append(f"  {name:<{key}}  {legend.format(unit=self.unit)}")
        lines.append(f"  {'-':<{key}}  not available (not logged) or undefined")
        return "\n".join(lines)


def _drop_warning(layer_ids, dropped_fraction) -> Optional[str]:
    """The warning for layers dropping more than :data:`DROP_WARNING_FRACTION`, or None."""
    high = [(int(lid), float(f)) for lid, f in zip(layer_ids, dropped_fraction)
            if f > DROP_WARNING_FRACTION]
    if not high:
        return None
    which = ", ".join(f"layer {lid} drops {100 * f:.1f}%" for lid, f in high)
    its = "its" if len(high) == 1 else "their"
    return (f"{which} of {its} top-k choices (recorded as expert -1: over capacity, or padding), "
            f"more than {100 * DROP_WARNING_FRACTION:g}%: load and information describe only the "
            "routed choices")


def _mi_values(tables, name, estimator, base, layer_ids, warns):
    """MI of each table (NaN and a warning for an empty one); and its null bias."""
    from infomoe._information import mutual_information_table

    if all(t is None for t in tables):
        return None, None
    import warnings

    from infomoe._entropy import UndersampledWarning

    vals, bias = np.full(len(tables), np.nan), np.full(len(tables), np.nan)
    lb = log_base(base)
    undersampled = []
    for i, t in enumerate(tables):
        if t is None:
            continue
        n = t.sum()
        if n == 0:
            warns.append(f"{name}: table for {layer_ids[i]} is empty (no counted pairs); "
                         "value is NaN")
            continue
        with warnings.catch_warnings(record=True) as caught:  # one report line, not a warning per layer
            warnings.simplefilter("always", UndersampledWarning)
            vals[i] = float(mutual_information_table(t, estimator=estimator, base=base).value)
        for w in caught:
            if issubclass(w.category, UndersampledWarning):
                undersampled.append(layer_ids[i])
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        kx = int(np.count_nonzero(t.sum(axis=1)))
        ky = int(np.count_nonzero(t.sum(axis=0)))
        bias[i] = (kx - 1) * (ky - 1) / (2.0 * n) / lb
    if undersampled:
        warns.append(f"{name}: the tables of {len(undersampled)} of {len(tables)} entries have far more cells than "
                     f"counted pairs, so {estimator} values there are dominated by bias (see mi_bias); "
                     "use --estimator nsb or james_stein, or compare with a permutation null")
    return vals, bias


def report_from_tables(tables: LogTables, spec: CountSpec, *, estimator: str = "plugin",
                       base: float = 2, manifest: Optional[Manifest] = None,
                       expert_space: str = "logical") -> LogReport:
    r"""Turn merged :class:`LogTables` into a :class:`LogReport`.

    Parameters
    ----------
    tables : LogTables
        Tables of the whole log (the sum of :func:`count_shard` results).
    spec : CountSpec
        The spec the tables were counted with.
    estimator : str, default "plugin"
        Estimator for the mutual informations and set entropies (any of
        :data:`infomoe.ESTIMATORS`).  Load measures are descriptive (plug-in).
    base : float, default 2
        Logarithm base (2: bits).
    manifest : Manifest, optional
        For the source and model id in the report.
    expert_space : str
        Recorded in the report.

    Returns
    -------
    LogReport

    Notes
    -----
    With load :math:`c_i` over :math:`E` experts, :math:`\bar c = \sum_i
    c_i / E` and :math:`f_i = c_i / \sum_j c_j`: ``load_cv`` is
    :math:`\sqrt{\mathrm{mean}_i (c_i - \bar c)^2} / \bar c`, ``max_over_mean``
    :math:`\max_i c_i / \bar c`, ``normalized_entropy`` :math:`H(f) / \log E`,
    and ``switch_balance`` :math:`E \sum_i f_i P_i` (Fedus et al. 2021, eq. 4),
    with :math:`P_i` the mean router probability when logits of a softmax
    router were logged, else :math:`P = f` (then it equals
    :math:`E e^{-H_2(f)}`, Rényi-2).  ``router_entropy`` is
    :math:`\frac1N \sum_x H(\mathrm{softmax}(z_x))`.  Mutual informations
    are estimated from the contingency tables with
    :func:`infomoe.mutual_information_table`; top-k sets are ranked
    :math:`\sum_{i=0}^{k-1} \binom{c_i}{i+1}` for the sorted set
    :math:`c_0 < \dots < c_{k-1}` (combinatorial number system), an
    alphabet of :math:`\binom{E}{k}` symbols.

    References
    ----------
    W. Fedus, B. Zoph and N. Shazeer (2021), "Switch Transformers", arXiv
    2101.03961, eq. (4).  S. Panzeri and A. Treves (1996), Network 7, for the
    bias under independence.  D. E. Knuth, TAOCP vol. 4A, §7.2.1.3 (the
    combinatorial number system; no equation number).
    """
    from infomoe._entropy import ESTIMATORS, entropy

    check_choice(estimator, "estimator", ESTIMATORS)
    b = check_base(base)
    lb = math.log(b)
    layer_ids = [s.layer_id for s in spec.layers]
    names = [f"layer {lid}" for lid in layer_ids]
    L = len(spec.layers)
    E = np.array([s.num_experts for s in spec.layers])
    K = np.array([s.top_k for s in spec.layers])
    warns = []
    cv, mom, hl, hn, sw, dfrac = (np.full(L, np.nan) for _ in range(6))
    sw_src = []
    for i, c in enumerate(tables.load):
        tot = int(c.sum())
        chosen = tables.tokens * K[i]
        dfrac[i] = tables.dropped[i] / chosen if chosen else 0.0
        if tot == 0:
            warns.append(f"{names[i]}: no routed (token, expert) pairs; load measures are NaN")
            sw_src.append("load")
            continue
        mean = tot / E[i]
        cv[i] = float(np.std(c) / mean)
        mom[i] = float(c.max() / mean)
        f = c / tot
        hl[i] = float(entropy(c, estimator="plugin", k=int(E[i]), base=b).value)
        hn[i] = hl[i] * lb / math.log(E[i]) if E[i] > 1 else 1.0
        ps = tables.prob_sum[i]
        if ps is not None and tables.logit_tokens[i] > 0 and manifest is not None \
                and manifest.score_function == "softmax":
            P = ps / tables.logit_tokens[i]
            sw[i] = float(E[i] * np.dot(f, P))
            sw_src.append("router_logits")
        else:
            sw[i] = float(E[i] * np.dot(f, f))
            sw_src.append("load")
    router_entropy = None
    if any(tables.logit_tokens > 0):
        router_entropy = np.full(L, np.nan)
        for i in range(L):
            if tables.logit_tokens[i] > 0:
                router_entropy[i] = tables.router_entropy_sum[i] / tables.logit_tokens[i] / lb

    mi_bias = {}
    mi = {}
    for name, tabs, labels in (("mi_token", tables.token, names),
                               ("mi_position", tables.position, names),
                               ("mi_label", tables.label, names),
                               ("mi_transition", tables.transition,
                                [f"layers {a}->{b}" for a, b in zip(layer_ids, layer_ids[1:])])):
        v, bias = _mi_values(tabs, name, estimator, b, labels, warns)
        mi[name] = v
        if bias is not None:
            mi_bias[name] = bias
    if mi["mi_transition"] is None:
        mi["mi_transition"] = np.zeros(0)
    set_h = np.full(L, np.nan)
    alphabets = tuple(spec.set_alphabet(i) for i in range(L))
    for i, c in enumerate(tables.sets):
        if c is None:
            warns.append(f"{names[i]}: C({E[i]}, {K[i]}) = {alphabets[i]} top-k sets exceed "
                         f"max_set_alphabet={spec.max_set_alphabet}; set entropy not computed")
        elif c.sum() == 0:
            warns.append(f"{names[i]}: no complete top-k sets; set entropy is NaN")
        else:
            set_h[i] = float(entropy(c, estimator=estimator, k=alphabets[i], base=b).value)
    drop = _drop_warning(layer_ids, dfrac)
    if drop is not None:
        warns.insert(0, drop)
    if tables.token_ids_folded:
        warns.append(f"{tables.token_ids_folded} tokens had ids >= token_buckets="
                     f"{spec.token_buckets}, folded modulo it (I(token; E) is then a lower bound)")
    if tables.labels_folded:
        warns.append(f"{tables.labels_folded} tokens had labels >= label_buckets="
                     f"{spec.label_buckets}, folded modulo it (I(label; E) is then a lower bound)")
    return LogReport(
        layer_ids=np.array(layer_ids), num_experts=E, top_k=K, num_tokens=int(tables.tokens),
        load=tuple(np.asarray(c) for c in tables.load), record_pairs=tables.record_pairs.copy(),
        dropped_fraction=dfrac, load_cv=cv, max_over_mean=mom, load_entropy=hl,
        normalized_entropy=hn, switch_balance=sw, switch_source=tuple(sw_src),
        router_entropy=router_entropy, mi_token=mi["mi_token"], mi_position=mi["mi_position"],
        mi_label=mi["mi_label"], mi_transition=mi["mi_transition"], set_entropy=set_h,
        set_alphabet=alphabets, mi_bias=mi_bias, estimator=estimator, base=b, unit=unit_name(b),
        token_buckets=spec.token_buckets, label_buckets=spec.label_buckets,
        token_ids_folded=int(tables.token_ids_folded), labels_folded=int(tables.labels_folded),
        position_edges=tuple(spec.position_edges), expert_space=expert_space,
        source="" if manifest is None else manifest.source,
        model_id=None if manifest is None else manifest.model_id, warnings=tuple(warns))


# ============================================================================= driver
def analyze_log(log, *, layers=None, estimator: str = "plugin", base: float = 2,
                token_buckets: int = 2048, position_edges: Optional[Sequence[int]] = None,
                label_buckets: int = 1024, max_set_alphabet: int = 1 << 18,
                expert_space: str = "logical", chunk_tokens: int = 1 << 16,
                on_error: str = "raise", verify: Optional[bool] = None,
                num_threads: Optional[int] = 1, progress: bool = False,
                scheduler=None, n_workers: Optional[int] = None) -> LogReport:
    """Stream a routing log once and report load balance and information per layer.

    Parameters
    ----------
    log : RoutingLog or path
        The log (a path is opened with :func:`open_log`).
    layers : sequence of int, optional
        Layer ids to analyse (default all).
    estimator : str, default "plugin"
        Estimator of the mutual informations and set entropies.
    base : float, default 2
        Logarithm base (2: bits).
    token_buckets : int, default 2048
        Token ids are counted modulo this many buckets, bounding the table
        at ``token_buckets x E`` per layer; exact when all ids are smaller
        (the report says how many were folded; folding can only lower the
        MI, by the data-processing inequality).
    position_edges : sequence of int, optional
        Position bucket edges; default powers of two.
    label_buckets : int, default 1024
        As `token_buckets`, for labels.
    max_set_alphabet : int, default 2**18
        Count top-k sets only where ``C(E, k)`` is at most this (a dense
        ``int64`` table of that size per layer).
    expert_space : {"logical", "as_logged"}
        See :meth:`CountSpec.from_manifest`.
    chunk_tokens : int, default 2**16
        Tokens per chunk: memory is the tables plus one chunk.
    on_error : {"raise", "skip"}
        For corrupted shards, as in :meth:`RoutingLog.iter_chunks`.
    verify : bool, optional
        Verify shard checksums (default: the log's setting).
    num_threads : int or None, default 1
        numba threads used by the counting kernels during the analysis
        (restored afterwards); None keeps numba's setting.  The default is
        one thread because the analysis makes many calls of moderate size:
        measured on a loaded 2-core machine, two threads were 8x slower than
        one (27 s against 3.2 s for a 0.1 GB log).  Parallelism across
        shards (processes, Dask) is the way to scale.
    progress : bool, default False
        Show a tqdm progress bar (on stderr; ``infomoe report`` shows one
        unless ``--no-progress``).
    scheduler : None, "local", str or dask.distributed.Client, optional
        None (default) counts in this process.  Anything else runs the
        per-shard counting as Dask tasks through
        :func:`~infomoe.logs.analyze_log_distributed` ("local": a new
        ``LocalCluster``; a string: a scheduler address or scheduler file;
        or a ``Client``).  The report is identical either way.
    n_workers : int, optional
        Workers of the local cluster when ``scheduler="local"``.

    Returns
    -------
    LogReport

    Notes
    -----
    The counting convention for top-k routing is in the module docstring
    of :mod:`infomoe.logs._analysis`; the formulas are in
    :func:`report_from_tables`.

    References
    ----------
    See :func:`report_from_tables`.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, analyze_log
    >>> rng = np.random.default_rng(0)
    >>> tok = rng.integers(0, 8, 4000)
    >>> ids = np.stack([tok % 4, (tok + 1) % 4], axis=1)[:, None, :]  # expert set = f(token)
    >>> d = os.path.join(tempfile.mkdtemp(), "log")
    >>> r = analyze_log(write_log(d, ids, num_experts=4, token_id=tok), progress=False)
    >>> round(float(r.normalized_entropy[0]), 2), round(float(r.mi_token[0]), 2)
    (1.0, 1.0)
    """
    from infomoe.logs._reader import RoutingLog, open_log

    if scheduler is not None:
        from infomoe.logs._distributed import analyze_log_distributed

        return analyze_log_distributed(
            log, scheduler=scheduler, n_workers=n_workers, layers=layers, estimator=estimator,
            base=base, token_buckets=token_buckets, position_edges=position_edges,
            label_buckets=label_buckets, max_set_alphabet=max_set_alphabet,
            expert_space=expert_space, chunk_tokens=chunk_tokens, on_error=on_error,
            verify=verify, num_threads=num_threads, progress=progress)
    if not isinstance(log, RoutingLog):
        log = open_log(log, verify=bool(verify))
    elif verify is not None and bool(verify) != log.verify:
        log = RoutingLog(log.path, log.manifest, verify=bool(verify))
    check_choice(estimator, "estimator", _estimators())
    check_base(base)
    chunk_tokens = check_positive_int(chunk_tokens, "chunk_tokens")
    spec = CountSpec.from_manifest(log.manifest, layers=layers, token_buckets=token_buckets,
                                   position_edges=position_edges, label_buckets=label_buckets,
                                   max_set_alphabet=max_set_alphabet, expert_space=expert_space)
    lids = [s.layer_id for s in spec.layers]
    wanted = {"expert_ids", "router_logits", "valid", "token_id", "position", "label"}
    cols = [c for c in log.columns if c in wanted]
    if not log.shards:
        raise ValueError(f"routing log {log.path!r} has no committed shards; nothing to analyse.")
    acc = _Accumulator(spec)
    restore = None
    if num_threads is not None:
        import numba

        threads = min(check_positive_int(num_threads, "num_threads"), numba.config.NUMBA_NUM_THREADS)
        restore = numba.get_num_threads()
        numba.set_num_threads(threads)
    bar = progress_bar(enabled=progress, desc="report", total=log.num_tokens, unit="tok", unit_scale=True)
    try:
        if cols:
            for chunk in log.iter_chunks(lids, cols, chunk_tokens, on_error=on_error):
                acc.count(chunk)
                bar.update(next(iter(chunk["expert_ids"].values())).shape[0])
                del chunk
        for chunk in log.iter_chunks(lids, kind="counts", on_error=on_error):
            acc.count(chunk)
    finally:
        bar.close()
        if restore is not None:
            import numba

            numba.set_num_threads(restore)
    total = acc.result()
    if total.tokens == 0 and not total.record_pairs.any():
        raise ValueError(f"routing log {log.path!r} has no valid tokens or counts to analyse.")
    return report_from_tables(total, spec, estimator=estimator, base=base,
                              manifest=log.manifest, expert_space=expert_space)


def _estimators():
    from infomoe._entropy import ESTIMATORS
    return ESTIMATORS
