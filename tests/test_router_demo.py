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
