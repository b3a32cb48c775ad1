"""Figures of routing-log reports: per-layer expert load and information."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from infomoe._validate import as_counts

__all__ = ["load_heatmap", "layer_information", "coactivation_heatmap", "coactivation_lift"]


def _load_rows(report_or_counts):
    """``(fractions (L, maxE) NaN-padded, layer labels, experts per layer)``."""
    from infomoe.logs._report import LogReport

    if isinstance(report_or_counts, LogReport):
        rows = [np.asarray(c, dtype=np.float64) for c in report_or_counts.load]
        labels = [int(v) for v in report_or_counts.layer_ids]
    elif isinstance(report_or_counts, Mapping):
        if not report_or_counts:
            raise ValueError("`report_or_counts` is an empty mapping; expected {layer_id: counts}.")
        labels = list(report_or_counts)
        rows = [as_counts(report_or_counts[k], f"report_or_counts[{k!r}]", ndim=1)
                for k in labels]
    else:
        a = as_counts(report_or_counts, "report_or_counts", ndim=(1, 2))
        a = a[None] if a.ndim == 1 else a
        rows = list(a)
        labels = list(range(a.shape[0]))
    width = max(r.shape[0] for r in rows)
    m = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        tot = r.sum()
        if tot > 0:
            m[i, :r.shape[0]] = r / tot
    return m, labels, np.array([r.shape[0] for r in rows])


def _load_norm(values, centre):
    """A diverging norm centred on the uniform share ``centre``, its range fitted to the data.

    The half-range is the largest deviation from ``centre`` (so a near-uniform
    layer fills the colour range instead of looking flat), symmetric except that
    it stops at 0, the idle expert.  A perfectly uniform table gets a +-1 % range.
    """
    from matplotlib.colors import TwoSlopeNorm

    finite = values[np.isfinite(values)]
    half = float(np.max(np.abs(finite - centre))) if finite.size else 0.0
    if not half > 0.0:
        half = 0.01 * centre
    return TwoSlopeNorm(vcenter=centre, vmin=max(0.0, centre - half), vmax=centre + half)


def _integer_ticks(axis, labels=None, max_labels: int = 25):
    """Integer tick positions on ``axis``; with ``labels``, one per row, thinned to ``max_labels``."""
    from matplotlib.ticker import MaxNLocator

    if labels is None:
        axis.set_major_locator(MaxNLocator(integer=True))
        return
    step = max(1, -(-len(labels) // max_labels))
    pos = np.arange(0, len(labels), step)
    axis.set_ticks(pos)
    axis.set_ticklabels([str(labels[i]) for i in pos])


def load_heatmap(report_or_counts, *, relative: bool = True, cmap=None, ax=None):
    """Heatmap of expert load, one row per MoE layer.

    Parameters
    ----------
    report_or_counts : LogReport, mapping {layer_id: (E,)}, or array (L, E) or (E,)
        A report from :func:`infomoe.logs.analyze_log`, or load counts such
        as :meth:`RoutingLog.counts` returns.
    relative : bool, default True
        Show ``E * f_i`` (1 = the uniform share, >1 overloaded) instead of the
        fraction ``f_i`` of routed (token, expert) pairs.
    cmap : str or Colormap, optional
        Default ``"RdBu_r"`` (diverging: blue underloaded, white uniform, red
        overloaded) when the colours are centred on the uniform share, else
        ``"viridis"``.
    ax : matplotlib Axes, optional
        Default: the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The image (``ax.get_images()[0]``; its ``norm`` holds the colour
        limits) and its colour bar; expert ticks are integers.

    Notes
    -----
    ``f_i = c_i / sum_j c_j`` per layer.  The colour scale is fitted to the
    data: when every layer has the same number of experts ``E`` (always when
    `relative`), it is centred on the uniform share (1, or ``1/E`` for
    fractions) and reaches the largest deviation from it on both sides
    (stopping at 0), so a load with a coefficient of variation of 0.003 shows
    its structure instead of a flat colour; read the size of the deviations
    off the colour bar.  Otherwise it spans the smallest to the largest
    fraction.  Layers with fewer experts than the widest are padded with grey
    (masked) cells; a layer with no load is grey.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.plot import load_heatmap
    >>> ax = load_heatmap({0: [10, 10, 20, 0], 3: [5, 5, 5, 25]})
    >>> ax.get_xlabel(), [t.get_text() for t in ax.get_yticklabels()]
    ('expert', ['0', '3'])
    >>> norm = ax.get_images()[0].norm   # centred on the uniform share, up to the largest load
    >>> float(norm.vcenter), float(norm.vmin), float(norm.vmax)
    (1.0, 0.0, 2.5)
    """
    import matplotlib

    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    m, labels, widths = _load_rows(report_or_counts)
    values = m * widths[:, None] if relative else m
    centred = relative or bool(np.all(widths == widths[0]))
    if centred:
        norm = _load_norm(values, 1.0 if relative else 1.0 / float(widths[0]))
    else:
        from matplotlib.colors import Normalize
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = Normalize(lo, hi if hi > lo else lo + max(1e-12, 0.01 * abs(lo)))
    if cmap is None:
        cmap = "RdBu_r" if centred else "viridis"
    cmap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    cmap = cmap.with_extremes(bad="0.75")  # padding and empty layers: grey, not "uniform"
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest",
                   cmap=cmap, norm=norm)
    if relative:
        bar_label = "load / uniform share (1 = uniform)"
    elif centred:
        bar_label = f"fraction of routed pairs (centre 1/E = {1.0 / float(widths[0]):.4g})"
    else:
        bar_label = "fraction of routed pairs"
    ax.figure.colorbar(im, ax=ax, label=bar_label)
    ax.set_xlabel("expert")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("MoE layer")
    _integer_ticks(ax.yaxis, labels)
    ax.set_title("expert load per layer")
    return ax


# report attribute -> (legend label, marker); E_l is the expert chosen at layer l
_INFORMATION_LINES = (
    ("gate_information", r"$I(X;T_\ell)$", "v"),
    ("mi_token", r"$I(\mathrm{token};E_\ell)$", "o"),
    ("mi_token_set", r"$I(\mathrm{token};S_\ell)$", "P"),
    ("mi_position", r"$I(\mathrm{position};E_\ell)$", "s"),
    ("mi_label", r"$I(\mathrm{label};E_\ell)$", "^"),
)
_TRANSITION_LABEL = r"$I(E_\ell;E_{\ell+1})$"


def layer_information(report, *, ax=None):
    r"""Routing information per layer, with intervals and significance.

    Parameters
    ----------
    report : LogReport
        From :func:`infomoe.logs.analyze_log`.
    ax : matplotlib Axes, optional
        Default: the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        One line per available quantity, labelled in mathtext:
        ``$I(X;T_\ell)$`` (the soft-gate routing information),
        ``$I(\mathrm{token};E_\ell)$``, ``$I(\mathrm{token};S_\ell)$`` (``S``:
        the chosen top-k set, for ``k >= 2``), ``$I(\mathrm{position};E_\ell)$``,
        ``$I(\mathrm{label};E_\ell)$`` at each layer, and
        ``$I(E_\ell;E_{\ell+1})$`` drawn between consecutive layers (at
        ``l + 0.5``).  Error bars are the report's intervals; a mutual
        information indistinguishable from its permutation null is drawn
        with a hollow marker (legend: "hollow: not significant").  With the
        plug-in estimator a dotted line of the same colour (label starting
        with ``"_bias"``, not in the legend) marks each one's value under
        independence, ``report.mi_bias``.

    Notes
    -----
    Values are those of the report, in its unit (bits by default), on the
    y axis label.  ``E_l`` is the expert chosen at layer ``l``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, analyze_log
    >>> from infomoe.plot import layer_information
    >>> rng = np.random.default_rng(0)
    >>> ids = rng.integers(0, 4, (500, 3, 1))
    >>> log = write_log(os.path.join(tempfile.mkdtemp(), "l"), ids, num_experts=4,
    ...                 position=np.arange(500))
    >>> ax = layer_information(analyze_log(log, progress=False))
    >>> [t.get_text() for t in ax.get_legend().get_texts()][:3]
    ['$I(\\mathrm{position};E_\\ell)$', '$I(E_\\ell;E_{\\ell+1})$', 'hollow: not significant']
    >>> ax.get_ylabel()
    'mutual information [bits]'
    """
    from matplotlib.lines import Line2D

    from infomoe.logs._report import LogReport

    if not isinstance(report, LogReport):
        raise TypeError(f"`report` must be a LogReport (from infomoe.logs.analyze_log), "
                        f"got {type(report).__name__}.")
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    L = len(report.layer_ids)
    x = np.arange(L)
    bias = report.mi_bias if report.estimator == "plugin" else {}
    drawn_bias = drawn_hollow = False
    series = [(name, label, marker, x) for name, label, marker in _INFORMATION_LINES]
    if len(report.mi_transition):
        series.append(("mi_transition", _TRANSITION_LABEL, "d", x[:-1] + 0.5))
    for name, label, marker, xs in series:
        v = getattr(report, name)
        if v is None or not np.isfinite(v).any():
            continue
        (line,) = ax.plot(xs, v, marker=marker, label=label, linestyle="--" if name == "mi_transition" else "-")
        colour = line.get_color()
        iv = report.intervals.get(name)
        if iv is not None and np.isfinite(iv).any():
            ax.errorbar(xs, v, yerr=np.abs(np.stack([v - iv[:, 0], iv[:, 1] - v])), fmt="none",
                        ecolor=colour, elinewidth=1, capsize=2, label=f"_interval {name}")
        sig = report.significant.get(name)
        if sig is not None and (~sig).any():
            line.set_markevery(np.flatnonzero(sig).tolist())
            ax.plot(xs[~sig], v[~sig], linestyle="none", marker=marker, markerfacecolor="white",
                    markeredgecolor=colour, label=f"_not significant {name}")
            drawn_hollow = True
        if name in bias:
            ax.plot(xs, bias[name], ":", color=colour, lw=1, label=f"_bias {name}")
            drawn_bias = True
    ax.axhline(0.0, color="0.6", lw=0.8, zorder=0)
    _integer_ticks(ax.xaxis, [int(v) for v in report.layer_ids])
    ax.set_xlabel("MoE layer")
    ax.set_ylabel(f"mutual information [{report.unit}]")
    ax.set_title(f"routing information per layer ({report.estimator}; bars: {100 * (1 - report.alpha):g}% "
                 "intervals)", fontsize="medium")
    handles, labels = ax.get_legend_handles_labels()
    if drawn_hollow:
        handles.append(Line2D([], [], ls="none", marker="o", markerfacecolor="white", markeredgecolor="0.3"))
        labels.append("hollow: not significant")
    if drawn_bias:
        handles.append(Line2D([], [], ls=":", color="0.4", lw=1))
        labels.append("dotted: plug-in bias (value under independence)")
    if handles:
        ax.legend(handles, labels, fontsize="small")
    return ax


def coactivation_lift(report, layer) -> np.ndarray:
    r"""How much more often two experts are chosen together than their loads predict, ``(E, E)``.

    Parameters
    ----------
    report : LogReport
    layer : int
        Layer id.

    Returns
    -------
    ndarray (E, E)
        :math:`c_{ij} / \hat c_{ij}` with :math:`c_{ij}` the tokens that
        chose both experts and :math:`\hat c_{ij} = C f_i f_j / \sum_{a \ne b}
        f_a f_b` (:math:`C = \sum_{i \ne j} c_{ij}`, :math:`f` the load
        fractions): 1 = as often as independent choices with these loads.
        NaN on the diagonal and where an expert has no load.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, analyze_log
    >>> from infomoe.plot._logs import coactivation_lift
    >>> ids = np.array([[0, 1], [2, 3]] * 50)[:, None, :]   # 0 always with 1, 2 with 3
    >>> r = analyze_log(write_log(os.path.join(tempfile.mkdtemp(), "l"), ids, num_experts=4))
    >>> coactivation_lift(r, 0)[0].round(2).tolist()
    [nan, 3.0, 0.0, 0.0]
    """
    from infomoe.logs._report import LogReport

    if not isinstance(report, LogReport):
        raise TypeError(f"`report` must be a LogReport, got {type(report).__name__}.")
    ids = [int(v) for v in report.layer_ids]
    if layer not in ids:
        raise ValueError(f"`layer` {layer!r} is not among the report's layers {ids}.")
    i = ids.index(layer)
    c = np.asarray(report.coactivation[i], dtype=np.float64)
    load = np.asarray(report.load[i], dtype=np.float64)
    f = load / load.sum() if load.sum() else load
    off = ~np.eye(c.shape[0], dtype=bool)
    expected = np.outer(f, f)
    denom = expected[off].sum()
    total = c[off].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = c / (total * expected / denom) if denom > 0 and total > 0 else np.full(c.shape, np.nan)
    lift[~off] = np.nan
    lift[~np.isfinite(lift)] = np.nan
    return lift


def coactivation_heatmap(report, *, layer=None, ax=None):
    """Expert co-activation within one layer: the lift of each expert pair, on a log2 colour scale.

    Parameters
    ----------
    report : LogReport
        From :func:`infomoe.logs.analyze_log` (top-k with ``k >= 2``).
    layer : int, optional
        Layer id (default: the first analysed layer with ``k >= 2``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The image of ``log2`` of :func:`coactivation_lift` (0 = as the loads
        predict, red = chosen together more often) with its colour bar.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, analyze_log
    >>> from infomoe.plot import coactivation_heatmap
    >>> ids = np.array([[0, 1], [2, 3], [0, 2]] * 50)[:, None, :]
    >>> r = analyze_log(write_log(os.path.join(tempfile.mkdtemp(), "l"), ids, num_experts=4))
    >>> ax = coactivation_heatmap(r)
    >>> ax.get_title()
    'co-activation, layer 0 (k = 2)'
    """
    from matplotlib.colors import TwoSlopeNorm

    from infomoe.logs._report import LogReport

    if not isinstance(report, LogReport):
        raise TypeError(f"`report` must be a LogReport, got {type(report).__name__}.")
    ks = {int(l): int(k) for l, k in zip(report.layer_ids, report.top_k)}
    if layer is None:
        multi = [l for l, k in ks.items() if k >= 2]
        if not multi:
            raise ValueError("co-activation needs a layer with top-k >= 2; every layer of the report has k = 1.")
        layer = multi[0]
    lift = coactivation_lift(report, layer)
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    with np.errstate(divide="ignore"):
        v = np.log2(lift)
    finite = v[np.isfinite(v)]
    half = float(np.max(np.abs(finite))) if finite.size else 1.0
    half = half if half > 0 else 1.0
    v = np.clip(v, -half, half)  # pairs never chosen together (lift 0) sit at the bottom of the scale
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=TwoSlopeNorm(0.0, -half, half),
                   interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, label="log2 lift (0 = as the loads predict)")
    ax.set_xlabel("expert")
    ax.set_ylabel("expert")
    _integer_ticks(ax.xaxis)
    _integer_ticks(ax.yaxis)
    ax.set_title(f"co-activation, layer {layer} (k = {ks[layer]})")
    return ax
