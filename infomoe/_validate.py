"""Input checks shared by every public function, and their error messages.

Every check raises ``TypeError`` (wrong kind of object) or ``ValueError``
(right kind, wrong value) with a message that names the argument, says what
was expected and what arrived.  Public functions call these *before* any
numba or JAX kernel runs, so kernels can assume clean input.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "describe",
    "reject_masked",
    "as_float_array",
    "as_labels",
    "as_counts",
    "as_probability_rows",
    "as_weights",
    "check_base",
    "log_base",
    "unit_name",
    "check_positive_int",
    "check_positive_float",
    "check_unit_interval",
    "check_same_length",
    "check_choice",
]

#: Default absolute tolerance for "rows sum to one".
ROW_SUM_ATOL = 1e-6


#: Longest string, and most list or tuple items, that :func:`describe` shows.
DESCRIBE_TEXT = 40
DESCRIBE_ITEMS = 4


def describe(value) -> str:
    """A short description of any value for an error message: never a huge or deep repr.

    Scalars and short strings appear as they are; an array or tensor as its
    type, shape and dtype; a list or tuple as its length and its first
    :data:`DESCRIBE_ITEMS` items (each described without descending further).

    Parameters
    ----------
    value : object
        Anything, including foreign objects (torch tensors, JSON values).

    Returns
    -------
    str
        One line of at most a few hundred characters.

    Examples
    --------
    >>> import numpy as np
    >>> describe(None), describe(3), describe("abc"), describe(10**400)
    ('None', '3', "str 'abc'", 'int of 401 digits')
    >>> describe(np.zeros((2, 3), np.float32))
    'ndarray of shape (2, 3) and dtype float32'
    >>> describe((np.zeros(4, np.int64), None))
    'a tuple of 2 items: (ndarray of shape (4,) and dtype int64, None)'
    >>> describe([[1, 2], [3], 4, 5, 6])
    'a list of 5 items: (a list of 2 items, a list of 1 item, 4, 5, ...)'
    """
    text = _describe_one(value)
    if isinstance(value, (list, tuple)) and len(value):
        items = ", ".join(_describe_one(v) for v in value[:DESCRIBE_ITEMS])
        text += f": ({items}{', ...' if len(value) > DESCRIBE_ITEMS else ''})"
    return text


def _describe_one(value) -> str:
    """:func:`describe` without the items of a list or tuple."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return repr(value)
    if isinstance(value, numbers.Number):
        text = repr(value)
        return text if len(text) <= DESCRIBE_TEXT else f"{type(value).__name__} of {len(text)} digits"
    if isinstance(value, (str, bytes)):
        text = repr(value[:DESCRIBE_TEXT])
        return f"{type(value).__name__} {text}" + ("..." if len(value) > DESCRIBE_TEXT else "")
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"a {type(value).__name__}"


