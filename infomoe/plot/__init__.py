"""Matplotlib figures.  Every function takes ``ax=None`` and returns the Axes.

Facade convention (:mod:`infomoe._facade`): lazy, so that importing
:mod:`infomoe.plot` does not import matplotlib; the first plotting call does.
"""

from infomoe import _facade

# public name -> module defining it (add one line per figure)
_LAZY = {
    "accuracy_rate": "infomoe.plot._rate",
    "coherence_heatmap": "infomoe.plot._routing",
    "recovery_vs_coherence": "infomoe.plot._routing",
    "coherence_trace": "infomoe.plot._routing",
    "load_heatmap": "infomoe.plot._logs",
    "layer_information": "infomoe.plot._logs",
    "coactivation_heatmap": "infomoe.plot._logs",
    "bank_bounds": "infomoe.plot._bank",
    "bank_accuracy_rate": "infomoe.plot._bank",
    "comparison_plot": "infomoe.plot._compare",
    "saturation_plot": "infomoe.plot._compare",
}

__all__ = sorted(_LAZY)
__getattr__ = _facade.lazy_getattr(globals(), _LAZY)


def __dir__():
    return __all__
