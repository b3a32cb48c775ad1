"""The fused plug-in path: I(X;Y) from label arrays without the int64 table."""

import math
import threading

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infomoe
from infomoe import _counting as C
from infomoe import _plugin_labels as P

N = P._MIN_SAMPLES  # the smallest input that takes the fused path


def _table_route(x, y, kx=None, ky=None):
    """The two-step reference: count the int64 table, then the table estimator."""
    return infomoe.mutual_information_table(infomoe.contingency(x, y, kx=kx, ky=ky))


def _skewed(n, kx, ky, seed):
    """Zipf-like x, y a noisy function of x: heavy cells whose uint8 counters wrap."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(kx) + 1.0) ** 1.2
    x = rng.choice(kx, size=n, p=p / p.sum())
    fav = rng.integers(0, ky, kx)
    y = np.where(rng.random(n) < 0.7, fav[x], rng.integers(0, ky, n))
    return x, y


@pytest.mark.parametrize("kx, ky, seed", [(2, 2, 0), (50, 7, 1), (1000, 64, 2), (3, 300, 3)])
def test_fused_equals_table_route(kx, ky, seed):
    x, y = _skewed(2 * N, kx, ky, seed)
    got = P.plugin_mi_nats(x, y, kx, ky)
    assert got is not None, "this input should take the fused path"
    ref = _table_route(x, y, kx, ky)
    est = infomoe.mutual_information(x, y, kx=kx, ky=ky)
    assert est.n == ref.n == 2 * N and est.k == ref.k == (kx, ky)
    assert est.unit == "bits" and est.estimator == "plugin" and est.std is None
    assert float(est) == pytest.approx(float(ref), rel=1e-12, abs=1e-13)
    assert got[0] / math.log(2) == float(est)


def test_fused_counts_wrapped_cells_exactly():
    # one cell holds almost every pair: its uint8 counter wraps ~N/256 times
    x = np.zeros(3 * N, np.int64)
    y = np.zeros(3 * N, np.int64)
    x[::97] = 1
    y[::89] = 2
    assert P.plugin_mi_nats(x, y, 2, 3) is not None
    assert float(infomoe.mutual_information(x, y, kx=2, ky=3)) == pytest.approx(
        float(_table_route(x, y, 2, 3)), rel=1e-12, abs=1e-14)


def test_fused_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    x, y = _skewed(N + 123, 300, 16, 4)
    nats = sk.mutual_info_score(x, y)
    assert float(infomoe.mutual_information(x, y, base=math.e)) == pytest.approx(nats, rel=1e-11)


@pytest.mark.parametrize("base", [2, math.e, 10])
def test_fused_base_and_identities(base):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16, 4 * N)
    h = infomoe.entropy(infomoe.label_counts(x), base=base)
    # I(X;X) = H(X); I(X; f(X)) = H(f(X)); I(X; const) = 0
    assert float(infomoe.mutual_information(x, x, base=base)) == pytest.approx(float(h), rel=1e-13)
    assert float(infomoe.mutual_information(x, x % 4, base=base)) == pytest.approx(
        float(infomoe.entropy(infomoe.label_counts(x % 4), base=base)), rel=1e-13)
    assert float(infomoe.mutual_information(x, np.zeros_like(x), base=base)) == 0.0


def test_fused_independent_is_never_negative():
    rng = np.random.default_rng(6)
    for seed in range(5):
        x = rng.integers(0, 2, N)
        y = rng.integers(0, 2, N)
        assert float(infomoe.mutual_information(x, y)) >= 0.0


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_value_independent_of_thread_count(threads):
    x, y = _skewed(4 * N, 5000, 32, 7)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = P.plugin_mi_nats(x, y, None, None)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        many = P.plugin_mi_nats(x, y, None, None)
    finally:
        numba.set_num_threads(before)
    assert one == many  # bit for bit: exact counts, row blocks summed in a fixed order


@settings(derandomize=True, deadline=None, max_examples=25)
@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_fused_properties(kx, ky, seed):
    """I >= 0, I <= min(H(X), H(Y)), symmetry, relabelling, data processing, on the fused path."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(kx * ky, 0.3))
    cells = rng.choice(kx * ky, size=N, p=p)
    x, y = cells // ky, cells % ky
    mi = lambda a, b: float(infomoe.mutual_information(a, b))  # noqa: E731
    i_xy = mi(x, y)
    assert P.plugin_mi_nats(x, y, None, None) is not None or N < 8 * kx * ky
    hx = float(infomoe.entropy(infomoe.label_counts(x)))
    hy = float(infomoe.entropy(infomoe.label_counts(y)))
    assert 0.0 <= i_xy <= min(hx, hy) + 1e-12
    assert mi(y, x) == pytest.approx(i_xy, abs=1e-12)
    px, py = rng.permutation(kx), rng.permutation(ky)
    assert mi(px[x], py[y]) == pytest.approx(i_xy, abs=1e-12)
    f = rng.integers(0, max(ky - 1, 1), ky)                 # a coarsening of Y
    assert mi(x, f[y]) <= i_xy + 1e-12


