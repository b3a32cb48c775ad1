"""Speed of plug-in mutual information from label pairs (issue 2, "Speed").

Times, in one run and on the same arrays, the plug-in I(X;Y) of ``n`` label
pairs counted into a ``kx x ky`` table (default n = 2e7, 32,000 x 64) by

* ``infomoe.mutual_information(x, y, kx=, ky=)`` (for these sizes the fused
  path of ``infomoe._plugin_labels``: counting into small uint8 tables and
  the MI summed from them, no int64 table), and, for comparison, the
  two-step route it replaced: ``infomoe.contingency`` (the int64 table) and
  ``infomoe.mutual_information_table`` on it,
* a numpy version: ``np.bincount(x * ky + y, minlength=kx * ky)`` then the
  plug-in MI of the table in numpy,
* scikit-learn ``mutual_info_score`` (timed on a subsample of
  ``--sklearn-n`` pairs and extrapolated linearly -- printed as such),
* a memory-read floor: summing both input arrays, once with numpy
  (``x.sum() + y.sum()``, one thread) and once with a numba parallel loop
  (all threads), the fastest the inputs can be read at all.

It prints pairs/s for each, the ratios against the targets (>= 100x
scikit-learn, >= 2x numpy bincount, >= 0.4x the floor), the MI values of
every method (they must agree), and the peak memory of the chunked path
(measured in a fresh subprocess from /proc RSS) against "2 x table + one
chunk".

Two data sets: ``routing`` (token ids drawn from a Zipf-like law over kx, the
expert a noisy function of the token: the shape of real routing logs) and
``uniform`` (independent uniform labels: the worst case for cache locality).
Two label layouts: ``int64`` (numpy's default) and ``compact``
(``int32`` token ids, ``uint8`` experts).

Usage::

    python benchmarks/bench_mi.py                 # all data sets and layouts
    python benchmarks/bench_mi.py --data routing --dtype int64 --repeats 7
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np

LN2 = math.log(2.0)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def make_data(kind: str, n: int, kx: int, ky: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, kx, n), rng.integers(0, ky, n)
    if kind == "routing":
        ranks = np.arange(kx, dtype=np.float64)
        p = 1.0 / (ranks + 10.0) ** 1.1
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        x = np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)
        np.minimum(x, kx - 1, out=x)
        preferred = rng.integers(0, ky, kx)           # each token's favourite expert
        y = np.where(rng.random(n) < 0.6, preferred[x], rng.integers(0, ky, n))
        return x, y.astype(np.int64)
    raise ValueError(f"unknown data set {kind!r}")


def cast(x, y, layout: str):
    if layout == "int64":
        return x.astype(np.int64), y.astype(np.int64)
    if layout == "compact":
        return x.astype(np.int32), y.astype(np.uint8)
    raise ValueError(f"unknown layout {layout!r}")


# ---------------------------------------------------------------------------
# the competitors
# ---------------------------------------------------------------------------

def plugin_mi_bits_numpy(table: np.ndarray) -> float:
    """Plug-in I(X;Y) in bits of a count table, plain numpy."""
    c = table.astype(np.float64, copy=False)
    n = c.sum()
    px = c.sum(axis=1)
    py = c.sum(axis=0)
    nz = c[c > 0]
    px = px[px > 0]
    py = py[py > 0]
    mi = (np.dot(nz, np.log(nz)) - np.dot(px, np.log(px)) - np.dot(py, np.log(py))) / n + math.log(n)
    return max(mi, 0.0) / LN2


def numpy_bincount_mi(x, y, kx, ky) -> float:
    table = np.bincount(x * ky + y, minlength=kx * ky).reshape(kx, ky)
    return plugin_mi_bits_numpy(table)


def sklearn_mi(x, y) -> float:
    from sklearn.metrics import mutual_info_score
    return mutual_info_score(x, y) / LN2  # sklearn returns nats


_PAR_SUM = None


def parallel_sum(x, y) -> int:
    """Sum both arrays with all numba threads (the parallel read floor)."""
    global _PAR_SUM
    if _PAR_SUM is None:
        from numba import njit, prange

        @njit(parallel=True, cache=True)
        def _par_sum(a, b):
            s = 0
            for i in prange(a.shape[0]):
                s += a[i]
            t = 0
            for i in prange(b.shape[0]):
                t += b[i]
            return s + t

        _PAR_SUM = _par_sum
    return _PAR_SUM(x, y)


def contingency_one_thread(x, y, kx, ky):
    """infomoe.contingency with numba limited to one thread (shows the scaling)."""
    import numba

    import infomoe
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return infomoe.contingency(x, y, kx=kx, ky=ky)
    finally:
        numba.set_num_threads(before)


def numpy_sum(x, y) -> int:
    return int(x.sum()) + int(y.sum())


def time_interleaved(fns: dict, repeats: int, settle: float = 0.0):
    """Time every function once per round, rounds repeated ``repeats`` times.

    Interleaving makes the ratios robust to load that comes and goes (other
    processes on the machine): each round compares the methods under the
    same conditions; the order rotates from round to round.  ``settle``
    seconds of sleep before each timed call let the previous method's
    after-effects die down (OpenMP threads of the numba parallel floor
    spinning on the second core, the kernel unmapping numpy's 160 MB
    temporary): measured on the development VM, a 2-thread count right after
    numpy's bincount took 28-44 ms instead of 19-20 ms.
    Returns ``{name: (times array, last value)}``.
    """
    values = {name: fn() for name, fn in fns.items()}  # warm-up: numba cache load, page faults
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        # rotate the order every round, so no method always runs right after
        # the one that churns the most memory (numpy's 160 MB temporary)
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (np.array(times[name]), values[name]) for name in fns}


# ---------------------------------------------------------------------------
# chunked peak memory (run in a fresh subprocess so /proc RSS is meaningful)
# ---------------------------------------------------------------------------

def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def chunked_memory_child(n: int, kx: int, ky: int, chunk: int, traced: int) -> None:
    """Count n pairs from a generator; print the peak extra memory and the time.

    ``traced=0``: peak RSS (VmHWM after resetting it) minus RSS at the start:
    everything the process touched, including allocator slack.  ``traced=1``:
    tracemalloc's peak of live numpy/Python allocations (the input chunks,
    the table, the private uint8 tables and wrap logs are all numpy arrays).
    """
    import tracemalloc

    import infomoe

    # warm up (compile / load the numba cache) the same kernels on a small table
    warm = np.zeros(100_000, np.int64)
    infomoe.contingency(((warm, warm) for _ in range(2)), kx=2, ky=2)
    del warm
    rng = np.random.default_rng(1)

    def chunks():
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            yield rng.integers(0, kx, m), rng.integers(0, ky, m)

    if traced:
        tracemalloc.start()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS mark
        f.write("5")
    base = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    table = infomoe.contingency(chunks(), kx=kx, ky=ky)
    dt = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    assert int(table.sum()) == n
    extra = tracemalloc.get_traced_memory()[1] if traced else (peak - base) * 1024
    print(f"{extra} {dt}")


def chunked_memory(n: int, kx: int, ky: int, chunk: int, traced: int):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child",
                          str(n), str(kx), str(ky), str(chunk), str(traced)],
                         capture_output=True, text=True, check=True)
    extra, dt = out.stdout.split()
    return int(extra), float(dt)


# ---------------------------------------------------------------------------

def load_infomoe_mi():
    """infomoe's MI from samples, or contingency + table MI; fail clearly."""
    import infomoe
    try:
        mi = infomoe.mutual_information
        return lambda x, y, kx, ky: float(mi(x, y, kx=kx, ky=ky))
    except (AttributeError, ImportError):
        pass
    try:
        mit = infomoe.mutual_information_table
    except (AttributeError, ImportError):
        sys.exit("bench_mi: infomoe.mutual_information and infomoe.mutual_information_table are "
                 "both unavailable; cannot time infomoe's MI (counting alone is "
                 "infomoe.contingency).")
    return lambda x, y, kx, ky: float(mit(infomoe.contingency(x, y, kx=kx, ky=ky)))


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:9.1f} M pairs/s"


