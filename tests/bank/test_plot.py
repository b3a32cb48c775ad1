import dataclasses
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from infomoe.plot import bank_accuracy_rate, bank_bounds  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _line(ax, start):
    """The one line whose label starts with ``start``."""
    found = [ln for ln in ax.get_lines() if ln.get_label().startswith(start)]
    assert len(found) == 1, [ln.get_label() for ln in ax.get_lines()]
    return found[0]


def _height(ax, y):
    """Height of data value ``y`` as a fraction of ``ax`` (0 = bottom, 1 = top)."""
    return ax.transAxes.inverted().transform(ax.transData.transform((1.0, y)))[1]


def _bounds_axes(result):
    fig, ax = plt.subplots()
    assert bank_bounds(result, ax=ax) is ax
    twin = [a for a in fig.axes if a is not ax]
    assert len(twin) == 1
    fig.canvas.draw()
    return ax, twin[0]


def test_bank_bounds_draws_every_series(small_result):
    r = small_result
    ax, twin = _bounds_axes(r)
    for label, values in (("gap (soft)", r.gap), ("gap (sampled)", r.gap_sampled),
                          ("Aminian", r.aminian_predicted)):
        np.testing.assert_allclose(_line(ax, label).get_ydata(), values)
        np.testing.assert_allclose(_line(ax, label).get_xdata(), r.alphas)
    assert ax.get_xscale() == "symlog"
    assert "alpha" in ax.get_xlabel() and "gap" in ax.get_ylabel()
    assert "bits" in twin.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 7 and any("log_2 K" in t for t in legend)


def test_each_bound_line_is_its_closed_form(small_result):
    r = small_result
    ax, twin = _bounds_axes(r)
    K, m = r.n_experts, r.m
    # union: sqrt(ln K / (2m)), a 0/1 risk (left axis)
    np.testing.assert_allclose(_line(ax, "union").get_ydata(), math.sqrt(math.log(K) / (2 * m)))
    # Xu-Raginsky: sqrt(2 sigma^2 I / m) with I in nats and sigma = 1/2 (left axis)
    np.testing.assert_allclose(_line(ax, "Xu-Raginsky").get_ydata(),
                               np.sqrt(2 * 0.25 * r.mi_nats / m))
    # I^(S;W) in bits and its ceiling log2 K in bits (right axis)
    np.testing.assert_allclose(_line(twin, r"$\hat I(S;W)$").get_ydata(), r.mi_nats / math.log(2))
    np.testing.assert_allclose(_line(twin, r"$\log_2 K$").get_ydata(), math.log2(K))


def test_union_and_log2k_lines_are_drawn_apart(small_result):
    # different numbers in different units: before, both axes put their ceiling at 1/1.2 of
    # the height, so the log2 K line hid the union line
    r = small_result
    ax, twin = _bounds_axes(r)
    union_h = _height(ax, r.union)
    log2k_h = _height(twin, math.log2(r.n_experts))
    assert abs(union_h - log2k_h) > 0.1
    assert 0 < union_h < 1 and 0 < log2k_h < 1
    # everything on the left axis is inside it
    low, high = ax.get_ylim()
    assert low <= np.min(r.gap_low) and high >= np.max(r.xu_raginsky)


def test_union_label_names_the_coincidence_only_when_it_holds(small_result):
    ax, _ = _bounds_axes(small_result)
    assert "Xu-Raginsky at" in _line(ax, "union").get_label()
    other = dataclasses.replace(small_result, sigma=1.0)
    ax, _ = _bounds_axes(other)
    assert "Xu-Raginsky at" not in _line(ax, "union").get_label()


def test_bank_bounds_defaults_to_current_axes(small_result):
    fig, ax = plt.subplots()
    assert bank_bounds(small_result) is ax


def test_bank_accuracy_rate_marks(small_result):
    fig, ax = plt.subplots()
    assert bank_accuracy_rate(small_result, ax=ax) is ax
    r = small_result
    text = r.accuracy_labels()
    best = _line(ax, text["best_test"])
    assert best.get_xdata()[0] == 0 and best.get_ydata()[0] == pytest.approx(1 - r.test_risk.min())
    np.testing.assert_allclose(_line(ax, text["selected"]).get_ydata(),
                               1 - r.test_risk[np.argmin(r.pool_risk)])
    oracle = _line(ax, text["oracle_curve"])
    assert oracle.get_ydata()[0] == pytest.approx(1 - r.curve.d_min)
    assert oracle.get_xdata()[0] == pytest.approx(r.curve.rate_at_d_min)
    hard = _line(ax, text["oracle_gate"])
    assert math.isclose(hard.get_xdata()[0], r.oracle_rate_bits)
    gate = _line(ax, text["gate"])
    assert math.isclose(gate.get_xdata()[0], r.gate_rate_bits)
    assert math.isclose(gate.get_ydata()[0], r.gate_accuracy)


def test_figure_and_summary_agree_on_the_best_single_expert(small_result):
    r = small_result
    assert r.selected_expert != r.best_test_expert  # the case that once disagreed
    fig, ax = plt.subplots()
    bank_accuracy_rate(r, ax=ax)
    figure_text = [t.get_text() for t in ax.get_legend().get_texts()]
    figure_text += [t.get_text() for t in ax.texts]
    summary = r.summary().splitlines()

    def numbers(lines, phrase):
        return {m.group(1) for ln in lines for m in re.finditer(phrase + r"\D*?(\d\.\d+)", ln)}

    for phrase in ("best single expert", "chosen on the pool", "oracle"):
        in_figure, in_summary = numbers(figure_text, phrase), numbers(summary, phrase)
        assert in_figure and in_figure == in_summary, phrase
    (shown,) = numbers(figure_text, "best single expert")
    assert float(shown) == pytest.approx(1 - r.test_risk.min(), abs=5e-4 + 1e-12)  # 3 decimals
    for line in r.accuracy_labels().values():
        assert line in figure_text and any(line in s for s in summary)
