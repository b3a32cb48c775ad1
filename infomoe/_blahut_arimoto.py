"""Blahut–Arimoto in JAX: rate–distortion over an expert bank, accuracy–rate curves, capacity.

The solver kernels live in :mod:`infomoe._ba_core`; this module validates
input, prepares the data (row shift, duplicate-row compression, blocking),
chooses the precision and device, and packages the results.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from infomoe._repr import span as _span
from infomoe._validate import (
    as_float_array,
    as_probability_rows,
    check_base,
    check_choice,
    check_positive_float,
    check_positive_int,
    log_base,
    unit_name,
)

__all__ = [
    "rate_distortion",
    "RateDistortionResult",
    "accuracy_rate_curve",
    "AccuracyRateCurve",
    "channel_capacity",
    "CapacityResult",
]

#: default certificate tolerance (in the result's unit) per working precision
_DEFAULT_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}
#: elements of the largest per-block temporary (slopes x block rows x (experts + trial steps))
_BLOCK_ELEMENTS = 1 << 22
#: the kernels exp(-beta d) for all slopes are kept in memory when they take at most this many bytes
_CACHE_BYTES = 1 << 29
#: environment variable that turns infomoe's persistent JAX compilation cache off (``0``/``false``/``no``/``off``)
JAX_CACHE_ENV = "INFOMOE_JAX_CACHE"
#: problems with at most this many (compressed) samples all share one compiled solver
_MIN_ROWS = 256
#: channel_capacity uses projected Newton (an N x N Hessian) up to this many inputs, Arimoto above
_NEWTON_INPUTS = 256


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

def _converged_text(converged) -> str:
    """``True`` when every point converged, else ``"k/n"``."""
    c = np.asarray(converged, dtype=bool)
    return "True" if c.all() else f"{int(c.sum())}/{c.size}"


@dataclass(frozen=True)
class RateDistortionResult:
    """Solution of the rate–distortion problem at a sweep of slopes.

    Attributes
    ----------
    beta : ndarray, shape (n_beta,)
        Slopes, in the order given (``dR/dD = -beta`` with R in nats).
    rate : ndarray, shape (n_beta,)
        Mutual information ``I(X;T)`` of the returned test channel, in
        ``unit``.  An achievable rate at ``distortion``: ``R(D) <= rate``.
    distortion : ndarray, shape (n_beta,)
        Expected distortion ``E d(X, T)`` of the test channel.
    q_t : ndarray, shape (n_beta, n_experts)
        Output (expert) marginal of the test channel.
    certificate : ndarray, shape (n_beta,)
        ``log max_t c(t)`` in ``unit``, with
        ``c(t) = sum_x p(x) e^{-beta d(x,t)} / sum_s r(s) e^{-beta d(x,s)}``.
        It is >= 0 up to rounding and bounds the rate error:
        ``rate - certificate <= R(distortion) <= rate``.
    converged : ndarray of bool, shape (n_beta,)
        ``certificate <= tol``.
    iterations : ndarray of int, shape (n_beta,)
        Projected-Newton iterations used by each slope.
    base : float
        Logarithm base of ``rate`` and ``certificate``.
    unit : str
        Name of the unit (``"bits"`` for base 2).
    tol : float
        Certificate tolerance used, in ``unit``.
    """

    beta: np.ndarray
    rate: np.ndarray
    distortion: np.ndarray
    q_t: np.ndarray
    certificate: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    base: float
    unit: str
    tol: float

    def __repr__(self) -> str:
        u = self.unit
        return (f"RateDistortionResult(n_beta={np.size(self.beta)}, "
                f"n_experts={np.shape(self.q_t)[-1]}, beta={_span(self.beta)}, "
                f"rate={_span(self.rate)} {u}, distortion={_span(self.distortion)}, "
                f"converged={_converged_text(self.converged)}, "
                f"max_certificate={np.max(self.certificate, initial=0.0):.3g} {u})")


@dataclass(frozen=True)
class AccuracyRateCurve:
    """Accuracy–rate (distortion–rate) curve of an expert bank.

    Points are sorted by increasing rate: the first is the best single
    expert (``beta = 0``, rate 0, distortion ``d_max``), the last the oracle
    router with the least rate (``beta = inf``, distortion ``d_min``).

    Attributes
    ----------
    beta : ndarray, shape (n_points,)
        Slope of each point (0 and ``inf`` at the two ends).
    rate : ndarray, shape (n_points,)
        Rate ``I(X;T)`` of each point's test channel, in ``unit``.
    distortion : ndarray, shape (n_points,)
        Distortion after the convex clean-up (see Notes of
        :func:`accuracy_rate_curve`); non-increasing and convex in ``rate``.
    accuracy : ndarray or None
        ``1 - distortion`` when the losses are 0/1 errors, else ``None``.
    raw_distortion : ndarray, shape (n_points,)
        Distortion returned by the solver, before the clean-up.
    max_adjustment : float
        ``max(raw_distortion - distortion)``, the largest change made by the
        clean-up (0 when the solved points were already convex).
    certificate : ndarray, shape (n_points,)
        Solver certificate per point, in ``unit`` (0 at the exact ``beta = 0``
        endpoint).
    converged : ndarray of bool, shape (n_points,)
        Whether each point met its certificate tolerance.
    d_max : float
        Distortion of the best single expert, ``min_t E_x d(x, t)`` (R = 0).
    d_min : float
        Distortion of oracle routing, ``E_x min_t d(x, t)``.
    rate_at_d_min : float
        ``R(d_min)``: the least rate of any router that attains ``d_min``
        (the minimum over tie-breaking among equally good experts), solved
        as the ``beta = inf`` problem, in ``unit``.
    best_expert : int
        Index of the best single expert.
    is_zero_one : bool
        Whether the losses were 0/1 errors.
    base : float
        Logarithm base of the rates.
    unit : str
        Name of the unit.
    """

    beta: np.ndarray
    rate: np.ndarray
    distortion: np.ndarray
    accuracy: Optional[np.ndarray]
    raw_distortion: np.ndarray
    max_adjustment: float
    certificate: np.ndarray
    converged: np.ndarray
    d_max: float
    d_min: float
    rate_at_d_min: float
    best_expert: int
    is_zero_one: bool
    base: float
    unit: str

    def __repr__(self) -> str:
        quality = (f"accuracy={_span(self.accuracy)}" if self.accuracy is not None
                   else f"distortion={_span(self.distortion)}")
        return (f"AccuracyRateCurve(n_points={np.size(self.rate)}, "
                f"rate={_span(self.rate)} {self.unit}, {quality}, "
                f"best_expert={self.best_expert}, converged={_converged_text(self.converged)})")


@dataclass(frozen=True)
class CapacityResult:
    """Capacity of a discrete channel and its optimal input distribution.

    Attributes
    ----------
    capacity : float
        Lower bound ``I(X;T)`` at ``p_x`` (the capacity estimate), in ``unit``.
    upper_bound : float
        ``max_x D(p(.|x) || p_T)``: the capacity lies in ``[capacity, upper_bound]``.
    certificate : float
        Duality gap ``upper_bound - capacity`` (>= 0), in ``unit``.
    p_x : ndarray, shape (n_inputs,)
        Capacity-achieving input distribution found.
    converged : bool
        ``certificate <= tol``.
    iterations : int
        Iterations used (projected-Newton iterations up to 256 inputs,
        accelerated Arimoto steps above).
    base : float
        Logarithm base.
    unit : str
        Name of the unit.
    """

    capacity: float
    upper_bound: float
    certificate: float
    p_x: np.ndarray
    converged: bool
    iterations: int
    base: float
    unit: str

    def __repr__(self) -> str:
        u = self.unit
        return (f"CapacityResult(capacity={self.capacity:.6g} {u}, "
                f"upper_bound={self.upper_bound:.6g} {u}, certificate={self.certificate:.3g} {u}, "
                f"n_inputs={np.size(self.p_x)}, converged={self.converged}, "
                f"iterations={self.iterations})")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _check_dtype(dtype) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"`dtype` must be float32 or float64, got {dtype!r}.") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"`dtype` must be float32 or float64, got {dt}.")
    return dt


def _precision(dt: np.dtype):
    """Context in which JAX computes in ``dt``.

    float64 needs JAX's ``jax_enable_x64`` flag; it is switched on only
    inside this context (``jax.enable_x64``, thread-local), never globally,
    so importing or calling infomoe leaves the user's JAX configuration as
    it was.
    """
    import jax

    if dt == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def jax_cache_dir() -> Optional[str]:
    """Folder of infomoe's persistent JAX compilation cache, or ``None`` when it is off.

    ``<default_cache_dir()>/jax``, i.e. ``$INFOMOE_CACHE/jax`` if that
    variable is set, else ``$XDG_CACHE_HOME/infomoe/jax`` or
    ``~/.cache/infomoe/jax``.  Setting ``INFOMOE_JAX_CACHE=0`` (or
    ``false``, ``no``, ``off``) turns the cache off.

    Returns
    -------
    str or None
    """
    if os.environ.get(JAX_CACHE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    from infomoe.bank._experts import default_cache_dir

    return os.path.join(default_cache_dir(), "jax")


def _usable_dir(path: str) -> bool:
    """Whether ``path`` is (or can be made) a writable folder; a cache that cannot be
    written is skipped silently rather than warned about on every compilation."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


