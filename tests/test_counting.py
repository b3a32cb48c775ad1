"""Tests of infomoe._counting: label_counts and contingency (numba kernels)."""

import tracemalloc

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from infomoe import contingency, label_counts
from infomoe import _counting

SETTINGS = settings(derandomize=True, deadline=None, max_examples=40)


def hist2d(x, y, kx, ky, weights=None):
    """Independent reference: numpy's histogram2d on integer bin edges."""
    h, _, _ = np.histogram2d(x, y, bins=[np.arange(kx + 1) - 0.5, np.arange(ky + 1) - 0.5],
                             weights=weights)
    return h


@pytest.fixture
def threads():
    """Run a test body at a given numba thread count, then restore it."""
    before = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(before)


# --------------------------------------------------------------------------
# agreement with numpy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n, kx, ky", [
    (1, 1, 1),
    (50, 200, 30),        # few samples per cell: direct (one-thread) path
    (20_000, 40, 7),      # short input, many samples per cell: one thread, uint8 table
    (100_000, 40, 7),     # many samples per cell: private uint8 tables in parallel
    (300_000, 300, 64),
    (100_000, 1000, 600),  # table too large for per-thread copies: one thread, uint8
])
def test_contingency_matches_histogram2d(n, kx, ky):
    rng = np.random.default_rng(n)
    x = rng.integers(0, kx, n)
    y = rng.integers(0, ky, n)
    table = contingency(x, y, kx=kx, ky=ky)
    assert table.shape == (kx, ky)
    assert table.dtype == np.int64
    np.testing.assert_array_equal(table, hist2d(x, y, kx, ky))


@pytest.mark.parametrize("n, k", [(7, 3), (100, 1000), (100_000, 17)])
def test_label_counts_matches_bincount(n, k):
    x = np.random.default_rng(k).integers(0, k, n)
    counts = label_counts(x, k=k)
    assert counts.dtype == np.int64 and counts.shape == (k,)
    np.testing.assert_array_equal(counts, np.bincount(x, minlength=k))


def test_skewed_counts_wrap_many_times_exactly():
    # one cell receives far more than 255 (the private uint8 counter range)
    # and another more than 65,535; every wrap-around must be carried.
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros(140_001, np.int64), rng.integers(0, 5, 3_000), np.full(257, 4)])
    y = np.concatenate([np.zeros(140_001, np.int64), rng.integers(0, 3, 3_000), np.full(257, 2)])
    perm = rng.permutation(x.size)
    x, y = x[perm], y[perm]
    np.testing.assert_array_equal(contingency(x, y), hist2d(x, y, 5, 3))
    np.testing.assert_array_equal(label_counts(x), np.bincount(x))


def test_weighted_matches_numpy():
    rng = np.random.default_rng(5)
    for n, kx, ky in [(40, 30, 20), (100_000, 25, 4)]:
        x, y = rng.integers(0, kx, n), rng.integers(0, ky, n)
        w = rng.random(n)
        table = contingency(x, y, kx=kx, ky=ky, weights=w)
        assert table.dtype == np.float64
        np.testing.assert_allclose(table, hist2d(x, y, kx, ky, w), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(label_counts(x, k=kx, weights=w),
                                   np.bincount(x, weights=w, minlength=kx), rtol=1e-12, atol=1e-12)


def test_count_past_2_31_is_exact_int64():
    # A genuine count of 2**31 + 5 samples through the real kernel, without
    # 2**31 bytes of memory: x and y are zero-stride (broadcast) views of one
    # zero label, so every sample lands in cell (0, 0).  An int32 counter
    # would wrap; the int64 table must hold the exact value.
    n = 2**31 + 5
    zeros = np.broadcast_to(np.zeros(1, np.uint8), (n,))
    table = contingency(zeros, zeros, kx=1, ky=2)
    assert table.dtype == np.int64
    assert table[0, 0] == n and table[0, 1] == 0


# --------------------------------------------------------------------------
# dtypes, layouts, sizes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtx, dty", [
    (np.int64, np.int64), (np.int32, np.uint8), (np.int16, np.int8), (np.uint16, np.uint32),
    (np.uint64, np.int64), (np.bool_, np.bool_),
])
def test_label_dtypes(dtx, dty):
    rng = np.random.default_rng(7)
    n = 70_000  # above the one-thread cut-off: the parallel kernels see every dtype
    x = rng.integers(0, 2 if dtx == np.bool_ else 100, n).astype(dtx)
    y = rng.integers(0, 2, n).astype(dty)
    ref = hist2d(x.astype(np.int64), y.astype(np.int64), int(x.max()) + 1, int(y.max()) + 1)
    np.testing.assert_array_equal(contingency(x, y), ref)
    np.testing.assert_array_equal(label_counts(x), np.bincount(x.astype(np.int64)))


