"""Routing as variational inference: the sparse posterior and routing entropies.

A router's probabilities ``p(e|x) = softmax(logits)`` are a posterior over
experts.  Top-k routing replaces it by a posterior supported on ``k`` experts;
this module measures what that costs (``-log Z_S``), checks that the chosen
support is the best one, and summarises a batch of routing posteriors with the
entropies of Paper A: the routing ambiguity ``H(E|X)``, the aggregate
posterior's divergence from uniform, the routing information ``I(X;E)`` and the
Rényi-2 (collision) entropy that the Switch load-balancing loss measures.

Every function takes router logits (``from_logits=True``) or probabilities,
with experts on the last axis and any leading axes treated as tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infomoe._softmax import softmax
from infomoe._repr import dataclass_repr
from infomoe._validate import as_float_array, as_labels, as_probability_rows, check_base, check_positive_int

__all__ = [
    "router_probabilities",
    "sparse_posterior_error",
    "sparse_posterior_regret",
    "topk_support",
    "routing_ambiguity",
    "aggregate_posterior",
    "aggregate_kl_to_uniform",
    "routing_information",
    "renyi2_entropy",
    "posterior_summary",
    "RoutingPosterior",
]


def router_probabilities(x, *, from_logits: bool = False, name: str = "probs") -> np.ndarray:
    """Router probabilities ``(..., experts)`` from logits or probabilities.

    Parameters
    ----------
    x : array_like, shape (..., experts)
        Router logits (``from_logits=True``) or probability rows.
    from_logits : bool, default False
        Apply a numerically stable softmax over the last axis.
    name : str
        Argument name used in error messages.

    Returns
    -------
    ndarray, float64, same shape as ``x``
        Rows that sum to one.

    Notes
    -----
    ``softmax(z)_i = exp(z_i - max z) / sum_j exp(z_j - max z)``; subtracting the
    maximum keeps logits of any size finite.

    Examples
    --------
    >>> router_probabilities([[0.0, 0.0], [1000.0, 0.0]], from_logits=True).round(3)
    array([[0.5, 0.5],
           [1. , 0. ]])
    """
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"`from_logits` must be True or False, got {from_logits!r}.")
    if from_logits:
        z = as_float_array(x, name, min_ndim=1)
        if z.shape[-1] == 0:
            raise ValueError(f"`{name}` has no experts (last axis has length 0).")
        return softmax(z)
    p = as_probability_rows(x, name)
    return p


def _rows(x, from_logits, name="probs") -> np.ndarray:
    """Probabilities flattened to ``(tokens, experts)``."""
    p = router_probabilities(x, from_logits=from_logits, name=name)
    return p.reshape(-1, p.shape[-1])


def _check_k(k, n_experts: int, name: str = "k") -> int:
    k = check_positive_int(k, name)
    if k > n_experts:
        raise ValueError(f"`{name}` must be at most the number of experts ({n_experts}), got {k}.")
    return k


def _nats_to(value, base):
    return value / math.log(check_base(base))


def topk_support(probs, k: int, *, from_logits: bool = False) -> np.ndarray:
    """Indices of the ``k`` largest router probabilities of every token.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Router probabilities, or logits with ``from_logits=True``.
    k : int
        Experts per token.
    from_logits : bool, default False

    Returns
    -------
    ndarray of int64, shape (..., k)
        Expert ids, the largest probability first (ties broken by lower id).

    Notes
    -----
    By :func:`sparse_posterior_error` this is the support of the best
    ``k``-sparse approximation of ``p`` in reverse KL.

    Examples
    --------
    >>> topk_support([0.2, 0.5, 0.3], 2)
    array([1, 2])
    """
    p = router_probabilities(probs, from_logits=from_logits)
    k = _check_k(k, p.shape[-1])
    # stable sort of -p: ties resolved towards the lower expert id
    return np.argsort(-p, axis=-1, kind="stable")[..., :k].astype(np.int64)


def sparse_posterior_error(probs, k: int | None = None, *, support=None, from_logits: bool = False,
                           base: float = 2) -> np.ndarray:
    """Reverse-KL cost ``-log Z_S`` of routing each token to a support ``S``.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Router probabilities, or logits with ``from_logits=True``.
    k : int, optional
        Use the top-``k`` support (the optimal one).  Give exactly one of ``k``
        and ``support``.
    support : array_like of int, shape (..., m), optional
        Expert ids chosen for each token (e.g. read from a routing log).  Ids
        must be distinct within a token.
    from_logits : bool, default False
    base : float, default 2
        Logarithm base of the result (2: bits, ``math.e``: nats).

    Returns
    -------
    ndarray, shape (...)
        ``KL(q_S || p) = -log Z_S`` per token, in units of ``base``; ``0`` when
        ``S`` holds all the probability mass, ``inf`` when it holds none.

    Notes
    -----
    Among distributions ``q`` supported on ``S`` the reverse KL
    ``KL(q || p) = sum_{i in S} q_i log(q_i / p_i)`` is minimised by
    ``q*_i = p_i / Z_S`` with ``Z_S = sum_{i in S} p_i``, where it equals
    ``-log Z_S``.  It decreases as ``Z_S`` grows, so over supports of size
    ``k`` the minimum is at the top-``k`` experts.

    References
    ----------
    Paper A (arXiv 2601.03577), "top-k routing is the optimal sparse posterior
    approximation"; the derivation above is a reconstruction (no equation
    number is public).

    Examples
    --------
    >>> import math
    >>> round(float(sparse_posterior_error([0.5, 0.3, 0.2], 2, base=math.e)), 4)
    0.2231
    """
    p = router_probabilities(probs, from_logits=from_logits)
    if (k is None) == (support is None):
        raise ValueError("give exactly one of `k` (top-k support) and `support` (chosen expert ids).")
    if support is None:
        k = _check_k(k, p.shape[-1])
        z = -np.sort(-p, axis=-1)[..., :k].sum(axis=-1)
    else:
        ids = _as_support(support, p)
        z = np.take_along_axis(p, ids, axis=-1).sum(axis=-1)
    z = np.minimum(z, 1.0)
    with np.errstate(divide="ignore"):
        out = -np.log(z)
    out = np.maximum(out, 0.0)  # -log(1 - tiny rounding) must not be -0.0 or negative
    return _nats_to(out, base)


def _as_support(support, p: np.ndarray) -> np.ndarray:
    s = np.asarray(support)
    if s.ndim == 0:
        raise ValueError("`support` must have shape (..., m): one row of expert ids per token.")
    if s.shape[:-1] != p.shape[:-1]:
        raise ValueError(f"`support` has leading shape {s.shape[:-1]} but `probs` has {p.shape[:-1]}; "
                         "give one row of expert ids per token.")
    flat = as_labels(s.reshape(-1), "support")
    ids = flat.reshape(s.shape)
    n_experts = p.shape[-1]
    if ids.size and ids.max() >= n_experts:
        raise ValueError(f"`support` has expert id {int(ids.max())} but there are only {n_experts} experts.")
    if ids.shape[-1] > 1:
        srt = np.sort(ids, axis=-1)
        if (np.diff(srt, axis=-1) == 0).any():
            raise ValueError("`support` repeats an expert id within a token; ids must be distinct.")
    return ids


def sparse_posterior_regret(probs, support, *, from_logits: bool = False, base: float = 2) -> np.ndarray:
    """Excess reverse KL of a chosen support over the top-k support, per token.

    ``regret = -log Z_S - (-log Z_topk) = log(Z_topk / Z_S) >= 0`` with
    ``k = |S|``; it is zero exactly when ``S`` is an optimal support (a top-k
    set, up to ties).  Use it to check routers whose selection is not top-k
    of their probabilities (bias-corrected, capacity-dropped or noisy routing).

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Router probabilities, or logits with ``from_logits=True``.
    support : array_like of int, shape (..., k)
        Chosen expert ids per token.
    from_logits : bool, default False
    base : float, default 2
        Unit of the result.

    Returns
    -------
    ndarray, shape (...)
        Regret per token in units of ``base``.

    Notes
    -----
    See :func:`sparse_posterior_error`.

    References
    ----------
    Paper A (arXiv 2601.03577); reconstruction, no equation number is public.

    Examples
    --------
    >>> sparse_posterior_regret([0.5, 0.3, 0.2], [0, 1]).item()
    0.0
    >>> round(float(sparse_posterior_regret([0.5, 0.3, 0.2], [0, 2])), 4)  # log2(0.8 / 0.7)
    0.1926
    """
    p = router_probabilities(probs, from_logits=from_logits)
    ids = _as_support(support, p)
    k = ids.shape[-1]
    chosen = sparse_posterior_error(p, support=ids, base=math.e)
    best = sparse_posterior_error(p, k, base=math.e)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isinf(chosen) & np.isinf(best), 0.0, chosen - best)
    return _nats_to(np.maximum(out, 0.0), base)


def _entropy_rows(p: np.ndarray, base) -> np.ndarray:
    from infomoe import shannon_entropy

    return np.asarray(shannon_entropy(p, base=base), dtype=np.float64)


def _channel(probs, from_logits, base):
    """The router's channel: every token one input of equal weight (:func:`infomoe.channel_information`)."""
    from types import SimpleNamespace

    from infomoe._information import channel_information

    p = _rows(probs, from_logits)
    ci = channel_information(p, base=check_base(base))
    return SimpleNamespace(entropy=ci.entropy, conditional_entropy=ci.conditional_entropy,
                           mutual_information=ci.mutual_information, num_outcomes=p.shape[-1])


