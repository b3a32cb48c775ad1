r"""Comparing routings: the same tokens routed by two runs, two engines or many checkpoints.

:func:`compare_logs` pairs the tokens of two routing logs (by ``(seq_id,
position)``, by token content, or in order) and measures, per MoE layer, how
often the two routings choose the same experts, how far apart their expert
loads are, and how much information one routing carries about the other.
:func:`router_saturation` applies the agreement measures to a series of
checkpoints against a reference (default: the last one), the curve of how
the router settles during training.

For token :math:`t` of layer :math:`\ell`, let :math:`A_t` and :math:`B_t`
be the *sets* of experts the two routings chose, dropped choices (id ``-1``)
left out and a repeated id counted once.  Over the :math:`m` matched tokens:

* exact-set match :math:`\frac1m \sum_t [A_t = B_t]`;
* Jaccard :math:`\frac1m \sum_t |A_t \cap B_t| / |A_t \cup B_t|` (1 when
  both sets are empty);
* top-1 agreement :math:`\frac1m \sum_t [a_t = b_t]`, :math:`a_t` the
  highest-scoring chosen expert (``-1`` when it was dropped);
* load divergences between the expert loads :math:`p` (of A) and :math:`q`
  (of B) of the matched tokens, normalised to distributions:
  :math:`KL(p \| q) = \sum_i p_i \log(p_i / q_i)` and
  :math:`JS(p, q) = \tfrac12 KL(p \| m) + \tfrac12 KL(q \| m)`,
  :math:`m = (p + q) / 2`;
* AMI, the adjusted-for-chance mutual information between the two
  routings' labels of the matched tokens
  (:func:`infomoe.adjusted_mutual_information`).

A token whose choices differ only because one routing dropped a choice
(capacity overflow) counts as a disagreement: :math:`\{3, 5\} \ne \{3\}`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from infomoe._repr import dataclass_repr, json_ready
from infomoe._validate import check_base, check_choice, check_positive_int, unit_name

__all__ = ["LogComparison", "SaturationCurve", "compare_logs", "router_saturation"]

#: How tokens of the two logs are paired.
MATCHES = ("seq_position", "token", "order")
#: Labels of a token for the AMI.
AMI_LABELS = ("auto", "top1", "set")
#: The key columns of each match.
_MATCH_KEYS = {"seq_position": ("seq_id", "position"), "token": ("seq_id", "position"),
               "order": ()}
#: Tokens per block of the per-token set comparison (bounds its (block, k, k) temporary).
_BLOCK = 1 << 16
#: Most label pairs for which the cost of the exact expected MI is worked out.
_AMI_MAX_CELLS = 1 << 22


# --------------------------------------------------------------------------------------------
# reading


def _open(x, name: str):
    from infomoe.logs._reader import RoutingLog, open_log

    if isinstance(x, RoutingLog):
        log = x
    elif isinstance(x, (str, os.PathLike)):
        log = open_log(x)
    else:
        raise TypeError(f"`{name}` must be a routing-log path or a RoutingLog, got "
                        f"{type(x).__name__}.")
    if "expert_ids" not in log.manifest.columns or log.num_tokens == 0:
        raise ValueError(f"`{name}` ({log.path!r}) has no per-token routing records "
                         "(expert_ids); comparing routings needs the tokens, not only count "
                         "records.")
    return log


class _LogData:
    """Columns of one log read on demand, in full, chunk by chunk (only the columns asked for).

    Token columns are kept once read; the expert ids of one layer at a time
    (:meth:`layer`), so that at most the key columns and one layer's ids are held.
    """

    def __init__(self, log, name: str, expert_space: str, chunk_tokens: int):
        self.log, self.name, self.chunk = log, name, chunk_tokens
        self._cols: dict = {}
        self._layer: Optional[tuple] = None
        m = log.manifest
        self.space = m.expert_id_space
        self.luts: dict = {}
        if expert_space == "logical" and m.expert_id_space == "physical" and m.physical_to_logical:
            self.luts = {int(k): np.append(np.asarray(v, dtype=np.int64), -1)
                         for k, v in m.physical_to_logical.items()}
            self.space = "logical"

    def num_experts(self, lid: int) -> int:
        lut = self.luts.get(lid)
        return int(lut.max()) + 1 if lut is not None else self.log.manifest.layer(lid).num_experts

    def has(self, col: str) -> bool:
        return col in self.log.manifest.columns

    def column(self, col: str) -> np.ndarray:
        if col not in self._cols:
            parts = [np.array(c[col]) for c in
                     self.log.iter_chunks(columns=[col], chunk_tokens=self.chunk)]
            self._cols[col] = np.concatenate(parts)
        return self._cols[col]

    def valid(self) -> np.ndarray:
        return self.column("valid") if self.has("valid") else np.ones(self.log.num_tokens, bool)

    def top1_rule(self, lid: int) -> tuple:
        """``(rule, reason)``: how the top-1 of each token is found, or None and why not."""
        m = self.log.manifest
        if m.topk_order == "descending":
            return "first", None
        if m.layer(lid).top_k == 1:
            return "first", None
        if self.has("gate_weights"):
            return "gate_weights", None
        if self.has("router_logits"):
            return "router_logits", None
        return None, (f"{self.name} has topk_order 'unordered' and logs neither gate_weights nor "
                      "router_logits, so its top-1 expert is unknown")

    def layer(self, lid: int) -> tuple:
        """``(ids (N, k) int32 in the compared id space, top1 (N,) or None)`` of layer `lid`."""
        if self._layer is not None and self._layer[0] == lid:
            return self._layer[1:]
        self._layer = None
        rule, _ = self.top1_rule(lid)
        cols = ["expert_ids"] + ([rule] if rule in ("gate_weights", "router_logits") else [])
        lut = self.luts.get(lid)
        ids_parts, top_parts = [], []
        for c in self.log.iter_chunks(layers=[lid], columns=cols, chunk_tokens=self.chunk):
            e = np.asarray(c["expert_ids"][lid], dtype=np.int64)
            if lut is not None:
                e = lut[e]  # -1 indexes the appended -1
            ids_parts.append(e.astype(np.int32))
            if rule == "first":
                top_parts.append(e[:, 0].astype(np.int32))
            elif rule is not None:
                raw = np.asarray(c["expert_ids"][lid], dtype=np.int64)
                if rule == "gate_weights":
                    score = np.asarray(c["gate_weights"][lid], dtype=np.float64)
                else:
                    logits = np.asarray(c["router_logits"][lid], dtype=np.float64)
                    score = np.take_along_axis(logits, np.maximum(raw, 0), axis=1)
                score = np.where(raw >= 0, score, -np.inf)
                j = np.argmax(score, axis=1)
                t = np.take_along_axis(e, j[:, None], axis=1)[:, 0]
                top_parts.append(np.where(np.isneginf(score.max(axis=1)), -1, t).astype(np.int32))
        ids = np.concatenate(ids_parts)
        top = np.concatenate(top_parts) if rule is not None else None
        self._layer = (lid, ids, top)
        return ids, top

    def release(self) -> None:
        self._layer = None


# --------------------------------------------------------------------------------------------
# pairing


@dataclass
class _Side:
    """The tokens of one routing: a log and a selection of its rows."""

    data: _LogData
    rows: np.ndarray  # selected global row indices, in log order (invalid ones included)
    label: str

    @property
    def ok(self) -> np.ndarray:
        return self.data.valid()[self.rows]


@dataclass
class _Pairing:
    ia: np.ndarray  # global rows of A
    ib: np.ndarray  # global rows of B
    invalid_a: int
    invalid_b: int
    unmatched_a: int
    unmatched_b: int
    token_mismatch: int


def _joint_codes(cols_a, cols_b):
    """Integer codes of the key tuples of A and B, equal exactly when the tuples are equal."""
    na = cols_a[0].shape[0]
    code = None
    for ca, cb in zip(cols_a, cols_b):
        u, inv = np.unique(np.concatenate([ca, cb]), return_inverse=True)
        inv = inv.reshape(-1).astype(np.int64)
        if code is None:
            code = inv
        else:  # both factors are below the number of tokens: no overflow below 3e9 tokens
            _, code = np.unique(code * len(u) + inv, return_inverse=True)
            code = code.reshape(-1).astype(np.int64)
    return code[:na], code[na:]


def _check_unique(codes, side: _Side, keys, rows_ok):
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    dup = counts > 1
    if dup.any():
        row = rows_ok[first[np.argmax(dup)]]
        example = ", ".join(f"{k}={int(side.data.column(k)[row])}" for k in keys)
        hint = (" (the log holds several checkpoints in its `step` column: use router_saturation)"
                if side.data.has("step") and np.unique(side.data.column("step")[side.rows]).size > 1
                else "")
        raise ValueError(f"{side.label} has {int((counts[dup] - 1).sum())} duplicated "
                         f"({', '.join(keys)}) keys among its valid tokens, e.g. {example}; each "
                         f"token must appear once to be matched{hint}.")


def _pair(a: _Side, b: _Side, match: str) -> _Pairing:
    oka, okb = a.ok, b.ok
    inv_a, inv_b = int((~oka).sum()), int((~okb).sum())
    if match == "order":
        if a.rows.shape[0] != b.rows.shape[0]:
            raise ValueError(f"match='order' pairs tokens by their order, but {a.label} has "
                             f"{a.rows.shape[0]} tokens and {b.label} {b.rows.shape[0]}; "
                             "use match='seq_position' or 'token'.")
        both = oka & okb
        return _Pairing(a.rows[both], b.rows[both], inv_a, inv_b, int((oka & ~okb).sum()),
                        int((okb & ~oka).sum()), 0)
    keys = _MATCH_KEYS[match] + (("token_id",) if match == "token" else ())
    for side in (a, b):
        missing = [k for k in keys if not side.data.has(k)]
        if missing:
            raise ValueError(f"match={match!r} needs the columns {list(keys)}, but {side.label} "
                             f"has no {missing}; use match='order' to pair tokens by their order.")
    ra, rb = a.rows[oka], b.rows[okb]
    kcols = _MATCH_KEYS[match]
    ca, cb = _joint_codes([a.data.column(k)[ra] for k in kcols],
                          [b.data.column(k)[rb] for k in kcols])
    _check_unique(ca, a, kcols, ra)
    _check_unique(cb, b, kcols, rb)
    order = np.argsort(cb, kind="stable")
    sb = cb[order]
    pos = np.searchsorted(sb, ca)
    posc = np.minimum(pos, max(sb.shape[0] - 1, 0))
    hit = (pos < sb.shape[0]) & (sb[posc] == ca) if sb.shape[0] else np.zeros(ca.shape, bool)
    ia, ib = ra[hit], rb[order[posc[hit]]]
    n = int(hit.sum())
    mismatch = 0
    if match == "token":
        same = a.data.column("token_id")[ia] == b.data.column("token_id")[ib]
        mismatch = int((~same).sum())
        ia, ib = ia[same], ib[same]
    return _Pairing(ia, ib, inv_a, inv_b, ra.shape[0] - n, rb.shape[0] - n, mismatch)


# --------------------------------------------------------------------------------------------
# per-token measures


def _canonical(ids: np.ndarray, width: int) -> np.ndarray:
    """Rows as sorted sets padded with -1 at the front: dropped and repeated ids become -1."""
    s = np.sort(ids.astype(np.int64), axis=1)
    if s.shape[1] > 1:
        rep = np.zeros(s.shape, bool)
        rep[:, 1:] = s[:, 1:] == s[:, :-1]
        s[rep] = -1
        s.sort(axis=1)
    if s.shape[1] < width:
        s = np.concatenate([np.full((s.shape[0], width - s.shape[1]), -1, np.int64), s], axis=1)
    return s


def _set_agreement(xa: np.ndarray, xb: np.ndarray) -> tuple:
    """``(exact matches, sum of Jaccard)`` over the rows of two id arrays (same row count)."""
    width = max(xa.shape[1], xb.shape[1])
    exact, jac = 0, 0.0
    for s in range(0, xa.shape[0], _BLOCK):
        a = _canonical(xa[s:s + _BLOCK], width)
        b = _canonical(xb[s:s + _BLOCK], width)
        exact += int((a == b).all(axis=1).sum())
        inter = ((a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)).sum(axis=(1, 2))
        union = (a >= 0).sum(axis=1) + (b >= 0).sum(axis=1) - inter
        jac += float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).sum())
    return exact, jac


def _set_labels(xa: np.ndarray, xb: np.ndarray) -> tuple:
    width = max(xa.shape[1], xb.shape[1])
    both = np.concatenate([_canonical(xa, width), _canonical(xb, width)])
    _, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return inv[:xa.shape[0]], inv[xa.shape[0]:]


def _ami_cost(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """Terms of the exact expected MI: one per (cell, possible count), as
    :func:`infomoe.adjusted_mutual_information` sums them."""
    if a.size * b.size > _AMI_MAX_CELLS:
        return math.inf
    lo = np.maximum(1, a[:, None] + b[None, :] - n)
    hi = np.minimum(a[:, None], b[None, :])
    return float(np.maximum(hi - lo + 1, 0).sum())


def _ami(la: np.ndarray, lb: np.ndarray, max_terms: int) -> tuple:
    """``(AMI, why it is NaN or None, note on how it was computed or None)``.

    Exact (:func:`infomoe.adjusted_mutual_information`) when its expected MI
    costs at most `max_terms` terms; otherwise the large-sample expectation of
    the plug-in MI of independent labellings, :math:`(K_a - 1)(K_b - 1) / (2n)`
    nats, when there are fewer label pairs than tokens; otherwise NaN.
    """
    from infomoe._information import adjusted_mutual_information

    _, ca = np.unique(la, return_inverse=True)
    _, cb = np.unique(lb, return_inverse=True)
    ca, cb = ca.reshape(-1), cb.reshape(-1)
    n = ca.shape[0]
    ka, kb = int(ca.max()) + 1, int(cb.max()) + 1
    a = np.bincount(ca, minlength=ka).astype(np.float64)
    b = np.bincount(cb, minlength=kb).astype(np.float64)
    if _ami_cost(a, b, n) <= max_terms:
        return adjusted_mutual_information(ca, cb), None, None
    if ka * kb > n:
        return math.nan, (f"{ka} x {kb} distinct labels for {n} tokens: the exact expected MI "
                          f"costs more than max_ami_terms={max_terms} terms and the large-sample "
                          "one needs fewer label pairs than tokens"), None
    if ka == 1 or kb == 1:  # scikit-learn's conventions, as the exact function
        return (1.0 if ka == kb else 0.0), None, None
    joint, cnt = np.unique(ca.astype(np.int64) * kb + cb, return_counts=True)
    pa, pb = a[joint // kb], b[joint % kb]
    mi = max(float((cnt / n * np.log(cnt * n / (pa * pb))).sum()), 0.0)
    ha = float(-(a / n * np.log(a / n)).sum())
    hb = float(-(b / n * np.log(b / n)).sum())
    emi = (ka - 1) * (kb - 1) / (2.0 * n)
    eps = np.finfo(np.float64).eps
    den = 0.5 * (ha + hb) - emi
    den = min(den, -eps) if den < 0 else max(den, eps)
    num = mi - emi
    num = min(num, -eps) if num < 0 else max(num, eps)
    return float(num / den), None, (
        "uses the large-sample expected MI (K_a - 1)(K_b - 1) / (2n) instead of the exact one "
        f"(which would cost more than max_ami_terms={max_terms} terms)")


def _divergences(p: np.ndarray, q: np.ndarray, base: float) -> tuple:
    from infomoe._information import jensen_shannon_divergence, kl_divergence

    if p.sum() == 0 or q.sum() == 0:
        return math.nan, math.nan
    return (float(kl_divergence(p, q, base=base).value),
            float(jensen_shannon_divergence(p, q, base=base).value))


def _layer_measures(da: _LogData, db: _LogData, lid: int, pr: _Pairing, *, base, ami_label,
                    max_ami_terms, loads: bool) -> dict:
    ids_a, top_a = da.layer(lid)
    ids_b, top_b = db.layer(lid)
    xa, xb = ids_a[pr.ia], ids_b[pr.ib]
    m = xa.shape[0]
    exact, jac = _set_agreement(xa, xb)
    out = {"exact": exact / m, "jaccard": jac / m, "top1": math.nan, "why_top1": None}
    if top_a is not None and top_b is not None:
        out["top1"] = float(np.mean(top_a[pr.ia] == top_b[pr.ib]))
    else:
        out["why_top1"] = da.top1_rule(lid)[1] or db.top1_rule(lid)[1]
    if loads:
        e = da.num_experts(lid)
        pa = np.bincount(xa[xa >= 0].astype(np.int64), minlength=e)
        pb = np.bincount(xb[xb >= 0].astype(np.int64), minlength=e)
        out["load_a"], out["load_b"] = pa, pb
        out["kl"], out["js"] = _divergences(pa, pb, base)
    if ami_label is not None:
        use = ami_label
        if use == "auto":
            use = "top1" if out["why_top1"] is None else "set"
        out["ami_label"] = use
        if use == "top1" and out["why_top1"] is not None:
            out["ami"], out["why_ami"], out["ami_note"] = math.nan, out["why_top1"], None
        else:
            la, lb = ((top_a[pr.ia], top_b[pr.ib]) if use == "top1" else _set_labels(xa, xb))
            out["ami"], out["why_ami"], out["ami_note"] = _ami(la, lb, max_ami_terms)
    return out


# --------------------------------------------------------------------------------------------
# checks


def _check_layers(layers, datas, names) -> tuple:
    """Layer ids to compare (common to every log) and a warning for those left out."""
    id_lists = [d.log.layer_ids for d in datas]
    if layers is None:
        common = [lid for lid in id_lists[0] if all(lid in ids for ids in id_lists[1:])]
        if not common:
            raise ValueError(f"the logs share no MoE layer: their layer ids are {id_lists}.")
        left = sorted({lid for ids in id_lists for lid in ids} - set(common))
        warn = (f"layers {left} are not in every log and are not compared" if left else None)
    else:
        lst = [layers] if isinstance(layers, numbers.Integral) else layers
        if isinstance(lst, (str, bytes)) or not isinstance(lst, Sequence) or not lst or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in lst):
            raise TypeError(f"`layers` must be a layer id or a non-empty sequence of layer ids, "
                            f"got {layers!r}.")
        common = [int(v) for v in lst]
        for lid in common:
            for ids, name in zip(id_lists, names):
                if lid not in ids:
                    raise ValueError(f"`layers` names layer {lid}, which {name} does not have "
                                     f"(its layers are {list(ids)}).")
        warn = None
    for lid in common:
        es = {d.num_experts(lid) for d in datas}
        if len(es) > 1:
            raise ValueError(f"layer {lid} has {sorted(es)} experts in the different logs; "
                             "routings over different expert sets cannot be compared.")
    spaces = {d.space for d in datas}
    if len(spaces) > 1:
        raise ValueError("one log records logical expert ids and another physical ones (without a "
                         "physical_to_logical map); their ids do not name the same experts.")
    return tuple(common), warn


def _check_options(match, base, ami_label, expert_space, chunk_tokens, max_ami_terms=1):
    check_choice(match, "match", MATCHES)
    b = check_base(base)
    if ami_label is not None:
        check_choice(ami_label, "ami_label", AMI_LABELS)
    check_choice(expert_space, "expert_space", ("logical", "as_logged"))
    check_positive_int(chunk_tokens, "chunk_tokens")
    check_positive_int(max_ami_terms, "max_ami_terms")
    return b


def _emit(messages) -> None:
    for msg in messages:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _cell(v, width: int, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-".rjust(width)
    if isinstance(v, float) and math.isinf(v):
        return "inf".rjust(width)
    return format(v, f">{width}{fmt}")


# --------------------------------------------------------------------------------------------
# two logs


@dataclass(frozen=True, repr=False)
class LogComparison:
    r"""Per-layer agreement of two routings of the same tokens (see :func:`compare_logs`).

    Attributes
    ----------
    layer_ids : ndarray (L,)
        The compared layers.
    num_matched : int
        Token pairs compared (the same for every layer: validity is per token).
    exact_set_match, jaccard, top1_agreement : ndarray (L,)
        Fractions in [0, 1] over the matched tokens (see :mod:`infomoe.logs._compare`);
        ``top1_agreement`` is NaN where a top-1 expert is unknown (``warnings`` says why).
    kl : ndarray (L,)
        :math:`KL(p_A \| p_B)` of the expert loads of the matched tokens, in
        ``unit``; ``inf`` where B gives no load to an expert A uses (no
        smoothing is applied).
    js : ndarray (L,)
        Jensen-Shannon divergence of the same loads (equal weights), in
        ``unit``; always finite, at most 1 bit.
    ami : ndarray (L,)
        Adjusted mutual information between the two routings' labels of the
        matched tokens (1: the same partition of the tokens up to renaming
        experts; about 0: unrelated); NaN with a warning when not computed.
    ami_label : tuple of str
        Per layer, the label used for the AMI: ``"top1"`` or ``"set"`` (the chosen set).
    load_a, load_b : tuple of ndarray (E,)
        Expert loads (chosen (token, expert) pairs) of the matched tokens.
    unmatched_a, unmatched_b : int
        Valid tokens of one log with no valid partner in the other.
    invalid_a, invalid_b : int
        Tokens skipped because their ``valid`` flag is False.
    token_mismatch : int
        With ``match="token"``: pairs with equal ``(seq_id, position)`` but
        different ``token_id``, refused (not compared).
    match : str
        How tokens were paired.
    base : float
        Logarithm base of ``kl`` and ``js``.
    unit : str
        Their unit (``"bits"`` for base 2).
    a, b : str
        The two logs' paths.
    warnings : tuple of str
        Everything that makes a value NaN or infinite, and layers not compared.
    """

    layer_ids: np.ndarray
    num_matched: int
    exact_set_match: np.ndarray
    jaccard: np.ndarray
    top1_agreement: np.ndarray
    kl: np.ndarray
    js: np.ndarray
    ami: np.ndarray
    ami_label: tuple
    load_a: tuple
    load_b: tuple
    unmatched_a: int
    unmatched_b: int
    invalid_a: int
    invalid_b: int
    token_mismatch: int
    match: str
    base: float
    unit: str
    a: str
    b: str
    warnings: tuple = ()

    def __repr__(self) -> str:
        return dataclass_repr(self, ["layer_ids", "num_matched", "exact_set_match", "jaccard",
                                     "top1_agreement", "js", "ami", "match", "unit"]
                              )[:-1] + f", warnings={len(self.warnings)})"

    def to_dict(self) -> dict:
        """JSON-ready dict: NaN and infinite values are written as null, and ``kl_infinite``
        lists, per layer, whether the KL was infinite."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["kl_infinite"] = [bool(math.isinf(v)) for v in self.kl]
        return json_ready(d)

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The comparison as JSON text (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def format_table(self) -> str:
        """A fixed-width text table, one row per layer, then the warnings and a legend.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from infomoe.logs import write_log, compare_logs
        >>> d = tempfile.mkdtemp()
        >>> ids = np.array([[0, 1], [2, 3], [1, 2], [0, 3]])
        >>> a = write_log(os.path.join(d, "a"), ids, num_experts=4)
        >>> b = write_log(os.path.join(d, "b"), ids[:, ::-1], num_experts=4)   # same sets
        >>> text = compare_logs(a, b, match="order").format_table()
        >>> print("\\n".join(text.splitlines()[:4]))   # top-1 is column 0: they all differ
        routing comparison: 4 tokens matched by order; unmatched a 0, b 0; divergences in bits
        layer matched  exact jaccard   top1 KL(a||b)      JS    AMI
        -----------------------------------------------------------
            0       4  1.000   1.000  0.000   0.0000  0.0000 -0.200
        """
        head = (f"{'layer':>5} {'matched':>7} {'exact':>6} {'jaccard':>7} {'top1':>6} "
                f"{'KL(a||b)':>8} {'JS':>7} {'AMI':>6}")
        how = {"seq_position": "(seq_id, position)", "token": "(seq_id, position, token_id)",
               "order": "order"}[self.match]
        lines = [f"routing comparison: {self.num_matched} tokens matched by {how}; unmatched "
                 f"a {self.unmatched_a}, b {self.unmatched_b}; divergences in {self.unit}",
                 head, "-" * len(head)]
        for i, lid in enumerate(self.layer_ids):
            lines.append(" ".join([
                _cell(int(lid), 5, "d"), _cell(self.num_matched, 7, "d"),
                _cell(float(self.exact_set_match[i]), 6, ".3f"),
                _cell(float(self.jaccard[i]), 7, ".3f"),
                _cell(float(self.top1_agreement[i]), 6, ".3f"),
                _cell(float(self.kl[i]), 8, ".4f"), _cell(float(self.js[i]), 7, ".4f"),
                _cell(float(self.ami[i]), 6, ".3f")]))
        lines += [f"warning: {w}" for w in self.warnings]
        lines += ["columns:",
                  "  exact     fraction of matched tokens routed to the same set of experts",
                  "  jaccard   mean |A & B| / |A | B| of the chosen sets",
                  "  top1      fraction with the same top-1 expert",
                  f"  KL(a||b)  KL divergence of a's expert load from b's ({self.unit}; inf: b "
                  "leaves idle an expert a uses)",
                  f"  JS        Jensen-Shannon divergence of the two loads ({self.unit})",
                  f"  AMI       adjusted mutual information of the routings' labels "
                  f"({', '.join(sorted(set(self.ami_label)))})",
                  "  -         undefined (see the warnings)"]
        return "\n".join(lines)


def compare_logs(a, b, *, layers=None, match: str = "seq_position", base: float = 2,
                 ami_label: str = "auto", expert_space: str = "logical",
                 max_ami_terms: int = 5_000_000, chunk_tokens: int = 1 << 20) -> LogComparison:
    r"""Compare two routings of the same tokens, layer by layer.

    Parameters
    ----------
    a, b : str, os.PathLike or RoutingLog
        The two routing logs (two runs, engines, checkpoints or seeds of the
        same model).  Both need per-token ``expert_ids``.
    layers : int or sequence of int, optional
        Layer ids to compare (default: those both logs have).
    match : {"seq_position", "token", "order"}, default "seq_position"
        How tokens are paired: by their ``(seq_id, position)`` columns; by
        ``(seq_id, position)`` with equal ``token_id`` required (pairs whose
        token ids differ are refused and counted in ``token_mismatch``); or
        in order (row i with row i; both logs must have the same number of
        tokens).  Tokens whose ``valid`` flag is False are skipped.
    base : float, default 2
        Logarithm base of the load divergences (2: bits).
    ami_label : {"auto", "top1", "set"}, default "auto"
        Label of a token for the AMI: its top-1 expert, or its chosen set;
        ``"auto"``: the top-1 when both logs define it, else the set.
    expert_space : {"logical", "as_logged"}, default "logical"
        For a log in physical expert ids with a ``physical_to_logical`` map:
        map the ids to logical experts first, or keep them.
    max_ami_terms : int, default 5_000_000
        Largest cost (terms summed, about 0.3 microseconds each) of the exact
        expected MI of the AMI; beyond it the large-sample expectation is
        used, with a warning (see Notes), or, when there are more label pairs
        than tokens, the AMI is NaN with a warning.
    chunk_tokens : int, default 2**20
        Tokens read per chunk.

    Returns
    -------
    LogComparison

    Raises
    ------
    ValueError
        When the logs share no layer, a layer has different numbers of experts,
        the key columns of `match` are missing, keys are duplicated, or no
        token matches.
    TypeError
        When `a` or `b` is not a path or a RoutingLog, or `layers` is not a
        layer id or a sequence of them.

    Notes
    -----
    With :math:`A_t, B_t` the sets of experts chosen for matched token
    :math:`t` (``-1``, a dropped choice, left out; a repeated id counted
    once) and :math:`m` matched tokens:

    * ``exact_set_match`` :math:`= \frac1m\sum_t [A_t = B_t]`: a token one
      routing dropped (``{3, 5}`` against ``{3}``) is a disagreement;
    * ``jaccard`` :math:`= \frac1m\sum_t |A_t\cap B_t| / |A_t\cup B_t|`, with
      :math:`0/0 = 1` (both dropped everything);
    * ``top1_agreement`` :math:`= \frac1m\sum_t [a_t = b_t]`, :math:`a_t` the
      first column when the manifest's ``topk_order`` is ``"descending"`` (or
      ``k = 1``), else the chosen expert of largest gate weight (or router
      logit); NaN with a warning when neither was logged;
    * ``kl`` :math:`=\sum_i p_i \log(p_i/q_i)` and ``js`` :math:`= \tfrac12
      KL(p\|m) + \tfrac12 KL(q\|m)`, :math:`m = (p+q)/2`, for :math:`p, q` the
      expert loads of the matched tokens normalised to sum to one, plug-in
      and without smoothing: ``kl`` is ``inf`` when :math:`q_i = 0 < p_i`;
    * ``ami`` :math:`= (I - E[I]) / (\tfrac12(H_A + H_B) - E[I])` over the
      labels of the matched tokens, :math:`E[I]` the exact expectation under
      random labellings with the same margins
      (:func:`infomoe.adjusted_mutual_information`); when that would cost
      more than `max_ami_terms` terms (about :math:`n \max(K_A, K_B)` for
      :math:`K_A, K_B` labels and :math:`n` tokens), the large-sample value
      :math:`E[I] \approx (K_A - 1)(K_B - 1) / (2n)` nats is used instead
      (the mean of :math:`\chi^2_{(K_A-1)(K_B-1)} / (2n)`, accurate when the
      label pairs are far fewer than the tokens), and ``warnings`` says so.

    The key columns and one layer's expert ids of each log are held in memory
    (a few bytes per token); other columns are not read.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, compare_logs
    >>> d = tempfile.mkdtemp()
    >>> ids = np.array([[0, 1], [2, 3], [1, 2], [0, 3]])           # 4 tokens, top-2 of 4
    >>> seq, pos = np.zeros(4, int), np.arange(4)
    >>> a = write_log(os.path.join(d, "a"), ids, num_experts=4, seq_id=seq, position=pos)
    >>> other = ids.copy(); other[3] = [0, 2]                       # the last token differs
    >>> b = write_log(os.path.join(d, "b"), other[::-1], num_experts=4,
    ...               seq_id=seq, position=pos[::-1])               # stored in reverse order
    >>> c = compare_logs(a, b)
    >>> float(c.exact_set_match[0]), float(c.jaccard[0])            # (3 + 1/3) / 4
    (0.75, 0.8333333333333334)
    >>> float(c.top1_agreement[0])
    1.0
    """
    b_ = _check_options(match, base, ami_label, expert_space, chunk_tokens, max_ami_terms)
    la, lb = _open(a, "a"), _open(b, "b")
    da = _LogData(la, "a", expert_space, chunk_tokens)
    db = da if lb is la else _LogData(lb, "b", expert_space, chunk_tokens)
    lids, warn = _check_layers(layers, [da, db], ["`a`", "`b`"])
    warns = [warn] if warn else []
    pr = _pair(_Side(da, np.arange(la.num_tokens), "`a`"),
               _Side(db, np.arange(lb.num_tokens), "`b`"), match)
    if pr.ia.shape[0] == 0:
        raise ValueError(f"no valid token of `a` matches one of `b` (match={match!r}: "
                         f"{pr.unmatched_a} and {pr.unmatched_b} valid tokens unmatched, "
                         f"{pr.token_mismatch} refused for different token ids).")
    if pr.token_mismatch:
        warns.append(f"{pr.token_mismatch} token pairs with equal (seq_id, position) have "
                     "different token_id and are not compared")
    res = [_layer_measures(da, db, lid, pr, base=b_, ami_label=ami_label,
                           max_ami_terms=max_ami_terms, loads=True) for lid in lids]
    da.release()
    db.release()
    measured, notes = _measure_warnings(lids, res)
    warns += measured
    _emit(warns)
    warns += notes

    def arr(key):
        return np.array([r[key] for r in res], dtype=np.float64)

    return LogComparison(
        layer_ids=np.array(lids, dtype=np.int64), num_matched=int(pr.ia.shape[0]),
        exact_set_match=arr("exact"), jaccard=arr("jaccard"), top1_agreement=arr("top1"),
        kl=arr("kl"), js=arr("js"), ami=arr("ami"), ami_label=tuple(r["ami_label"] for r in res),
        load_a=tuple(r["load_a"] for r in res), load_b=tuple(r["load_b"] for r in res),
        unmatched_a=pr.unmatched_a, unmatched_b=pr.unmatched_b, invalid_a=pr.invalid_a,
        invalid_b=pr.invalid_b, token_mismatch=pr.token_mismatch, match=match, base=b_,
        unit=unit_name(b_), a=la.path, b=lb.path, warnings=tuple(warns))


def _measure_warnings(lids, res) -> tuple:
    """``(warnings, notes)``: messages about NaN or infinite values (also issued as
    RuntimeWarnings), and notes on how a value was computed (kept in ``warnings`` only)."""
    out, notes = [], []
    groups: dict = {}
    for lid, r in zip(lids, res):
        if r.get("why_top1"):
            groups.setdefault(("top1_agreement is NaN", r["why_top1"]), []).append(lid)
        if r.get("why_ami") and r.get("why_ami") != r.get("why_top1"):
            groups.setdefault(("ami is NaN", r["why_ami"]), []).append(lid)
        elif r.get("why_ami"):
            groups.setdefault(("ami (top-1 labels) is NaN", r["why_ami"]), []).append(lid)
        if "kl" in r and math.isnan(r["kl"]):
            groups.setdefault(("kl and js are NaN", "a or b drops every choice of the matched "
                               "tokens (zero load)"), []).append(lid)
    for (what, why), ls in groups.items():
        out.append(f"{what} for layers {ls}: {why}")
    inf = [lid for lid, r in zip(lids, res) if "kl" in r and math.isinf(r["kl"])]
    if inf:
        out.append(f"kl is infinite for layers {inf}: b gives zero load to an expert that a uses "
                   "(no smoothing is applied; js stays finite)")
    approx = [lid for lid, r in zip(lids, res) if r.get("ami_note")]
    if approx:
        notes.append(f"ami of layers {approx} " + res[lids.index(approx[0])]["ami_note"])
    return out, notes


# --------------------------------------------------------------------------------------------
# many checkpoints


@dataclass(frozen=True, repr=False)
class SaturationCurve:
    """Agreement of each checkpoint's routing with a reference checkpoint (see :func:`router_saturation`).

    Attributes
    ----------
    steps : ndarray (S,) of int
        The checkpoints' steps, in the order compared.
    reference : int
        Index into `steps` of the reference checkpoint.
    layer_ids : ndarray (L,)
        The compared layers.
    num_matched : ndarray (S,) of int
        Tokens matched between each checkpoint and the reference.
    exact_set_match, jaccard, top1_agreement, js : ndarray (S,)
        Mean over layers of the per-layer values (see :func:`compare_logs`;
        ``js`` is the Jensen-Shannon divergence of the loads, in ``unit``).
    exact_set_match_layers, jaccard_layers, top1_agreement_layers, js_layers : ndarray (S, L)
        Per checkpoint and layer.
    step_source : str
        Where the steps came from: ``"step column"``, ``"argument"``,
        ``"manifest metadata"`` or ``"list position"``.
    match : str
        How tokens were paired.
    base : float
        Logarithm base of ``js``.
    unit : str
        Its unit.
    paths : tuple of str
        The logs (one per checkpoint, or one log).
    warnings : tuple of str
    """

    steps: np.ndarray
    reference: int
    layer_ids: np.ndarray
    num_matched: np.ndarray
    exact_set_match: np.ndarray
    jaccard: np.ndarray
    top1_agreement: np.ndarray
    js: np.ndarray
    exact_set_match_layers: np.ndarray
    jaccard_layers: np.ndarray
    top1_agreement_layers: np.ndarray
    js_layers: np.ndarray
    step_source: str
    match: str
    base: float
    unit: str
    paths: tuple
    warnings: tuple = ()

    @property
    def reference_step(self) -> int:
        """The step of the reference checkpoint."""
        return int(self.steps[self.reference])

    def __repr__(self) -> str:
        return dataclass_repr(self, ["steps", "reference", "layer_ids", "exact_set_match",
                                     "jaccard", "top1_agreement", "step_source"]
                              )[:-1] + f", warnings={len(self.warnings)})"

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as null)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["reference_step"] = self.reference_step
        return json_ready(d)

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The curve as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def format_table(self) -> str:
        """A fixed-width text table, one row per checkpoint (means over layers), then the warnings."""
        head = f"{'step':>10} {'matched':>8} {'exact':>6} {'jaccard':>7} {'top1':>6} {'JS':>7}"
        lines = [f"router saturation: agreement with the checkpoint at step {self.reference_step} "
                 f"(mean over {len(self.layer_ids)} layers; JS of the loads in {self.unit})",
                 head, "-" * len(head)]
        for s in range(len(self.steps)):
            mark = "  <- reference" if s == self.reference else ""
            lines.append(" ".join([
                _cell(int(self.steps[s]), 10, "d"), _cell(int(self.num_matched[s]), 8, "d"),
                _cell(float(self.exact_set_match[s]), 6, ".3f"),
                _cell(float(self.jaccard[s]), 7, ".3f"),
                _cell(float(self.top1_agreement[s]), 6, ".3f"),
                _cell(float(self.js[s]), 7, ".4f")]) + mark)
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _single_step(d: _LogData) -> Optional[int]:
    if d.has("step"):
        u = np.unique(d.column("step"))
        if u.size > 1:
            raise ValueError(f"{d.name} holds {u.size} steps in its `step` column; pass one log "
                             "per checkpoint, or a single log holding every checkpoint.")
        return int(u[0])
    v = d.log.manifest.metadata.get("step") if isinstance(d.log.manifest.metadata, dict) else None
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    return None


