"""Execute the notebooks in place, so that they are committed with their outputs.

Usage, from the repository root::

    .venv-ci/bin/python notebooks/execute_notebooks.py                 # every notebook here
    .venv-ci/bin/python notebooks/execute_notebooks.py notebooks/finite_bank.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel (the Python
that runs this script, i.e. the environment's interpreter), with the
notebook's folder as the working directory, and is written back with its
outputs.  Volatile metadata is left out so that re-running an unchanged
notebook does not churn the diff: no execution timings are recorded,
consecutive printed output of a cell is stored as one block (however it was
split in transit), and the notebook metadata keeps only ``kernelspec`` and
``language_info``.  Figures
use matplotlib's inline backend at a fixed resolution (``FIGURE_DPI``).

``tests/test_notebooks.py`` checks that the committed notebooks have outputs;
the test suite also executes them with nbmake (``setup.cfg``).
"""

from __future__ import annotations

import os
import pathlib
import sys

#: resolution of the PNG figures stored in the notebooks (dots per inch)
FIGURE_DPI = 80
#: seconds a single cell may run
CELL_TIMEOUT = 900

HERE = pathlib.Path(__file__).resolve().parent


def _coalesce_streams(outputs: list) -> list:
    """Merge consecutive stdout (or stderr) outputs into one: how printed text
    is split into messages depends on timing, so it would churn the diff."""
    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.output_type == "stream" and prev is not None and prev.output_type == "stream"
                and prev.name == out.name):
            prev.text += out.text
        else:
            merged.append(out)
    return merged


def execute(path) -> None:
    """Execute the notebook at ``path`` in place (see the module docstring)."""
    import nbformat
    from nbclient import NotebookClient

    path = pathlib.Path(path)
    nb = nbformat.read(path, as_version=4)
    # the kernel inherits this environment: use the inline backend, not a
    # headless one that a test configuration may have set
    os.environ.pop("MPLBACKEND", None)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--InlineBackend.print_figure_kwargs="
                         f"{{'dpi': {FIGURE_DPI}, 'bbox_inches': 'tight'}}"],
    )
    client.execute()
    nb.metadata = {key: nb.metadata[key] for key in ("kernelspec", "language_info")
                   if key in nb.metadata}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _coalesce_streams(cell.outputs)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or sorted(HERE.glob("*.ipynb"))
    for p in paths:
        print(f"executing {p} ...", flush=True)
        execute(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
