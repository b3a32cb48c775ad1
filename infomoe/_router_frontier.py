"""A learned router against the accuracy-rate frontier of its own layer.

Given a ``(tokens x experts)`` loss matrix ``d(x, e)`` (e.g. from
:func:`infomoe.logs.export.expert_loss_matrix`) and the router's soft gate
``p(e|x)``, :func:`router_frontier_point` places the router at
``(R, D) = (I(X;T) of p, its loss)`` and measures its distance to the
Blahut-Arimoto frontier ``D(R)`` of :func:`infomoe.accuracy_rate_curve`:
the excess loss at its rate, ``D - D(R)``, and the rate it wastes at its
loss, ``R - R(D)``.  Both are given with a certified bracket: the solved
curve is achievable (an upper bound on ``D(R)``), and each solved slope's
certificate gives a line below ``R(D)`` (a lower bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from infomoe._validate import as_float_array, as_probability_rows, check_base

__all__ = ["FrontierPoint", "rate_lower_bound", "router_frontier_point"]


@dataclass(frozen=True)
class FrontierPoint:
    """A router's point against the accuracy-rate frontier (rates in ``unit``, losses as given).

    Attributes
    ----------
    rate : float
        The router's soft-gate rate ``I(X;T) = H(mean p) - mean H(p)``.
    loss : float
        The router's loss (``router_loss`` if given, else ``channel_loss``).
    channel_loss : float
        ``mean_x sum_e p(e|x) d(x, e)``: the loss of routing each token to an
        expert drawn from the soft gate.  ``(rate, channel_loss)`` is an
        achievable point, so it is never below the frontier.
    frontier_loss : float
        ``D(rate)`` on the solved (achievable) curve, or ``channel_loss`` if
        smaller (the soft gate is an achievable channel); the true ``D(R)`` lies in
        ``[frontier_loss_lower, frontier_loss]``.
    frontier_loss_lower : float
        Certified lower bound of ``D(rate)``.
    excess_loss : float
        ``loss - frontier_loss`` (the true excess is at least this, at most
        ``loss - frontier_loss_lower``); negative when the point is below the
        single-expert frontier (possible for a top-k mixture's loss).
    excess_loss_upper : float
        ``loss - frontier_loss_lower``.
    frontier_rate : float or None
        ``R(loss)`` on the solved curve (0 at or above the best single
        expert's loss); None when ``loss`` is below the oracle's ``d_min``
        (no single-expert routing attains it).
    frontier_rate_lower : float or None
        Certified lower bound of ``R(loss)``.
    wasted_rate : float or None
        ``rate - frontier_rate`` (the true waste is at least this).
    wasted_rate_upper : float or None
        ``rate - frontier_rate_lower``.
    below_frontier : bool
        ``rate < frontier_rate_lower - atol`` (or ``loss < d_min``): the
        point beats the certified frontier.
    best_single_loss, oracle_loss : float
        ``d_max`` (rate 0) and ``d_min`` of the curve.
    oracle_rate : float
        ``R(d_min)``.
    curve : AccuracyRateCurve
        The frontier.
    unit : str
    """

    rate: float
    loss: float
    channel_loss: float
    frontier_loss: float
    frontier_loss_lower: float
    excess_loss: float
    excess_loss_upper: float
    frontier_rate: float | None
    frontier_rate_lower: float | None
    wasted_rate: float | None
    wasted_rate_upper: float | None
    below_frontier: bool
    best_single_loss: float
    oracle_loss: float
    oracle_rate: float
    curve: object = field(repr=False)
    unit: str = "bits"

    def to_dict(self) -> dict:
        """The numbers (not the curve) as a JSON-ready dict."""
        return {k: (None if v is None else (bool(v) if isinstance(v, (bool, np.bool_)) else
                                            (v if isinstance(v, str) else float(v))))
                for k, v in self.__dict__.items() if k != "curve"}


def _lines(curve):
    """(intercept at d, slope in unit per loss, d) of each solved finite slope's lower-bound line."""
    b = np.asarray(curve.beta, dtype=np.float64)
    keep = np.isfinite(b) & (b > 0)
    lb = math.log(curve.base)
    r_low = np.asarray(curve.rate)[keep] - np.maximum(np.asarray(curve.certificate)[keep], 0.0)
    return r_low, b[keep] / lb, np.asarray(curve.raw_distortion)[keep]


def rate_lower_bound(curve, loss: float) -> float:
    """Certified lower bound of ``R(loss)`` from an :class:`~infomoe.AccuracyRateCurve`.

    Each solved slope ``beta`` (nats per loss unit) with rate ``r``,
    distortion ``d`` and certificate ``c`` gives the Blahut lower bound
    ``R(D) >= r - c - beta (D - d) / ln(base)`` for every ``D``; the result
    is the largest of these lines and 0 (``inf`` below ``d_min``).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe import accuracy_rate_curve
    >>> from infomoe.logs.export import rate_lower_bound
    >>> c = accuracy_rate_curve(np.array([[0, 1], [1, 0.]]), betas=[1.0, 10.0])
    >>> round(rate_lower_bound(c, 0.0), 6), rate_lower_bound(c, 0.5)
    (1.0, 0.0)
    """
    if loss < curve.d_min - 1e-12 * max(1.0, abs(curve.d_min)):
        return math.inf
    r, s, d = _lines(curve)
    vals = r - s * (loss - d)
    out = max(0.0, float(vals.max())) if vals.size else 0.0
    if loss <= curve.d_min + 1e-12 * max(1.0, abs(curve.d_min)):
        out = max(out, float(curve.rate_at_d_min - curve.certificate[-1]))
    return out


def _loss_lower_bound(curve, rate: float) -> float:
    """Certified lower bound of ``D(rate)``: the least ``D >= d_min`` with every line ``<= rate``."""
    r, s, d = _lines(curve)
    pos = s > 0
    cand = d[pos] + (r[pos] - rate) / s[pos]
    return float(max(curve.d_min, cand.max() if cand.size else curve.d_min))


def router_frontier_point(loss_matrix, router_probs, router_loss: float | None = None, *, curve=None,
                          base: float = 2, betas=None, atol: float = 1e-7, **curve_options) -> FrontierPoint:
    """Place a learned router against the accuracy-rate frontier of its layer.

    Parameters
    ----------
    loss_matrix : array_like (tokens, experts)
        ``d(x, e)``: loss of each token when routed to each single expert
        (``>= 0``, e.g. :attr:`ExpertLosses.loss`).
    router_probs : array_like (tokens, experts)
        The router's soft gate ``p(e|x)`` on the same tokens (rows sum to 1).
    router_loss : float, optional
        The router's own loss (e.g. the mean learned top-k loss); default
        ``channel_loss``, the loss of the soft gate as a single-expert router.
    curve : AccuracyRateCurve, optional
        The frontier, if already solved from `loss_matrix` with `base`.
    base : float, default 2
        Logarithm base of the rates.
    betas : array_like, optional
        Slopes passed to :func:`infomoe.accuracy_rate_curve`.
    atol : float, default 1e-7
        Rounding allowance (in ``unit``) of ``below_frontier``.
    **curve_options
        Other options of :func:`infomoe.accuracy_rate_curve` (``tol``, ``dtype``...).

    Returns
    -------
    FrontierPoint

    Notes
    -----
    The soft gate ``p`` is itself a test channel: ``(I(p), channel_loss)``
    is achievable, so it lies on or above ``D(R)``, and ``below_frontier`` is
    False for it up to ``atol`` (the certificate makes the test exact, not
    the curve's interpolation).  A top-k router's own loss comes from
    mixing k experts' outputs, which a single-expert loss matrix does not
    describe: it may fall below the frontier (``excess_loss < 0``).

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe.logs.export import router_frontier_point
    >>> d = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> p = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    >>> fp = router_frontier_point(d, p, betas=[0.5, 1.0, 2.0, 4.0, 8.0])
    >>> round(fp.channel_loss, 3), fp.below_frontier, fp.excess_loss >= 0
    (0.1, False, True)
    """
    from infomoe import accuracy_rate_curve
    from infomoe.routing import routing_information

    d = as_float_array(loss_matrix, "loss_matrix", ndim=2)
    p = as_probability_rows(router_probs, "router_probs", min_ndim=2)
    if p.shape != d.shape:
        raise ValueError(f"`router_probs` must have the shape of `loss_matrix` {d.shape}, got {p.shape}.")
    check_base(base)
    if curve is None:
        curve = accuracy_rate_curve(d, betas=betas, base=base, **curve_options)
    elif float(curve.base) != float(base):
        raise ValueError(f"`curve` is in base {curve.base:g} but `base` is {base:g}.")
    rate = float(routing_information(p, base=base))
    channel = float(np.mean(np.sum(p * d, axis=1)))
    if router_loss is None:
        loss = channel
    else:
        loss = float(router_loss)
        if not math.isfinite(loss):
            raise ValueError(f"`router_loss` must be a finite number, got {router_loss!r}.")

    r = np.asarray(curve.rate, dtype=np.float64)
    dist = np.asarray(curve.distortion, dtype=np.float64)
    # achievable by time-sharing between solved channels; and the soft gate itself is a channel
    d_up = min(float(np.interp(rate, r, dist)), channel)
    d_low = min(_loss_lower_bound(curve, rate), d_up)
    tie = 1e-12 * max(1.0, abs(curve.d_min))
    if loss < curve.d_min - tie:
        r_up = r_low = None
    elif loss >= curve.d_max:
        r_up, r_low = 0.0, 0.0
    else:
        # rate as a function of distortion: distortion is non-increasing in rate
        if loss <= curve.d_min + tie:
            r_up = float(r[dist <= curve.d_min + tie].min())
        else:
            order = np.argsort(dist, kind="stable")
            r_up = float(np.interp(loss, dist[order], r[order]))
        if loss >= channel:  # the soft gate attains `channel` at `rate`
            r_up = min(r_up, rate)
        r_low = min(rate_lower_bound(curve, loss), r_up)
    below = r_low is None or rate < r_low - atol
    return FrontierPoint(
        rate=rate, loss=loss, channel_loss=channel, frontier_loss=d_up, frontier_loss_lower=d_low,
        excess_loss=loss - d_up, excess_loss_upper=loss - d_low, frontier_rate=r_up,
        frontier_rate_lower=r_low, wasted_rate=None if r_up is None else rate - r_up,
        wasted_rate_upper=None if r_low is None else rate - r_low, below_frontier=bool(below),
        best_single_loss=float(curve.d_max), oracle_loss=float(curve.d_min),
        oracle_rate=float(curve.rate_at_d_min), curve=curve, unit=curve.unit)
