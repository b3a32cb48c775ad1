"""JAX-differentiable load-balancing losses for training (twins of :mod:`._balance`).

Same formulas and normalisations as the NumPy versions; the dispatch fractions
``f_i`` come from a top-k selection and carry no gradient (as in every
implementation), the gradient flows through the mean router probabilities
``P_i``.  All functions are ``jax.jit``-compatible; ``top_k`` must be static.

Called on concrete arrays, every function checks its input as its NumPy twin
does (finite values, probability rows, ids in range, ``top_k`` and scalars)
and raises ``ValueError``/``TypeError`` naming the argument.  Under
``jax.jit``, ``jax.grad`` or ``jax.vmap`` the arguments are tracers: then
only shapes, dtypes and the static ``top_k`` are checked and the values are
not (NaN flows through); check a batch eagerly, or with the NumPy versions,
when in doubt.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from infomoe.routing._checks import (check_array, check_expert_ids, check_flag, check_probability_rows,
                                     check_scalar, check_top_k)

__all__ = [
    "switch_load_balancing_loss",
    "hf_load_balancing_loss",
    "gshard_load_balancing_loss",
    "router_z_loss",
    "deepseek_balance_loss",
    "aux_free_bias_update",
    "max_violation",
]


def _probs(x, from_logits, name="probs"):
    """Checked router probabilities (softmax of checked finite logits with ``from_logits``)."""
    if check_flag(from_logits, "from_logits"):
        z, _ = check_array(x, name, min_ndim=1, axes="(..., experts)")
        return jax.nn.softmax(z, axis=-1)
    return check_probability_rows(x, name)


def _counts(ids, n_experts, weights=None):
    """Counts of ids in [0, E) (``-1`` ignored) as a float vector; no gradient."""
    oh = jax.nn.one_hot(ids, n_experts)  # -1 -> all-zero row
    if weights is not None:
        oh = oh * weights[..., None, None]
    return jax.lax.stop_gradient(oh.reshape(-1, n_experts).sum(axis=0))


def switch_load_balancing_loss(probs, *, top_k: int = 1, expert_ids=None, from_logits: bool = False):
    """Switch loss ``E sum_i f_i P_i`` (JAX); see :func:`infomoe.routing.switch_load_balancing_loss`.

    Parameters
    ----------
    probs : array, shape (..., experts)
    top_k : int, default 1 (static)
    expert_ids : array of int, shape (..., top_k), optional
    from_logits : bool, default False

    Returns
    -------
    jax scalar

    References
    ----------
    Fedus, Zoph & Shazeer 2022, JMLR 23, eqs. (4)-(6).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(switch_load_balancing_loss(jnp.array([[0.9, 0.1], [0.1, 0.9]])))
    1.0
    """
    p = _probs(probs, from_logits)
    n_exp = p.shape[-1]
    top_k = check_top_k(top_k, n_exp)
    p2 = p.reshape(-1, n_exp)
    if expert_ids is None:
        ids = jax.lax.top_k(jax.lax.stop_gradient(p), top_k)[1]
    else:
        ids = check_expert_ids(expert_ids, "expert_ids", n_exp, [p.shape[:-1] + (top_k,)])
    f = _counts(ids, n_exp) / (p2.shape[0] * top_k)
    return n_exp * jnp.dot(f, p2.mean(axis=0))


def hf_load_balancing_loss(gate_logits, top_k: int = 2, *, attention_mask=None):
    """Hugging Face ``load_balancing_loss_func`` (JAX); equals ``top_k`` at balance.

    Parameters
    ----------
    gate_logits : array (tokens, experts), (layers, tokens, experts) or a sequence of (tokens, experts)
    top_k : int, default 2 (static)
    attention_mask : array (batch, seq), optional

    Returns
    -------
    jax scalar

    References
    ----------
    Hugging Face transformers, ``models/mixtral/modeling_mixtral.py``,
    ``load_balancing_loss_func``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z = jnp.log(jnp.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]))
    >>> round(float(hf_load_balancing_loss(z, 2)), 5)
    2.0
    """
    z = _stack_layers(gate_logits)
    n_layers, n_rows, n_exp = z.shape
    top_k = check_top_k(top_k, n_exp)
    p = jax.nn.softmax(z, axis=-1)
    ids = jax.lax.top_k(jax.lax.stop_gradient(p), top_k)[1]  # (L, T, k)
    if attention_mask is None:
        m = jnp.ones((n_rows,), dtype=p.dtype)
    else:
        m = _check_mask(attention_mask, n_rows).astype(p.dtype)
    mm = jnp.broadcast_to(m, (n_layers, n_rows))
    counts = _counts(ids, n_exp, mm)
    prob_sum = (p * mm[..., None]).reshape(-1, n_exp).sum(axis=0)
    rows = mm.sum()
    return n_exp * jnp.dot(counts / rows, prob_sum / rows)


def _stack_layers(gate_logits):
    """Checked gate logits as one ``(layers, tokens, experts)`` array."""
    if isinstance(gate_logits, (list, tuple)):
        if len(gate_logits) == 0:
            raise ValueError("`gate_logits` is an empty sequence; give at least one layer's logits.")
        layers = [check_array(g, f"gate_logits[{i}]", ndim=2, axes="(tokens, experts)")[0]
                  for i, g in enumerate(gate_logits)]
        for i, g in enumerate(layers):
            if g.shape != layers[0].shape:
                raise ValueError(f"gate_logits[{i}] has shape {tuple(g.shape)} but gate_logits[0] has "
                                 f"{tuple(layers[0].shape)}; every layer needs the same (tokens, experts).")
        return jnp.stack(layers)
    z, _ = check_array(gate_logits, "gate_logits", ndim=(2, 3), axes="((layers,) tokens, experts)")
    return z[None] if z.ndim == 2 else z


def _check_mask(attention_mask, n_rows):
    """A 0/1 mask with one entry per token row, not all zero (values checked outside jit only)."""
    m, host = check_array(attention_mask, "attention_mask")
    if m.size != n_rows:
        raise ValueError(f"`attention_mask` has {m.size} entries (shape {tuple(m.shape)}) but gate_logits "
                         f"has {n_rows} rows (batch * seq).")
    if host is not None:
        if not ((host == 0) | (host == 1)).all():
            raise ValueError("`attention_mask` must hold only 0 and 1.")
        if not host.any():
            raise ValueError("`attention_mask` masks out every token; nothing to balance.")
    return m.reshape(-1)


def gshard_load_balancing_loss(probs, *, expert_ids=None, from_logits: bool = False, scaled: bool = True):
    """GShard auxiliary loss (JAX); see :func:`infomoe.routing.gshard_load_balancing_loss`.

    Parameters
    ----------
    probs : array, shape (..., experts)
    expert_ids : array of int, shape (...) or (..., k), optional
        Dispatched experts; only the first choice counts (``-1``: dropped).
    from_logits : bool, default False
    scaled : bool, default True
        Multiply by ``E^2`` (fairscale / DeepSpeed convention, 1 at balance).

    Returns
    -------
    jax scalar

    References
    ----------
    Lepikhin et al. 2021, "GShard", ICLR, §2.2, Algorithm 1.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(gshard_load_balancing_loss(jnp.array([[0.6, 0.4], [0.3, 0.7]])))
    1.0
    """
    p = _probs(probs, from_logits)
    scaled = check_flag(scaled, "scaled")
    n_exp = p.shape[-1]
    p2 = p.reshape(-1, n_exp)
    if expert_ids is None:
        first = jnp.argmax(jax.lax.stop_gradient(p), axis=-1)
    else:
        lead = p.shape[:-1]
        ids_shape = tuple(np.shape(expert_ids))
        with_k = len(ids_shape) == len(lead) + 1 and ids_shape[:-1] == lead
        shapes = [lead] + ([ids_shape] if with_k else [])
        first = check_expert_ids(expert_ids, "expert_ids", n_exp, shapes)
        if first.shape != lead:  # (..., k): GShard counts the first choice only
            first = first[..., 0]
    c = _counts(first[..., None], n_exp) / p2.shape[0]
    loss = jnp.mean(c * p2.mean(axis=0))
    return loss * n_exp * n_exp if scaled else loss


def router_z_loss(logits):
    """Router z-loss ``mean_t logsumexp(z_t)^2`` (JAX).

    Parameters
    ----------
    logits : array, shape (..., experts)

    Returns
    -------
    jax scalar

    References
    ----------
    Zoph et al. 2022, "ST-MoE" (arXiv 2202.08906), eq. (5).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(router_z_loss(jnp.zeros((3, 4)))), 5)  # (ln 4)^2
    1.92181
    """
    z, _ = check_array(logits, "logits", min_ndim=1, axes="(..., experts)")
    return jnp.mean(jnp.square(jax.nn.logsumexp(z, axis=-1)))


def deepseek_balance_loss(scores, top_k: int, *, alpha: float = 1.0, expert_ids=None):
    """DeepSeek-V3 sequence-wise balance loss (JAX), averaged over sequences.

    Parameters
    ----------
    scores : array, shape (seq_len, experts) or (batch, seq_len, experts)
        Non-negative affinities (e.g. ``jax.nn.sigmoid(logits)``).
    top_k : int (static)
    alpha : float, default 1.0
    expert_ids : array of int, shape (..., seq_len, top_k), optional

    Returns
    -------
    jax scalar

    References
    ----------
    DeepSeek-V3 Technical Report (arXiv 2412.19437), eqs. (17)-(20).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(deepseek_balance_loss(jnp.array([[0.9, 0.1], [0.2, 0.8]]), 1))
    1.0
    """
    s, host = check_array(scores, "scores", ndim=(2, 3), axes="((batch,) seq_len, experts)")
    if host is not None:
        if (host < 0).any():
            raise ValueError("`scores` must be non-negative affinities (e.g. sigmoid of the logits).")
        if (host.sum(axis=-1) <= 0).any():
            raise ValueError("every token needs a positive total affinity in `scores`.")
    if s.ndim == 2:
        s = s[None]
    alpha = check_scalar(alpha, "alpha", allow_zero=True)
    b, t, n_exp = s.shape
    top_k = check_top_k(top_k, n_exp)
    if expert_ids is None:
        ids = jax.lax.top_k(jax.lax.stop_gradient(s), top_k)[1]
    else:
        shapes = [(b, t, top_k)] + ([(t, top_k)] if b == 1 else [])
        ids = check_expert_ids(expert_ids, "expert_ids", n_exp, shapes).reshape(b, t, top_k)
    sn = s / s.sum(axis=-1, keepdims=True)
    p = sn.mean(axis=1)
    f = jax.lax.stop_gradient(jax.nn.one_hot(ids, n_exp).sum(axis=(1, 2))) * (n_exp / (top_k * t))
    return alpha * jnp.mean((f * p).sum(axis=-1))


def aux_free_bias_update(bias, load, *, gamma: float = 1e-3):
    """DeepSeek-V3 aux-loss-free bias step ``b + gamma sign(mean(c) - c)`` (JAX).

    Parameters
    ----------
    bias, load : array, shape (..., experts)
    gamma : float, default 1e-3

    Returns
    -------
    jax array

    References
    ----------
    Wang et al. 2024 (arXiv 2408.15664), Algorithm 1; DeepSeek-V3 §2.1.2.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> aux_free_bias_update(jnp.zeros(3), jnp.array([5.0, 3.0, 1.0]), gamma=0.5).tolist()
    [-0.5, 0.0, 0.5]
    """
    b, _ = check_array(bias, "bias", min_ndim=1, axes="(..., experts)")
    load = _check_load(load)
    if b.shape != load.shape:
        raise ValueError(f"`bias` and `load` must have the same shape, got {tuple(b.shape)} and "
                         f"{tuple(load.shape)}.")
    gamma = check_scalar(gamma, "gamma", allow_zero=True)
    return b + gamma * jnp.sign(load.mean(axis=-1, keepdims=True) - load)


def _check_load(load, *, positive_mean=False):
    c, host = check_array(load, "load", min_ndim=1, axes="(..., experts)")
    if host is not None:
        if (host < 0).any():
            raise ValueError("`load` has a negative entry; loads are token counts (>= 0).")
        if positive_mean and (host.mean(axis=-1) <= 0).any():
            raise ValueError("`load` is all zero for some row; MaxVio needs at least one routed token.")
    return c


def max_violation(load):
    """``MaxVio = (max c - mean c) / mean c`` over the last axis (JAX).

    Parameters
    ----------
    load : array, shape (..., experts)

    Returns
    -------
    jax array, shape (...)

    References
    ----------
    Wang et al. 2024 (arXiv 2408.15664), eq. (4).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(max_violation(jnp.array([4.0, 2.0, 2.0, 0.0])))
    1.0
    """
    load = _check_load(load, positive_mean=True)
    mean = load.mean(axis=-1)
    return (load.max(axis=-1) - mean) / mean
