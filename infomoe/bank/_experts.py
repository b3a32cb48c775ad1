"""A bank of small CNN experts, trained in JAX with optax, cached on disk.

The experts are made to differ in *what they get wrong*: each has its own
random subset of the bank-training data, its own width (number of
channels), its own number of optimiser steps, and each neglects one class
(loss weight 0 on it), so their risks are similar but their mistakes are
not.  Experts of the same width share one architecture and are trained together under ``jax.vmap``, so the
whole bank costs three compilations.

Trained parameters are cached as an ``.npz`` archive named by a hash of a
JSON key (data fingerprint, specs, optimiser settings); the key is stored
inside the archive and beside it.  A second call with the same key loads the
archive instead of training; an archive that is unreadable, has a different
key or holds wrong shapes/non-finite values is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from infomoe._progress import progress_bar
from infomoe._validate import check_positive_int
from infomoe.bank._data import Dataset

__all__ = ["ExpertSpec", "ExpertBank", "default_specs", "train_bank", "default_cache_dir"]

_CACHE_VERSION = 1
_BATCH = 64
_LR = 1e-2
_NEGLECT_WEIGHT = 0.0
_STEPS = (150, 300)
_FRACTION = (0.5, 1.0)
_WIDTHS = (6, 10, 16)
_CHUNK = 1024


@dataclass(frozen=True)
class ExpertSpec:
    """How one expert is trained.

    Attributes
    ----------
    width : int
        Channels of the first convolution (the second has ``2 * width``).
    n_steps : int
        Adam steps (mini-batches of 64).
    subset_fraction : float
        Fraction of the bank-training data this expert sees.
    neglected : tuple of int
        Classes whose loss weight is ``neglect_weight`` instead of 1.
    neglect_weight : float
        Loss weight of the neglected classes.
    """

    width: int
    n_steps: int
    subset_fraction: float
    neglected: tuple = ()
    neglect_weight: float = _NEGLECT_WEIGHT


def default_specs(n_experts: int = 25, *, seed: int = 0, n_classes: int = 10) -> list[ExpertSpec]:
    """A diverse bank: widths 6/10/16, 50-100 % of the data, 150-300 steps, one blind class each.

    Parameters
    ----------
    n_experts : int
        Number of experts ``K``.
    seed : int
        Seed of the random choices.
    n_classes : int
        Number of classes.

    Returns
    -------
    list of ExpertSpec

    Notes
    -----
    Expert ``k`` neglects class ``order[k]`` of a concatenation of random
    permutations of the classes, so every class is neglected by about
    ``K / n_classes`` experts.  The experts then have similar risks but fail on
    different digits, so the choice among them depends on the training set
    (selection matters) and routing each input to the right expert pays off.

    Examples
    --------
    >>> from infomoe.bank import default_specs
    >>> specs = default_specs(6, seed=0)
    >>> len(specs), sorted({s.width for s in specs})
    (6, [6, 10, 16])
    """
    n_experts = check_positive_int(n_experts, "n_experts")
    rng = np.random.default_rng([seed, 7])
    n_perm = 2 * n_experts // n_classes + 2
    order = np.concatenate([rng.permutation(n_classes) for _ in range(n_perm)])
    specs = []
    for k in range(n_experts):
        neglected = (int(order[k]),)
        specs.append(ExpertSpec(
            width=_WIDTHS[k % len(_WIDTHS)],
            n_steps=int(rng.integers(_STEPS[0], _STEPS[1] + 1)),
            subset_fraction=float(np.round(rng.uniform(*_FRACTION), 3)),
            neglected=neglected,
        ))
    return specs


def default_cache_dir() -> str:
    """``$INFOMOE_CACHE`` if set, else ``$XDG_CACHE_HOME/infomoe`` or ``~/.cache/infomoe``."""
    env = os.environ.get("INFOMOE_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "infomoe")


# -------------------------------------------------------------------------------- the network
def _param_shapes(width: int, image_shape, n_classes: int) -> dict:
    h, w = image_shape
    flat = (h // 2 // 2) * (w // 2 // 2) * 2 * width
    return {"w1": (9, width), "b1": (width,), "w2": (9 * width, 2 * width), "b2": (2 * width,),
            "w3": (flat, n_classes), "b3": (n_classes,)}


def _init(key, width, image_shape, n_classes):
    import jax
    import jax.numpy as jnp
    shapes = _param_shapes(width, image_shape, n_classes)
    keys = jax.random.split(key, 3)
    params = {}
    for i, name in enumerate(("w1", "w2", "w3")):
        fan_in = shapes[name][0]
        scale = jnp.sqrt(2.0 / fan_in)
        params[name] = jax.random.normal(keys[i], shapes[name], jnp.float32) * scale
        params["b" + name[1]] = jnp.zeros(shapes["b" + name[1]], jnp.float32)
    return params


def _patches(h):
    """3x3 'same' patches: (n, H, W, C) -> (n, H, W, 9 C)."""
    import jax.numpy as jnp
    H, W = h.shape[1], h.shape[2]
    p = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate([p[:, i:i + H, j:j + W, :] for i in range(3) for j in range(3)], axis=-1)


def _pool(h):
    n, H, W, C = h.shape
    h = h[:, : H // 2 * 2, : W // 2 * 2, :]
    return h.reshape(n, H // 2, 2, W // 2, 2, C).mean(axis=(2, 4))


def _logits(params, x):
    """Two 3x3 conv + ReLU + 2x2 average-pool blocks and a linear read-out."""
    import jax
    h = x[..., None]
    h = _pool(jax.nn.relu(_patches(h) @ params["w1"] + params["b1"]))
    h = _pool(jax.nn.relu(_patches(h) @ params["w2"] + params["b2"]))
    return h.reshape(h.shape[0], -1) @ params["w3"] + params["b3"]


_FORWARD = []


def _forward_fn():
    """The jitted, expert-vmapped softmax forward pass (built once per process)."""
    if not _FORWARD:
        import jax
        _FORWARD.append(jax.jit(jax.vmap(lambda p, x: jax.nn.softmax(_logits(p, x)),
                                         in_axes=(0, None))))
    return _FORWARD[0]


def _train_group_impl(params, x, y, batch_idx, class_weight, n_steps, lr):
    """Train G same-width experts at once (vmapped), each masked after its own n_steps."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(lr)

    def loss_fn(p, xb, yb, cw):
        logp = jax.nn.log_softmax(_logits(p, xb))
        nll = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        wts = cw[yb]
        return jnp.sum(wts * nll) / jnp.sum(wts)

    def one_expert(p0, idx, cw, steps):
        def step(carry, inp):
            p, s = carry
            t, bi = inp
            g = jax.grad(loss_fn)(p, x[bi], y[bi], cw)
            upd, s_new = opt.update(g, s, p)
            p_new = optax.apply_updates(p, upd)
            keep = t < steps
            p = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), p_new, p)
            s = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), s_new, s)
            return (p, s), None

        T = idx.shape[0]
        (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), (jnp.arange(T), idx))
        return p

    return jax.vmap(one_expert)(params, batch_idx, class_weight, n_steps)


