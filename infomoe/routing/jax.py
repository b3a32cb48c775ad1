"""Deprecated name of :mod:`infomoe.routing.jax_losses`.

``from infomoe.routing import jax`` shadowed the real ``jax`` package in the
importing module; import :mod:`infomoe.routing.jax_losses` instead.  This
alias will be removed in a future release.
"""

import warnings

from infomoe.routing.jax_losses import *  # noqa: F401,F403
from infomoe.routing.jax_losses import __all__  # noqa: F401

warnings.warn("infomoe.routing.jax is deprecated (it shadows the jax package when imported by name); "
              "use infomoe.routing.jax_losses", DeprecationWarning, stacklevel=2)
