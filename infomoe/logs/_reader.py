"""Reading routing logs: lazy, memory-mapped, chunked, layer/column selection.

:func:`open_log` parses and validates the manifest only; arrays are mapped
when a shard is first read.  Each ``.npy`` file is mapped read-only with
:mod:`mmap` at the data offset given by its header (parsed with NumPy's
literal-eval header reader, never unpickled; object dtypes are refused), so
selecting a layer or a column touches only its files.  After each chunk the
reader tells the kernel it no longer needs the pages it read
(``madvise(MADV_DONTNEED)``): the data stay in the page cache but leave the
process's resident set, so streaming a log of any size keeps the reader's
memory bounded by the chunk size, not the shard size.
"""

from __future__ import annotations

import mmap
import os
import warnings
from typing import Iterable, Iterator, Optional

import numpy as np

from infomoe._validate import check_choice
from infomoe.logs._manifest import (
    MANIFEST_NAME,
    PER_LAYER_COLUMNS,
    TOKEN_COLUMNS,
    FileRecord,
    LogFormatError,
    Manifest,
    ShardError,
    ShardRecord,
    checksum_file,
)

__all__ = ["RoutingLog", "open_log"]

_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
#: Largest .npy header accepted (NumPy's own default limit).
_MAX_HEADER = 10000


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


class _Mapped:
    """One memory-mapped ``.npy`` file: the array and the mapping behind it."""

    __slots__ = ("array", "mm", "offset", "row_bytes")

    def __init__(self, array, mm, offset, row_bytes):
        self.array = array
        self.mm = mm
        self.offset = offset
        self.row_bytes = row_bytes

    def release(self, start_row: int = 0, stop_row: Optional[int] = None) -> None:
        """Drop the pages of rows ``[start_row, stop_row)`` from the resident set."""
        if self.mm is None or _DONTNEED is None:
            return
        stop_row = self.array.shape[0] if stop_row is None else stop_row
        a = (self.offset + start_row * self.row_bytes) // _PAGE * _PAGE
        b = (self.offset + stop_row * self.row_bytes) // _PAGE * _PAGE
        if stop_row >= self.array.shape[0]:
            b = len(self.mm)
        if b > a:
            try:
                self.mm.madvise(_DONTNEED, a, b - a)
            except (OSError, ValueError):  # pragma: no cover - advisory only
                pass


def _read_header(f, name: str):
    """``(shape, fortran_order, dtype)`` of an open ``.npy`` file; ValueError for any damage.

    NumPy's header reader falls back to a tokenizer on headers it cannot parse
    and can then raise almost anything (``tokenize.TokenError``,
    ``IndexError``, ``MemoryError``...): every failure here is a damaged
    header, reported as such.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
        raise ValueError(f"unsupported .npy version {version}")
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged header, whatever numpy's parser raised
        raise ValueError(f"{name} has a corrupted or truncated .npy header "
                         f"({type(exc).__name__}: {exc})") from None


def _check_npy(path: str, rec: FileRecord) -> None:
    """Header, dtype, shape and size of a ``.npy`` file against its record, without reading the data."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        _check_header(f, name, rec)


def _check_header(f, name: str, rec: FileRecord):
    shape, fortran, dtype = _read_header(f, name)
    if dtype.hasobject or dtype.fields is not None:
        raise ValueError(f"{name} holds dtype {dtype}; object arrays are refused "
                         "(they would need pickle)")
    if fortran:
        raise ValueError(f"{name} is Fortran-ordered; routing logs store C order")
    if dtype.str != rec.dtype or tuple(shape) != tuple(rec.shape):
        raise ValueError(f"{name} holds {dtype.str} {tuple(shape)}, the manifest says "
                         f"{rec.dtype} {tuple(rec.shape)}")
    offset = f.tell()
    size = os.fstat(f.fileno()).st_size
    if size != offset + rec.nbytes:
        what = "truncated" if size < offset + rec.nbytes else "longer than its header says"
        raise ValueError(f"{name} is {what}: {size} bytes, expected {offset + rec.nbytes}")
    return shape, dtype, offset


