"""infomoe._progress: one optional progress bar, off by default in the library."""

import sys

import pytest

from infomoe._progress import progress_bar


def test_disabled_is_the_iterable_or_a_silent_bar(capsys):
    it = range(3)
    assert progress_bar(it) is it
    bar = progress_bar(total=5)
    bar.update(2)
    bar.set_postfix_str("x")
    bar.close()
    assert capsys.readouterr().err == ""


def test_enabled_shows_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    assert list(progress_bar(range(4), enabled=True, desc="counting")) == [0, 1, 2, 3]
    assert "counting" in capsys.readouterr().err


def test_without_tqdm_enabled_is_silent(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert list(progress_bar(range(2), enabled=True)) == [0, 1]
    progress_bar(enabled=True, total=3).update(1)
    assert capsys.readouterr().err == ""


def test_every_library_bar_goes_through_the_helper():
    # one concept, one place: no module but infomoe._progress imports tqdm
    import pathlib
    pkg = pathlib.Path(__file__).resolve().parents[1] / "infomoe"
    users = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                   if "from tqdm" in p.read_text() or "import tqdm" in p.read_text())
    assert users == ["_progress.py"], users
