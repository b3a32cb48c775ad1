"""Load-balancing losses as MoE codebases compute them (NumPy, for analysis).

Each function reproduces one published formula, including its normalisation,
so that a value read from a training log can be recomputed and compared:

* :func:`switch_load_balancing_loss`: Fedus et al. 2022, eq. (4); 1 at balance.
* :func:`hf_load_balancing_loss`: Hugging Face ``load_balancing_loss_func``;
  ``top_k`` at balance.
* :func:`gshard_load_balancing_loss`: Lepikhin et al. 2021, §2.2; 1 at balance
  (``1/E^2`` unscaled).
* :func:`router_z_loss`: Zoph et al. 2022, eq. (5).
* :func:`deepseek_balance_loss`: DeepSeek-V3, eqs. (17)-(20); ``alpha`` at balance.

plus the auxiliary-loss-free bias update of DeepSeek-V3 and its max-violation
measure.  JAX-differentiable twins with the same names live in
:mod:`infomoe.routing.jax_losses`.
"""

from __future__ import annotations

import numpy as np

from infomoe._validate import as_float_array, check_positive_float, check_positive_int
from infomoe.routing._checks import check_flag
from infomoe.routing._posterior import _check_k, router_probabilities

__all__ = [
    "expert_load",
    "switch_load_balancing_loss",
    "hf_load_balancing_loss",
    "gshard_load_balancing_loss",
    "router_z_loss",
    "deepseek_balance_loss",
    "aux_free_bias_update",
    "max_violation",
]


def _as_ids(ids, name: str, n_experts: int, *, allow_dropped: bool = True) -> np.ndarray:
    """Integer expert ids in ``[0, n_experts)`` (``-1`` = dropped/padded if allowed)."""
    if isinstance(ids, (str, bytes)) or ids is None:
        raise TypeError(f"`{name}` must be an integer array of expert ids, got {type(ids).__name__}.")
    a = np.asarray(ids)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.isfinite(a)) \
                and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must hold integer expert ids, got dtype {a.dtype}.")
    a = a.astype(np.int64, copy=False)
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; at least one routed token is needed.")
    low = -1 if allow_dropped else 0
    if a.min() < low:
        raise ValueError(f"`{name}` has id {int(a.min())}; ids must be >= {low}"
                         + (" (-1 marks a dropped slot)." if allow_dropped else "."))
    if a.max() >= n_experts:
        raise ValueError(f"`{name}` has id {int(a.max())} but there are only {n_experts} experts.")
    return a


def expert_load(expert_ids, n_experts: int, *, weights=None) -> np.ndarray:
    """Tokens dispatched to each expert.

    Parameters
    ----------
    expert_ids : array_like of int, shape (..., k)
        Chosen expert ids; ``-1`` marks a dropped or padded slot and is not
        counted.
    n_experts : int
    weights : array_like, shape (...), optional
        Per-token weights (e.g. an attention mask), broadcast over the ``k``
        slots.

    Returns
    -------
    ndarray, float64, shape (n_experts,)
        ``c_i = sum_t w_t * #{slots of t routed to i}``.

    Notes
    -----
    The "load" ``c_i`` of the aux-loss-free update and of MaxVio.

    References
    ----------
    Wang et al. 2024, "Auxiliary-Loss-Free Load Balancing Strategy for
    Mixture-of-Experts" (arXiv 2408.15664), §3.

    Examples
    --------
    >>> expert_load([[0, 1], [0, 2], [0, -1]], 3)
    array([3., 1., 1.])
    """
    n_experts = check_positive_int(n_experts, "n_experts")
    ids = _as_ids(expert_ids, "expert_ids", n_experts)
    if weights is None:
        w = np.ones(ids.shape, dtype=np.float64)
    else:
        wt = as_float_array(weights, "weights")
        if ids.ndim == 0 or wt.shape != ids.shape[:-1]:
            raise ValueError(f"`weights` must have shape {ids.shape[:-1]} (one per token), got {wt.shape}.")
        if (wt < 0).any():
            raise ValueError("`weights` must be >= 0.")
        w = np.broadcast_to(wt[..., None], ids.shape)
    keep = ids >= 0
    return np.bincount(ids[keep], weights=w[keep], minlength=n_experts).astype(np.float64)


