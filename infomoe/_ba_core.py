"""JAX kernels for Blahut–Arimoto problems (private; see :mod:`infomoe._blahut_arimoto`).

Everything here assumes clean input: the public wrappers validate, shift,
compress and block the data before calling these jitted functions.

Rate–distortion at slope ``beta`` is solved in its dual form (Blahut 1972)::

    maximise  F(r) = sum_x p(x) log Z(x),   Z(x) = sum_t r(t) A(x, t),
    over the expert simplex,  A(x, t) = exp(-beta * (d(x, t) - min_t d(x, t))),

a smooth concave problem in ``E`` variables whose optimum usually sits on a
face of the simplex.  Following the mixSQP reformulation (Kim et al. 2020)
we drop the equality constraint and minimise
``f(x) = -F(x) + sum_t x(t)`` over ``x >= 0`` (its minimiser lies on the
simplex), with Bertsekas' projected Newton method (ε-active set, Newton
step on the free experts, Armijo search along the projection arc).  The
gradient is ``1 - c(t)`` with ``c(t) = sum_x p(x) A(x, t) / Z(x)``, the
Blahut–Arimoto multiplier, and ``log max_t c(t)`` is the stopping
certificate.

Samples are processed in blocks with :func:`jax.lax.scan`, so memory is
``O(n_beta * block * E)`` whatever the number of samples.  Two sweep forms:
:func:`rd_solve` iterates all slopes together (batched over a leading ``L``
axis; a converged slope stops moving and counting iterations), and
:func:`rd_solve_sweep` solves them one after another, each warm-started from
the previous solution.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

#: number of trial step sizes 1, 1/2, ..., 2**-(K-1) evaluated in one data pass
N_STEPS = 8
#: Armijo sufficient-decrease constant
ARMIJO = 1e-4
#: upper bound on the ε of the ε-active set (Bertsekas 1982)
EPS_ACTIVE = 1e-3
#: weight of the uniform distribution mixed in before the Blahut–Arimoto trial step
SMOOTH = 1e-3


def _log_kernel(dd, beta):
    """``-beta * dd`` with ``0 * inf`` read as 0 (``beta = inf`` keeps only ties)."""
    return jnp.where(dd == 0, jnp.zeros((), dd.dtype), -beta * dd)


# ---------------------------------------------------------------------------
# rate-distortion: data passes
# ---------------------------------------------------------------------------
#
# ``xs`` is what the passes scan over, one entry per block of samples:
# ``(A, pw)`` with the kernels ``A = exp(-beta dd)`` precomputed, shape
# [nblk, L, B, E] (when they fit in memory), or ``(dd, pw)`` with the shifted
# distortions, shape [nblk, B, E], from which each pass recomputes ``A``.

def _kernels(xs_blk, betas, cached):
    if cached:
        return xs_blk
    return jnp.exp(_log_kernel(xs_blk[None, :, :], betas[:, None, None]))


def make_kernels(dd, betas):
    """Precompute ``A`` for every block and slope: [nblk, L, B, E]."""
    return jnp.exp(_log_kernel(dd[:, None, :, :], betas[None, :, None, None]))


def _stats_pass(xs, betas, x, xb, cached):
    """Per slope: F = sum p log Z, c(t) = sum p A / Z, the Hessian sum p A A^T / Z^2
    (all at ``x``) and the Blahut–Arimoto multiplier ``cb`` at a second point ``xb``."""
    L, E = x.shape
    dt = x.dtype

    def body(carry, blk):
        F, c, H, cb = carry
        Ab, pb = blk
        A = _kernels(Ab, betas, cached)                                     # [L,B,E]
        Z = jnp.einsum("lbe,le->lb", A, x)
        Zb = jnp.einsum("lbe,le->lb", A, xb)
        F = F + jnp.sum(jnp.where(pb > 0, pb * jnp.log(Z), 0), axis=1)
        sp = jnp.sqrt(pb)
        W = A * jnp.where(pb > 0, sp / Z, 0)[:, :, None]                     # sqrt(p) A / Z
        c = c + jnp.einsum("lbe,b->le", W, sp)
        H = H + jnp.einsum("lbe,lbf->lef", W, W)
        cb = cb + jnp.einsum("lbe,lb->le", A, jnp.where(pb > 0, pb / Zb, 0))
        return (F, c, H, cb), None

    z = jnp.zeros((L, E), dt)
    init = (jnp.zeros((L,), dt), z, jnp.zeros((L, E, E), dt), z)
    (F, c, H, cb), _ = lax.scan(body, init, xs)
    return F, c, H, cb


def _cert_pass(xs, betas, x, cached):
    """``c(t) = sum_x p(x) A(x, t) / Z(x)`` per slope (the certificate's multipliers)."""
    L, E = x.shape

    def body(c, blk):
        Ab, pb = blk
        A = _kernels(Ab, betas, cached)
        Z = jnp.einsum("lbe,le->lb", A, x)
        return c + jnp.einsum("lbe,lb->le", A, jnp.where(pb > 0, pb / Z, 0)), None

    c, _ = lax.scan(body, jnp.zeros((L, E), x.dtype), xs)
    return c


def _trial_pass(xs, betas, X, cached):
    """``sum_x p(x) log Z_k(x)`` at K trial points per slope; X: [L, K, E].

    ``-inf`` where a trial point leaves some sample with ``Z = 0``.
    """
    L, K, _ = X.shape

    def body(acc, blk):
        Ab, pb = blk
        A = _kernels(Ab, betas, cached)
        Zk = jnp.einsum("lbe,lke->lkb", A, X)
        acc = acc + jnp.sum(jnp.where(pb > 0, pb * jnp.log(Zk), 0), axis=2)
        return acc, None

    acc, _ = lax.scan(body, jnp.zeros((L, K), X.dtype), xs)
    return acc


def _report_pass(dd, pw, betas, r):
    """Distortion above the per-sample minimum, output marginal and I(X;T) (nats)."""
    L, E = r.shape
    dt = r.dtype
    logr = jnp.where(r > 0, jnp.log(jnp.where(r > 0, r, 1)), -jnp.inf)

    def body(carry, blk):
        dex, rq, qlq = carry
        ddb, pb = blk
        logq = logr[:, None, :] + _log_kernel(ddb[None, :, :], betas[:, None, None])
        logq = logq - jax.nn.logsumexp(logq, axis=2, keepdims=True)
        q = jnp.exp(logq)
        pq = pb[None, :, None] * q
        dex = dex + jnp.sum(pq * ddb[None], axis=(1, 2))
        rq = rq + jnp.sum(pq, axis=1)
        qlq = qlq + jnp.sum(jnp.where(q > 0, pq * logq, 0), axis=(1, 2))
        return (dex, rq, qlq), None

    init = (jnp.zeros((L,), dt), jnp.zeros((L, E), dt), jnp.zeros((L,), dt))
    (dex, rq, qlq), _ = lax.scan(body, init, (dd, pw))
    rq = rq / jnp.sum(rq, axis=1, keepdims=True)
    hr = -jnp.sum(jnp.where(rq > 0, rq * jnp.log(jnp.where(rq > 0, rq, 1)), 0), axis=1)
    mi = jnp.maximum(qlq + hr, 0)  # >= 0 up to rounding; clipped
    return dex, rq, mi


# ---------------------------------------------------------------------------
# rate-distortion: projected Newton step for one slope (vmapped over slopes)
# ---------------------------------------------------------------------------

def _direction(x, c, H, lam):
    """Projected-Newton direction (Bertsekas 1982, eqs. 14-16) for f = -F + sum x."""
    dt = x.dtype
    g = 1 - c
    w = jnp.sum(jnp.abs(x - jnp.maximum(x - g, 0)))
    eps = jnp.minimum(jnp.asarray(EPS_ACTIVE, dt), w)
    act = (x <= eps) & (g > 0)
    free = ~act
    dH = jnp.diagonal(H)
    ridge = lam * jnp.maximum(jnp.max(dH), jnp.finfo(dt).tiny)
    M = jnp.where(free[:, None] & free[None, :], H, 0)
    M = M + jnp.diag(jnp.where(act, dH, 0) + ridge)
    chol = jnp.linalg.cholesky(M)
    d = -jax.scipy.linalg.cho_solve((chol, True), g)
    ok = jnp.all(jnp.isfinite(d))
    return jnp.where(ok, d, -g), g


def _trial_points(x, g, d, xb, cb):
    """Trial points: the projection arc ``[x + 2^-k d]_+``, k < N_STEPS, and one
    Blahut–Arimoto step ``xb * cb`` taken from ``xb = (1 - SMOOTH) x + SMOOTH / E``.

    The BA candidate lets an expert whose weight was driven to (or near) 0
    re-enter at the right scale in one step; Newton steps from 0 can only
    double a tiny weight per iteration when ``beta`` is large.  Experts at 0
    that already satisfy the optimality condition (``c(t) <= 1``) stay at 0.
    """
    alphas = 2.0 ** (-jnp.arange(N_STEPS, dtype=x.dtype))
    X = jnp.maximum(x[None, :] + alphas[:, None] * d[None, :], 0)
    xba = jnp.where((x == 0) & (g >= 0), 0, xb * cb)
    return jnp.concatenate([X, xba[None, :]], axis=0)


def _choose(x, g, F0, X, Fk, lam):
    """Pick a trial point.

    ``f(X_k) - f(x) = -(Fk - F0) + sum(X_k) - 1``.  A point is acceptable
    under the Armijo test, with a slack of a few rounding units of ``F`` so
    that near the optimum, where the decrease falls below what ``F`` can
    resolve, the full Newton step is still taken (the Blahut–Arimoto point
    only needs to decrease ``f``).  The full Newton step is
    preferred when it is within the slack of the best point; otherwise the
    acceptable point with the least ``f``.  Returns the new ``x``
    (renormalised onto the simplex, which never increases ``f``) and the new
    relative ridge (lowered after a full Newton step, raised when no point of
    the Newton arc is acceptable).
    """
    dt = x.dtype
    df = -(Fk - F0) + (jnp.sum(X, axis=1) - 1)
    df = jnp.where(jnp.isnan(df), jnp.inf, df)
    slack = 16 * jnp.finfo(dt).eps * (1 + jnp.abs(F0))
    ok = df <= ARMIJO * ((X - x[None, :]) @ g) + slack
    ok = ok.at[N_STEPS].set(df[N_STEPS] < 0)  # BA step: plain decrease
    any_ok = jnp.any(ok)
    k_min = jnp.argmin(df)
    k_ok = jnp.argmin(jnp.where(ok, df, jnp.inf))
    newton = ok[0] & (df[0] <= df[k_min] + slack)
    k = jnp.where(newton, 0, jnp.where(any_ok, k_ok, k_min))
    move = any_ok | (df[k_min] < 0)
    xn = X[k] / jnp.sum(X[k])
    xn = jnp.where(move, xn, x)
    lo = jnp.asarray(1e-13 if dt == jnp.float64 else 1e-6, dt)
    path_ok = jnp.any(ok[:N_STEPS])
    lam = jnp.where(newton, jnp.maximum(lam * 0.1, lo),
                    jnp.where(path_ok, lam, jnp.minimum(lam * 100, 1e8)))
    return xn, lam


def _certificate(c):
    return jnp.log(jnp.max(c, axis=1))


class _NewtonState(NamedTuple):
    """Carry of the rate-distortion Newton loop, per slope (``L``) unless said."""

    x: jax.Array           # [L, E] expert marginals
    lam: jax.Array         # [L] Levenberg damping
    iterations: jax.Array  # [L] iterations taken before the certificate was met
    done: jax.Array        # [L] certificate met
    k: jax.Array           # [] iterations of the loop


class _CapacityState(NamedTuple):
    """Carry of the capacity Newton loop."""

    p: jax.Array    # [N] input distribution
    D: jax.Array    # [N] divergences D(W(.|x) || pW)
    lo: jax.Array   # [] lower bound on the capacity
    up: jax.Array   # [] upper bound
    lam: jax.Array  # [] damping
    it: jax.Array   # [] iterations


def _newton_loop(xs, betas, x0, tol_nats, max_iter, cache):
    """Projected-Newton iterations for the slopes ``betas`` from ``x0`` ([L, E])."""
    L, E = x0.shape
    dt = x0.dtype
    lam0 = jnp.full((L,), 1e-10 if dt == jnp.float64 else 1e-5, dt)

    def cond(s):
        return jnp.any(~s.done) & (s.k < max_iter)

    def body(s):
        x, lam, it, done, k = s
        xb = (1 - SMOOTH) * x + SMOOTH / E
        F, c, H, cb = _stats_pass(xs, betas, x, xb, cache)
        done = done | (_certificate(c) <= tol_nats)
        d, g = jax.vmap(_direction)(x, c, H, lam)
        X = jax.vmap(_trial_points)(x, g, d, xb, cb)
        Fk = _trial_pass(xs, betas, X, cache)
        xn, lamn = jax.vmap(_choose)(x, g, F, X, Fk, lam)
        x = jnp.where(done[:, None], x, xn)
        lam = jnp.where(done, lam, lamn)
        it = it + (~done).astype(it.dtype)
        return _NewtonState(x, lam, it, done, k + 1)

    init = _NewtonState(x0, lam0, jnp.zeros((L,), jnp.int32), jnp.zeros((L,), bool), jnp.asarray(0, jnp.int32))
    final = lax.while_loop(cond, body, init)
    return final.x, final.iterations


def _finish(dd, pw, betas, xs, x, it, cache):
    # certificate of the final iterate (the loop may stop on the cap right after a move)
    c = _cert_pass(xs, betas, x, cache)
    dex, rq, mi = _report_pass(dd, pw, betas, x)
    return x, rq, dex, mi, _certificate(c), it


@partial(jax.jit, static_argnames=("cache",))
def rd_solve(dd, pw, betas, tol_nats, max_iter, cache=False):
    """Solve every slope of ``betas`` at once, all starting from uniform ``r``.

    ``dd``: [nblk, B, E] shifted distortions, ``pw``: [nblk, B] weights (0 =
    padding), ``betas``: [L].  With ``cache=True`` the kernels
    ``exp(-beta dd)`` are computed once (memory ``L * n * E``); otherwise
    every pass recomputes them block by block (memory ``L * B * E``).
    Every slope's iteration is computed until the slowest converges (the
    converged ones are frozen): the right form for wide parallel hardware.

    Returns ``(r, rq, dex, mi, cert, iters)``: the final expert marginal ``r``
    that the certificate refers to, the output marginal of the resulting test
    channel, its distortion above ``E_x min_t d``, its mutual information
    (nats), ``log max_t c(t)`` (nats) and the iterations used per slope.
    """
    L = betas.shape[0]
    E = dd.shape[-1]
    xs = (make_kernels(dd, betas), pw) if cache else (dd, pw)
    x0 = jnp.full((L, E), 1.0 / E, dd.dtype)
    x, it = _newton_loop(xs, betas, x0, tol_nats, max_iter, cache)
    return _finish(dd, pw, betas, xs, x, it, cache)


@partial(jax.jit, static_argnames=("cache",))
def rd_solve_sweep(dd, pw, betas, tol_nats, max_iter, cache=False):
    """Solve the slopes one after another, each warm-started from the previous one.

    Same arguments and returns as :func:`rd_solve`; ``betas`` should be
    sorted (the caller sorts them in decreasing order, so that supports
    shrink along the sweep).  Each slope stops on its own certificate, so
    the work is the sum of the iterations, not their maximum times ``L``:
    the right form for a CPU.
    """
    E = dd.shape[-1]
    xs = (make_kernels(dd, betas), pw) if cache else (dd, pw)

    def step(x_prev, lane):
        if cache:
            A_l, b = lane
            xs_l = (A_l[:, None], pw)
        else:
            b = lane
            xs_l = (dd, pw)
        x, it = _newton_loop(xs_l, b[None], x_prev[None], tol_nats, max_iter, cache)
        return x[0], (x[0], it[0])

    lanes = (jnp.moveaxis(xs[0], 1, 0), betas) if cache else betas
    _, (x, it) = lax.scan(step, jnp.full((E,), 1.0 / E, dd.dtype), lanes)
    return _finish(dd, pw, betas, xs, x, it, cache)


# ---------------------------------------------------------------------------
# channel capacity
# ---------------------------------------------------------------------------
#
# C = max_p I(p) over the input simplex, I(p) = sum_x p(x) D_x(p) with
# D_x = D(W(.|x) || q), q = p W.  I is concave, with gradient D_x - 1 and
# Hessian -H, H(x, y) = sum_t W(x, t) W(y, t) / q(t).  Arimoto's iteration
# is a first-order method: on channels with near-duplicate rows (a nearly
# flat direction of I) whose optimal weight is near 0 it needs up to 10^5
# steps.  :func:`capacity_solve` runs the projected Newton method of the
# rate-distortion solver on f = -I instead, with the simplex constraint
# kept exactly (an equality-constrained Newton step on the free inputs),
# the same trial points (the projection arc plus one Arimoto step) and the
# same choice rule (:func:`_choose`).

def _cap_divergences(p, W, logW):
    """``q = p W``, ``D_x = D(W(.|x) || q)`` (nats; ``inf`` where ``q = 0 < W``),
    the lower bound ``sum_x p(x) D_x`` and the upper bound ``max_x D_x``."""
    q = p @ W
    logq = jnp.log(q)
    D = jnp.sum(jnp.where(W > 0, W * (logW - logq[None, :]), 0), axis=1)
    lo = jnp.sum(jnp.where(p > 0, p * D, 0))
    return q, D, lo, jnp.max(D)


def _cap_objective(X, W, negh):
    """``I`` at each row of ``X`` ([K, N], rows on the simplex):
    ``sum_x X(x) (-H(W(.|x))) + H(X W)`` (nats)."""
    Q = X @ W
    hq = -jnp.sum(jnp.where(Q > 0, Q * jnp.log(jnp.where(Q > 0, Q, 1)), 0), axis=1)
    return X @ negh + hq


def _cap_direction(p, D, lo, gap, H, lam):
    """Projected-Newton direction for ``f = -I`` on the simplex.

    ε-active inputs (``p <= ε`` and ``D_x < I``, with ``ε = min(EPS_ACTIVE,
    gap)``) are sent to 0 (``d = -p``); the free inputs take the Newton step
    of the quadratic model under ``sum d = 0``:
    ``d_F = -(H_FF + ridge)^-1 (g_F - ν 1)`` with ``g = -D`` and ``ν`` chosen
    so that the free inputs absorb the mass of the active ones.
    """
    dt = p.dtype
    eps = jnp.minimum(jnp.asarray(EPS_ACTIVE, dt), gap)
    act = (p <= eps) & (D < lo)
    free = ~act
    f = free.astype(dt)
    dH = jnp.diagonal(H)
    ridge = lam * jnp.maximum(jnp.max(jnp.where(jnp.isfinite(dH), dH, 0)), jnp.finfo(dt).tiny)
    M = jnp.where(free[:, None] & free[None, :], H, 0)
    M = M + jnp.diag(jnp.where(act, 1, 0).astype(dt) + ridge)
    chol = jnp.linalg.cholesky(M)
    Y = jax.scipy.linalg.cho_solve((chol, True), jnp.stack([jnp.where(free, -D, 0), f], axis=1))
    y1, y2 = Y[:, 0], Y[:, 1]
    nu = (jnp.sum(jnp.where(act, p, 0)) + f @ y1) / (f @ y2)
    d = jnp.where(act, -p, nu * y2 - y1)
    return jnp.where(jnp.all(jnp.isfinite(d)), d, jnp.zeros_like(d))


def _cap_trial_points(p, D, lo, d, W, logW):
    """The arc ``[p + 2^-k d]_+`` (normalised), k < N_STEPS, and one Arimoto step
    ``pb exp(D(pb))`` from ``pb = (1 - SMOOTH) p + SMOOTH / N`` (so that an
    input at 0 can re-enter); inputs at 0 with ``D_x < I`` stay at 0."""
    N = p.shape[0]
    alphas = 2.0 ** (-jnp.arange(N_STEPS, dtype=p.dtype))
    X = jnp.maximum(p[None, :] + alphas[:, None] * d[None, :], 0)
    X = X / jnp.sum(X, axis=1, keepdims=True)
    pb = (1 - SMOOTH) * p + SMOOTH / N
    _, Db, _, upb = _cap_divergences(pb, W, logW)
    pa = jnp.where((p == 0) & (D < lo), 0, pb * jnp.exp(Db - upb))
    pa = pa / jnp.sum(pa)
    return jnp.concatenate([X, pa[None, :]], axis=0)


def _capacity_newton(W, logW, p0, tol_nats, max_iter):
    dt = W.dtype
    negh = jnp.sum(jnp.where(W > 0, W * logW, 0), axis=1)

    def cond(s):
        return (s.up - s.lo > tol_nats) & (s.it < max_iter)

    def body(s):
        p, D, lo, up, lam, it = s
        q = p @ W
        V = W * jnp.where(q > 0, jax.lax.rsqrt(jnp.where(q > 0, q, 1)), 0)[None, :]
        H = V @ V.T
        d = _cap_direction(p, D, lo, up - lo, H, lam)
        X = _cap_trial_points(p, D, lo, d, W, logW)
        Fk = _cap_objective(X, W, negh)
        F0 = _cap_objective(p[None, :], W, negh)[0]
        pn, lam = _choose(p, -D, F0, X, Fk, lam)
        _, D, lo, up = _cap_divergences(pn, W, logW)
        return _CapacityState(pn, D, lo, up, lam, it + 1)

    _, D0, lo0, up0 = _cap_divergences(p0, W, logW)
    lam0 = jnp.asarray(1e-10 if dt == jnp.float64 else 1e-5, dt)
    s = lax.while_loop(cond, body, _CapacityState(p0, D0, lo0, up0, lam0, jnp.asarray(0, jnp.int32)))
    return s.p, s.lo, s.up, s.it


# channel capacity, many inputs: Arimoto's iteration with an adaptive step

def _divergences(logp, W, logW):
    """D(W(.|x) || q) for every input x, with q = sum_x p(x) W(.|x) (nats)."""
    logq = jax.nn.logsumexp(logp[:, None] + logW, axis=0)
    return jnp.sum(jnp.where(W > 0, W * (logW - logq[None, :]), 0), axis=1)


def _normalise_log(v):
    return v - jax.nn.logsumexp(v)


def _capacity_arimoto(W, logW, tol_nats, max_iter):
    """Arimoto's multiplicative update with an exponent ``mu >= 1``:
    ``p'(x) ∝ p(x) exp(mu D_x)`` (``mu = 1`` is Arimoto 1972; larger steps are
    the natural-gradient acceleration of Matz & Duhamel 2004).  Both the
    plain and the long step are evaluated and the better one kept, so ``I``
    never decreases.  ``O(N M)`` per step (no Hessian): the form for many inputs."""
    N = W.shape[0]
    dt = W.dtype
    logp0 = jnp.full((N,), -jnp.log(jnp.asarray(N, dt)), dt)
    D0 = _divergences(logp0, W, logW)

    def bounds(logp, D):
        return jnp.sum(jnp.exp(logp) * D), jnp.max(D)

    def cond(s):
        logp, D, mu, it = s
        lo, up = bounds(logp, D)
        return (up - lo > tol_nats) & (it < max_iter)

    def body(s):
        logp, D, mu, it = s
        p1 = _normalise_log(logp + D)
        p2 = _normalise_log(logp + mu * D)
        D1 = _divergences(p1, W, logW)
        D2 = _divergences(p2, W, logW)
        lo1, _ = bounds(p1, D1)
        lo2, _ = bounds(p2, D2)
        long_ok = lo2 >= lo1
        logp = jnp.where(long_ok, p2, p1)
        D = jnp.where(long_ok, D2, D1)
        mu = jnp.where(long_ok, jnp.minimum(mu * 2, 1e4), jnp.maximum(mu / 4, 1))
        return logp, D, mu, it + 1

    logp, D, mu, it = lax.while_loop(cond, body, (logp0, D0, jnp.asarray(2.0, dt),
                                                   jnp.asarray(0, jnp.int32)))
    lo, up = bounds(logp, D)
    return jnp.exp(logp), lo, up, it


@partial(jax.jit, static_argnames=("newton",))
def capacity_solve(W, tol_nats, max_iter, newton=True):
    """Maximise I(X;T) over the input distribution of the channel ``W = p(t|x)``.

    ``newton=True``: projected Newton on the input simplex from the uniform
    input (:func:`_capacity_newton`; ``O(N^2 M + N^3)`` per iteration, for
    up to a few hundred inputs).  ``newton=False``: accelerated Arimoto
    (:func:`_capacity_arimoto`).  Both stop when the duality gap
    ``max_x D_x - sum_x p(x) D_x`` (an upper minus a lower bound on C) is at
    most ``tol_nats``.  Returns ``(p, lower, upper, iterations)``.
    """
    N = W.shape[0]
    dt = W.dtype
    logW = jnp.where(W > 0, jnp.log(jnp.where(W > 0, W, 1)), -jnp.inf)
    if not newton:
        return _capacity_arimoto(W, logW, tol_nats, max_iter)
    p0 = jnp.full((N,), 1 / N, dt)
    return _capacity_newton(W, logW, p0, tol_nats, max_iter)