@pytest.mark.parametrize("workers", [3, 5])
def test_fused_more_workers_than_cores(monkeypatch, workers):
    """More than two private tables take the general row path (sums of several
    uint8 tables, counts up to 255 * workers); the value must not change."""
    x, y = _skewed(4 * N, 700, 24, 13)
    z = x % 3
    ref_mi = P.plugin_mi_nats(x, y, None, None)
    ref_cmi = P.plugin_cmi_nats(x, y, z, 3, 700, 24)
    monkeypatch.setattr(numba, "get_num_threads", lambda: workers)
    assert P.plugin_mi_nats(x, y, None, None) == ref_mi
    assert P.plugin_cmi_nats(x, y, z, 3, 700, 24) == ref_cmi


@pytest.mark.parametrize("dtx, dty", [(np.int64, np.int64), (np.int32, np.uint8), (np.uint16, np.int8)])
def test_fused_any_integer_dtype(dtx, dty):
    x, y = _skewed(N, 200, 50, 8)
    ref = float(_table_route(x, y))
    assert float(infomoe.mutual_information(x.astype(dtx), y.astype(dty))) == pytest.approx(ref, rel=1e-12)


def test_fused_inferred_sizes_are_reported():
    x, y = _skewed(N, 40, 9, 9)
    est = infomoe.mutual_information(x, y)
    assert est.k == (int(x.max()) + 1, int(y.max()) + 1)


@pytest.mark.parametrize("kz, kx, ky, seed", [(1, 40, 6, 0), (3, 50, 7, 1), (6, 200, 16, 2), (2, 3, 300, 3)])
def test_fused_cmi_equals_table_route(kz, kx, ky, seed):
    rng = np.random.default_rng(seed)
    x, y = _skewed(3 * N, kx, ky, seed)
    z = (x + rng.integers(0, 2, x.size)) % kz                 # Z depends on X
    assert P.plugin_cmi_nats(x, y, z, kz, kx, ky) is not None
    table = np.zeros((kz, kx, ky), np.int64)
    np.add.at(table, (z, x, y), 1)
    ref = infomoe.conditional_mutual_information_table(table)
    est = infomoe.conditional_mutual_information(x, y, z)
    assert est.k == (kz, kx, ky) and est.n == 3 * N and est.estimator == "plugin"
    assert float(est) == pytest.approx(float(ref), rel=1e-12, abs=1e-13)
    if kz == 1:   # I(X;Y|const) = I(X;Y)
        assert float(est) == pytest.approx(float(infomoe.mutual_information(x, y)), rel=1e-13)


def test_fused_cmi_threads_and_wraps():
    rng = np.random.default_rng(12)
    n = 4 * N
    z = rng.integers(0, 3, n)
    x = np.where(rng.random(n) < 0.6, 0, rng.integers(0, 9, n))   # cell (z, 0, .) wraps often
    y = (x * 3 + z) % 5
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = P.plugin_cmi_nats(x, y, z, 3, 9, 5)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = P.plugin_cmi_nats(x, y, z, 3, 9, 5)
    finally:
        numba.set_num_threads(before)
    assert one == two
    table = np.zeros((3, 9, 5), np.int64)
    np.add.at(table, (z, x, y), 1)
    assert one / math.log(2) == pytest.approx(
        float(infomoe.conditional_mutual_information_table(table)), rel=1e-12)
    # Y a function of (X, Z): I(X;Y|Z) = H(Y|Z)
    ny_z = table.sum(axis=1).astype(float)
    h_y_given_z = -(ny_z * np.log(np.where(ny_z > 0, ny_z / ny_z.sum(1, keepdims=True), 1))).sum() / n
    assert one == pytest.approx(h_y_given_z, rel=1e-12)