def _layer_mean(m: np.ndarray) -> np.ndarray:
    out = np.full(m.shape[0], np.nan)
    ok = ~np.isnan(m).all(axis=1)
    out[ok] = np.nanmean(m[ok], axis=1)
    return out


def router_saturation(logs, *, reference: int = -1, steps=None, layers=None,
                      match: str = "auto", base: float = 2,
                      expert_space: str = "logical",
                      chunk_tokens: int = 1 << 20) -> SaturationCurve:
    r"""How each checkpoint's routing agrees with a reference checkpoint's: router saturation.

    Parameters
    ----------
    logs : sequence of (str, os.PathLike or RoutingLog), or one log
        One routing log per checkpoint, each routing the same tokens (in the
        order given: ``router_saturation([ckpt_100, ckpt_200, final])``); or
        one log whose ``step`` column holds several checkpoints' routing of
        the same tokens (checkpoints are then ordered by step).
    reference : int, default -1
        Index of the reference checkpoint in that order (default the last).
    steps : sequence of int, optional
        The checkpoints' steps, for a sequence of logs.  Default: each log's
        single ``step`` value, else its manifest's ``metadata["step"]``, else
        (when not every log has one) the position in the list, 0, 1, ...
    layers : int or sequence of int, optional
        Layer ids (default those every log has).
    match : {"auto", "seq_position", "token", "order"}, default "auto"
        How tokens are paired (see :func:`compare_logs`); ``"auto"``: by
        ``(seq_id, position)`` when every log has those columns, else in
        order (noted in ``warnings``).
    base : float, default 2
        Logarithm base of ``js``.
    expert_space : {"logical", "as_logged"}, default "logical"
        As in :func:`compare_logs`.
    chunk_tokens : int, default 2**20
        Tokens read per chunk.

    Returns
    -------
    SaturationCurve
        Per checkpoint :math:`s`, the exact-set match, Jaccard, top-1
        agreement and load JS of :func:`compare_logs` between checkpoint
        :math:`s` and the reference, per layer and averaged over layers (the
        reference itself scores 1, 1, 1, 0).

    Raises
    ------
    ValueError
        Fewer than two checkpoints, `reference` or `steps` out of range, or
        any of the errors of :func:`compare_logs`.
    TypeError
        When `logs` is neither a log nor a sequence of logs.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, router_saturation
    >>> d, rng = tempfile.mkdtemp(), np.random.default_rng(0)
    >>> final = rng.integers(0, 8, (200, 1))
    >>> paths = []
    >>> for i, changed in enumerate([100, 50, 0]):                 # fewer tokens differ each time
    ...     ids = final.copy(); ids[:changed] = (ids[:changed] + 1) % 8
    ...     _ = write_log(os.path.join(d, f"ckpt{i}"), ids, num_experts=8)
    ...     paths.append(os.path.join(d, f"ckpt{i}"))
    >>> curve = router_saturation(paths, match="order")
    >>> curve.steps.tolist(), curve.exact_set_match.tolist()
    ([0, 1, 2], [0.5, 0.75, 1.0])
    """
    auto = match == "auto"
    notes: list = []  # how something was done: kept in `warnings`, not issued
    b_ = _check_options("seq_position" if auto else match, base, None, expert_space, chunk_tokens)
    warns: list = []
    if isinstance(logs, (str, bytes, os.PathLike)) or not isinstance(logs, Sequence):
        from infomoe.logs._reader import RoutingLog

        if not isinstance(logs, (str, os.PathLike, RoutingLog)):
            raise TypeError("`logs` must be a sequence of routing logs (paths or RoutingLog), or "
                            f"one log with a `step` column; got {type(logs).__name__}.")
        logs = [logs]
    if len(logs) == 0:
        raise ValueError("`logs` is empty; router_saturation needs at least two checkpoints.")
    opened = [_open(x, f"logs[{i}]") for i, x in enumerate(logs)]
    datas = [_LogData(lg, f"`logs[{i}]`", expert_space, chunk_tokens)
             for i, lg in enumerate(opened)]
    if len(datas) == 1:
        d = datas[0]
        if steps is not None:
            raise ValueError("`steps` is for a sequence of logs; a single log's steps are its "
                             "`step` column.")
        if not d.has("step"):
            raise ValueError("`logs` is a single log without a `step` column; pass one log per "
                             "checkpoint (at least two).")
        col = d.column("step")
        step_vals = np.unique(col)
        if step_vals.size < 2:
            raise ValueError(f"the `step` column of {d.name} holds the single step "
                             f"{int(step_vals[0])}; router_saturation needs at least two "
                             "checkpoints.")
        sides = [_Side(d, np.flatnonzero(col == s), f"step {int(s)} of `logs[0]`")
                 for s in step_vals]
        step_arr, source = step_vals.astype(np.int64), "step column"
    else:
        sides = [_Side(dd, np.arange(dd.log.num_tokens), dd.name) for dd in datas]
        if steps is not None:
            if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or any(
                    isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in steps):
                raise TypeError(f"`steps` must be a sequence of integers, got {steps!r}.")
            if len(steps) != len(datas):
                raise ValueError(f"`steps` has {len(steps)} entries for {len(datas)} logs.")
            step_arr, source = np.array([int(v) for v in steps], np.int64), "argument"
        else:
            found = [_single_step(dd) for dd in datas]
            if all(v is not None for v in found):
                srcs = {"step column" if dd.has("step") else "manifest metadata" for dd in datas}
                step_arr, source = np.array(found, np.int64), " and ".join(sorted(srcs))
            else:
                if any(v is not None for v in found):
                    warns.append("only some logs record their step; the steps are the positions "
                                 "in the list")
                step_arr, source = np.arange(len(datas), dtype=np.int64), "list position"
    S = len(sides)
    if isinstance(reference, bool) or not isinstance(reference, numbers.Integral):
        raise TypeError(f"`reference` must be an integer index, got {reference!r}.")
    if not -S <= reference < S:
        raise ValueError(f"`reference` must index one of the {S} checkpoints, got {reference}.")
    ref = int(reference) % S
    lids, warn = _check_layers(layers, datas, [dd.name for dd in datas])
    if warn:
        warns.append(warn)
    if auto:
        keyed = all(dd.has("seq_id") and dd.has("position") for dd in datas)
        match = "seq_position" if keyed else "order"
        if not keyed:
            notes.append("tokens are paired in order (match='auto': not every log has seq_id "
                         "and position columns)")
    pairings = []
    for s, side in enumerate(sides):
        pr = _pair(side, sides[ref], match)
        if pr.ia.shape[0] == 0:
            raise ValueError(f"no valid token of {side.label} matches one of the reference "
                             f"{sides[ref].label} (match={match!r}).")
        pairings.append(pr)
    shape = (S, len(lids))
    ex, ja, t1, js = (np.full(shape, np.nan) for _ in range(4))
    why: dict = {}
    for j, lid in enumerate(lids):
        for s, side in enumerate(sides):
            r = _layer_measures(side.data, sides[ref].data, lid, pairings[s], base=b_,
                                ami_label=None, max_ami_terms=1, loads=True)
            ex[s, j], ja[s, j], t1[s, j], js[s, j] = r["exact"], r["jaccard"], r["top1"], r["js"]
            if r["why_top1"]:
                why.setdefault(r["why_top1"], set()).add(lid)
            if side.data is not sides[ref].data:
                side.data.release()
        sides[ref].data.release()
    for msg, ls in why.items():
        warns.append(f"top1_agreement is NaN for layers {sorted(ls)}: {msg}")
    if np.isnan(js).any():
        warns.append("js is NaN where a checkpoint or the reference drops every choice of the "
                     "matched tokens (zero load)")
    _emit(warns)
    warns += notes
    return SaturationCurve(
        steps=step_arr, reference=ref, layer_ids=np.array(lids, np.int64),
        num_matched=np.array([p.ia.shape[0] for p in pairings], np.int64),
        exact_set_match=_layer_mean(ex), jaccard=_layer_mean(ja),
        top1_agreement=_layer_mean(t1), js=_layer_mean(js), exact_set_match_layers=ex,
        jaccard_layers=ja, top1_agreement_layers=t1, js_layers=js, step_source=source,
        match=match, base=b_, unit=unit_name(b_), paths=tuple(dd.log.path for dd in datas),
        warnings=tuple(warns))
