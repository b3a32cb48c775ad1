"""infomoe: information-theoretic estimators for Mixture-of-Experts routing.

The public API is re-exported here.  Facade convention (:mod:`infomoe._facade`):
lazy, so that ``import infomoe`` stays fast and never imports JAX, torch or
matplotlib; those load only when a function that needs them is used.

Subpackages: :mod:`infomoe.bounds`, :mod:`infomoe.testing`,
:mod:`infomoe.routing`, :mod:`infomoe.logs`, :mod:`infomoe.bank`,
:mod:`infomoe.plot`.
"""

from infomoe import _facade

__version__ = "0.1.0"

# public name -> module that defines it (a subpackage defines itself)
_LAZY = {
    # counting (numba)
    "label_counts": "infomoe._counting",
    "contingency": "infomoe._counting",
    # entropy estimators
    "entropy": "infomoe._entropy",
    "Estimate": "infomoe._entropy",
    "ESTIMATORS": "infomoe._entropy",
    "shannon_entropy": "infomoe._entropy",
    # mutual information
    "mutual_information": "infomoe._information",
    "mutual_information_table": "infomoe._information",
    "conditional_mutual_information": "infomoe._information",
    "conditional_mutual_information_table": "infomoe._information",
    "channel_information": "infomoe._information",
    "ChannelInformation": "infomoe._information",
    "conditional_entropy": "infomoe._information",
    "joint_entropy": "infomoe._information",
    "total_correlation": "infomoe._information",
    "adjusted_mutual_information": "infomoe._information",
    "normalized_mutual_information": "infomoe._information",
    "kl_divergence": "infomoe._information",
    "jensen_shannon_divergence": "infomoe._information",
    "EstimatorWarning": "infomoe._entropy",
    "UndersampledWarning": "infomoe._entropy",
    # resampling
    "bootstrap_mutual_information": "infomoe._resampling",
    "independence_test": "infomoe._resampling",
    "BootstrapResult": "infomoe._resampling",
    "PermutationResult": "infomoe._resampling",
    # Blahut-Arimoto (JAX)
    "rate_distortion": "infomoe._blahut_arimoto",
    "RateDistortionResult": "infomoe._blahut_arimoto",
    "accuracy_rate_curve": "infomoe._blahut_arimoto",
    "AccuracyRateCurve": "infomoe._blahut_arimoto",
    "channel_capacity": "infomoe._blahut_arimoto",
    "CapacityResult": "infomoe._blahut_arimoto",
    "rate_distortion_sharded": "infomoe._ba_sharding",
    # subpackages
    **{name: f"infomoe.{name}" for name in ("bounds", "testing", "routing", "logs", "bank", "plot", "cli")},
}

__all__ = [*sorted(_LAZY), "__version__"]
__getattr__ = _facade.lazy_getattr(globals(), _LAZY)


def __dir__():
    return __all__