def _topk_ids(p: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-p, axis=-1, kind="stable")[..., :k]


def _ids_or_topk(p: np.ndarray, expert_ids, k: int) -> np.ndarray:
    if expert_ids is None:
        return _topk_ids(p, k)
    ids = _as_ids(expert_ids, "expert_ids", p.shape[-1])
    if ids.shape != p.shape[:-1] + (k,):
        raise ValueError(f"`expert_ids` must have shape {p.shape[:-1] + (k,)} (tokens, top_k), got {ids.shape}.")
    return ids


def switch_load_balancing_loss(probs, *, top_k: int = 1, expert_ids=None, from_logits: bool = False) -> float:
    """Switch Transformer load-balancing loss ``E * sum_i f_i P_i``.

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Router probabilities (or logits with ``from_logits=True``); leading axes
        are tokens.
    top_k : int, default 1
        Experts per token.  ``f_i`` counts every one of the ``k`` slots and is
        normalised by ``tokens * k`` so that the loss is 1 at balance for any k.
    expert_ids : array_like of int, shape (..., top_k), optional
        The experts actually dispatched to (default: top-k of ``probs``);
        ``-1`` = dropped.
    from_logits : bool, default False

    Returns
    -------
    float
        ``E * sum_i f_i P_i``: 1 when dispatch and probability are uniform,
        ``E`` when every token goes to one expert with probability 1.

    Notes
    -----
    ``f_i = (1 / (T k)) sum_t #{slots of t routed to i}``, ``P_i = (1/T) sum_t p_i(x_t)``.
    With ``f = P`` this is ``E sum_i P_i^2 = E exp(-H_2(P))`` (Rényi-2,
    :func:`~infomoe.routing.renyi2_entropy`).

    References
    ----------
    Fedus, Zoph & Shazeer 2022, "Switch Transformers", JMLR 23, eqs. (4)-(6).

    Examples
    --------
    >>> switch_load_balancing_loss([[0.9, 0.1], [0.1, 0.9]])
    1.0
    >>> round(switch_load_balancing_loss([[0.9, 0.1], [0.8, 0.2]]), 12)
    1.7
    """
    p = router_probabilities(probs, from_logits=from_logits)
    k = _check_k(top_k, p.shape[-1], "top_k")
    n_exp = p.shape[-1]
    p2 = p.reshape(-1, n_exp)
    ids = _ids_or_topk(p, expert_ids, k).reshape(-1, k)
    f = np.bincount(ids[ids >= 0], minlength=n_exp) / (p2.shape[0] * k)
    return float(n_exp * np.dot(f, p2.mean(axis=0)))


