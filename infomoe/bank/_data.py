"""Image data for the finite expert bank: embedded digits, user-supplied MNIST, splits.

The embedded default is scikit-learn's bundled ``digits`` (1,797 images of
8x8 pixels, ten classes; nothing is downloaded).  Real MNIST is read from
files the user already has: the four IDX files (raw or gzipped) in a folder,
one IDX image file with its label file beside it, or an ``.npz`` archive.
Archives are opened with ``np.load(allow_pickle=False)``: nothing is ever
unpickled.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from infomoe._validate import as_float_array, as_labels, check_positive_int

__all__ = ["Dataset", "Splits", "load_digits", "load_mnist", "split_dataset"]


@dataclass(frozen=True)
class Dataset:
    """Grey-scale images with integer class labels.

    Attributes
    ----------
    images : ndarray of shape (n, height, width), float32
        Pixel intensities scaled to [0, 1].
    labels : ndarray of shape (n,), int64
        Class labels in ``0 .. n_classes - 1``.
    name : str
        Where the data came from (``"digits"`` or ``"mnist:<path>"``).
    n_classes : int
        Number of classes.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    n_classes: int

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
                f"n_classes={self.n_classes})")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def fingerprint(self) -> str:
        """A SHA-256 digest of the pixels and labels (names a cache entry)."""
        h = hashlib.sha256()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()

    def subset(self, index) -> "Dataset":
        """The samples at ``index`` (an integer array), as a new :class:`Dataset`."""
        index = np.asarray(index)
        return Dataset(self.images[index], self.labels[index], self.name, self.n_classes)


def _make_dataset(images, labels, name: str, source: str) -> Dataset:
    x = as_float_array(images, f"images in {source}", ndim=3, dtype=np.float32)
    y = as_labels(labels, f"labels in {source}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{source}: {x.shape[0]} images but {y.shape[0]} labels; "
                         "each image needs exactly one label.")
    if y.max() > 9:
        raise ValueError(f"{source}: labels must be digits 0..9, found label {int(y.max())}.")
    hi = float(x.max())
    if x.min() < 0:
        raise ValueError(f"{source}: pixel values must be >= 0, found {float(x.min())!r}.")
    if hi > 255.0:
        raise ValueError(f"{source}: pixel values must lie in [0, 1] or [0, 255], found {hi!r}.")
    if hi > 1.0:
        x = x / 255.0
    return Dataset(np.ascontiguousarray(x, dtype=np.float32), y, name, 10)


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (no download).

    Returns
    -------
    Dataset
        1,797 images of shape (8, 8) with intensities in [0, 1] (the raw
        values 0..16 divided by 16) and labels 0..9.

    Notes
    -----
    The data ship inside scikit-learn (the UCI optical recognition of
    handwritten digits test set), so this works offline.

    References
    ----------
    Alpaydin & Kaynak (1998), UCI "Optical Recognition of Handwritten Digits";
    there is no equation to cite.

    Examples
    --------
    >>> from infomoe.bank import load_digits
    >>> d = load_digits()
    >>> d.images.shape, int(d.labels.max()), len(d)
    ((1797, 8, 8), 9, 1797)
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the embedded digits need scikit-learn: pip install scikit-learn "
                          "(or pass your own MNIST files with load_mnist / --mnist PATH)") from exc
    raw = _sk_load_digits()
    return _make_dataset(raw.images / 16.0, raw.target, "digits", "scikit-learn digits")


# ----------------------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fh) as gz:
                    return gz.read()
            return fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"could not read MNIST file {path!r}: {exc}") from exc


