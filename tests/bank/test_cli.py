import json
import re

import pytest

from infomoe.cli import main


def test_demo_runs_with_tiny_options(bank_cache, tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["demo", "--experts", "12", "--m", "128", "--sets", "20", "--alphas", "0,0.1,1",
               "--seed", "0", "--cache", str(bank_cache), "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "I^ bits" in text and "Xu-Rag." in text and "union" in text
    assert len([ln for ln in text.splitlines() if ln.strip().startswith(("0 ", "0.1 ", "1 "))]) == 3
    data = json.loads((out / "finite_bank.json").read_text())
    assert data["alphas"] == [0.0, 0.1, 1.0] and data["n_sets"] == 20 and data["n_experts"] == 12
    assert (out / "bank_bounds.png").exists() and (out / "accuracy_rate.png").exists()


def test_demo_reports_a_bad_mnist_file(tmp_path, capsys):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"definitely not an npz")
    rc = main(["demo", "--mnist", str(bad), "--cache", str(tmp_path), "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 2
    assert "broken.npz" in capsys.readouterr().err


def test_demo_rejects_bad_alphas(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--alphas", "0,abc"])
    assert exc.value.code == 2
    assert "--alphas" in capsys.readouterr().err
    assert main(["demo", "--alphas", "1,0.5", "--no-progress", "--experts", "2"]) == 2
    assert "increasing" in capsys.readouterr().err


def test_demo_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for opt in ("--experts", "--m", "--sets", "--alphas", "--seed", "--out", "--cache", "--mnist",
                "--no-progress"):
        assert opt in text


def test_demo_help_gives_each_option_its_own_metavar(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    metavars = dict(re.findall(r"\[(--[a-z-]+) ([A-Z_]+)\]", usage))
    assert {"--m", "--sets", "--experts", "--out", "--cache"} <= set(metavars)
    assert len(set(metavars.values())) == len(metavars), metavars


@pytest.mark.parametrize("make_out", [
    lambda tmp: _file(tmp / "taken"),                  # --out is a file
    lambda tmp: _file(tmp / "taken") / "results",      # under a file
])
def test_demo_unwritable_out_fails_before_training(tmp_path, capsys, monkeypatch, make_out):
    import infomoe.bank._experiment as experiment

    def no_training(**kw):
        raise AssertionError("the demo trained before checking --out")

    monkeypatch.setattr(experiment, "run_experiment", no_training)
    out = make_out(tmp_path)
    rc = main(["demo", "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("infomoe demo: error: --out")
    assert str(out) in err[0] and "Traceback" not in captured.err
    assert not (tmp_path / "cache").exists()


def test_demo_out_check_creates_nothing(tmp_path, monkeypatch):
    from infomoe.cli import check_output_dir

    target = tmp_path / "a" / "b"
    assert check_output_dir(str(target)) == str(target)
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []


def _file(path):
    path.write_text("not a folder")
    return path
