"""Helpers shared by the importers: the result record, replica detection, strict
field checks and the staged (all-or-nothing) output directory.

Every value an importer takes from a foreign file passes through
:func:`check_int` or :func:`int_array` before it is used: integers must be
integers (a float, a bool, a string or ``None`` is a ``TypeError``, never
truncated or coerced), and must fit the range of the log column they go to
(never wrapped).  Every message names where the value came from (file,
record, field), so a corrupt dump is found without a debugger.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from infomoe._validate import describe

__all__ = ["ImportResult", "content_key", "check_int", "int_array", "staged_log_dir", "write_log",
           "check_layer_ids", "check_num_experts", "MAX_LAYER_ID", "MAX_EXPERTS", "INT32_MAX", "INT64_MAX"]

try:  # the log format's own limits (layer ids: 9-digit file keys; experts: tables analyses can allocate)
    from infomoe.logs._manifest import MAX_EXPERTS, MAX_LAYER_ID
except ImportError:  # pragma: no cover - a format without named limits: the same numbers
    MAX_LAYER_ID = 10**9 - 1
    MAX_EXPERTS = 1 << 24
#: Largest value of the int32 log columns (``position``, ``token_id``, ``label``, ``rank``).
INT32_MAX = 2**31 - 1
#: Largest value of the int64 log columns (``seq_id``, ``step``).
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ImportResult:
    """What an importer wrote.

    Attributes
    ----------
    path : str
        The log directory.
    num_tokens : int
        Token rows written (token shards).
    num_count_records : int
        Aggregate count windows written (count-only sources).
    num_shards : int
        Shards committed.
    num_replicas_skipped : int
        Records dropped as replicas of records already imported (see each
        importer's merge rule).
    num_merged : int
        Records merged into the tokens of another record (pipeline stages of
        the same tokens, further micro-batch passes), default 0.
    """

    path: str
    num_tokens: int
    num_count_records: int
    num_shards: int
    num_replicas_skipped: int
    num_merged: int = 0


def content_key(*arrays) -> bytes:
    """Digest of the shapes, dtypes and bytes of ``arrays`` (identifies replicated records)."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.digest()


def _is_tensor(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _tensor_to_numpy(t, where: str) -> np.ndarray:
    import torch

    if t.dtype == torch.bool:
        raise TypeError(f"{where} must hold integers, got a bool tensor.")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{where} must hold integers, got a {t.dtype} tensor.")
    from infomoe.logs._writer import _to_numpy  # the one host-array conversion of the package

    try:
        return _to_numpy(t, where)
    except Exception as exc:  # dtypes NumPy lacks (and DLPack cannot carry): ours, never a foreign error
        raise TypeError(f"{where} has tensor dtype {t.dtype}, which has no NumPy equivalent ({exc}).") from None


def check_int(value, where: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """Return ``value`` as a Python int if it is exactly an integer within ``[minimum, maximum]``.

    Accepts Python and NumPy integers and 0-d integer arrays or tensors.
    Bools, floats (even ``3.0``), strings, ``None`` and containers are a
    ``TypeError``; an integer out of range is a ``ValueError``.  Both name
    ``where``.

    Examples
    --------
    >>> check_int(3, "record 0: 'step'")
    3
    >>> check_int(1.7, "record 0: 'step'")
    Traceback (most recent call last):
    ...
    TypeError: record 0: 'step' must be an integer, got 1.7.
    """
    if _is_tensor(value) or isinstance(value, np.ndarray):
        if tuple(value.shape) != ():
            raise TypeError(f"{where} must be an integer, got {describe(value)}.")
        try:
            a = _tensor_to_numpy(value, where) if _is_tensor(value) else value
        except TypeError:
            raise TypeError(f"{where} must be an integer, got {describe(value)}.") from None
        if a.dtype.kind not in "iu":
            raise TypeError(f"{where} must be an integer, got {describe(value)}.")
        value = a.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {describe(value)}.")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        lo = "" if minimum is None else f" >= {minimum}"
        hi = "" if maximum is None else f" <= {maximum}"
        raise ValueError(f"{where} must be an integer{lo}{' and' if lo and hi else ''}{hi}, got {describe(v)}.")
    return v


def _list_shape(x, ndim: int, where: str) -> tuple:
    """Shape of a regular nested list of integers ``ndim`` deep (TypeError/ValueError otherwise)."""
    shape = []
    level = [x]
    for depth in range(ndim):
        n = None
        nxt = []
        for item in level:
            if not isinstance(item, (list, tuple)):
                raise TypeError(f"{where} must be a {ndim}-D list of integers; at depth {depth} found "
                                f"{describe(item)}.")
            if n is None:
                n = len(item)
            elif len(item) != n:
                raise ValueError(f"{where} is ragged: rows of {n} and {len(item)} entries at depth {depth}.")
            nxt.extend(item)
        shape.append(n if n is not None else 0)
        level = nxt
        if not level:
            return tuple(shape) + (0,) * (ndim - depth - 1)
    for v in level:
        if type(v) is not int and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral)):
            raise TypeError(f"{where} must hold integers, found {describe(v)}.")
    return tuple(shape)


def int_array(value, where: str, *, ndim: int, minimum: Optional[int] = None,
              maximum: Optional[int] = None) -> np.ndarray:
    """Return ``value`` (list, array or tensor) as an ``int64`` array of exactly ``ndim`` dimensions.

    Bool, float, complex, string and object data are a ``TypeError`` (never
    truncated); ragged lists, a wrong number of dimensions and entries
    outside ``[minimum, maximum]`` or beyond ``int64`` (e.g. ``uint64``
    ``2**64 - 1``, never wrapped to ``-1``) are a ``ValueError``.  Messages
    name ``where``.

    Examples
    --------
    >>> int_array([[0, 1], [2, 3]], "top_indices", ndim=2).tolist()
    [[0, 1], [2, 3]]
    >>> int_array([[0, True]], "top_indices", ndim=2)
    Traceback (most recent call last):
    ...
    TypeError: top_indices must hold integers, found True.
    """
    if _is_tensor(value):
        a = _tensor_to_numpy(value, where)
    elif isinstance(value, np.ndarray):
        a = value
    elif isinstance(value, (list, tuple)):
        shape = _list_shape(value, ndim, where)
        if 0 in shape:
            return np.zeros(shape, np.int64)
        try:
            a = np.array(value, dtype=np.int64)
        except OverflowError:
            raise ValueError(f"{where} has an integer beyond the int64 range [-2**63, 2**63 - 1].") from None
    else:
        raise TypeError(f"{where} must be a {ndim}-D array or list of integers, got {describe(value)}.")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{where} must hold integers, got {describe(a)}.")
    if a.ndim != ndim:
        raise ValueError(f"{where} must be {ndim}-D, got shape {a.shape}.")
    if a.dtype.kind == "u" and a.size and int(a.max()) > INT64_MAX:
        raise ValueError(f"{where} has the unsigned value {int(a.max())}, beyond the int64 range "
                         "(it is not -1 or any other id).")
    a = a.astype(np.int64, copy=False)
    if a.size and ((minimum is not None and int(a.min()) < minimum)
                   or (maximum is not None and int(a.max()) > maximum)):
        bad = int(a.min()) if minimum is not None and int(a.min()) < minimum else int(a.max())
        idx = tuple(int(i) for i in np.argwhere(a == bad)[0])
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{where} has {bad} at index {list(idx)}, outside [{lo}, {hi}].")
    return a


def check_layer_ids(layer_ids, where: str) -> list:
    """Check that layer ids are distinct integers in ``[0, MAX_LAYER_ID]`` (what a log can name).

    Examples
    --------
    >>> check_layer_ids([1, 3], "`layer_ids`")
    [1, 3]
    >>> check_layer_ids([10**9], "`layer_ids`")
    Traceback (most recent call last):
    ...
    ValueError: `layer_ids`[0] must be an integer >= 0 and <= 999999999, got 1000000000.
    """
    out = [check_int(v, f"{where}[{i}]", minimum=0, maximum=MAX_LAYER_ID) for i, v in enumerate(layer_ids)]
    if len(set(out)) != len(out):
        dup = sorted({v for v in out if out.count(v) > 1})
        raise ValueError(f"{where} has duplicate layer ids {dup}.")
    return out


def check_num_experts(value, where: str) -> int:
    """Check an expert count: an integer in ``[1, MAX_EXPERTS]`` (checked before anything is allocated).

    Examples
    --------
    >>> check_num_experts(64, "`num_experts`")
    64
    """
    return check_int(value, where, minimum=1, maximum=MAX_EXPERTS)


@contextlib.contextmanager
def staged_log_dir(out) -> Iterator[Path]:
    """Yield a fresh directory beside ``out`` to write a log into; move it to ``out`` only on success.

    If the block raises, or the log it wrote cannot be opened with
    :func:`~infomoe.logs.open_log`, the staging directory is removed and
    nothing appears at ``out``: an import either produces a complete log or
    leaves no trace.  ``out`` must not exist, or be an empty directory.

    Examples
    --------
    >>> import os, tempfile
    >>> from infomoe.logs import LayerSpec, LogWriter
    >>> out = os.path.join(tempfile.mkdtemp(), "log")
    >>> try:
    ...     with staged_log_dir(out) as tmp, LogWriter(tmp, source="demo", layers=[LayerSpec(0, 4, 1)]) as w:
    ...         _ = w.append([[[0]], [[1]]])
    ...         raise ValueError("a bad record after one committed shard")
    ... except ValueError:
    ...     pass
    >>> os.path.exists(out), os.listdir(os.path.dirname(out))
    (False, [])
    """
    from infomoe.logs import LogFormatError, open_log

    out = Path(os.fspath(out))
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"`out` {os.fspath(out)!r} already exists and is not an empty directory; "
                              "choose a new directory for the log.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        try:
            open_log(tmp)
        except (LogFormatError, FileNotFoundError) as exc:  # pragma: no cover - a bug in an importer
            raise LogFormatError(f"the imported log cannot be opened ({exc}); nothing was written to "
                                 f"{os.fspath(out)!r}. Please report this as a bug of the importer.") from None
        try:
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
        except OSError as exc:  # another process filled `out` meanwhile
            raise FileExistsError(f"`out` {os.fspath(out)!r} was filled by someone else during the import "
                                  f"({exc}); nothing was written there.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_log(out, *, source: str, layers, blocks=(), counts=(), **manifest) -> tuple:
    """The shared writer of every importer: stage a log, append token blocks and count windows, commit.

    Parameters
    ----------
    out : str or os.PathLike
        Log directory to create (see :func:`staged_log_dir`).
    source, layers, **manifest
        :class:`~infomoe.logs.LogWriter` arguments (``topk_order``,
        ``metadata``, ...).
    blocks : iterable of (expert_ids, columns)
        Token shards: ``expert_ids`` (``{layer_id: (n, k)}`` or ``(n, L, k)``)
        and the per-token columns (``seq_id``, ``position``, ``token_id``,
        ``step``, ``rank``, ``router_logits``...); one shard each.  It is
        consumed inside the staged directory, so an error raised while it is
        produced leaves nothing at `out`.
    counts : iterable of (counts, columns)
        Count shards: ``(window, L, E)`` counts with ``step``/``rank``.

    Returns
    -------
    (tokens, windows, shards) : tuple of int

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from infomoe.logs import LayerSpec
    >>> out = os.path.join(tempfile.mkdtemp(), "log")
    >>> write_log(out, source="demo", layers=[LayerSpec(0, 4, 1)], blocks=[(np.array([[[1]], [[2]]]), {})])
    (2, 0, 1)
    """
    from infomoe.logs import LogWriter

    tokens = windows = shards = 0
    with staged_log_dir(out) as tmp, LogWriter(tmp, source=source, layers=layers, **manifest) as w:
        for ids, columns in blocks:
            w.append(ids, **columns)
            first = next(iter(ids.values())) if isinstance(ids, dict) else ids
            tokens += int(np.shape(first)[0])
            shards += 1
        for c, columns in counts:
            w.append_counts(c, **columns)
            windows += int(np.shape(c)[0]) if np.ndim(c) == 3 else 1
            shards += 1
    return tokens, windows, shards
