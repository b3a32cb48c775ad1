import json

import numpy as np
import pytest

from infomoe.cli import main
from infomoe.logs import analyze_log, write_log


@pytest.fixture
def small_log(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    tok = rng.integers(0, 30, n)
    ids = np.stack([tok % 4, (tok + 1) % 4], axis=1)[:, None, :].repeat(2, axis=1)
    ids[:, 1] = rng.integers(0, 4, (n, 2))
    return write_log(tmp_path / "log", ids, num_experts=4, token_id=tok,
                     position=np.arange(n) % 64, label=tok % 2, shard_tokens=200)


def test_report_writes_summary_figures_and_table(small_log, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", small_log.path, "--out", str(out), "--no-progress"]) == 0
    for name in ("summary.json", "load_heatmap.png", "layer_information.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "load_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    ref = analyze_log(small_log, progress=False)
    assert summary["num_tokens"] == 600 and summary["unit"] == "bits"
    for i in range(2):
        assert summary["layers"][i]["mi_token"]["value"] == pytest.approx(float(ref.mi_token[i]))
        assert summary["layers"][i]["load"] == ref.load[i].tolist()
    text = capsys.readouterr().out
    assert "I(tok;E)" in text and "wrote" in text and "summary.json" in text


def test_report_options(small_log, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", small_log.path, "--out", str(out), "--no-progress", "--no-plots",
                 "--layers", "1", "--estimator", "miller_madow", "--base", "2.718281828459045"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [l["layer_id"] for l in s["layers"]] == [1] and s["unit"] == "nats"
    assert s["estimator"] == "miller_madow" and not (out / "load_heatmap.png").exists()


def test_report_corrupted_log(small_log, tmp_path, capsys):
    f = tmp_path / "log" / "shards" / "00000001" / "expert_ids.0.npy"
    b = bytearray(f.read_bytes())
    b[-1] ^= 1
    f.write_bytes(bytes(b))
    assert main(["report", small_log.path, "--out", str(tmp_path / "r1"), "--no-progress"]) == 2
    assert "shard 1 (shards/00000001)" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match="shard 1"):
        assert main(["report", small_log.path, "--out", str(tmp_path / "r2"), "--no-progress",
                     "--skip-corrupt"]) == 0
    assert json.loads((tmp_path / "r2" / "summary.json").read_text())["num_tokens"] == 400


def test_report_missing_log(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "not a routing log" in capsys.readouterr().err


def test_report_progress_bar(small_log, tmp_path, capsys):
    pytest.importorskip("tqdm")
    assert main(["report", small_log.path, "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    assert "report" in capsys.readouterr().err  # the tqdm bar writes to stderr


def test_report_says_first_when_layers_drop_tokens(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n = 800
    ids = rng.integers(0, 4, (n, 2, 1))
    ids[rng.random(n) < 0.875, :, 0] = -1  # as the tiny Switch model: 87.5% over capacity
    log = write_log(tmp_path / "log", ids, num_experts=4, token_id=rng.integers(0, 30, n))
    out = tmp_path / "rep"
    assert main(["report", log.path, "--out", str(out), "--no-progress", "--no-plots"]) == 0
    printed = capsys.readouterr().out.splitlines()
    dropped = (ids == -1).mean(axis=(0, 2))
    assert printed[0].startswith("RoutingLog(")  # the log, then the table, which opens with:
    assert printed[1].startswith("warning: layer 0 drops") and "layer 1 drops" in printed[1]
    assert f"{100 * dropped[1]:.1f}%" in printed[1]
    summary = json.loads((out / "summary.json").read_text())
    assert printed[1] == "warning: " + summary["warnings"][0]
    assert "columns:" in printed  # with the legend below the table
