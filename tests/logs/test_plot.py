import numpy as np
import pytest

from infomoe.logs import analyze_log, write_log
from infomoe.plot import layer_information, load_heatmap


@pytest.fixture
def report(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (400, 3, 1))
    log = write_log(tmp_path / "l", ids, num_experts=4, token_id=rng.integers(0, 9, 400))
    return analyze_log(log, progress=False)


def test_load_heatmap_inputs(report):
    import matplotlib.pyplot as plt

    ax = load_heatmap(report)
    img = ax.get_images()[0].get_array()
    assert img.shape == (3, 4)
    np.testing.assert_allclose(img.sum(axis=1), 4.0)  # E * f sums to E
    assert ax.get_ylabel() == "MoE layer"
    fig, ax2 = plt.subplots()
    assert load_heatmap({1: [1, 1], 7: [3, 1, 0, 0]}, relative=False, ax=ax2) is ax2
    arr = ax2.get_images()[0].get_array()
    assert arr.mask[0, 2] and arr[1, 0] == pytest.approx(0.75)
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["1", "7"]
    load_heatmap(np.array([[1, 2, 3]]))


def test_load_heatmap_rejects_bad_counts():
    with pytest.raises(ValueError, match="negative"):
        load_heatmap([[1, -1]])
    with pytest.raises(ValueError, match="empty"):
        load_heatmap({})


def test_layer_information(report):
    ax = layer_information(report)
    lines = {l.get_label(): l for l in ax.get_lines() if not l.get_label().startswith("_")}
    assert set(lines) == {r"$I(\mathrm{token};E_\ell)$", r"$I(E_\ell;E_{\ell+1})$"}
    np.testing.assert_allclose(lines[r"$I(\mathrm{token};E_\ell)$"].get_ydata(), report.mi_token)
    np.testing.assert_allclose(lines[r"$I(E_\ell;E_{\ell+1})$"].get_xdata(), [0.5, 1.5])
    assert "bits" in ax.get_ylabel()
    with pytest.raises(TypeError, match="LogReport"):
        layer_information({"mi": 1})


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _visible_ticks(ax, axis="x"):
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    return ticks[(ticks >= lo) & (ticks <= hi)]


@pytest.mark.parametrize("n_experts", [3, 4, 7, 64])
def test_load_heatmap_expert_ticks_are_integers(n_experts):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    load_heatmap(np.arange(2 * n_experts).reshape(2, n_experts) + 10, ax=ax)
    fig.canvas.draw()
    ticks = _visible_ticks(ax)
    assert ticks.size >= 2
    np.testing.assert_array_equal(ticks, np.round(ticks))
    assert ticks.min() >= 0 and ticks.max() <= n_experts - 1


def test_load_heatmap_colour_scale_follows_nearly_uniform_loads():
    # CV about 0.005: on a fixed 0..2 scale this looked flat
    counts = np.array([[1000, 1010, 990, 1004], [998, 1003, 1001, 995]])
    ax = load_heatmap(counts)
    im = ax.get_images()[0]
    rel = counts / counts.sum(axis=1, keepdims=True) * 4
    dev = np.abs(rel - 1).max()
    assert im.norm.vcenter == 1.0                       # centred on the uniform share
    assert im.norm.vmin == pytest.approx(1 - dev) and im.norm.vmax == pytest.approx(1 + dev)
    # every cell is inside the colour range and the range is no wider than the data needs
    assert im.norm.vmin <= rel.min() and im.norm.vmax >= rel.max()
    assert im.norm.vmax - im.norm.vmin < 0.05
    # diverging map: the two extremes differ from the centre colour and from each other
    cm = im.get_cmap()
    assert cm(0.0) != cm(1.0) and cm(0.5) != cm(0.0)


def test_load_heatmap_fractions_centre_on_one_over_e_and_stop_at_zero():
    ax = load_heatmap([[10, 10, 20, 0], [5, 5, 5, 25]], relative=False)
    norm = ax.get_images()[0].norm
    assert norm.vcenter == pytest.approx(0.25)
    assert norm.vmin == 0.0 and norm.vmax == pytest.approx(25 / 40)  # largest fraction
    assert "1/E" in ax.images[0].colorbar.ax.get_ylabel()


