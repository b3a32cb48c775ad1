"""Writing routing logs: an append-only, crash-safe shard writer.

Every :meth:`LogWriter.append` commits one shard in four steps:

1. write each array as a ``.npy`` file into a fresh temporary directory
   ``shards/.tmp-<index>-<pid>-<random>``, checksumming the bytes as they are
   written, and ``fsync`` each file;
2. ``fsync`` the temporary directory and ``rename`` it to ``shards/<index>``
   (atomic on POSIX), then ``fsync`` ``shards/``;
3. write the new manifest to ``manifest.json.tmp-<pid>``, ``fsync`` it and
   ``os.replace`` it over ``manifest.json`` (atomic);
4. ``fsync`` the log directory.

A shard exists for readers only once step 3 has happened, so a writer killed
at any point (even ``SIGKILL``) leaves the previous manifest and every shard
it lists intact; what it leaves behind (a temporary directory, or a shard
directory the manifest does not list) is ignored by readers and removed by
the next ``LogWriter(..., resume=True)``.  One writer at a time holds an
exclusive ``flock`` on ``.writer.lock`` (released by the kernel if the
process dies).
"""

from __future__ import annotations

import dataclasses
import io
import numbers
import os
import re
import secrets
import shutil
import weakref
from typing import Mapping, Optional, Sequence

import numpy as np

from infomoe import __version__
from infomoe._validate import check_choice
from infomoe.logs._manifest import (
    CHECKSUMS,
    MANIFEST_NAME,
    SHARDS_DIR,
    FileRecord,
    LayerSpec,
    Manifest,
    ShardRecord,
    _checksum_hasher,
)

try:  # POSIX advisory locks; without them (Windows) only one writer must be used by contract
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["LogWriter", "write_log"]

LOCK_NAME = ".writer.lock"
_SHARD_NAME = re.compile(r"^[0-9]{8}$")

#: Stored dtype of the integer per-token columns.
_INT_COLUMNS = {"seq_id": np.int64, "position": np.int32, "token_id": np.int32,
                "label": np.int32, "step": np.int64, "rank": np.int32}


# ----------------------------------------------------------------------------- conversion
def _to_numpy(x, name: str) -> np.ndarray:
    """A NumPy view/copy of a NumPy, JAX or torch array (torch via ``.numpy()``/DLPack).

    torch tensors are detached and moved to the CPU; bfloat16 (which NumPy
    lacks) becomes float32, which represents every bfloat16 value exactly.
    """
    if isinstance(x, np.ndarray):
        a = x
    elif x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}.")
    elif type(x).__module__.split(".")[0] == "torch":
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        try:
            a = t.numpy()
        except (TypeError, RuntimeError):
            a = np.from_dlpack(t)
    else:
        try:
            a = np.asarray(x)
        except Exception:  # objects only speaking DLPack
            try:
                a = np.from_dlpack(x)
            except Exception as exc:
                raise TypeError(f"`{name}` could not be converted to a NumPy array: {exc}") from None
    if a.dtype.name == "bfloat16":  # ml_dtypes (JAX)
        a = a.astype(np.float32)
    if a.dtype.hasobject or a.dtype.fields is not None:
        raise TypeError(f"`{name}` has dtype {a.dtype}; object and structured arrays are not "
                        "allowed in routing logs (they would need pickle).")
    return a


def _check_int_array(a: np.ndarray, name: str) -> None:
    if not np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        raise TypeError(f"`{name}` must hold integers, got dtype {a.dtype}.")


_INT64_MAX = 2**63 - 1


