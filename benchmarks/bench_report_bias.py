"""Which mutual-information estimator should the routing report use by default?

Measures, on contingency tables of routing shape (token buckets x experts, often more cells than
pairs), the bias of every estimator of :func:`infomoe.mutual_information_table` and of the report's
``"shuffle"`` estimator (plug-in minus the mean of its permutation null), at independence and under
planted dependence (expert = h(token) with probability rho, else uniform; tokens Zipf(1.1)); then the
standard error of the shuffle estimate from the bootstrap and from the delete-one-group jackknife
against the spread over independent draws.  The peer is the plug-in estimator; the ratio printed is
|bias| of each estimator over |bias| of the plug-in.

Run:  python benchmarks/bench_report_bias.py [--draws 4]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from infomoe import mutual_information_table
from infomoe.logs._uncertainty import (GroupedCounts, jackknife_se, jackknife_weights, permutation_null,
                                       plugin_mi_sparse, replicate_tables)

ESTIMATORS = ("plugin", "miller_madow", "jackknife", "chao_shen", "nsb", "grassberger", "james_stein")
CASES = ((2048, 64, 8192, 0.0), (2048, 64, 8192, 0.5), (512, 16, 4096, 0.0), (512, 16, 4096, 0.5),
         (512, 16, 4096, 0.9), (2048, 64, 65536, 0.3))


def draw(rng, V, E, N, rho, groups=64):
    p = 1.0 / np.arange(1, V + 1) ** 1.1
    p /= p.sum()
    h = rng.integers(0, E, V)
    x = rng.choice(V, N, p=p)
    e = np.where(rng.random(N) < rho, h[x], rng.integers(0, E, N))
    ch = np.full((V, E), (1 - rho) / E)
    ch[np.arange(V), h] += rho
    pe = p @ ch

    def H(q):
        q = q[q > 0]
        return float(-(q * np.log2(q)).sum())

    truth = H(pe) - float(np.sum(p * np.array([H(r) for r in ch])))
    g = np.arange(N) * groups // N  # contiguous "sequences"
    return x, e, g, truth


def shuffle_estimate(x, e, V, E, seed):
    t = np.zeros((V, E), np.int64)
    np.add.at(t, (x, e), 1)
    r, c = np.nonzero(t)
    mean, _, _ = permutation_null(r, c, t[r, c], permutations=30, seed=seed, base=2)
    return t, float(plugin_mi_sparse(r, c, t[r, c], 2)) - mean


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    warnings.simplefilter("ignore")
    names = ESTIMATORS + ("shuffle",)
    print("bias in bits (mean over draws); ratio = |bias| / |plug-in bias|")
    print(f"{'V x E, N, rho':>24} {'I true':>7} " + " ".join(f"{n:>12}" for n in names))
    for V, E, N, rho in CASES:
        bias = {n: [] for n in names}
        for d in range(args.draws):
            x, e, g, truth = draw(rng, V, E, N, rho)
            t, sh = shuffle_estimate(x, e, V, E, d)
            for n in ESTIMATORS:
                bias[n].append(float(mutual_information_table(t, estimator=n).value) - truth)
            bias["shuffle"].append(sh - truth)
        b = {n: float(np.mean(v)) for n, v in bias.items()}
        print(f"{f'{V}x{E}, {N}, {rho}':>24} {truth:7.3f} "
              + " ".join(f"{b[n]:+6.3f} ({abs(b[n]) / abs(b['plugin']):.2f})" for n in names))
    print("\nstandard error of the shuffle estimate (2048 x 64, 8192 pairs, 64 groups of consecutive tokens)")
    V, E, N = 2048, 64, 8192
    for rho in (0.0, 0.5):
        spread = np.std([shuffle_estimate(*draw(rng, V, E, N, rho)[:2], V, E, s)[1] for s in range(15)], ddof=1)
        x, e, g, _ = draw(rng, V, E, N, rho)
        gc = GroupedCounts.from_labels(g, x, e, (64, V, E))
        W = rng.multinomial(64, np.full(64, 1 / 64), size=100).astype(float)
        rr, cc, n = replicate_tables(gc, W)
        boot = float(np.std(plugin_mi_sparse(rr, cc, n, 2), ddof=1))
        rr, cc, n = replicate_tables(gc, jackknife_weights(np.bincount(g, minlength=64)))
        jack = jackknife_se(plugin_mi_sparse(rr, cc, n, 2))
        print(f"  rho={rho}: over independent draws {spread:.4f}; bootstrap {boot:.4f} ({boot / spread:.1f}x); "
              f"grouped jackknife {jack:.4f} ({jack / spread:.1f}x)")


if __name__ == "__main__":
    main()
