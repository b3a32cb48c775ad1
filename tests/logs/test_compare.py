"""compare_logs / router_saturation / infomoe compare: every measure against a closed form or an
independent computation (Python sets, scipy, scikit-learn)."""

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as sp_entropy
from sklearn.metrics import adjusted_mutual_info_score

from infomoe.cli import main
from infomoe.logs import (LogComparison, SaturationCurve, compare_logs, router_saturation,
                          write_log)


def _random_sets(rng, n, L, E, k):
    """(n, L, k) distinct experts per token, column 0 first (a descending top-k)."""
    return np.stack([rng.permutation(E)[:k] for _ in range(n * L)]).reshape(n, L, k)


def _perturb(rng, ids, frac, E):
    """Re-draw the chosen set of a fraction of tokens (distinct ids per row)."""
    out = ids.copy()
    n, L, k = ids.shape
    redo = rng.random((n, L)) < frac
    for t, l in zip(*np.nonzero(redo)):
        out[t, l] = rng.permutation(E)[:k]
    return out


def _log(tmp_path, name, ids, **kw):
    return write_log(tmp_path / name, ids, **kw)


def _brute(xa, xb):
    """(exact, jaccard, sizes) with Python sets: the independent reference."""
    ex, ja = [], []
    for ra, rb in zip(xa.tolist(), xb.tolist()):
        sa, sb = {v for v in ra if v >= 0}, {v for v in rb if v >= 0}
        ex.append(sa == sb)
        ja.append(1.0 if not (sa | sb) else len(sa & sb) / len(sa | sb))
    return np.mean(ex), np.mean(ja)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two routings of 600 tokens (3 layers, E=8, k=2), b stored in shuffled order."""
    rng = np.random.default_rng(3)
    n, E = 600, 8
    ids = _random_sets(rng, n, 3, E, 2)
    other = _perturb(rng, ids, 0.3, E)
    seq, pos = np.repeat(np.arange(6), 100), np.tile(np.arange(100), 6)
    tok = rng.integers(0, 50, n)
    perm = rng.permutation(n)
    d = tmp_path_factory.mktemp("pair")
    a = write_log(d / "a", ids, num_experts=E, seq_id=seq, position=pos, token_id=tok,
                  shard_tokens=250)
    b = write_log(d / "b", other[perm], num_experts=E, seq_id=seq[perm], position=pos[perm],
                  token_id=tok[perm], shard_tokens=170)
    return a, b, ids, other


# ---------------------------------------------------------------------------------- closed forms


def test_identical_logs_agree_fully(pair):
    a, _, _, _ = pair
    c = compare_logs(a, a)
    assert isinstance(c, LogComparison) and c.num_matched == 600
    np.testing.assert_array_equal(c.exact_set_match, 1.0)
    np.testing.assert_array_equal(c.jaccard, 1.0)
    np.testing.assert_array_equal(c.top1_agreement, 1.0)
    np.testing.assert_allclose(c.kl, 0.0, atol=1e-15)
    np.testing.assert_allclose(c.js, 0.0, atol=1e-15)
    np.testing.assert_allclose(c.ami, 1.0)
    assert c.unmatched_a == c.unmatched_b == c.invalid_a == c.token_mismatch == 0
    assert c.warnings == () and c.ami_label == ("top1",) * 3


def test_disjoint_sets_agree_nowhere(tmp_path):
    ids = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])
    a = _log(tmp_path, "a", ids, num_experts=8)
    b = _log(tmp_path, "b", ids + 4, num_experts=8)
    with pytest.warns(RuntimeWarning, match="kl is infinite"):
        c = compare_logs(a, b, match="order")
    assert c.exact_set_match[0] == 0 and c.jaccard[0] == 0 and c.top1_agreement[0] == 0
    assert c.js[0] == pytest.approx(1.0)            # disjoint supports: 1 bit
    assert math.isinf(c.kl[0])                      # b gives no load to a's experts
    assert any("kl is infinite for layers [0]" in w and "no smoothing" in w for w in c.warnings)
    d = json.loads(c.to_json())
    assert d["kl"] == [None] and d["kl_infinite"] == [True]


def test_hand_computed_small_case(tmp_path):
    # token sets A: {0,1} {1,2} {2,3} {0,3};  B: {0,1} {1,3} {0,2} {0,3}
    # Jaccard: 1, 1/3 ({1}/{1,2,3}), 1/3 ({2}/{0,2,3}), 1 -> 2/3; exact 2/4;
    # top-1 (column 0): 0=0, 1=1, 2!=0, 0=0 -> 3/4
    a = _log(tmp_path, "a", np.array([[0, 1], [1, 2], [2, 3], [0, 3]]), num_experts=4)
    b = _log(tmp_path, "b", np.array([[0, 1], [1, 3], [0, 2], [0, 3]]), num_experts=4)
    c = compare_logs(a, b, match="order")
    assert c.exact_set_match[0] == pytest.approx(0.5)
    assert c.jaccard[0] == pytest.approx(2 / 3)
    assert c.top1_agreement[0] == pytest.approx(0.75)
    # loads: a = [2, 2, 2, 2], b = [3, 2, 1, 2]: p = 1/4 each, q = (3/8, 1/4, 1/8, 1/4)
    np.testing.assert_array_equal(c.load_a[0], [2, 2, 2, 2])
    np.testing.assert_array_equal(c.load_b[0], [3, 2, 1, 2])
    # KL = 1/4 (log2(2/3) + 0 + log2 2 + 0) = (2 - log2 3) / 4
    assert c.kl[0] == pytest.approx((2 - math.log2(3)) / 4)
    # m = (5/16, 1/4, 3/16, 1/4); JS = 1/2 sum p log2(p/m) + 1/2 sum q log2(q/m)
    js = 0.5 * 0.25 * (math.log2(4 / 5) + math.log2(4 / 3)) \
        + 0.5 * (3 / 8 * math.log2(6 / 5) + 1 / 8 * math.log2(2 / 3))
    assert c.js[0] == pytest.approx(js)


def test_dropped_choice_is_a_disagreement(tmp_path):
    a = _log(tmp_path, "a", np.array([[3, 5], [1, 2], [-1, -1]]), num_experts=6)
    b = _log(tmp_path, "b", np.array([[3, -1], [2, 1], [-1, -1]]), num_experts=6)
    with pytest.warns(RuntimeWarning, match="kl is infinite"):   # b never uses expert 5
        c = compare_logs(a, b, match="order", ami_label="set")
    # {3,5} vs {3}: no exact match, Jaccard 1/2; {1,2} = {2,1}; {} = {} (Jaccard 0/0 := 1)
    assert c.exact_set_match[0] == pytest.approx(2 / 3)
    assert c.jaccard[0] == pytest.approx((0.5 + 1 + 1) / 3)
    assert c.top1_agreement[0] == pytest.approx(2 / 3)   # 3 = 3, 1 != 2, -1 = -1


@pytest.mark.filterwarnings("ignore:kl is infinite")
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 3))
def test_sets_against_python_sets(tmp_path_factory, seed, ka, kb):
    rng = np.random.default_rng(seed)
    n, E = 40, 6
    xa = rng.integers(-1, E, (n, ka))        # repeated ids and drops on purpose
    xb = rng.integers(-1, E, (n, kb))
    d = tmp_path_factory.mktemp("h")
    c = compare_logs(write_log(d / "a", xa, num_experts=E), write_log(d / "b", xb, num_experts=E),
                     match="order", ami_label="set")
    ex, ja = _brute(xa, xb)
    assert c.exact_set_match[0] == pytest.approx(ex)
    assert c.jaccard[0] == pytest.approx(ja)
    assert c.top1_agreement[0] == pytest.approx(np.mean(xa[:, 0] == xb[:, 0]))


def test_divergences_and_ami_against_scipy_sklearn(pair):
    a, b, ids, other = pair
    for base in (2, math.e):
        c = compare_logs(a, b, base=base)
        for l in range(3):
            p = np.bincount(ids[:, l].ravel(), minlength=8)
            q = np.bincount(other[:, l].ravel(), minlength=8)
            np.testing.assert_array_equal(c.load_a[l], p)
            np.testing.assert_array_equal(c.load_b[l], q)
            assert c.kl[l] == pytest.approx(sp_entropy(p, q, base=base))
            assert c.js[l] == pytest.approx(jensenshannon(p, q, base=base) ** 2)
            assert c.ami[l] == pytest.approx(adjusted_mutual_info_score(ids[:, l, 0],
                                                                        other[:, l, 0]))
    assert c.unit == "nats" and c.base == pytest.approx(math.e)
    s = compare_logs(a, b, ami_label="set")
    for l in range(3):
        names: dict = {}   # each distinct set gets an integer name
        la = [names.setdefault(frozenset(r), len(names)) for r in ids[:, l].tolist()]
        lb = [names.setdefault(frozenset(r), len(names)) for r in other[:, l].tolist()]
        assert s.ami[l] == pytest.approx(adjusted_mutual_info_score(la, lb))
    assert s.ami_label == ("set",) * 3


# ---------------------------------------------------------------------------------- matching


def test_seq_position_matching_undoes_a_shuffle(pair):
    a, b, ids, other = pair
    c = compare_logs(a, b)
    for l in range(3):
        ex, ja = _brute(ids[:, l], other[:, l])
        assert c.exact_set_match[l] == pytest.approx(ex)
        assert c.jaccard[l] == pytest.approx(ja)
        assert c.top1_agreement[l] == pytest.approx(np.mean(ids[:, l, 0] == other[:, l, 0]))
    assert 0.5 < c.exact_set_match.min() < 1
    t = compare_logs(a, b, match="token")
    np.testing.assert_allclose(t.jaccard, c.jaccard)
    assert t.token_mismatch == 0 and t.match == "token"


def test_unmatched_and_invalid_tokens(tmp_path):
    rng = np.random.default_rng(0)
    ids = _random_sets(rng, 100, 2, 6, 2)
    pos = np.arange(100)
    valid = np.ones(100, bool)
    valid[:5] = False
    a = _log(tmp_path, "a", ids, num_experts=6, seq_id=np.zeros(100, int), position=pos,
             valid=valid)
    # b: tokens 0..79 and 20 new positions 100..119
    pb = np.concatenate([pos[:80], np.arange(100, 120)])
    idb = np.concatenate([ids[:80], _random_sets(rng, 20, 2, 6, 2)])
    b = _log(tmp_path, "b", idb, num_experts=6, seq_id=np.zeros(100, int), position=pb)
    c = compare_logs(a, b)
    assert c.num_matched == 75                       # 5..79
    assert c.invalid_a == 5 and c.invalid_b == 0
    assert c.unmatched_a == 20 and c.unmatched_b == 25   # b's 0..4 lost their valid partner
    np.testing.assert_array_equal(c.exact_set_match, 1.0)


def test_order_matching_skips_invalid(tmp_path):
    ids = np.array([[0], [1], [2], [3]])
    a = _log(tmp_path, "a", ids, num_experts=4, valid=[True, True, False, True])
    b = _log(tmp_path, "b", np.array([[0], [2], [2], [2]]), num_experts=4,
             valid=[True, True, True, False])
    with pytest.warns(RuntimeWarning, match="kl is infinite"):
        c = compare_logs(a, b, match="order")
    assert c.num_matched == 2 and c.exact_set_match[0] == 0.5
    assert (c.invalid_a, c.invalid_b, c.unmatched_a, c.unmatched_b) == (1, 1, 1, 1)


def test_token_match_refuses_different_token_ids(tmp_path):
    ids = np.array([[0], [1], [2], [3]])
    kw = {"num_experts": 4, "seq_id": [0, 0, 0, 0], "position": [0, 1, 2, 3]}
    a = _log(tmp_path, "a", ids, token_id=[5, 6, 7, 8], **kw)
    b = _log(tmp_path, "b", ids, token_id=[5, 6, 9, 9], **kw)
    with pytest.warns(RuntimeWarning, match="different token_id"):
        c = compare_logs(a, b, match="token")
    assert c.num_matched == 2 and c.token_mismatch == 2
    assert any("2 token pairs" in w for w in c.warnings)
    assert compare_logs(a, b).num_matched == 4       # seq_position ignores token ids


def test_duplicated_keys_are_refused(tmp_path):
    ids = np.array([[0], [1], [2]])
    a = _log(tmp_path, "a", ids, num_experts=4, seq_id=[0, 0, 1], position=[0, 0, 0])
    b = _log(tmp_path, "b", ids, num_experts=4, seq_id=[0, 1, 2], position=[0, 0, 0])
    with pytest.raises(ValueError, match=r"`a` has 1 duplicated \(seq_id, position\) keys.*"
                                         r"seq_id=0, position=0"):
        compare_logs(a, b)
    s = _log(tmp_path, "s", np.array([[0], [1]]), num_experts=4, seq_id=[0, 0], position=[0, 0],
             step=[1, 2])
    with pytest.raises(ValueError, match="`b` has 1 duplicated.*use router_saturation"):
        compare_logs(b, s)


def test_matching_needs_its_columns_and_some_overlap(tmp_path):
    a = _log(tmp_path, "a", np.array([[0], [1]]), num_experts=2)
    b = _log(tmp_path, "b", np.array([[0], [1], [1]]), num_experts=2, seq_id=[0, 0, 0],
             position=[0, 1, 2])
    with pytest.raises(ValueError, match=r"match='seq_position' needs the columns.*`a` has no "
                                         r"\['seq_id', 'position'\].*match='order'"):
        compare_logs(a, b)
    with pytest.raises(ValueError, match="`a` has 2 tokens and `b` 3"):
        compare_logs(a, b, match="order")
    with pytest.raises(ValueError, match="token_id"):
        compare_logs(b, b, match="token")
    c = _log(tmp_path, "c", np.array([[0]]), num_experts=2, seq_id=[7], position=[0])
    with pytest.raises(ValueError, match="no valid token of `a` matches"):
        compare_logs(c, b)


# ---------------------------------------------------------------------------------- top-1


def test_top1_of_unordered_logs(tmp_path):
    ids = np.array([[0, 1], [2, 3], [1, 2]])
    a = _log(tmp_path, "a", ids, num_experts=4)
    u = _log(tmp_path, "u", ids, num_experts=4, topk_order="unordered")
    with pytest.warns(RuntimeWarning, match="top1_agreement is NaN"):
        c = compare_logs(a, u, match="order")
    assert np.isnan(c.top1_agreement[0])
    assert any("topk_order 'unordered'" in w and "gate_weights" in w for w in c.warnings)
    assert c.ami_label == ("set",) and c.ami[0] == pytest.approx(1.0)   # auto falls back to sets
    with pytest.warns(RuntimeWarning, match="is NaN"):
        t = compare_logs(a, u, match="order", ami_label="top1")
    assert np.isnan(t.ami[0]) and any(w.startswith("ami (top-1 labels) is NaN") for w in t.warnings)
    # with gate weights the top-1 is the chosen expert of largest weight
    gw = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.6]])   # top-1: 1, 2, 2
    g = _log(tmp_path, "g", ids, num_experts=4, topk_order="unordered", gate_weights=gw)
    c = compare_logs(a, g, match="order")              # a's top-1 (column 0): 0, 2, 1
    assert c.top1_agreement[0] == pytest.approx(1 / 3) and c.warnings == ()
    logits = np.array([[0, 5, 0, 0], [0, 0, 5, 1], [0, 0, 3, 0]], float)
    r = _log(tmp_path, "r", ids, num_experts=4, topk_order="unordered", router_logits=logits)
    assert compare_logs(g, r, match="order").top1_agreement[0] == pytest.approx(1.0)
    one = _log(tmp_path, "one", ids[:, :1], num_experts=4, topk_order="unordered")
    assert compare_logs(one, one, match="order").top1_agreement[0] == 1.0   # k = 1: no order


def test_physical_ids_are_mapped_to_logical(tmp_path):
    ids = np.array([[0, 1], [2, 3], [1, 2]])
    lut = [0, 1, 2, 3, 0, 1]                          # slots 4, 5 replicate experts 0, 1
    phys = np.array([[4, 1], [2, 3], [5, 2]])
    a = _log(tmp_path, "a", ids, num_experts=4)
    p = _log(tmp_path, "p", phys, num_experts=6, expert_id_space="physical",
             physical_to_logical={0: lut})
    c = compare_logs(a, p, match="order")
    np.testing.assert_array_equal(c.exact_set_match, 1.0)
    with pytest.raises(ValueError, match="experts in the different logs"):
        compare_logs(a, p, match="order", expert_space="as_logged")


# ---------------------------------------------------------------------------------- bad input


def test_bad_arguments_are_named(pair, tmp_path):
    a, b, _, _ = pair
    with pytest.raises(TypeError, match="`a` must be a routing-log path"):
        compare_logs(42, b)
    with pytest.raises(TypeError, match="`b`"):
        compare_logs(a, [1, 2])
    with pytest.raises(ValueError, match="`match` must be one of"):
        compare_logs(a, b, match="content")
    with pytest.raises(ValueError, match="`base`"):
        compare_logs(a, b, base=1)
    with pytest.raises(ValueError, match="`ami_label`"):
        compare_logs(a, b, ami_label="top2")
    with pytest.raises(ValueError, match="`layers` names layer 7"):
        compare_logs(a, b, layers=[0, 7])
    with pytest.raises(TypeError, match="`layers`"):
        compare_logs(a, b, layers="0")
    with pytest.raises(FileNotFoundError):
        compare_logs(a, tmp_path / "nothing")
    other = _log(tmp_path, "e9", np.zeros((3, 3, 2), int) + [0, 1], num_experts=9)
    with pytest.raises(ValueError, match=r"layer 0 has \[8, 9\] experts"):
        compare_logs(a, other, match="order")
    assert compare_logs(a, b, layers=1).layer_ids.tolist() == [1]


def test_layers_not_in_both_logs_are_left_out_with_a_warning(tmp_path):
    ids = np.array([[[0], [1]], [[1], [0]]])
    a = _log(tmp_path, "a", ids, num_experts=2)
    b = _log(tmp_path, "b", ids[:, :1], num_experts=2)
    with pytest.warns(RuntimeWarning, match=r"layers \[1\] are not in every log"):
        c = compare_logs(a, b, match="order")
    assert c.layer_ids.tolist() == [0]


def test_count_only_log_is_refused(tmp_path):
    from infomoe.logs import LayerSpec, LogWriter

    with LogWriter(tmp_path / "c", source="test", layers=[LayerSpec(0, 4, 1)]) as w:
        w.append_counts({0: np.ones((1, 4), np.int64)})
    a = _log(tmp_path, "a", np.array([[0]]), num_experts=4)
    with pytest.raises(ValueError, match="`b` .* has no per-token routing records"):
        compare_logs(a, tmp_path / "c")


def test_repr_dict_and_table(pair):
    a, b, _, _ = pair
    c = compare_logs(a, b)
    r = repr(c)
    assert r.startswith("LogComparison(layer_ids=[0, 1, 2], num_matched=600") and len(r) < 400
    d = json.loads(c.to_json())
    assert d["num_matched"] == 600 and len(d["jaccard"]) == 3 and d["match"] == "seq_position"
    t = c.format_table()
    assert "600 tokens matched by (seq_id, position)" in t and "KL(a||b)" in t
    assert len(t.splitlines()[1]) == len(t.splitlines()[3])


# ---------------------------------------------------------------------------------- saturation


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Six checkpoints converging to the final routing: checkpoint s differs from the final one on
    a nested subset of tokens, shrinking with s (so every agreement grows)."""
    rng = np.random.default_rng(11)
    n, E, S = 500, 8, 6
    final = _random_sets(rng, n, 2, E, 2)
    order = rng.permutation(n)
    steps = [100 * (s + 1) for s in range(S)]
    d = tmp_path_factory.mktemp("ckpt")
    paths, all_ids = [], []
    seq, pos = np.zeros(n, int), np.arange(n)
    for s in range(S):
        changed = order[: n * (S - 1 - s) // (S - 1)]    # n, ..., 0 tokens
        ids = final.copy()
        ids[changed] = (ids[changed] + 1 + s % 3) % E   # another set, of distinct ids
        all_ids.append(ids)
        perm = rng.permutation(n)
        write_log(d / f"c{s}", ids[perm], num_experts=E, seq_id=seq[perm], position=pos[perm],
                  step=steps[s])
        paths.append(str(d / f"c{s}"))
    return paths, steps, all_ids, final, d


def test_saturation_is_monotone_on_converging_checkpoints(checkpoints):
    paths, steps, all_ids, final, _ = checkpoints
    curve = router_saturation(paths)
    assert isinstance(curve, SaturationCurve)
    assert curve.steps.tolist() == steps and curve.step_source == "step column"
    assert curve.reference == 5 and curve.reference_step == 600
    for name in ("exact_set_match", "jaccard", "top1_agreement"):
        v = getattr(curve, name)
        assert np.all(np.diff(v) >= 0), name
        assert v[-1] == 1.0 and v[0] < 0.2
    assert curve.js[-1] == 0.0 and curve.exact_set_match_layers.shape == (6, 2)
    for s in range(6):
        for l in range(2):
            ex, ja = _brute(all_ids[s][:, l], final[:, l])
            assert curve.exact_set_match_layers[s, l] == pytest.approx(ex)
            assert curve.jaccard_layers[s, l] == pytest.approx(ja)
        np.testing.assert_allclose(curve.jaccard[s], curve.jaccard_layers[s].mean())
    assert curve.num_matched.tolist() == [500] * 6
    json.loads(curve.to_json())
    assert "<- reference" in curve.format_table().splitlines()[-1]
    assert repr(curve).startswith("SaturationCurve(steps=[100, 200")


def test_saturation_agrees_with_compare_logs(checkpoints):
    paths, _, _, _, _ = checkpoints
    curve = router_saturation(paths, reference=2, layers=[1])
    c = compare_logs(paths[0], paths[2], layers=[1])
    assert curve.reference_step == 300 and curve.layer_ids.tolist() == [1]
    assert curve.exact_set_match[0] == pytest.approx(c.exact_set_match[0])
    assert curve.jaccard[0] == pytest.approx(c.jaccard[0])
    assert curve.js[0] == pytest.approx(c.js[0])


def test_saturation_of_one_log_with_a_step_column(checkpoints, tmp_path):
    paths, steps, all_ids, _, _ = checkpoints
    n = all_ids[0].shape[0]
    ids = np.concatenate(all_ids[::-1])              # stored newest first: ordered by step
    one = write_log(tmp_path / "all", ids, num_experts=8, seq_id=np.zeros(6 * n, int),
                    position=np.tile(np.arange(n), 6), step=np.repeat(steps[::-1], n))
    curve = router_saturation(one)
    ref = router_saturation(paths)
    assert curve.steps.tolist() == steps and curve.step_source == "step column"
    np.testing.assert_allclose(curve.exact_set_match_layers, ref.exact_set_match_layers)
    np.testing.assert_allclose(curve.top1_agreement, ref.top1_agreement)
    with pytest.raises(ValueError, match="`steps` is for a sequence of logs"):
        router_saturation(one, steps=[1, 2])


def test_saturation_steps_from_metadata_positions_or_argument(tmp_path):
    ids = np.array([[0], [1], [2], [3]])
    plain = [str(_log(tmp_path, f"p{s}", (ids + s) % 4, num_experts=4).path) for s in range(3)]
    curve = router_saturation(plain, match="order")
    assert curve.steps.tolist() == [0, 1, 2] and curve.step_source == "list position"
    assert curve.exact_set_match.tolist() == [0.0, 0.0, 1.0]
    meta = [str(_log(tmp_path, f"m{s}", ids, num_experts=4, metadata={"step": 10 * s}).path)
            for s in range(3)]
    assert router_saturation(meta, match="order").steps.tolist() == [0, 10, 20]
    c = router_saturation(plain, match="order", steps=[5, 6, 7], reference=0)
    assert c.steps.tolist() == [5, 6, 7] and c.reference_step == 5 and c.step_source == "argument"
    with pytest.warns(RuntimeWarning, match="only some logs record their step"):
        mixed = router_saturation([plain[0], meta[1]], match="order")
    assert mixed.steps.tolist() == [0, 1]


def test_saturation_bad_input(checkpoints, tmp_path):
    paths, _, _, _, _ = checkpoints
    with pytest.raises(ValueError, match="`reference` must index one of the 6"):
        router_saturation(paths, reference=6)
    with pytest.raises(TypeError, match="`reference`"):
        router_saturation(paths, reference=1.5)
    with pytest.raises(ValueError, match="`steps` has 2 entries for 6 logs"):
        router_saturation(paths, steps=[1, 2])
    with pytest.raises(ValueError, match="at least two"):
        router_saturation([])
    with pytest.raises(ValueError, match="without a `step` column"):
        router_saturation(_log(tmp_path, "x", np.array([[0]]), num_experts=2))
    with pytest.raises(ValueError, match="single step 100"):
        router_saturation(paths[0])
    with pytest.raises(TypeError, match="`logs`"):
        router_saturation(42)
    with pytest.raises(TypeError, match=r"`logs\[1\]`"):
        router_saturation([paths[0], 3])


# ---------------------------------------------------------------------------------- figures, CLI


def test_figures_return_axes(pair, checkpoints):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from infomoe.plot import comparison_plot, saturation_plot

    a, b, _, _ = pair
    ax = comparison_plot(compare_logs(a, b), ax=Figure().subplots())
    assert isinstance(ax, Axes) and len(ax.get_lines()) == 3 and ax.get_ylim()[1] <= 1.05
    ax = saturation_plot(router_saturation(checkpoints[0]), per_layer=True, ax=Figure().subplots())
    assert isinstance(ax, Axes) and ax.get_xlabel() == "training step"
    with pytest.raises(TypeError, match="`comparison`"):
        comparison_plot(object(), ax=Figure().subplots())
    with pytest.raises(TypeError, match="`curve`"):
        saturation_plot(object(), ax=Figure().subplots())


def test_cli_compare_end_to_end(pair, tmp_path, capsys):
    a, b, _, _ = pair
    out = tmp_path / "cmp"
    assert main(["compare", a.path, b.path, "--out", str(out), "--layers", "0", "2"]) == 0
    printed = capsys.readouterr().out
    assert "routing comparison: 600 tokens matched" in printed and "wrote" in printed
    d = json.loads((out / "comparison.json").read_text())
    assert d["layer_ids"] == [0, 2]
    assert d["jaccard"] == pytest.approx(compare_logs(a, b, layers=[0, 2]).jaccard.tolist())
    assert (out / "comparison.png").stat().st_size > 0
    assert main(["compare", a.path, b.path, "--out", str(tmp_path / "np"), "--no-plots",
                 "--match", "token", "--base", "2.718281828459045"]) == 0
    assert os.listdir(tmp_path / "np") == ["comparison.json"]


def test_cli_saturation_end_to_end(checkpoints, tmp_path, capsys):
    paths = checkpoints[0]
    out = tmp_path / "sat"
    assert main(["compare", "--saturation", *paths, "--out", str(out)]) == 0
    assert "router saturation: agreement with the checkpoint at step 600" in capsys.readouterr().out
    d = json.loads((out / "saturation.json").read_text())
    assert d["steps"] == [100, 200, 300, 400, 500, 600] and d["exact_set_match"][-1] == 1.0
    assert (out / "saturation.png").stat().st_size > 0
    assert main(["compare", "--saturation", *paths[:2], "--steps", "7", "8", "--reference", "0",
                 "--out", str(out), "--no-plots"]) == 0
    assert json.loads((out / "saturation.json").read_text())["reference_step"] == 7


@pytest.mark.parametrize("argv, message", [
    (["A"], "compare takes two logs, A and B, got 1"),
    (["A", "B", "--reference", "0"], "--reference is an option of --saturation"),
    (["--saturation", "A", "B", "--steps", "1"], "--steps has 1 values for 2 logs"),
    (["A", "missing"], "'missing' does not exist"),
    (["A", "B", "--base", "1"], "--base must be a positive number other than 1"),
    (["A", "B", "--layers", "-1"], "--layers must be non-negative"),
])
def test_cli_usage_errors(pair, tmp_path, capsys, argv, message):
    a, b, _, _ = pair
    argv = [{"A": a.path, "B": b.path}.get(v, v) for v in argv]
    assert main(["compare", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infomoe compare: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_refuses_an_output_file(pair, tmp_path, capsys):
    a, b, _, _ = pair
    (tmp_path / "f").write_text("x")
    assert main(["compare", a.path, b.path, "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_ami_large_sample_expectation_when_the_exact_one_is_too_costly(tmp_path):
    import warnings

    rng = np.random.default_rng(5)
    n, E = 4000, 8
    x = rng.integers(0, E, n)
    y = np.where(rng.random(n) < 0.6, x, rng.integers(0, E, n))
    a = _log(tmp_path, "a", x[:, None], num_experts=E)
    b = _log(tmp_path, "b", y[:, None], num_experts=E)
    exact = compare_logs(a, b, match="order")
    assert exact.ami[0] == pytest.approx(adjusted_mutual_info_score(x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # a note, not a RuntimeWarning
        approx = compare_logs(a, b, match="order", max_ami_terms=1)
    # E[I] ~ (K-1)^2 / (2n): the two agree to far better than the AMI's own noise
    assert approx.ami[0] == pytest.approx(exact.ami[0], abs=2e-3)
    assert any("large-sample expected MI" in w for w in approx.warnings)
    # more label pairs than tokens: no affordable expectation
    xs = _random_sets(rng, 30, 1, 12, 4)
    c = _log(tmp_path, "c", xs, num_experts=12)
    d = _log(tmp_path, "d", _perturb(rng, xs, 0.5, 12), num_experts=12)
    with pytest.warns(RuntimeWarning, match="ami is NaN"):
        s = compare_logs(c, d, match="order", ami_label="set", max_ami_terms=1)
    assert np.isnan(s.ami[0]) and not np.isnan(s.jaccard[0])
    with pytest.raises(ValueError, match="`max_ami_terms`"):
        compare_logs(a, b, max_ami_terms=0)


def test_damaged_logs_raise_log_errors(pair, tmp_path, capsys):
    import shutil

    from infomoe.logs import LogFormatError, ShardError

    a, _, _, _ = pair
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(LogFormatError):
        compare_logs(a, bad)
    cut = tmp_path / "cut"
    shutil.copytree(a.path, cut)
    first = sorted(p for p in cut.rglob("expert_ids.1.npy"))[0]
    first.write_bytes(first.read_bytes()[:-8])     # truncated shard
    with pytest.raises(ShardError, match="truncated"):
        compare_logs(a, cut)
    assert main(["compare", a.path, str(cut), "--out", str(tmp_path / "o")]) == 2
    assert "truncated" in capsys.readouterr().err


def test_cli_layer_not_in_the_logs_is_one_line(pair, tmp_path, capsys):
    a, b, _, _ = pair
    assert main(["compare", a.path, b.path, "--layers", "9", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infomoe compare: error: `layers` names layer 9")
    assert len(err.strip().splitlines()) == 1


def test_saturation_of_one_log_skips_invalid_and_checks_keys(tmp_path):
    ids = np.array([[0], [1], [2], [0], [1], [3]])
    valid = [True, True, True, True, True, False]
    log = _log(tmp_path, "s", ids, num_experts=4, seq_id=[0] * 6, position=[0, 1, 2] * 2,
               step=[1, 1, 1, 2, 2, 2], valid=valid)
    c = router_saturation(log)
    assert c.num_matched.tolist() == [2, 2]
    assert c.exact_set_match.tolist() == [1.0, 1.0]   # token at position 2 is invalid at step 2
    dup = _log(tmp_path, "d", ids, num_experts=4, seq_id=[0] * 6, position=[0, 0, 1, 0, 1, 2],
               step=[1, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="step 1 of `logs\\[0\\]` has 1 duplicated"):
        router_saturation(dup)


def test_saturation_auto_match_pairs_plain_logs_in_order(tmp_path, checkpoints):
    import warnings

    ids = np.array([[0], [1], [2], [3]])
    plain = [str(_log(tmp_path, f"p{s}", (ids + (s < 1)) % 4, num_experts=4).path)
             for s in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = router_saturation(plain)                # the issue-18 demo call
    assert curve.match == "order" and curve.exact_set_match.tolist() == [0.0, 1.0, 1.0]
    assert any("paired in order" in w for w in curve.warnings)
    keyed = router_saturation(checkpoints[0])
    assert keyed.match == "seq_position" and keyed.warnings == ()
    with pytest.raises(ValueError, match="`match`"):
        router_saturation(plain, match="content")
