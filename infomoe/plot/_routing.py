"""Figures for Paper A's routing diagnostics: coherence heatmap, the coherence barrier."""

from __future__ import annotations

import numpy as np

__all__ = ["coherence_heatmap", "recovery_vs_coherence", "coherence_trace"]


def coherence_heatmap(vectors_or_gram, *, gram: bool = False, ax=None, cmap: str = "magma",
                      colorbar: bool = True):
    """Heatmap of ``|<w_i, w_j>|`` between unit-normalised expert vectors.

    Parameters
    ----------
    vectors_or_gram : array_like, shape (experts, dim) or (experts, experts)
        Expert vectors as rows, or a unit-diagonal Gram matrix with ``gram=True``.
    gram : bool, default False
    ax : matplotlib Axes, optional
    cmap : str, default "magma"
    colorbar : bool, default True

    Returns
    -------
    matplotlib.axes.Axes
        The title states the mutual coherence ``mu`` (the largest off-diagonal
        value).

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> ax = coherence_heatmap(np.eye(3), ax=plt.figure().gca())
    >>> ax.get_title()
    'mutual coherence $\\\\mu$ = 0.000'
    """
    import matplotlib.pyplot as plt

    from infomoe.routing._coherence import _gram_or_vectors

    g = np.abs(_gram_or_vectors(vectors_or_gram, gram))
    mu = float(np.max(g - np.diag(np.diag(g)))) if g.shape[0] > 1 else 0.0
    if ax is None:
        ax = plt.gca()
    im = ax.imshow(g, vmin=0.0, vmax=1.0, cmap=cmap, interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=r"$|\langle w_i, w_j\rangle|$")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # experts are whole numbers
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("expert j")
    ax.set_ylabel("expert i")
    ax.set_title(rf"mutual coherence $\mu$ = {mu:.3f}")
    return ax


def recovery_vs_coherence(result, *, ax=None):
    """Support-recovery rate of each method against mutual coherence.

    Parameters
    ----------
    result : infomoe.routing.CoherenceBarrier
        Output of :func:`infomoe.routing.coherence_barrier`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One line per method (labelled), a dashed vertical line at the OMP
        guarantee ``1/(2k-1)`` and a dotted one at the Welch bound.

    Examples
    --------
    >>> from infomoe.routing import coherence_barrier
    >>> r = coherence_barrier(8, 6, 2, [0.3, 0.6], n_tokens=20, methods=("omp",))
    >>> import matplotlib.pyplot as plt
    >>> ax = recovery_vs_coherence(r, ax=plt.figure().gca())
    >>> ax.get_lines()[0].get_label()
    'omp'
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.gca()
    order = np.argsort(result.coherence)
    styles = {"exact": "o-", "omp": "s-", "thresholding": "^-"}
    for name, rate in result.recovery.items():
        ax.plot(result.coherence[order], np.asarray(rate)[order], styles.get(name, "o-"), label=name)
    ax.axvline(result.omp_threshold, color="gray", ls="--", lw=1,
               label=rf"OMP guarantee $1/(2k-1)$ = {result.omp_threshold:.3f}")
    if result.welch > 0:
        ax.axvline(result.welch, color="gray", ls=":", lw=1, label=f"Welch bound = {result.welch:.3f}")
    ax.set_xlabel(r"mutual coherence $\mu$")
    ax.set_ylabel("support recovery rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"E={result.n_experts}, d={result.dim}, k={result.k}, {result.n_tokens} tokens")
    ax.legend(fontsize="small")
    return ax


def coherence_trace(results, *, welch: float | None = None, ax=None):
    """Mutual coherence during orthogonality training, one line per regulariser.

    Parameters
    ----------
    results : sequence of infomoe.routing.OrthogonalizeResult
    welch : float, optional
        Draw the Welch bound as a horizontal line.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.routing import orthogonalize
    >>> r = orthogonalize(np.array([[1.0, 0.2], [1.0, 0.0]]), "so", steps=20, record_every=10)
    >>> import matplotlib.pyplot as plt
    >>> coherence_trace([r], ax=plt.figure().gca()).get_lines()[0].get_label()
    'so'
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.gca()
    for r in results:
        ax.plot(r.steps, r.coherence, label=r.kind)
    if welch is not None:
        ax.axhline(welch, color="gray", ls=":", label=f"Welch bound = {welch:.3f}")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"mutual coherence $\mu$")
    ax.legend(fontsize="small")
    return ax