def test_integer_valued_floats_and_lists_are_accepted():
    np.testing.assert_array_equal(contingency([0.0, 2.0, 2.0], [1, 0, 0]), [[0, 1], [0, 0], [2, 0]])
    np.testing.assert_array_equal(label_counts([3, 1, 1]), [0, 2, 0, 1])
    np.testing.assert_array_equal(label_counts(range(3)), [1, 1, 1])


def test_integer_input_is_not_copied():
    x = np.arange(10, dtype=np.int32)
    assert _counting._label_array(x, "x") is x
    b = np.array([True, False])
    assert np.shares_memory(_counting._label_array(b, "x"), b)


def test_strided_input():
    rng = np.random.default_rng(11)
    base = rng.integers(0, 9, (4_000, 3))
    x, y = base[:, 0], base[::1, 2]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(contingency(x, y, kx=9, ky=9), hist2d(x, y, 9, 9))


def test_declared_versus_inferred_sizes():
    x, y = np.array([0, 2, 2]), np.array([1, 1, 0])
    inferred = contingency(x, y)
    assert inferred.shape == (3, 2)
    declared = contingency(x, y, kx=5, ky=4)
    assert declared.shape == (5, 4)
    np.testing.assert_array_equal(declared[:3, :2], inferred)
    assert declared[3:].sum() == 0 and declared[:, 2:].sum() == 0
    assert label_counts([1], k=np.int64(3)).tolist() == [0, 1, 0]


# --------------------------------------------------------------------------
# chunks
# --------------------------------------------------------------------------

def test_chunks_generator_list_and_weights():
    rng = np.random.default_rng(13)
    x, y, w = rng.integers(0, 30, 9_000), rng.integers(0, 6, 9_000), rng.random(9_000)
    cuts = [0, 10, 4_000, 4_001, 9_000]
    parts = list(zip(cuts[:-1], cuts[1:]))
    gen = ((x[a:b], y[a:b]) for a, b in parts)
    np.testing.assert_array_equal(contingency(gen), contingency(x, y))
    as_lists = [[x[a:b], y[a:b]] for a, b in parts]
    np.testing.assert_array_equal(contingency(as_lists), contingency(x, y))
    wgen = ((x[a:b], y[a:b], w[a:b]) for a, b in parts)
    np.testing.assert_allclose(contingency(wgen, kx=30, ky=6), contingency(x, y, weights=w), rtol=1e-12)
    np.testing.assert_array_equal(label_counts(iter([x[a:b] for a, b in parts])), np.bincount(x))
    # an empty chunk contributes nothing
    with_empty = [(x[:0], y[:0])] + [(x[a:b], y[a:b]) for a, b in parts]
    np.testing.assert_array_equal(contingency(with_empty), contingency(x, y))
    np.testing.assert_allclose(label_counts([(x[a:b], w[a:b]) for a, b in parts]),
                               np.bincount(x, weights=w), rtol=1e-12)


def test_chunked_table_grows_with_larger_labels():
    chunks = [(np.array([0, 1]), np.array([0, 0])),
              (np.array([5]), np.array([1])),        # grows rows and columns
              (np.array([2, 2]), np.array([3, 0]))]  # grows columns again
    table = contingency(iter(chunks))
    assert table.shape == (6, 4)
    expected = np.zeros((6, 4), np.int64)
    expected[0, 0] = expected[1, 0] = expected[5, 1] = expected[2, 3] = expected[2, 0] = 1
    np.testing.assert_array_equal(table, expected)
    # only the undeclared axis grows
    assert contingency(iter(chunks), kx=8).shape == (8, 4)
    assert label_counts(iter([np.array([1]), np.array([4, 4])])).tolist() == [0, 1, 0, 0, 2]