_TRAIN = []


def _train_group(params, x, y, batch_idx, class_weight, n_steps, lr):
    """Jitted :func:`_train_group_impl`, compiled once per shape signature and process."""
    if not _TRAIN:
        import jax
        _TRAIN.append(jax.jit(_train_group_impl, static_argnames=("lr",)))
    return _TRAIN[0](params, x, y, batch_idx, class_weight, n_steps, lr=lr)


# ----------------------------------------------------------------------------------- the bank
@dataclass(frozen=True)
class ExpertBank:
    """A finite bank of trained CNN experts.

    Attributes
    ----------
    specs : tuple of ExpertSpec
        How each expert was trained (``K = len(specs)``).
    params : tuple of dict
        Per expert, its parameters as float32 numpy arrays.
    image_shape : tuple of int
        ``(height, width)`` of the inputs.
    n_classes : int
        Number of classes.
    loaded_from_cache : bool
        True when the parameters were read from the cache, not trained.
    cache_path : str or None
        The cache archive used (None when caching is off).
    """

    specs: tuple
    params: tuple = field(repr=False)
    image_shape: tuple
    n_classes: int
    loaded_from_cache: bool = False
    cache_path: Optional[str] = None

    @property
    def n_experts(self) -> int:
        return len(self.specs)

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities of every expert: array of shape (K, n, n_classes)."""
        import jax.numpy as jnp

        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"`images` must have shape (n, {self.image_shape[0]}, "
                             f"{self.image_shape[1]}), got {x.shape}.")
        n = x.shape[0]
        out = np.empty((self.n_experts, n, self.n_classes), np.float32)
        fwd = _forward_fn()
        # fixed-size chunks: one compilation per width, whatever n is
        padded = np.zeros((-(-n // _CHUNK) * _CHUNK,) + x.shape[1:], np.float32)
        padded[:n] = x
        for width in sorted({s.width for s in self.specs}):
            ks = [k for k, s in enumerate(self.specs) if s.width == width]
            stacked = {name: jnp.stack([self.params[k][name] for k in ks])
                       for name in self.params[ks[0]]}
            for start in range(0, n, _CHUNK):
                chunk = np.asarray(fwd(stacked, jnp.asarray(padded[start:start + _CHUNK])))
                stop = min(start + _CHUNK, n)
                out[ks, start:stop] = chunk[:, : stop - start]
        return out

    def losses(self, data: Dataset) -> np.ndarray:
        """0/1 losses, shape (n_samples, K): 1 where expert ``k`` misclassifies sample ``i``."""
        pred = self.predict_proba(data.images).argmax(axis=-1)  # (K, n)
        return (pred != data.labels[None, :]).T.astype(np.float64)


def _cache_key(data: Dataset, specs, seed: int) -> dict:
    return {"version": _CACHE_VERSION, "data": data.fingerprint(),
            "image_shape": list(data.images.shape[1:]),
            "n_classes": data.n_classes, "seed": int(seed), "batch": _BATCH, "lr": _LR,
            "specs": [asdict(s) | {"neglected": list(s.neglected)} for s in specs]}


def _load_cached(path: str, key_json: str, specs, image_shape, n_classes):
    """Parameters from the archive, or None (with a warning) if it is unusable."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key_json:
                raise ValueError("its key does not match this configuration")
            params = []
            for k, s in enumerate(specs):
                d = {}
                for name, shape in _param_shapes(s.width, image_shape, n_classes).items():
                    a = np.array(z[f"e{k}.{name}"], dtype=np.float32)
                    if a.shape != shape or not np.all(np.isfinite(a)):
                        raise ValueError(f"array e{k}.{name} has shape {a.shape} or "
                                         "non-finite values")
                    d[name] = a
                params.append(d)
        return params
    except Exception as exc:  # corrupt zip, missing array, wrong key ...
        warnings.warn(f"expert cache {path!r} is unusable ({exc}); retraining the bank.",
                      RuntimeWarning, stacklevel=3)
        return None


