"""``infomoe demo router`` end to end on its quick settings (issue 18)."""

import json
import os

import numpy as np
import pytest

from infomoe.cli import main


def test_bad_arguments_are_one_line_and_status_2(tmp_path, capsys):
    assert main(["demo", "router", "--quick", "--steps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("infomoe demo: error: --steps")
    assert main(["demo", "router", "--quick", "--layer", "5", "--out", str(tmp_path)]) == 2
    assert "--layer" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["demo", "router", "--quick", "--out", str(f)]) == 2
    assert "--out" in capsys.readouterr().err


def test_plain_demo_help_is_unchanged_and_lists_router(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "--experts" in text and "router" in text
    with pytest.raises(SystemExit):
        main(["demo", "router", "--help"])
    text = capsys.readouterr().out
    for opt in ("--out", "--steps", "--seed", "--quick", "--layer"):
        assert opt in text


def test_stdlib_corpus_is_split_by_file_deterministically():
    from infomoe._router_demo import stdlib_corpus

    a = stdlib_corpus(max_train_bytes=20_000, max_test_bytes=10_000)
    b = stdlib_corpus(max_train_bytes=20_000, max_test_bytes=10_000)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[2]["train_files"] > 0 and a[2]["test_files"] > 0


def test_quick_demo_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "router"
    assert main(["demo", "router", "--quick", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for needle in ("routing log report", "soft gate and co-activation", "router saturation",
                   "expert forcing, layer 1", "accuracy-rate frontier", "done in"):
        assert needle in text
    res = json.loads((out / "results.json").read_text())
    for name in ("frontier", "report_load", "report_information", "coactivation", "saturation", "training"):
        assert os.path.getsize(res["paths"][name]) > 0
    assert len(res["training"]["checkpoints"]) == 3
    # co-activation of each layer: the report's lift (one definition), NaN diagonal written as null
    from infomoe.logs import analyze_log
    from infomoe.plot._logs import coactivation_lift

    report = analyze_log(res["training"]["logs"][-1], intervals=False)
    assert [r["layer_id"] for r in res["layers"]] == [0, 1]
    for row in res["layers"]:
        lift = np.array(row["coactivation_lift"], dtype=float)
        np.testing.assert_allclose(lift, coactivation_lift(report, row["layer_id"]))
        assert all(v is None for v in np.diag(np.array(row["coactivation_lift"], dtype=object)))
        i, j = row["coactivation_top_pair"]
        assert row["coactivation_max_lift"] == pytest.approx(np.nanmax(lift)) == pytest.approx(lift[i, j])
        np.testing.assert_allclose(np.diag(row["coactivation_pair_fraction"]).sum(), 2.0)  # top-2: k per token
    assert all(os.path.isdir(p) for p in res["training"]["checkpoints"] + res["training"]["logs"])
    # saturation: one point per checkpoint, the final one agrees with itself
    sat = res["saturation"]
    assert sat["steps"] == [0, 6, 12]
    assert sat["exact_set_match"][-1] == 1.0 and sat["top1_agreement"][-1] == 1.0
    assert all(0.0 <= v <= 1.0 for v in sat["jaccard"])
    # the channel points are not below the frontier; the numbers behind the figure are there
    fr = res["frontier"]
    assert not fr["soft_gate"]["below_frontier"] and not fr["topk_channel"]["below_frontier"]
    assert fr["curve"]["d_min"] <= fr["soft_gate"]["frontier_loss"] <= fr["soft_gate"]["loss"] + 1e-9
    m = np.load(out / "expert_losses.npz")
    assert m["loss"].shape == (res["forcing"]["num_tokens"], 4)
    np.testing.assert_allclose(m["routed_loss"].mean(), res["forcing"]["routed_loss"])


def _report(tmp_path, ids, num_experts):
    from infomoe.logs import analyze_log, write_log

    return analyze_log(write_log(tmp_path / "log", ids[:, None, :], num_experts=num_experts), intervals=False)


@pytest.mark.parametrize("E,k", [(8, 2), (6, 3)])
def test_coactivation_lift_is_one_under_uniformly_random_top_k(tmp_path, E, k):
    from infomoe._router_demo import _layer_coactivation

    n = 40_000
    ids = np.argsort(np.random.default_rng(0).random((n, E)), axis=1)[:, :k]   # a uniform k-subset per token
    c = _layer_coactivation(_report(tmp_path, ids, E), 0)
    off = ~np.eye(E, dtype=bool)
    # P(i and j both chosen) = k(k-1) / (E(E-1)), P(i) = k/E; the lift against the loads is 1
    # (not E(k-1) / (k(E-1)), what P(i, j) / (P(i) P(j)) would give)
    np.testing.assert_allclose(c["coactivation_pair_fraction"][off], k * (k - 1) / (E * (E - 1)), rtol=0.12)
    np.testing.assert_allclose(np.diag(c["coactivation_pair_fraction"]), k / E, rtol=0.05)
    np.testing.assert_allclose(c["coactivation_lift"][off], 1.0, atol=0.12)
    assert abs(np.mean(c["coactivation_lift"][off]) - 1.0) < 0.01
    assert np.isnan(np.diag(c["coactivation_lift"])).all()
    assert c["coactivation_max_lift"] == np.nanmax(c["coactivation_lift"]) < 1.15


def test_coactivation_lift_of_a_fixed_pairing_is_experts_minus_one(tmp_path):
    from infomoe._router_demo import _layer_coactivation

    E = 6
    ids = np.array([[0, 1], [3, 2], [4, 5]] * 100)            # each expert always with its partner
    c = _layer_coactivation(_report(tmp_path, ids, E), 0)
    want = np.zeros((E, E))
    for a, b in ((0, 1), (2, 3), (4, 5)):
        want[a, b] = want[b, a] = E - 1                         # 1 partner where independence spreads over E - 1
    np.fill_diagonal(want, np.nan)
    np.testing.assert_allclose(c["coactivation_lift"], want)
    assert c["coactivation_top_pair"] == (0, 1) and c["coactivation_max_lift"] == pytest.approx(E - 1)
    np.testing.assert_allclose(c["coactivation_pair_fraction"][0], [1 / 3, 1 / 3, 0, 0, 0, 0])


def test_coactivation_of_top_1_routing_has_no_pair(tmp_path):
    from infomoe._router_demo import _layer_coactivation

    c = _layer_coactivation(_report(tmp_path, np.arange(40)[:, None] % 4, 4), 0)
    assert c["coactivation_max_lift"] is None and c["coactivation_top_pair"] is None
    assert np.isnan(c["coactivation_lift"]).all()