def routing_ambiguity(probs, *, from_logits: bool = False, base: float = 2) -> float:
    """Routing ambiguity ``H(E|X)``: the mean entropy of the routing posterior.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Router probabilities per token, or logits with ``from_logits=True``.
    from_logits : bool, default False
    base : float, default 2
        Unit of the result (2: bits).

    Returns
    -------
    float
        ``mean_x H(q(.|x))`` in units of ``base``, between 0 (every token
        routed with certainty) and ``log E``.

    Notes
    -----
    ``H(E|X) = E_x[-sum_e q(e|x) log q(e|x)]``; with a uniform prior the
    per-token ELBO term is ``KL(q(.|x) || U) = log E - H(q(.|x))``.

    References
    ----------
    Paper A (arXiv 2601.03577), routing ambiguity; reconstruction.

    Examples
    --------
    >>> routing_ambiguity([[0.5, 0.5], [1.0, 0.0]])
    0.5
    """
    return float(_channel(probs, from_logits, base).conditional_entropy)


def aggregate_posterior(probs, *, from_logits: bool = False) -> np.ndarray:
    """Aggregate routing posterior ``qbar(e) = mean_x q(e|x)``.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
    from_logits : bool, default False

    Returns
    -------
    ndarray, shape (experts,)

    Notes
    -----
    This is the soft expert load: the ``P_i`` of the Switch load-balancing loss.

    References
    ----------
    Paper A (arXiv 2601.03577); Fedus et al. 2022 (JMLR 23), eq. (6).

    Examples
    --------
    >>> aggregate_posterior([[0.5, 0.5], [1.0, 0.0]])
    array([0.75, 0.25])
    """
    return _rows(probs, from_logits).mean(axis=0)


