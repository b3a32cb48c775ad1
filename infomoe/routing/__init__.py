"""Paper A's view of routing: sparse posterior, load balance, coherence, subset selection.

NumPy functions for analysis are imported here directly.  Everything that
needs JAX (the orthogonality regularisers, :func:`orthogonalize`, and the
differentiable losses in :mod:`infomoe.routing.jax_losses`) loads lazily, so
``import infomoe.routing`` does not import JAX.
"""

from __future__ import annotations

import importlib

from infomoe.routing._balance import aux_free_bias_update as aux_free_bias_update
from infomoe.routing._balance import deepseek_balance_loss as deepseek_balance_loss
from infomoe.routing._balance import expert_load as expert_load
from infomoe.routing._balance import gshard_load_balancing_loss as gshard_load_balancing_loss
from infomoe.routing._balance import hf_load_balancing_loss as hf_load_balancing_loss
from infomoe.routing._balance import max_violation as max_violation
from infomoe.routing._balance import router_z_loss as router_z_loss
from infomoe.routing._balance import switch_load_balancing_loss as switch_load_balancing_loss
from infomoe.routing._barrier import CoherenceBarrier as CoherenceBarrier
from infomoe.routing._barrier import coherence_barrier as coherence_barrier
from infomoe.routing._barrier import support_recovery as support_recovery
from infomoe.routing._coherence import babel as babel
from infomoe.routing._coherence import exact_recovery_condition as exact_recovery_condition
from infomoe.routing._coherence import gram_matrix as gram_matrix
from infomoe.routing._coherence import mutual_coherence as mutual_coherence
from infomoe.routing._coherence import normalize_rows as normalize_rows
from infomoe.routing._coherence import welch_bound as welch_bound
from infomoe.routing._posterior import RoutingPosterior as RoutingPosterior
from infomoe.routing._posterior import aggregate_kl_to_uniform as aggregate_kl_to_uniform
from infomoe.routing._posterior import aggregate_posterior as aggregate_posterior
from infomoe.routing._posterior import posterior_summary as posterior_summary
from infomoe.routing._posterior import renyi2_entropy as renyi2_entropy
from infomoe.routing._posterior import router_probabilities as router_probabilities
from infomoe.routing._posterior import routing_ambiguity as routing_ambiguity
from infomoe.routing._posterior import routing_information as routing_information
from infomoe.routing._posterior import sparse_posterior_error as sparse_posterior_error
from infomoe.routing._posterior import sparse_posterior_regret as sparse_posterior_regret
from infomoe.routing._posterior import topk_support as topk_support
from infomoe.routing._subset import SubsetSelection as SubsetSelection
from infomoe.routing._subset import best_subset as best_subset
from infomoe.routing._subset import omp as omp
from infomoe.routing._subset import recovery_rate as recovery_rate
from infomoe.routing._subset import thresholding as thresholding
from infomoe.routing._synthetic import SparseTokens as SparseTokens
from infomoe.routing._synthetic import coherent_dictionary as coherent_dictionary
from infomoe.routing._synthetic import low_coherence_frame as low_coherence_frame
from infomoe.routing._synthetic import sparse_tokens as sparse_tokens

# JAX-backed names, loaded on first access
_LAZY = {
    "so_penalty": "infomoe.routing._orthogonality",
    "dso_penalty": "infomoe.routing._orthogonality",
    "mc_penalty": "infomoe.routing._orthogonality",
    "srip_penalty": "infomoe.routing._orthogonality",
    "orthogonality_penalty": "infomoe.routing._orthogonality",
    "orthogonalize": "infomoe.routing._orthogonality",
    "OrthogonalizeResult": "infomoe.routing._orthogonality",
    "PENALTIES": "infomoe.routing._orthogonality",
}

__all__ = sorted([
    "CoherenceBarrier", "RoutingPosterior", "SparseTokens", "SubsetSelection",
    "aggregate_kl_to_uniform", "aggregate_posterior", "aux_free_bias_update", "babel", "best_subset",
    "coherence_barrier", "coherent_dictionary", "deepseek_balance_loss", "exact_recovery_condition",
    "expert_load", "gram_matrix", "gshard_load_balancing_loss", "hf_load_balancing_loss",
    "low_coherence_frame", "max_violation", "mutual_coherence", "normalize_rows", "omp",
    "posterior_summary", "recovery_rate", "renyi2_entropy", "router_probabilities", "router_z_loss",
    "routing_ambiguity", "routing_information", "sparse_posterior_error", "sparse_posterior_regret",
    "sparse_tokens", "support_recovery", "switch_load_balancing_loss", "thresholding", "topk_support",
    "welch_bound",
] + list(_LAZY) + ["jax_losses"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in ("jax_losses", "jax"):  # "jax": deprecated alias, warns on import
        module = importlib.import_module(f"infomoe.routing.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'infomoe.routing' has no attribute {name!r}")


def __dir__():
    return __all__
