"""Every Python code block of the README runs as written (each in a fresh namespace and directory)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def _title(i, code):
    return f"block{i}:" + code.strip().splitlines()[0][:40]


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[_title(i, c) for i, c in enumerate(BLOCKS)])
def test_readme_block_runs(code, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    if "torch" in code:
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)                      # files the snippet writes land in tmp_path
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)   # noqa: S102 - our own README
    import matplotlib.pyplot as plt
    plt.close("all")
