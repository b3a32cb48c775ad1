"""Rate–distortion sweeps sharded across JAX devices (GPUs, TPU cores, or CPU devices).

:func:`rate_distortion_sharded` solves the same problem as
:func:`infomoe.rate_distortion` with the same jitted solver
(:func:`infomoe._ba_core.rd_solve`), but lays its data out over a 2-D
device mesh ``("beta", "sample")``:

* the slopes of the sweep are split over the ``"beta"`` axis: every slope
  is an independent problem, so this axis needs no communication beyond
  the loop's "all slopes done?" test;
* the rows of every sample block are split over the ``"sample"`` axis: the
  per-slope sums over samples (the dual objective, the multipliers
  ``c(t)`` and the Hessian, ``O(E^2)`` numbers per slope) are all-reduced
  across it by XLA once per data pass.

The partitioning is done by XLA's SPMD partitioner from the input
shardings (``jax.sharding.NamedSharding``); the algorithm, its stopping
rule and its certificate are those of :func:`infomoe.rate_distortion`.
On one device it *is* :func:`infomoe.rate_distortion`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from infomoe._validate import check_positive_int

__all__ = ["rate_distortion_sharded", "default_mesh_shape"]


def default_mesh_shape(n_devices: int, n_beta: int) -> tuple:
    """``(beta_shards, sample_shards)`` for `n_devices` and a sweep of `n_beta` slopes.

    Slopes need no communication, so as many devices as possible go to the
    ``"beta"`` axis: the largest divisor of `n_devices` that is at most
    `n_beta`; the remaining factor splits the samples.

    Examples
    --------
    >>> default_mesh_shape(8, 64), default_mesh_shape(8, 3), default_mesh_shape(1, 5)
    ((8, 1), (2, 4), (1, 1))
    """
    n_devices = check_positive_int(n_devices, "n_devices")
    n_beta = check_positive_int(n_beta, "n_beta")
    nb = max(d for d in range(1, n_devices + 1) if n_devices % d == 0 and d <= n_beta)
    return nb, n_devices // nb


def _check_devices(devices):
    import jax

    if devices is None:
        return list(jax.devices())
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise TypeError("`devices` must be a sequence of jax.Device, got "
                        f"{type(devices).__name__}.")
    devices = list(devices)
    if not devices:
        raise ValueError("`devices` is empty; pass at least one jax.Device (e.g. jax.devices()).")
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"`devices` must hold jax.Device objects, got {bad[0]!r}.")
    if len(set(devices)) != len(devices):
        raise ValueError("`devices` lists a device more than once.")
    return devices


def _check_mesh_shape(mesh_shape, n_devices: int, n_beta: int) -> tuple:
    if mesh_shape is None:
        return default_mesh_shape(n_devices, n_beta)
    try:
        nb, ns = (check_positive_int(v, "mesh_shape") for v in mesh_shape)
    except (TypeError, ValueError):
        raise ValueError("`mesh_shape` must be a pair of positive integers (beta_shards, "
                         f"sample_shards), got {mesh_shape!r}.") from None
    if nb * ns != n_devices:
        raise ValueError(f"`mesh_shape` {(nb, ns)} needs {nb * ns} devices, but {n_devices} "
                         "were given; pass `devices=` or a mesh_shape whose product matches.")
    return nb, ns


def rate_distortion_sharded(distortion, betas, *, p_x=None, tol: Optional[float] = None,
                            max_iter: int = 500, base: float = 2, dtype=None,
                            block_size: Optional[int] = None, compress: bool = True,
                            devices=None, mesh_shape=None):
    """:func:`infomoe.rate_distortion` with the sweep and the samples sharded over devices.

    Parameters
    ----------
    distortion, betas, p_x, tol, max_iter, base, dtype, compress
        As in :func:`infomoe.rate_distortion`.
    block_size : int, optional
        Samples per block **per sample shard** (the block of the whole
        mesh is ``block_size * sample_shards`` rows).  Default: about
        4 M elements of temporaries per device, as in
        :func:`infomoe.rate_distortion`.
    devices : sequence of jax.Device, optional
        Devices to use (default ``jax.devices()``: every GPU, every TPU
        core, or the CPU devices).  With one device this is exactly
        ``rate_distortion(..., device=devices[0])``.
    mesh_shape : (int, int), optional
        ``(beta_shards, sample_shards)``, whose product is the number of
        devices.  Default :func:`default_mesh_shape`: slopes first.

    Returns
    -------
    RateDistortionResult
        As from :func:`infomoe.rate_distortion`; per-slope values agree
        with the one-device solve up to rounding (sums over samples are
        grouped per device), well inside the certificate tolerance.

    Notes
    -----
    The sweep is padded to a multiple of ``beta_shards`` by repeating the
    last slope (the copies are dropped from the result), and the samples
    to a multiple of the mesh block with zero-weight rows, which contribute
    nothing to any sum.  With the samples on the ``"sample"`` axis, each
    data pass of the projected-Newton iteration ends in an all-reduce of
    ``O(n_beta * E^2)`` numbers, independent of the number of samples.
    The problem solved, the iteration and the certificate
    ``rate - certificate <= R(distortion) <= rate`` are those of
    :func:`infomoe.rate_distortion`.

    References
    ----------
    R. E. Blahut, IEEE Trans. IT 18(4), 1972 (Theorems 6-8), for the
    problem and the certificate.  Y. Xu et al., "GSPMD: general and
    scalable parallelization for ML computation graphs", arXiv 2105.04663
    (2021), for the partitioning (no equation numbers).

    Examples
    --------
    On one device this is :func:`infomoe.rate_distortion`:

    >>> import numpy as np
    >>> from infomoe._ba_sharding import rate_distortion_sharded
    >>> d = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = rate_distortion_sharded(d, [np.log(9.0)], p_x=[0.75, 0.25])
    >>> round(float(res.distortion[0]), 6), round(float(res.rate[0]), 5)
    (0.1, 0.34228)
    """
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from infomoe import _ba_core
    from infomoe._blahut_arimoto import (
        _BLOCK_ELEMENTS,
        _CACHE_BYTES,
        _blocks,
        _check_betas,
        _check_distortion,
        _check_solver_options,
        _jax_context,
        _prepare,
        _rd_result,
        rate_distortion,
    )

    devs = _check_devices(devices)
    d = _check_distortion(distortion, "distortion")
    b = _check_betas(betas)
    nb, ns = _check_mesh_shape(mesh_shape, len(devs), b.size)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    if len(devs) == 1:
        return rate_distortion(d, b, p_x=p_x, tol=tol, max_iter=max_iter, base=base, dtype=dtype,
                               block_size=block_size, device=devs[0], compress=compress)
    p, lb, dt, tol, max_iter = _check_solver_options(p_x, d.shape[0], base, dtype, tol, max_iter)

    dd, pw, d_floor = _prepare(d, p, compress)
    n, E = dd.shape
    L = b.size
    Lp = -(-L // nb) * nb
    bp = np.concatenate([b, np.repeat(b[-1:], Lp - L)])
    if block_size is None:
        block_size = max(256, _BLOCK_ELEMENTS // max(1, (Lp // nb) * (E + _ba_core.N_STEPS)))
    B = min(block_size, -(-n // ns)) * ns  # rows of one block, a multiple of sample_shards
    if n < B:  # zero-weight rows: no contribution to any sum
        dd = np.concatenate([dd, np.zeros((B - n, E))])
        pw = np.concatenate([pw, np.zeros(B - n)])
    ddb, pwb = _blocks(dd, pw, Lp, B, dt)

    mesh = Mesh(np.asarray(devs, dtype=object).reshape(nb, ns), ("beta", "sample"))
    with _jax_context(dt):
        ddj = jax.device_put(ddb, NamedSharding(mesh, P(None, "sample", None)))
        pwj = jax.device_put(pwb, NamedSharding(mesh, P(None, "sample")))
        bj = jax.device_put(bp.astype(dt), NamedSharding(mesh, P("beta")))
        cache = ddb.size * Lp * dt.itemsize // (nb * ns) <= _CACHE_BYTES
        r, rq, dex, mi, cert, it = _ba_core.rd_solve(ddj, pwj, bj, tol * lb, max_iter,
                                                     cache=cache)
        r, rq, dex, mi, cert, it = (np.asarray(v)[:L] for v in (r, rq, dex, mi, cert, it))
    return _rd_result(b, rq, dex, mi, cert, it, d_floor=d_floor, lb=lb, base=base, tol=tol)
