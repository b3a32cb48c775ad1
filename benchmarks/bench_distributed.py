"""How routing-log analysis time grows with log size and with Dask workers.

Writes synthetic routing logs of 1x, 4x and 16x a base size (4 MoE layers,
64 experts, top-2, token ids and positions; fixed-size shards, so the number
of shards grows with the log), then times

* the single-process path, :func:`infomoe.logs.analyze_log`, and
* the Dask path, :func:`infomoe.logs.analyze_log` with ``scheduler=``,
  on a ``LocalCluster`` of 1, 2 and 4 single-threaded worker processes,

and prints a table of seconds, tokens per second and the ratio to the
single-process time.  Cluster start-up is timed separately and excluded;
each cluster runs one warm-up analysis first (numba kernels load in every
worker process).  Every time is the best of ``--repeats`` runs.

Run:  python benchmarks/bench_distributed.py [--base-tokens 200000] [--repeats 2]

More workers than CPU cores cannot make the counting faster: on a 2-core
machine, 4 workers only time-share the 2 cores.  Distributing pays off when
the workers sit on more cores or more machines than one process can use,
and when the log lives on a file system every worker reads in parallel.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def make_log(path, n_tokens, shard_tokens, seed=0):
    from infomoe.logs import LayerSpec, LogWriter

    L, E, k = 4, 64, 2
    rng = np.random.default_rng(seed)
    with LogWriter(path, source="bench", layers=[LayerSpec(l, E, k) for l in range(L)]) as w:
        for a in range(0, n_tokens, shard_tokens):
            n = min(shard_tokens, n_tokens - a)
            tok = rng.integers(0, 32000, n)
            e0 = (tok[:, None] * 7 + np.arange(L)[None, :] * 13) % E
            ids = np.stack([e0, (e0 + 1 + rng.integers(0, E - 1, (n, L))) % E], axis=2)
            w.append(ids.astype(np.int16), token_id=tok.astype(np.int32),
                     position=(np.arange(a, a + n) % 4096).astype(np.int32))
    return path


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-tokens", type=int, default=200_000)
    ap.add_argument("--shard-tokens", type=int, default=25_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    from distributed import Client

    from infomoe.logs import analyze_log, open_log
    from infomoe.logs._distributed import local_cluster

    tmp = tempfile.mkdtemp(prefix="infomoe-bench-dist-")
    try:
        logs = {}
        for s in args.sizes:
            t0 = time.perf_counter()
            p = make_log(os.path.join(tmp, f"log{s}"), s * args.base_tokens, args.shard_tokens)
            logs[s] = open_log(p)
            print(f"wrote {s:>3}x: {logs[s].num_tokens:>10,} tokens, "
                  f"{len(logs[s].shards):>4} shards, "
                  f"{logs[s].nbytes / 1e6:8.1f} MB in {time.perf_counter() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPU cores; best of {args.repeats} runs per cell")

        # single-process path (warm-up first: numba kernels load once per process)
        analyze_log(logs[args.sizes[0]], progress=False)
        single, reports = {}, {}
        for s, log in logs.items():
            single[s], reports[s] = best_of(lambda: analyze_log(log, progress=False), args.repeats)

        dask_t, startup = {}, {}
        for nw in args.workers:
            t0 = time.perf_counter()
            with local_cluster(nw) as cluster, Client(cluster, set_as_default=False) as client:
                client.wait_for_workers(nw)
                startup[nw] = time.perf_counter() - t0
                analyze_log(logs[args.sizes[0]], scheduler=client, progress=False)
                for s, log in logs.items():
                    t, rep = best_of(lambda: analyze_log(log, scheduler=client,
                                                                     progress=False),
                                     args.repeats)
                    dask_t[s, nw] = t
                    # the distributed report must be the single-process one
                    for a, b in zip(rep.load, reports[s].load):
                        assert np.array_equal(a, b)
                    assert np.array_equal(rep.mi_token, reports[s].mi_token)
                    assert np.array_equal(rep.mi_transition, reports[s].mi_transition)

        head = (f"{'size':>5} {'tokens':>10} {'shards':>6} {'single s':>9} {'Mtok/s':>7}"
                + "".join(f" {f'dask {nw}w s':>11} {'x single':>8}" for nw in args.workers))
        print()
        print(head)
        print("-" * len(head))
        for s, log in logs.items():
            line = (f"{s:>4}x {log.num_tokens:>10,} {len(log.shards):>6} {single[s]:>9.3f} "
                    f"{log.num_tokens / single[s] / 1e6:>7.2f}")
            for nw in args.workers:
                t = dask_t[s, nw]
                line += f" {t:>11.3f} {t / single[s]:>8.2f}"
            print(line)
        print()
        base = args.sizes[0]
        for s in args.sizes[1:]:
            print(f"{s}x / {base}x time: single {single[s] / single[base]:.2f}, "
                  + ", ".join(f"dask {nw}w {dask_t[s, nw] / dask_t[base, nw]:.2f}"
                              for nw in args.workers) + f" (data grew {s / base:.0f}x)")
        print("cluster start-up (excluded above): "
              + ", ".join(f"{nw}w {startup[nw]:.1f} s" for nw in args.workers))
        print("'x single' = Dask time / single-process time (below 1: Dask is faster).")
        print(f"more workers than the {os.cpu_count()} cores here cannot be faster; every report "
              "was checked equal to the single-process one.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