def test_chunked_memory_does_not_hold_all_chunks():
    # 40 chunks of 1.6 MB from a generator; numpy allocations (traced by
    # tracemalloc) must stay near one chunk plus the small table, far below
    # the 64 MB that materialising the chunks would take.
    n_chunks, m = 40, 100_000

    def chunks():
        rng = np.random.default_rng(17)
        for _ in range(n_chunks):
            yield rng.integers(0, 100, m), rng.integers(0, 10, m)

    contingency(chunks(), kx=100, ky=10)  # warm up numba outside the trace
    tracemalloc.start()
    try:
        table = contingency(chunks(), kx=100, ky=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.sum() == n_chunks * m
    assert peak < 3 * 2 * 8 * m, peak


@st.composite
def data_and_cuts(draw):
    n = draw(st.integers(1, 300))
    kx = draw(st.integers(1, 12))
    ky = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, kx, n), rng.integers(0, ky, n)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return x, y, [0, *cuts, n]


@SETTINGS
@given(data_and_cuts())
def test_property_chunked_equals_unchunked(data):
    x, y, cuts = data
    chunks = [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    np.testing.assert_array_equal(contingency(iter(chunks)), contingency(x, y))
    kx, ky = int(x.max()) + 1, int(y.max()) + 1
    np.testing.assert_array_equal(contingency(iter(chunks), kx=kx + 2, ky=ky),
                                  contingency(x, y, kx=kx + 2, ky=ky))


@SETTINGS
@given(data_and_cuts(), st.integers(0, 2**32 - 1))
def test_property_relabelling_permutes_rows_and_columns(data, seed):
    x, y, _ = data
    kx, ky = 12, 5
    rng = np.random.default_rng(seed)
    px, py = rng.permutation(kx), rng.permutation(ky)
    table = contingency(x, y, kx=kx, ky=ky)
    relabelled = contingency(px[x], py[y], kx=kx, ky=ky)
    np.testing.assert_array_equal(relabelled[np.ix_(px, py)], table)
    np.testing.assert_array_equal(label_counts(px[x], k=kx)[px], label_counts(x, k=kx))


@SETTINGS
@given(data_and_cuts(), st.integers(0, 2**32 - 1))
def test_property_totals_and_unit_weights(data, seed):
    x, y, _ = data
    table = contingency(x, y)
    assert table.sum() == x.size
    np.testing.assert_array_equal(table.sum(axis=1), label_counts(x, k=table.shape[0]))
    np.testing.assert_array_equal(table.sum(axis=0), label_counts(y, k=table.shape[1]))
    ones = contingency(x, y, weights=np.ones(x.size))
    assert ones.dtype == np.float64
    np.testing.assert_array_equal(ones, table)
    w = np.random.default_rng(seed).random(x.size) + 0.01
    assert contingency(x, y, weights=w).sum() == pytest.approx(w.sum(), rel=1e-12)


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

def test_thread_count_independence(threads):
    rng = np.random.default_rng(19)
    x, y = rng.integers(0, 50, 200_000), rng.integers(0, 8, 200_000)
    w = rng.integers(0, 4, 200_000).astype(np.float64)  # integer weights: sums are exact
    ref = hist2d(x, y, 50, 8)
    for nt in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        threads(nt)
        np.testing.assert_array_equal(contingency(x, y), ref)
        np.testing.assert_array_equal(contingency(x, y, weights=w), hist2d(x, y, 50, 8, w))
        np.testing.assert_array_equal(label_counts(x), np.bincount(x))


@pytest.mark.parametrize("nt", [1, 2, 3, 5, 8])
def test_kernels_correct_for_any_split(nt):
    # the threaded drivers take the number of worker threads explicitly; any
    # value (even more threads than cores) must give the same table
    rng = np.random.default_rng(nt)
    n, kx, ky = 30_011, 13, 7
    x, y = rng.integers(0, kx, n), rng.integers(0, ky, n)
    w = rng.integers(0, 3, n).astype(np.float64)
    out = np.zeros(kx * ky, np.int64)
    bad = _counting._count_private(x, y, np.uint64(kx), np.uint64(ky), out, nt)
    assert bad == 0
    np.testing.assert_array_equal(out.reshape(kx, ky), hist2d(x, y, kx, ky))
    outw = np.zeros(kx * ky)
    _counting._count_weighted_private(x, y, w, np.uint64(kx), np.uint64(ky), outw, nt)
    np.testing.assert_array_equal(outw.reshape(kx, ky), hist2d(x, y, kx, ky, w))
    assert _counting._max_label(x, nt) == (x.min(), x.max())


@settings(derandomize=True, deadline=None, max_examples=80)
@given(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint16]),
       st.integers(1, 60), st.integers(0, 20), st.integers(0, 2**31 - 1))