@contextlib.contextmanager
def _compilation_cache():
    """Context in which JAX's persistent compilation cache writes to :func:`jax_cache_dir`.

    The first solve in a new process then loads its compiled program from
    disk instead of compiling it again (compiling the solver takes seconds).
    Nothing is changed when the user configured JAX's cache themselves
    (``jax_compilation_cache_dir`` set, e.g. by ``JAX_COMPILATION_CACHE_DIR``
    or ``jax.config.update``), disabled it (``jax_enable_compilation_cache``
    false), or set ``INFOMOE_JAX_CACHE=0``.  Otherwise the cache folder and
    a compile-time threshold of 0 s (every program of the solve is stored,
    whatever the speed of the machine) hold inside the context only; on
    exit both are restored and JAX's cache is reset to its uninitialised
    state, so the user's own programs are never written to infomoe's folder
    and a cache the user configures later still takes effect.  A folder
    that cannot be created or written is skipped (no cache, no warning).
    """
    import jax

    path = jax_cache_dir()
    cfg = jax.config
    if (path is None or cfg.jax_compilation_cache_dir is not None
            or not cfg.jax_enable_compilation_cache or not _usable_dir(path)):
        yield
        return
    from jax.experimental.compilation_cache import compilation_cache as cc

    min_time = cfg.jax_persistent_cache_min_compile_time_secs
    cc.reset_cache()
    cfg.update("jax_compilation_cache_dir", path)
    cfg.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        yield
    finally:
        cfg.update("jax_compilation_cache_dir", None)
        cfg.update("jax_persistent_cache_min_compile_time_secs", min_time)
        cc.reset_cache()


