"""Orthogonality regularisers for expert / router weights (JAX, differentiable).

``W`` has shape ``(experts, dim)`` (rows are expert vectors), so ``W W^T`` is the
experts' Gram matrix.  With ``normalize=True`` the rows are scaled to unit norm
first and the penalties act on angles only, i.e. on coherence.

On concrete arrays the penalties check ``W`` (2-D, non-empty, finite, no zero
row when ``normalize=True``), the flags and the temperature, and raise
``ValueError``/``TypeError`` naming the argument; under ``jax.jit`` /
``jax.grad`` / ``jax.vmap`` only the shapes are checked (the values of a
tracer are unknown), so the penalties stay traceable.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from infomoe._progress import progress_bar
from infomoe._repr import dataclass_repr
from infomoe._validate import as_float_array, check_choice, check_positive_float, check_positive_int
from infomoe.routing._checks import check_array, check_flag, check_nonzero_rows, check_scalar

__all__ = [
    "so_penalty",
    "dso_penalty",
    "mc_penalty",
    "srip_penalty",
    "orthogonality_penalty",
    "orthogonalize",
    "OrthogonalizeResult",
    "PENALTIES",
]


def _prep(W, normalize):
    normalize = check_flag(normalize, "normalize")
    W, host = check_array(W, "W", ndim=2, axes="(experts, dim)")
    if normalize:
        check_nonzero_rows(host, "W", " (normalize=True scales every row to unit norm)")
        W = W / jnp.linalg.norm(W, axis=1, keepdims=True)
    return W


def _gram_residual(W):
    return W @ W.T - jnp.eye(W.shape[0], dtype=W.dtype)


def so_penalty(W, *, normalize: bool = False):
    """Soft orthogonality ``||W W^T - I||_F^2``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    normalize : bool, default False
        Penalise the unit-normalised rows (angles only).

    Returns
    -------
    jax scalar

    Notes
    -----
    Its gradient is ``4 (W W^T - I) W``.  For ``E > d`` the minimum ``E - d`` is
    reached by any tight frame, so SO alone does not equalise the angles.

    References
    ----------
    Bansal, Chen & Wang 2018, "Can we gain more from orthogonality
    regularizations in training deep CNNs?", NeurIPS, eq. (2).

    Examples
    --------
    >>> import numpy as np
    >>> float(so_penalty(np.eye(3)))
    0.0
    """
    return jnp.sum(jnp.square(_gram_residual(_prep(W, normalize))))


def dso_penalty(W, *, normalize: bool = False):
    """Double soft orthogonality ``||W W^T - I||_F^2 + ||W^T W - I||_F^2``.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    normalize : bool, default False

    Returns
    -------
    jax scalar

    Notes
    -----
    Meant to cover the over- and under-complete case with one term each.
    Since ``W W^T`` and ``W^T W`` share their non-zero eigenvalues, the two
    terms differ by the constant ``|E - d|`` and have the same gradient
    ``4 (W W^T - I) W``: DSO is ``2 x`` SO plus a constant, and a scale-invariant
    optimiser such as Adam follows the same path with either.

    References
    ----------
    Bansal et al. 2018, NeurIPS, eq. (3).

    Examples
    --------
    >>> import numpy as np
    >>> float(dso_penalty(np.eye(2)))
    0.0
    """
    W = _prep(W, normalize)
    inner = W.T @ W - jnp.eye(W.shape[1], dtype=W.dtype)
    return jnp.sum(jnp.square(_gram_residual(W))) + jnp.sum(jnp.square(inner))


def mc_penalty(W, *, normalize: bool = False, temperature=None):
    """Mutual-coherence penalty ``||W W^T - I||_inf`` (largest absolute entry).

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    normalize : bool, default False
        With ``True`` this equals the mutual coherence of ``W``.
    temperature : float, optional
        A finite number ``> 0`` (may be traced under ``jit``).  If given, the smooth maximum ``tau logsumexp(|W W^T - I| / tau)``, which
        exceeds the max by at most ``tau log(E^2)`` and tends to it as
        ``tau -> 0`` (used by :func:`orthogonalize` with an annealed ``tau``).

    Returns
    -------
    jax scalar

    Notes
    -----
    A max-norm penalty; its (sub)gradient flows only through the largest
    entry, which is what lowers the worst-case coherence towards the Welch
    bound (the Grassmannian packing problem).

    References
    ----------
    Bansal et al. 2018, NeurIPS, eq. (4).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(mc_penalty(np.array([[1.0, 0.0], [1.0, 1.0]]), normalize=True)), 4)
    0.7071
    """
    a = jnp.abs(_gram_residual(_prep(W, normalize)))
    if temperature is None:
        return jnp.max(a)
    temperature = check_scalar(temperature, "temperature")
    return temperature * jax.nn.logsumexp(a / temperature)


def srip_penalty(W, *, normalize: bool = False, n_iter: int = 20):
    """Spectral restricted isometry penalty ``sigma_max(W W^T - I)`` by power iteration.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    normalize : bool, default False
    n_iter : int, default 20
        Power iterations (Bansal et al. used 2 inside training; more gives a
        value closer to the true spectral norm).

    Returns
    -------
    jax scalar

    Notes
    -----
    ``M = W W^T - I`` is symmetric, so ``sigma_max(M) = max |lambda(M)|``.  From
    a fixed generic start ``v_0 ∝ cos(1, ..., E) + 1.5`` (normalised; a
    constant start could be orthogonal to the top eigenvector of a symmetric
    layout): ``v <- M v / ||M v||``, then
    ``sigma = ||M v||``; gradients flow through the iterations.

    References
    ----------
    Bansal et al. 2018, NeurIPS, eqs. (5)-(6).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(srip_penalty(2.0 * np.eye(3))), 4)
    3.0
    """
    n_iter = check_positive_int(n_iter, "n_iter")
    M = _gram_residual(_prep(W, normalize))
    n = M.shape[0]
    # a deterministic, generic start (not orthogonal to the top eigenvector in practice)
    v = jnp.cos(jnp.arange(1, n + 1, dtype=M.dtype)) + 1.5
    v = v / jnp.linalg.norm(v)

    def step(v, _):
        w = M @ v
        return w / (jnp.linalg.norm(w) + jnp.finfo(M.dtype).tiny), None

    v, _ = jax.lax.scan(step, v, None, length=n_iter)
    return jnp.linalg.norm(M @ v)


PENALTIES = {"so": so_penalty, "dso": dso_penalty, "mc": mc_penalty, "srip": srip_penalty}


def orthogonality_penalty(W, kind: str = "so", *, normalize: bool = False):
    """Dispatch to one of :data:`PENALTIES` by name ("so", "dso", "mc", "srip").

    Parameters
    ----------
    W : array_like, shape (experts, dim)
    kind : {"so", "dso", "mc", "srip"}
    normalize : bool, default False

    Returns
    -------
    jax scalar

    References
    ----------
    Bansal et al. 2018, NeurIPS, eqs. (2)-(6).

    Examples
    --------
    >>> import numpy as np
    >>> float(orthogonality_penalty(np.eye(2), "mc"))
    0.0
    """
    check_choice(kind, "kind", tuple(PENALTIES))
    return PENALTIES[kind](W, normalize=normalize)


@dataclass(frozen=True)
class OrthogonalizeResult:
    """Outcome of :func:`orthogonalize`.

    Attributes
    ----------
    weights : ndarray, shape (experts, dim)
        Final expert vectors of the selected run (unit rows if ``normalize=True``).
    coherence : ndarray, shape (n_records,)
        Mutual coherence of the selected run at the recorded steps (entry 0
        is that run's start: ``W`` itself, or ``W`` plus noise for a restart).
    penalty : ndarray, shape (n_records,)
        Exact penalty (hard max for MC) of the selected run at the recorded steps.
    steps : ndarray of int64, shape (n_records,)
    kind : str
    restart_coherence : ndarray, shape (restarts,) or None
        Final mutual coherence of every restart (entry 0: the run started from
        ``W`` itself); ``None`` when not recorded.
    """

    __repr__ = dataclass_repr  # arrays as shape and range: one short line

    weights: np.ndarray
    coherence: np.ndarray
    penalty: np.ndarray
    steps: np.ndarray
    kind: str
    restart_coherence: np.ndarray | None = None


def orthogonalize(W, kind: str = "mc", *, steps: int = 2000, learning_rate: float = 1e-2,
                  normalize: bool = True, mc_temperature=(0.05, 5e-4), restarts: int = 8,
                  restart_noise: float = 0.3, seed: int = 0, record_every: int = 50,
                  progress: bool = False) -> OrthogonalizeResult:
    """Train expert vectors on an orthogonality penalty alone with optax Adam.

    Parameters
    ----------
    W : array_like, shape (experts, dim)
        Initial expert vectors.
    kind : {"so", "dso", "mc", "srip"}, default "mc"
    steps : int, default 2000
    learning_rate : float, default 1e-2
        Peak Adam learning rate; a cosine decay to 1% of it over ``steps``.
    normalize : bool, default True
        Penalise the unit-normalised rows (angles only, the quantity the
        coherence barrier depends on).
    mc_temperature : (float, float) or None, default (0.05, 0.0005)
        For ``kind="mc"``: anneal the smooth-max temperature geometrically from
        the first to the second value (early on many near-maximal pairs share
        the gradient, late the penalty is the max itself); ``None`` uses the
        exact max throughout.  ``penalty`` is always recorded with the exact max.
    restarts : int, default 8
        Independent runs trained side by side (``jax.vmap``): the first from
        ``W``, the others from ``W`` plus Gaussian noise.  The run with the
        lowest final penalty is returned: the max-coherence problem has
        start-dependent local optima, and a handful of starts finds the best
        one far more reliably than one long run.
    restart_noise : float, default 0.3
        Noise standard deviation per coordinate, relative to each row's
        norm divided by ``sqrt(dim)`` (so 0.3 moves a row by about 30%).
    seed : int, default 0
        Seeds the restart noise.
    record_every : int, default 50
    progress : bool, default False
        tqdm bar over recording chunks.

    Returns
    -------
    OrthogonalizeResult

    Notes
    -----
    With ``E <= d`` every penalty drives ``mu`` to 0.  With ``E > d`` only MC
    targets the worst pair and approaches the Welch bound
    ``sqrt((E - d) / (d (E - 1)))``; SO / DSO reach a unit-norm tight frame,
    whose *root-mean-square* coherence equals the Welch bound but whose maximum
    can stay far above it (about 3x for ``(24, 12)``), and SRIP stops once
    ``lambda_max(W W^T) <= 2``.

    Minimising the maximum coherence is the Grassmannian line-packing
    problem; the Welch bound is attained only by equiangular tight frames and
    the best packing can lie well above it.  For real ``(E, d) = (8, 4)`` the
    best known packing has ``mu = sqrt(2) - 1 = 1.096 x`` Welch and MC reaches
    it; for ``(7, 3)`` the best known is ``1/sqrt(3) = 1.22 x`` Welch (no
    regulariser can get within 10% there).  Measured ratios with the defaults
    (seeds 0-2): ``(6, 3)`` 1.000, ``(8, 4)`` 1.096, ``(12, 6)`` 1.049,
    ``(16, 8)`` 1.07, ``(24, 12)`` 1.08; but ``(64, 16)`` stops at 1.18-1.19
    (longer runs and other smooth maxima gave 1.18 at best; 64 lines of four
    real mutually unbiased bases of ``R^16`` have ``mu = 1/4 = 1.146 x``
    Welch, and we know no packing within 10%).

    References
    ----------
    Bansal et al. 2018, NeurIPS; Kingma & Ba 2015 (Adam); Conway, Hardin &
    Sloane 1996, "Packing lines, planes, etc.", Experimental Math. 5(2)
    (best known line packings); Strohmer & Heath 2003, ACHA 14, Thm. 2.3
    (Welch bound and Grassmannian frames).

    Examples
    --------
    >>> import numpy as np
    >>> W0 = np.array([[1.0, 0.1], [0.9, 0.3]])
    >>> r = orthogonalize(W0, "so", steps=300, learning_rate=0.05, restarts=2)
    >>> bool(r.coherence[-1] < 1e-3), r.restart_coherence.shape
    (True, (2,))
    """
    try:
        import optax
    except ImportError as exc:  # pragma: no cover - optax is an optional extra
        raise ImportError("orthogonalize needs optax: pip install optax (or infomoe[bank]).") from exc
    from infomoe.routing._coherence import mutual_coherence

    w0 = as_float_array(W, "W", ndim=2)
    check_choice(kind, "kind", tuple(PENALTIES))
    normalize = check_flag(normalize, "normalize")
    progress = check_flag(progress, "progress")
    # the mutual coherence recorded at every step needs every row's direction, normalised or not
    check_nonzero_rows(w0, "W", " (orthogonalize records the mutual coherence of the rows)")
    steps = check_positive_int(steps, "steps")
    record_every = check_positive_int(record_every, "record_every")
    restarts = check_positive_int(restarts, "restarts")
    noise = check_positive_float(restart_noise, "restart_noise", allow_zero=True)
    lr = check_positive_float(learning_rate, "learning_rate")
    fn = PENALTIES[kind]
    sched = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
    opt = optax.adam(sched)
    smooth = kind == "mc" and mc_temperature is not None
    if smooth:
        if not isinstance(mc_temperature, (tuple, list)) or len(mc_temperature) != 2:
            raise ValueError("`mc_temperature` must be None or a pair (start, end) of positive numbers, "
                             f"got {mc_temperature!r}.")
        t0, t1 = (check_positive_float(t, "mc_temperature") for t in mc_temperature)

    rng = np.random.default_rng(seed)
    scale = np.linalg.norm(w0, axis=1, keepdims=True) / np.sqrt(w0.shape[1])
    starts = np.repeat(w0[None], restarts, axis=0)
    starts[1:] += noise * scale * rng.standard_normal((restarts - 1, *w0.shape))
    params = jnp.asarray(starts, dtype=jnp.float32)
    state = jax.vmap(opt.init)(params)

    def loss(p):
        return fn(p, normalize=normalize)

    def train_loss(p, i):
        if smooth:
            tau = t0 * (t1 / t0) ** (i / steps)
            return mc_penalty(p, normalize=normalize, temperature=tau)
        return loss(p)

    def run_chunk(p, s, start, n):
        def body(i, carry):
            p, s = carry
            g = jax.grad(train_loss)(p, (start + i).astype(jnp.float32))
            upd, s = opt.update(g, s, p)
            return optax.apply_updates(p, upd), s
        return jax.lax.fori_loop(0, n, body, (p, s))

    chunk = jax.jit(jax.vmap(run_chunk, in_axes=(0, 0, None, None)))
    batch_loss = jax.jit(jax.vmap(loss))

    def snapshot(p):
        w = np.asarray(p, dtype=np.float64)
        return [mutual_coherence(wi) for wi in w], np.asarray(batch_loss(p), dtype=np.float64)

    recs = [0]
    mu, pen = snapshot(params)
    mus, pens = [mu], [pen]
    done = 0
    n_chunks = -(-steps // record_every)
    for _ in progress_bar(range(n_chunks), enabled=progress, desc=f"orthogonalize ({kind})"):
        n = min(record_every, steps - done)
        params, state = chunk(params, state, done, n)
        done += n
        recs.append(done)
        mu, pen = snapshot(params)
        mus.append(mu)
        pens.append(pen)
    mus, pens = np.asarray(mus), np.asarray(pens)
    best = int(np.argmin(pens[-1]))
    w = np.asarray(params[best], dtype=np.float64)
    if normalize:
        w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return OrthogonalizeResult(w, mus[:, best].copy(), pens[:, best].copy(),
                               np.array(recs, dtype=np.int64), kind, mus[-1].copy())