def test_min_max_any_length_offset_and_dtype(dtype, length, lo, seed):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    x = rng.integers(info.min, info.max, lo + length, endpoint=True, dtype=dtype)
    mn, mx = _counting._min_max(x, lo, lo + length)
    assert (mn, mx) == (x[lo:].min(), x[lo:].max())


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("x, y, exc, match", [
    ([0, 1.5], [0, 1], TypeError, "`x` must hold integer labels"),
    ([0, 1], [0, np.nan], ValueError, "`y` contains NaN"),
    ([0, -1], [0, 1], ValueError, "`x` has negative label -1"),
    (np.array([0, 1], np.int8), np.array([3, -2], np.int8), ValueError, "`y` has negative label -2"),
    ([0, 1, 2], [0, 1], ValueError, "`x` and `y` must have the same length, got 3 and 2"),
    ([], [], ValueError, "`x` is empty"),
    ([[0, 1]], [[0, 1]], ValueError, "`x` must be 1-D"),
    (["a", "b"], [0, 1], TypeError, "`x` must hold integer labels"),
    ("ab", [0, 1], TypeError, "`x` must be an array of integer labels"),
    ([0, 1], [1 + 1j, 0], TypeError, "`y` must hold integer labels"),
])
def test_bad_labels(x, y, exc, match):
    with pytest.raises(exc, match=match):
        contingency(x, y)


def test_label_beyond_declared_size_names_the_argument():
    with pytest.raises(ValueError, match=r"`x` has label 3 at index 2, but `kx`=3"):
        contingency([0, 1, 3], [0, 0, 0], kx=3)
    with pytest.raises(ValueError, match=r"`y` has label 9 at index 0, but `ky`=2"):
        contingency(np.zeros(70_000, np.int32), np.full(70_000, 9, np.uint8), kx=1, ky=2)
    with pytest.raises(ValueError, match=r"`x` has label 4 at index 0, but `k`=2"):
        label_counts([4], k=2)
    with pytest.raises(ValueError, match=r"`x` has label 300"):
        label_counts(np.arange(301, dtype=np.uint16), k=300)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kx=0), ValueError, "`kx` must be an integer >= 1"),
    (dict(ky=2.5), TypeError, "`ky` must be an integer"),
    (dict(weights=[1.0, -1.0]), ValueError, "`weights` has a negative weight"),
    (dict(weights=[1.0, np.nan]), ValueError, "`weights` contains NaN"),
    (dict(weights=[1.0]), ValueError, "`weights` must have length 2"),
    (dict(weights=[0.0, 0.0]), ValueError, "`weights` sums to zero"),
])
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        contingency([0, 1], [1, 0], **kwargs)