@contextlib.contextmanager
def _jax_context(dt: np.dtype):
    """:func:`_compilation_cache` and :func:`_precision` together."""
    with _compilation_cache(), _precision(dt):
        yield


def _check_tol(tol, dt) -> float:
    if tol is None:
        return _DEFAULT_TOL[dt]
    return check_positive_float(tol, "tol")


def _check_betas(betas) -> np.ndarray:
    b = as_float_array(betas, "betas", ndim=(0, 1), finite=False)
    b = np.atleast_1d(b)
    if np.isnan(b).any():
        raise ValueError(f"`betas` contains NaN (first at index {int(np.argmax(np.isnan(b)))}).")
    if (b < 0).any():
        raise ValueError(f"`betas` must be >= 0 (slopes of R(D) are -beta); got {b[b < 0][0]!r}.")
    return b


def _check_distortion(d, name: str) -> np.ndarray:
    a = as_float_array(d, name, ndim=2)
    if a.shape[1] < 1:
        raise ValueError(f"`{name}` needs at least one column (expert), got shape {a.shape}.")
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(f"`{name}` has a negative value {a[idx]!r} at index {idx}; "
                         "distortions/losses must be >= 0.")
    return a


def _check_p_x(p_x, n: int) -> np.ndarray:
    if p_x is None:
        return np.full(n, 1.0 / n)
    p = as_probability_rows(p_x, "p_x")
    if p.ndim != 1:
        raise ValueError(f"`p_x` must be 1-D (one probability per sample), got shape {p.shape}.")
    if p.shape[0] != n:
        raise ValueError(f"`p_x` has length {p.shape[0]} but `distortion` has {n} rows (samples).")
    return p / p.sum()