def aggregate_kl_to_uniform(probs, *, from_logits: bool = False, base: float = 2) -> float:
    """``KL(qbar || U) = log E - H(qbar)``: how unbalanced the expert load is.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
    from_logits : bool, default False
    base : float, default 2

    Returns
    -------
    float
        In units of ``base``; 0 at perfect balance, ``log E`` when all mass is
        on one expert.

    Notes
    -----
    ``KL(qbar || U) = sum_e qbar(e) log(E qbar(e)) = log E - H(qbar)``.  Load
    balancing acts as a prior regulariser pulling ``qbar`` towards ``U``.

    References
    ----------
    Paper A (arXiv 2601.03577), "auxiliary load balancing is prior
    regularization"; reconstruction.

    Examples
    --------
    >>> aggregate_kl_to_uniform([[1.0, 0.0], [1.0, 0.0]])
    1.0
    """
    ci = _channel(probs, from_logits, base)
    return max(_nats_to(math.log(ci.num_outcomes), base) - float(ci.entropy), 0.0)


def routing_information(probs, *, from_logits: bool = False, base: float = 2) -> float:
    """Routing information ``I(X;E) = H(qbar) - H(E|X)`` of a soft router.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        One row per token (each token an equally likely input ``x``).
    from_logits : bool, default False
    base : float, default 2

    Returns
    -------
    float
        In units of ``base``; ``0 <= I <= log E``.

    Notes
    -----
    ``I(X;E) = (1/N) sum_x sum_e q(e|x) log(q(e|x) / qbar(e))``, computed as
    ``H(qbar) - mean_x H(q(.|x))``.  For top-k sets ``I <= log C(E, k)``.

    References
    ----------
    Paper A (arXiv 2601.03577), routing entropy and channel capacity;
    reconstruction.

    Examples
    --------
    >>> routing_information([[1.0, 0.0], [0.0, 1.0]])
    1.0
    """
    return float(_channel(probs, from_logits, base).mutual_information)