def _read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (raw or gzip) into an array, checking its header."""
    buf = _read_bytes(path)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number "
                         f"{buf[:4].hex() if buf else 'empty file'}); expected 0000 08 0N.")
    ndim = buf[3]
    if ndim < 1 or len(buf) < 4 + 4 * ndim:
        raise ValueError(f"{path!r}: truncated IDX header ({len(buf)} bytes, {ndim} dimensions).")
    shape = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = buf[4 + 4 * ndim:]
    if len(body) != expected:
        raise ValueError(f"{path!r}: IDX header promises shape {shape} ({expected} bytes of data) "
                         f"but the file holds {len(body)} bytes; the file is truncated or corrupt.")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


_IDX_PAIRS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


def _find(folder: str, stem: str) -> Optional[str]:
    variants = {stem, stem.replace("-idx", ".idx")}
    for v in variants:
        for suffix in ("", ".gz"):
            p = os.path.join(folder, v + suffix)
            if os.path.isfile(p):
                return p
    return None


def _labels_beside(images_path: str) -> str:
    folder, base = os.path.split(images_path)
    pairs = (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("images", "labels"))
    for a, b in pairs:
        if a in base:
            cand = os.path.join(folder, base.replace(a, b))
            if os.path.isfile(cand):
                return cand
    raise ValueError(f"no label file found beside the IDX image file {images_path!r} "
                     "(expected e.g. train-labels-idx1-ubyte[.gz] in the same folder).")


def _load_idx_pair(images_path: str, labels_path: str):
    x = _read_idx(images_path)
    y = _read_idx(labels_path)
    if x.ndim != 3:
        raise ValueError(f"{images_path!r}: expected an IDX image file with 3 dimensions "
                         f"(n, rows, cols), got shape {x.shape}.")
    if y.ndim != 1:
        raise ValueError(f"{labels_path!r}: expected an IDX label file with 1 dimension, "
                         f"got shape {y.shape}.")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images_path!r} holds {x.shape[0]} images but {labels_path!r} holds "
                         f"{y.shape[0]} labels.")
    return x, y


_NPZ_KEYS = (("x_train", "y_train"), ("x_test", "y_test"), ("images", "labels"), ("x", "y"))


def _load_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            xs, ys = [], []
            for kx, ky in _NPZ_KEYS:
                if kx in keys and ky in keys:
                    xs.append(np.asarray(z[kx]))
                    ys.append(np.asarray(z[ky]))
    except ValueError as exc:  # object arrays would need pickle
        raise ValueError(f"could not read MNIST archive {path!r} without unpickling: "
                         f"{exc}") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"could not read MNIST archive {path!r}: {exc}") from exc
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise ValueError(f"{path!r} is not a valid .npz archive: {exc}") from exc
    if not xs:
        raise ValueError(f"MNIST archive {path!r} has arrays {sorted(keys)}; expected the pairs "
                         "(x_train, y_train) and/or (x_test, y_test), or (images, labels), "
                         "or (x, y).")
    for x, y in zip(xs, ys):
        if x.ndim == 2 and int(np.sqrt(x.shape[1])) ** 2 == x.shape[1]:
            pass
        elif x.ndim != 3:
            raise ValueError(f"{path!r}: images must have shape (n, rows, cols) or (n, rows*cols), "
                             f"got {x.shape}.")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{path!r}: {x.shape[0]} images but labels of shape {y.shape}.")
    xs = [x.reshape(x.shape[0], int(np.sqrt(x.shape[1])), -1) if x.ndim == 2 else x for x in xs]
    return np.concatenate(xs), np.concatenate(ys)


def load_mnist(path) -> Dataset:
    """Load MNIST (or any 10-class grey-scale digit set) from files you supply.

    Parameters
    ----------
    path : str or os.PathLike
        One of: a folder holding ``train-images-idx3-ubyte`` /
        ``train-labels-idx1-ubyte`` and/or ``t10k-images-idx3-ubyte`` /
        ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``); a single IDX image
        file whose label file lies beside it; or an ``.npz`` archive with
        ``x_train, y_train[, x_test, y_test]`` (the Keras layout),
        ``images, labels`` or ``x, y``.  All pairs found are concatenated.

    Returns
    -------
    Dataset
        Images scaled to [0, 1] (``uint8`` divided by 255).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a file is not a valid IDX/npz file, is truncated, or images and
        labels disagree; the message names the file.

    Notes
    -----
    IDX layout (LeCun et al.): two zero bytes, a type code (``0x08`` =
    unsigned byte), the number of dimensions, then one big-endian 32-bit size
    per dimension, then the data.  ``.npz`` files are read with
    ``allow_pickle=False``.

    References
    ----------
    LeCun, Cortes & Burges, "The MNIST database of handwritten digits" (file
    format section); there is no equation to cite.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from infomoe.bank import load_mnist
    >>> f = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> np.savez(f, x=np.zeros((3, 28, 28), np.uint8), y=np.array([0, 1, 2]))
    >>> load_mnist(f).images.shape
    (3, 28, 28)
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"MNIST path {p!r} does not exist.")
    if os.path.isdir(p):
        xs, ys = [], []
        for img_stem, lab_stem in _IDX_PAIRS:
            ip, lp = _find(p, img_stem), _find(p, lab_stem)
            if ip and lp:
                x, y = _load_idx_pair(ip, lp)
                xs.append(x)
                ys.append(y)
            elif ip or lp:
                raise ValueError(f"folder {p!r} has {os.path.basename(ip or lp)!r} but not its "
                                 f"{'label' if ip else 'image'} file.")
        if not xs:
            raise ValueError(f"folder {p!r} holds no MNIST IDX files (looked for "
                             "train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and "
                             "their label files).")
        x, y = np.concatenate(xs), np.concatenate(ys)
    elif p.endswith(".npz"):
        x, y = _load_npz(p)
    else:
        x, y = _load_idx_pair(p, _labels_beside(p))
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    return _make_dataset(x, y, f"mnist:{os.path.basename(os.path.normpath(p))}", repr(p))