def test_load_heatmap_mixed_widths_and_uniform_loads():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    load_heatmap({0: [10, 10, 20, 0], 3: [5, 5, 5, 25, 1, 1]}, relative=False, ax=ax)
    im = ax.get_images()[0]
    assert im.norm.vmin == pytest.approx(0.0) and im.norm.vmax == pytest.approx(25 / 42)
    assert im.get_array().mask[0, 4]                    # padding cell
    # relative loads: padding is opaque grey, not the white of a uniform load
    fig, ax = plt.subplots()
    im = load_heatmap({0: [10, 10, 20, 0], 3: [5, 5, 5, 25, 1, 1]}, ax=ax).get_images()[0]
    bad, uniform = np.array(im.get_cmap().get_bad()), np.array(im.get_cmap()(im.norm(1.0)))
    assert bad[3] == 1.0 and np.abs(bad[:3] - uniform[:3]).max() > 0.1
    # a perfectly uniform table still gets a valid, centred scale
    fig, ax = plt.subplots()
    norm = load_heatmap(np.full((3, 4), 7), ax=ax).get_images()[0].norm
    assert norm.vmin < 1.0 == norm.vcenter < norm.vmax


def test_layer_information_mathtext_legend_and_units(report):
    ax = layer_information(report)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert r"$I(\mathrm{token};E_\ell)$" in texts and r"$I(E_\ell;E_{\ell+1})$" in texts
    for t in texts[:2]:
        assert t.startswith("$") and t.endswith("$")
    assert ax.get_ylabel() == "mutual information [bits]"
    ticks = ax.get_xticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in report.layer_ids]


def test_layer_information_marks_the_plugin_bias(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (400, 3, 1))
    log = write_log(tmp_path / "l", ids, num_experts=4, token_id=rng.integers(0, 9, 400))
    report = analyze_log(log, estimator="plugin")
    ax = layer_information(report)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    bias = lines["_bias mi_token"]
    np.testing.assert_allclose(bias.get_ydata(), report.mi_bias["mi_token"])
    assert bias.get_color() == lines[r"$I(\mathrm{token};E_\ell)$"].get_color()
    assert any("bias" in t.get_text() for t in ax.get_legend().get_texts())


def test_layer_information_draws_intervals_and_hollow_markers_for_noise(tmp_path):
    # layer 0 follows the token, layer 1 is noise: one filled, one hollow marker on the token line
    rng = np.random.default_rng(1)
    tok = rng.integers(0, 8, 2000)
    ids = np.stack([tok % 4, rng.integers(0, 4, 2000)], axis=1)[:, :, None]
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=4, token_id=tok, seq_id=np.arange(2000) // 20))
    assert r.significant["mi_token"].tolist() == [True, False]
    ax = layer_information(r)
    hollow = [ln for ln in ax.get_lines() if ln.get_label() == "_not significant mi_token"]
    assert len(hollow) == 1 and hollow[0].get_xdata().tolist() == [1]
    assert hollow[0].get_markerfacecolor() == "white"
    assert "hollow: not significant" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.collections) >= 1  # the error bars


def test_coactivation_heatmap_and_lift(tmp_path):
    from infomoe.plot import coactivation_heatmap
    from infomoe.plot._logs import coactivation_lift

    # experts pair up as {0, 1} and {2, 3} three times as often as their loads predict
    ids = np.array([[0, 1], [2, 3]] * 60 + [[0, 2], [1, 3], [0, 3], [1, 2]] * 10)[:, None, :]
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=4))
    np.testing.assert_array_equal(r.coactivation[0], r.coactivation[0].T)
    assert r.coactivation[0][0, 1] == 60 and r.coactivation[0][0, 2] == 10
    lift = coactivation_lift(r, 0)
    # loads are equal, so the expected count of each of the 6 pairs is 160 / 6
    assert lift[0, 1] == pytest.approx(60 / (160 / 6)) and lift[0, 2] == pytest.approx(10 / (160 / 6))
    assert np.isnan(np.diag(lift)).all()
    ax = coactivation_heatmap(r)
    assert ax.get_title() == "co-activation, layer 0 (k = 2)" and ax.get_images()
    with pytest.raises(ValueError, match="layer"):
        coactivation_lift(r, 5)
    one = analyze_log(write_log(tmp_path / "k1", ids[:, :, :1], num_experts=4))
    with pytest.raises(ValueError, match="top-k >= 2"):
        coactivation_heatmap(one)