def hf_load_balancing_loss(gate_logits, top_k: int = 2, *, attention_mask=None) -> float:
    """The auxiliary loss of Hugging Face ``transformers`` MoE models.

    Matches ``load_balancing_loss_func`` of Mixtral / Qwen-MoE / OLMoE
    (transformers 5.x): softmax of the logits, top-k over the softmax, counts of
    all ``k`` slots divided by the number of *tokens* (not tokens * k), all
    layers pooled.

    Parameters
    ----------
    gate_logits : array_like or sequence of array_like, each (tokens, experts)
        Router logits, one array per MoE layer (``output_router_logits``);
        tokens are ``batch * seq`` rows.
    top_k : int, default 2
    attention_mask : array_like, shape (batch, seq), optional
        0/1 mask; padding rows are excluded.  The same mask applies to every
        layer.

    Returns
    -------
    float
        ``E * sum_i f_i P_i`` with ``sum_i f_i = k``: equals ``top_k`` at
        perfect balance (this is why HF logs show aux losses near 2 for Mixtral).

    Notes
    -----
    ``f_i = (sum_layers sum_t m_t #{t routed to i}) / (sum_layers sum_t m_t)``,
    ``P_i = (sum_layers sum_t m_t p_i(x_t)) / (sum_layers sum_t m_t)``.

    References
    ----------
    Hugging Face transformers, ``models/mixtral/modeling_mixtral.py``,
    ``load_balancing_loss_func`` (no paper equation; it implements Fedus et
    al. 2022 eqs. (4)-(6) without the ``1/k``).

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.log([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    >>> round(hf_load_balancing_loss(logits, top_k=2), 6)
    2.0
    """
    layers = _as_layers(gate_logits)
    n_exp = layers[0].shape[-1]
    k = _check_k(top_k, n_exp, "top_k")
    mask = None
    if attention_mask is not None:
        mask = as_float_array(attention_mask, "attention_mask").reshape(-1)
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("`attention_mask` must hold only 0 and 1.")
    counts = np.zeros(n_exp)
    prob_sum = np.zeros(n_exp)
    rows = 0.0
    for i, z in enumerate(layers):
        p = router_probabilities(z, from_logits=True, name=f"gate_logits[{i}]")
        ids = _topk_ids(p, k)
        m = np.ones(p.shape[0]) if mask is None else mask
        if m.shape[0] != p.shape[0]:
            raise ValueError(f"`attention_mask` has {m.shape[0]} entries but gate_logits[{i}] has "
                             f"{p.shape[0]} rows (batch * seq).")
        counts += np.bincount(ids.reshape(-1), weights=np.repeat(m, k), minlength=n_exp)
        prob_sum += (p * m[:, None]).sum(axis=0)
        rows += m.sum()
    if rows == 0:
        raise ValueError("`attention_mask` masks out every token; nothing to balance.")
    return float(n_exp * np.dot(counts / rows, prob_sum / rows))


def _as_layers(gate_logits) -> list:
    if isinstance(gate_logits, (list, tuple)):
        if len(gate_logits) == 0:
            raise ValueError("`gate_logits` is an empty sequence; give at least one layer's logits.")
        layers = [as_float_array(z, f"gate_logits[{i}]", ndim=2) for i, z in enumerate(gate_logits)]
    else:
        z = as_float_array(gate_logits, "gate_logits", ndim=(2, 3))
        layers = [z] if z.ndim == 2 else list(z)
    n_exp = layers[0].shape[-1]
    for i, z in enumerate(layers):
        if z.shape[-1] != n_exp:
            raise ValueError(f"gate_logits[{i}] has {z.shape[-1]} experts, gate_logits[0] has {n_exp}.")
    return layers


def gshard_load_balancing_loss(probs, *, expert_ids=None, from_logits: bool = False,
                               scaled: bool = True) -> float:
    """GShard auxiliary loss: mean over experts of (top-1 fraction) x (mean gate).

    Parameters
    ----------
    probs : array_like, shape (..., experts)
        Gate probabilities (or logits with ``from_logits=True``).
    expert_ids : array_like of int, shape (...) or (..., k), optional
        Dispatched experts; only the first choice counts (GShard counts the
        top-1 expert even under top-2 gating).  Default: argmax of ``probs``.
    from_logits : bool, default False
    scaled : bool, default True
        Multiply by ``E^2`` as fairscale / DeepSpeed / Tutel do, so the loss is 1
        at balance.  ``False`` gives the paper's form, ``1/E^2`` at balance.

    Returns
    -------
    float

    Notes
    -----
    ``l_aux = (1/E) sum_e (c_e / S) m_e`` with ``c_e`` the tokens whose first
    choice is ``e``, ``S`` the group size and ``m_e`` the mean gate value of
    ``e``; scaled by ``E^2`` this equals the top-1 Switch loss.

    References
    ----------
    Lepikhin et al. 2021, "GShard", ICLR, §2.2 and Algorithm 1 (the loss
    is not numbered).

    Examples
    --------
    >>> gshard_load_balancing_loss([[0.6, 0.4], [0.3, 0.7]])
    1.0
    >>> gshard_load_balancing_loss([[0.6, 0.4], [0.3, 0.7]], scaled=False)
    0.25
    """
    p = router_probabilities(probs, from_logits=from_logits)
    scaled = check_flag(scaled, "scaled")
    n_exp = p.shape[-1]
    if expert_ids is None:
        first = np.argmax(p, axis=-1)
    else:
        ids = _as_ids(expert_ids, "expert_ids", n_exp)
        if ids.shape == p.shape[:-1]:
            first = ids
        elif ids.shape[:-1] == p.shape[:-1]:
            first = ids[..., 0]
        else:
            raise ValueError(f"`expert_ids` must have shape {p.shape[:-1]} or {p.shape[:-1]} + (k,), "
                             f"got {ids.shape}.")
    first = first.reshape(-1)
    p2 = p.reshape(-1, n_exp)
    c = np.bincount(first[first >= 0], minlength=n_exp) / p2.shape[0]
    loss = float(np.mean(c * p2.mean(axis=0)))
    return loss * n_exp * n_exp if scaled else loss