def run_case(kind, layout, args, mi_fn):
    import infomoe

    n, kx, ky = args.n, args.kx, args.ky
    x, y = cast(*make_data(kind, n, kx, ky), layout)
    print(f"\n== data={kind}, labels {x.dtype}/{y.dtype}, n={n:,}, table {kx:,} x {ky} "
          f"(int64 table {kx * ky * 8 / 2**20:.1f} MiB, inputs {(x.nbytes + y.nbytes) / 2**20:.0f} MiB)")
    fns = {
        "floor: numpy x.sum()+y.sum()": lambda: numpy_sum(x, y),
        "floor: numba parallel sum": lambda: parallel_sum(x, y),
        "numpy bincount + MI": lambda: numpy_bincount_mi(x, y, kx, ky),
        "infomoe.mutual_information": lambda: mi_fn(x, y, kx, ky),
        "  two-step: infomoe.contingency": lambda: infomoe.contingency(x, y, kx=kx, ky=ky),
        "  (the same, 1 thread)": lambda: contingency_one_thread(x, y, kx, ky),
    }
    if hasattr(infomoe, "mutual_information_table"):
        table = infomoe.contingency(x, y, kx=kx, ky=ky)
        fns["  two-step: + table MI (infomoe)"] = lambda: float(infomoe.mutual_information_table(table))
        fns["  (numpy plug-in MI of that table)"] = lambda: plugin_mi_bits_numpy(table)
    rows = time_interleaved(fns, args.repeats, args.settle)

    ns = min(args.sklearn_n, n)
    xs, ys = x[:ns], y[:ns]
    t0 = time.perf_counter()
    mi_sk = sklearn_mi(xs, ys)
    t_sk = time.perf_counter() - t0
    mi_sub = mi_fn(xs, ys, kx, ky)
    sk_rate = ns / t_sk

    print(f"{'method':34s} {'best':>10s} {'median':>10s}   throughput (best)   plug-in MI [bits]")
    for name, (ts, val) in rows.items():
        mi_txt = f"{val:.10f}" if isinstance(val, float) else ""
        print(f"{name:34s} {ts.min() * 1e3:8.1f}ms {np.median(ts) * 1e3:8.1f}ms   "
              f"{fmt_rate(n / ts.min())}   {mi_txt}")
    print(f"{'scikit-learn mutual_info_score':34s} {t_sk * n / ns * 1e3:8.0f}ms {'':>10s}   "
          f"{fmt_rate(sk_rate)}   {mi_sk:.10f} (on the first {ns:,} pairs; infomoe there: {mi_sub:.10f})")
    if ns < n:
        print(f"  (scikit-learn timed once on the first {ns:,} pairs and its time extrapolated linearly to "
              f"n; its cost grows at least linearly (np.unique sorts), so this favours scikit-learn)")

    t_io = rows["infomoe.mutual_information"][0]

    def ratio(name):
        ts = rows[name][0]
        return ts.min() / t_io.min(), float(np.median(ts / t_io))

    print(f"speed-up of infomoe.mutual_information (ratio of best times; median of per-round ratios "
          f"in brackets; {args.repeats} rounds):")
    print(f"  vs scikit-learn                   {t_sk * n / ns / t_io.min():7.1f}x  "
          f"[{t_sk * n / ns / np.median(t_io):7.1f}x vs median]  target >= 100x")
    r = ratio("numpy bincount + MI")
    print(f"  vs numpy bincount + MI            {r[0]:7.2f}x  [{r[1]:7.2f}x]  target >= 2x")
    r = ratio("floor: numpy x.sum()+y.sum()")
    print(f"  vs floor, numpy sum (1 thread)    {r[0]:7.2f}x  [{r[1]:7.2f}x]  target >= 0.4x")
    r = ratio("floor: numba parallel sum")
    print(f"  vs floor, numba sum (all threads) {r[0]:7.2f}x  [{r[1]:7.2f}x]  (stricter floor, no target)")
    mi_np, mi_io = rows["numpy bincount + MI"][1], rows["infomoe.mutual_information"][1]
    print(f"  MI agreement: |infomoe - numpy| = {abs(mi_np - mi_io):.1e} bits on all n; "
          f"|infomoe - scikit-learn| = {abs(mi_sub - mi_sk):.1e} bits on the subsample")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000_000)
    ap.add_argument("--kx", type=int, default=32_000)
    ap.add_argument("--ky", type=int, default=64)
    ap.add_argument("--data", choices=["routing", "uniform", "all"], default="all")
    ap.add_argument("--dtype", choices=["int64", "compact", "all"], default="all")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--settle", type=float, default=0.1,
                    help="seconds of sleep before each timed call (0: back to back)")
    ap.add_argument("--sklearn-n", type=int, default=2_000_000,
                    help="pairs given to scikit-learn (its time is extrapolated to n)")
    ap.add_argument("--chunk", type=int, default=1_000_000, help="chunk size of the memory test")
    ap.add_argument("--memory-only", action="store_true", help="only the chunked peak-memory test")
    ap.add_argument("--_memory-child", nargs=5, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memory_child:
        chunked_memory_child(*args._memory_child)
        return

    import numba
    mi_fn = load_infomoe_mi()
    print(f"bench_mi: {os.cpu_count()} CPUs, numba {numba.__version__} with {numba.get_num_threads()} "
          f"threads, numpy {np.__version__}")
    kinds = ["routing", "uniform"] if args.data == "all" else [args.data]
    layouts = ["int64", "compact"] if args.dtype == "all" else [args.dtype]
    for kind in kinds:
        for layout in layouts:
            if not args.memory_only:
                run_case(kind, layout, args, mi_fn)

    table_b = args.kx * args.ky * 8
    chunk_b = 2 * 8 * args.chunk
    budget = 2 * table_b + chunk_b
    print(f"\n== chunked path: {args.n:,} int64 pairs in chunks of {args.chunk:,} from a generator, "
          f"declared {args.kx:,} x {args.ky}")
    print(f"budget 2 x table + one chunk = 2 x {table_b / 2**20:.1f} + {chunk_b / 2**20:.1f} = "
          f"{budget / 2**20:.1f} MiB")
    for traced, what in [(0, "peak RSS increase (/proc VmHWM)"), (1, "peak live allocations (tracemalloc)")]:
        extra, dt = chunked_memory(args.n, args.kx, args.ky, args.chunk, traced)
        print(f"  {what:38s} {extra / 2**20:6.1f} MiB = {extra / budget:.2f} of budget "
              f"-> {'within' if extra < budget else 'OVER'} ({dt * 1e3:.0f} ms)")

if __name__ == "__main__":
    main()
