"""Input checks of the JAX-backed routing functions, usable under ``jax.jit``.

The JAX losses and regularisers are called in two ways: eagerly on concrete
arrays (then every value is checked, like their NumPy twins do) and inside
``jax.jit`` / ``jax.grad`` / ``jax.vmap`` on tracers (then only what is known
while tracing is checked: dimensions, shapes, dtypes and the static integer
arguments such as ``top_k``; the values are not inspected, since that would
need a host round trip or ``equinox.error_if``).  The value checks themselves
are those of :mod:`infomoe._validate`, so messages read the same everywhere.

This module imports JAX only when it is already imported: nothing can be a
tracer before that.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Optional, Sequence

import numpy as np

from infomoe._validate import (ROW_SUM_ATOL, as_float_array, as_probability_rows, check_positive_float,
                               check_positive_int)

__all__ = [
    "is_traced",
    "check_flag",
    "check_array",
    "check_probability_rows",
    "check_top_k",
    "check_expert_ids",
    "check_scalar",
    "check_nonzero_rows",
    "row_sum_atol",
]


def is_traced(x) -> bool:
    """True when ``x`` is a JAX tracer (inside ``jit``, ``grad``, ``vmap``...), whose values are unknown."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def check_flag(x, name: str) -> bool:
    """``True`` or ``False`` (a Python or NumPy bool; ``1``, ``"yes"`` and ``None`` are refused)."""
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {x!r}.")
    return bool(x)


def _check_ndim(shape: tuple, name: str, ndim, min_ndim, axes: str) -> None:
    hint = f" {axes}" if axes else ""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            want = " or ".join(map(str, allowed))
            raise ValueError(f"`{name}` must have {want} dimension{'s' if allowed != (1,) else ''}{hint}, "
                             f"got shape {shape}.")
    if min_ndim is not None and len(shape) < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension{'s' if min_ndim > 1 else ''}{hint}, "
                         f"got shape {shape}.")


def check_array(x, name: str, *, ndim: Optional[int | Sequence[int]] = None, min_ndim: Optional[int] = None,
                axes: str = ""):
    """Check an array argument of a JAX function; return ``(array, host copy or None)``.

    Parameters
    ----------
    x : array_like or jax tracer
    name : str
        Argument name for error messages.
    ndim, min_ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    axes : str
        What the axes mean, shown in the dimension error (e.g. ``"(experts, dim)"``).

    Returns
    -------
    array : jax array or tracer
        ``jnp.asarray(x)`` (dtype as JAX makes it), for the computation.
    host : ndarray of float64 or None
        The checked values (finite, non-empty), or ``None`` for a tracer.

    Examples
    --------
    >>> import numpy as np
    >>> a, host = check_array(np.ones((2, 3)), "probs", ndim=2)
    >>> a.shape, host.dtype.name
    ((2, 3), 'float64')
    >>> check_array([[1.0, float("nan")]], "probs")
    Traceback (most recent call last):
    ...
    ValueError: `probs` contains NaN (first at index (0, 1)); all values must be finite.
    """
    import jax.numpy as jnp

    if is_traced(x):
        if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == bool):
            raise TypeError(f"`{name}` must hold numbers, got a traced array of dtype {x.dtype}.")
        _check_ndim(tuple(x.shape), name, ndim, min_ndim, axes)
        if x.size == 0:
            raise ValueError(f"`{name}` is empty (shape {tuple(x.shape)}); at least one value is needed.")
        return x, None
    src = x
    dtype = getattr(x, "dtype", None)
    if dtype is not None and _float_eps(dtype) and not np.issubdtype(np.dtype(dtype), np.number):
        src = np.asarray(x, dtype=np.float64)  # bfloat16 and other ml_dtypes floats NumPy does not class as numbers
    host = as_float_array(src, name, allow_empty=True, finite=False)
    _check_ndim(host.shape, name, ndim, min_ndim, axes)
    host = as_float_array(host, name)  # empty, NaN, inf
    return jnp.asarray(x), host


def _float_eps(dtype) -> float:
    """Machine epsilon of a floating dtype (bfloat16 included), 0 for other dtypes."""
    jnp = sys.modules.get("jax.numpy")
    if jnp is not None and jnp.issubdtype(dtype, jnp.floating):
        return float(jnp.finfo(dtype).eps)
    dt = np.dtype(dtype)
    return float(np.finfo(dt).eps) if np.issubdtype(dt, np.floating) else 0.0


