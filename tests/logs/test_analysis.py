import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import softmax
from scipy.stats import entropy as sp_entropy
from sklearn.metrics import mutual_info_score

from infomoe import mutual_information_table
from infomoe.logs import (CountSpec, LayerSpec, LogTables, LogWriter, Manifest, analyze_log, count_shard,
                          open_log, write_log)

LN2 = math.log(2)


@pytest.fixture(scope="module")
def rich(tmp_path_factory, rich_routing):
    """3 layers, E=6, k=2, correlated routing, drops, invalid tokens, all columns, 4 shards."""
    d = rich_routing(np.random.default_rng(7), 3000)
    p = tmp_path_factory.mktemp("a") / "log"
    write_log(p, d["ids"], num_experts=6, router_logits=d["logits"], token_id=d["tok"],
              position=d["pos"], label=d["lab"], valid=d["valid"], shard_tokens=800)
    return p, d


def _pairs(x, ids_l, valid):
    """Expand (token attribute, chosen expert) pairs: one per non-dropped choice of a valid token."""
    xs, es = [], []
    for j in range(ids_l.shape[1]):
        m = valid & (ids_l[:, j] >= 0)
        xs.append(x[m])
        es.append(ids_l[m, j])
    return np.concatenate(xs), np.concatenate(es)


def _pos_bucket(pos):
    return np.where(pos == 0, 0, np.floor(np.log2(np.maximum(pos, 1))).astype(int) + 1)


def test_report_against_numpy_sklearn_scipy(rich):
    p, d = rich
    r = analyze_log(p, progress=False, chunk_tokens=500, estimator="plugin")
    ids, valid = d["ids"], d["valid"]
    assert r.num_tokens == valid.sum() and r.unit == "bits"
    for l in range(3):
        e = ids[valid, l].ravel()
        load = np.bincount(e[e >= 0], minlength=6)
        np.testing.assert_array_equal(r.load[l], load)
        assert r.dropped_fraction[l] == pytest.approx((e < 0).mean())
        assert r.load_cv[l] == pytest.approx(load.std() / load.mean())
        assert r.max_over_mean[l] == pytest.approx(load.max() / load.mean())
        f = load / load.sum()
        assert r.load_entropy[l] == pytest.approx(sp_entropy(f, base=2))
        assert r.normalized_entropy[l] == pytest.approx(sp_entropy(f) / math.log(6))
        probs = softmax(d["logits"][valid, l], axis=1)
        assert r.switch_source[l] == "router_logits"
        assert r.switch_balance[l] == pytest.approx(6 * np.dot(f, probs.mean(axis=0)))
        assert r.router_entropy[l] == pytest.approx(sp_entropy(probs, axis=1, base=2).mean())
        for name, x in (("mi_token", d["tok"]), ("mi_position", _pos_bucket(d["pos"]))):
            xs, es = _pairs(x, ids[:, l], valid)
            assert getattr(r, name)[l] == pytest.approx(mutual_info_score(xs, es) / LN2, abs=1e-12)
        xs, es = _pairs(d["lab"], ids[:, l], valid & (d["lab"] >= 0))
        assert r.mi_label[l] == pytest.approx(mutual_info_score(xs, es) / LN2, abs=1e-12)
        # top-k sets as one alphabet: H of the sorted pair among complete, distinct sets
        s = np.sort(ids[valid, l], axis=1)
        ok = (s[:, 0] >= 0) & (s[:, 0] != s[:, 1])
        _, cnt = np.unique(s[ok], axis=0, return_counts=True)
        assert r.set_entropy[l] == pytest.approx(sp_entropy(cnt, base=2))
        assert r.set_alphabet[l] == 15
    for l in range(2):
        xs, ys = [], []
        for j in range(2):
            for jj in range(2):
                m = valid & (ids[:, l, j] >= 0) & (ids[:, l + 1, jj] >= 0)
                xs.append(ids[m, l, j])
                ys.append(ids[m, l + 1, jj])
        ref = mutual_info_score(np.concatenate(xs), np.concatenate(ys)) / LN2
        assert r.mi_transition[l] == pytest.approx(ref, abs=1e-12)
    # the only warning: token x top-k-set tables (2048 x 15 cells) are far sparser than the pairs
    assert r.token_ids_folded == 0 and len(r.warnings) == 1 and r.warnings[0].startswith("mi_token_set")
    assert r.mi_token.min() > 0.15  # routing depends on the token by construction