def test_bad_chunks():
    with pytest.raises(TypeError, match="`y` is required unless `x` is an iterable"):
        contingency(np.array([0, 1]))
    with pytest.raises(ValueError, match="empty iterable of chunks"):
        contingency(iter([]))
    with pytest.raises(ValueError, match="chunk 0 must be"):
        contingency(iter([(np.array([0]),)]))
    with pytest.raises(ValueError, match="either every chunk carries weights or none"):
        contingency(iter([(np.array([0]), np.array([0])),
                          (np.array([0]), np.array([0]), np.array([1.0]))]))
    with pytest.raises(ValueError, match=r"`x \(chunk 1\)` has negative label -4"):
        contingency(iter([(np.array([0]), np.array([0])), (np.array([-4]), np.array([0]))]))
    with pytest.raises(ValueError, match=r"`y \(chunk 1\)` has label 7 at index 0, but `ky`=2"):
        contingency(iter([(np.array([0]), np.array([0])), (np.array([0]), np.array([7]))]), ky=2)
    with pytest.raises(ValueError, match=r"`x \(chunk 0\)` and `y \(chunk 0\)` must have the same length"):
        contingency(iter([(np.array([0, 1]), np.array([0]))]))
    with pytest.raises(ValueError, match=r"`weights \(chunk 0\)` has a negative weight"):
        contingency(iter([(np.array([0]), np.array([0]), np.array([-1.0]))]))
    with pytest.raises(ValueError, match="chunk weights sum to zero"):
        contingency(iter([(np.array([0]), np.array([0]), np.array([0.0]))]))
    with pytest.raises(ValueError, match="`weights` cannot be combined with an iterable of chunks"):
        contingency(iter([(np.array([0]), np.array([0]))]), weights=[1.0])
    with pytest.raises(ValueError, match="`weights` cannot be combined"):
        label_counts(iter([np.array([0])]), weights=[1.0])
    with pytest.raises(ValueError, match="all its chunks are empty"):
        label_counts(iter([np.array([], np.int64), np.array([], np.int64)]))
    with pytest.raises(ValueError, match=r"`x \(chunk 1\)` must be 1-D"):
        label_counts(iter([np.array([0]), np.zeros((2, 2), np.int64)]))


def test_inferred_size_same_below_and_above_the_kernel_threshold(monkeypatch):
    # below _MIN_NUMBA_MIN_MAX numpy finds min/max (no kernel to load on a
    # first call), above it the _min_max kernel: the same sizes and errors
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3000, 200_000).astype(np.int32)
    y = rng.integers(0, 40, 200_000).astype(np.uint8)
    bad = x.copy()
    bad[123_456] = -4
    calls = []
    real = _counting._max_label
    monkeypatch.setattr(_counting, "_max_label", lambda a, nt: calls.append(a.size) or real(a, nt))
    results = []
    for limit in (1 << 22, 1 << 16):
        monkeypatch.setattr(_counting, "_MIN_NUMBA_MIN_MAX", limit)
        results.append(contingency(x, y))
        with pytest.raises(ValueError, match="negative label -4 at index 123456"):
            contingency(bad, y)
    assert calls == [200_000] * 3            # x, y, bad: only with the low limit
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0].shape == (x.max() + 1, y.max() + 1)


def _numpy_route(monkeypatch):
    """Make short inputs take the numpy route, as in a process without kernels."""
    monkeypatch.setattr(_counting, "_KERNELS_LOADED", False)
    monkeypatch.setattr(_counting, "_short_calls", 0)


def test_short_inputs_switch_to_the_kernels(monkeypatch):
    # numpy for at most _NUMPY_SHORT_CALLS short calls, never once a kernel is loaded
    _numpy_route(monkeypatch)
    monkeypatch.setattr(_counting, "_NUMPY_SHORT_CALLS", 3)
    used = []
    real = _counting._count_numpy
    monkeypatch.setattr(_counting, "_count_numpy", lambda *a: used.append(1) or real(*a))
    x = np.arange(1000) % 7
    tables = [label_counts(x) for _ in range(5)]
    assert len(used) == 3
    for t in tables:
        np.testing.assert_array_equal(t, np.bincount(x))
    _numpy_route(monkeypatch)
    monkeypatch.setattr(_counting, "_KERNELS_LOADED", True)  # e.g. a long input ran before
    label_counts(x)
    assert len(used) == 3


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint64, np.int8, np.bool_])
def test_short_inputs_numpy_route_equals_the_kernels(dtype, monkeypatch):
    # below _MIN_PARALLEL unweighted pairs are counted with np.add.at while no
    # kernel is loaded; the kernels (forced by lowering the limit) must give
    # the very same table
    _numpy_route(monkeypatch)
    rng = np.random.default_rng(7)
    hi = 2 if dtype == np.bool_ else 50
    x = rng.integers(0, hi, 5000).astype(dtype)
    y = rng.integers(0, 2 if dtype == np.bool_ else 9, 5000).astype(dtype)
    short = contingency(x, y), label_counts(x), contingency(x, y, kx=300, ky=20)
    monkeypatch.setattr(_counting, "_MIN_PARALLEL", 1)
    kernels = contingency(x, y), label_counts(x), contingency(x, y, kx=300, ky=20)
    for a, b in zip(short, kernels):
        assert a.dtype == b.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(short[0], hist2d(x.astype(int), y.astype(int), *short[0].shape))


