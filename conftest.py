"""Shared pytest fixtures for the tests, the doctests and the notebooks."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


# the deprecated alias module warns on import; its doctest-collection would only repeat the warning
collect_ignore = ["infomoe/routing/jax.py"]