def _save_cached(path: str, key_json: str, params) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f"e{k}.{n}": a for k, d in enumerate(params) for n, a in d.items()}
    tmp = f"{path[:-4]}.{os.getpid()}.tmp.npz"  # written whole, then renamed: atomic
    try:
        np.savez(tmp, key=np.array(key_json), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    with open(path[:-4] + ".json", "w") as fh:
        fh.write(key_json)


def train_bank(data: Dataset, *, n_experts: int = 25, specs: Optional[Sequence[ExpertSpec]] = None,
               seed: int = 0, cache_dir=None, progress: bool = True) -> ExpertBank:
    """Train (or load from the cache) a bank of small CNN experts.

    Parameters
    ----------
    data : Dataset
        Bank-training data (keep it disjoint from the pool and test data).
    n_experts : int
        Number of experts ``K`` (ignored when ``specs`` is given).
    specs : sequence of ExpertSpec, optional
        Explicit expert recipes; default :func:`default_specs`\\ ``(n_experts, seed=seed)``.
    seed : int
        Seeds the specs, the data subsets, the mini-batches and the
        initialisation: equal seeds give equal banks.
    cache_dir : str or os.PathLike, optional
        Folder for the parameter cache; ``None`` disables caching
        (:func:`default_cache_dir` gives the command line's default).
    progress : bool
        Show a tqdm progress bar counting the experts trained (it advances
        by a whole width group at a time: those are trained together).

    Returns
    -------
    ExpertBank

    Notes
    -----
    Each expert minimises a class-weighted cross-entropy
    ``sum_i c(y_i) CE_i / sum_i c(y_i)`` with Adam (learning rate 1e-2,
    batches of 64 drawn with replacement from its subset), where
    ``c(y) = neglect_weight`` for its neglected classes and 1 otherwise.

    References
    ----------
    Kingma & Ba (2015), Adam, Algorithm 1; the bank design is this
    reproduction's (Paper B, arXiv 2605.05278, does not publish its bank).

    Examples
    --------
    >>> from infomoe.bank import load_digits, split_dataset, train_bank, ExpertSpec
    >>> bank_data = split_dataset(load_digits(), seed=0).bank
    >>> bank = train_bank(bank_data, specs=[ExpertSpec(4, 20, 0.5)], progress=False)
    >>> bank.losses(bank_data).shape
    (597, 1)
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"`data` must be an infomoe.bank.Dataset, got {type(data).__name__}.")
    specs = tuple(default_specs(n_experts, seed=seed, n_classes=data.n_classes) if specs is None
                  else specs)
    if not specs or not all(isinstance(s, ExpertSpec) for s in specs):
        raise TypeError("`specs` must be a non-empty sequence of ExpertSpec.")
    image_shape = tuple(int(v) for v in data.images.shape[1:])
    key = _cache_key(data, specs, seed)
    key_json = json.dumps(key, sort_keys=True)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(key_json.encode()).hexdigest()[:20]
        path = os.path.join(os.fspath(cache_dir), f"bank-{digest}.npz")
        cached = _load_cached(path, key_json, specs, image_shape, data.n_classes)
        if cached is not None:
            return ExpertBank(specs, tuple(cached), image_shape, data.n_classes, True, path)

    import jax
    import jax.numpy as jnp

    n = len(data)
    rng = np.random.default_rng([seed, 11])
    subsets = [rng.choice(n, max(_BATCH, int(round(s.subset_fraction * n))), replace=n < _BATCH)
               for s in specs]
    x = jnp.asarray(data.images)
    y = jnp.asarray(data.labels)
    params: list = [None] * len(specs)
    groups = sorted({s.width for s in specs})
    # counts experts (what the user asked for), advancing by a whole width group at a time
    bar = progress_bar(enabled=progress, desc="training experts", total=len(specs))
    for width in groups:
        ks = [k for k, s in enumerate(specs) if s.width == width]
        bar.set_postfix_str(f"width {width}: {len(ks)} experts together")
        T = max(specs[k].n_steps for k in ks)
        idx = np.stack([rng.choice(subsets[k], (T, _BATCH)) for k in ks]).astype(np.int32)
        cw = np.ones((len(ks), data.n_classes), np.float32)
        for row, k in enumerate(ks):
            cw[row, list(specs[k].neglected)] = specs[k].neglect_weight
        init = [_init(jax.random.fold_in(jax.random.PRNGKey(seed), k), width, image_shape,
                      data.n_classes) for k in ks]
        p0 = {name: jnp.stack([p[name] for p in init]) for name in init[0]}
        steps = jnp.asarray([specs[k].n_steps for k in ks], jnp.int32)
        out = _train_group(p0, x, y, jnp.asarray(idx), jnp.asarray(cw), steps, _LR)
        for row, k in enumerate(ks):
            params[k] = {name: np.asarray(v[row], dtype=np.float32) for name, v in out.items()}
        bar.update(len(ks))
    bar.close()
    if path is not None:
        _save_cached(path, key_json, params)
    return ExpertBank(specs, tuple(params), image_shape, data.n_classes, False, path)