@dataclass(frozen=True)
class Splits:
    """Three disjoint parts of one :class:`Dataset`.

    Attributes
    ----------
    bank : Dataset
        Trains the experts of the bank.
    pool : Dataset
        The population that training sets ``S`` are drawn from.
    test : Dataset
        Held-out data, used by no training and no selection.
    """

    bank: Dataset
    pool: Dataset
    test: Dataset


def default_split_sizes(n: int) -> tuple[int, int, int]:
    """(n_bank, n_pool, n_test) used when the sizes are not given.

    For the 1,797 digits: 597 / 800 / 400.  For larger sets the pool and test
    parts are capped at 4,000 and the bank at 12,000 samples.
    """
    if n < 60:
        raise ValueError(f"the dataset has {n} samples; at least 60 are needed for three splits.")
    n_pool = min(4000, int(round(0.445 * n)))
    n_test = min(4000, int(round(0.2226 * n)))
    n_bank = min(12000, n - n_pool - n_test)
    return n_bank, n_pool, n_test


def split_dataset(data: Dataset, *, n_bank: Optional[int] = None, n_pool: Optional[int] = None,
                  n_test: Optional[int] = None, seed: int = 0) -> Splits:
    """Split a dataset into disjoint bank-training, pool and test parts.

    Parameters
    ----------
    data : Dataset
        The images and labels.
    n_bank, n_pool, n_test : int, optional
        Sizes of the three parts (defaults: :func:`default_split_sizes`).
        Their sum must not exceed ``len(data)``.
    seed : int
        Seed of the random permutation.

    Returns
    -------
    Splits

    Notes
    -----
    One random permutation of the indices is cut into three consecutive
    blocks, so the parts are disjoint by construction.

    Examples
    --------
    >>> from infomoe.bank import load_digits, split_dataset
    >>> s = split_dataset(load_digits(), seed=0)
    >>> len(s.bank), len(s.pool), len(s.test)
    (597, 800, 400)
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"`data` must be an infomoe.bank.Dataset, got {type(data).__name__}.")
    d_bank, d_pool, d_test = default_split_sizes(len(data))
    n_bank = d_bank if n_bank is None else check_positive_int(n_bank, "n_bank")
    n_pool = d_pool if n_pool is None else check_positive_int(n_pool, "n_pool")
    n_test = d_test if n_test is None else check_positive_int(n_test, "n_test")
    if n_bank + n_pool + n_test > len(data):
        raise ValueError(f"n_bank + n_pool + n_test = {n_bank + n_pool + n_test} exceeds the "
                         f"{len(data)} samples of {data.name!r}.")
    perm = np.random.default_rng(seed).permutation(len(data))
    a, b = n_bank, n_bank + n_pool
    return Splits(data.subset(np.sort(perm[:a])), data.subset(np.sort(perm[a:b])),
                  data.subset(np.sort(perm[b:b + n_test])))