def test_chunking_does_not_change_the_tables(rich):
    p, _ = rich
    a = analyze_log(p, progress=False, chunk_tokens=97)
    b = analyze_log(p, progress=False)
    for name in ("mi_token", "mi_position", "mi_label", "mi_transition", "set_entropy",
                 "switch_balance", "router_entropy"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-14)


def test_estimator_and_base_are_passed_through(rich):
    p, d = rich
    r = analyze_log(p, progress=False, estimator="miller_madow", base=math.e, layers=[1])
    ids, valid = d["ids"], d["valid"]
    xs, es = _pairs(d["tok"], ids[:, 1], valid)
    table = np.zeros((2048, 6), np.int64)
    np.add.at(table, (xs, es), 1)
    ref = mutual_information_table(table, estimator="miller_madow", base=math.e).value
    assert r.unit == "nats" and r.mi_token[0] == pytest.approx(float(ref))
    assert r.layer_ids.tolist() == [1] and len(r.mi_transition) == 0
    assert r.mi_bias["mi_token"][0] == pytest.approx(
        (len(np.unique(xs)) - 1) * 5 / (2 * len(xs)))


def test_count_shard_is_additive(rich):
    p, _ = rich
    log = open_log(p)
    spec = CountSpec.from_manifest(log.manifest)
    parts = [count_shard(c, spec=spec) for c in log.iter_chunks(chunk_tokens=333)]
    whole = count_shard(log.read(), spec=spec)
    total = sum(parts)
    assert isinstance(total, LogTables) and total.tokens == whole.tokens
    for name in ("load", "token", "position", "label", "transition", "sets"):
        for x, y in zip(getattr(total, name), getattr(whole, name)):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(total.router_entropy_sum, whole.router_entropy_sum)
    np.testing.assert_array_equal(total.dropped, whole.dropped)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_tables_merge_by_addition_property(sizes, seed):
    rng = np.random.default_rng(seed)
    spec = CountSpec.from_manifest(Manifest(
        source="t", layers=(LayerSpec(0, 5, 2), LayerSpec(1, 3, 1))), token_buckets=7)
    chunks = [{"expert_ids": {0: rng.integers(-1, 5, (n, 2)), 1: rng.integers(-1, 3, (n, 1))},
               "token_id": rng.integers(0, 20, n), "valid": rng.random(n) > 0.3} for n in sizes]
    merged = {"expert_ids": {k: np.concatenate([c["expert_ids"][k] for c in chunks]) for k in (0, 1)},
              "token_id": np.concatenate([c["token_id"] for c in chunks]),
              "valid": np.concatenate([c["valid"] for c in chunks])}
    a = sum(count_shard(c, spec=spec) for c in chunks)
    b = count_shard(merged, spec=spec)
    assert a.tokens == b.tokens and a.token_ids_folded == b.token_ids_folded
    for name in ("load", "token", "transition", "sets"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            np.testing.assert_array_equal(x, y)


def test_closed_forms(tmp_path):
    # expert = token mod E with tokens uniform over 0..4E-1: I(token; E) = H(E) = log2 E
    E = 8
    tok = np.tile(np.arange(4 * E), 50)
    ids = (tok % E)[:, None, None]
    r = analyze_log(write_log(tmp_path / "a", ids, num_experts=E, token_id=tok), progress=False,
                    estimator="plugin")
    assert r.mi_token[0] == pytest.approx(3.0)
    assert r.load_cv[0] == 0 and r.normalized_entropy[0] == pytest.approx(1.0)
    assert r.switch_balance[0] == pytest.approx(1.0) and r.switch_source[0] == "load"
    assert r.set_entropy[0] == pytest.approx(3.0)
    # collapse onto one expert: switch value E, normalized entropy 0, max/mean E
    r2 = analyze_log(write_log(tmp_path / "b", np.zeros((100, 1, 1), int), num_experts=E),
                     progress=False)
    assert r2.switch_balance[0] == pytest.approx(E) and r2.max_over_mean[0] == pytest.approx(E)
    assert r2.normalized_entropy[0] == pytest.approx(0.0)
    assert r2.mi_token is None and r2.mi_label is None and r2.router_entropy is None


def test_count_records_add_to_load_and_physical_ids_map_to_logical(tmp_path):
    p = tmp_path / "l"
    p2l = {0: [0, 1, 2, 0, 1, 2]}  # 6 physical slots, 3 logical experts
    with LogWriter(p, source="sglang", layers=[LayerSpec(0, 6, 2)], expert_id_space="physical",
                   physical_to_logical=p2l) as w:
        w.append(np.array([[0, 4], [3, 1], [5, -1], [0, 3]])[:, None, :])
        w.append_counts({0: [1, 0, 0, 0, 0, 2]})
    r = analyze_log(p, progress=False, estimator="plugin")
    # logical: tokens give 0:{0,3,0,3}->4, 1:{4,1}->2, 2:{5}->1; records 0:+1, 2:+2
    assert r.load[0].tolist() == [5, 2, 3] and r.record_pairs[0] == 3
    assert r.num_experts.tolist() == [3] and r.expert_space == "logical"
    # token 3 chose physical 0 and 3 = logical 0 twice: not a valid set; token 2 has a drop
    assert r.set_alphabet[0] == 3
    assert r.set_entropy[0] == pytest.approx(0.0)  # remaining sets {0,1}, {0,1}
    raw = analyze_log(p, progress=False, expert_space="as_logged")
    assert raw.load[0].tolist() == [3, 1, 0, 2, 1, 3]


def test_large_set_alphabet_is_reported_not_counted(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(64)[:4] for _ in range(200)])[:, None, :]
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=64), progress=False,
                    max_set_alphabet=1000)
    assert np.isnan(r.set_entropy[0]) and r.set_alphabet[0] == math.comb(64, 4)
    assert any("max_set_alphabet" in w for w in r.warnings)