def renyi2_entropy(probs, *, from_logits: bool = False, base: float = 2) -> np.ndarray:
    """Rényi entropy of order 2 (collision entropy) of each row.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
    from_logits : bool, default False
    base : float, default 2

    Returns
    -------
    ndarray, shape (...)
        ``H_2(p) = -log sum_i p_i^2`` in units of ``base``.

    Notes
    -----
    The Switch load-balancing loss with the hard fractions replaced by the soft
    load, ``E sum_i P_i^2``, equals ``E exp(-H_2(P))`` (``H_2`` in nats): it is
    1 exactly when ``P`` is uniform.  ``H_2 <= H`` (Shannon).

    References
    ----------
    Rényi 1961, "On measures of entropy and information", eq. for order alpha;
    Paper A (arXiv 2601.03577) for the load-balancing form (reconstruction).

    Examples
    --------
    >>> renyi2_entropy([0.25, 0.25, 0.25, 0.25]).item()
    2.0
    """
    p = router_probabilities(probs, from_logits=from_logits)
    check_base(base)
    return _nats_to(-np.log(np.square(p).sum(axis=-1)), base)


@dataclass(frozen=True)
class RoutingPosterior:
    """Summary of a batch of routing posteriors (see :func:`posterior_summary`).

    Attributes
    ----------
    k : int
        Experts per token used for the sparse-posterior error.
    sparse_error : float
        Mean over tokens of ``-log Z_topk``.
    ambiguity : float
        ``H(E|X)``.
    aggregate_entropy : float
        ``H(qbar)``.
    kl_to_uniform : float
        ``KL(qbar || U) = log E - H(qbar)``.
    information : float
        ``I(X;E) = H(qbar) - H(E|X)``.
    renyi2 : float
        ``H_2(qbar)``.
    soft_balance : float
        ``E sum_e qbar(e)^2 = E exp(-H_2(qbar))``; 1 at perfect balance.
    n_tokens, n_experts : int
    base : float
        Logarithm base of every entropy above.
    unit : str
    """

    __repr__ = dataclass_repr  # arrays as shape and range: one short line

    k: int
    sparse_error: float
    ambiguity: float
    aggregate_entropy: float
    kl_to_uniform: float
    information: float
    renyi2: float
    soft_balance: float
    n_tokens: int
    n_experts: int
    base: float
    unit: str


def posterior_summary(probs, k: int, *, from_logits: bool = False, base: float = 2) -> RoutingPosterior:
    """All Paper A posterior quantities of a batch of router outputs at once.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
    k : int
        Experts per token (top-k).
    from_logits : bool, default False
    base : float, default 2

    Returns
    -------
    RoutingPosterior

    Notes
    -----
    See :func:`sparse_posterior_error`, :func:`routing_ambiguity`,
    :func:`aggregate_kl_to_uniform`, :func:`routing_information`,
    :func:`renyi2_entropy`.  By construction
    ``information + ambiguity = aggregate_entropy`` and
    ``kl_to_uniform + aggregate_entropy = log E``.

    References
    ----------
    Paper A (arXiv 2601.03577); reconstruction.

    Examples
    --------
    >>> s = posterior_summary([[0.5, 0.5], [0.5, 0.5]], 1)
    >>> s.sparse_error, s.ambiguity, s.information, s.soft_balance
    (1.0, 1.0, 0.0, 1.0)
    """
    from infomoe._validate import unit_name

    b = check_base(base)
    p = _rows(probs, from_logits)
    k = _check_k(k, p.shape[-1])
    qbar = p.mean(axis=0)
    h_rows = _entropy_rows(p, b)
    h_bar = float(_entropy_rows(qbar, b))
    n_exp = p.shape[-1]
    amb = float(h_rows.mean())
    sum_sq = float(np.square(qbar).sum())
    return RoutingPosterior(
        k=k,
        sparse_error=float(sparse_posterior_error(p, k, base=b).mean()),
        ambiguity=amb,
        aggregate_entropy=h_bar,
        kl_to_uniform=max(_nats_to(math.log(n_exp), b) - h_bar, 0.0),
        information=max(h_bar - amb, 0.0),
        renyi2=_nats_to(-math.log(sum_sq), b),
        soft_balance=n_exp * sum_sq,
        n_tokens=p.shape[0],
        n_experts=n_exp,
        base=b,
        unit=unit_name(b),
    )
