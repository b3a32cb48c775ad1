"""Figures of the finite expert bank experiment (Paper B)."""

from __future__ import annotations

import numpy as np

__all__ = ["bank_bounds", "bank_accuracy_rate"]


# Legend labels of bank_bounds (mathtext).
_LABELS = {
    "gap": "gap (soft)",
    "gap_sampled": "gap (sampled)",
    "aminian": r"Aminian $(\hat I+\hat L)/(\alpha m)$",
    "xu_raginsky": r"Xu-Raginsky $\sqrt{2\sigma^2 \hat I/m}$",
    "union": r"union $\sqrt{\ln K/(2m)}$",
    "mi": r"$\hat I(S;W)$ (right axis)",
    "log2k": r"$\log_2 K$, the largest $\hat I$ (right axis)",
}

# Heights, as fractions of the axes, of the union line (left axis) and of the log2 K line
# (right axis).  Both are "the top" of their axis' quantity, so equal margins would draw them
# on top of each other although they are different numbers in different units.
_UNION_HEIGHT = 0.75
_LOG2K_HEIGHT = 0.92


def bank_bounds(result, *, ax=None):
    r"""I^(S;W) and the generalization gap against alpha, with both bounds.

    Parameters
    ----------
    result : infomoe.bank.BankResult
        From :func:`infomoe.bank.run_experiment`.
    ax : matplotlib.axes.Axes, optional
        Axes for the gap and the bounds (default ``plt.gca()``).  I^ and its
        ceiling ``log2 K`` are drawn on a twin y-axis made with ``ax.twinx()``
        (in ``ax.figure.axes``), in bits.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``, with lines labelled ``"gap (soft)"``,
        ``"gap (sampled)"``, the Aminian prediction, Xu-Raginsky and the union
        bound (0/1 risk, left axis); on the twin axis ``I^(S;W)`` and the
        horizontal line ``log2 K`` (bits).  One legend lists all of them.

    Notes
    -----
    The x axis is symmetric-log so that the data-free rule ``alpha = 0``
    appears beside positive alphas.  The shaded band is the gap's confidence
    interval; the gap is ``E[L_pool(W) - L_S(W)]`` with the pool as the
    population.  The union bound ``sqrt(ln K / (2m))`` is the Xu-Raginsky
    bound ``sqrt(2 sigma^2 I / m)`` (``sigma = 1/2``) at the largest possible
    information ``I = ln K`` nats ``= log2 K`` bits; the two axes are scaled
    so that the union line (at 3/4 of the height) and the ``log2 K`` line
    (at 92 %) stay apart.

    References
    ----------
    Xu & Raginsky (2017), arXiv 1705.07809, Thm. 1; Aminian et al. (2021),
    arXiv 2107.13656, Thm. 1.

    Examples
    --------
    >>> from infomoe.plot import bank_bounds   # doctest: +SKIP
    >>> ax = bank_bounds(result)               # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.gca()
    a = np.asarray(result.alphas, float)
    lab = dict(_LABELS)
    if result.sigma == 0.5:  # then the union bound is Xu-Raginsky at the largest information
        lab["union"] += r" (= Xu-Raginsky at $I = \ln K$)"
    ax.fill_between(a, result.gap_low, result.gap_high, color="C0", alpha=0.2, lw=0)
    ax.plot(a, result.gap, "o-", color="C0", label=lab["gap"])
    ax.plot(a, result.gap_sampled, "s", color="C0", mfc="none", ms=4, label=lab["gap_sampled"])
    ax.plot(a, result.aminian_predicted, "x", color="k", label=lab["aminian"])
    ax.plot(a, result.xu_raginsky, "-", color="C3", label=lab["xu_raginsky"])
    ax.plot(a, np.full_like(a, result.union), "--", color="C2", label=lab["union"])
    positive = a[a > 0]
    if positive.size and (a == 0).any():
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    elif positive.size == a.size:
        ax.set_xscale("log")
    ax.set_xlabel(r"data dependence $\alpha$ (inverse temperature $\alpha m$)")
    ax.set_ylabel("generalization gap (0/1 risk)")
    ax.set_title(f"Finite bank: K={result.n_experts}, m={result.m}, M={result.n_sets}")
    twin = ax.twinx()
    log2k = float(np.log2(result.n_experts))
    twin.plot(a, result.mi_bits, "^-", color="C1", label=lab["mi"])
    twin.axhline(log2k, color="C1", ls=":", lw=1.5, label=lab["log2k"])
    twin.set_ylabel(r"$\hat I(S;W)$ [bits]", color="C1")
    # left axis: everything drawn fits, and the union line sits at _UNION_HEIGHT
    drawn = np.concatenate([np.ravel(v) for v in (result.gap_low, result.gap_high,
                                                  result.gap_sampled, result.aminian_predicted,
                                                  result.xu_raginsky)])
    drawn = drawn[np.isfinite(drawn)]
    top_data = max(float(result.union), float(drawn.max()) if drawn.size else 0.0)
    low = min(0.0, float(drawn.min()) if drawn.size else 0.0)
    low -= 0.04 * (top_data - low)
    ax.set_ylim(low, low + (top_data - low) / _UNION_HEIGHT)
    top_mi = max(log2k, float(np.nanmax(result.mi_bits)))
    twin.set_ylim(0.0, top_mi / _LOG2K_HEIGHT)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, fontsize="small", loc="center left")
    return ax


def bank_accuracy_rate(result, *, ax=None):
    """The bank's Blahut–Arimoto accuracy–rate curve with the routing marks.

    Parameters
    ----------
    result : infomoe.bank.BankResult
        From :func:`infomoe.bank.run_experiment`.
    ax : matplotlib.axes.Axes, optional
        Default ``plt.gca()``.

    Returns
    -------
    matplotlib.axes.Axes
        The curve (drawn by :func:`infomoe.plot.accuracy_rate`, label
        ``"D(R) (Blahut–Arimoto)"``) and five marks, labelled with the lines
        of ``result.accuracy_labels()`` (the same words and numbers as
        ``result.summary()``): the best single expert on the test data (the
        curve's rate-0 end), the expert chosen on the pool (a dashed
        horizontal line: it uses no test data, so it has no rate), the soft
        confidence gate at its rate ``I(X;T)``, oracle routing at the curve's
        other end and the hard oracle gate at its ``H(T)``.

    Notes
    -----
    Any gate is a channel ``x -> t``; its (rate, accuracy) point cannot lie
    above the curve, which is the best accuracy at each rate.  The best
    single expert on the test data is chosen in hindsight; the expert chosen
    on the pool is what selection without the test data achieves.

    References
    ----------
    Blahut (1972); Cover & Thomas (2006), §10.8.

    Examples
    --------
    >>> from infomoe.plot import bank_accuracy_rate   # doctest: +SKIP
    >>> ax = bank_accuracy_rate(result)               # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    from infomoe.plot import accuracy_rate

    if ax is None:
        ax = plt.gca()
    c = result.curve
    text = result.accuracy_labels()
    accuracy_rate(c, ax=ax, annotate=False)
    ax.axhline(result.best_test_accuracy, color="0.5", ls=":", lw=1)
    ax.axhline(result.oracle_accuracy, color="0.5", ls=":", lw=1)
    ax.plot([0.0], [result.best_test_accuracy], "s", color="C3", label=text["best_test"])
    ax.axhline(result.selected_accuracy, color="C3", ls="--", lw=1, label=text["selected"])
    ax.plot([result.gate_rate_bits], [result.gate_accuracy], "o", color="C1",
            label=text["gate"])
    ax.plot([c.rate_at_d_min], [result.oracle_accuracy], "*", ms=10, color="C2",
            label=text["oracle_curve"])
    ax.plot([result.oracle_rate_bits], [result.oracle_accuracy], "P", color="C2", ms=8,
            mfc="none", label=text["oracle_gate"])
    ax.set_title(f"Accuracy-rate curve of the bank (K={result.n_experts}, test data)")
    ax.legend(fontsize="small", loc="center right")  # the lower right holds the dashed line
    return ax
