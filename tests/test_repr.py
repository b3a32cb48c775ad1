"""Short reprs of result objects that hold arrays (infomoe._repr and its users)."""

import numpy as np

from infomoe._repr import dataclass_repr, short_value
from infomoe.logs import analyze_log, open_log, write_log


def test_short_value_forms():
    assert short_value(np.array([1.5, 2.0])) == "[1.5, 2]"
    assert short_value(np.zeros((1000, 64))) == "array(1000, 64) in [0, 0]"
    assert short_value(np.array([np.nan] * 20)) == "array(20) (no finite entries)"
    assert short_value(tuple(np.ones(3) for _ in range(16))) == "tuple of 16 arrays"
    assert short_value("x" * 500).endswith("...'") and len(short_value("x" * 500)) < 70
    assert short_value(np.int64(3)) == "3" and short_value(None) == "None"


def test_log_reprs_stay_short_on_a_big_log(tmp_path):
    rng = np.random.default_rng(0)
    write_log(tmp_path / "log", rng.integers(0, 64, (3000, 16, 2)), num_experts=64,
              token_id=rng.integers(0, 1000, 3000))
    log = open_log(tmp_path / "log")
    report = analyze_log(log)
    text = repr(report)
    assert len(text) < 200 and "layers=16" in text and "num_tokens=3000" in text
    text = repr(log.manifest)
    assert len(text) < 200 and "E=64" in text and "tokens=3000" in text
    from infomoe.logs._tables import CountSpec, LogTables
    spec = CountSpec.from_manifest(log.manifest)
    assert len(repr(spec)) < 600 and len(repr(LogTables.zeros(spec))) < 600


def test_dataclass_repr_selected_fields():
    import dataclasses

    @dataclasses.dataclass
    class R:
        a: np.ndarray
        b: int
    assert dataclass_repr(R(np.zeros((5, 5)), 3)) == "R(a=array(5, 5) in [0, 0], b=3)"
    assert dataclass_repr(R(np.zeros(2), 3), ["b"]) == "R(b=3)"


def test_dataset_repr():
    from infomoe.bank._data import Dataset
    d = Dataset(np.zeros((1797, 8, 8), np.float32), np.zeros(1797, np.int64), "digits", 10)
    assert repr(d) == "Dataset(name='digits', n=1797, image_shape=(8, 8), n_classes=10)"


def test_routing_result_reprs_stay_short():
    from infomoe import routing as R
    rng = np.random.default_rng(0)
    W = rng.normal(size=(32, 16))
    X = rng.normal(size=(2000, 16))
    for result in (R.best_subset(W, X[:50], 2), R.omp(W, X, 3), R.posterior_summary(rng.dirichlet(np.ones(8), 5000), 2),
                   R.sparse_tokens(W, 2000, 3, seed=0) if hasattr(R, "sparse_tokens") else None):
        if result is not None:
            assert len(repr(result)) < 400, repr(result)
