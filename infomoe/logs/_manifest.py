"""The routing-log manifest: what a log holds and which shards are committed.

A routing log is a directory::

    LOG/
      manifest.json            the manifest (this module), replaced atomically
      shards/
        00000000/              one committed shard: one ``.npy`` file per array
          expert_ids.3.npy     per-layer arrays are named ``<column>.<layer_id>``
          gate_weights.3.npy
          seq_id.npy           per-token columns
        00000001/              a count record (``counts.<layer_id>.npy``)
        00000002/              a tables record: the report's count tables (``spec.npy``,
                               ``load@<i>.npy``, ``grouped_token@<i>@keys.npy``, ...)
      .writer.lock             held (``flock``) by the one writer, if any

The manifest is the single source of truth: a shard exists for readers if
and only if the manifest lists it, with its kind (``"tokens"``,
``"counts"`` or ``"tables"``), its row count and, for every file, dtype, shape and checksum.

Why ``.npy`` shards
-------------------
Each array is stored as a version-1.0 ``.npy`` file: a short ASCII header
(parsed with :func:`ast.literal_eval`, never unpickled) followed by the raw
C-ordered bytes.  That makes every column memory-mappable at a known byte
offset (readers touch only the layers and columns they select, and the
operating system's page cache does the buffering), trivially appendable by
adding files, readable by any NumPy without infomoe, and safe: object dtypes
are refused on both write and read, so no pickle is ever involved.
safetensors would also be safe, but it packs all tensors into one file
(harder to select and to commit incrementally) and has no int8/bool-only
advantage here; Parquet/Arrow would add a dependency and decode instead of
map.

Checksums
---------
Every file's checksum (CRC-32 by default, via :func:`zlib.crc32`) is stored
in the manifest.  CRC-32 detects truncation, torn writes and bit flips
(every burst of up to 32 bits; other errors with probability ``1 - 2**-32``)
at about 3.5 GB/s on one core here, against about 1.7 GB/s for SHA-256 and
1 GB/s for BLAKE2b; it is not a defence against deliberate tampering (choose
``checksum="sha256"`` in the writer for that, given a trusted manifest).
Verification costs one extra pass over the data, so readers do it only when
asked (``open_log(path, verify=True)``); size, dtype and shape are always
checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import posixpath
import re
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "LayerSpec",
    "FileRecord",
    "ShardRecord",
    "Manifest",
    "LogFormatError",
    "ShardError",
    "CHECKSUMS",
    "checksum_file",
]

#: Version of the on-disk format written by this module.
SCHEMA_VERSION = 1
#: Name of the manifest file inside a log directory.
MANIFEST_NAME = "manifest.json"
#: Subdirectory that holds the shard directories.
SHARDS_DIR = "shards"
#: Checksum algorithms a manifest may name.
CHECKSUMS = ("crc32", "sha256", "blake2b")

#: Columns with one array per MoE layer, and their trailing dimension.
PER_LAYER_COLUMNS = ("expert_ids", "gate_weights", "router_logits")
#: Columns with one value per token.
TOKEN_COLUMNS = ("seq_id", "position", "valid", "token_id", "label", "step", "rank")
#: Columns of an aggregate count record (``counts`` is per layer).
COUNT_COLUMNS = ("counts", "step", "rank")

#: Allowed stored dtypes per column (NumPy dtype strings, little-endian).
COLUMN_DTYPES = {
    "expert_ids": ("|i1", "<i2", "<i4", "<i8"),
    "gate_weights": ("<f2", "<f4", "<f8"),
    "router_logits": ("<f2", "<f4", "<f8"),
    "seq_id": ("<i8",),
    "position": ("<i4",),
    "valid": ("|b1",),
    "token_id": ("<i4",),
    "label": ("<i4",),
    "step": ("<i8",),
    "rank": ("<i4",),
    "counts": ("<i8",),
}

SCORE_FUNCTIONS = ("softmax", "topk_softmax", "sigmoid", "unknown")
TOPK_ORDERS = ("descending", "unordered")
EXPERT_ID_SPACES = ("logical", "physical")
SHARD_KINDS = ("tokens", "counts", "tables")

_KEY_RE = re.compile(r"^[a-z_]+(\.[0-9]{1,9})?$")
#: Largest layer id (file keys ``<column>.<layer_id>`` hold at most 9 digits).
MAX_LAYER_ID = 999_999_999
#: Largest number of experts of one layer (count tables of 2**24 int64 entries are 128 MiB).
MAX_EXPERTS = 1 << 24

_CHECKSUM_RE = re.compile(r"^(crc32|sha256|blake2b):[0-9a-f]{8,128}$")


class LogFormatError(ValueError):
    """A routing log (manifest or shard) is malformed, unsafe or inconsistent."""


class ShardError(LogFormatError):
    """One shard of a routing log is missing, truncated or corrupted.

    Attributes
    ----------
    shard : int
        Index of the shard in the manifest.
    path : str
        Path of the shard directory relative to the log.
    """

    def __init__(self, shard: int, path: str, message: str):
        self.shard = int(shard)
        self.path = path
        super().__init__(f"shard {shard} ({path}): {message}")


def _err(msg: str) -> LogFormatError:
    return LogFormatError(f"invalid manifest: {msg}")


def _check_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class LayerSpec:
    """One MoE layer of a routing log.

    Attributes
    ----------
    layer_id : int
        The model's index of the layer (need not be contiguous: dense layers
        are simply absent).
    num_experts : int
        Number of experts the router chooses among (physical slots when the
        log's ``expert_id_space`` is ``"physical"``).
    top_k : int
        Number of experts chosen per token; ``expert_ids`` has ``top_k``
        columns for this layer.
    """

    layer_id: int
    num_experts: int
    top_k: int

    def __post_init__(self):
        _check_int(self.layer_id, "layer_id", minimum=0)
        _check_int(self.num_experts, "num_experts", minimum=1)
        _check_int(self.top_k, "top_k", minimum=1)
        if self.layer_id > MAX_LAYER_ID:
            raise ValueError(f"`layer_id` must be at most {MAX_LAYER_ID} (shard file keys hold up to 9 "
                             f"digits), got {self.layer_id}.")
        if self.num_experts > MAX_EXPERTS:
            raise ValueError(f"`num_experts` must be at most {MAX_EXPERTS} (2**24), got {self.num_experts}; "
                             "larger alphabets would need tables no analysis can allocate.")
        if self.top_k > self.num_experts:
            raise ValueError(f"`top_k` ({self.top_k}) cannot exceed `num_experts` "
                             f"({self.num_experts}) in layer {self.layer_id}.")

    def to_dict(self) -> dict:
        return {"layer_id": int(self.layer_id), "num_experts": int(self.num_experts),
                "top_k": int(self.top_k)}


@dataclass(frozen=True)
class FileRecord:
    """One ``.npy`` file of a shard.

    Attributes
    ----------
    key : str
        ``<column>`` or ``<column>.<layer_id>``; the file is ``<key>.npy``.
    dtype : str
        NumPy dtype string of the stored array.
    shape : tuple of int
        Shape of the stored array.
    checksum : str
        ``"<algorithm>:<hex digest>"`` of the whole file.
    """

    key: str
    dtype: str
    shape: tuple
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.key}.npy"

    @property
    def column(self) -> str:
        return self.key.split(".")[0]

    @property
    def layer_id(self) -> Optional[int]:
        parts = self.key.split(".")
        return int(parts[1]) if len(parts) == 2 else None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict:
        return {"key": self.key, "dtype": self.dtype, "shape": list(self.shape),
                "checksum": self.checksum}


@dataclass(frozen=True)
class ShardRecord:
    """A committed shard.

    Attributes
    ----------
    index : int
        Position in the manifest (0, 1, ...).
    path : str
        Directory of the shard, relative to the log (``shards/00000007``).
    kind : str
        ``"tokens"`` (per-token routing records), ``"counts"`` (an
        aggregate-only count record) or ``"tables"`` (the count tables of
        the report, streamed by a recorder in counts mode).
    rows : int
        Tokens in a token shard or counted into a tables record; windows
        in a count record.
    files : tuple of FileRecord
        The shard's arrays.
    """

    index: int
    path: str
    kind: str
    rows: int
    files: tuple

    def file(self, key: str) -> Optional[FileRecord]:
        for f in self.files:
            if f.key == key:
                return f
        return None

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.files)

    def to_dict(self) -> dict:
        return {"index": self.index, "path": self.path, "kind": self.kind, "rows": self.rows,
                "files": [f.to_dict() for f in self.files]}


def check_relative_path(path, what: str) -> str:
    """Reject paths that could leave the log directory.

    Absolute paths, drive letters, backslashes, empty components and ``..``
    are refused; symlinks are checked by the reader against the resolved
    log directory.
    """
    if not isinstance(path, str) or not path:
        raise _err(f"{what} must be a non-empty relative path, got {path!r}.")
    if "\x00" in path or "\\" in path:
        raise _err(f"{what} {path!r} contains a NUL byte or backslash.")
    if path.startswith("/") or os.path.isabs(path) or re.match(r"^[A-Za-z]:", path):
        raise _err(f"{what} {path!r} is absolute; paths must be relative to the log directory.")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _err(f"{what} {path!r} has an empty, '.' or '..' component; "
                   "paths must stay inside the log directory.")
    if posixpath.normpath(path) != path:
        raise _err(f"{what} {path!r} is not a normalised path.")
    return path


def _as_json_value(obj, what: str):
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{what}` must be JSON-serialisable (numbers, strings, lists, dicts), "
                        f"got {obj!r}: {exc}") from None
    return json.loads(json.dumps(obj))


def _checksum_hasher(algorithm: str):
    if algorithm == "crc32":
        class _Crc:
            def __init__(self):
                self.value = 0

            def update(self, data):
                self.value = zlib.crc32(data, self.value)

            def hexdigest(self):
                return f"{self.value & 0xFFFFFFFF:08x}"
        return _Crc()
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b(digest_size=32)
    raise ValueError(f"`checksum` must be one of {', '.join(map(repr, CHECKSUMS))}; "
                     f"got {algorithm!r}.")


def checksum_file(path, algorithm: str = "crc32", *, block: int = 1 << 23) -> str:
    """Checksum of a whole file as ``"<algorithm>:<hex>"``, read in blocks.

    Reads through a fixed buffer (``block`` bytes), so memory use does not
    grow with the file.
    """
    h = _checksum_hasher(algorithm)
    buf = bytearray(block)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return f"{algorithm}:{h.hexdigest()}"


@dataclass(frozen=True)
class Manifest:
    """Metadata of a routing log and the list of its committed shards.

    Attributes
    ----------
    source : str
        What produced the log (``"pytorch"``, ``"sglang"``, ``"arrays"``...).
    layers : tuple of LayerSpec
        The MoE layers, in the order of the ``L`` axis of ``(N, L, k)`` arrays.
    model_id : str or None
        Model name or path.
    score_function : str
        How router scores were formed: ``"softmax"`` (softmax over all
        experts, then top-k: Mixtral, Qwen, OLMoE, Switch), ``"topk_softmax"``
        (top-k on logits, softmax over the k: GPT-OSS, GraniteMoE),
        ``"sigmoid"`` (DeepSeek-V3) or ``"unknown"``.
    topk_order : str
        ``"descending"`` (column 0 is the highest-scoring expert) or
        ``"unordered"``.
    norm_topk_prob : bool or None
        Whether the chosen gate weights were renormalised to sum to one.
    expert_id_space : str
        ``"logical"`` or ``"physical"`` (replicated expert slots, as SGLang
        and expert-parallel serving record them).
    physical_to_logical : dict or None
        ``{layer_id: [logical id of physical slot 0, 1, ...]}`` for physical logs.
    columns : dict
        ``{column: dtype string}`` of the token-shard columns present.
    metadata : dict
        Free JSON metadata.
    shards : tuple of ShardRecord
        Committed shards, in commit order.
    complete : bool
        True when the writer was closed normally; False while it is writing
        or after a crash (the committed shards are valid either way).
    schema_version : int
        Format version (:data:`SCHEMA_VERSION`).
    created_by : str
        Software that wrote the log.
    checksum : str
        Checksum algorithm used for the shard files.
    """

    source: str
    layers: tuple
    model_id: Optional[str] = None
    score_function: str = "softmax"
    topk_order: str = "descending"
    norm_topk_prob: Optional[bool] = None
    expert_id_space: str = "logical"
    physical_to_logical: Optional[dict] = None
    columns: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    shards: tuple = ()
    complete: bool = False
    schema_version: int = SCHEMA_VERSION
    created_by: str = ""
    checksum: str = "crc32"

    def __repr__(self) -> str:
        experts = sorted({s.num_experts for s in self.layers})
        topk = sorted({s.top_k for s in self.layers})
        return (f"Manifest(source={self.source!r}, model_id={self.model_id!r}, layers={len(self.layers)} "
                f"(E={experts if len(experts) > 1 else experts[0]}, k={topk if len(topk) > 1 else topk[0]}), "
                f"tokens={self.num_tokens}, shards={len(self.shards)}, columns={sorted(self.columns)}, "
                f"complete={self.complete})")

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            raise TypeError(f"`source` must be a non-empty string, got {self.source!r}.")
        if self.model_id is not None and not isinstance(self.model_id, str):
            raise TypeError(f"`model_id` must be a string or None, got {self.model_id!r}.")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("`layers` is empty; a routing log needs at least one MoE layer.")
        for spec in layers:
            if not isinstance(spec, LayerSpec):
                raise TypeError(f"`layers` must hold LayerSpec objects, got {spec!r}.")
        ids = [s.layer_id for s in layers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"`layers` has duplicate layer ids: {ids}.")
        object.__setattr__(self, "layers", layers)
        for value, name, choices in ((self.score_function, "score_function", SCORE_FUNCTIONS),
                                     (self.topk_order, "topk_order", TOPK_ORDERS),
                                     (self.expert_id_space, "expert_id_space", EXPERT_ID_SPACES),
                                     (self.checksum, "checksum", CHECKSUMS)):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; "
                                 f"got {value!r}.")
        if self.norm_topk_prob is not None and not isinstance(self.norm_topk_prob, bool):
            raise TypeError(f"`norm_topk_prob` must be True, False or None, got {self.norm_topk_prob!r}.")
        object.__setattr__(self, "physical_to_logical",
                           self._check_p2l(self.physical_to_logical, layers))
        if self.expert_id_space == "logical" and self.physical_to_logical is not None:
            raise ValueError("`physical_to_logical` was given but `expert_id_space` is 'logical'; "
                             "set expert_id_space='physical'.")
        if not isinstance(self.columns, Mapping):
            raise TypeError(f"`columns` must be a dict, got {type(self.columns).__name__}.")
        columns = {}
        for name, dt in self.columns.items():
            if name not in COLUMN_DTYPES or name == "counts":
                raise _err(f"unknown column {name!r}.")
            if dt not in COLUMN_DTYPES[name]:
                raise _err(f"column {name!r} has dtype {dt!r}; allowed: {COLUMN_DTYPES[name]}.")
            columns[str(name)] = str(dt)
        if columns and "expert_ids" not in columns:
            raise _err("token columns are listed but 'expert_ids' is missing.")
        object.__setattr__(self, "columns", columns)
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"`metadata` must be a dict, got {type(self.metadata).__name__}.")
        object.__setattr__(self, "metadata", _as_json_value(dict(self.metadata), "metadata"))
        shards = tuple(self.shards)
        for i, s in enumerate(shards):
            if not isinstance(s, ShardRecord):
                raise TypeError(f"`shards` must hold ShardRecord objects, got {s!r}.")
            if s.index != i:
                raise _err(f"shard at position {i} has index {s.index}.")
        object.__setattr__(self, "shards", shards)

    @staticmethod
    def _check_p2l(p2l, layers) -> Optional[dict]:
        if p2l is None:
            return None
        if not isinstance(p2l, Mapping):
            raise TypeError(f"`physical_to_logical` must be a dict {{layer_id: list}}, got "
                            f"{type(p2l).__name__}.")
        by_id = {s.layer_id: s for s in layers}
        out = {}
        for key, value in p2l.items():
            try:
                lid = int(key)
            except (TypeError, ValueError):
                raise TypeError(f"`physical_to_logical` keys must be layer ids, got {key!r}.") from None
            if lid not in by_id:
                raise ValueError(f"`physical_to_logical` has layer {lid}, which is not in `layers`.")
            if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
                raise TypeError(f"`physical_to_logical[{lid}]` must hold integers, got a bool in {value!r}.")
            a = np.asarray(value)
            if (a.ndim != 1 or a.dtype == object or a.dtype == bool
                    or (a.size and not np.issubdtype(a.dtype, np.integer))):
                raise TypeError(f"`physical_to_logical[{lid}]` must be a 1-D list of integers, "
                                f"got {value!r}.")
            if a.shape[0] != by_id[lid].num_experts:
                raise ValueError(f"`physical_to_logical[{lid}]` must have one entry per physical "
                                 f"slot ({by_id[lid].num_experts}), got {a.shape[0]}.")
            if a.size and a.min() < 0:
                raise ValueError(f"`physical_to_logical[{lid}]` has a negative logical id {a.min()}.")
            out[lid] = [int(v) for v in a]
        return out

    # -- derived -----------------------------------------------------------------
    @property
    def layer_ids(self) -> tuple:
        return tuple(s.layer_id for s in self.layers)

    def layer(self, layer_id: int) -> LayerSpec:
        for s in self.layers:
            if s.layer_id == layer_id:
                return s
        raise ValueError(f"layer {layer_id!r} is not in this log; its MoE layers are "
                         f"{list(self.layer_ids)}.")

    @property
    def num_tokens(self) -> int:
        return sum(s.rows for s in self.shards if s.kind == "tokens")

    def with_shard(self, shard: ShardRecord) -> "Manifest":
        return dataclasses.replace(self, shards=self.shards + (shard,))

    # -- JSON --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "infomoe.routing-log",
            "schema_version": self.schema_version,
            "created_by": self.created_by,
            "source": self.source,
            "model_id": self.model_id,
            "layers": [s.to_dict() for s in self.layers],
            "score_function": self.score_function,
            "topk_order": self.topk_order,
            "norm_topk_prob": self.norm_topk_prob,
            "expert_id_space": self.expert_id_space,
            "physical_to_logical": (None if self.physical_to_logical is None else
                                    {str(k): v for k, v in self.physical_to_logical.items()}),
            "columns": dict(self.columns),
            "checksum": self.checksum,
            "metadata": self.metadata,
            "complete": self.complete,
            "num_tokens": self.num_tokens,
            "shards": [s.to_dict() for s in self.shards],
        }

    def to_json(self, *, indent: Optional[int] = 1) -> str:
        """The manifest as JSON text (what ``manifest.json`` holds)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text) -> "Manifest":
        """Parse and validate manifest JSON text.

        Raises
        ------
        LogFormatError
            When the text is not a valid manifest, names an unsupported
            schema version, an unsafe path, a non-numeric dtype or
            inconsistent shards.

        Examples
        --------
        >>> from infomoe.logs import LayerSpec, Manifest
        >>> m = Manifest(source="demo", layers=(LayerSpec(0, 8, 2),))
        >>> Manifest.from_json(m.to_json()) == m
        True
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _err(f"not UTF-8 text ({exc}).") from None
        if not isinstance(text, str):
            raise TypeError(f"manifest text must be str or bytes, got {type(text).__name__}.")
        try:
            d = json.loads(text, parse_constant=_refuse_constant)
        except (TypeError, ValueError, RecursionError) as exc:
            raise _err(f"not valid JSON ({exc}).") from None
        if not isinstance(d, dict) or d.get("format") != "infomoe.routing-log":
            raise _err("not an infomoe routing-log manifest (missing format tag).")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise _err(f"schema_version {version!r} is not supported by this infomoe "
                       f"(supports {SCHEMA_VERSION}).")
        for key in ("source", "layers", "columns", "shards"):
            if key not in d:
                raise _err(f"the {key!r} field is missing.")
        try:
            if not isinstance(d["layers"], list):
                raise _err(f"'layers' must be a list, got {d['layers']!r}.")
            layers = tuple(_layer_from_dict(x, i) for i, x in enumerate(d["layers"]))
            checksum = d.get("checksum", "crc32")
            columns = d["columns"]
            if not isinstance(columns, dict):
                raise _err(f"'columns' must be an object, got {columns!r}.")
            if not isinstance(d["shards"], list):
                raise _err(f"'shards' must be a list, got {type(d['shards']).__name__}.")
            shards = tuple(_shard_from_dict(s, layers, columns, checksum) for s in d["shards"])
            complete = d.get("complete", False)
            if not isinstance(complete, bool):
                raise _err(f"'complete' must be true or false, got {complete!r}.")
            created_by = d.get("created_by", "")
            if not isinstance(created_by, str):
                raise _err(f"'created_by' must be a string, got {created_by!r}.")
            m = cls(source=d["source"], layers=layers, model_id=d.get("model_id"),
                    score_function=d.get("score_function", "unknown"),
                    topk_order=d.get("topk_order", "unordered"),
                    norm_topk_prob=d.get("norm_topk_prob"),
                    expert_id_space=d.get("expert_id_space", "logical"),
                    physical_to_logical=d.get("physical_to_logical"),
                    columns=columns, metadata=d.get("metadata") or {}, shards=shards,
                    complete=complete, schema_version=version,
                    created_by=created_by, checksum=checksum)
        except LogFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError,
                RecursionError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise _err(what) from None
        m._check_shards()
        if "num_tokens" in d and d["num_tokens"] != m.num_tokens:
            raise _err(f"'num_tokens' says {d['num_tokens']!r} but the token shards hold {m.num_tokens} "
                       "tokens (a stale or edited manifest).")
        return m

    def _check_shards(self) -> None:
        """Every shard is consistent with the layers and columns: the files it must have, no others,
        shapes that match each layer's ``top_k``/``num_experts``, dtypes that match ``columns``."""
        paths = [s.path for s in self.shards]
        if len(set(paths)) != len(paths):
            dup = sorted({p for p in paths if paths.count(p) > 1})
            raise _err(f"shard path(s) {dup} are listed more than once.")
        if any(s.kind == "tokens" for s in self.shards) and not self.columns:
            raise _err("the log has token shards but 'columns' lists none.")
        for s in self.shards:
            if s.kind == "tokens":
                want = {}
                for col, dt in self.columns.items():
                    if col in PER_LAYER_COLUMNS:
                        for spec in self.layers:
                            width = spec.num_experts if col == "router_logits" else spec.top_k
                            want[f"{col}.{spec.layer_id}"] = (dt, (s.rows, width))
                    else:
                        want[col] = (dt, (s.rows,))
            elif s.kind == "tables":
                if s.file("spec") is None:
                    raise _err(f"tables shard {s.index} ({s.path}) has no 'spec' file.")
                continue
            else:
                want = {f"counts.{spec.layer_id}": ("<i8", (s.rows, spec.num_experts)) for spec in self.layers}
                for f in s.files:
                    if f.column in ("step", "rank"):
                        want[f.key] = (COLUMN_DTYPES[f.column][0], (s.rows,))
            have = {f.key: f for f in s.files}
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            if missing or extra:
                raise _err(f"{s.kind} shard {s.index} ({s.path}) does not match the manifest's "
                           f"{'columns and ' if s.kind == 'tokens' else ''}layers: missing files {missing}, "
                           f"unexpected files {extra}.")
            for key, (dt, shape) in want.items():
                f = have[key]
                if f.dtype != dt or tuple(f.shape) != shape:
                    raise _err(f"shard {s.index} file {key!r} is {f.dtype} {tuple(f.shape)}, but the "
                               f"manifest's layers and columns say {dt} {shape}.")


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number a manifest may hold")


