r"""The routing-log report: load balance, trainer health and routing information per layer.

:func:`report_from_tables` turns merged count tables (:mod:`infomoe.logs._tables`)
into a :class:`LogReport`; it never reads the log.  Every information value
carries an interval (a jackknife over groups of sequences) and, for the mutual
informations, a permutation null and a significance mark
(:mod:`infomoe.logs._uncertainty`).
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from infomoe._repr import json_ready, short_value
from infomoe._validate import check_base, check_choice, log_base, unit_name
from infomoe.logs._manifest import Manifest
from infomoe.logs._tables import CountSpec, LogTables

__all__ = ["LogReport", "report_from_tables", "DROP_WARNING_FRACTION", "LOAD_COLUMNS", "INFO_COLUMNS",
           "TABLE_COLUMNS", "MI_ESTIMATORS", "MI_NAMES"]

#: A layer whose dropped fraction exceeds this is named in a warning that opens
#: :meth:`LogReport.format_table` (and the first of ``LogReport.warnings``).
DROP_WARNING_FRACTION = 0.10

#: Mutual-information estimators of the report: ``"shuffle"`` (plug-in minus the mean of
#: its permutation null, the default) and every estimator of :data:`infomoe.ESTIMATORS`.
MI_ESTIMATORS = ("shuffle", "plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger",
                 "james_stein")

#: The mutual informations of the report (attribute names), each with an interval and a null.
MI_NAMES = ("mi_token", "mi_token_set", "mi_position", "mi_label", "mi_transition")

#: Columns of the load-and-health block of :meth:`LogReport.format_table`: (header, width,
#: decimals or None for integers, legend).
LOAD_COLUMNS = (
    ("layer", 5, None, "layer id in the log"),
    ("E", 4, None, "number of experts (in the analysed id space)"),
    ("k", 2, None, "experts chosen per token (top-k)"),
    ("drop", 6, 3, "fraction of the tokens x k choices dropped (recorded as expert -1: over "
                   "capacity, or padding); 0 to 1"),
    ("tokdrop", 7, 3, "fraction of tokens with at least one dropped choice"),
    ("CV", 6, 3, "coefficient of variation of the expert load, std / mean; 0 = balanced"),
    ("MaxVio", 6, 2, "(max load - mean load) / mean load; 0 = balanced, E - 1 = all on one expert"),
    ("dead", 5, 3, "fraction of experts that received no token"),
    ("over", 5, 3, "fraction of experts loaded above capacity_factor x the mean load"),
    ("H_norm", 6, 3, "entropy of the load distribution / log E; 1 = balanced, 0 = one expert"),
    ("switch", 6, 3, "Switch load-balancing value E * sum_i f_i P_i (f: load fractions, P: mean "
                     "router probabilities, or f without logits); 1 = balanced, E = collapse"),
    ("rank", 5, 3, "rank balancedness, mean / max load over expert-parallel ranks (needs expert_placement)"),
)

#: Columns of the information block: (header, attribute, legend); each cell is
#: ``value±half-width`` of the interval, then ``*`` (significant) or ``ns`` (not
#: distinguishable from the permutation null) for mutual informations.
INFO_COLUMNS = (
    ("I(X;T)", "gate_information", "soft-gate routing information H(mean p) - mean H(p) of the router's "
                                   "distribution p(e | x) over the logged tokens, in {unit}"),
    ("I(tok;E)", "mi_token", "mutual information I(token id; expert), in {unit}"),
    ("I(tok;set)", "mi_token_set", "mutual information I(token id; chosen top-k set), in {unit}"),
    ("I(pos;E)", "mi_position", "mutual information I(position bucket; expert), in {unit}"),
    ("I(lab;E)", "mi_label", "mutual information I(label; expert), in {unit}"),
    ("I(E;next)", "mi_transition", "mutual information I(expert here; expert at the next layer listed), "
                                   "in {unit}"),
    ("H(set)", "set_entropy", "entropy of the chosen set of k experts, in {unit}"),
)

#: Every column of :meth:`LogReport.format_table`: (header, legend).
TABLE_COLUMNS = tuple((h, leg) for h, _, _, leg in LOAD_COLUMNS) + tuple((h, leg) for h, _, leg in INFO_COLUMNS)

_INFO_WIDTH = 16
#: Most jackknife groups for the NSB set entropies (6-7 ms per table and replicate); more are merged.
_NSB_GROUPS = 10
#: Replicates whose sparse cell counts are held at once.
_REPLICATE_BATCH = 25


@dataclass(frozen=True, eq=False)
class LogReport:
    r"""Per-layer load balance, trainer health and routing information of a routing log.

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
    token_drop_rate : ndarray (L,)
        Fraction of tokens with at least one choice recorded as ``-1``.
    load_cv : ndarray (L,)
        Coefficient of variation of the load, ``std / mean`` (0 = balanced).
    max_over_mean : ndarray (L,)
        ``max / mean`` of the load (1 = balanced).
    max_violation : ndarray (L,)
        MaxVio, ``(max - mean) / mean`` of the load (0 = balanced).
    dead_fraction : ndarray (L,)
        Fraction of experts with zero load.
    oversubscribed_fraction : ndarray (L,)
        Fraction of experts whose load exceeds ``capacity_factor`` times the
        mean load (the log taken as one batch).
    overflow_fraction : ndarray (L,)
        Fraction of the routed pairs above that capacity: what a capacity
        limit would drop were the whole log one batch.
    capacity_factor : float
    rank_balance : ndarray (L,) or None
        Mean over max of the load per expert-parallel rank (1 = balanced);
        None without an ``expert_placement``.
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
    coactivation : tuple of ndarray (E, E)
        Tokens that chose both experts ``i`` and ``j`` in one layer.
    cooccurrence : tuple of ndarray (E_l, E_{l+1})
        (expert at layer l, expert at the next analysed layer) pairs.
    router_entropy : ndarray (L,) or None
        Mean per-token entropy of the soft gate, ``H(E|X)``; None without logits.
    gate_information : ndarray (L,) or None
        Soft-gate routing information ``I(X;T) = H(mean p) - mean H(p)``.
    score_function : str
        ``"softmax"`` or ``"sigmoid"``: how the soft gate was formed.
    mi_token, mi_token_set, mi_position : ndarray (L,) or None
        ``I(token id; E)``, ``I(token id; top-k set)`` and ``I(position bucket; E)``.
    mi_label : ndarray (L,) or None
        ``I(label; E)`` when labels exist.
    mi_transition : ndarray (L - 1,)
        ``I(E_l; E_{l+1})`` between consecutive analysed layers.
    set_entropy : ndarray (L,)
        Entropy of the chosen top-k set (NaN where ``C(E, k)`` exceeds
        ``max_set_alphabet``).
    set_alphabet : tuple of int
        ``C(E, k)`` per layer.
    intervals : dict
        Per information attribute, an ``(n, 2)`` array of interval bounds at
        level ``1 - alpha`` (NaN where not computed).
    mi_bias : dict
        Per MI name, the plug-in value expected under independence: the mean
        of its permutation null (or the chi-square mean ``df / 2N``); values
        of that size are noise.
    null_sd : dict
        Per MI name, the standard deviation of the plug-in null.
    null_method : dict
        Per MI name, a tuple of ``"permutation"``, ``"chi-square"`` or
        ``"exact"`` (a constant margin) per entry.
    pvalues : dict
        Per MI name, Holm-adjusted p-values (over every MI of the report).
    significant : dict
        Per MI name, a bool array: adjusted p-value below ``alpha``.
    estimator, entropy_estimator : str
        Estimators of the mutual informations and of the set entropies.
    intervals_computed : bool
        Whether intervals were asked for.
    permutations, groups : int
        Permutations of the null, and non-empty resampling groups of the jackknife.
    resampling_unit : str
        What the jackknife deletes (groups of sequences, or of blocks of tokens).
    alpha : float
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
    token_drop_rate: np.ndarray
    load_cv: np.ndarray
    max_over_mean: np.ndarray
    max_violation: np.ndarray
    dead_fraction: np.ndarray
    oversubscribed_fraction: np.ndarray
    overflow_fraction: np.ndarray
    capacity_factor: float
    rank_balance: Optional[np.ndarray]
    load_entropy: np.ndarray
    normalized_entropy: np.ndarray
    switch_balance: np.ndarray
    switch_source: tuple
    coactivation: tuple
    cooccurrence: tuple
    router_entropy: Optional[np.ndarray]
    gate_information: Optional[np.ndarray]
    score_function: str
    mi_token: Optional[np.ndarray]
    mi_token_set: Optional[np.ndarray]
    mi_position: Optional[np.ndarray]
    mi_label: Optional[np.ndarray]
    mi_transition: np.ndarray
    set_entropy: np.ndarray
    set_alphabet: tuple
    intervals: dict
    mi_bias: dict
    null_sd: dict
    null_method: dict
    pvalues: dict
    significant: dict
    estimator: str
    entropy_estimator: str
    intervals_computed: bool
    permutations: int
    groups: int
    resampling_unit: str
    alpha: float
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
        def entry(name, i):
            arr = getattr(self, name)
            if arr is None:
                return None
            out = {"value": arr[i]}
            if name in self.intervals:
                out["interval"] = self.intervals[name][i]
            if name in self.pvalues:
                out.update(null_mean=self.mi_bias[name][i], null_sd=self.null_sd[name][i],
                           null_method=self.null_method[name][i], pvalue_holm=self.pvalues[name][i],
                           significant=self.significant[name][i])
            return out

        per_layer = []
        for i, lid in enumerate(self.layer_ids):
            row = {"layer_id": int(lid), "num_experts": int(self.num_experts[i]),
                   "top_k": int(self.top_k[i]), "load": self.load[i],
                   "record_pairs": self.record_pairs[i],
                   "dropped_fraction": self.dropped_fraction[i], "token_drop_rate": self.token_drop_rate[i],
                   "load_cv": self.load_cv[i], "max_over_mean": self.max_over_mean[i],
                   "max_violation": self.max_violation[i], "dead_fraction": self.dead_fraction[i],
                   "oversubscribed_fraction": self.oversubscribed_fraction[i],
                   "overflow_fraction": self.overflow_fraction[i],
                   "rank_balance": None if self.rank_balance is None else self.rank_balance[i],
                   "load_entropy": self.load_entropy[i], "normalized_entropy": self.normalized_entropy[i],
                   "switch_balance": self.switch_balance[i], "switch_source": self.switch_source[i],
                   "set_alphabet": int(self.set_alphabet[i]), "coactivation": self.coactivation[i],
                   "router_entropy": None if self.router_entropy is None else self.router_entropy[i]}
            for name in ("gate_information", "mi_token", "mi_token_set", "mi_position", "mi_label",
                         "set_entropy"):
                row[name] = entry(name, i)
            per_layer.append(row)
        transitions = [{"from_layer": int(self.layer_ids[i]), "to_layer": int(self.layer_ids[i + 1]),
                        "mi": entry("mi_transition", i), "cooccurrence": self.cooccurrence[i]}
                       for i in range(len(self.mi_transition))]
        return json_ready({
            "format": "infomoe.log-report", "version": 2,
            "source": self.source, "model_id": self.model_id, "num_tokens": self.num_tokens,
            "unit": self.unit, "base": self.base, "estimator": self.estimator,
            "entropy_estimator": self.entropy_estimator, "score_function": self.score_function,
            "uncertainty": {"intervals": "delete-one-group jackknife" if self.intervals_computed else None,
                            "permutations": self.permutations,
                            "groups": self.groups, "resampling_unit": self.resampling_unit,
                            "alpha": self.alpha, "interval_level": 1.0 - self.alpha,
                            "multiple_testing": "Holm over every mutual information of the report"},
            "capacity_factor": self.capacity_factor,
            "expert_space": self.expert_space, "token_buckets": self.token_buckets,
            "token_ids_folded": self.token_ids_folded, "label_buckets": self.label_buckets,
            "labels_folded": self.labels_folded, "position_edges": list(self.position_edges),
            "counting": "one count per (token, chosen expert) pair; -1 and invalid tokens skipped",
            "layers": per_layer, "transitions": transitions, "warnings": list(self.warnings)})

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def _load_row(self, i: int) -> tuple:
        """Values of layer `i` in the order of :data:`LOAD_COLUMNS` (None: not available)."""
        return (int(self.layer_ids[i]), int(self.num_experts[i]), int(self.top_k[i]),
                float(self.dropped_fraction[i]), float(self.token_drop_rate[i]), float(self.load_cv[i]),
                float(self.max_violation[i]), float(self.dead_fraction[i]),
                float(self.oversubscribed_fraction[i]), float(self.normalized_entropy[i]),
                float(self.switch_balance[i]), None if self.rank_balance is None else float(self.rank_balance[i]))

    def info_cell(self, name: str, i: int) -> str:
        """``value±half-width`` of entry `i` of an information attribute, marked ``*`` / ``ns``.

        Returns ``"-"`` where the value is not available or undefined.
        """
        arr = getattr(self, name)
        if arr is None or i >= len(arr) or not math.isfinite(float(arr[i])):
            return "-"
        v = float(arr[i])
        text = f"{v:.3f}"
        iv = self.intervals.get(name)
        if iv is not None and np.isfinite(iv[i]).all():
            text += f"±{(iv[i][1] - iv[i][0]) / 2:.3f}"
        if name in self.significant:
            text += "*" if self.significant[name][i] else " ns"
        return text

    def format_table(self) -> str:
        """Two fixed-width text tables, load and health then information, with warnings and a legend.

        When a layer drops more than :data:`DROP_WARNING_FRACTION` of its
        choices, the text begins with a warning line naming those layers.

        Returns
        -------
        str
            The drop warning (if any), a title, the load-and-health table,
            the information table (``value±half-width`` of the interval,
            ``*`` above the permutation null or ``ns``), the other warnings,
            and one legend line per column.

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

        drop = _drop_warning(self.layer_ids, self.dropped_fraction)
        lines = [] if drop is None else [f"warning: {drop}"]
        lines.append(f"routing log report: {self.num_tokens} tokens, information in {self.unit} "
                     f"(estimator {self.estimator}, set entropy {self.entropy_estimator}; "
                     f"{100 * (1 - self.alpha):g}% intervals from a jackknife over "
                     f"{self.groups} groups of {self.resampling_unit}; nulls from {self.permutations} "
                     f"permutations; * = above the null at family-wise {self.alpha:g} (Holm), ns = not)")
        head = " ".join(f"{name:>{width}}" for name, width, _, _ in LOAD_COLUMNS)
        lines += ["load and health", head, "-" * len(head)]
        for i in range(len(self.layer_ids)):
            lines.append(" ".join(cell(v, width, decimals)
                                  for v, (_, width, decimals, _) in zip(self._load_row(i), LOAD_COLUMNS)))
        cols = [(h, a) for h, a, _ in INFO_COLUMNS if getattr(self, a) is not None
                and np.isfinite(np.asarray(getattr(self, a), dtype=float)).any()]
        head = f"{'layer':>5} " + " ".join(f"{h:>{_INFO_WIDTH}}" for h, _ in cols)
        lines += ["information", head, "-" * len(head)]
        for i, lid in enumerate(self.layer_ids):
            lines.append(f"{int(lid):>5} " + " ".join(f"{self.info_cell(a, i):>{_INFO_WIDTH}}" for _, a in cols))
        for w in self.warnings:
            if w != drop:  # already the first line
                lines.append(f"warning: {w}")
        lines.append("columns:")
        key = max(len(name) for name, _ in TABLE_COLUMNS)
        shown = {h for h, _ in cols} | {h for h, _, _, _ in LOAD_COLUMNS}
        for name, legend in TABLE_COLUMNS:
            if name in shown:
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


# ============================================================================= information with uncertainty
def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1.0 - alpha / 2.0))


def _replicate_batches(weights: np.ndarray):
    for a in range(0, weights.shape[0], _REPLICATE_BATCH):
        yield weights[a:a + _REPLICATE_BATCH]


def _mi_with_uncertainty(name, dense, grouped, labels, opts, warns):
    """Estimate, interval, null and raw p-value of each table of one MI quantity."""
    from scipy.stats import norm

    from infomoe._entropy import UndersampledWarning
    from infomoe._information import _WARN_CELLS_PER_SAMPLE, _WARN_MIN_CELLS, mutual_information_table
    from infomoe.logs._uncertainty import jackknife_se, permutation_null, plugin_mi_sparse, replicate_tables

    n = len(grouped)
    if all(t is None for t in dense) and all(g is None for g in grouped):
        return None
    est, base, P, W = opts["estimator"], opts["base"], opts["permutations"], opts["weights"]
    out = {k: np.full(n, np.nan) for k in ("value", "null_mean", "null_sd", "p")}
    out["interval"] = np.full((n, 2), np.nan)
    out["method"] = ["-"] * n
    undersampled = []
    for i in range(n):
        t, gt = dense[i], grouped[i]
        if t is None and gt is None:
            continue
        if t is not None:
            r, c = np.nonzero(t)
            cnt = t[r, c]
        else:
            r, c, cnt = gt.total_sparse()
        N = int(cnt.sum())
        if N == 0:
            warns.append(f"{name}: table for {labels[i]} is empty (no counted pairs); value is NaN")
            continue
        plug = float(plugin_mi_sparse(r, c, cnt, base))
        if P:
            mean, sd, how = permutation_null(r, c, cnt, permutations=P, seed=opts["seed"] + 7919 * i, base=base)
            out["null_mean"][i], out["null_sd"][i], out["method"][i] = mean, sd, how
            if sd > 0:
                out["p"][i] = float(norm.sf((plug - mean) / sd))
            else:
                out["p"][i] = 1.0 if how == "exact" or plug <= mean + 1e-12 else 0.0
        else:
            kx, ky = np.unique(r).size, np.unique(c).size
            out["null_mean"][i] = (kx - 1) * (ky - 1) / (2.0 * N) / log_base(base)
            out["method"][i] = "chi-square"
        shift = out["null_mean"][i] if est == "shuffle" else 0.0
        if est in ("shuffle", "plugin"):
            out["value"][i] = plug - shift
            table = None
            cells = int(np.prod(t.shape if t is not None else gt.shape[1:]))
            if cells >= _WARN_MIN_CELLS and cells > _WARN_CELLS_PER_SAMPLE * N:
                undersampled.append(labels[i])
        else:
            table = t if t is not None else _densify(gt, name, labels[i], warns)
            if table is None:
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UndersampledWarning)
                out["value"][i] = float(mutual_information_table(table, estimator=est, base=base).value)
            for w in caught:
                if issubclass(w.category, UndersampledWarning):
                    undersampled.append(labels[i])
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if W is not None and gt is not None:
            reps = []
            for wb in _replicate_batches(W):
                rr, cc, counts = replicate_tables(gt, wb)
                if table is None:
                    reps.append(plugin_mi_sparse(rr, cc, counts, base) - shift)
                else:
                    dense_b = np.zeros((counts.shape[0],) + table.shape, np.int64)
                    dense_b[:, rr, cc] = np.rint(counts).astype(np.int64)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        reps.append(np.atleast_1d(mutual_information_table(dense_b, estimator=est,
                                                                            base=base).value))
            half = _z(opts["alpha"]) * jackknife_se(np.concatenate(reps))
            out["interval"][i] = (out["value"][i] - half, out["value"][i] + half)
    if undersampled and est == "shuffle":
        warns.append(f"{name}: the tables of {len(undersampled)} of {n} entries have far more cells than counted "
                     "pairs; the shuffle-corrected values there are conservative (the correction subtracts the "
                     "bias at independence, larger than the bias under dependence, so they err low)")
    elif undersampled:
        warns.append(f"{name}: the tables of {len(undersampled)} of {n} entries have far more cells than counted "
                     f"pairs, so {est} values there are dominated by bias (compare with mi_bias, the permutation "
                     "null; the default estimator 'shuffle' subtracts it)")
    return out


def _densify(gt, name, label, warns):
    _, R, C = gt.shape
    if R * C > 1 << 24:
        warns.append(f"{name}: the {R} x {C} table of {label} is too large for a dense estimator; "
                     "value is NaN (use estimator='shuffle' or 'plugin', which work on the sparse table)")
        return None
    return gt.total()


def _set_entropies(tables, spec, opts, warns, names):
    from infomoe._entropy import entropy
    from infomoe.logs._uncertainty import jackknife_se, jackknife_weights, replicate_tables

    L = len(spec.layers)
    est = opts["entropy_estimator"]
    values, interval = np.full(L, np.nan), np.full((L, 2), np.nan)
    alphabets = tuple(spec.set_alphabet(i) for i in range(L))
    W = opts["weights"]
    for i, c in enumerate(tables.sets):
        s = spec.layers[i]
        if c is None:
            warns.append(f"{names[i]}: C({s.num_experts}, {s.top_k}) = {alphabets[i]} top-k sets exceed "
                         f"max_set_alphabet={spec.max_set_alphabet}; set entropy not computed")
            continue
        if c.sum() == 0:
            warns.append(f"{names[i]}: no complete top-k sets; set entropy is NaN")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values[i] = float(entropy(c, estimator=est, k=alphabets[i], base=opts["base"]).value)
            gt = tables.grouped_sets[i]
            if W is None or gt is None:
                continue
            Wi = jackknife_weights(opts["group_tokens"], _NSB_GROUPS) if est == "nsb" else W
            reps = []
            for wb in _replicate_batches(Wi):
                _, cc, counts = replicate_tables(gt, wb)
                for row in np.rint(counts).astype(np.int64):
                    full = np.zeros(alphabets[i], np.int64)
                    full[cc] = row
                    reps.append(float(entropy(full, estimator=est, k=alphabets[i], base=opts["base"]).value))
        half = _z(opts["alpha"]) * jackknife_se(np.array(reps))
        interval[i] = (values[i] - half, values[i] + half)
    return values, interval, alphabets


def _gate_information(tables, opts):
    """Soft-gate I(X;T) per layer and its interval, from the per-group gate sums."""
    from scipy.special import xlogy

    from infomoe.logs._uncertainty import jackknife_se

    L = len(tables.load)
    if not (tables.logit_tokens.sum(axis=1) > 0).any():
        return None, None, None
    lb = log_base(opts["base"])
    info, cond = np.full(L, np.nan), np.full(L, np.nan)
    interval = np.full((L, 2), np.nan)
    W = opts["weights"]

    def value(ps, ent, n):
        pbar = ps / n[..., None]
        return (-xlogy(pbar, pbar).sum(axis=-1) - ent / n) / lb, ent / n / lb

    for i in range(L):
        n = tables.logit_tokens[i]
        if n.sum() == 0 or tables.prob_sum[i] is None:
            continue
        ps, ent = tables.prob_sum[i], tables.router_entropy_sum[i]
        v, h = value(ps.sum(axis=0), ent.sum(), np.asarray(float(n.sum())))
        info[i], cond[i] = max(float(v), 0.0), float(h)
        if W is not None:
            reps, _ = value(W @ ps, W @ ent, W @ n.astype(np.float64))
            half = _z(opts["alpha"]) * jackknife_se(reps)
            interval[i] = (info[i] - half, info[i] + half)
    return info, cond, interval


def _placement(expert_placement, spec):
    """Per layer, the rank of each expert (or None), checked."""
    if expert_placement is None:
        return None
    out = []
    for s in spec.layers:
        E = s.num_experts
        p = expert_placement
        if isinstance(p, dict):
            if s.layer_id not in p:
                raise ValueError(f"`expert_placement` has no entry for layer {s.layer_id}.")
            p = p[s.layer_id]
        if isinstance(p, numbers.Integral) and not isinstance(p, bool):
            if not 1 <= int(p) <= E:
                raise ValueError(f"`expert_placement` as a number of ranks must be in [1, {E}], got {p}.")
            out.append((np.arange(E) * int(p)) // E)
            continue
        a = np.asarray(p)
        if a.shape != (E,) or a.dtype.kind not in "iu" or (a.size and a.min() < 0):
            raise ValueError(f"`expert_placement` for layer {s.layer_id} must be a number of ranks or an "
                             f"array of {E} non-negative rank ids, got shape {a.shape} dtype {a.dtype}.")
        out.append(a.astype(np.int64))
    return out


def _check_options(estimator, base, intervals, permutations, alpha, seed, capacity_factor):
    from infomoe._validate import check_positive_int

    check_choice(estimator, "estimator", MI_ESTIMATORS)
    b = check_base(base)
    if not isinstance(intervals, (bool, np.bool_)):
        raise TypeError(f"`intervals` must be True or False, got {type(intervals).__name__}.")
    permutations = check_positive_int(permutations, "permutations", minimum=0)
    if permutations == 1:
        raise ValueError("`permutations` must be 0 (no null) or at least 2, got 1.")
    if estimator == "shuffle" and permutations == 0:
        raise ValueError("estimator='shuffle' subtracts the permutation null: `permutations` must be at "
                         "least 2 (or choose another estimator).")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < float(alpha) < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1), got {alpha!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an integer, got {type(seed).__name__}.")
    if isinstance(capacity_factor, bool) or not isinstance(capacity_factor, numbers.Real) \
            or not math.isfinite(float(capacity_factor)) or float(capacity_factor) <= 0:
        raise ValueError(f"`capacity_factor` must be a positive finite number, got {capacity_factor!r}.")
    return b, bool(intervals), permutations, float(alpha), int(seed), float(capacity_factor)


def report_from_tables(tables: Optional[LogTables], spec: CountSpec, *, estimator: str = "shuffle",
                       base: float = 2, manifest: Optional[Manifest] = None,
                       expert_space: str = "logical", intervals: bool = True, permutations: int = 50,
                       alpha: float = 0.05, seed: int = 0, capacity_factor: float = 1.25,
                       expert_placement=None, check_only: bool = False) -> Optional[LogReport]:
    r"""Turn merged :class:`LogTables` into a :class:`LogReport`.

    Parameters
    ----------
    tables : LogTables
        Tables of the whole log (the sum of :func:`count_shard` results).
    spec : CountSpec
        The spec the tables were counted with.
    estimator : str, default "shuffle"
        Estimator of the mutual informations (:data:`MI_ESTIMATORS`).
        ``"shuffle"`` is the plug-in value minus the mean of its permutation
        null; the set entropies then use NSB.  Any other choice is used for
        both.  Load measures are descriptive (plug-in).
    base : float, default 2
        Logarithm base (2: bits).
    manifest : Manifest, optional
        For the source, model id, score function and columns.
    expert_space : str
        Recorded in the report.
    intervals : bool, default True
        Compute intervals (a delete-one-group jackknife over the resampling
        groups of ``spec.groups``).
    permutations : int, default 50
        Shuffles of the expert ids per table for the null (0: none).
    alpha : float, default 0.05
        Intervals are at level ``1 - alpha``; significance marks are at
        family-wise level ``alpha`` (Holm over every MI in the report).
    seed : int, default 0
    capacity_factor : float, default 1.25
        Expert capacity, as a multiple of the mean load, for
        ``oversubscribed_fraction`` and ``overflow_fraction``.
    expert_placement : int, array or dict, optional
        Expert-parallel placement for ``rank_balance`` (see
        :func:`~infomoe.logs.analyze_log`).
    check_only : bool, default False
        Only validate the options (``tables`` may be None) and return None.

    Returns
    -------
    LogReport

    Notes
    -----
    **Load.** With load :math:`c_i` over :math:`E` experts, :math:`\bar c =
    \sum_i c_i / E` and :math:`f_i = c_i / \sum_j c_j`: ``load_cv`` is
    :math:`\sqrt{\mathrm{mean}_i (c_i - \bar c)^2} / \bar c`, ``max_violation``
    :math:`(\max_i c_i - \bar c) / \bar c`, ``normalized_entropy``
    :math:`H(f) / \log E`, and ``switch_balance`` :math:`E \sum_i f_i P_i`
    (Fedus et al. 2021, eq. 4), with :math:`P_i` the mean router probability
    when logits of a softmax router were logged, else :math:`P = f`.

    **Soft gate.** ``gate_information`` is :math:`H(\bar p) - \frac1N \sum_x
    H(p(\cdot|x))` with :math:`\bar p` the mean gate distribution: the
    routing information of the seed paper (docs/theory.md#routing-ambiguity-and-routing-information);
    intervals and nulls: docs/theory.md#uncertainty-of-the-routing-report.

    **Mutual informations** are computed from the contingency tables.  The
    default estimator subtracts from the plug-in value :math:`\hat I` the
    mean of its permutation null: on tables of routing shape (vocabulary x
    experts with more cells than pairs) every entropy-based estimator
    measured keeps a large positive bias at independence (for 2048 token
    buckets x 64 experts and 8,192 pairs: plug-in +1.73 bits, Miller-Madow
    +1.44, jackknife +1.17, NSB +0.82, Chao-Shen +1.52), the shuffle-corrected
    value +0.00; under planted dependence it errs low (conservative),
    by 0.09-0.46 bits in the same measurements (``benchmarks/bench_report_bias.py``).
    The null shuffles the expert ids among the counted pairs (both margins
    kept); the p-value is the upper tail of a normal fitted to the null
    values, Holm-adjusted over every MI of the report.  The interval is
    :math:`\hat\theta \pm z_{1-\alpha/2}\,\mathrm{se}`, with the standard
    error of the estimator from the delete-one-group jackknife over groups of
    whole sequences (a bootstrap overstated it 1.9-8.3x on these tables; see
    :mod:`infomoe.logs._uncertainty`).  Top-k sets are ranked :math:`\sum_{i=0}^{k-1}
    \binom{c_i}{i+1}` for the sorted set (combinatorial number system).

    References
    ----------
    W. Fedus, B. Zoph and N. Shazeer (2021), "Switch Transformers", arXiv
    2101.03961, eq. (4).  S. Panzeri, R. Senatore, M. A. Montemurro and
    S. Petersen (2007), "Correcting for the sampling bias problem in spike
    train information measures", J. Neurophysiol. 98, 1064-1072 (the
    shuffle correction).  H. R. Künsch (1989), Ann. Statist. 17, 1217-1241
    (resampling blocks).  S. Holm (1979), Scand. J. Statist. 6, 65-70.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs import CountSpec, LayerSpec, Manifest, count_shard, report_from_tables
    >>> spec = CountSpec.from_manifest(Manifest(source="demo", layers=(LayerSpec(0, 4, 1),)))
    >>> tok = np.arange(4000) % 8
    >>> t = count_shard({"expert_ids": {0: (tok % 4)[:, None]}, "token_id": tok}, spec=spec)
    >>> r = report_from_tables(t, spec)
    >>> round(float(r.mi_token[0]), 2), bool(r.significant["mi_token"][0])
    (2.0, True)
    """
    b, intervals, permutations, alpha, seed, capacity_factor = _check_options(
        estimator, base, intervals, permutations, alpha, seed, capacity_factor)
    placement = _placement(expert_placement, spec)
    if check_only:
        return None
    if not isinstance(tables, LogTables):
        raise TypeError(f"`tables` must be LogTables (from count_shard), got {type(tables).__name__}.")
    from infomoe._entropy import entropy
    from infomoe.logs._uncertainty import holm, jackknife_weights

    lb = math.log(b)
    layer_ids = [s.layer_id for s in spec.layers]
    names = [f"layer {lid}" for lid in layer_ids]
    L = len(spec.layers)
    E = np.array([s.num_experts for s in spec.layers])
    K = np.array([s.top_k for s in spec.layers])
    warns = []
    cv, mom, hl, hn, sw, dfrac, dead, over, overflow, tdrop = (np.full(L, np.nan) for _ in range(10))
    rank_bal = None if placement is None else np.full(L, np.nan)
    sw_src = []
    for i, c in enumerate(tables.load):
        tot = int(c.sum())
        chosen = tables.tokens * K[i]
        dfrac[i] = tables.dropped[i] / chosen if chosen else 0.0
        tdrop[i] = tables.tokens_dropping[i] / tables.tokens if tables.tokens else 0.0
        if tot == 0:
            warns.append(f"{names[i]}: no routed (token, expert) pairs; load measures are NaN")
            sw_src.append("load")
            continue
        mean = tot / E[i]
        cv[i] = float(np.std(c) / mean)
        mom[i] = float(c.max() / mean)
        dead[i] = float(np.mean(c == 0))
        cap = capacity_factor * mean
        over[i] = float(np.mean(c > cap))
        overflow[i] = float(np.maximum(c - cap, 0).sum() / tot)
        if placement is not None:
            per_rank = np.bincount(placement[i], weights=c)
            rank_bal[i] = float(per_rank.mean() / per_rank.max())
        f = c / tot
        hl[i] = float(entropy(c, estimator="plugin", k=int(E[i]), base=b).value)
        hn[i] = hl[i] * lb / math.log(E[i]) if E[i] > 1 else 1.0
        ps = tables.prob_sum[i]
        n_logit = int(tables.logit_tokens[i].sum())
        if ps is not None and n_logit > 0 and manifest is not None and manifest.score_function == "softmax":
            sw[i] = float(E[i] * np.dot(f, ps.sum(axis=0) / n_logit))
            sw_src.append("router_logits")
        else:
            sw[i] = float(E[i] * np.dot(f, f))
            sw_src.append("load")

    weights = None
    busy = int(np.count_nonzero(tables.group_tokens))
    if intervals:
        if busy < 8 and tables.tokens:
            warns.append(f"the tokens fall in only {busy} resampling groups (few sequences); intervals are rough"
                         + (" and not computed" if busy < 2 else ""))
        weights = jackknife_weights(tables.group_tokens) if busy >= 2 else None
    opts = dict(estimator=estimator, base=b, permutations=permutations, weights=weights, alpha=alpha, seed=seed,
                group_tokens=tables.group_tokens,
                entropy_estimator="nsb" if estimator == "shuffle" else estimator)

    gate, router_entropy, gate_iv = _gate_information(tables, opts)
    iv = {}
    if gate is not None and intervals:
        iv["gate_information"] = gate_iv
    mi, null_mean, null_sd, methods, raw_p = {}, {}, {}, {}, {}
    trans_labels = [f"layers {a}->{c}" for a, c in zip(layer_ids, layer_ids[1:])]
    for name, dense, grouped, labels in (
            ("mi_token", tables.token, tables.grouped_token, names),
            ("mi_token_set", (None,) * L, tables.grouped_token_set, names),
            ("mi_position", tables.position, tables.grouped_position, names),
            ("mi_label", tables.label, tables.grouped_label, names),
            ("mi_transition", tables.transition, tables.grouped_transition, trans_labels)):
        res = _mi_with_uncertainty(name, dense, grouped, labels, opts, warns)
        if res is None:
            mi[name] = None
            continue
        mi[name] = res["value"]
        null_mean[name], null_sd[name], methods[name] = res["null_mean"], res["null_sd"], tuple(res["method"])
        raw_p[name] = res["p"]
        if intervals:
            iv[name] = res["interval"]
    if mi["mi_transition"] is None:
        mi["mi_transition"] = np.zeros(0)
    pvalues, significant = {}, {}
    if permutations and raw_p:
        flat = np.concatenate([raw_p[k] for k in raw_p])
        adj = holm(flat)
        at = 0
        for k in raw_p:
            m = raw_p[k].size
            pvalues[k] = adj[at:at + m]
            significant[k] = np.nan_to_num(adj[at:at + m], nan=1.0) < alpha
            at += m
    set_h, set_iv, alphabets = _set_entropies(tables, spec, opts, warns, names)
    if intervals:
        iv["set_entropy"] = set_iv
    drop = _drop_warning(layer_ids, dfrac)
    if drop is not None:
        warns.insert(0, drop)
    if tables.token_ids_folded:
        warns.append(f"{tables.token_ids_folded} tokens had ids >= token_buckets={spec.token_buckets}, folded "
                     "modulo it: ids that share a bucket are merged, so I(token; E) measures the buckets, and "
                     "more buckets (--token-buckets) can change it either way once bias is counted")
    if tables.labels_folded:
        warns.append(f"{tables.labels_folded} tokens had labels >= label_buckets={spec.label_buckets}, folded "
                     "modulo it: labels that share a bucket are merged (I(label; E) measures the buckets)")
    from infomoe.logs._uncertainty import GROUP_BLOCK_TOKENS

    blocks = f"blocks of {GROUP_BLOCK_TOKENS} consecutive tokens"
    if tables.seq_id_tokens == tables.tokens:
        unit = "sequences (seq_id)"
    elif tables.seq_id_tokens == 0:
        unit = f"{blocks} (no seq_id column)"
    else:
        unit = (f"sequences (seq_id) for {tables.seq_id_tokens} tokens, {blocks} for the other "
                f"{tables.tokens - tables.seq_id_tokens} (no seq_id column)")
    return LogReport(
        layer_ids=np.array(layer_ids), num_experts=E, top_k=K, num_tokens=int(tables.tokens),
        load=tuple(np.asarray(c) for c in tables.load), record_pairs=tables.record_pairs.copy(),
        dropped_fraction=dfrac, token_drop_rate=tdrop, load_cv=cv, max_over_mean=mom, max_violation=mom - 1.0,
        dead_fraction=dead, oversubscribed_fraction=over, overflow_fraction=overflow,
        capacity_factor=capacity_factor, rank_balance=rank_bal, load_entropy=hl,
        normalized_entropy=hn, switch_balance=sw, switch_source=tuple(sw_src),
        coactivation=tuple(np.asarray(c) for c in tables.coactivation),
        cooccurrence=tuple(np.asarray(t) for t in tables.transition if t is not None),
        router_entropy=router_entropy, gate_information=gate, score_function=spec.score_function,
        mi_token=mi["mi_token"], mi_token_set=mi["mi_token_set"], mi_position=mi["mi_position"],
        mi_label=mi["mi_label"], mi_transition=mi["mi_transition"], set_entropy=set_h,
        set_alphabet=alphabets, intervals=iv, mi_bias=null_mean, null_sd=null_sd, null_method=methods,
        pvalues=pvalues, significant=significant, estimator=estimator,
        entropy_estimator=opts["entropy_estimator"], intervals_computed=intervals, permutations=permutations,
        groups=busy,
        resampling_unit=unit, alpha=alpha, base=b, unit=unit_name(b),
        token_buckets=spec.token_buckets, label_buckets=spec.label_buckets,
        token_ids_folded=int(tables.token_ids_folded), labels_folded=int(tables.labels_folded),
        position_edges=tuple(spec.position_edges), expert_space=expert_space,
        source="" if manifest is None else manifest.source,
        model_id=None if manifest is None else manifest.model_id, warnings=tuple(warns))
