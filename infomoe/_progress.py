"""The optional progress bar: one helper, one convention.

Library functions take ``progress=False`` (off by default: a library call
prints nothing unless asked); the command line turns bars on.  tqdm is an
optional dependency (``pip install ".[progress]"``): without it, or when
disabled, :func:`progress_bar` returns the iterable itself or a bar that
does nothing, so callers never branch.
"""

from __future__ import annotations

__all__ = ["progress_bar"]


class _NoBar:
    """Stands in for a tqdm bar: every method is a no-op."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, s=""):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(iterable=None, *, enabled: bool = False, desc: str = "", total=None, unit: str = "it",
                 unit_scale: bool = False, leave: bool = False):
    """A tqdm bar over ``iterable`` (or a manual bar of ``total`` steps), or nothing.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; None for a manual bar advanced with ``update(n)``.
    enabled : bool, default False
        Show the bar (when tqdm is installed).
    desc, total, unit, unit_scale, leave
        Passed to tqdm.

    Returns
    -------
    iterable or bar
        ``iterable`` unchanged, or a bar with ``update``/``close``, when disabled or without tqdm.

    Examples
    --------
    >>> from infomoe._progress import progress_bar
    >>> list(progress_bar(range(3)))          # disabled: the iterable itself
    [0, 1, 2]
    >>> bar = progress_bar(total=10)          # a manual bar that does nothing
    >>> bar.update(5); bar.close()
    """
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional
            pass
        else:
            return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, leave=leave)
    return _NoBar() if iterable is None else iterable
