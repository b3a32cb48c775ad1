"""Bad input to the JAX-backed routing functions ends in our own ValueError/TypeError.

Issue 16: a fuzzing run found that ``infomoe.routing.jax_losses`` and the
orthogonality penalties returned numbers (0.375 for negative probabilities,
NaN for NaN logits or ``temperature=0``, a division by zero for ``top_k=0``)
for bad input.  Here a seeded generator builds bad calls of every such
function and checks that each one raises ``ValueError`` or ``TypeError`` whose
message names the argument at fault; then that the checks do not get in the
way of ``jax.jit``, ``jax.grad`` and ``jax.vmap``.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import infomoe.routing as npr  # noqa: E402
import infomoe.routing.jax_losses as jr  # noqa: E402

PENALTY_NAMES = ("so_penalty", "dso_penalty", "mc_penalty", "srip_penalty")


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _poison(rng, a, value):
    """Copy of ``a`` with ``value`` written at one random position."""
    a = np.array(a, dtype=np.float64, copy=True)
    a.reshape(-1)[rng.integers(a.size)] = value
    return a


def _negative_row(rng, p):
    """A copy of ``p`` with one row that sums to 1 but holds a negative entry."""
    p = np.array(p, copy=True)
    r = rng.integers(p.shape[0])
    p[r] = 0.0
    p[r, 0], p[r, 1] = -0.25, 1.25
    return p


def _bad_top_k(n_exp):
    return [(0, "top_k"), (-1, "top_k"), (n_exp + 1, "top_k"), (True, "top_k"), (1.5, "top_k"),
            ("2", "top_k"), (np.float64(2.0), "top_k")]


def bad_calls(seed: int, jr=jr):
    """Bad calls for one seed: a list of ``(label, thunk, argument named in the error)``."""
    rng = np.random.default_rng(seed)
    n_exp = int(rng.integers(2, 7))
    n_tok = int(rng.integers(3, 9))
    z = rng.normal(size=(n_tok, n_exp)) * 2
    p = _softmax(z)
    ids = np.argsort(-p, axis=-1)[:, :1]
    cases = []

    def add(label, fn, arg):
        cases.append((f"seed {seed}: {label}", fn, arg))

    # ---- probability inputs: switch and gshard
    bad_probs = [
        ("NaN prob", _poison(rng, p, np.nan)),
        ("inf prob", _poison(rng, p, np.inf)),
        ("negative prob", _negative_row(rng, p)),
        ("rows not summing to 1", p * 0.7),
        ("rows summing above 1", p * 1.3),
        ("scalar", np.float64(0.5)),
        ("no tokens", np.zeros((0, n_exp))),
        ("no experts", np.zeros((n_tok, 0))),
        ("strings", np.array([["a", "b"]])),
    ]
    bad_logits = [
        ("NaN logit", _poison(rng, z, np.nan)),
        ("inf logit", _poison(rng, z, np.inf)),
        ("-inf logit", _poison(rng, z, -np.inf)),
        ("scalar logits", np.float64(1.0)),
        ("empty logits", np.zeros((0, n_exp))),
    ]
    for label, bad in bad_probs:
        add(f"switch {label}", lambda bad=bad: jr.switch_load_balancing_loss(bad), "probs")
        add(f"gshard {label}", lambda bad=bad: jr.gshard_load_balancing_loss(bad), "probs")
    for label, bad in bad_logits:
        add(f"switch {label}", lambda bad=bad: jr.switch_load_balancing_loss(bad, from_logits=True), "probs")
        add(f"gshard {label}", lambda bad=bad: jr.gshard_load_balancing_loss(bad, from_logits=True), "probs")
    for k, arg in _bad_top_k(n_exp):
        add(f"switch top_k={k!r}", lambda k=k: jr.switch_load_balancing_loss(p, top_k=k), arg)
    for flag in ("yes", 1, None):
        add(f"switch from_logits={flag!r}",
            lambda flag=flag: jr.switch_load_balancing_loss(p, from_logits=flag), "from_logits")
        add(f"gshard from_logits={flag!r}",
            lambda flag=flag: jr.gshard_load_balancing_loss(p, from_logits=flag), "from_logits")
        add(f"gshard scaled={flag!r}",
            lambda flag=flag: jr.gshard_load_balancing_loss(p, scaled=flag), "scaled")
    bad_ids = [
        ("id = experts", np.full_like(ids, n_exp)),
        ("id = -2", np.full_like(ids, -2)),
        ("non-integer ids", ids + 0.5),
        ("bool ids", ids > 0),
        ("ids of wrong shape", ids[:-1]),
        ("NaN ids", np.full(ids.shape, np.nan)),
    ]
    for label, bad in bad_ids:
        add(f"switch {label}", lambda bad=bad: jr.switch_load_balancing_loss(p, expert_ids=bad), "expert_ids")
        add(f"gshard {label}", lambda bad=bad: jr.gshard_load_balancing_loss(p, expert_ids=bad), "expert_ids")

    # ---- hf_load_balancing_loss
    for label, bad in bad_logits[:3] + [("1-D logits", z[0]), ("4-D logits", z[None, None])]:
        add(f"hf {label}", lambda bad=bad: jr.hf_load_balancing_loss(bad, 1), "gate_logits")
    add("hf NaN in layer 1", lambda: jr.hf_load_balancing_loss([z, _poison(rng, z, np.nan)], 1), "gate_logits")
    add("hf empty layer list", lambda: jr.hf_load_balancing_loss([], 1), "gate_logits")
    add("hf layers with different experts",
        lambda: jr.hf_load_balancing_loss([z, np.zeros((n_tok, n_exp + 1))], 1), "gate_logits")
    for k, arg in _bad_top_k(n_exp):
        add(f"hf top_k={k!r}", lambda k=k: jr.hf_load_balancing_loss(z, k), arg)
    mask = np.ones((1, n_tok))
    for label, bad in [("mask of wrong length", np.ones((1, n_tok + 1))), ("mask value 2", mask * 2),
                       ("mask value -1", -mask), ("NaN mask", _poison(rng, mask, np.nan)),
                       ("all-zero mask", mask * 0)]:
        add(f"hf {label}", lambda bad=bad: jr.hf_load_balancing_loss(z, 1, attention_mask=bad),
            "attention_mask")

    # ---- router_z_loss
    for label, bad in bad_logits:
        add(f"z-loss {label}", lambda bad=bad: jr.router_z_loss(bad), "logits")

    # ---- deepseek_balance_loss
    s = 1.0 / (1.0 + np.exp(-z))
    zero_row = np.array(s, copy=True)
    zero_row[rng.integers(n_tok)] = 0.0
    for label, bad in [("NaN score", _poison(rng, s, np.nan)), ("inf score", _poison(rng, s, np.inf)),
                       ("negative score", _poison(rng, s, -0.5)), ("all-zero row", zero_row),
                       ("1-D scores", s[0]), ("4-D scores", s[None, None]),
                       ("no tokens", np.zeros((0, n_exp)))]:
        add(f"deepseek {label}", lambda bad=bad: jr.deepseek_balance_loss(bad, 1), "scores")
    for k, arg in _bad_top_k(n_exp):
        add(f"deepseek top_k={k!r}", lambda k=k: jr.deepseek_balance_loss(s, k), arg)
    for a in (-1.0, np.nan, np.inf, True, "1"):
        add(f"deepseek alpha={a!r}", lambda a=a: jr.deepseek_balance_loss(s, 1, alpha=a), "alpha")
    for label, bad in bad_ids:
        add(f"deepseek {label}", lambda bad=bad: jr.deepseek_balance_loss(s, 1, expert_ids=bad), "expert_ids")

    # ---- aux_free_bias_update and max_violation
    load = rng.integers(1, 9, size=n_exp).astype(float)
    bias = np.zeros(n_exp)
    for label, bad in [("NaN load", _poison(rng, load, np.nan)), ("inf load", _poison(rng, load, np.inf)),
                       ("negative load", _poison(rng, load, -3.0)), ("scalar load", np.float64(1.0)),
                       ("empty load", np.zeros(0))]:
        add(f"bias update {label}", lambda bad=bad: jr.aux_free_bias_update(bias, bad), "load")
        add(f"max_violation {label}", lambda bad=bad: jr.max_violation(bad), "load")
    add("max_violation all-zero load", lambda: jr.max_violation(np.zeros(n_exp)), "load")
    add("bias update NaN bias", lambda: jr.aux_free_bias_update(_poison(rng, bias, np.nan), load), "bias")
    add("bias update shape mismatch", lambda: jr.aux_free_bias_update(np.zeros(n_exp + 1), load), "bias")
    for g in (-0.1, np.nan, np.inf, True, "0.1"):
        add(f"bias update gamma={g!r}", lambda g=g: jr.aux_free_bias_update(bias, load, gamma=g), "gamma")

    # ---- orthogonality penalties
    d = int(rng.integers(2, 6))
    W = rng.normal(size=(n_exp, d))
    zero_w = np.array(W, copy=True)
    zero_w[rng.integers(n_exp)] = 0.0
    bad_w = [("NaN W", _poison(rng, W, np.nan), {}), ("inf W", _poison(rng, W, np.inf), {}),
             ("1-D W", W[0], {}), ("3-D W", W[None], {}), ("empty W", np.zeros((0, d)), {}),
             ("W without columns", np.zeros((n_exp, 0)), {}),
             ("zero row, normalize", zero_w, {"normalize": True}), ("string W", "W", {})]
    for name in PENALTY_NAMES:
        fn = getattr(jr, name)
        for label, bad, kw in bad_w:
            add(f"{name} {label}", lambda fn=fn, bad=bad, kw=kw: fn(bad, **kw), "W")
        for flag in ("yes", 1, None):
            add(f"{name} normalize={flag!r}", lambda fn=fn, flag=flag: fn(W, normalize=flag), "normalize")
    for t in (0.0, -1.0, np.nan, np.inf, True, "0.1", -0.0):
        add(f"mc temperature={t!r}", lambda t=t: jr.mc_penalty(W, temperature=t), "temperature")
    add("mc temperature=0 (jax array)", lambda: jr.mc_penalty(W, temperature=jnp.asarray(0.0)), "temperature")
    for n in (0, -2, True, 1.5):
        add(f"srip n_iter={n!r}", lambda n=n: jr.srip_penalty(W, n_iter=n), "n_iter")
    add("orthogonality_penalty kind", lambda: jr.orthogonality_penalty(W, "fro"), "kind")
    add("orthogonality_penalty NaN W",
        lambda: jr.orthogonality_penalty(_poison(rng, W, np.nan), "mc"), "W")
    add("orthogonality_penalty normalize", lambda: jr.orthogonality_penalty(W, "so", normalize="no"),
        "normalize")
    return cases


SEEDS = range(6)


def outcome(thunk):
    """``"number"``, ``"ours"`` (ValueError/TypeError) or the name of another exception."""
    try:
        thunk()
    except (ValueError, TypeError) as exc:
        return "ours", str(exc)
    except Exception as exc:  # noqa: BLE001 - counted as a failure below
        return type(exc).__name__, str(exc)
    return "number", ""


def test_every_bad_input_raises_our_error_naming_the_argument():
    returned, foreign, unnamed = [], [], []
    n = 0
    for seed in SEEDS:
        for label, thunk, arg in bad_calls(seed):
            n += 1
            kind, msg = outcome(thunk)
            if kind == "number":
                returned.append(label)
            elif kind != "ours":
                foreign.append(f"{label}: {kind}: {msg}")
            elif f"`{arg}`" not in msg and arg not in msg:
                unnamed.append(f"{label}: {msg!r} does not name {arg!r}")
    assert n > 500
    assert not returned, f"{len(returned)} of {n} bad calls returned a number: {returned[:20]}"
    assert not foreign, f"{len(foreign)} of {n} bad calls raised something else: {foreign[:10]}"
    assert not unnamed, f"{len(unnamed)} of {n} errors do not name the argument: {unnamed[:10]}"


def test_numpy_twins_raise_on_the_same_bad_input():
    # the balance losses of infomoe.routing share names and signatures with routing.jax
    bad = [(label, outcome(thunk)) for seed in (7, 8) for label, thunk, _ in bad_calls(seed, npr)]
    assert not [b for b in bad if b[1][0] != "ours"]


def test_bad_input_raises_under_x64_too():
    with jax.enable_x64(True):
        bad = [label for label, thunk, _ in bad_calls(100) if outcome(thunk)[0] != "ours"]
    assert not bad


# ------------------------------------------------------- valid input still works
def test_float32_softmax_output_with_many_experts_is_accepted():
    # float32 rows sum to 1 only within a few ulps times the number of experts
    z = jnp.asarray(np.random.default_rng(0).normal(size=(256, 128)) * 4, dtype=jnp.float32)
    p = jax.nn.softmax(z, axis=-1)
    dev = float(jnp.max(jnp.abs(p.sum(axis=-1) - 1)))
    assert dev > 0  # the rows really are off by rounding
    ref = npr.switch_load_balancing_loss(np.asarray(p, dtype=np.float64) /
                                         np.asarray(p, dtype=np.float64).sum(-1, keepdims=True), top_k=2)
    assert float(jr.switch_load_balancing_loss(p, top_k=2)) == pytest.approx(ref, rel=1e-4)
    assert float(jr.gshard_load_balancing_loss(p)) == pytest.approx(
        npr.gshard_load_balancing_loss(np.asarray(p, np.float64) / np.asarray(p, np.float64).sum(-1, keepdims=True)),
        rel=1e-4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_router_outputs_are_accepted(dtype):
    # bfloat16 is what MoE routers often emit; NumPy does not class it as a number type
    z = jnp.asarray(np.random.default_rng(1).normal(size=(64, 16)) * 3, dtype=dtype)
    p = jax.nn.softmax(z, axis=-1)
    assert float(jnp.max(jnp.abs(p.astype(jnp.float32).sum(axis=-1) - 1))) > 1e-4  # far above 1e-6
    p64 = np.asarray(p, dtype=np.float64)
    p64 /= p64.sum(axis=-1, keepdims=True)
    assert float(jr.switch_load_balancing_loss(p, top_k=2)) == pytest.approx(
        npr.switch_load_balancing_loss(p64, top_k=2), rel=2e-2)
    assert np.isfinite(float(jr.gshard_load_balancing_loss(p)))
    assert np.isfinite(float(jr.switch_load_balancing_loss(z, from_logits=True)))
    assert np.isfinite(float(jr.hf_load_balancing_loss(z, 2)))
    assert np.isfinite(float(jr.router_z_loss(z)))
    assert np.isfinite(float(jr.so_penalty(z[:8], normalize=True)))
    with pytest.raises(ValueError, match="`probs` contains NaN"):
        jr.switch_load_balancing_loss(p.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="sum to 1"):
        jr.switch_load_balancing_loss(p * 0.8)


def test_rows_off_by_more_than_rounding_are_rejected_in_float32():
    p = jnp.full((4, 8), 1 / 8, dtype=jnp.float32).at[0, 0].add(1e-3)
    with pytest.raises(ValueError, match="sum to 1"):
        jr.switch_load_balancing_loss(p)


def test_dropped_slots_and_first_choice_ids_are_accepted():
    p = _softmax(np.random.default_rng(1).normal(size=(6, 4)))
    ids = np.argsort(-p, axis=-1)[:, :2]
    ids[0, 1] = -1
    assert float(jr.switch_load_balancing_loss(p, top_k=2, expert_ids=ids)) == pytest.approx(
        npr.switch_load_balancing_loss(p, top_k=2, expert_ids=ids), rel=1e-6)
    # GShard counts only the first choice of (tokens, k) ids, like the NumPy twin
    assert float(jr.gshard_load_balancing_loss(p, expert_ids=ids)) == pytest.approx(
        npr.gshard_load_balancing_loss(p, expert_ids=ids), rel=1e-6)


def test_integer_valued_float_ids_and_numpy_ints_are_accepted():
    p = _softmax(np.random.default_rng(2).normal(size=(5, 3)))
    ids = np.argsort(-p, axis=-1)[:, :1]
    want = npr.switch_load_balancing_loss(p, expert_ids=ids)
    assert float(jr.switch_load_balancing_loss(p, expert_ids=ids.astype(float))) == pytest.approx(want, rel=1e-6)
    assert float(jr.switch_load_balancing_loss(p, top_k=np.int64(1))) == pytest.approx(want, rel=1e-6)


def test_error_messages_name_argument_and_value():
    p = _softmax(np.random.default_rng(3).normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"`top_k` must be at most the number of experts \(3\), got 4"):
        jr.switch_load_balancing_loss(p, top_k=4)
    with pytest.raises(TypeError, match=r"`top_k` must be an integer >= 1, got True"):
        jr.hf_load_balancing_loss(np.log(p), True)
    with pytest.raises(ValueError, match=r"`probs` has a negative probability"):
        jr.switch_load_balancing_loss(_negative_row(np.random.default_rng(0), p))
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got 0"):
        jr.mc_penalty(np.eye(2), temperature=0)
    with pytest.raises(ValueError, match=r"row 1 of `W` is zero"):
        jr.so_penalty(np.array([[1.0, 0.0], [0.0, 0.0]]), normalize=True)
    with pytest.raises(ValueError, match=r"`expert_ids` has id 3 but there are only 3 experts"):
        jr.gshard_load_balancing_loss(p, expert_ids=np.array([0, 1, 2, 3]))


def test_zero_row_without_normalize_is_fine():
    # a zero expert vector is a valid W when the rows are not normalised
    W = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert float(jr.so_penalty(W)) == pytest.approx(1.0)


# ------------------------------------------------------------ jit, grad, vmap
def _loss_fns():
    """(name, f(z) -> scalar) for every JAX-backed function, each fed logits ``z`` of shape (2, 6, 4)."""
    return [
        ("switch", lambda z: jr.switch_load_balancing_loss(z, top_k=2, from_logits=True)),
        ("switch probs", lambda z: jr.switch_load_balancing_loss(jax.nn.softmax(z), top_k=2)),
        ("hf", lambda z: jr.hf_load_balancing_loss(z, 2)),
        ("hf mask", lambda z: jr.hf_load_balancing_loss(z, 2, attention_mask=jnp.array([[1.0] * 5 + [0.0]]))),
        ("gshard", lambda z: jr.gshard_load_balancing_loss(z, from_logits=True)),
        ("gshard probs", lambda z: jr.gshard_load_balancing_loss(jax.nn.softmax(z), scaled=False)),
        ("z-loss", jr.router_z_loss),
        ("deepseek", lambda z: jr.deepseek_balance_loss(jax.nn.sigmoid(z), 2, alpha=0.5)),
        ("bias update", lambda z: jr.aux_free_bias_update(z[0, 0], jnp.exp(z[0, 1]), gamma=0.1).sum()),
        ("max_violation", lambda z: jr.max_violation(jnp.exp(z)).sum()),
        ("so", lambda z: jr.so_penalty(z[0])),
        ("dso", lambda z: jr.dso_penalty(z[0], normalize=True)),
        ("mc", lambda z: jr.mc_penalty(z[0], normalize=True)),
        ("mc smooth", lambda z: jr.mc_penalty(z[0], temperature=0.1)),
        ("srip", lambda z: jr.srip_penalty(z[1], n_iter=5)),
        ("dispatch", lambda z: jr.orthogonality_penalty(z[1], "mc", normalize=True)),
    ]


@pytest.mark.parametrize("name, f", _loss_fns(), ids=[n for n, _ in _loss_fns()])
def test_jit_grad_and_vmap_give_the_eager_values(name, f):
    z = jnp.asarray(np.random.default_rng(4).normal(size=(2, 6, 4)), dtype=jnp.float32)
    eager = f(z)
    jitted = jax.jit(f)
    np.testing.assert_allclose(jitted(z), eager, rtol=1e-6)
    g = jax.grad(f)(z)
    assert g.shape == z.shape and np.all(np.isfinite(np.asarray(g)))
    assert np.any(np.asarray(g) != 0)
    batched = jax.vmap(f)(jnp.stack([z, 2 * z]))
    np.testing.assert_allclose(batched[0], eager, rtol=1e-6)
    np.testing.assert_allclose(batched[1], jitted(2 * z), rtol=1e-6)


def test_traced_temperature_and_scalars_are_allowed():
    W = jnp.asarray(np.random.default_rng(5).normal(size=(5, 3)))
    f = jax.jit(lambda t: jr.mc_penalty(W, temperature=t))
    assert float(f(0.1)) == pytest.approx(float(jr.mc_penalty(W, temperature=0.1)), rel=1e-6)
    g = jax.grad(lambda a: jr.deepseek_balance_loss(jax.nn.sigmoid(W), 1, alpha=a))(0.5)
    assert float(g) == pytest.approx(float(jr.deepseek_balance_loss(jax.nn.sigmoid(W), 1)), rel=1e-6)
    h = jax.jit(lambda gam: jr.aux_free_bias_update(jnp.zeros(3), jnp.array([3.0, 1.0, 2.0]), gamma=gam))
    np.testing.assert_allclose(h(0.5), [-0.5, 0.5, 0.0])


def test_static_checks_still_raise_under_jit():
    z = jnp.zeros((4, 3))
    for bad in (0, 4, True, 1.5):
        with pytest.raises((ValueError, TypeError), match="top_k"):
            jax.jit(lambda x, k=bad: jr.switch_load_balancing_loss(x, top_k=k, from_logits=True))(z)
        with pytest.raises((ValueError, TypeError), match="top_k"):
            jax.jit(lambda x, k=bad: jr.hf_load_balancing_loss(x, k))(z)
        with pytest.raises((ValueError, TypeError), match="top_k"):
            jax.jit(lambda x, k=bad: jr.deepseek_balance_loss(jax.nn.sigmoid(x), k))(z)
    with pytest.raises(ValueError, match="W"):
        jax.jit(jr.so_penalty)(jnp.zeros(3))
    with pytest.raises(ValueError, match="expert_ids"):
        jax.jit(lambda x, i: jr.switch_load_balancing_loss(x, top_k=2, expert_ids=i))(z, jnp.zeros((4, 1), int))
    with pytest.raises(TypeError, match="expert_ids"):
        jax.jit(lambda x, i: jr.switch_load_balancing_loss(x, expert_ids=i))(z, jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="attention_mask"):
        jax.jit(lambda x, m: jr.hf_load_balancing_loss(x, 1, attention_mask=m))(z, jnp.ones((1, 5)))
    with pytest.raises(ValueError, match="temperature"):
        jax.jit(lambda w, t: jr.mc_penalty(w, temperature=t))(jnp.eye(3), jnp.ones(2))


def test_value_checks_are_skipped_under_jit():
    # documented: inside jit the values are not inspected (no host round trip), so NaN flows through
    bad = jnp.array([[np.nan, 0.0], [0.0, 0.0]])
    assert np.isnan(float(jax.jit(jr.router_z_loss)(bad)))
    with pytest.raises(ValueError, match="NaN"):
        jr.router_z_loss(bad)


# ------------------------------------------------ property: ours, or the NumPy twin's value
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, -0.3, 0.0, 1.5, 1e-9])


@st.composite
def maybe_corrupted_probs(draw):
    """Softmax rows, then with probability ~2/3 one corruption (a special value, a scale, a sign flip)."""
    t = draw(st.integers(1, 6))
    e = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    p = _softmax(np.random.default_rng(seed).normal(size=(t, e)) * 2)
    how = draw(st.sampled_from(["none", "value", "scale", "flip"]))
    if how == "value":
        p[draw(st.integers(0, t - 1)), draw(st.integers(0, e - 1))] = draw(_SPECIAL)
    elif how == "scale":
        p = p * draw(st.sampled_from([0.5, 0.999, 1 + 1e-9, 1.001, 2.0]))
    elif how == "flip":
        p = -p
    return p, draw(st.integers(-1, e + 1)), draw(st.sampled_from([True, False]))


def _both(jax_fn, np_fn):
    try:
        want = np_fn()
    except (ValueError, TypeError):
        want = None
    try:
        got = jax_fn()
    except (ValueError, TypeError):
        got = None
    return want, got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maybe_corrupted_probs())
def test_jax_losses_raise_exactly_when_numpy_twins_do_and_agree_otherwise(case):
    p, k, scaled = case
    with jax.enable_x64(True):
        pairs = [
            _both(lambda: jr.switch_load_balancing_loss(p, top_k=k), lambda: npr.switch_load_balancing_loss(p, top_k=k)),
            _both(lambda: jr.gshard_load_balancing_loss(p, scaled=scaled),
                  lambda: npr.gshard_load_balancing_loss(p, scaled=scaled)),
            _both(lambda: jr.deepseek_balance_loss(p, k), lambda: npr.deepseek_balance_loss(p, k)),
            _both(lambda: jr.max_violation(p), lambda: npr.max_violation(p)),
            _both(lambda: jr.router_z_loss(p), lambda: npr.router_z_loss(p)),
        ]
    for i, (want, got) in enumerate(pairs):
        assert (want is None) == (got is None), (i, want, got)
        if want is not None:
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-12, err_msg=str(i))


def test_traced_ids_layers_and_masks_work_under_jit():
    rng = np.random.default_rng(6)
    z = jnp.asarray(rng.normal(size=(6, 4)))
    p = jax.nn.softmax(z)
    ids = jnp.asarray(np.argsort(-np.asarray(p), axis=-1)[:, :2])
    f = jax.jit(lambda p, i: jr.gshard_load_balancing_loss(p, expert_ids=i))
    assert float(f(p, ids)) == pytest.approx(float(jr.gshard_load_balancing_loss(p, expert_ids=ids)), rel=1e-6)
    assert float(f(p, ids)) == pytest.approx(float(f(p, ids[:, 0])), rel=1e-6)  # first choice only
    g = jax.jit(lambda p, i: jr.switch_load_balancing_loss(p, top_k=2, expert_ids=i))
    assert float(g(p, ids)) == pytest.approx(float(jr.switch_load_balancing_loss(p, top_k=2)), rel=1e-6)
    h = jax.jit(lambda a, b, m: jr.hf_load_balancing_loss([a, b], 2, attention_mask=m))
    m = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert float(h(z, 2 * z, m)) == pytest.approx(
        npr.hf_load_balancing_loss([np.asarray(z), 2 * np.asarray(z)], 2, attention_mask=np.asarray(m)), rel=1e-5)
    s = jax.nn.sigmoid(z)[None]
    d = jax.jit(lambda s, i: jr.deepseek_balance_loss(s, 2, expert_ids=i))
    sids = jax.lax.top_k(s, 2)[1]
    assert float(d(s, sids)) == pytest.approx(float(jr.deepseek_balance_loss(s, 2)), rel=1e-6)
    assert float(d(s, sids[0])) == pytest.approx(float(d(s, sids)), rel=1e-6)  # (seq_len, k) for one sequence


def test_top_k_passed_as_a_traced_argument_is_refused():
    z = jnp.zeros((4, 3))
    with pytest.raises(TypeError, match="`top_k` must be a static Python int"):
        jax.jit(lambda x, k: jr.switch_load_balancing_loss(x, top_k=k, from_logits=True))(z, 2)
    f = jax.jit(lambda x, k: jr.switch_load_balancing_loss(x, top_k=k, from_logits=True), static_argnums=1)
    assert float(f(z, 2)) == pytest.approx(1.0)
