"""`infomoe` command line: user mistakes end in one line on stderr and exit status 2."""

import os
import subprocess
import sys

import numpy as np
import pytest

import infomoe.logs._cli as report_cli_module
from infomoe.cli import UsageError, check_output_dir, main, require_extra
from infomoe.logs import write_log


def _one_error_line(capsys, command):
    """The single stderr line of a failed `command`; fails on a traceback or several lines."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"infomoe {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def tiny_log(tmp_path):
    ids = np.array([[0, 1], [1, 2], [2, 3], [3, 0]] * 10)[:, None, :]
    return write_log(tmp_path / "log", ids, num_experts=4, token_id=np.arange(40) % 4)


# ------------------------------------------------------------------ helpers
def test_require_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(UsageError, match=r'torch is not installed: run pip install "\.\[torch\]"'):
        require_extra("torch", "torch", "infomoe export")
    with pytest.raises(UsageError, match=r"infomoe_no_such_module is not installed.*\.\[dask\]"):
        require_extra("infomoe_no_such_module", "dask", "something")
    assert require_extra("json", "none", "x") is sys.modules["json"]


def test_check_output_dir(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        check_output_dir(f)
    with pytest.raises(UsageError, match="cannot be created: .*file' is a file"):
        check_output_dir(f / "sub" / "dir")
    new = tmp_path / "a" / "b"
    assert check_output_dir(new) == str(new) and not (tmp_path / "a").exists()  # creates nothing
    assert check_output_dir(tmp_path) == str(tmp_path)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # a read-only place, even for root
    with pytest.raises(UsageError, match="is not writable"):
        check_output_dir(tmp_path)
    with pytest.raises(UsageError, match="cannot be created: .* is not writable"):
        check_output_dir(new)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_check_output_dir_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="not writable"):
            check_output_dir(ro / "out")
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------ main()
def test_usage_error_is_one_line_and_status_2(tiny_log, tmp_path, capsys, monkeypatch):
    def refuse(args):
        raise UsageError("the first line\nand a second one")

    monkeypatch.setattr(report_cli_module, "report_analyzer", refuse)
    assert main(["report", tiny_log.path, "--out", str(tmp_path / "r")]) == 2
    assert _one_error_line(capsys, "report") == "infomoe report: error: the first line and a second one"


def test_a_bug_keeps_its_traceback(tiny_log, tmp_path, monkeypatch):
    def bug(args):
        raise RuntimeError("an internal error")

    monkeypatch.setattr(report_cli_module, "report_analyzer", bug)
    with pytest.raises(RuntimeError, match="an internal error"):
        main(["report", tiny_log.path, "--out", str(tmp_path / "r")])


def test_report_out_is_checked_before_the_log_is_read(tiny_log, tmp_path, capsys, monkeypatch):
    def not_reached(*a, **k):
        raise AssertionError("the log was analysed before --out was checked")

    monkeypatch.setattr(report_cli_module, "report_analyzer", not_reached)
    f = tmp_path / "file"
    f.write_text("x")
    for out, needle in ((f, "is a file"), (f / "rep", "cannot be created")):
        assert main(["report", tiny_log.path, "--out", str(out)]) == 2
        line = _one_error_line(capsys, "report")
        assert "--out" in line and needle in line


def test_report_missing_dask_extra(tiny_log, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["report", tiny_log.path, "--out", str(tmp_path / "r"), "--scheduler"]) == 2
    line = _one_error_line(capsys, "report")
    assert "--scheduler" in line and 'pip install ".[dask]"' in line
    assert not (tmp_path / "r").exists()


def test_export_missing_torch_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["export", "--tiny", "mixtral", "--out", str(tmp_path / "log")]) == 2
    assert 'pip install ".[torch]"' in _one_error_line(capsys, "export")


def test_export_checks_out_before_importing_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # would be the error if torch came first
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["export", "--tiny", "mixtral", "--out", str(f / "log")]) == 2
    line = _one_error_line(capsys, "export")
    assert "--out" in line and "torch" not in line
    os.makedirs(tmp_path / "old")
    write_log(tmp_path / "old" / "log", np.zeros((4, 1, 1), int), num_experts=2)
    assert main(["export", "--tiny", "mixtral", "--out", str(tmp_path / "old" / "log")]) == 2
    line = _one_error_line(capsys, "export")
    assert "already holds a routing log" in line and "--resume" in line


def test_python_dash_m_prints_one_line(tiny_log, tmp_path):
    """The real process: `python -m infomoe.cli` (the console script runs the same main)."""
    f = tmp_path / "file"
    f.write_text("x")
    p = subprocess.run([sys.executable, "-m", "infomoe.cli", "report", tiny_log.path, "--out", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [f"infomoe report: error: --out {str(f)!r} is a file, "
                                             "not a directory"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_check_output_dir_where_writes_fail_whatever_the_permission_bits(tmp_path):
    # /proc passes os.access for root but refuses mkdir: the check tries it, and leaves nothing behind
    with pytest.raises(UsageError, match="cannot be written"):
        check_output_dir("/proc/infomoe-out")
    check_output_dir(tmp_path / "x" / "y")
    assert not (tmp_path / "x").exists()
