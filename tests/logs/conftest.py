"""Shared fixtures for the routing-log tests."""

import numpy as np
import pytest


def _rich_routing(rng, n):
    """3 layers, E=6, k=2, correlated routing, 3 % drops, about 10 % invalid tokens.

    Draws from `rng` in a fixed order and returns
    ``dict(ids, tok, pos, lab, valid, logits)`` for `n` tokens.
    """
    tok = rng.integers(0, 40, n)
    pos = rng.integers(0, 300, n)
    lab = rng.integers(-1, 3, n)
    valid = rng.random(n) > 0.1
    ids = np.empty((n, 3, 2), np.int64)
    for l in range(3):
        a = (tok + l + (pos > 100)) % 6
        b = (a + 1 + rng.integers(0, 4, n)) % 6  # distinct from a
        ids[:, l, 0], ids[:, l, 1] = a, b
    ids[rng.random((n, 3, 2)) < 0.03] = -1
    logits = rng.normal(size=(n, 3, 6)) + 2.0 * np.eye(6)[ids[:, :, 0].clip(0)]
    return dict(ids=ids, tok=tok, pos=pos, lab=lab, valid=valid, logits=logits)


@pytest.fixture(scope="session")
def rich_routing():
    """The function ``(rng, n) -> dict`` drawing the synthetic routing of the log tests."""
    return _rich_routing


def _assert_tables_equal(a, b, rtol=1e-12):
    """Every field of two LogTables equal: integers exactly, float sums to `rtol`."""
    import dataclasses

    from infomoe.logs._uncertainty import GroupedCounts

    def check(name, x, y):
        if x is None or y is None:
            assert x is None and y is None, name
        elif isinstance(x, GroupedCounts):
            assert x.shape == y.shape, name
            np.testing.assert_array_equal(x.keys, y.keys, err_msg=name)
            np.testing.assert_array_equal(x.counts, y.counts, err_msg=name)
        else:
            x, y = np.asarray(x), np.asarray(y)
            assert x.shape == y.shape, name
            if x.dtype.kind == "f" or y.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=name)
            else:
                np.testing.assert_array_equal(x, y, err_msg=name)

    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, tuple):
            assert isinstance(y, tuple) and len(x) == len(y), f.name
            for i, (u, v) in enumerate(zip(x, y)):
                check(f"{f.name}[{i}]", u, v)
        else:
            check(f.name, x, y)


@pytest.fixture(scope="session")
def assert_tables_equal():
    """``(a, b, rtol=1e-12)``: assert two LogTables are equal (counts exactly, float sums to rtol)."""
    return _assert_tables_equal