def _layer_from_dict(x, i: int) -> LayerSpec:
    if not isinstance(x, dict):
        raise _err(f"layer entry {i} must be an object, got {x!r}.")
    for key in ("layer_id", "num_experts", "top_k"):
        if key not in x:
            raise _err(f"layer entry {i} has no {key!r}.")
    try:  # LayerSpec refuses bools, floats and strings (no int() coercion)
        return LayerSpec(x["layer_id"], x["num_experts"], x["top_k"])
    except (TypeError, ValueError) as exc:
        raise _err(f"layer entry {i}: {exc}") from None


#: File keys of a tables record: ``spec``, ``tokens``, ``load@3``, ``grouped_token@3@keys``.
_TABLE_KEY_RE = re.compile(r"^[a-z_]{1,32}(@[0-9]{1,6}(@(keys|counts))?)?$")

#: Dtypes a tables record may hold: the spec's UTF-8 bytes, counts, and float sums of the soft gate.
_TABLE_DTYPES = ("|u1", "<i8", "<f8")


def _tables_file(f, index: int, checksum: str) -> FileRecord:
    """One file of a tables record (its contents are checked against the spec when read)."""
    key, dt, shape, cs = f["key"], f["dtype"], f["shape"], f["checksum"]
    if not isinstance(key, str) or not _TABLE_KEY_RE.match(key):
        raise _err(f"tables shard {index} has an invalid file key {key!r}.")
    if dt not in _TABLE_DTYPES:
        raise _err(f"tables shard {index} file {key!r} has dtype {dt!r}; allowed: {_TABLE_DTYPES}.")
    if (not isinstance(shape, list) or len(shape) > 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in shape)):
        raise _err(f"tables shard {index} file {key!r} has invalid shape {shape!r}.")
    if not isinstance(cs, str) or not _CHECKSUM_RE.match(cs) or not cs.startswith(checksum + ":"):
        raise _err(f"tables shard {index} file {key!r} has an invalid checksum {cs!r}.")
    return FileRecord(key=key, dtype=dt, shape=tuple(shape), checksum=cs)


