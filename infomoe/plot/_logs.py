"""Figures of routing-log reports: per-layer expert load and information."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from infomoe._validate import as_counts

__all__ = ["load_heatmap", "layer_information"]


def _load_rows(report_or_counts):
    """``(fractions (L, maxE) NaN-padded, layer labels, experts per layer)``."""
    from infomoe.logs._analysis import LogReport

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
    ("mi_token", r"$I(\mathrm{token};E_\ell)$", "o"),
    ("mi_position", r"$I(\mathrm{position};E_\ell)$", "s"),
    ("mi_label", r"$I(\mathrm{label};E_\ell)$", "^"),
)
_TRANSITION_LABEL = r"$I(E_\ell;E_{\ell+1})$"


def layer_information(report, *, ax=None):
    r"""Mutual information between routing and token attributes, per layer.

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
        ``$I(\mathrm{token};E_\ell)$``, ``$I(\mathrm{position};E_\ell)$``,
        ``$I(\mathrm{label};E_\ell)$`` at each layer, and
        ``$I(E_\ell;E_{\ell+1})$`` drawn between consecutive layers (at
        ``l + 0.5``).  With the plug-in estimator, a dotted line of the same
        colour (label starting with ``"_bias"``, not in the legend) marks each
        one's bias under independence, ``report.mi_bias``: values near it are
        noise.

    Notes
    -----
    Values are those of the report, in its unit (bits by default), on the
    y axis label.  ``E_l`` is the expert chosen at layer ``l``.

    References
    ----------
    Panzeri & Treves (1996), Network 7, 87-107 (the bias level).

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
    >>> [t.get_text() for t in ax.get_legend().get_texts()][:2]
    ['$I(\\mathrm{position};E_\\ell)$', '$I(E_\\ell;E_{\\ell+1})$']
    >>> ax.get_ylabel()
    'mutual information [bits]'
    """
    from matplotlib.lines import Line2D

    from infomoe.logs._analysis import LogReport

    if not isinstance(report, LogReport):
        raise TypeError(f"`report` must be a LogReport (from infomoe.logs.analyze_log), "
                        f"got {type(report).__name__}.")
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    L = len(report.layer_ids)
    x = np.arange(L)
    bias = report.mi_bias if report.estimator == "plugin" else {}
    drawn_bias = False
    series = [(name, label, marker, x) for name, label, marker in _INFORMATION_LINES]
    if len(report.mi_transition):
        series.append(("mi_transition", _TRANSITION_LABEL, "d", x[:-1] + 0.5))
    for name, label, marker, xs in series:
        v = getattr(report, name)
        if v is None:
            continue
        (line,) = ax.plot(xs, v, marker=marker, label=label,
                          linestyle="--" if name == "mi_transition" else "-")
        if name in bias:
            ax.plot(xs, bias[name], ":", color=line.get_color(), lw=1, label=f"_bias {name}")
            drawn_bias = True
    _integer_ticks(ax.xaxis, [int(v) for v in report.layer_ids])
    ax.set_xlabel("MoE layer")
    ax.set_ylabel(f"mutual information [{report.unit}]")
    ax.set_title(f"routing information per layer ({report.estimator})")
    handles, labels = ax.get_legend_handles_labels()
    if drawn_bias:
        handles.append(Line2D([], [], ls=":", color="0.4", lw=1))
        labels.append("dotted: plug-in bias under independence")
    if handles:
        ax.legend(handles, labels, fontsize="small")
    return ax
