"""Accuracy–rate (distortion–rate) curve of an expert bank."""

from __future__ import annotations

__all__ = ["accuracy_rate"]


def accuracy_rate(curve, *, ax=None, kind: str = "auto", label: str = "D(R) (Blahut–Arimoto)",
                  color=None, annotate: bool = True):
    """Plot accuracy (or distortion) against routing rate, with both endpoints marked.

    Parameters
    ----------
    curve : infomoe.AccuracyRateCurve
        From :func:`infomoe.accuracy_rate_curve`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (default ``plt.gca()``).
    kind : {"auto", "accuracy", "distortion"}
        y-axis quantity; ``"auto"`` draws accuracy when the losses were 0/1
        errors and distortion otherwise.
    label : str
        Legend label of the curve.
    color : optional
        Matplotlib colour of the curve (default: the next in the cycle).
    annotate : bool
        Mark and label the two ends: the best single expert (rate 0,
        ``d_max``) and oracle routing (``d_min`` at ``rate_at_d_min``), each
        with a dotted horizontal reference line.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``; the curve line carries ``label``, the end markers are labelled
        ``"best single expert (D_max)"`` and ``"oracle routing (D_min)"``.

    Notes
    -----
    The x-axis is the rate ``I(X;T)`` in the curve's unit (bits for
    ``base=2``).  The points are the convex clean-up of the solver's points
    (see :func:`infomoe.accuracy_rate_curve`).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import accuracy_rate_curve
    >>> from infomoe.plot import accuracy_rate
    >>> err = np.array([[0, 1], [0, 1], [1, 0], [1, 1]])
    >>> ax = accuracy_rate(accuracy_rate_curve(err, betas=[1.0, 4.0]))
    >>> ax.get_xlabel()
    'rate I(X;T) [bits]'
    """
    import matplotlib.pyplot as plt

    from infomoe._validate import check_choice

    check_choice(kind, "kind", ("auto", "accuracy", "distortion"))
    for attr in ("rate", "distortion", "d_max", "d_min", "rate_at_d_min", "unit"):
        if not hasattr(curve, attr):
            raise TypeError("`curve` must be an AccuracyRateCurve (from infomoe.accuracy_rate_curve), "
                            f"got {type(curve).__name__}.")
    if kind == "auto":
        kind = "accuracy" if curve.accuracy is not None else "distortion"
    if kind == "accuracy" and curve.accuracy is None:
        raise ValueError("`kind='accuracy'` needs 0/1 losses; this curve was built from real-valued "
                         "losses, use kind='distortion'.")
    if ax is None:
        ax = plt.gca()

    def y(v):
        return 1.0 - v if kind == "accuracy" else v

    (line,) = ax.plot(curve.rate, y(curve.distortion), "-", color=color, label=label)
    if annotate:
        ax.axhline(y(curve.d_max), color="0.5", ls=":", lw=1)
        ax.axhline(y(curve.d_min), color="0.5", ls=":", lw=1)
        ax.plot([0.0], [y(curve.d_max)], "s", color="C3", label="best single expert (D_max)")
        ax.plot([curve.rate_at_d_min], [y(curve.d_min)], "*", ms=10, color="C2",
                label="oracle routing (D_min)")
        ax.annotate(f"best single expert: {y(curve.d_max):.4g}", (0.0, y(curve.d_max)),
                    textcoords="offset points", xytext=(4, -12 if kind == "accuracy" else 4),
                    fontsize="small")
        ax.annotate(f"oracle: {y(curve.d_min):.4g} at {curve.rate_at_d_min:.3g} {curve.unit}",
                    (curve.rate_at_d_min, y(curve.d_min)), textcoords="offset points",
                    xytext=(-4, 6 if kind == "accuracy" else -12), ha="right", fontsize="small")
    ax.set_xlabel(f"rate I(X;T) [{curve.unit}]")
    ax.set_ylabel("accuracy" if kind == "accuracy" else "distortion E d(X, T)")
    ax.legend(fontsize="small", loc="lower right" if kind == "accuracy" else "upper right")
    return ax