def row_sum_atol(dtype, n_experts: int) -> float:
    """Tolerance on "rows sum to 1" for probabilities stored in ``dtype``.

    ``max(1e-6, (4 + log2(n_experts)) * eps(dtype))``.  A softmax computed and
    stored in ``dtype`` sums to 1 within about ``eps`` (measured with
    ``jax.nn.softmax``, 4096 rows of N(0, 9) logits: at most 0.8 eps for 2
    experts and 2.8 eps for 1024 in float32, 0.7 eps in bfloat16), so this
    keeps a margin of four or more ulps; float64 rows get the 1e-6 of the
    NumPy functions.

    Examples
    --------
    >>> import numpy as np
    >>> row_sum_atol(np.float64, 8), round(row_sum_atol(np.float32, 1024), 8)
    (1e-06, 1.67e-06)
    """
    eps = _float_eps(dtype)
    return max(ROW_SUM_ATOL, (4.0 + math.log2(max(int(n_experts), 1))) * eps)


def check_probability_rows(x, name: str, *, axes: str = "(..., experts)"):
    """Probability rows on the last axis: finite, ``>= 0``, summing to 1 within :func:`row_sum_atol`.

    Returns ``jnp.asarray(x)``; a tracer is checked for its shape only.

    Examples
    --------
    >>> check_probability_rows([[0.5, 0.6]], "probs")
    Traceback (most recent call last):
    ...
    ValueError: rows of `probs` must sum to 1 (tolerance 1e-06); row (0,) sums to ...
    """
    a, host = check_array(x, name, min_ndim=1, axes=axes)
    if host is not None:
        dtype = getattr(x, "dtype", np.float64)
        as_probability_rows(host, name, atol=row_sum_atol(dtype, host.shape[-1]))
    return a


def check_top_k(k, n_experts: int, name: str = "top_k") -> int:
    """A static integer ``1 <= k <= n_experts`` (``True`` and ``2.0`` are refused).

    Examples
    --------
    >>> check_top_k(2, 4)
    2
    >>> check_top_k(5, 4)
    Traceback (most recent call last):
    ...
    ValueError: `top_k` must be at most the number of experts (4), got 5.
    """
    if is_traced(k):
        raise TypeError(f"`{name}` must be a static Python int (mark it static in jax.jit), got a tracer.")
    k = check_positive_int(k, name)
    if k > n_experts:
        raise ValueError(f"`{name}` must be at most the number of experts ({n_experts}), got {k}.")
    return k


def check_expert_ids(ids, name: str, n_experts: int, shapes: Sequence[tuple], *, allow_dropped: bool = True):
    """Integer expert ids in ``[0, n_experts)`` (``-1`` = dropped slot) with one of the allowed ``shapes``.

    A tracer must have an integer dtype and an allowed shape (its values are
    not checked).  Returns a JAX integer array.

    Examples
    --------
    >>> check_expert_ids([[0], [3]], "expert_ids", 3, [(2, 1)])
    Traceback (most recent call last):
    ...
    ValueError: `expert_ids` has id 3 but there are only 3 experts.
    """
    import jax.numpy as jnp

    from infomoe.routing._balance import _as_ids

    if is_traced(ids):
        if ids.dtype == bool or not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"`{name}` must hold integer expert ids, got a traced array of dtype {ids.dtype} "
                            "(integer-valued floats are accepted only outside jit).")
        out, shape = ids, tuple(ids.shape)
    else:
        host = _as_ids(ids, name, n_experts, allow_dropped=allow_dropped)
        out, shape = jnp.asarray(host), host.shape
    if shape not in [tuple(s) for s in shapes]:
        want = " or ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"`{name}` must have shape {want}, got {shape}.")
    return out


def check_scalar(x, name: str, *, allow_zero: bool = False):
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``), or a traced scalar (not checked).

    0-d NumPy and JAX arrays count as numbers; ``True`` does not.

    Examples
    --------
    >>> check_scalar(0.5, "temperature")
    0.5
    >>> check_scalar(0, "temperature")
    Traceback (most recent call last):
    ...
    ValueError: `temperature` must be a finite number > 0, got 0.
    """
    if is_traced(x):
        if x.ndim != 0:
            raise ValueError(f"`{name}` must be a scalar, got a traced array of shape {tuple(x.shape)}.")
        return x
    if hasattr(x, "ndim") and hasattr(x, "dtype") and not isinstance(x, numbers.Number):
        a = np.asarray(x)
        if a.ndim != 0:
            raise ValueError(f"`{name}` must be a scalar, got an array of shape {a.shape}.")
        if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise TypeError(f"`{name}` must be a real number, got {x!r}.")
        check_positive_float(float(a), name, allow_zero=allow_zero)
        return x
    return check_positive_float(x, name, allow_zero=allow_zero)


def check_nonzero_rows(host: Optional[np.ndarray], name: str, why: str = "") -> None:
    """Refuse a zero row (its direction is undefined); skipped for a tracer (``host is None``)."""
    if host is None:
        return
    zero = np.abs(host).max(axis=-1) == 0
    if zero.any():
        raise ValueError(f"row {int(np.argmax(zero))} of `{name}` is zero; every expert vector needs a "
                         f"direction{why}.")
