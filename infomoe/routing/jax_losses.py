"""JAX-differentiable routing losses and regularisers for training steps (``infomoe.routing.jax_losses``).

Importing this module imports JAX.  The load-balancing losses have the same
names, formulas and defaults as their NumPy twins in :mod:`infomoe.routing`
(and are tested to agree with them); the orthogonality regularisers exist only
here and in :mod:`infomoe.routing` (loaded lazily).
"""

from __future__ import annotations

from infomoe.routing._balance_jax import aux_free_bias_update as aux_free_bias_update
from infomoe.routing._balance_jax import deepseek_balance_loss as deepseek_balance_loss
from infomoe.routing._balance_jax import gshard_load_balancing_loss as gshard_load_balancing_loss
from infomoe.routing._balance_jax import hf_load_balancing_loss as hf_load_balancing_loss
from infomoe.routing._balance_jax import max_violation as max_violation
from infomoe.routing._balance_jax import router_z_loss as router_z_loss
from infomoe.routing._balance_jax import switch_load_balancing_loss as switch_load_balancing_loss
from infomoe.routing._orthogonality import PENALTIES as PENALTIES
from infomoe.routing._orthogonality import dso_penalty as dso_penalty
from infomoe.routing._orthogonality import mc_penalty as mc_penalty
from infomoe.routing._orthogonality import orthogonality_penalty as orthogonality_penalty
from infomoe.routing._orthogonality import so_penalty as so_penalty
from infomoe.routing._orthogonality import srip_penalty as srip_penalty

__all__ = [
    "PENALTIES",
    "aux_free_bias_update",
    "deepseek_balance_loss",
    "dso_penalty",
    "gshard_load_balancing_loss",
    "hf_load_balancing_loss",
    "max_violation",
    "mc_penalty",
    "orthogonality_penalty",
    "router_z_loss",
    "so_penalty",
    "srip_penalty",
    "switch_load_balancing_loss",
]
