r"""The solver's traced programs, kept on disk so that a new process does not trace them again.

JAX's persistent compilation cache (:func:`infomoe._blahut_arimoto.jax_cache_dir`)
stores compiled programs, but JAX looks a program up by its lowered form, so
every new process first traces and lowers the solver again: 0.3-0.4 s of
the first :func:`~infomoe.accuracy_rate_curve` in a process with a warm cache
(measured with ``benchmarks/bench_cold.py``; ``import jax`` is another 1.4 s).
:func:`call` serialises the traced program with :mod:`jax.export` the first
time a shape is solved and loads it in later processes, so they go straight
to the compiled-program cache.

Only the tracing is skipped: the program is the one that tracing gives (the
same StableHLO), so results are identical, bit for bit.  Files live in
``<jax_cache_dir>/exported``, one per function, argument shapes and dtypes,
static arguments, platform and versions of JAX, jaxlib and infomoe; writes
are atomic, and a file that cannot be read is traced again and replaced.
It is on whenever infomoe's compilation cache is in effect (not when the
user configured JAX's own cache; ``INFOMOE_JAX_CACHE=0`` turns both off) and the optional ``flatbuffers`` package, which
:mod:`jax.export` needs for serialisation, is installed
(``pip install "infomoe[fast-start]"``); otherwise :func:`call` just calls
the jitted function.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Optional

import numpy as np

__all__ = ["call", "export_dir"]

#: Suffix of the stored programs.
SUFFIX = ".jaxexport"


def export_dir() -> Optional[str]:
    """The folder of the stored programs, or None when they are off (see the module docstring)."""
    import importlib.util

    import jax

    from infomoe._blahut_arimoto import _usable_dir, jax_cache_dir

    base = jax_cache_dir()
    # on exactly when infomoe's compilation cache is in effect (not when the user configured JAX's own)
    if base is None or jax.config.jax_compilation_cache_dir != base \
            or importlib.util.find_spec("flatbuffers") is None:
        return None
    path = os.path.join(base, "exported")
    return path if _usable_dir(path) else None


def _key(fn, args, static: dict) -> str:
    import jax
    import jaxlib

    from infomoe import __version__

    parts = [getattr(fn, "__name__", repr(fn)), __version__, jax.__version__, jaxlib.__version__,
             jax.default_backend(), bool(jax.config.jax_enable_x64), sorted(static.items())]
    for a in args:
        devices = sorted(str(d) for d in a.devices()) if hasattr(a, "devices") else []
        parts.append((tuple(np.shape(a)), str(a.dtype), devices))
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]


def call(fn, args, **static):
    """``fn(*args, **static)`` for a jitted `fn`, through a stored traced program when one exists.

    Parameters
    ----------
    fn : jitted function
        One of :mod:`infomoe._ba_core`'s solvers.
    args : sequence of arrays
        Its array arguments (JAX or NumPy arrays, not Python scalars: the
        program is stored for their exact shapes and dtypes).
    **static
        Its static arguments.

    Returns
    -------
    The function's outputs.
    """
    import jax

    folder = export_dir()
    if folder is None:
        return fn(*args, **static)
    path = os.path.join(folder, _key(fn, args, static) + SUFFIX)
    exported = None
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                exported = jax.export.deserialize(bytearray(f.read()))
        except Exception:  # a damaged or foreign file: trace again and replace it
            exported = None
    if exported is None:
        exported = jax.export.export(fn)(*args, **static)
        tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as f:
                f.write(exported.serialize())
            os.replace(tmp, path)
        except OSError:  # a full or read-only disk only costs the next process the tracing
            if os.path.exists(tmp):
                os.remove(tmp)
    return exported.call(*args)
