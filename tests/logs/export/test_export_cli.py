"""`infomoe export`: tiny random-config models only (never downloads)."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from infomoe.cli import main  # noqa: E402
from infomoe.logs import open_log  # noqa: E402


def test_export_tiny_random_tokens(tmp_path, capsys):
    out = tmp_path / "log"
    rc = main(["export", "--tiny", "olmoe", "--out", str(out), "--tokens", "100", "--seq-len", "16",
               "--batch", "2", "--flush-tokens", "40", "--seed", "3"])
    assert rc == 0
    assert "recorded 100 tokens x 2 MoE layers (olmoe) in 2 shard(s)" in capsys.readouterr().out
    log = open_log(out)
    assert log.num_tokens == 100 and log.manifest.model_id == "tiny:olmoe" and log.complete
    d = log.read()
    assert d["token_id"].max() < 99
    np.testing.assert_array_equal(d["position"][:16], np.arange(16))
    assert sum(c.sum() for c in log.counts().values()) == 100 * 2 * 2      # tokens x layers x top-k


def test_export_counts_mode_reports_what_the_token_log_reports(tmp_path, capsys):
    import json

    common = ["--tiny", "qwen3_moe", "--tokens", "96", "--seq-len", "16", "--batch", "3", "--seed", "1",
              "--record-logits"]
    assert main(["export", "--out", str(tmp_path / "ids"), *common]) == 0
    assert main(["export", "--out", str(tmp_path / "counts"), "--counts", *common]) == 0
    assert "recorded 96 tokens x 2 MoE layers (qwen3_moe) in 1 tables record(s) of count tables" \
        in capsys.readouterr().out
    reports = []
    for name in ("ids", "counts"):
        assert main(["report", str(tmp_path / name), "--out", str(tmp_path / f"rep-{name}"), "--no-plots",
                     "--no-progress"]) == 0
        reports.append(json.loads((tmp_path / f"rep-{name}" / "summary.json").read_text()))
    a, b = reports
    assert a["num_tokens"] == b["num_tokens"] == 96
    for la, lb in zip(a["layers"], b["layers"]):
        assert la["load"] == lb["load"] and la["mi_token"] == lb["mi_token"]
        assert la["gate_information"]["value"] == pytest.approx(lb["gate_information"]["value"], rel=1e-12)


def test_export_tiny_text_switch(tmp_path):
    out = tmp_path / "log"
    assert main(["export", "--tiny", "switch_transformers", "--out", str(out), "--text", "hi", "hello"]) == 0
    d = open_log(out).read()
    np.testing.assert_array_equal(d["valid"], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1])   # left padding of "hi"
    np.testing.assert_array_equal(d["token_id"][3:5], [ord("h") % 99, ord("i") % 99])


def test_export_argument_errors(tmp_path, capsys):
    assert main(["export", "some/model", "--tiny", "mixtral", "--out", str(tmp_path / "a")]) == 2
    assert "either MODEL or --tiny" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "b")]) == 2
    assert "--tiny ARCH is required" in capsys.readouterr().err
    assert main(["export", "--tiny", "mixtral", "--out", str(tmp_path / "c"), "--tokens", "0"]) == 2
    assert "--tokens" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--tiny", "llama", "--out", str(tmp_path / "d")])
    assert "invalid choice: 'llama'" in capsys.readouterr().err


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infomoe export: error: "), err
    return lines[0]


SMALL = ["--tokens", "32", "--seq-len", "16", "--batch", "2"]


def test_export_to_an_existing_log_offers_resume(tmp_path, capsys):
    out = str(tmp_path / "log")
    assert main(["export", "--tiny", "olmoe", "--out", out] + SMALL) == 0
    capsys.readouterr()
    assert main(["export", "--tiny", "olmoe", "--out", out] + SMALL) == 2
    line = _one_error_line(capsys)
    assert "already holds a routing log" in line and "--resume" in line
    assert open_log(out).num_tokens == 32  # untouched
    assert main(["export", "--tiny", "olmoe", "--out", out, "--resume", "--seed", "1"] + SMALL) == 0
    log = open_log(out)
    assert log.num_tokens == 64 and log.complete and len(log.shards) == 2


def test_export_device_mistakes(tmp_path, capsys, monkeypatch):
    import torch

    out = str(tmp_path / "log")
    assert main(["export", "--tiny", "olmoe", "--out", out, "--device", "gpu0"]) == 2
    assert "--device 'gpu0' is not a torch device" in _one_error_line(capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA
    assert main(["export", "--tiny", "olmoe", "--out", out, "--device", "cuda"]) == 2
    line = _one_error_line(capsys)
    assert "--device cuda: CUDA is not available" in line and "--device cpu" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["export", "--tiny", "olmoe", "--out", out, "--device", "cuda:3"]) == 2
    assert "torch sees 1 CUDA device(s)" in _one_error_line(capsys)
    assert not (tmp_path / "log").exists()


def test_export_uncached_model_with_local_files_only(tmp_path, capsys):
    out = str(tmp_path / "log")
    model = "infomoe-tests/no-such-model-in-any-cache"
    assert main(["export", model, "--local-files-only", "--out", out] + SMALL) == 2
    line = _one_error_line(capsys)
    assert f"MODEL {model!r} is not in the Hugging Face cache" in line
    assert "--local-files-only" in line
    assert main(["export", str(tmp_path / "no-dir"), "--out", out] + SMALL) == 2
    assert "looks like a local path, but there is no such directory" in _one_error_line(capsys)
    assert not (tmp_path / "log").exists()


def test_export_unwritable_out(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["export", "--tiny", "olmoe", "--out", str(f)] + SMALL) == 2
    assert "--out" in _one_error_line(capsys)