@pytest.mark.parametrize("x, y, kw, match", [
    (np.array([0, 3, -1], np.int16), np.array([0, 0, 0], np.int16), {}, "`x` has negative label -1 at index 2"),
    (np.array([0, 1, 2], np.uint64), np.array([0, 5, 0], np.uint64), {"ky": 5},
     "`y` has label 5 at index 1, but `ky`=5"),
    (np.array([0, 2**63 + 5, 1], np.uint64), np.array([0, 0, 0], np.uint64), {"kx": 4},
     "`x` has label 9223372036854775813 at index 1"),
])
def test_short_inputs_numpy_route_errors(x, y, kw, match, monkeypatch):
    # the same messages from the numpy route and (limit lowered) the kernels
    _numpy_route(monkeypatch)
    for limit in (_counting._MIN_PARALLEL, 1):
        monkeypatch.setattr(_counting, "_MIN_PARALLEL", limit)
        with pytest.raises(ValueError, match=match):
            contingency(x, y, **kw)


def test_short_inputs_never_import_numba():
    # counting short inputs (and their MI) in a new process loads no numba:
    # importing it and its first kernel cost 0.4-0.5 s (benchmarks/bench_cold.py)
    import subprocess
    import sys
    code = ("import sys, numpy as np, infomoe\n"
            "x = np.arange(5000) % 37; y = np.arange(5000) % 5\n"
            "infomoe.contingency(x, y); infomoe.label_counts(x, k=40)\n"
            "infomoe.contingency(iter([(x, y), (x[:10], y[:10])]))\n"
            "float(infomoe.mutual_information(x, y)); float(infomoe.entropy(infomoe.label_counts(y)))\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    # ... while a long input does use the kernels
    code = ("import sys, numpy as np, infomoe\n"
            "x = np.arange(100_000) % 37\n"
            "infomoe.label_counts(x)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def test_lazy_kernel_forwards_the_dispatcher():
    k = _counting._scatter_direct
    assert k.__name__ == "_scatter_direct" and "Add 1" in k.__doc__
    out = np.zeros(6, np.int64)
    assert k(np.array([0, 1, 9]), np.array([2, 0, 0]), 0, 3, np.uint64(2), np.uint64(3), out) == 1
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 0, 0])
    assert k.signatures and k.py_func.__name__ == "_scatter_direct"
    assert k.dispatcher() is k.dispatcher()


def test_masked_labels_are_refused_not_counted():
    import numpy as np
    import pytest

    from infomoe import contingency, label_counts
    x = np.ma.masked_array([0, 1, 1], mask=[False, True, False])
    with pytest.raises(TypeError, match="masked array"):
        label_counts(x)
    with pytest.raises(TypeError, match="masked array"):
        contingency(x, np.array([0, 1, 0]))


def test_huge_labels_get_a_clear_error_before_any_allocation():
    import numpy as np
    import pytest

    from infomoe import contingency, label_counts
    with pytest.raises(ValueError, match="too large.*np.unique"):
        contingency(np.array([0, 2**40]), np.array([0, 1]))
    with pytest.raises(ValueError, match="too large"):
        label_counts(np.array([0, 2**40]))