def test_folded_token_ids_are_reported(tmp_path):
    tok = np.arange(100)
    r = analyze_log(write_log(tmp_path / "l", (tok % 2)[:, None, None], num_experts=2,
                              token_id=tok), token_buckets=64, progress=False)
    assert r.token_ids_folded == 36 and any("folded" in w for w in r.warnings)


def test_report_json_and_table(rich):
    import json
    p, _ = rich
    r = analyze_log(p, progress=False)
    d = json.loads(r.to_json())
    assert d["num_tokens"] == r.num_tokens and len(d["layers"]) == 3
    assert d["layers"][1]["mi_token"]["value"] == pytest.approx(float(r.mi_token[1]))
    assert d["layers"][1]["mi_token"]["interval"] == pytest.approx(r.intervals["mi_token"][1].tolist())
    assert d["layers"][1]["mi_token"]["significant"] == bool(r.significant["mi_token"][1])
    assert d["transitions"][0]["from_layer"] == 0
    assert d["uncertainty"]["intervals"] == "delete-one-group jackknife"
    assert "I(tok;E)" in r.format_table()
    m = r.load_matrix()
    np.testing.assert_allclose(m.sum(axis=1), 1.0)


def test_analysis_errors(tmp_path):
    p = tmp_path / "empty"
    LogWriter(p, source="t", layers=[LayerSpec(0, 2, 1)]).close()
    with pytest.raises(ValueError, match="no committed shards"):
        analyze_log(p, progress=False)
    log = write_log(tmp_path / "l", np.zeros((3, 1, 1), int), num_experts=2)
    with pytest.raises(ValueError, match="estimator"):
        analyze_log(log, estimator="magic", progress=False)
    with pytest.raises(ValueError, match="position_edges"):
        analyze_log(log, position_edges=[0, 5, 5], progress=False)
    with pytest.raises(TypeError, match="chunk dict"):
        count_shard([1, 2], spec=CountSpec.from_manifest(log.manifest))
    with pytest.raises(ValueError, match="no valid tokens"):
        analyze_log(write_log(tmp_path / "v", np.zeros((3, 1, 1), int), num_experts=2,
                              valid=np.zeros(3, bool)), progress=False)


def test_sigmoid_router_logits_are_not_softmaxed(tmp_path):
    from scipy.special import expit

    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 1, 4)) * 3
    log = write_log(tmp_path / "l", rng.integers(0, 4, (50, 1, 1)), num_experts=4,
                    router_logits=z, score_function="sigmoid")
    r = analyze_log(log, progress=False)
    assert r.switch_source == ("load",) and r.score_function == "sigmoid"
    # the soft gate of a sigmoid router: sigmoid scores normalised over the experts (not a softmax)
    q = expit(z[:, 0])
    p = q / q.sum(axis=1, keepdims=True)
    assert r.router_entropy[0] == pytest.approx(sp_entropy(p, axis=1, base=2).mean(), rel=1e-12)
    soft = softmax(z[:, 0], axis=1)
    assert abs(r.router_entropy[0] - sp_entropy(soft, axis=1, base=2).mean()) > 0.1
    gate = sp_entropy(p.mean(axis=0), base=2) - sp_entropy(p, axis=1, base=2).mean()
    assert r.gate_information[0] == pytest.approx(gate, rel=1e-12)