def test_not_taken_when_table_is_sparse_or_input_small():
    rng = np.random.default_rng(10)
    x = rng.integers(0, 10_000, N)
    y = rng.integers(0, 100, N)
    assert P.plugin_mi_nats(x, y, None, None) is None             # < 1/8 pair per cell
    assert P.plugin_mi_nats(x[:100] % 3, y[:100] % 3, None, None) is None  # few samples
    chunks = [(x[:10] % 3, y[:10] % 3)]
    assert P.plugin_mi_nats(chunks, None, None, None) is None
    # those still get the right value through the table route
    assert float(infomoe.mutual_information(x, y)) == float(_table_route(x, y))


@pytest.mark.parametrize("bad_x, bad_y, match", [
    (-1, 0, r"`x` has negative label -1 at index 5"),
    (0, 7, r"`y` has label 7 at index 5, but `ky`=4"),
    (9, 0, r"`x` has label 9 at index 5, but `kx`=3"),
])
def test_fused_bad_labels_name_the_argument(bad_x, bad_y, match):
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, N)
    y = rng.integers(0, 4, N)
    x[5], y[5] = bad_x, bad_y
    with pytest.raises(ValueError, match=match):
        infomoe.mutual_information(x, y, kx=3, ky=4)


def test_fused_length_mismatch():
    with pytest.raises(ValueError, match="`x`.*`y`|`y`.*`x`"):
        infomoe.mutual_information(np.zeros(N, int), np.zeros(N + 1, int))


def test_scratch_tables_are_zeroed_and_not_shared():
    with C._zeroed_tables(2, 1000) as a:
        assert a.shape == (2, 1000) and not a.any()
        a[:] = 7                                    # leave it dirty
        with C._zeroed_tables(2, 1000) as b:        # in use: a different buffer
            assert not np.shares_memory(a, b) and not b.any()
    with C._zeroed_tables(1, 1500) as c:            # reused, and zeroed again
        assert c.shape == (1, 1500) and not c.any()
    seen = []

    def take():
        with C._zeroed_tables(1, 4096) as t:
            seen.append(bool(t.any()))
            t[:] = 1

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [False] * 8


@settings(derandomize=True, deadline=None, max_examples=60)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_wraps_grouped_by_row(nt, kx, ky, seed):
    # every logged wrap lands in its row's slice, once per log entry
    rng = np.random.default_rng(seed)
    nlogs = rng.integers(0, 30, nt)
    logs = np.full((nt, 31), -1, np.int64)            # entries past nlogs[w] are junk
    for w in range(nt):
        logs[w, :nlogs[w]] = rng.integers(0, kx * ky, nlogs[w])
    start, cells = P._wraps_by_row(logs, nlogs, kx, ky)
    assert start.dtype == cells.dtype == np.int64
    assert start[0] == 0 and start[-1] == nlogs.sum() == cells.size
    for a in range(kx):
        got = np.sort(cells[start[a]:start[a + 1]])
        want = np.sort(np.concatenate([logs[w, :nlogs[w]] for w in range(nt)]))
        np.testing.assert_array_equal(got, want[want // ky == a])


_FIRST_CALL = """
import json, sys
import numpy as np
import infomoe
from infomoe import _counting as C, _plugin_labels as P
rng = np.random.default_rng(0)
x = rng.integers(0, 1000, 1_000_000)
y = rng.integers(0, 64, 1_000_000)
v = float(infomoe.mutual_information(x, y))
kernels = {}
for mod in (C, P):
    for name in dir(mod):
        f = getattr(mod, name)
        if hasattr(f, "stats") and f.signatures:
            kernels[name] = [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
print(json.dumps({"value": v, "kernels": kernels}))
"""


def test_first_call_loads_two_kernels_from_the_numba_cache(tmp_path):
    # The first mutual_information of 1e6 int64 pairs in a new process
    # compiles (empty cache) or loads (warm cache) only the counting and the
    # row-sum kernels: every extra kernel costs 0.2-0.6 s cold, 10-15 ms warm
    # (benchmarks/bench_cold.py).  NUMBA_CACHE_DIR is the cache that is used.
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [json.loads(subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(2)]
    cold, warm = runs
    assert set(cold["kernels"]) == set(warm["kernels"]) == {"_scatter_small", "_row_terms"}
    assert all(h == 0 and m >= 1 for h, m in cold["kernels"].values())   # compiled...
    assert all(h == 1 and m == 0 for h, m in warm["kernels"].values())   # ...then loaded
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))
    assert cold["value"] == warm["value"]