def _checked_int_column(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as its column's stored integer dtype; a ValueError for values the dtype cannot hold."""
    _check_int_array(a, name)
    dt = np.dtype(_INT_COLUMNS[name])
    info = np.iinfo(dt)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise ValueError(f"`{name}` has values outside the {dt} range [{info.min}, {info.max}] "
                         f"(got {int(a.min())} .. {int(a.max())}).")
    return a.astype(dt, copy=False)


def _per_layer(value, name: str, layers: Sequence[LayerSpec], width) -> dict:
    """Split ``(N, L, w)`` or ``{layer_id: (N, w)}`` into ``{layer_id: array}``.

    ``width(spec)`` gives the expected trailing size of each layer.
    """
    ids = [s.layer_id for s in layers]
    if isinstance(value, Mapping):
        keys = [int(k) for k in value]
        missing = [i for i in ids if i not in keys]
        extra = [k for k in keys if k not in ids]
        if missing or extra:
            raise ValueError(f"`{name}` must have one entry per MoE layer {ids}; "
                             f"missing {missing}, unexpected {extra}.")
        out = {int(k): _to_numpy(v, f"{name}[{k}]") for k, v in value.items()}
        for spec in layers:
            a = out[spec.layer_id]
            if a.ndim == 1 and width(spec) == 1:
                a = a[:, None]
            if a.ndim != 2 or a.shape[1] != width(spec):
                raise ValueError(f"`{name}[{spec.layer_id}]` must have shape (N, {width(spec)}), "
                                 f"got {a.shape}.")
            out[spec.layer_id] = a
        return {i: out[i] for i in ids}
    a = _to_numpy(value, name)
    if a.ndim == 2 and len(layers) == 1:
        a = a[:, None, :]
    widths = {width(s) for s in layers}
    if a.ndim != 3 or a.shape[1] != len(layers):
        raise ValueError(f"`{name}` must have shape (N, {len(layers)}, w) with the layers in "
                         f"manifest order, or be a mapping {{layer_id: (N, w)}}; got shape {a.shape}.")
    if len(widths) != 1:
        raise ValueError(f"the layers have different widths {sorted(widths)} for `{name}`; pass a "
                         "mapping {layer_id: (N, w_l)} instead of one (N, L, w) array.")
    (w,) = widths
    if a.shape[2] != w:
        raise ValueError(f"`{name}` must have shape (N, {len(layers)}, {w}), got {a.shape}.")
    return {s.layer_id: a[:, i, :] for i, s in enumerate(layers)}


def _expert_id_dtype(layers: Sequence[LayerSpec]) -> np.dtype:
    """Smallest signed integer dtype holding ids ``-1 .. max num_experts - 1``."""
    top = max(s.num_experts for s in layers) - 1
    for dt in (np.int8, np.int16, np.int32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)  # pragma: no cover


def _float_dtype(a: np.ndarray, name: str, stored: Optional[str]) -> np.dtype:
    if not (np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"`{name}` must hold floating-point numbers, got dtype {a.dtype}.")
    if stored is not None:
        return np.dtype(stored)
    if a.dtype in (np.float16, np.float32, np.float64):
        return np.dtype(a.dtype).newbyteorder("<")
    return np.dtype("<f8")  # e.g. longdouble


def _scalar_or_column(value, name: str, n: int) -> np.ndarray:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        info = np.iinfo(_INT_COLUMNS.get(name, np.int64))
        if not info.min <= int(value) <= info.max:
            raise ValueError(f"`{name}` = {int(value)} is outside the {info.dtype} range "
                             f"[{info.min}, {info.max}] of its column.")
        return np.full(n, int(value), dtype=np.int64)
    a = _to_numpy(value, name)
    if a.ndim == 0:
        return np.full(n, a.item())
    return a


# ----------------------------------------------------------------------------- file I/O
def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_npy(path: str, arr: np.ndarray, algorithm: str, durable: bool) -> str:
    """Write ``arr`` as a version-1.0 ``.npy`` file; return its checksum."""
    arr = np.ascontiguousarray(arr)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    h = _checksum_hasher(algorithm)
    with open(path, "xb") as f:
        hb = head.getvalue()
        f.write(hb)
        h.update(hb)
        if arr.size:
            data = memoryview(arr.reshape(-1).view(np.uint8))
            f.write(data)
            h.update(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    return f"{algorithm}:{h.hexdigest()}"


# ----------------------------------------------------------------------------- writer
#: Writers holding a lock in this process; a fork()ed child closes its copies of their lock descriptors,
#: so that a child outliving the writer (e.g. a DataLoader worker) does not keep the log locked.
_OPEN_WRITERS: "weakref.WeakSet" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for w in list(_OPEN_WRITERS):
        w._forget_lock_in_child()
    _OPEN_WRITERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LogWriter:
    """Append-only writer of a routing log directory.

    Parameters
    ----------
    path : str or os.PathLike
        Log directory (created if missing).
    source : str
        What produced the records (``"pytorch"``, ``"sglang"``, ``"arrays"``...).
    layers : sequence of LayerSpec
        The MoE layers, in the order of the ``L`` axis of ``(N, L, k)`` inputs.
    model_id, score_function, topk_order, norm_topk_prob, expert_id_space, \
physical_to_logical, metadata
        Run metadata stored in the manifest (see :class:`Manifest`).
    resume : bool, default False
        Continue an existing log after its last committed shard (for example
        after a crash).  Without it, an existing log is an error.
    checksum : {"crc32", "sha256", "blake2b"}, default "crc32"
        Checksum of every shard file.
    durable : bool, default True
        ``fsync`` files and directories at each commit.  ``False`` keeps the
        atomic-rename protocol (so a killed *process* still leaves a valid
        log) but a power loss may lose recent shards.

    Notes
    -----
    Each :meth:`append`, :meth:`append_counts` or :meth:`append_tables` call commits exactly one
    shard and returns its index; the commit protocol is described in
    :mod:`infomoe.logs._writer`.  The set of token columns is fixed by the
    first :meth:`append`; later shards must provide the same columns.
    Stored dtypes: ``expert_ids`` the smallest signed integer holding
    ``num_experts - 1`` (``int8`` up to 127 experts), float columns keep the
    float dtype of the first shard (bfloat16 becomes float32), ``seq_id`` and
    ``step`` int64, ``position``, ``token_id``, ``label`` and ``rank`` int32,
    ``valid`` bool, ``counts`` int64.

    References
    ----------
    No paper; the commit protocol is the standard write/fsync/rename one.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import LayerSpec, LogWriter, open_log
    >>> d = os.path.join(tempfile.mkdtemp(), "log")
    >>> with LogWriter(d, source="demo", layers=[LayerSpec(0, 4, 2), LayerSpec(1, 4, 2)]) as w:
    ...     w.append(np.array([[[0, 1], [2, 3]], [[1, 2], [3, -1]]]), seq_id=[0, 0])
    0
    >>> log = open_log(d)
    >>> log.num_tokens, log.counts(1).tolist()
    (2, [0, 0, 1, 2])
    """

    def __init__(self, path, *, source: str, layers: Sequence[LayerSpec],
                 model_id: Optional[str] = None, score_function: str = "softmax",
                 topk_order: str = "descending", norm_topk_prob: Optional[bool] = None,
                 expert_id_space: str = "logical",
                 physical_to_logical: Optional[dict] = None, metadata: Optional[dict] = None,
                 resume: bool = False, checksum: str = "crc32", durable: bool = True):
        self.path = os.fspath(path)
        if checksum not in CHECKSUMS:
            raise ValueError(f"`checksum` must be one of {', '.join(map(repr, CHECKSUMS))}; "
                             f"got {checksum!r}.")
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"`layers` must be a sequence of LayerSpec, got {type(layers).__name__}.")
        specs = tuple(s if isinstance(s, LayerSpec) else LayerSpec(*s) for s in layers)
        wanted = Manifest(source=source, layers=specs, model_id=model_id,
                          score_function=score_function, topk_order=topk_order,
                          norm_topk_prob=norm_topk_prob, expert_id_space=expert_id_space,
                          physical_to_logical=physical_to_logical, metadata=metadata or {},
                          created_by=f"infomoe {__version__}", checksum=checksum)
        self._durable = bool(durable)
        self._closed = False
        self._lock_fd = None
        os.makedirs(os.path.join(self.path, SHARDS_DIR), exist_ok=True)
        self._acquire_lock()
        try:
            mpath = os.path.join(self.path, MANIFEST_NAME)
            if os.path.exists(mpath):
                if not resume:
                    raise FileExistsError(
                        f"{self.path!r} already holds a routing log; pass resume=True to append "
                        "to it, or choose a new directory.")
                with open(mpath, "rb") as f:
                    existing = Manifest.from_json(f.read())
                self._manifest = self._reconcile(existing, wanted)
            else:
                self._manifest = wanted
            self._cleanup()
            self._write_manifest(self._manifest)
        except BaseException:
            self._release_lock()
            raise

    # -- lifecycle ---------------------------------------------------------------
    def _acquire_lock(self) -> None:
        fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RuntimeError(f"another LogWriter is writing to {self.path!r} "
                                   "(its .writer.lock is held); one writer per log.") from None
        self._lock_fd = fd
        _OPEN_WRITERS.add(self)

    def _forget_lock_in_child(self) -> None:
        """In a ``fork()``ed child: close the inherited copy of the lock descriptor (the parent still
        holds the lock through its own) and refuse to write from the child."""
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            except OSError:  # pragma: no cover
                pass
            self._lock_fd = None
        self._closed = True
        self._forked = True

    def _release_lock(self) -> None:
        _OPEN_WRITERS.discard(self)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @staticmethod
    def _reconcile(existing: Manifest, wanted: Manifest) -> Manifest:
        for name in ("source", "layers", "model_id", "score_function", "topk_order",
                     "norm_topk_prob", "expert_id_space", "physical_to_logical", "checksum"):
            a, b = getattr(existing, name), getattr(wanted, name)
            if a != b:
                raise ValueError(f"cannot resume: the existing log has {name}={a!r} but this "
                                 f"writer was given {name}={b!r}.")
        meta = dict(existing.metadata)
        meta.update(wanted.metadata)
        return dataclasses.replace(existing, metadata=meta, complete=False)

    def _cleanup(self) -> None:
        """Remove what a killed writer left: temp dirs and shards the manifest does not list."""
        listed = {s.path.split("/")[-1] for s in self._manifest.shards}
        sdir = os.path.join(self.path, SHARDS_DIR)
        for name in os.listdir(sdir):
            full = os.path.join(sdir, name)
            if name.startswith(".tmp-") or (_SHARD_NAME.match(name) and name not in listed):
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
        for name in os.listdir(self.path):
            if name.startswith(MANIFEST_NAME + ".tmp-"):
                os.unlink(os.path.join(self.path, name))

    def close(self) -> None:
        """Mark the log complete in the manifest and release the writer lock."""
        if self._closed:
            return
        try:
            self._manifest = dataclasses.replace(self._manifest, complete=True)
            self._write_manifest(self._manifest)
        finally:
            self._closed = True
            self._release_lock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # keep the committed shards; the log stays marked incomplete (resumable)
            self._closed = True
            self._release_lock()
        return False

    def __del__(self):  # pragma: no cover - best effort
        try:
            self._release_lock()
        except Exception:
            pass

    # -- state -------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The manifest as last committed."""
        return self._manifest

    @property
    def num_shards(self) -> int:
        return len(self._manifest.shards)

    @property
    def num_tokens(self) -> int:
        return self._manifest.num_tokens

    def __repr__(self) -> str:
        return (f"LogWriter({self.path!r}, shards={self.num_shards}, tokens={self.num_tokens}, "
                f"closed={self._closed})")

    # -- appending ---------------------------------------------------------------
    def append(self, expert_ids, *, gate_weights=None, router_logits=None, seq_id=None,
               position=None, valid=None, token_id=None, label=None, step=None,
               rank=None) -> int:
        """Commit one shard of per-token routing records; return its index.

        Parameters
        ----------
        expert_ids : array (N, L, k) or mapping {layer_id: (N, k_l)}
            Chosen expert ids per token and layer (layers in manifest order);
            ``-1`` marks a dropped or padded choice.
        gate_weights : same layout as `expert_ids`, float, optional
            The gate weights actually applied to the chosen experts.
        router_logits : array (N, L, E) or mapping {layer_id: (N, E_l)}, optional
            Raw router logits (NaN refused, +-inf allowed for masked experts).
        seq_id, position, valid, token_id, label : 1-D arrays of length N, optional
            Per-token columns.  ``valid`` is a boolean mask (False = padding);
            ``label`` is any integer class or domain, ``-1`` for unlabelled.
        step, rank : int or 1-D array of length N, optional
            Training/serving step and data-parallel rank; a scalar applies to
            every token.

        Returns
        -------
        int
            Index of the committed shard.
        """
        self._check_open()
        m = self._manifest
        n, columns, arrays = self._token_arrays(expert_ids, gate_weights=gate_weights, router_logits=router_logits,
                                                seq_id=seq_id, position=position, valid=valid, token_id=token_id,
                                                label=label, step=step, rank=rank)
        if m.columns and set(columns) != set(m.columns):
            missing = sorted(set(m.columns) - set(columns))
            extra = sorted(set(columns) - set(m.columns))
            raise ValueError("every token shard must have the same columns as the first: "
                             f"missing {missing}, unexpected {extra}.")
        new_manifest = m if m.columns else dataclasses.replace(m, columns=columns)
        return self._commit(new_manifest, "tokens", n, arrays)

    def _token_arrays(self, expert_ids, *, gate_weights, router_logits, seq_id, position, valid, token_id,
                      label, step, rank):
        """The checked arrays of :meth:`append` (``"column.layer"`` keys) and the dtypes they are stored in."""
        m = self._manifest
        ids = _per_layer(expert_ids, "expert_ids", m.layers, lambda s: s.top_k)
        n = next(iter(ids.values())).shape[0]
        if n == 0:
            raise ValueError("`expert_ids` has no tokens (N = 0); nothing to append.")
        arrays: dict = {}
        id_dtype = np.dtype(m.columns.get("expert_ids", _expert_id_dtype(m.layers)))
        for spec in m.layers:
            a = ids[spec.layer_id]
            if a.shape[0] != n:
                raise ValueError(f"`expert_ids[{spec.layer_id}]` has {a.shape[0]} tokens, "
                                 f"expected {n} like the other layers.")
            _check_int_array(a, f"expert_ids[{spec.layer_id}]")
            lo, hi = int(a.min()), int(a.max())
            if lo < -1 or hi >= spec.num_experts:
                bad = lo if lo < -1 else hi
                raise ValueError(f"`expert_ids` for layer {spec.layer_id} has id {bad}; ids must "
                                 f"lie in [0, {spec.num_experts - 1}] or be -1 (dropped/padded).")
            arrays[f"expert_ids.{spec.layer_id}"] = np.ascontiguousarray(a, dtype=id_dtype)
        columns = {"expert_ids": id_dtype.str}

        for name, value, width in (("gate_weights", gate_weights, lambda s: s.top_k),
                                   ("router_logits", router_logits, lambda s: s.num_experts)):
            if value is None:
                continue
            per = _per_layer(value, name, m.layers, width)
            stored = None
            for spec in m.layers:
                a = per[spec.layer_id]
                if a.shape[0] != n:
                    raise ValueError(f"`{name}[{spec.layer_id}]` has {a.shape[0]} tokens, "
                                     f"expected {n} like `expert_ids`.")
                stored = _float_dtype(a, f"{name}[{spec.layer_id}]", m.columns.get(name) or stored)
                a = np.ascontiguousarray(a, dtype=stored)  # one copy, reused by the file write
                if name == "gate_weights" and not np.isfinite(a).all():
                    what = "NaN" if np.isnan(a).any() else "inf"
                    raise ValueError(f"`gate_weights` for layer {spec.layer_id} contains {what}; "
                                     "gate weights must be finite.")
                if name == "router_logits" and np.isnan(a).any():
                    raise ValueError(f"`router_logits` for layer {spec.layer_id} contains NaN.")
                arrays[f"{name}.{spec.layer_id}"] = a
            columns[name] = stored.str

        for name, value in (("seq_id", seq_id), ("position", position), ("valid", valid),
                            ("token_id", token_id), ("label", label), ("step", step),
                            ("rank", rank)):
            if value is None:
                continue
            if name in ("step", "rank"):
                a = _scalar_or_column(value, name, n)
            else:
                a = _to_numpy(value, name)
            if a.ndim != 1 or a.shape[0] != n:
                raise ValueError(f"`{name}` must be 1-D with one entry per token ({n}), "
                                 f"got shape {a.shape}.")
            if name == "valid":
                if a.dtype != bool:
                    _check_int_array(a, "valid")
                    if ((a != 0) & (a != 1)).any():
                        raise ValueError("`valid` must be boolean (or 0/1).")
                arrays["valid"] = a.astype(bool, copy=False)
                columns["valid"] = np.dtype(bool).str
                continue
            arrays[name] = _checked_int_column(a, name)
            columns[name] = arrays[name].dtype.str
        return n, columns, arrays

    def append_counts(self, counts, *, step=None, rank=None) -> int:
        """Commit one aggregate-only count record; return its shard index.

        Parameters
        ----------
        counts : array (L, E) or (window, L, E), or mapping {layer_id: (E_l,) or (window, E_l)}
            Non-negative integer counts of (token, chosen expert) pairs per
            layer and expert, for sources that keep only counts (SGLang
            ``stat`` mode, DeepSpeed ``exp_counts``).
        step, rank : int or 1-D array of length window, optional
            Step and rank of each window.

        Returns
        -------
        int
            Index of the committed shard.
        """
        self._check_open()
        m = self._manifest
        if isinstance(counts, Mapping):
            per = {}
            for k, v in counts.items():
                a = _to_numpy(v, f"counts[{k}]")
                per[k] = a[None, :] if a.ndim == 1 else a
            per = _per_layer(per, "counts", m.layers, lambda s: s.num_experts)
        else:
            a = _to_numpy(counts, "counts")
            if a.ndim == 2:
                a = a[None]
            if a.ndim != 3 or a.shape[1] != len(m.layers):
                raise ValueError(f"`counts` must have shape (L, E) or (window, L, E) with "
                                 f"L = {len(m.layers)} layers, got {a.shape}.")
            per = {s.layer_id: a[:, i, :] for i, s in enumerate(m.layers)}
            for s in m.layers:
                if a.shape[2] != s.num_experts:
                    raise ValueError(f"`counts` has {a.shape[2]} experts but layer {s.layer_id} "
                                     f"has {s.num_experts}; pass a mapping for ragged layers.")
        w = next(iter(per.values())).shape[0]
        if w == 0:
            raise ValueError("`counts` has no windows; nothing to append.")
        arrays = {}
        for s in m.layers:
            a = per[s.layer_id]
            if a.shape[0] != w:
                raise ValueError(f"`counts[{s.layer_id}]` has {a.shape[0]} windows, expected {w}.")
            if np.issubdtype(a.dtype, np.floating):
                if not np.isfinite(a).all() or (a != np.round(a)).any():
                    raise TypeError(f"`counts[{s.layer_id}]` must hold integer counts.")
            else:
                _check_int_array(a, f"counts[{s.layer_id}]")
            if (a < 0).any():
                raise ValueError(f"`counts[{s.layer_id}]` has a negative count {a.min()}; "
                                 "counts must be >= 0.")
            if a.size and int(a.max()) > _INT64_MAX:
                raise ValueError(f"`counts[{s.layer_id}]` has a count {a.max()} beyond 2**63 - 1; "
                                 "split it over several records.")
            arrays[f"counts.{s.layer_id}"] = a.astype(np.int64)
        for name, value in (("step", step), ("rank", rank)):
            if value is None:
                continue
            a = _scalar_or_column(value, name, w)
            if a.ndim != 1 or a.shape[0] != w:
                raise ValueError(f"`{name}` must be a scalar or have one entry per window ({w}), "
                                 f"got shape {a.shape}.")
            arrays[name] = _checked_int_column(a, name)
        return self._commit(m, "counts", w, arrays)

    def append_tables(self, tables, spec) -> int:
        """Commit the count tables of the report (a ``"tables"`` record); return its shard index.

        A recorder in counts mode (``RoutingRecorder(..., mode="counts")``)
        accumulates these tables on the model's device instead of writing
        every token; :func:`~infomoe.logs.analyze_log` adds them to the
        tables it counts from token shards, so the report is the one the
        token log of the same run would give.

        Parameters
        ----------
        tables : LogTables
            Tables of the tokens seen since the last record.
        spec : CountSpec
            What they count; its layers must be layers of this log.

        Returns
        -------
        int
            Index of the committed shard.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from infomoe.logs import CountSpec, LayerSpec, LogWriter, analyze_log, count_shard
        >>> d = os.path.join(tempfile.mkdtemp(), "log")
        >>> with LogWriter(d, source="demo", layers=[LayerSpec(0, 4, 1)]) as w:
        ...     spec = CountSpec.from_manifest(w.manifest)
        ...     _ = w.append_tables(count_shard({"expert_ids": {0: np.array([[0], [3], [3]])}}, spec=spec), spec)
        >>> analyze_log(d, intervals=False).load[0].tolist()
        [1, 0, 0, 2]
        """
        from infomoe.logs._tables import CountSpec, LogTables, tables_to_arrays

        self._check_open()
        if not isinstance(tables, LogTables):
            raise TypeError(f"`tables` must be LogTables, got {type(tables).__name__}.")
        if not isinstance(spec, CountSpec):
            raise TypeError(f"`spec` must be a CountSpec, got {type(spec).__name__}.")
        m = self._manifest
        for s in spec.layers:
            have = m.layer(s.layer_id)  # ValueError for a layer the log does not have
            lut = spec.luts[spec.layers.index(s)]
            if lut is None and (have.num_experts, have.top_k) != (s.num_experts, s.top_k):
                raise ValueError(f"`spec` layer {s.layer_id} has {s.num_experts} experts, top-{s.top_k}; "
                                 f"the log says {have.num_experts}, top-{have.top_k}.")
        if len(tables.load) != len(spec.layers):
            raise ValueError(f"`tables` has {len(tables.load)} layers but `spec` {len(spec.layers)}.")
        return self._commit(m, "tables", int(tables.tokens), tables_to_arrays(tables, spec))

    # -- commit ------------------------------------------------------------------
    def _check_open(self) -> None:
        if getattr(self, "_forked", False):
            raise RuntimeError(f"this LogWriter for {self.path!r} was opened by the parent of this forked "
                               "process; write from the parent (or open a writer of its own in the child).")
        if self._closed:
            raise ValueError(f"this LogWriter for {self.path!r} is closed; open a new one with "
                             "resume=True to append more.")

    def _commit(self, manifest: Manifest, kind: str, rows: int, arrays: dict) -> int:
        index = len(manifest.shards)
        name = f"{index:08d}"
        sdir = os.path.join(self.path, SHARDS_DIR)
        final = os.path.join(sdir, name)
        tmp = os.path.join(sdir, f".tmp-{name}-{os.getpid()}-{secrets.token_hex(4)}")
        os.mkdir(tmp)
        renamed = False
        try:
            files = []
            for key, arr in arrays.items():
                cs = _write_npy(os.path.join(tmp, f"{key}.npy"), arr, manifest.checksum,
                                self._durable)
                files.append(FileRecord(key=key, dtype=np.dtype(arr.dtype).str,
                                        shape=tuple(int(v) for v in arr.shape), checksum=cs))
            if self._durable:
                _fsync_dir(tmp)
            if os.path.lexists(final):  # an uncommitted leftover (not in the manifest)
                shutil.rmtree(final)
            os.rename(tmp, final)
            renamed = True
            if self._durable:
                _fsync_dir(sdir)
            record = ShardRecord(index=index, path=f"{SHARDS_DIR}/{name}", kind=kind, rows=rows,
                                 files=tuple(files))
            new_manifest = manifest.with_shard(record)
            self._write_manifest(new_manifest)
        except BaseException:
            shutil.rmtree(final if renamed else tmp, ignore_errors=True)
            raise
        self._manifest = new_manifest
        return index

    def _write_manifest(self, manifest: Manifest) -> None:
        text = manifest.to_json().encode("utf-8")
        final = os.path.join(self.path, MANIFEST_NAME)
        tmp = f"{final}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            if self._durable:
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if self._durable:
            _fsync_dir(self.path)


# ----------------------------------------------------------------------------- one-shot
def write_log(path, expert_ids, *, source: str = "arrays", layers=None, num_experts=None,
              gate_weights=None, router_logits=None, seq_id=None, position=None, valid=None,
              token_id=None, label=None, step=None, rank=None, shard_tokens: int = 1 << 20,
              mode: str = "ids", count_options: Optional[dict] = None, **writer_kwargs):
    """Write arrays from any framework (NumPy, JAX, torch) as a routing log in one call.

    Parameters
    ----------
    path : str or os.PathLike
        New log directory.
    expert_ids : array (N, L, k) or (N, k), or mapping {layer_id: (N, k_l)}
        Chosen expert ids, ``-1`` for dropped/padded.
    source : str, default "arrays"
        Recorded in the manifest.
    layers : sequence of LayerSpec, optional
        Default: layer ids ``0..L-1`` (or the mapping's keys), ``top_k`` from
        the trailing size and ``num_experts`` from `num_experts`, else from
        ``router_logits``, else ``max(expert_ids) + 1`` (a lower bound when
        some experts were never chosen: pass `num_experts`).
    num_experts : int or sequence of int, optional
        Experts per layer, when `layers` is not given.
    gate_weights, router_logits, seq_id, position, valid, token_id, label, step, rank
        As in :meth:`LogWriter.append`.
    shard_tokens : int, default 2**20
        Tokens per shard (in counts mode: per counted slice).
    mode : {"ids", "counts"}, default "ids"
        ``"ids"`` writes token shards.  ``"counts"`` writes only the count
        tables of the report (one ``"tables"`` record, see
        :meth:`LogWriter.append_tables`), counted from the same checked
        arrays: its report equals that of the ``"ids"`` log.
    count_options : dict, optional
        Counts mode: settings of the tables, as for
        :meth:`CountSpec.from_manifest` (``token_buckets``, ``position_edges``,
        ``label_buckets``, ``max_set_alphabet``, ``groups``).
    **writer_kwargs
        Passed to :class:`LogWriter` (``model_id``, ``score_function``...).

    Returns
    -------
    RoutingLog
        The written log, opened.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log
    >>> ids = np.array([[0, 1], [1, 2], [2, 3]])          # 3 tokens, 1 layer, top-2
    >>> log = write_log(os.path.join(tempfile.mkdtemp(), "log"), ids, num_experts=4)
    >>> log.layers
    (LayerSpec(layer_id=0, num_experts=4, top_k=2),)
    >>> log.counts(0).tolist()
    [1, 2, 2, 1]
    """
    from infomoe.logs._reader import open_log

    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, numbers.Integral) \
            or shard_tokens < 1:
        raise ValueError(f"`shard_tokens` must be a positive integer, got {shard_tokens!r}.")
    if isinstance(expert_ids, Mapping):
        ids_map = {int(k): _to_numpy(v, f"expert_ids[{k}]") for k, v in expert_ids.items()}
        ids_map = {k: (v[:, None] if v.ndim == 1 else v) for k, v in ids_map.items()}
        layer_ids = list(ids_map)
        widths = [ids_map[k].shape[-1] for k in layer_ids]
        data = ids_map
        n = next(iter(ids_map.values())).shape[0] if ids_map else 0
    else:
        data = _to_numpy(expert_ids, "expert_ids")
        if data.ndim == 2:
            data = data[:, None, :]
        if data.ndim != 3:
            raise ValueError(f"`expert_ids` must have shape (N, L, k) or (N, k), got {data.shape}.")
        layer_ids = list(range(data.shape[1]))
        widths = [data.shape[2]] * data.shape[1]
        n = data.shape[0]
    if layers is None:
        if not layer_ids:
            raise ValueError("`expert_ids` has no layers.")
        if num_experts is None and router_logits is not None:
            rl = (router_logits if isinstance(router_logits, Mapping)
                  else _to_numpy(router_logits, "router_logits"))
            if isinstance(rl, Mapping):
                num_experts = [_to_numpy(rl[k], "router_logits").shape[-1] for k in layer_ids]
            else:
                num_experts = rl.shape[-1]
        if num_experts is None:
            vals = (list(data.values()) if isinstance(data, dict)
                    else [data[:, i] for i in range(data.shape[1])])
            num_experts = [max(int(np.max(v)) + 1, w) if v.size else w
                           for v, w in zip(vals, widths)]
        if isinstance(num_experts, numbers.Integral):
            num_experts = [int(num_experts)] * len(layer_ids)
        num_experts = list(num_experts)
        if len(num_experts) != len(layer_ids):
            raise ValueError(f"`num_experts` has {len(num_experts)} entries for "
                             f"{len(layer_ids)} layers.")
        layers = [LayerSpec(int(lid), int(e), int(w))
                  for lid, e, w in zip(layer_ids, num_experts, widths)]
    extras = {"gate_weights": gate_weights, "router_logits": router_logits, "seq_id": seq_id,
              "position": position, "valid": valid, "token_id": token_id, "label": label,
              "step": step, "rank": rank}

    def _slice(value, a, b):
        if value is None or isinstance(value, numbers.Integral):
            return value
        if isinstance(value, Mapping):
            return {k: _to_numpy(v, "array")[a:b] for k, v in value.items()}
        return _to_numpy(value, "array")[a:b]

    if n == 0:
        raise ValueError("`expert_ids` has no tokens (N = 0); nothing to write.")
    check_choice(mode, "mode", ("ids", "counts"))
    if count_options is not None and mode != "counts":
        raise ValueError('`count_options` applies to mode="counts" only.')
    with LogWriter(path, source=source, layers=layers, **writer_kwargs) as w:
        if mode == "counts":
            _write_tables(w, n, shard_tokens, count_options,
                          lambda a, b: w._token_arrays(_slice(data, a, b),
                                                       **{k: _slice(v, a, b) for k, v in extras.items()})[2])
        else:
            for a in range(0, n, shard_tokens):
                b = min(n, a + shard_tokens)
                w.append(_slice(data, a, b), **{k: _slice(v, a, b) for k, v in extras.items()})
    return open_log(path)


def _write_tables(writer: LogWriter, n: int, step: int, count_options, arrays_of) -> None:
    """Count tokens ``[0, n)`` slice by slice (``arrays_of(a, b)``: checked arrays) into one tables record."""
    from infomoe.logs._reader import chunk_of_arrays
    from infomoe.logs._tables import CountSpec, _Accumulator

    spec = CountSpec.from_manifest(writer.manifest, **dict(count_options or {}))
    acc = _Accumulator(spec)
    for a in range(0, n, step):
        acc.count({**chunk_of_arrays(arrays_of(a, min(n, a + step))), "offset": a})
    tables = acc.result()
    if not tables.tokens:
        raise ValueError("every token is padding (`valid` is all False); there is nothing to count.")
    writer.append_tables(tables, spec)
