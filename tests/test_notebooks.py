"""The notebooks are committed with their outputs, so a reader browsing the
repository sees the figures.

These tests read the committed ``.ipynb`` files (they do not execute them; the
suite executes them with nbmake, see ``setup.cfg``).  A notebook committed
stripped, half-executed, with an error, with timing metadata that churns every
re-run, or with oversized outputs fails here.  To refresh the outputs run
``python notebooks/execute_notebooks.py`` from the repository root.
"""

from __future__ import annotations

import base64
import json
import pathlib
import struct

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIX = "re-execute it with `python notebooks/execute_notebooks.py` and commit it with its outputs"

#: the largest committed notebook, in bytes (outputs included)
MAX_NOTEBOOK_BYTES = 1_000_000
#: the widest committed figure, in pixels
MAX_FIGURE_WIDTH = 1600


def _load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def _png_width(b64: str) -> int:
    png = base64.b64decode(b64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "image/png output is not a PNG"
    return struct.unpack(">I", png[16:20])[0]


def executed_problems(nb: dict) -> list:
    """What keeps ``nb`` from counting as committed with its outputs, as text."""
    problems = []
    cells = _code_cells(nb)
    counts = [c.get("execution_count") for c in cells]
    if any(n is None for n in counts):
        problems.append(f"{counts.count(None)} of {len(cells)} code cells were not executed")
    elif counts != list(range(1, len(cells) + 1)):
        problems.append(f"execution counts {counts} are not 1..{len(cells)} "
                        "(not run top to bottom in one kernel)")
    for i, c in enumerate(cells):
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"code cell {i} has an error output ({out.get('ename')})")
    images = [out for c in cells for out in c.get("outputs", []) if "image/png" in out.get("data", {})]
    if not images:
        problems.append("no figure (image/png output)")
    for c in cells:
        if "execution" in c.get("metadata", {}):
            problems.append("cell metadata records execution timing (churns every re-run)")
            break
    return problems


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs(path):
    problems = executed_problems(_load(path))
    assert not problems, f"{path.name}: " + "; ".join(problems) + f"; {FIX}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_stay_modest(path):
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {size} bytes; keep outputs small (figures at a moderate dpi, no "
        "large printed arrays)")
    nb = _load(path)
    widths = [_png_width(out["data"]["image/png"]) for c in _code_cells(nb)
              for out in c.get("outputs", []) if "image/png" in out.get("data", {})]
    assert max(widths, default=0) <= MAX_FIGURE_WIDTH, f"{path.name}: figure widths {widths} px"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_kernel_is_the_environments_python(path):
    # "python3" is ipykernel's own kernel: jupyter_client starts it with the
    # Python that runs the tests (nbmake) or the execution script
    assert _load(path)["metadata"]["kernelspec"]["name"] == "python3"


# --- the check itself catches a stripped notebook --------------------------


def _notebook(cells):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(n, outputs=(), metadata=None):
    return {"cell_type": "code", "source": ["x = 1"], "execution_count": n,
            "outputs": list(outputs), "metadata": metadata or {}}


PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
           "60e6kgAAAABJRU5ErkJggg==")
FIGURE = {"output_type": "display_data", "data": {"image/png": PNG_1PX}, "metadata": {}}


def test_check_accepts_an_executed_notebook():
    nb = _notebook([{"cell_type": "markdown", "source": ["# t"], "metadata": {}},
                    _code(1), _code(2, [FIGURE])])
    assert executed_problems(nb) == []
    assert _png_width(PNG_1PX) == 1


@pytest.mark.parametrize("cells, expected", [
    ([_code(None), _code(None)], "not executed"),                       # stripped
    ([_code(1, [FIGURE]), _code(None)], "not executed"),                # half executed
    ([_code(2, [FIGURE]), _code(1)], "top to bottom"),                   # cells run out of order
    ([_code(1), _code(2)], "no figure"),                                 # executed, no figure
    ([_code(1, [FIGURE, {"output_type": "error", "ename": "ValueError", "evalue": "",
                         "traceback": []}])], "error output"),
    ([_code(1, [FIGURE], {"execution": {"iopub.status.busy": "2026-01-01T00:00:00Z"}})],
     "timing"),
])
def test_check_rejects(cells, expected):
    problems = executed_problems(_notebook(cells))
    assert any(expected in p for p in problems), problems
