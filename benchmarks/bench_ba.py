"""Benchmark: infomoe's JAX rate–distortion sweep against a textbook numpy Blahut–Arimoto.

Problem: a 64-point accuracy–rate curve (slopes ``geomspace(1e-2, 1e4, 64)``,
the default grid of :func:`infomoe.accuracy_rate_curve`) for 10,000 samples x
16 experts with random 0/1 losses.

* infomoe: :func:`infomoe.rate_distortion`, all 64 slopes in one jitted call,
  float64, certificate tolerance 1e-9 bits.  Timed cold (with JIT
  compilation) and warm.
* textbook: Blahut–Arimoto as in Cover & Thomas §10.8, one slope at a time,
  until ``max_t |r_new(t) - r(t)| <= 1e-9`` or 10,000 iterations, in the
  log domain with logsumexp (as docs/theory.md#rate-distortion asks, so
  ``beta = 1e4`` cannot
  overflow).
* the same plain iteration in its fastest numpy form: linear domain with
  the kernel ``exp(-beta (d - min_t d))`` precomputed once per slope (the
  row shift keeps it from underflowing), two matrix-vector products per
  iteration.

Accuracy is judged by the certificate ``log2 max_t c(t)`` of each side's
final iterate (target <= 1e-6 bits on every slope), not by agreement between
the two.  By default the textbook runs on 8 evenly spaced slopes and its
total is extrapolated (mean time per slope x 64); ``--full`` runs all 64.

``--large`` checks that a large problem runs in bounded memory on CPU: a
slice of the GPU target (n x 64 experts x 128 slopes, a few iterations),
reporting the peak resident memory against the size the kernels would take
unblocked.

``--capacity`` compares the two channel-capacity solvers side by side on the
same channels (issue 13 item 5): projected Newton (the default up to 256
inputs) against the accelerated Arimoto iteration (the previous default, still
used above 256 inputs), on 500 random small channels and on 200 hard ones
(random 4 x 3 channels whose last two rows are within 1e-3), at the default
``max_iter`` and tolerance 1e-9 bits: channels certified, iterations, time.

Run: ``python benchmarks/bench_ba.py [--full] [--large] [--no-curve] [--capacity]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def make_losses(n=10_000, E=16, seed=0):
    rng = np.random.default_rng(seed)
    err = rng.uniform(0.2, 0.6, E)
    return (rng.random((n, E)) < err).astype(np.float64)


def _finish(A, r, p, d):
    """Rate (bits), distortion and certificate (bits) of the BA iterate ``r``."""
    Z = A @ r
    c = A.T @ (p / Z)
    q = A * r[None, :] / Z[:, None]
    D = float(p @ (q * d).sum(axis=1))
    rq = p @ q
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(p[:, None] * q * np.log(q / rq[None, :]))
    return mi / np.log(2), D, float(np.log2(c.max()))


def textbook_ba(d, beta, *, tol=1e-9, max_iter=10_000):
    """Textbook iteration in the log domain (Cover & Thomas §10.8 with logsumexp).

    ``log q(t|x) = log r(t) - beta d(x,t) - logsumexp_t(...)``,
    ``r(t) = sum_x p(x) q(t|x)``; stops when ``max_t |r_new - r| <= tol``.
    Returns (rate_bits, D, cert_bits, iterations).
    """
    from scipy.special import logsumexp

    n, E = d.shape
    p = np.full(n, 1.0 / n)
    logk = -beta * d
    r = np.full(E, 1.0 / E)
    it = 0
    for it in range(1, max_iter + 1):
        with np.errstate(divide="ignore"):
            lq = np.log(r)[None, :] + logk
        lq -= logsumexp(lq, axis=1, keepdims=True)
        r_new = p @ np.exp(lq)
        delta = np.max(np.abs(r_new - r))
        r = r_new
        if delta <= tol:
            break
    A = np.exp(-beta * (d - d.min(axis=1, keepdims=True)))
    return (*_finish(A, r, p, d), it)


def textbook_ba_linear(d, beta, *, tol=1e-9, max_iter=10_000):
    """The same iteration in the linear domain with the kernel precomputed once
    (``A = exp(-beta (d - min_t d))``, row-shifted so that it cannot underflow
    to an all-zero row): ``r <- r * A^T (p / A r)``.  The fastest form of the
    plain iteration.  Returns (rate_bits, D, cert_bits, iterations).
    """
    n, E = d.shape
    p = np.full(n, 1.0 / n)
    A = np.exp(-beta * (d - d.min(axis=1, keepdims=True)))
    r = np.full(E, 1.0 / E)
    it = 0
    for it in range(1, max_iter + 1):
        r_new = r * (A.T @ (p / (A @ r)))
        r_new /= r_new.sum()
        delta = np.max(np.abs(r_new - r))
        r = r_new
        if delta <= tol:
            break
    return (*_finish(A, r, p, d), it)


def bench_curve(full: bool):
    from infomoe import rate_distortion

    d = make_losses()
    betas = np.geomspace(1e-2, 1e4, 64)
    print(f"problem: {d.shape[0]} samples x {d.shape[1]} experts, random 0/1 losses, "
          f"{betas.size} slopes from {betas[0]:g} to {betas[-1]:g}")

    t0 = time.perf_counter()
    res = rate_distortion(d, betas)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = rate_distortion(d, betas)
    t_warm = time.perf_counter() - t0
    its = res.iterations
    print("\ninfomoe.rate_distortion (JAX, float64, projected Newton, warm-started sweep on CPU)")
    print(f"  time cold (incl. JIT compile) {t_cold:8.2f} s")
    print(f"  time warm                     {t_warm:8.2f} s")
    print(f"  iterations per slope: max {its.max()}, mean {its.mean():.1f}, total {its.sum()}")
    print(f"  time per iteration {1e3 * t_warm / its.sum():.2f} ms (warm time / total iterations)")
    print(f"  worst certificate {res.certificate.max():.3e} bits; all <= 1e-6 bits: "
          f"{bool((res.certificate <= 1e-6).all())}; converged (tol 1e-9 bits): "
          f"{int(res.converged.sum())}/{betas.size}")

    t0 = time.perf_counter()
    rb = rate_distortion(d, betas, sweep="batched")
    tb_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    rb = rate_distortion(d, betas, sweep="batched")
    tb_warm = time.perf_counter() - t0
    print("\ninfomoe.rate_distortion(sweep='batched') (all slopes iterate together; the GPU form)")
    print(f"  time cold {tb_cold:.2f} s, warm {tb_warm:.2f} s; batched iterations {rb.iterations.max()} "
          f"({1e3 * tb_warm / rb.iterations.max():.1f} ms each for 64 slopes); worst certificate "
          f"{rb.certificate.max():.3e} bits; |rate - warm sweep| <= {np.abs(rb.rate - res.rate).max():.1e} bits")

    idx = np.arange(betas.size) if full else np.unique(np.linspace(0, betas.size - 1, 8).round().astype(int))
    what = "all 64 slopes" if full else f"{idx.size} of 64 slopes (indices {idx.tolist()}), extrapolated"
    for name, fn in (("textbook numpy Blahut–Arimoto, log domain (logsumexp)", textbook_ba),
                     ("plain iteration, linear domain, precomputed row-shifted kernel", textbook_ba_linear)):
        times, iters, certs, gaps = [], [], [], []
        for i in idx:
            t0 = time.perf_counter()
            R, D, cert, it = fn(d, betas[i])
            times.append(time.perf_counter() - t0)
            iters.append(it)
            certs.append(cert)
            gaps.append(abs(R - res.rate[i]))
        times, iters, certs = np.array(times), np.array(iters), np.array(certs)
        est = times.mean() * betas.size
        print(f"\n{name}, one slope at a time ({what})")
        print(f"  measured time {times.sum():8.2f} s over {idx.size} slopes; "
              f"{'total' if full else 'estimated total for 64'} {est:8.2f} s")
        print(f"  iterations per slope: {iters.tolist()} (cap 10000, stop on max|dr| <= 1e-9)")
        print(f"  time per iteration {1e3 * times.sum() / iters.sum():.3f} ms")
        print(f"  worst certificate {certs.max():.3e} bits; slopes with certificate <= 1e-6 bits: "
              f"{int((certs <= 1e-6).sum())}/{idx.size}")
        print(f"  largest |rate difference| to infomoe on these slopes {max(gaps):.2e} bits")
        print(f"  speed ratio ({'total' if full else 'estimate'} / infomoe): "
              f"warm {est / t_warm:.1f}x, cold {est / t_cold:.1f}x")


def bench_large(n=50_000, E=64, n_beta=128):
    """Bounded memory on a slice of the GPU target, in both sweep forms (iteration-capped)."""
    from infomoe import rate_distortion

    rng = np.random.default_rng(1)
    d = (rng.random((n, E)) < rng.uniform(0.2, 0.6, E)).astype(np.float64)
    betas = np.geomspace(1e-2, 1e4, n_beta)
    print(f"\nlarge slice: {n} samples x {E} experts x {n_beta} slopes, block_size 1024 "
          "(iteration-capped, not run to convergence)")
    print(f"  the kernels exp(-beta d) for all slopes unblocked would take {n * E * n_beta * 8 / 2**20:.0f} MiB")
    for sweep, rows, max_iter in (("warm", n, 2), ("batched", n // 5, 1)):
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        res = rate_distortion(d[:rows], betas, max_iter=max_iter, block_size=1024, sweep=sweep)
        t = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  sweep={sweep!r}, {rows} samples, max_iter {max_iter}: {t:.1f} s incl. compile; "
              f"peak RSS {rss0:.0f} -> {rss1:.0f} MiB; all finite: "
              f"{bool(np.isfinite(res.rate).all() and np.isfinite(res.certificate).all())}")


def _random_channels(n=500, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        N, M = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        out.append(rng.dirichlet(np.ones(M) * rng.choice([0.2, 0.5, 1.0, 3.0]), size=N))
    return out


def _near_duplicate_channels(n=200):
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        W = rng.dirichlet(np.ones(3), size=4)
        W[3] = np.abs(W[2] + rng.uniform(-1e-3, 1e-3, 3))
        W[3] /= W[3].sum()
        out.append(W)
    return out


def bench_capacity():
    """Projected Newton vs accelerated Arimoto on the same channels (warm: compiled first)."""
    from infomoe import _blahut_arimoto as ba
    from infomoe import channel_capacity

    print("\nchannel_capacity, tolerance 1e-9 bits, default max_iter 10,000 "
          "(each solver compiled before timing)")
    sets = (("500 random small channels (2-6 x 2-6)", _random_channels()),
            ("200 near-duplicate-row 4 x 3 channels", _near_duplicate_channels()))
    limit = ba._NEWTON_INPUTS
    try:
        for label, chans in sets:
            rows = {}
            for name, newton_limit in (("projected Newton", limit), ("accelerated Arimoto", 0)):
                ba._NEWTON_INPUTS = newton_limit
                for W in chans:  # compile every shape first
                    channel_capacity(W, max_iter=1)
                t0 = time.perf_counter()
                res = [channel_capacity(W) for W in chans]
                t = time.perf_counter() - t0
                its = np.array([r.iterations for r in res])
                cert = np.array([r.certificate for r in res])
                rows[name] = (t, res)
                print(f"  {label}, {name:<20}: certified {sum(r.converged for r in res)}/{len(res)}, "
                      f"worst certificate {cert.max():.2e} bits, iterations median "
                      f"{np.median(its):.0f} max {its.max()}, time {t:.2f} s")
            (tn, rn), (ta, ra) = rows["projected Newton"], rows["accelerated Arimoto"]
            both = [(a.capacity, b.capacity) for a, b in zip(rn, ra) if a.converged and b.converged]
            gap = max(abs(a - b) for a, b in both) if both else float("nan")
            print(f"  {label}: time ratio Arimoto / Newton {ta / tn:.1f}x; "
                  f"largest |capacity difference| where both certified {gap:.1e} bits")
    finally:
        ba._NEWTON_INPUTS = limit


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="run the textbook on all 64 slopes")
    ap.add_argument("--large", action="store_true", help="bounded-memory check on a large slice")
    ap.add_argument("--no-curve", action="store_true", help="skip the 64-point comparison")
    ap.add_argument("--capacity", action="store_true",
                    help="channel capacity: projected Newton vs accelerated Arimoto")
    a = ap.parse_args()
    if not a.no_curve:
        bench_curve(a.full)
    if a.large:
        bench_large()
    if a.capacity:
        bench_capacity()
