"""examples/finite_bank.py runs and words its single-expert accuracies as the demo does."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "finite_bank.py"


def test_finite_bank_example(bank_cache, small_result, tmp_path):
    # K = 12 and seed 0, like the session's small_result: the example loads that cached bank
    env = dict(os.environ, INFOMOE_CACHE=str(bank_cache), MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "results" / "finite_bank_example.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / ".infomoe-cache").exists()  # the shared cache, not a private one
    out = run.stdout
    best = re.search(r"best single expert on the test data: (\d\.\d+) \(expert (\d+)\)", out)
    chosen = re.search(r"expert chosen on the pool: (\d\.\d+) \(expert (\d+)\)", out)
    assert best and chosen, out
    r = small_result
    assert int(best.group(2)) == r.best_test_expert
    assert float(best.group(1)) == pytest.approx(r.best_test_accuracy, abs=5e-4 + 1e-12)
    assert int(chosen.group(2)) == r.selected_expert
    assert float(chosen.group(1)) == pytest.approx(r.selected_accuracy, abs=5e-4 + 1e-12)
