"""Paper A's view of routing: sparse posterior, load balance, coherence, subset selection.

Facade convention (:mod:`infomoe._facade`): lazy, so that ``import
infomoe.routing`` does not import JAX.  The NumPy analysis functions load
without it; the orthogonality regularisers, :func:`orthogonalize` and the
differentiable losses in :mod:`infomoe.routing.jax_losses` load JAX when used.
"""

from infomoe import _facade

# public name -> module that defines it (a submodule defines itself)
_LAZY = {
    # NumPy
    "aux_free_bias_update": "infomoe.routing._balance",
    "deepseek_balance_loss": "infomoe.routing._balance",
    "expert_load": "infomoe.routing._balance",
    "gshard_load_balancing_loss": "infomoe.routing._balance",
    "hf_load_balancing_loss": "infomoe.routing._balance",
    "max_violation": "infomoe.routing._balance",
    "router_z_loss": "infomoe.routing._balance",
    "switch_load_balancing_loss": "infomoe.routing._balance",
    "CoherenceBarrier": "infomoe.routing._barrier",
    "coherence_barrier": "infomoe.routing._barrier",
    "support_recovery": "infomoe.routing._barrier",
    "babel": "infomoe.routing._coherence",
    "exact_recovery_condition": "infomoe.routing._coherence",
    "gram_matrix": "infomoe.routing._coherence",
    "mutual_coherence": "infomoe.routing._coherence",
    "normalize_rows": "infomoe.routing._coherence",
    "welch_bound": "infomoe.routing._coherence",
    "RoutingPosterior": "infomoe.routing._posterior",
    "aggregate_kl_to_uniform": "infomoe.routing._posterior",
    "aggregate_posterior": "infomoe.routing._posterior",
    "posterior_summary": "infomoe.routing._posterior",
    "renyi2_entropy": "infomoe.routing._posterior",
    "router_probabilities": "infomoe.routing._posterior",
    "routing_ambiguity": "infomoe.routing._posterior",
    "routing_information": "infomoe.routing._posterior",
    "sparse_posterior_error": "infomoe.routing._posterior",
    "sparse_posterior_regret": "infomoe.routing._posterior",
    "topk_support": "infomoe.routing._posterior",
    "SubsetSelection": "infomoe.routing._subset",
    "best_subset": "infomoe.routing._subset",
    "omp": "infomoe.routing._subset",
    "recovery_rate": "infomoe.routing._subset",
    "thresholding": "infomoe.routing._subset",
    "SparseTokens": "infomoe.routing._synthetic",
    "coherent_dictionary": "infomoe.routing._synthetic",
    "low_coherence_frame": "infomoe.routing._synthetic",
    "sparse_tokens": "infomoe.routing._synthetic",
    # JAX-backed
    "so_penalty": "infomoe.routing._orthogonality",
    "dso_penalty": "infomoe.routing._orthogonality",
    "mc_penalty": "infomoe.routing._orthogonality",
    "srip_penalty": "infomoe.routing._orthogonality",
    "orthogonality_penalty": "infomoe.routing._orthogonality",
    "orthogonalize": "infomoe.routing._orthogonality",
    "OrthogonalizeResult": "infomoe.routing._orthogonality",
    "PENALTIES": "infomoe.routing._orthogonality",
    "jax_losses": "infomoe.routing.jax_losses",
}

__all__ = sorted(_LAZY)
# "jax": deprecated alias of jax_losses (warns on import), kept out of __all__ so that
# ``from infomoe.routing import *`` does not shadow the jax package
__getattr__ = _facade.lazy_getattr(globals(), _LAZY, aliases={"jax": "infomoe.routing.jax"})


def __dir__():
    return __all__
