"""Matplotlib figures.  Every function takes ``ax=None`` and returns the Axes.

Importing :mod:`infomoe.plot` does not import matplotlib; the first plotting
call does.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'infomoe.plot' has no attribute {name!r}")


def __dir__():
    return __all__
