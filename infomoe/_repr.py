"""Short, one-line reprs for result objects that hold arrays, and their JSON-ready form.

The default dataclass repr prints every array in full (a routing-log report of
64 experts x 16 layers runs to thousands of characters); results here print
each array as its shape and range, each tuple of arrays as its length, and
scalars as they are.  :func:`json_ready` turns the same values into what
``json.dumps(..., allow_nan=False)`` accepts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

__all__ = ["short_value", "dataclass_repr", "fmt_number", "span", "json_ready"]

#: Longest 1-D numeric array printed in full.
MAX_ENTRIES = 8
#: Longest string printed in full.
MAX_TEXT = 60


def short_value(v) -> str:
    """Short text of one attribute value.

    Examples
    --------
    >>> import numpy as np
    >>> short_value(np.arange(3)), short_value(np.zeros((100, 4)))
    ('[0, 1, 2]', 'array(100, 4) in [0, 0]')
    >>> short_value((np.ones(3), np.ones(5)))
    'tuple of 2 arrays'
    """
    if v is None or isinstance(v, (bool, int, float, np.integer, np.floating)):
        return repr(v.item() if isinstance(v, np.generic) else v)
    if isinstance(v, str):
        return repr(v if len(v) <= MAX_TEXT else v[:MAX_TEXT] + "...")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "biuf" and v.ndim == 1 and v.size <= MAX_ENTRIES:
            return "[" + ", ".join(f"{x:.4g}" if v.dtype.kind == "f" else str(x) for x in v.tolist()) + "]"
        if v.dtype.kind in "biuf" and v.size:
            a = v.astype(np.float64)
            finite = a[np.isfinite(a)]
            span = f" in [{finite.min():.4g}, {finite.max():.4g}]" if finite.size else " (no finite entries)"
        else:
            span = ""
        return f"array{v.shape}{span}".replace(",)", ")")
    if isinstance(v, (tuple, list)):
        if v and all(isinstance(x, np.ndarray) or x is None for x in v) and any(
                isinstance(x, np.ndarray) for x in v):
            return f"{type(v).__name__} of {len(v)} arrays"
        text = repr(v)
        return text if len(text) <= MAX_TEXT else f"{type(v).__name__} of {len(v)}"
    if isinstance(v, dict):
        text = repr(v)
        return text if len(text) <= MAX_TEXT else f"dict of {len(v)}"
    text = repr(v)
    return text if len(text) <= MAX_TEXT else f"<{type(v).__name__}>"


def dataclass_repr(obj, fields=None) -> str:
    """``Name(field=short value, ...)`` over ``fields`` (default: every repr'd dataclass field)."""
    if fields is None:
        fields = [f.name for f in dataclasses.fields(obj) if f.repr]
    body = ", ".join(f"{name}={short_value(getattr(obj, name))}" for name in fields)
    return f"{type(obj).__name__}({body})"


#: :func:`fmt_number` lists the entries of 1-D arrays up to this size; larger arrays are summarised.
NUMBER_MAX_ENTRIES = 6


def fmt_number(v) -> str:
    """Short text of a number or array for a repr: every entry of a small 1-D
    array, else its shape and range, so that a repr stays one short line."""
    if v is None:
        return "None"
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    if a.ndim == 1 and a.size <= NUMBER_MAX_ENTRIES:
        return "[" + ", ".join(f"{float(x):.6g}" for x in a) + "]"
    return f"array of shape {a.shape} in {span(a)}"


def span(a) -> str:
    """``[min, max]`` of an array (4 significant digits), NaNs counted apart."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return "[]"
    nan = int(np.isnan(a).sum())
    if nan == a.size:
        return "[nan]"
    text = f"[{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]"
    return text + (f" ({nan} nan)" if nan else "")


def json_ready(v):
    """`v` with arrays as lists, NumPy scalars as Python ones, NaN and infinities as None, keys as str.

    Examples
    --------
    >>> import numpy as np
    >>> json_ready({"a": np.array([1.0, np.nan]), 3: (np.int64(2), np.bool_(True), float("inf"))})
    {'a': [1.0, None], '3': [2, True, None]}
    """
    if isinstance(v, dict):
        return {str(k): json_ready(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [json_ready(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_ready(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v