def test_num_threads_is_restored(rich):
    numba = pytest.importorskip("numba")
    p, _ = rich
    before = numba.get_num_threads()
    a = analyze_log(p, progress=False, num_threads=1, layers=[0])
    b = analyze_log(p, progress=False, num_threads=None, layers=[0])
    assert numba.get_num_threads() == before
    np.testing.assert_array_equal(a.load[0], b.load[0])
    assert a.mi_token[0] == b.mi_token[0]
    with pytest.raises(ValueError, match="num_threads"):
        analyze_log(p, progress=False, num_threads=0)


def test_sort_rows_network_matches_numpy():
    from infomoe.logs._tables import _sort_rows
    rng = np.random.default_rng(0)
    for k in range(1, 11):
        e = rng.integers(-1, 50, (200, k)).astype(np.int32)
        np.testing.assert_array_equal(_sort_rows(e), np.sort(e, axis=1))


def _mostly_dropped_log(path, drop=(0.8, 0.05), n=2000, seed=0):
    """2 layers, E=4, k=1; layer l records the expert as -1 for a fraction drop[l] of tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, (n, len(drop), 1))
    for l, frac in enumerate(drop):
        ids[rng.random(n) < frac, l, 0] = -1
    return write_log(path, ids, num_experts=4, token_id=rng.integers(0, 50, n)), ids


def test_large_drop_fraction_is_the_first_warning(tmp_path):
    log, ids = _mostly_dropped_log(tmp_path / "log")
    r = analyze_log(log)
    dropped = (ids == -1).mean(axis=(0, 2))
    np.testing.assert_allclose(r.dropped_fraction, dropped)
    first = r.warnings[0]
    assert f"layer 0 drops {100 * dropped[0]:.1f}%" in first and "layer 1" not in first
    table = r.format_table().splitlines()
    assert table[0] == f"warning: {first}"
    assert sum(first in line for line in table) == 1  # said once, up front
    assert r.to_dict()["warnings"][0] == first        # and in summary.json


def test_no_drop_warning_at_or_below_ten_percent(tmp_path):
    log, _ = _mostly_dropped_log(tmp_path / "log", drop=(0.0, 0.05))
    r = analyze_log(log)
    assert 0 < r.dropped_fraction[1] <= 0.1
    assert not any("drops" in w for w in r.warnings)
    assert r.format_table().startswith("routing log report:")


def test_every_table_column_has_a_legend(rich):
    p, _ = rich
    lines = analyze_log(p).format_table().splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 2  # load and health, then information
    legend_at = lines.index("columns:")
    legend = {}
    for line in lines[legend_at + 1:]:
        key, _, text = line.strip().partition(" ")
        legend[key] = text.strip()
    for rule in rules:
        headers = lines[rule - 1].split()  # the header line, as printed
        row = lines[rule + 1]
        assert len(headers) == len(row.replace(" ns", "").split())  # one header per printed value
        missing = [h for h in headers if not legend.get(h)]
        assert not missing, f"columns without a legend line: {missing}"
    assert "bits" in legend["I(tok;E)"] and "-" in legend and "MaxVio" in legend


def test_analyze_log_shows_no_progress_bar_unless_asked(rich, capsys):
    pytest.importorskip("tqdm")
    p, _ = rich
    capsys.readouterr()
    analyze_log(p, layers=[0])
    assert "tok" not in capsys.readouterr().err
    analyze_log(p, layers=[0], progress=True)  # the same capture sees a bar when one is asked for
    assert "report" in capsys.readouterr().err


def test_undersampled_tables_give_one_report_warning_not_one_per_layer(tmp_path):
    import warnings

    import numpy as np

    from infomoe.logs import analyze_log, open_log, write_log
    rng = np.random.default_rng(0)
    write_log(tmp_path / "log", rng.integers(0, 64, (300, 6, 1)), num_experts=64,
              token_id=rng.integers(0, 2000, 300))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no Python warning escapes per layer
        report = analyze_log(open_log(tmp_path / "log"), estimator="plugin")
    lines = [w for w in report.warnings if "dominated by bias" in w]
    assert len(lines) >= 1 and "6 of 6" in lines[0]