def router_z_loss(logits) -> float:
    """Router z-loss ``mean_t (log sum_i exp z_{t,i})^2``.

    Parameters
    ----------
    logits : array_like, shape (..., experts)

    Returns
    -------
    float
        Penalises large router logits (multiply by a coefficient, 1e-3 in
        ST-MoE, when adding it to a training loss).

    Notes
    -----
    ``L_z = (1/B) sum_t (logsumexp(z_t))^2``, computed with the max shift.

    References
    ----------
    Zoph et al. 2022, "ST-MoE: Designing Stable and Transferable Sparse Expert
    Models" (arXiv 2202.08906), eq. (5).

    Examples
    --------
    >>> import math
    >>> round(router_z_loss([[0.0, 0.0]]), 6) == round(math.log(2) ** 2, 6)
    True
    """
    z = as_float_array(logits, "logits", min_ndim=1)
    m = z.max(axis=-1)
    lse = m + np.log(np.exp(z - m[..., None]).sum(axis=-1))
    return float(np.mean(np.square(lse)))


def deepseek_balance_loss(scores, top_k: int, *, alpha: float = 1.0, expert_ids=None) -> float:
    """DeepSeek-V3 sequence-wise auxiliary balance loss, averaged over sequences.

    Parameters
    ----------
    scores : array_like, shape (seq_len, experts) or (batch, seq_len, experts)
        Non-negative token-to-expert affinities ``s_{i,t}`` (DeepSeek-V3:
        ``sigmoid(u_t . e_i)``), one sequence per leading index.
    top_k : int
        Routed experts per token ``K_r``.
    alpha : float, default 1.0
        Balance factor (DeepSeek-V3 used an "extremely small" value, 1e-4).
        With ``alpha = 1`` the loss is 1 at balance.
    expert_ids : array_like of int, shape (..., seq_len, top_k), optional
        Selected experts.  Default: top-k of ``scores`` as in eq. (18) (V3
        itself selects with bias-corrected scores; pass those ids here).

    Returns
    -------
    float
        ``alpha * sum_i f_i P_i`` averaged over sequences.

    Notes
    -----
    Per sequence of ``T`` tokens:
    ``f_i = E / (K_r T) sum_t 1(i selected for t)``,
    ``s'_{i,t} = s_{i,t} / sum_j s_{j,t}``, ``P_i = (1/T) sum_t s'_{i,t}``,
    ``L_Bal = alpha sum_i f_i P_i``.

    References
    ----------
    DeepSeek-AI 2024, "DeepSeek-V3 Technical Report" (arXiv 2412.19437),
    §2.1.2, eqs. (17)-(20).

    Examples
    --------
    >>> deepseek_balance_loss([[0.9, 0.1], [0.2, 0.8]], 1)
    1.0
    """
    s = as_float_array(scores, "scores", ndim=(2, 3))
    if (s < 0).any():
        raise ValueError("`scores` must be non-negative affinities (e.g. sigmoid of the logits).")
    tot = s.sum(axis=-1, keepdims=True)
    if (tot <= 0).any():
        raise ValueError("every token needs a positive total affinity in `scores`.")
    if s.ndim == 2:
        s = s[None]
    alpha = check_positive_float(alpha, "alpha", allow_zero=True)
    b, t, n_exp = s.shape
    k = _check_k(top_k, n_exp, "top_k")
    if expert_ids is None:
        ids = _topk_ids(s, k)
    else:
        ids = _as_ids(expert_ids, "expert_ids", n_exp)
        if ids.ndim == 2:
            ids = ids[None]
        if ids.shape != (b, t, k):
            raise ValueError(f"`expert_ids` must have shape (batch, seq_len, top_k) = {(b, t, k)}, "
                             f"got {ids.shape}.")
    sn = s / s.sum(axis=-1, keepdims=True)
    p = sn.mean(axis=1)  # (b, E)
    f = np.stack([np.bincount(r[r >= 0], minlength=n_exp) for r in ids.reshape(b, -1)]) * (n_exp / (k * t))
    return float(alpha * np.mean((f * p).sum(axis=-1)))


