"""Tests for infomoe.plot._routing."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402

from infomoe import plot  # noqa: E402
from infomoe.routing import OrthogonalizeResult, coherence_barrier, coherent_dictionary  # noqa: E402


def test_coherence_heatmap():
    W = coherent_dictionary(6, 4, 0.7, seed=0)
    fig, ax = plt.subplots()
    out = plot.coherence_heatmap(W, ax=ax)
    assert out is ax
    img = ax.get_images()[0].get_array()
    assert img.shape == (6, 6)
    assert np.max(img - np.diag(np.diag(img))) == pytest.approx(0.7)
    assert "0.700" in ax.get_title()
    assert ax.get_xlabel() == "expert j"
    g = W @ W.T
    ax2 = plot.coherence_heatmap(g, gram=True, ax=plt.figure().gca(), colorbar=False)
    np.testing.assert_allclose(ax2.get_images()[0].get_array(), np.abs(g))


@pytest.mark.parametrize("n_experts", [3, 4, 6])
def test_coherence_heatmap_expert_ticks_are_integers(n_experts):
    fig, ax = plt.subplots()
    plot.coherence_heatmap(np.eye(n_experts), gram=True, ax=ax)
    fig.canvas.draw()
    for ticks, (lo, hi) in ((ax.get_xticks(), ax.get_xlim()), (ax.get_yticks(), ax.get_ylim())):
        lo, hi = sorted((lo, hi))
        shown = ticks[(ticks >= lo) & (ticks <= hi)]
        assert shown.size >= 2
        np.testing.assert_array_equal(shown, np.round(shown))


def test_recovery_vs_coherence_and_trace():
    r = coherence_barrier(10, 6, 2, [0.5, 0.8], n_tokens=30)
    ax = plot.recovery_vs_coherence(r, ax=plt.figure().gca())
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert {"exact", "omp", "thresholding"} <= set(lines)
    np.testing.assert_allclose(lines["thresholding"].get_ydata(), r.recovery["thresholding"])
    assert ax.get_xlabel().startswith("mutual coherence")
    fake = OrthogonalizeResult(np.eye(2), np.array([0.9, 0.5]), np.array([1.0, 0.2]), np.array([0, 10]), "mc")
    ax = plot.coherence_trace([fake], welch=0.3, ax=plt.figure().gca())
    assert ax.get_lines()[0].get_label() == "mc"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.9, 0.5])
