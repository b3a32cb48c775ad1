"""Routing decisions from JAX/Flax captured intermediates.

Flax exposes intermediates as pytrees: Flax NNX ``nnx.capture(model,
nnx.Intermediate, method_outputs=nnx.Intermediate)`` returns a ``State``;
Linen ``model.apply(..., capture_intermediates=..., mutable=["intermediates"])``
returns a nested dict.  Both are ordinary pytrees, so the helpers here only
flatten a pytree with its key paths, select leaves by a regular expression on
the path, and turn them into ``{layer_id: (tokens, k)}`` arrays.  Nothing here
imports flax: the helpers also work on plain dicts/lists of numpy, JAX or
torch arrays.

Arrays already in hand (numpy, JAX, or torch on any device) need no helper:
:func:`infomoe.logs.write_log` takes ``(N, L, k)`` or ``{layer_id: (N, k)}``
arrays of any of them and converts them on the host (torch through
``.numpy()``/DLPack after ``.cpu()``, JAX through ``np.asarray``, i.e. the
buffer protocol / DLPack; bfloat16 becomes float32).
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Union

import numpy as np

from infomoe.logs._writer import _to_numpy

__all__ = ["find_leaves", "routing_from_intermediates", "router_indices_to_ids", "router_mask_to_ids",
           "write_intermediates"]

_FIRST_INT = re.compile(r"(?:^|/)(?:[A-Za-z_]*?_)?(\d+)(?:/|$)")





def _key_str(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def find_leaves(tree, pattern: Union[str, Callable[[str], bool]]) -> dict:
    """Leaves of a pytree whose ``/``-joined key path matches ``pattern``.

    Parameters
    ----------
    tree : pytree
        Nested dicts/lists/tuples, a Flax NNX ``State`` or a Linen
        ``intermediates`` collection.
    pattern : str or callable
        Regular expression searched in the path string (e.g.
        ``"layers_0/moe/router/__call__/0/2"``), or a predicate on it.

    Returns
    -------
    dict
        ``{path: leaf}`` in flattening order.

    Examples
    --------
    >>> import numpy as np
    >>> tree = {"layer_0": {"router": {"indices": np.array([1, 2])}}, "head": np.zeros(3)}
    >>> list(find_leaves(tree, "router/indices"))
    ['layer_0/router/indices']
    """
    import jax

    pred = pattern if callable(pattern) else re.compile(pattern).search
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in leaves:
        s = "/".join(_key_str(k) for k in path)
        if pred(s):
            out[s] = leaf
    return out


def _layer_of(path: str, fallback: int) -> int:
    m = _FIRST_INT.search(path)
    return int(m.group(1)) if m else fallback


def _as_float(a: np.ndarray) -> np.ndarray:
    return a if a.dtype in (np.float16, np.float32, np.float64) else a.astype(np.float32)


def _group(tree, pattern, layer_axis) -> dict:
    if pattern is None:
        return {}
    found = find_leaves(tree, pattern)
    if not found:
        raise ValueError(f"no captured intermediate matches {pattern!r}; check the path names "
                         "(print find_leaves(tree, '.') to list them).")
    out: dict = {}
    for i, (path, leaf) in enumerate(found.items()):
        a = _to_numpy(leaf, f"intermediate {path!r}")
        if layer_axis is not None:
            a = np.moveaxis(a, layer_axis, 0)
            for j in range(a.shape[0]):
                out[j] = a[j]
        else:
            lid = _layer_of(path, i)
            if lid in out:
                raise ValueError(f"two captured leaves map to layer {lid} ({path!r}); pass layer_axis= "
                                 "for stacked (scanned) layers or make the patterns more specific.")
            out[lid] = a
    return out


def _tokens_by_k(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim < 1:
        raise ValueError(f"`{name}` leaves must have a trailing top-k axis, got a scalar.")
    if a.ndim == 1:
        return a.reshape(-1, 1)
    return a.reshape(-1, a.shape[-1])


def routing_from_intermediates(tree, *, ids: Union[str, Callable], weights: Union[str, Callable, None] = None,
                               logits: Union[str, Callable, None] = None,
                               layer_axis: Optional[int] = None) -> tuple:
    """Per-layer expert ids (and gate weights, logits) from captured intermediates.

    Parameters
    ----------
    tree : pytree
        Captured intermediates (NNX ``State``, Linen dict or plain pytree).
    ids : str or callable
        Path filter selecting the expert-index leaves, one per MoE layer,
        each shaped ``(..., k)`` (leading axes are flattened to tokens).
    weights, logits : str or callable, optional
        Path filters for the gate weights ``(..., k)`` and logits ``(..., E)``.
    layer_axis : int, optional
        For stacked layers (``nn.scan``/``nnx.scan``): the axis of each leaf
        that indexes layers; layer ids are then ``0..L-1``.  Otherwise the
        layer id is the first integer in the path (``layers_3`` -> 3,
        ``layers/3`` -> 3), or the leaf's order when there is none.

    Returns
    -------
    ids, weights, logits : dict
        ``{layer_id: ndarray}`` (empty dicts when not requested), ids as
        ``int64`` ``(tokens, k)``.

    Examples
    --------
    >>> import numpy as np
    >>> tree = {"layers_0": {"router": {"__call__": (np.zeros((2, 3, 4)), np.array([[[0, 1]] * 3] * 2))}},
    ...         "layers_1": {"router": {"__call__": (np.zeros((2, 3, 4)), np.array([[[2, 3]] * 3] * 2))}}}
    >>> ids, _, lg = routing_from_intermediates(tree, ids=r"router/__call__/1$", logits=r"router/__call__/0$")
    >>> sorted(ids), ids[1].shape, lg[0].shape
    ([0, 1], (6, 2), (6, 4))
    """
    ids_d = {k: _tokens_by_k(v, "ids") for k, v in _group(tree, ids, layer_axis).items()}
    for k, v in ids_d.items():
        if not (np.issubdtype(v.dtype, np.integer)):
            raise TypeError(f"expert ids of layer {k} must be integers, got dtype {v.dtype}.")
        ids_d[k] = v.astype(np.int64, copy=False)
    # floats keep their dtype (float16 stays float16, as through write_log); anything else becomes float32
    w_d = {k: _as_float(_tokens_by_k(v, "weights")) for k, v in _group(tree, weights, layer_axis).items()}
    lg_d = {k: _as_float(_tokens_by_k(v, "logits")) for k, v in _group(tree, logits, layer_axis).items()}
    for name, d in (("weights", w_d), ("logits", lg_d)):
        if d and set(d) != set(ids_d):
            raise ValueError(f"`{name}` leaves cover layers {sorted(d)} but `ids` leaves cover {sorted(ids_d)}.")
        for k in d:
            if d[k].shape[0] != ids_d[k].shape[0] or (name == "weights" and d[k].shape != ids_d[k].shape):
                raise ValueError(f"layer {k}: `{name}` has shape {d[k].shape}, ids have {ids_d[k].shape}.")
    return ids_d, w_d, lg_d


def router_indices_to_ids(dispatch_indices, expert_capacity: int) -> np.ndarray:
    """Expert ids ``(tokens, k)`` from a Flaxformer/Switch ``RouterIndices.dispatch_indices``.

    ``dispatch_indices[..., j, :] = (expert, buffer_position)`` for the j-th
    choice; a token whose buffer position is ``>= expert_capacity`` was
    dropped (its one-hot dispatch row is zero) and becomes ``-1``.

    Examples
    --------
    >>> import numpy as np
    >>> router_indices_to_ids(np.array([[[[2, 0]], [[2, 1]], [[2, 2]]]]), expert_capacity=2).ravel().tolist()
    [2, 2, -1]
    """
    a = _to_numpy(dispatch_indices, "dispatch_indices")
    if a.ndim < 2 or a.shape[-1] != 2:
        raise ValueError(f"`dispatch_indices` must have shape (..., k, 2), got {a.shape}.")
    ids = a[..., 0].astype(np.int64)
    ids = np.where(a[..., 1] < int(expert_capacity), ids, -1)
    return ids.reshape(-1, ids.shape[-1])


def router_mask_to_ids(dispatch_mask, top_k: int) -> np.ndarray:
    """Expert ids ``(tokens, top_k)`` from a ``RouterMask.dispatch_mask`` ``(..., E, C)``.

    A token is sent to expert ``e`` when any capacity slot of ``e`` is set;
    experts are listed in increasing id order, unused slots are ``-1``.
    """
    m = _to_numpy(dispatch_mask, "dispatch_mask")
    if m.ndim < 3:
        raise ValueError(f"`dispatch_mask` must have shape (..., experts, capacity), got {m.shape}.")
    sent = (m != 0).any(axis=-1).reshape(-1, m.shape[-2])
    if int(sent.sum(axis=1).max(initial=0)) > top_k:
        raise ValueError(f"a token is dispatched to more than top_k={top_k} experts.")
    out = np.full((sent.shape[0], top_k), -1, dtype=np.int64)
    rank = np.cumsum(sent, axis=1) - 1
    r, e = np.nonzero(sent)
    out[r, rank[r, e]] = e
    return out


def write_intermediates(path, tree, *, ids, num_experts, weights=None, logits=None, layer_axis=None,
                        source: str = "flax", **kwargs):
    """:func:`routing_from_intermediates` followed by :func:`infomoe.logs.write_log`.

    Parameters
    ----------
    path : str or os.PathLike
        New log directory.
    tree : pytree
        Captured intermediates.
    ids, weights, logits, layer_axis
        As in :func:`routing_from_intermediates`.
    num_experts : int or sequence of int
        Experts per layer.
    source : str
        Manifest ``source`` (default ``"flax"``).
    **kwargs
        Per-token columns (``seq_id``, ``position``, ``valid``, ``token_id``,
        ``label``, ``step``, ``rank``; numpy, JAX or torch), manifest
        options, and ``mode="counts"`` (with ``count_options``) to write
        only the report's count tables, forwarded to
        :func:`~infomoe.logs.write_log`.  Counts mode counts on the host,
        where the captured arrays already are.

    Returns
    -------
    RoutingLog
        The written log, opened.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> tree = {"layers_0": {"idx": np.array([[0, 1], [1, 2]])}, "layers_1": {"idx": np.array([[3, 0], [2, 1]])}}
    >>> p = os.path.join(tempfile.mkdtemp(), "log")
    >>> write_intermediates(p, tree, ids="idx", num_experts=4).num_tokens
    2
    """
    from infomoe.logs import write_log

    ids_d, w_d, lg_d = routing_from_intermediates(tree, ids=ids, weights=weights, logits=logits,
                                                  layer_axis=layer_axis)
    return write_log(path, ids_d, gate_weights=w_d or None, router_logits=lg_d or None,
                     num_experts=num_experts, source=source, **kwargs)