def reject_masked(x, name: str) -> None:
    """Refuse a :class:`numpy.ma.MaskedArray`: ``np.asarray`` would silently drop
    its mask and count the masked entries as data."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"`{name}` is a numpy masked array; masks are not supported (the masked entries "
            f"would be counted as data). Drop the masked samples first, e.g. "
            f"`{name}.compressed()` for one array, or index every paired array with "
            f"`~np.ma.getmaskarray({name})`.")


def as_float_array(x, name: str, *, ndim: Optional[int | Sequence[int]] = None,
                   min_ndim: Optional[int] = None, allow_empty: bool = False,
                   finite: bool = True, dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a float array after checking type, shape and finiteness."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be an array of numbers, got {type(x).__name__}.")
    reject_masked(x, name)
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"`{name}` must hold numbers, got {describe(a)}.")
    if np.iscomplexobj(a):
        raise TypeError(f"`{name}` must be real, got complex {describe(a)}.")
    a = a.astype(dtype, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            raise ValueError(
                f"`{name}` must have {' or '.join(map(str, allowed))} dimension(s), "
                f"got {describe(a)}.")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s), got {describe(a)}.")
    if not allow_empty and a.size == 0:
        raise ValueError(f"`{name}` is empty ({describe(a)}); at least one value is needed.")
    if finite and a.size and not np.all(np.isfinite(a)):
        bad = "NaN" if np.isnan(a).any() else "inf"
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"`{name}` contains {bad} (first at index {idx}); all values must be finite.")
    return a


def as_labels(x, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 1-D ``int64`` array of non-negative integer labels.

    Integer-valued floats are accepted (``[0., 2.]``); ``[0.5]`` is rejected.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be an array of integer labels, got {type(x).__name__}.")
    reject_masked(x, name)
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one label per sample), got {describe(a)}.")
    if not allow_empty and a.size == 0:
        raise ValueError(f"`{name}` is empty; at least one sample is needed.")
    if a.dtype == bool:
        a = a.astype(np.int64)
    elif np.issubdtype(a.dtype, np.integer):
        pass
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` contains NaN or inf; labels must be integers.")
        if np.any(a != np.round(a)):
            raise TypeError(f"`{name}` must hold integer labels, got non-integer floats "
                            f"(e.g. {a[a != np.round(a)][0]!r}).")
    else:
        raise TypeError(f"`{name}` must hold integer labels, got {describe(a)}.")
    if a.size and a.min() < 0:
        raise ValueError(f"`{name}` has negative label {int(a.min())}; labels must be >= 0 "
                         "(remap them, e.g. with np.unique(x, return_inverse=True)).")
    if a.dtype != np.int64:
        a = a.astype(np.int64)
    return a


def as_counts(c, name: str, *, ndim: Optional[int | Sequence[int]] = None,
              min_ndim: Optional[int] = None, integer: bool = False,
              fix: str = "") -> np.ndarray:
    """Return a count table as float64 after checking it is finite and non-negative.

    With ``integer=True`` every entry must also be a whole number (``3.0`` is
    fine, ``0.2`` is not); ``fix`` is appended to that error message to say
    what to do instead (e.g. which function takes probabilities).
    """
    a = as_float_array(c, name, ndim=ndim, min_ndim=min_ndim)
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(f"`{name}` has a negative count {a[idx]!r} at index {idx}; counts must be >= 0.")
    integer_dtype = isinstance(c, np.ndarray) and c.dtype.kind in "biu"
    if integer and not integer_dtype:
        frac = a != np.round(a)
        if frac.any():
            idx = tuple(int(i) for i in np.argwhere(frac)[0])
            raise ValueError(
                f"`{name}` has a non-integer count {float(a[idx])!r} at index {idx}; counts "
                "must be non-negative integers (how often each outcome occurred)."
                + (f" {fix}" if fix else ""))
    return a


def as_probability_rows(p, name: str, *, atol: float = ROW_SUM_ATOL, min_ndim: int = 1) -> np.ndarray:
    """Check that the last axis of ``p`` holds probability distributions.

    Entries must be finite and in ``[0, 1]``, and every row must sum to one
    within ``atol``.  Returns a float64 array (not renormalised).
    """
    a = as_float_array(p, name, min_ndim=min_ndim)
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(f"`{name}` has a negative probability {a[idx]!r} at index {idx}.")
    s = a.sum(axis=-1)
    dev = np.abs(s - 1.0)
    if (dev > atol).any():
        idx = tuple(int(i) for i in np.argwhere(dev > atol)[0])
        raise ValueError(
            f"rows of `{name}` must sum to 1 (tolerance {atol:g}); row {idx} sums to {s[idx]!r}. "
            "Normalise with p / p.sum(axis=-1, keepdims=True).")
    return a


def as_weights(w, name: str, n: int, *, allow_zero_sum: bool = False) -> np.ndarray:
    """Non-negative finite weights of length ``n`` with a positive sum (or any sum if allowed)."""
    a = as_float_array(w, name, ndim=1)
    if a.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n} (one weight per sample/row), got {a.shape[0]}.")
    if (a < 0).any():
        raise ValueError(f"`{name}` has a negative weight {a[a < 0][0]!r}; weights must be >= 0.")
    if not allow_zero_sum and a.sum() <= 0:
        raise ValueError(f"`{name}` sums to zero; at least one weight must be positive.")
    return a


def check_base(base) -> float:
    """Validate a logarithm base (a positive number other than 1, or ``math.e``)."""
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"`base` must be a positive number other than 1 (2 = bits, e = nats), got {base!r}.")
    b = float(base)
    if not math.isfinite(b) or b <= 0 or b == 1.0:
        raise ValueError(f"`base` must be a positive number other than 1 (2 = bits, e = nats), got {base!r}.")
    return b


def log_base(base) -> float:
    """``ln(base)``: divide a value in nats by this to express it in ``base``."""
    return math.log(check_base(base))


def unit_name(base: float) -> str:
    """Human name of the unit for a logarithm base."""
    b = float(base)
    if b == 2.0:
        return "bits"
    if abs(b - math.e) < 1e-12:
        return "nats"
    if b == 10.0:
        return "hartleys"
    return f"log{b:g} units"


def check_positive_int(n, name: str, *, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {n!r}.")
    if n < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {n!r}.")
    return int(n)


def check_positive_float(x, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {x!r}.")
    v = float(x)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be a finite number {'>=' if allow_zero else '>'} 0, got {x!r}.")
    return v


def check_unit_interval(x, name: str, *, open_left: bool = True, open_right: bool = True) -> float:
    """A number in (0, 1) (ends included when ``open_*`` is False), e.g. ``delta``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"`{name}` must be a number in (0, 1), got {x!r}.")
    v = float(x)
    lo_ok = v > 0 if open_left else v >= 0
    hi_ok = v < 1 if open_right else v <= 1
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lb = "(" if open_left else "["
        rb = ")" if open_right else "]"
        raise ValueError(f"`{name}` must lie in {lb}0, 1{rb}, got {x!r}.")
    return v


def check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same length, "
                         f"got {a.shape[0]} and {b.shape[0]}.")


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value