def _map_npy(path: str, rec: FileRecord) -> _Mapped:
    """Map a ``.npy`` file read-only after checking it against its manifest record."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        shape, dtype, offset = _check_header(f, name, rec)
        nbytes = rec.nbytes
        if nbytes == 0:
            return _Mapped(np.empty(shape, dtype), None, offset, 0)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arr = np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset)
    row = nbytes // shape[0] if shape and shape[0] else 0  # 0-d arrays: stored tables' scalars
    return _Mapped(arr, mm, offset, row)


def chunk_of_arrays(arrays: dict) -> dict:
    """A chunk dict from arrays keyed as shard files are (``"column.layer_id"`` or ``"column"``):
    per-layer columns become ``{layer_id: array}`` mappings."""
    chunk: dict = {}
    for key, arr in arrays.items():
        col, _, lid = key.partition(".")
        if lid:
            chunk.setdefault(col, {})[int(lid)] = arr
        else:
            chunk[col] = arr
    return chunk


class RoutingLog:
    """A routing log opened for reading (use :func:`open_log`).

    Attributes
    ----------
    path : str
        The log directory.
    manifest : Manifest
        The validated manifest.
    verify : bool
        Whether shard checksums are verified when a shard is first read.
    """

    def __init__(self, path, manifest: Manifest, *, verify: bool = False):
        self.path = os.fspath(path)
        self.manifest = manifest
        self.verify = bool(verify)
        self._root = os.path.realpath(self.path)
        self._verified: set = set()

    # -- description -------------------------------------------------------------
    @property
    def layers(self) -> tuple:
        """The MoE layers (:class:`LayerSpec`), in manifest order."""
        return self.manifest.layers

    @property
    def layer_ids(self) -> tuple:
        return self.manifest.layer_ids

    @property
    def shards(self) -> tuple:
        """Every committed shard (:class:`ShardRecord`), token shards and count records."""
        return self.manifest.shards

    @property
    def num_tokens(self) -> int:
        """Tokens in the token shards."""
        return self.manifest.num_tokens

    @property
    def columns(self) -> dict:
        """``{column: dtype string}`` of the token shards."""
        return dict(self.manifest.columns)

    @property
    def complete(self) -> bool:
        """False if the writer has not been closed (still writing, or killed)."""
        return self.manifest.complete

    @property
    def nbytes(self) -> int:
        """Bytes of array data in all shards."""
        return sum(s.nbytes for s in self.shards)

    def __repr__(self) -> str:
        counted = sum(s.rows for s in self.shards if s.kind == "tables")
        return (f"RoutingLog({self.path!r}, source={self.manifest.source!r}, "
                f"layers={len(self.layers)}, tokens={self.num_tokens}, "
                f"{f'counted tokens={counted}, ' if counted else ''}shards={len(self.shards)}"
                f"{'' if self.complete else ', incomplete'})")

    # -- shard access --------------------------------------------------------------
    def _shard_dir(self, shard: ShardRecord) -> str:
        d = os.path.join(self.path, *shard.path.split("/"))
        if not _inside(self._root, d):
            raise ShardError(shard.index, shard.path,
                             "resolves outside the log directory (symlink?); refused")
        return d

    def _file_path(self, shard: ShardRecord, rec: FileRecord) -> str:
        p = os.path.join(self._shard_dir(shard), rec.filename)
        if not _inside(self._root, p):
            raise ShardError(shard.index, shard.path,
                             f"{rec.filename} resolves outside the log directory; refused")
        if not os.path.isfile(p):
            raise ShardError(shard.index, shard.path, f"{rec.filename} is missing")
        return p

    def verify_shard(self, index: int) -> None:
        """Check every file of shard `index` against its checksum.

        Raises
        ------
        ShardError
            Naming the shard and the first file that is missing or whose
            checksum differs.
        """
        shard = self._shard(index)
        for rec in shard.files:  # sizes and headers first: they are cheap and catch most damage
            try:
                _check_npy(self._file_path(shard, rec), rec)
            except ShardError:
                raise
            except (ValueError, OSError) as exc:
                raise ShardError(shard.index, shard.path, str(exc)) from None
        for rec in shard.files:
            p = self._file_path(shard, rec)
            algorithm = rec.checksum.split(":")[0]
            got = checksum_file(p, algorithm)
            if got != rec.checksum:
                raise ShardError(shard.index, shard.path,
                                 f"{rec.filename} is corrupted: checksum {got}, manifest "
                                 f"{rec.checksum}")
        self._verified.add(index)

    def check(self, *, verify: bool = True) -> tuple:
        """Check every shard; return the problems found (empty tuple if none).

        Parameters
        ----------
        verify : bool, default True
            Also compare checksums (reads every byte); otherwise only
            presence, headers, dtypes, shapes and sizes are checked.

        Returns
        -------
        tuple of ShardError
        """
        problems = []
        for s in self.shards:
            try:
                self._open_files(s, None, None, verify=verify)
            except ShardError as exc:
                problems.append(exc)
        return tuple(problems)

    def _shard(self, index: int) -> ShardRecord:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"`index` must be a shard index, got {index!r}.")
        if not 0 <= index < len(self.shards):
            raise IndexError(f"shard {index} does not exist; the log has {len(self.shards)} shards.")
        return self.shards[index]

    def _select(self, layers, columns, kind: str):
        if layers is None:
            layer_ids = list(self.layer_ids)
        else:
            layer_ids = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
            for lid in layer_ids:
                self.manifest.layer(int(lid))  # raises for unknown layers
            layer_ids = [int(i) for i in layer_ids]
        if kind in ("counts", "tables"):
            return layer_ids, None
        available = list(self.manifest.columns)
        if columns is None:
            cols = available
        else:
            cols = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in cols if c not in available]
            if unknown:
                raise ValueError(f"`columns` {unknown} are not in this log; it has {available}.")
        return layer_ids, cols

    def _open_files(self, shard: ShardRecord, layer_ids, cols, *, verify: bool) -> dict:
        """Map the selected files of a shard: ``{key: _Mapped}``; ShardError on any problem."""
        try:
            if verify and shard.index not in self._verified:
                self.verify_shard(shard.index)
            out = {}
            for rec in shard.files:
                col, lid = rec.column, rec.layer_id
                if shard.kind == "tokens" and cols is not None and col not in cols:
                    continue
                if lid is not None and layer_ids is not None and lid not in layer_ids:
                    continue
                out[rec.key] = _map_npy(self._file_path(shard, rec), rec)
            if shard.kind == "tokens":
                need = ([f"{c}.{l}" for c in (cols or []) if c in PER_LAYER_COLUMNS
                         for l in (layer_ids or [])]
                        + [c for c in (cols or []) if c in TOKEN_COLUMNS])
                missing = [k for k in need if k not in out]
                if missing:
                    raise ShardError(shard.index, shard.path,
                                     f"the manifest lists no file for {missing}")
            return out
        except ShardError:
            raise
        except (ValueError, OSError) as exc:
            raise ShardError(shard.index, shard.path, str(exc)) from None

    @staticmethod
    def _assemble(files: dict, a: int, b: int, kind: str) -> dict:
        return chunk_of_arrays({key: mp.array[a:b] for key, mp in files.items()})

    @staticmethod
    def _tables_chunk(shard: ShardRecord, files: dict) -> dict:
        """A tables record as one chunk: every stored array copied out of its map."""
        return {"kind": "tables", "shard": shard.index, "start": 0,
                "tables": {key: np.array(mp.array) for key, mp in files.items()}}

    def read_shard(self, index: int, *, layers=None, columns=None) -> dict:
        """The arrays of one shard as a chunk dict (memory-mapped, read-only).

        Token shards give ``{"kind": "tokens", "shard": i, "start": 0,
        "expert_ids": {layer_id: (n, k)}, "gate_weights": {...}, ...,
        "seq_id": (n,), ...}``; count records give ``{"kind": "counts",
        "shard": i, "counts": {layer_id: (window, E)}, "step": ..., "rank": ...}``;
        tables records give ``{"kind": "tables", "shard": i, "tables": {name: array}}``.

        Raises
        ------
        ShardError
            If the shard is missing, truncated or (with ``verify``) corrupted.
        """
        shard = self._shard(index)
        layer_ids, cols = self._select(layers, columns, shard.kind)
        files = self._open_files(shard, layer_ids, cols, verify=self.verify)
        if shard.kind == "tables":
            return self._tables_chunk(shard, files)
        chunk = self._assemble(files, 0, shard.rows, shard.kind)
        chunk.update(kind=shard.kind, shard=shard.index, start=0)
        return chunk

    def iter_chunks(self, layers=None, columns=None, chunk_tokens: Optional[int] = None, *,
                    on_error: str = "raise", shards: Optional[Iterable[int]] = None,
                    kind: str = "tokens") -> Iterator[dict]:
        """Iterate over the token records, one dict of arrays per shard or slice.

        Parameters
        ----------
        layers : int or sequence of int, optional
            Layer ids to read (default: all).
        columns : str or sequence of str, optional
            Columns to read (default: all the log has), among
            ``expert_ids, gate_weights, router_logits, seq_id, position,
            valid, token_id, label, step, rank``.
        chunk_tokens : int, optional
            Split shards into slices of at most this many tokens (default:
            one chunk per shard).
        on_error : {"raise", "skip"}, default "raise"
            What to do with a missing, truncated or corrupted shard: raise a
            :class:`ShardError` naming it, or warn (``RuntimeWarning``) and go
            on with the next shard.  Shards are checked when opened (presence,
            header, dtype, shape, size; checksums with ``verify``); a file
            truncated *while* it is being read can still crash the process
            (``SIGBUS``), as with any memory map.
        shards : iterable of int, optional
            Restrict to these shard indices.
        kind : {"tokens", "counts", "tables"}, default "tokens"
            Token shards, count records (then `columns` is ignored and
            chunks hold ``"counts"``, ``"step"``, ``"rank"``), or tables
            records (one chunk per record; ``"tables"`` maps each stored
            array's name to a copy, see :func:`~infomoe.logs._tables.tables_from_arrays`).

        Yields
        ------
        dict
            ``"expert_ids"``, ``"gate_weights"``, ``"router_logits"`` map
            layer id to a read-only ``(n, k)`` / ``(n, E)`` array; per-token
            columns are ``(n,)`` arrays; ``"shard"`` and ``"start"`` locate
            the chunk, and ``"offset"`` is the index of its first token among
            all token records of the log.  Arrays are memory-mapped views:
            copy what you keep.
        """
        check_choice(on_error, "on_error", ("raise", "skip"))
        check_choice(kind, "kind", ("tokens", "counts", "tables"))
        if chunk_tokens is not None and (isinstance(chunk_tokens, bool) or
                                         not isinstance(chunk_tokens, (int, np.integer))
                                         or chunk_tokens < 1):
            raise ValueError(f"`chunk_tokens` must be a positive integer or None, got {chunk_tokens!r}.")
        layer_ids, cols = self._select(layers, columns, kind)
        indices = range(len(self.shards)) if shards is None else [int(i) for i in shards]
        offsets = np.cumsum([0] + [s.rows if s.kind == "tokens" else 0 for s in self.shards])
        for i in indices:
            shard = self._shard(i)
            if shard.kind != kind:
                continue
            try:
                files = self._open_files(shard, layer_ids, cols, verify=self.verify)
            except ShardError as exc:
                if on_error == "raise":
                    raise
                warnings.warn(f"skipping {exc}", RuntimeWarning, stacklevel=2)
                continue
            if kind == "tables":
                yield self._tables_chunk(shard, files)
                continue
            step = shard.rows if chunk_tokens is None else int(chunk_tokens)
            for a in range(0, shard.rows, step):
                b = min(shard.rows, a + step)
                chunk = self._assemble(files, a, b, shard.kind)
                chunk.update(kind=shard.kind, shard=shard.index, start=a, offset=int(offsets[i]) + a)
                yield chunk
                del chunk
                for mp in files.values():
                    mp.release(a, b)
            for mp in files.values():
                mp.release()

    def read(self, layers=None, columns=None, *, on_error: str = "raise") -> dict:
        """All token records concatenated in memory (for small logs and tests).

        Returns
        -------
        dict
            Same layout as a chunk of :meth:`iter_chunks`, without
            ``"shard"``/``"start"``.
        """
        layer_ids, cols = self._select(layers, columns, "tokens")
        n = self.num_tokens
        out: dict = {}
        for c in cols:  # filled shard by shard: no shard's maps stay open (bounded file descriptors)
            dt = self.manifest.columns[c]
            if c in PER_LAYER_COLUMNS:
                out[c] = {}
                for lid in layer_ids:
                    spec = self.manifest.layer(lid)
                    width = spec.num_experts if c == "router_logits" else spec.top_k
                    out[c][lid] = np.empty((n, width), dtype=dt)
            else:
                out[c] = np.empty(n, dtype=dt)
        filled = 0
        for chunk in self.iter_chunks(layers, columns, on_error=on_error):
            m = self.shards[chunk["shard"]].rows  # one chunk per shard
            for c in cols:
                if c in PER_LAYER_COLUMNS:
                    for lid in layer_ids:
                        out[c][lid][filled:filled + m] = chunk[c][lid]
                else:
                    out[c][filled:filled + m] = chunk[c]
            filled += m
            del chunk
        if filled != n:  # shards skipped with on_error="skip"
            for c in cols:
                if c in PER_LAYER_COLUMNS:
                    out[c] = {lid: a[:filled].copy() for lid, a in out[c].items()}
                else:
                    out[c] = out[c][:filled].copy()
        return out

    def counts(self, layer=None, *, source: str = "all", on_error: str = "raise"):
        """Expert load: number of (token, chosen expert) pairs per expert.

        Parameters
        ----------
        layer : int, optional
            A layer id; default all layers.
        source : {"all", "tokens", "records"}, default "all"
            Count token shards (ignoring ``-1`` and tokens with
            ``valid == False``), aggregate records (count records and the
            load in tables records), or both (added: a source should not log
            the same tokens both ways).
        on_error : {"raise", "skip"}
            As in :meth:`iter_chunks`.

        Returns
        -------
        ndarray (E,) of int64, or dict {layer_id: ndarray}
        """
        check_choice(source, "source", ("all", "tokens", "records"))
        ids = list(self.layer_ids) if layer is None else [int(layer)]
        for lid in ids:
            self.manifest.layer(lid)
        out = {lid: np.zeros(self.manifest.layer(lid).num_experts, dtype=np.int64) for lid in ids}
        if source in ("all", "tokens") and "expert_ids" in self.manifest.columns:
            cols = ["expert_ids"] + (["valid"] if "valid" in self.manifest.columns else [])
            for chunk in self.iter_chunks(ids, cols, chunk_tokens=1 << 20, on_error=on_error):
                valid = chunk.get("valid")
                for lid in ids:
                    e = chunk["expert_ids"][lid]
                    if valid is not None:
                        e = e[np.asarray(valid)]
                    e = e.reshape(-1)
                    e = e[e >= 0]
                    out[lid] += np.bincount(e, minlength=out[lid].shape[0])
        if source in ("all", "records"):
            for chunk in self.iter_chunks(ids, kind="counts", on_error=on_error):
                for lid in ids:
                    c = chunk["counts"][lid]
                    if c.size and c.min() < 0:
                        raise ShardError(chunk["shard"], self.shards[chunk["shard"]].path,
                                         f"counts.{lid}.npy holds a negative count {c.min()}")
                    total = out[lid] + c.sum(axis=0, dtype=np.float64)   # exact enough to detect a wrap
                    if total.size and total.max() >= 2.0**63:
                        raise ValueError(f"the expert load of layer {lid} exceeds 2**63 - 1 (int64); "
                                         "the count records cannot be summed exactly.")
                    out[lid] += c.sum(axis=0)
            for chunk in self.iter_chunks(kind="tables", on_error=on_error):
                self._add_tables_load(chunk, out)
        return out if layer is None else out[ids[0]]

    def _add_tables_load(self, chunk: dict, out: dict) -> None:
        """Add the expert load of a tables record to ``out`` ({layer_id: (E,)}), checked like the report does."""
        from infomoe.logs._tables import stored_spec, tables_from_arrays

        arrays = chunk["tables"]
        try:
            spec = stored_spec(arrays)
            tables = tables_from_arrays(arrays, spec)
        except ValueError as exc:
            raise ShardError(chunk["shard"], self.shards[chunk["shard"]].path, str(exc)) from None
        for i, s in enumerate(spec.layers):
            if s.layer_id not in out:
                continue
            if spec.luts[i] is not None:
                raise ValueError(f"the count tables of layer {s.layer_id} are in logical expert ids; "
                                 "use analyze_log(..., expert_space='logical') for their load.")
            out[s.layer_id] += tables.load[i]


def open_log(path, *, verify: bool = False) -> RoutingLog:
    """Open a routing log directory for reading.

    Parameters
    ----------
    path : str or os.PathLike
        The log directory (holding ``manifest.json``).
    verify : bool, default False
        Verify each shard's checksums the first time it is read (one extra
        pass over its bytes, about 3.5 GB/s with CRC-32).  Sizes, dtypes and
        shapes are always checked.

    Returns
    -------
    RoutingLog

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    LogFormatError
        If the manifest is invalid or names a path outside the log.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from infomoe.logs import write_log, open_log
    >>> d = os.path.join(tempfile.mkdtemp(), "log")
    >>> _ = write_log(d, np.array([[[0], [1]], [[1], [1]]]), num_experts=2)
    >>> log = open_log(d, verify=True)
    >>> [c["expert_ids"][1].ravel().tolist() for c in log.iter_chunks()]
    [[1, 1]]
    """
    p = os.fspath(path)
    mpath = os.path.join(p, MANIFEST_NAME)
    if not os.path.isfile(mpath):
        raise FileNotFoundError(f"{p!r} is not a routing log: no {MANIFEST_NAME} in it.")
    if not _inside(os.path.realpath(p), mpath):
        raise LogFormatError(f"{mpath!r} resolves outside the log directory; refused.")
    with open(mpath, "rb") as f:
        manifest = Manifest.from_json(f.read())
    return RoutingLog(p, manifest, verify=verify)