def _check_solver_options(p_x, n: int, base, dtype, tol, max_iter):
    """Checked ``(p_x, log(base), dtype, tol, max_iter)`` of a rate-distortion solve over `n` rows."""
    p = _check_p_x(p_x, n)
    check_base(base)
    lb = log_base(base)
    dt = _check_dtype(dtype)
    tol = _check_tol(tol, dt)
    max_iter = check_positive_int(max_iter, "max_iter")
    return p, lb, dt, tol, max_iter


def _rd_result(b, rq, dex, mi, cert, it, *, d_floor, lb, base, tol) -> RateDistortionResult:
    """:class:`RateDistortionResult` from the solver's outputs (nats, excess distortion)."""
    cert_u = cert.astype(np.float64) / lb
    return RateDistortionResult(
        beta=b,
        rate=mi.astype(np.float64) / lb,
        distortion=d_floor + dex.astype(np.float64),
        q_t=rq.astype(np.float64),
        certificate=cert_u,
        converged=cert_u <= tol,
        iterations=it.astype(np.int64),
        base=float(base),
        unit=unit_name(base),
        tol=float(tol),
    )


def _prepare(d: np.ndarray, p: np.ndarray, compress: bool):
    """Shift rows to min 0, drop p=0 rows, merge identical rows (exact)."""
    keep = p > 0
    d, p = d[keep], p[keep]
    dmin = d.min(axis=1)
    d_floor = float(np.dot(p, dmin))
    dd = d - dmin[:, None]
    if compress and dd.shape[0] > 1:
        dd, inv = np.unique(dd, axis=0, return_inverse=True)
        p = np.bincount(inv.reshape(-1), weights=p, minlength=dd.shape[0])
    return dd, p, d_floor


def _bucket(n: int) -> int:
    """Smallest ``m * 2**k >= n`` with ``4 <= m <= 7`` (or ``n`` itself below 8).

    Four sizes per octave, each at most 25 % above ``n``: the shape buckets
    of :func:`_blocks`.

    Examples
    --------
    >>> [_bucket(n) for n in (5, 9, 257, 2000, 3000, 10_000)]
    [5, 10, 320, 2048, 3072, 10240]
    """
    if n < 8:
        return n
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


