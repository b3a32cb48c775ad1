"""Stored traced programs of the solver: identical results, damaged files replaced, off when they should be."""

import os

import numpy as np
import pytest

import infomoe
from infomoe import _ba_export

pytest.importorskip("flatbuffers")


def _solve():
    rng = np.random.default_rng(1)
    losses = (rng.random((300, 5)) < 0.4).astype(float)
    curve = infomoe.accuracy_rate_curve(losses, betas=[0.5, 5.0, 50.0])
    cap = infomoe.channel_capacity([[0.7, 0.2, 0.1], [0.69, 0.21, 0.1], [0.1, 0.1, 0.8]])
    batched = infomoe.rate_distortion(losses, [1.0, 10.0], sweep="batched", dtype="float32")
    return np.concatenate([curve.rate, curve.accuracy, [cap.capacity, cap.upper_bound], batched.rate,
                           batched.distortion])


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INFOMOE_CACHE", str(tmp_path))
    monkeypatch.delenv("INFOMOE_JAX_CACHE", raising=False)
    return tmp_path / "jax" / "exported"


def test_stored_programs_give_identical_results(cache, monkeypatch):
    first = _solve()  # traces, stores, runs the stored program
    files = sorted(os.listdir(cache))
    assert len(files) == 3 and all(f.endswith(_ba_export.SUFFIX) for f in files)
    again = _solve()  # loads them
    monkeypatch.setenv("INFOMOE_JAX_CACHE", "0")
    plain = _solve()  # the jitted functions themselves
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(again, plain)
    assert sorted(os.listdir(cache)) == files


def test_a_damaged_program_is_traced_again_and_replaced(cache):
    good = _solve()
    for name in os.listdir(cache):
        (cache / name).write_bytes(b"\x00not a program")
    np.testing.assert_array_equal(_solve(), good)
    assert all((cache / n).stat().st_size > 100 for n in os.listdir(cache))


def test_off_without_infomoe_cache_or_flatbuffers(cache, monkeypatch):
    import importlib.util

    from infomoe._blahut_arimoto import _compilation_cache

    assert _ba_export.export_dir() is None  # outside a solve, infomoe's compilation cache is not in effect
    with _compilation_cache():
        assert _ba_export.export_dir() == str(cache)
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "flatbuffers" else real(name, *a))
        assert _ba_export.export_dir() is None
    monkeypatch.setenv("INFOMOE_JAX_CACHE", "off")
    with _compilation_cache():
        assert _ba_export.export_dir() is None
