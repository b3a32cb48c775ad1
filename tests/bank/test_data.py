import gzip

import numpy as np
import pytest

from infomoe.bank import Dataset, load_digits, load_mnist, split_dataset


def _idx_bytes(a: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (independent of the reader under test)."""
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


@pytest.fixture
def fake_mnist(rng):
    x = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=7).astype(np.uint8)
    return x, y


def test_digits_shape_range_and_labels():
    d = load_digits()
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.float32
    assert d.images.min() == 0.0 and d.images.max() == 1.0
    assert set(np.unique(d.labels)) == set(range(10)) and d.n_classes == 10
    from sklearn.datasets import load_digits as sk
    np.testing.assert_allclose(d.images * 16.0, sk().images)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_folder_roundtrip(tmp_path, fake_mnist, compress):
    x, y = fake_mnist
    opener = gzip.open if compress else open
    suffix = ".gz" if compress else ""
    with opener(tmp_path / f"train-images-idx3-ubyte{suffix}", "wb") as fh:
        fh.write(_idx_bytes(x))
    with opener(tmp_path / f"train-labels-idx1-ubyte{suffix}", "wb") as fh:
        fh.write(_idx_bytes(y))
    d = load_mnist(tmp_path)
    np.testing.assert_allclose(d.images, x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.labels, y)
    # a single image file with its label file beside it
    d2 = load_mnist(tmp_path / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_array_equal(d2.labels, y)


def test_mnist_idx_train_and_test_concatenated(tmp_path, fake_mnist):
    x, y = fake_mnist
    for stem, arr in (("train-images-idx3-ubyte", x[:4]), ("train-labels-idx1-ubyte", y[:4]),
                      ("t10k-images-idx3-ubyte", x[4:]), ("t10k-labels-idx1-ubyte", y[4:])):
        (tmp_path / stem).write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(load_mnist(tmp_path).labels, y)


def test_mnist_npz_keras_layout(tmp_path, fake_mnist):
    x, y = fake_mnist
    f = tmp_path / "mnist.npz"
    np.savez(f, x_train=x[:5], y_train=y[:5], x_test=x[5:], y_test=y[5:])
    d = load_mnist(f)
    assert len(d) == 7
    np.testing.assert_array_equal(d.labels, y)


def test_bad_magic_names_the_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage that is not idx")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*not an IDX file"):
        load_mnist(tmp_path)


def test_truncated_idx_is_reported(tmp_path, fake_mnist):
    x, y = fake_mnist
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x)[:-10])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(y))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)


def test_corrupt_gzip_names_the_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    with pytest.raises(ValueError, match="train-(images|labels)-idx[13]-ubyte.gz"):
        load_mnist(tmp_path)


def test_label_count_mismatch(tmp_path, fake_mnist):
    x, y = fake_mnist
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(y[:3]))
    with pytest.raises(ValueError, match="7 images.*3 labels"):
        load_mnist(tmp_path)


def test_missing_pieces(tmp_path, fake_mnist):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(ValueError, match="no MNIST IDX files"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(fake_mnist[0]))
    with pytest.raises(ValueError, match="not its label file"):
        load_mnist(tmp_path)


def test_npz_never_unpickles(tmp_path):
    f = tmp_path / "evil.npz"
    np.savez(f, x=np.array([object()], dtype=object), y=np.array([1]))
    with pytest.raises(ValueError, match="evil.npz"):
        load_mnist(f)


def test_npz_bad_content(tmp_path, fake_mnist):
    f = tmp_path / "other.npz"
    np.savez(f, a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz.*expected the pairs"):
        load_mnist(f)
    f2 = tmp_path / "labels.npz"
    np.savez(f2, x=fake_mnist[0], y=np.full(7, 12))
    with pytest.raises(ValueError, match="labels must be digits 0..9"):
        load_mnist(f2)
    f3 = tmp_path / "notzip.npz"
    f3.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="notzip.npz"):
        load_mnist(f3)


def test_split_disjoint_sizes_and_deterministic():
    d = load_digits()
    s = split_dataset(d, seed=3)
    assert (len(s.bank), len(s.pool), len(s.test)) == (597, 800, 400)
    # disjoint: identify samples by their pixels+label rows
    keys = lambda part: {p.tobytes() + bytes([int(l)]) for p, l in zip(part.images, part.labels)}
    kb, kp, kt = keys(s.bank), keys(s.pool), keys(s.test)
    assert not (kb & kp) and not (kb & kt) and not (kp & kt)
    s2 = split_dataset(d, seed=3)
    np.testing.assert_array_equal(s.pool.images, s2.pool.images)
    assert not np.array_equal(split_dataset(d, seed=4).pool.labels, s.pool.labels)


def test_split_validation():
    d = load_digits()
    with pytest.raises(ValueError, match="exceeds"):
        split_dataset(d, n_bank=1000, n_pool=800, n_test=400)
    with pytest.raises(TypeError, match="`data`"):
        split_dataset(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="n_pool"):
        split_dataset(d, n_pool=0)


def test_dataset_fingerprint_changes_with_content():
    d = load_digits()
    sub = d.subset(np.arange(10))
    assert isinstance(sub, Dataset) and len(sub) == 10
    assert sub.fingerprint() == d.subset(np.arange(10)).fingerprint()
    assert sub.fingerprint() != d.subset(np.arange(1, 11)).fingerprint()