def _blocks(dd: np.ndarray, p: np.ndarray, n_beta: int, block_size, dt):
    """Pad with zero-weight rows and reshape to ``[n_blocks, block, E]`` / ``[n_blocks, block]``.

    With ``block_size=None`` the shapes are bucketed, so that problems of
    similar size share one compiled solver (in the process and in the
    persistent compilation cache): when all rows fit in one block (of about
    ``_BLOCK_ELEMENTS`` temporaries) its length is :func:`_bucket` of the
    row count, at least ``_MIN_ROWS``; otherwise the block has the automatic
    length and the number of blocks is bucketed.  Padding rows have zero
    weight, which every pass of the solver excludes (``where(p > 0, ...)``),
    so they change no result beyond the summation order.  An explicit
    ``block_size`` is used as given (``min(block_size, n)``, no bucketing).
    """
    n, E = dd.shape
    if block_size is None:
        from infomoe._ba_core import N_STEPS

        auto = max(_MIN_ROWS, _BLOCK_ELEMENTS // max(1, n_beta * (E + N_STEPS + 1)))
        rows = max(_bucket(n), _MIN_ROWS)
        if rows <= auto:
            B, nblk = rows, 1
        else:
            B, nblk = auto, _bucket(-(-n // auto))
    else:
        B = min(block_size, n)
        nblk = -(-n // B)
    pad = nblk * B - n
    if pad:
        dd = np.concatenate([dd, np.zeros((pad, E))])
        p = np.concatenate([p, np.zeros(pad)])
    return dd.reshape(nblk, B, E).astype(dt), p.reshape(nblk, B).astype(dt)


def _platform(device) -> str:
    import jax

    return (device if device is not None else jax.devices()[0]).platform


def _scalars(tol_nats: float, max_iter: int, dt: np.dtype):
    """The solver's tolerance and iteration limit as 0-d arrays of fixed dtypes (one traced program
    per shape, storable by :mod:`infomoe._ba_export`; the values are the Python scalars')."""
    return np.asarray(tol_nats, dtype=dt), np.asarray(max_iter, dtype=np.int32)


def _put(arrays, device):
    import jax

    # jax.device_put, not jnp.asarray: the latter compiles a small program per
    # shape (0.1 s each on the first call of a process)
    return [jax.device_put(a, device) for a in arrays]


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------

def rate_distortion(distortion, betas, *, p_x=None, tol: Optional[float] = None,
                    max_iter: int = 500, base: float = 2, dtype=None,
                    block_size: Optional[int] = None, device=None,
                    compress: bool = True, sweep: str = "auto") -> RateDistortionResult:
    """Rate–distortion function of a finite source at a sweep of slopes (Blahut–Arimoto, JAX).

    Parameters
    ----------
    distortion : array_like, shape (n_samples, n_experts)
        Distortion ``d(x, t) >= 0`` of reproducing sample ``x`` by expert
        ``t`` (e.g. a 0/1 error or a loss).  Rectangular.
    betas : float or array_like, shape (n_beta,)
        Slopes ``beta >= 0`` (``dR/dD = -beta``, R in nats).  ``inf`` is
        allowed: it solves the zero-extra-distortion problem (``D = d_min``
        at the least rate).
    p_x : array_like, shape (n_samples,), optional
        Source distribution; uniform over the rows by default.
    tol : float, optional
        Certificate tolerance **in the result's unit** (bits for
        ``base=2``): a slope has converged when ``log max_t c(t) <= tol``.
        Default ``1e-9`` for float64 and ``1e-4`` for float32 (float32
        rounding cannot certify much below ~1e-6).
    max_iter : int
        Iteration cap per slope (never raises when it is reached; the slope
        is reported with ``converged=False``).
    base : float
        Logarithm base of ``rate`` and ``certificate`` (2 = bits).
    dtype : float32 or float64, optional
        Working precision, default float64 (enabled locally with
        ``jax.enable_x64``; the global JAX configuration is not changed).
    block_size : int, optional
        Samples per block.  Memory is ``O(n_beta * block_size * n_experts)``;
        the default keeps each block near 4 M elements.
    device : jax.Device, optional
        Where to compute; JAX's default device otherwise.
    compress : bool
        Merge identical rows of the shifted distortion (summing their
        probabilities) before solving.  Exact; fast for 0/1 losses.
    sweep : {"auto", "warm", "batched"}
        ``"warm"``: solve the slopes one after another in decreasing order,
        each starting from the previous solution and stopping on its own
        certificate (least work; the default on CPU).  ``"batched"``: all
        slopes iterate together from the uniform start, each frozen once
        converged (the default on GPU/TPU, where the slopes run in parallel).

    Returns
    -------
    RateDistortionResult

    Notes
    -----
    For a slope ``beta`` the optimal expert marginal ``r`` maximises the
    concave dual ``F(r) = sum_x p(x) log sum_t r(t) e^{-beta d(x,t)}`` on
    the simplex; the test channel is ``q(t|x) ∝ r(t) e^{-beta d(x,t)}``,
    ``D = sum p q d`` and ``R = I(X;T)`` under ``q``.  Blahut's fixed-point
    iteration ``r <- r c`` converges sublinearly when the optimum is on a
    face of the simplex, so this solver instead runs a projected Newton
    method (Bertsekas 1982) on ``f(x) = -F(x) + sum_t x(t)``, ``x >= 0``
    (the mixSQP reformulation, Kim et al. 2020, whose minimiser lies on
    the simplex), with an ε-active set, a ridge that adapts on failed
    steps, eight step lengths along the projection arc plus one
    Blahut–Arimoto step (which lets an expert dropped too early re-enter at
    the right scale) evaluated in one data pass.  The whole sweep is one
    jitted call: on CPU a ``lax.scan`` over the slopes in decreasing order,
    each warm-started from the previous solution and stopped by its own
    certificate (``sweep="warm"``); on accelerators all slopes iterate
    together in one ``lax.while_loop`` (``sweep="batched"``).  Distortions are
    shifted per row by ``min_t d(x,t)`` and everything is computed in the
    log domain, so ``beta`` up to 1e6 (and ``inf``) neither overflows nor
    underflows into NaN.

    The certificate ``log max_t c(t)`` bounds the rate error (Blahut 1972,
    Theorem 8): with ``λ(x) = 1 / (Z(x) max_t c(t))``, the dual lower bound
    gives ``R(D) >= rate - log max_t c(t)`` at ``D = distortion``.

    References
    ----------
    R. E. Blahut, "Computation of channel capacity and rate-distortion
    functions", IEEE Trans. IT 18(4), 1972 (Theorems 6-8).
    D. P. Bertsekas, "Projected Newton methods for optimization problems with
    simple constraints", SIAM J. Control Optim. 20(2), 1982 (eqs. 14-16).
    Y. Kim, P. Carbonetto, M. Stephens, M. Anitescu, "A fast algorithm for
    maximum likelihood estimation of mixture proportions using sequential
    quadratic programming", J. Comput. Graph. Stat. 29(2), 2020 (eq. 4).

    Examples
    --------
    Bernoulli(0.25) source with Hamming distortion: ``R(D) = h(0.25) - h(D)``.

    >>> import numpy as np
    >>> from infomoe import rate_distortion
    >>> d = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = rate_distortion(d, [np.log(9.0)], p_x=[0.75, 0.25])  # slope for D = 0.1
    >>> round(float(res.distortion[0]), 6), round(float(res.rate[0]), 5)
    (0.1, 0.34228)
    >>> bool(res.converged[0])
    True
    """
    from infomoe import _ba_core, _ba_export

    d = _check_distortion(distortion, "distortion")
    b = _check_betas(betas)
    p, lb, dt, tol, max_iter = _check_solver_options(p_x, d.shape[0], base, dtype, tol, max_iter)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")

    check_choice(sweep, "sweep", ("auto", "warm", "batched"))
    if sweep == "auto":
        sweep = "warm" if _platform(device) == "cpu" else "batched"

    dd, pw, d_floor = _prepare(d, p, compress)
    ddb, pwb = _blocks(dd, pw, b.size, block_size, dt)
    order = np.argsort(-b, kind="stable") if sweep == "warm" else np.arange(b.size)
    back = np.argsort(order, kind="stable")
    with _jax_context(dt):
        args = _put([ddb, pwb, b[order].astype(dt)], device)
        cache = ddb.size * b.size * dt.itemsize <= _CACHE_BYTES
        solve = _ba_core.rd_solve_sweep if sweep == "warm" else _ba_core.rd_solve
        r, rq, dex, mi, cert, it = _ba_export.call(solve, [*args, *_scalars(tol * lb, max_iter, dt)], cache=cache)
        r, rq, dex, mi, cert, it = (np.asarray(v)[back] for v in (r, rq, dex, mi, cert, it))
    return _rd_result(b, rq, dex, mi, cert, it, d_floor=d_floor, lb=lb, base=base, tol=tol)


def _lower_convex_envelope(r: np.ndarray, d: np.ndarray):
    """Vertices of the lower convex hull of points (r, d), up to its lowest point."""
    order = np.lexsort((d, r))
    hull: list[int] = []
    for i in order:
        if hull and r[hull[-1]] == r[i]:
            continue  # same rate, larger distortion: not on the lower hull
        while len(hull) >= 2:
            i1, i2 = hull[-2], hull[-1]
            cross = (r[i2] - r[i1]) * (d[i] - d[i1]) - (d[i2] - d[i1]) * (r[i] - r[i1])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    hr, hd = r[hull], d[hull]
    k = int(np.argmin(hd))  # first (least-rate) vertex with the least distortion
    return hr[:k + 1], hd[:k + 1]


def accuracy_rate_curve(losses, *, betas=None, p_x=None, base: float = 2,
                        tol: Optional[float] = None, max_iter: int = 500, dtype=None,
                        block_size: Optional[int] = None, device=None,
                        sweep: str = "auto") -> AccuracyRateCurve:
    """Accuracy–rate curve ``D(R)`` of an expert bank from per-sample losses.

    Parameters
    ----------
    losses : array_like, shape (n_samples, n_experts)
        Loss of each expert on each sample (``>= 0``), e.g. a 0/1 error
        matrix (then ``accuracy = 1 - distortion``) or a cross-entropy.
    betas : array_like, optional
        Slopes to solve.  Default: 64 log-spaced values from ``1e-2`` to
        ``1e4`` divided by the largest per-sample loss spread
        ``max_x (max_t d - min_t d)``, which spans the curve from the best
        single expert to oracle routing for typical banks.
    p_x : array_like, optional
        Sample weights (a distribution); uniform by default.
    base : float
        Logarithm base of the rates (2 = bits).
    tol, max_iter, dtype, block_size, device, sweep
        As in :func:`rate_distortion`.

    Returns
    -------
    AccuracyRateCurve

    Notes
    -----
    The two ends are exact: ``R = 0`` at ``d_max = min_t E_x d(x,t)`` (the
    best single expert) and ``d_min = E_x min_t d(x,t)`` (oracle routing)
    at ``R(d_min)``, the ``beta = inf`` solution (the router may choose
    among tied best experts, and the least-rate choice is found by the
    solver, not by a fixed tie-break).

    Clean-up: ``R(D)`` is convex and non-increasing, but points solved to a
    finite tolerance can deviate from that by rounding-level amounts.  The
    curve reported keeps each point's rate and lowers its distortion onto
    the lower convex envelope of all points (including both ends),
    truncated at ``d_min``.  Every envelope point is achievable by
    time-sharing between two solved test channels (mutual information is
    convex in the channel), so the clean-up never claims an unachievable
    point.  The largest change is recorded in ``max_adjustment`` and the
    solver's values are kept in ``raw_distortion``.

    References
    ----------
    R. E. Blahut, IEEE Trans. IT 18(4), 1972; T. M. Cover and J. A. Thomas,
    *Elements of Information Theory*, 2nd ed., §10.8 (Blahut–Arimoto) and
    Lemma 10.4.1 (convexity of R(D)).

    Examples
    --------
    Two experts, each right on a different half of the samples:

    >>> import numpy as np
    >>> from infomoe import accuracy_rate_curve
    >>> err = np.array([[0, 1], [0, 1], [1, 0], [1, 0]])
    >>> c = accuracy_rate_curve(err, betas=[1.0, 10.0])
    >>> float(c.d_max), float(c.d_min), round(float(c.rate_at_d_min), 6)
    (0.5, 0.0, 1.0)
    >>> float(c.accuracy[0]), float(c.accuracy[-1])
    (0.5, 1.0)
    """
    d = _check_distortion(losses, "losses")
    p = _check_p_x(p_x, d.shape[0])
    check_base(base)
    if betas is None:
        spread = float(np.max(d.max(axis=1) - d.min(axis=1)))
        betas = np.geomspace(1e-2, 1e4, 64) / (spread if spread > 0 else 1.0)
    b = np.sort(_check_betas(betas))
    b = b[np.isfinite(b) & (b > 0)]  # the two ends are added exactly below

    col = p @ d
    best = int(np.argmin(col))
    d_max = float(col[best])
    d_min = float(p @ d.min(axis=1))

    res = rate_distortion(d, np.concatenate([b, [np.inf]]), p_x=p, tol=tol, max_iter=max_iter,
                          base=base, dtype=dtype, block_size=block_size, device=device,
                          sweep=sweep)
    rate_at_d_min = float(res.rate[-1])

    beta = np.concatenate([[0.0], b, [np.inf]])
    rate = np.concatenate([[0.0], res.rate[:-1], [rate_at_d_min]])
    raw = np.concatenate([[d_max], res.distortion[:-1], [d_min]])
    cert = np.concatenate([[0.0], res.certificate])
    conv = np.concatenate([[True], res.converged])

    hr, hd = _lower_convex_envelope(rate, raw)
    clean = np.where(rate >= hr[-1], hd[-1], np.interp(rate, hr, hd))
    is01 = bool(np.all((d == 0) | (d == 1)))
    return AccuracyRateCurve(
        beta=beta, rate=rate, distortion=clean,
        accuracy=(1.0 - clean) if is01 else None,
        raw_distortion=raw, max_adjustment=float(np.max(raw - clean)),
        certificate=cert, converged=conv, d_max=d_max, d_min=d_min,
        rate_at_d_min=rate_at_d_min, best_expert=best, is_zero_one=is01,
        base=float(base), unit=unit_name(base))


def channel_capacity(p_t_given_x, *, tol: Optional[float] = None, max_iter: int = 10_000,
                     base: float = 2, dtype=None, device=None) -> CapacityResult:
    """Capacity ``C = max_{p(x)} I(X;T)`` of a discrete channel (projected Newton / Arimoto, JAX).

    Parameters
    ----------
    p_t_given_x : array_like, shape (n_inputs, n_outputs)
        Channel matrix, one row ``p(.|x)`` per input (e.g. a gate's routing
        probabilities per sample); rows must sum to 1.
    tol : float, optional
        Tolerance on the duality gap ``upper - lower`` **in the result's
        unit**.  Default ``1e-9`` (float64) / ``1e-4`` (float32).
    max_iter : int
        Iteration cap (reported through ``converged``, never raised).
    base : float
        Logarithm base (2 = bits).
    dtype : float32 or float64, optional
        Working precision (default float64, enabled locally).
    device : jax.Device, optional
        Where to compute.

    Returns
    -------
    CapacityResult

    Notes
    -----
    With ``D_x = D(p(.|x) || sum_x' p(x') p(.|x'))``, ``I = sum_x p(x) D_x``
    and ``I <= C <= max_x D_x`` for every input distribution (Arimoto 1972,
    Theorem 1; Gallager's bound); the iteration stops when the gap
    ``max_x D_x - I <= tol``, which is the returned ``certificate``.

    Up to 256 inputs the solver is the projected Newton method of
    :func:`rate_distortion` (Bertsekas 1982) applied to ``-I`` on the input
    simplex: ε-active inputs (tiny weight and ``D_x < I``) are sent to 0,
    the free inputs take the Newton step of the quadratic model under
    ``sum p = 1`` (Hessian ``sum_t p(t|x) p(t|x') / p_T(t)``, with an
    adaptive ridge), and each iteration evaluates eight step lengths along
    the projection arc plus one Arimoto step, keeping the best acceptable
    point, so ``I`` never decreases.  Near-duplicate channel rows make ``I``
    nearly flat along the direction that moves weight between them;
    Arimoto's first-order update then needs up to ~10^5 steps when the
    optimal weight of such a row is near 0, while the Newton step
    certifies ``1e-9`` bits in tens of iterations.  Above 256 inputs (an
    ``N x N`` Hessian per iteration would dominate) each step is Arimoto's
    update ``p'(x) ∝ p(x) exp(D_x)`` together with the longer step
    ``p(x) exp(mu D_x)`` (the natural-gradient acceleration of Matz and
    Duhamel 2004), keeping the better one and adapting ``mu``.  Memory is
    ``O(N^2 + N M)`` (Newton) or ``O(N M)`` (Arimoto) for ``N`` inputs and
    ``M`` outputs, independent of the iteration.

    References
    ----------
    S. Arimoto, "An algorithm for computing the capacity of arbitrary
    discrete memoryless channels", IEEE Trans. IT 18(1), 1972 (Theorem 1).
    D. P. Bertsekas, "Projected Newton methods for optimization problems with
    simple constraints", SIAM J. Control Optim. 20(2), 1982.
    G. Matz and P. Duhamel, "Information geometric formulation and
    interpretation of accelerated Blahut-Arimoto-type algorithms", ITW 2004.

    Examples
    --------
    Binary symmetric channel with crossover 0.1: ``C = 1 - h(0.1)``.

    >>> from infomoe import channel_capacity
    >>> res = channel_capacity([[0.9, 0.1], [0.1, 0.9]])
    >>> round(res.capacity, 5), res.p_x.round(3).tolist()
    (0.531, [0.5, 0.5])
    """
    from infomoe import _ba_core, _ba_export

    W = as_probability_rows(p_t_given_x, "p_t_given_x", min_ndim=2)
    if W.ndim != 2:
        raise ValueError(f"`p_t_given_x` must be 2-D (inputs x outputs), got shape {W.shape}.")
    lb = log_base(base)
    dt = _check_dtype(dtype)
    tol = _check_tol(tol, dt)
    max_iter = check_positive_int(max_iter, "max_iter")
    W = W / W.sum(axis=1, keepdims=True)
    W = W[:, W.sum(axis=0) > 0]  # outputs that never occur carry no information
    with _jax_context(dt):
        (Wj,) = _put([W.astype(dt)], device)
        p, lo, up, it = _ba_export.call(_ba_core.capacity_solve, [Wj, *_scalars(tol * lb, max_iter, dt)],
                                        newton=W.shape[0] <= _NEWTON_INPUTS)
        p, lo, up, it = np.asarray(p, np.float64), float(lo), float(up), int(it)
    lo_u, up_u = max(lo, 0.0) / lb, max(up, 0.0) / lb
    gap = max(up_u - lo_u, 0.0)
    return CapacityResult(capacity=lo_u, upper_bound=up_u, certificate=gap, p_x=p / p.sum(),
                          converged=gap <= tol, iterations=it, base=float(base),
                          unit=unit_name(base))
