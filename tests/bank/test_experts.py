import json
import os

import numpy as np
import pytest

from infomoe.bank import ExpertSpec, default_specs, train_bank

TINY = (ExpertSpec(width=6, n_steps=120, subset_fraction=1.0, neglected=(0,)),
        ExpertSpec(width=6, n_steps=120, subset_fraction=1.0, neglected=(1,)),
        ExpertSpec(width=6, n_steps=30, subset_fraction=0.5))
# one width: one compilation shared by every test in this file


@pytest.fixture(scope="module")
def tiny_bank(digits_splits, tmp_path_factory):
    cache = tmp_path_factory.mktemp("tiny-cache")
    return train_bank(digits_splits.bank, specs=TINY, seed=0, cache_dir=cache, progress=False), cache


def test_default_specs_diverse_and_seeded():
    specs = default_specs(25, seed=0)
    assert len(specs) == 25
    assert {s.width for s in specs} == {6, 10, 16}
    assert len({s.neglected for s in specs}) == 10  # every class is someone's blind spot
    assert len({s.n_steps for s in specs}) > 10 and len({s.subset_fraction for s in specs}) > 10
    assert specs == default_specs(25, seed=0) and specs != default_specs(25, seed=1)


def test_shapes_and_probabilities(tiny_bank, digits_splits):
    bank, _ = tiny_bank
    assert bank.n_experts == 3 and bank.image_shape == (8, 8)
    p = bank.predict_proba(digits_splits.test.images)
    assert p.shape == (3, 400, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    L = bank.losses(digits_splits.test)
    assert L.shape == (400, 3) and set(np.unique(L)) <= {0.0, 1.0}
    np.testing.assert_array_equal(L[:, 0], p[0].argmax(-1) != digits_splits.test.labels)
    with pytest.raises(ValueError, match="images"):
        bank.predict_proba(np.zeros((3, 28, 28)))


def test_experts_learn_and_fail_on_their_neglected_class(tiny_bank, digits_splits):
    bank, _ = tiny_bank
    test = digits_splits.test
    L = bank.losses(test)
    err = lambda k, c: L[test.labels == c, k].mean()
    others = test.labels > 1
    assert L[others, 0].mean() < 0.2 and L[others, 1].mean() < 0.2   # they did learn
    assert err(0, 0) > 0.8 and err(0, 1) < 0.3                       # expert 0 is blind to 0
    assert err(1, 1) > 0.8 and err(1, 0) < 0.3                       # expert 1 is blind to 1


def test_cache_is_used_then_rebuilt_when_corrupt(tiny_bank, digits_splits):
    bank, cache = tiny_bank
    assert not bank.loaded_from_cache and os.path.exists(bank.cache_path)
    key = json.loads(open(bank.cache_path[:-4] + ".json").read())
    assert key["seed"] == 0 and len(key["specs"]) == 3
    again = train_bank(digits_splits.bank, specs=TINY, seed=0, cache_dir=cache, progress=False)
    assert again.loaded_from_cache and again.cache_path == bank.cache_path
    for a, b in zip(bank.params, again.params):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    # corrupt the archive: a warning, a retrain, the same parameters (deterministic)
    with open(bank.cache_path, "wb") as fh:
        fh.write(b"this is not a zip file")
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = train_bank(digits_splits.bank, specs=TINY, seed=0, cache_dir=cache,
                             progress=False)
    assert not rebuilt.loaded_from_cache
    for a, b in zip(bank.params, rebuilt.params):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert train_bank(digits_splits.bank, specs=TINY, seed=0, cache_dir=cache,
                      progress=False).loaded_from_cache


def test_cache_with_non_finite_values_is_rebuilt(digits_splits, tmp_path):
    specs = TINY
    bank = train_bank(digits_splits.bank, specs=specs, seed=5, cache_dir=tmp_path, progress=False)
    with np.load(bank.cache_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["e0.w1"] = np.full_like(arrays["e0.w1"], np.nan)
    np.savez(bank.cache_path, **arrays)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        again = train_bank(digits_splits.bank, specs=specs, seed=5, cache_dir=tmp_path,
                           progress=False)
    assert not again.loaded_from_cache and np.isfinite(again.params[0]["w1"]).all()


def test_seed_determines_the_bank(digits_splits):
    specs = TINY
    a = train_bank(digits_splits.bank, specs=specs, seed=1, progress=False)
    b = train_bank(digits_splits.bank, specs=specs, seed=1, progress=False)
    c = train_bank(digits_splits.bank, specs=specs, seed=2, progress=False)
    for k in range(3):
        np.testing.assert_array_equal(a.params[k]["w3"], b.params[k]["w3"])
    assert not np.allclose(a.params[2]["w3"], c.params[2]["w3"])
    assert a.cache_path is None and not a.loaded_from_cache


def test_train_bank_validation(digits_splits):
    with pytest.raises(TypeError, match="`data`"):
        train_bank(np.zeros((5, 8, 8)))
    with pytest.raises(TypeError, match="specs"):
        train_bank(digits_splits.bank, specs=[("not", "a", "spec")])
    with pytest.raises(ValueError, match="n_experts"):
        train_bank(digits_splits.bank, n_experts=0)


def test_other_image_sizes_work(rng):
    """MNIST-sized inputs (28x28, odd after two poolings) go through the same network."""
    from infomoe.bank import Dataset
    data = Dataset(rng.random((80, 28, 28)).astype(np.float32), rng.integers(0, 10, 80),
                   "random", 10)
    bank = train_bank(data, specs=[ExpertSpec(6, 3, 1.0)], seed=0, progress=False)
    assert bank.image_shape == (28, 28) and bank.params[0]["w3"].shape == (7 * 7 * 12, 10)
    assert bank.losses(data).shape == (80, 1)


def test_progress_bar_counts_experts_not_width_groups(digits_splits, monkeypatch):
    import infomoe.bank._experts as experts

    bars = []

    class Recorder:
        def __init__(self, iterable=None, *, enabled, desc, total=None, **kw):
            assert iterable is None, "the bar must not iterate over width groups"
            self.desc, self.total, self.done = desc, total, 0
            bars.append(self)

        def update(self, n=1):
            self.done += n

        def set_postfix_str(self, s=""):
            pass

        def close(self):
            pass

    monkeypatch.setattr(experts, "progress_bar", Recorder)
    specs = [ExpertSpec(width=w, n_steps=2, subset_fraction=0.2) for w in (4, 4, 4, 6, 6)]
    train_bank(digits_splits.bank, specs=specs, seed=0, progress=True)  # 2 widths, 5 experts
    (bar,) = bars
    assert bar.desc == "training experts" and bar.total == 5 and bar.done == 5
