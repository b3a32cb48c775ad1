"""Figures of routing comparisons: per-layer agreement of two routings, and router saturation."""

from __future__ import annotations

import numpy as np

__all__ = ["comparison_plot", "saturation_plot"]

# attribute -> (legend label, marker)
_AGREEMENT_LINES = (
    ("exact_set_match", "exact-set match", "o"),
    ("jaccard", "Jaccard", "s"),
    ("top1_agreement", "top-1 agreement", "^"),
)


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    return ax


def comparison_plot(comparison, *, ax=None):
    """Agreement of two routings per MoE layer: exact-set match, Jaccard and top-1 agreement.

    Parameters
    ----------
    comparison : LogComparison
        From :func:`infomoe.logs.compare_logs`.
    ax : matplotlib Axes, optional
        Default: the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        One line per measure against the layer id, on a 0..1 y axis; a
        measure that is NaN at every layer (top-1 unknown) is left out.  The
        title gives the number of matched tokens and the mean AMI.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from matplotlib.figure import Figure
    >>> from infomoe.logs import write_log, compare_logs
    >>> from infomoe.plot import comparison_plot
    >>> d, ids = tempfile.mkdtemp(), np.random.default_rng(0).integers(0, 4, (50, 2, 1))
    >>> a = write_log(os.path.join(d, "a"), ids, num_experts=4)
    >>> ax = comparison_plot(compare_logs(a, a, match="order"), ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['exact-set match', 'Jaccard', 'top-1 agreement']
    """
    from infomoe.logs._compare import LogComparison

    if not isinstance(comparison, LogComparison):
        raise TypeError("`comparison` must be a LogComparison (from infomoe.logs.compare_logs), "
                        f"got {type(comparison).__name__}.")
    ax = _axes(ax)
    x = np.asarray(comparison.layer_ids)
    for name, label, marker in _AGREEMENT_LINES:
        v = np.asarray(getattr(comparison, name), dtype=np.float64)
        if np.isnan(v).all():
            continue
        ax.plot(x, v, marker=marker, label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("MoE layer")
    ax.set_ylabel("agreement (fraction of tokens)")
    ami = np.asarray(comparison.ami, dtype=np.float64)
    ami_text = f", mean AMI {np.nanmean(ami):.3f}" if np.isfinite(ami).any() else ""
    ax.set_title(f"routing agreement: {comparison.num_matched} matched tokens{ami_text}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_lines():
        ax.legend(fontsize="small")
    return ax


def saturation_plot(curve, *, per_layer: bool = False, ax=None):
    """Router saturation: agreement of each checkpoint's routing with the reference, by step.

    Parameters
    ----------
    curve : SaturationCurve
        From :func:`infomoe.logs.router_saturation`.
    per_layer : bool, default False
        Also draw the exact-set match of each layer as a thin grey line.
    ax : matplotlib Axes, optional
        Default: the current Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The layer means of exact-set match, Jaccard and top-1 agreement
        against the step, on a 0..1 y axis, and a dotted vertical line at
        the reference step.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from matplotlib.figure import Figure
    >>> from infomoe.logs import write_log, router_saturation
    >>> from infomoe.plot import saturation_plot
    >>> d, ids = tempfile.mkdtemp(), np.random.default_rng(0).integers(0, 4, (50, 1))
    >>> logs = [write_log(os.path.join(d, str(s)), (ids + (s < 2)) % 4, num_experts=4, step=s)
    ...         for s in range(3)]
    >>> ax = saturation_plot(router_saturation(logs, match="order"), ax=Figure().subplots())
    >>> ax.get_xlabel()
    'training step'
    """
    from infomoe.logs._compare import SaturationCurve

    if not isinstance(curve, SaturationCurve):
        raise TypeError("`curve` must be a SaturationCurve (from infomoe.logs.router_saturation), "
                        f"got {type(curve).__name__}.")
    ax = _axes(ax)
    x = np.asarray(curve.steps)
    order = np.argsort(x, kind="stable")
    if per_layer:
        for j in range(curve.exact_set_match_layers.shape[1]):
            ax.plot(x[order], curve.exact_set_match_layers[order, j], color="0.75", lw=0.8,
                    label="_layer" if j else "exact-set match, per layer")
    for name, label, marker in _AGREEMENT_LINES:
        v = np.asarray(getattr(curve, name), dtype=np.float64)
        if np.isnan(v).all():
            continue
        ax.plot(x[order], v[order], marker=marker, label=label)
    ax.axvline(curve.reference_step, ls=":", color="0.4", lw=1,
               label=f"reference (step {curve.reference_step})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step" if curve.step_source != "list position" else "checkpoint")
    ax.set_ylabel("agreement with the reference")
    ax.set_title(f"router saturation ({len(curve.layer_ids)} layers, mean)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return ax
