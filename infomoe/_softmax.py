"""The max-shifted softmax, written once for every NumPy caller."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax"]


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(z - max z) / sum exp(z - max z)`` along `axis` (finite for logits of any size).

    `z` must be a float array (callers validate their inputs); a row of all
    ``-inf`` gives NaN, as the softmax is undefined there.

    Examples
    --------
    >>> import numpy as np
    >>> from infomoe._softmax import softmax
    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