def aux_free_bias_update(bias, load, *, gamma: float = 1e-3) -> np.ndarray:
    """One step of DeepSeek-V3's auxiliary-loss-free bias update.

    Parameters
    ----------
    bias : array_like, shape (..., experts)
        Current per-expert routing bias ``b_i`` (added to the affinities for
        top-k selection only).
    load : array_like, shape (..., experts)
        Tokens assigned to each expert in the last step (see
        :func:`expert_load`).
    gamma : float, default 1e-3
        Bias update speed (DeepSeek-V3 used 0.001 for most of training).

    Returns
    -------
    ndarray
        ``b_i + gamma * sign(mean_j c_j - c_i)``: overloaded experts go down,
        underloaded go up, balanced ones stay.

    Notes
    -----
    ``e_i = mean(c) - c_i``; ``b_i <- b_i + gamma sign(e_i)``.

    References
    ----------
    Wang et al. 2024 (arXiv 2408.15664), Algorithm 1; DeepSeek-V3 Technical
    Report (arXiv 2412.19437), §2.1.2 (text, no equation number).

    Examples
    --------
    >>> aux_free_bias_update([0.0, 0.0, 0.0], [5, 3, 1], gamma=0.1)
    array([-0.1,  0. ,  0.1])
    """
    b = as_float_array(bias, "bias", min_ndim=1)
    c = _as_load(load)
    if c.shape != b.shape:
        raise ValueError(f"`bias` and `load` must have the same shape, got {b.shape} and {c.shape}.")
    gamma = check_positive_float(gamma, "gamma", allow_zero=True)
    return b + gamma * np.sign(c.mean(axis=-1, keepdims=True) - c)


def _as_load(load) -> np.ndarray:
    c = as_float_array(load, "load", min_ndim=1)
    if (c < 0).any():
        raise ValueError("`load` has a negative entry; loads are token counts (>= 0).")
    return c


def max_violation(load) -> np.ndarray | float:
    """Maximal load violation ``MaxVio = (max_i c_i - mean c) / mean c``.

    Parameters
    ----------
    load : array_like, shape (..., experts)
        Tokens per expert (one batch: MaxVio_batch; the whole data set:
        MaxVio_global).

    Returns
    -------
    float or ndarray, shape (...)
        0 at perfect balance, ``E - 1`` when one expert takes everything.

    Notes
    -----
    ``MaxVio = (max_i Load_i - mean(Load)) / mean(Load)``.

    References
    ----------
    Wang et al. 2024 (arXiv 2408.15664), eq. (4).

    Examples
    --------
    >>> max_violation([4, 2, 2, 0])
    1.0
    """
    c = _as_load(load)
    mean = c.mean(axis=-1)
    if (mean <= 0).any():
        raise ValueError("`load` is all zero for some row; MaxVio needs at least one routed token.")
    out = (c.max(axis=-1) - mean) / mean
    return float(out) if out.ndim == 0 else out