def _shard_from_dict(d, layers, columns, checksum) -> ShardRecord:
    if not isinstance(d, dict):
        raise _err(f"shard entry must be an object, got {d!r}.")
    index = d["index"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _err(f"shard index must be a non-negative integer, got {index!r}.")
    path = check_relative_path(d["path"], f"path of shard {index}")
    kind = d["kind"]
    if kind not in SHARD_KINDS:
        raise _err(f"shard {index} has unknown kind {kind!r}.")
    rows = d["rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise _err(f"shard {index} has invalid row count {rows!r}.")
    files = []
    layer_ids = {s.layer_id for s in layers}
    for f in d["files"]:
        key = f["key"]
        if kind == "tables":
            files.append(_tables_file(f, index, checksum))
            continue
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise _err(f"shard {index} has an invalid file key {key!r}.")
        column = key.split(".")[0]
        if column not in COLUMN_DTYPES:
            raise _err(f"shard {index} has a file for unknown column {column!r}.")
        dt = f["dtype"]
        if dt not in COLUMN_DTYPES[column]:
            raise _err(f"shard {index} file {key!r} has dtype {dt!r}; allowed for {column!r}: "
                       f"{COLUMN_DTYPES[column]} (object and structured dtypes are never allowed).")
        shape = f["shape"]
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in shape)):
            raise _err(f"shard {index} file {key!r} has invalid shape {shape!r}.")
        if shape[0] != rows:
            raise _err(f"shard {index} file {key!r} has {shape[0]} rows, the shard {rows}.")
        if "." in key and int(key.split(".")[1]) not in layer_ids:
            raise _err(f"shard {index} file {key!r} names a layer not in the manifest.")
        cs = f["checksum"]
        if not isinstance(cs, str) or not _CHECKSUM_RE.match(cs) or not cs.startswith(checksum + ":"):
            raise _err(f"shard {index} file {key!r} has an invalid checksum {cs!r}.")
        files.append(FileRecord(key=key, dtype=dt, shape=tuple(shape), checksum=cs))
    keys = [f.key for f in files]
    if len(set(keys)) != len(keys):
        raise _err(f"shard {index} lists a file twice.")
    return ShardRecord(index=index, path=path, kind=kind, rows=rows, files=tuple(files))
