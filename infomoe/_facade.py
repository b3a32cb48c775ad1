"""The one convention every package facade (``__init__.py``) follows.

A facade re-exports public names from private modules and writes each name
once, in one of two ways:

* **eager** -- ``from infomoe.x._mod import name as name`` lines and
  ``__all__ = _facade.public_names(globals())``.  Used wherever importing the
  defining modules is cheap and never loads JAX, torch, matplotlib or
  transformers.
* **lazy** -- a ``_LAZY = {name: module}`` table, ``__all__ = sorted(_LAZY)``
  and ``__getattr__ = _facade.lazy_getattr(globals(), _LAZY)``.  Used where
  importing the package must not load one of those libraries
  (:mod:`infomoe`, :mod:`infomoe.routing`, :mod:`infomoe.plot`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Mapping, Optional

__all__ = ["public_names", "lazy_getattr"]


def public_names(namespace: Mapping[str, object]) -> list:
    """The ``__all__`` of an eager facade: its public globals that are not modules.

    Parameters
    ----------
    namespace : mapping of str to object
        The facade's ``globals()`` after its ``from ... import name as name``
        lines.

    Returns
    -------
    list of str
        The sorted names that neither start with ``_`` nor are modules (so a
        submodule imported on the way is not re-exported).  An eager facade
        has no other globals: no plain ``import`` and no ``from __future__
        import annotations`` (it would export ``annotations``).

    Examples
    --------
    >>> import math
    >>> public_names({"pi": math.pi, "tau": math.tau, "math": math, "_private": 1})
    ['pi', 'tau']
    """
    return sorted(name for name, value in namespace.items()
                  if not name.startswith("_") and not isinstance(value, ModuleType))


def lazy_getattr(namespace: dict, table: Mapping[str, str],
                 aliases: Optional[Mapping[str, str]] = None) -> Callable[[str], object]:
    """The module ``__getattr__`` of a lazy facade.

    Parameters
    ----------
    namespace : dict
        The facade's ``globals()``; a resolved name is cached there, so each
        name is imported once.
    table : mapping of str to str
        Public name -> module that defines it.  A name whose module is the
        facade's own submodule of that name (``"bounds": "infomoe.bounds"``)
        resolves to that submodule.
    aliases : mapping of str to str, optional
        Names resolved the same way that are left out of ``__all__``
        (deprecated aliases).

    Returns
    -------
    callable
        ``__getattr__(name)``, raising :class:`AttributeError` for any other name.

    Examples
    --------
    >>> ns = {"__name__": "demo"}
    >>> getattr_ = lazy_getattr(ns, {"sqrt": "math"})
    >>> getattr_("sqrt")(4.0), "sqrt" in ns
    (2.0, True)
    >>> getattr_("cbrt")
    Traceback (most recent call last):
    ...
    AttributeError: module 'demo' has no attribute 'cbrt'
    """
    package = namespace["__name__"]
    lookup = {**table, **(aliases or {})}

    def __getattr__(name: str):
        if name not in lookup:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(lookup[name])
        value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    return __getattr__
