"""The strict field checks and the staged output shared by the importers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infomoe._validate import describe
from infomoe.logs.ingest._common import check_int, int_array, staged_log_dir


@pytest.mark.parametrize("value", [3, np.int8(3), np.uint64(3), np.array(3, np.int32)])
def test_check_int_takes_every_exact_integer(value):
    assert check_int(value, "x") == 3 and type(check_int(value, "x")) is int


@pytest.mark.parametrize("value", [3.0, 1.7, True, np.bool_(False), "3", None, [3], np.array([3]), np.float32(3),
                                   float("inf"), float("nan")])
def test_check_int_refuses_everything_else(value):
    with pytest.raises(TypeError, match="record 2: 'step' must be an integer"):
        check_int(value, "record 2: 'step'")


def test_check_int_ranges_and_tensors():
    torch = pytest.importorskip("torch")
    assert check_int(torch.tensor(7), "x") == 7
    with pytest.raises(TypeError, match="x must be an integer, got Tensor of shape \\(\\) and dtype torch.float32"):
        check_int(torch.tensor(7.0), "x")
    with pytest.raises(ValueError, match=r"x must be an integer >= 0 and <= 9, got 10"):
        check_int(10, "x", minimum=0, maximum=9)
    with pytest.raises(ValueError, match=r"x must be an integer >= 0, got -1"):
        check_int(np.int64(-1), "x", minimum=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1), min_size=2, max_size=2), min_size=1, max_size=6))
def test_int_array_keeps_every_int64_exactly(rows):
    a = int_array(rows, "ids", ndim=2)
    assert a.dtype == np.int64 and a.tolist() == rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=8), st.data())
def test_int_array_refuses_a_single_non_integer(values, data):
    i = data.draw(st.integers(0, len(values) - 1))
    bad = data.draw(st.sampled_from([True, False, 1.0, 0.5, "1", None, float("inf")]))
    values = list(values)
    values[i] = bad
    with pytest.raises(TypeError, match="ids must hold integers, found"):
        int_array(values, "ids", ndim=1)


def test_int_array_shapes_and_unsigned_values():
    assert int_array([], "ids", ndim=2).shape == (0, 0)
    assert int_array(np.array([[2**63 - 1]], np.uint64), "ids", ndim=2).tolist() == [[2**63 - 1]]
    with pytest.raises(ValueError, match="unsigned value 18446744073709551615"):
        int_array(np.array([2**64 - 1], np.uint64), "ids", ndim=1)
    with pytest.raises(ValueError, match="ids must be 2-D, got shape \\(3,\\)"):
        int_array(np.arange(3), "ids", ndim=2)
    with pytest.raises(TypeError, match="ids must be a 2-D list of integers; at depth 1 found 3"):
        int_array([[1, 2], 3], "ids", ndim=2)
    with pytest.raises(ValueError, match="ids has -2 at index \\[1\\], outside \\[-1, 5\\]"):
        int_array([0, -2], "ids", ndim=1, minimum=-1, maximum=5)


def test_describe_is_short_for_any_value():
    deep = []
    for _ in range(100000):                                       # repr() of this raises RecursionError
        deep = [deep]
    assert describe(deep) == "a list of 1 item: (a list of 1 item)"
    assert describe(10**400) == "int of 401 digits"
    assert len(describe("x" * 10**6)) < 60


def test_staged_log_dir_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists and is not an empty directory"):
        with staged_log_dir(tmp_path / "out"):
            pass                                                  # pragma: no cover
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
