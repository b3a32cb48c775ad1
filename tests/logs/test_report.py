"""The report's honesty: noise reads as noise, planted dependence is recovered, health metrics are exact."""

import math

import numpy as np
import pytest
from scipy.stats import entropy as sp_entropy

from infomoe.logs import CountSpec, LayerSpec, Manifest, analyze_log, count_shard, report_from_tables, write_log


def _h(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


@pytest.fixture(scope="module")
def random_report(tmp_path_factory):
    """The issue's log: uniformly random routing (true MI = 0), 4,096 tokens, 16 layers, 64 experts, top-2."""
    rng = np.random.default_rng(0)
    n, L, E = 4096, 16, 64
    ids = np.argsort(rng.random((n, L, E)), axis=2)[:, :, :2]  # two distinct experts, uniformly
    seq = np.repeat(np.arange(n // 128), 128)
    log = write_log(tmp_path_factory.mktemp("rand") / "log", ids, num_experts=E,
                    token_id=rng.integers(0, 2048, n), seq_id=seq, position=np.tile(np.arange(128), n // 128))
    return analyze_log(log), analyze_log(log, estimator="plugin", intervals=False)


def test_random_log_reads_as_noise(random_report):
    r, plug = random_report
    # the plug-in value is mostly bias, several bits; the default estimate is ~0 and marked ns
    assert np.nanmin(plug.mi_token) > 1.5
    for name in ("mi_token", "mi_token_set", "mi_position", "mi_transition"):
        v = getattr(r, name)
        assert np.all(np.abs(v) < 0.05), (name, v)
        assert not r.significant[name].any(), name
        lo, hi = r.intervals[name][:, 0], r.intervals[name][:, 1]
        assert np.all((lo <= 0) & (0 <= hi)), name
    table = r.format_table()
    lines = table.splitlines()
    at = lines.index("information")
    rows = [ln for ln in lines[at + 3:at + 3 + 16]]
    assert len(rows) == 16 and all("*" not in ln and ln.count(" ns") >= 3 for ln in rows)
    # and the JSON says the same
    d = r.to_dict()
    assert d["layers"][0]["mi_token"]["significant"] is False
    assert d["uncertainty"]["resampling_unit"] == "sequences (seq_id)"


def test_random_log_set_entropy_near_its_maximum(random_report):
    r, _ = random_report
    hmax = math.log2(math.comb(64, 2))
    # NSB on 2,016 sets from 4,096 tokens: within 0.03 bits of log2 C(64, 2) (plug-in: 0.4 bits short);
    # the interval is sampling spread only, narrower than that bias
    assert np.all(np.abs(r.set_entropy - hmax) < 0.03)
    width = np.diff(r.intervals["set_entropy"], axis=1)[:, 0]
    assert np.all((width > 0) & (width < 0.1))


def _planted(tmp_path, n=20000, V=64, E=8, rho=0.6, seed=3):
    """Layer 0 (top-1): expert h(tok) with probability rho, else uniform.
    Layer 1 (top-2): the set {a(tok), b(tok)} with probability rho, else a uniform pair."""
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, V, n)
    h = rng.integers(0, E, V)
    keep = rng.random(n) < rho
    e0 = np.where(keep, h[tok], rng.integers(0, E, n))
    pairs = np.array([(i, j) for i in range(E) for j in range(i + 1, E)])
    planted = rng.integers(0, len(pairs), V)
    keep1 = rng.random(n) < rho
    s1 = pairs[np.where(keep1, planted[tok], rng.integers(0, len(pairs), n))]
    ids = np.zeros((n, 2, 2), np.int64) - 1
    ids[:, 0, 0] = e0
    ids[:, 1] = s1
    # layer 0 is top-1: write two logs' worth of shapes through one layer spec each
    seq = np.arange(n) // 50
    return tok, h, pairs, planted, ids, seq


def test_planted_dependence_is_recovered_within_its_interval(tmp_path):
    V, E, rho = 64, 8, 0.6
    tok, h, pairs, planted, ids, seq = _planted(tmp_path, V=V, E=E, rho=rho)
    log0 = write_log(tmp_path / "l0", ids[:, :1, :1], num_experts=E, token_id=tok, seq_id=seq)
    log1 = write_log(tmp_path / "l1", ids[:, 1:, :], num_experts=E, token_id=tok, seq_id=seq)
    r0, r1 = analyze_log(log0), analyze_log(log1)
    # closed forms, tokens uniform over V: I = H(mean_x p(.|x)) - mean_x H(p(.|x))
    def channel_mi(rows):
        return _h(rows.mean(axis=0)) - np.mean([_h(row) for row in rows])

    C = len(pairs)
    ch0 = np.full((V, E), (1 - rho) / E)
    ch0[np.arange(V), h] += rho
    ch_set = np.full((V, C), (1 - rho) / C)
    ch_set[np.arange(V), planted] += rho
    # slot channel of layer 1: half the planted mass on each of the two planted experts
    ch_slot = np.full((V, E), (1 - rho) / E)
    for x in range(V):
        ch_slot[x, pairs[planted[x]]] += rho / 2
    true0, true_set, true_slot = channel_mi(ch0), channel_mi(ch_set), channel_mi(ch_slot)
    for r, name, truth in ((r0, "mi_token", true0), (r1, "mi_token_set", true_set), (r1, "mi_token", true_slot)):
        lo, hi = r.intervals[name][0]
        assert lo <= truth <= hi, (name, truth, lo, hi)
        assert r.significant[name][0]
        assert abs(r.__getattribute__(name)[0] - truth) < 0.05


def test_planted_position_independence_stays_ns(tmp_path):
    tok, h, pairs, planted, ids, seq = _planted(tmp_path)
    log = write_log(tmp_path / "l", ids[:, :1, :1], num_experts=8, token_id=tok, seq_id=seq,
                    position=np.arange(len(tok)) % 50)
    r = analyze_log(log)
    assert r.significant["mi_token"][0] and not r.significant["mi_position"][0]


def test_estimators_agree_on_a_well_sampled_table(tmp_path):
    tok, *_rest, ids, seq = _planted(tmp_path)
    log = write_log(tmp_path / "l", ids[:, :1, :1], num_experts=8, token_id=tok, seq_id=seq)
    values = {est: float(analyze_log(log, estimator=est, intervals=False).mi_token[0])
              for est in ("shuffle", "plugin", "miller_madow", "nsb")}
    corrected = [values[k] for k in ("shuffle", "miller_madow", "nsb")]
    assert max(corrected) - min(corrected) < 0.01, values
    # the plug-in sits above them by about its bias (K_x - 1)(K_y - 1) / 2N = 63 * 7 / 40000 nats
    assert values["plugin"] - values["shuffle"] == pytest.approx(63 * 7 / 40000 / math.log(2), rel=0.2)


def test_soft_gate_information_matches_its_closed_form(tmp_path):
    from infomoe.routing import routing_information

    rng = np.random.default_rng(5)
    n, E = 3000, 6
    z = rng.normal(size=(n, 2, E)) * np.array([3.0, 0.1])[None, :, None]  # layer 0 sharp, layer 1 flat
    ids = np.argsort(-z, axis=2)[:, :, :2]
    log = write_log(tmp_path / "l", ids, num_experts=E, router_logits=z, seq_id=np.arange(n) // 30)
    r = analyze_log(log)
    for layer in range(2):
        p = np.exp(z[:, layer] - z[:, layer].max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        want = sp_entropy(p.mean(axis=0), base=2) - sp_entropy(p, axis=1, base=2).mean()
        assert r.gate_information[layer] == pytest.approx(want, rel=1e-10)
        assert r.gate_information[layer] == pytest.approx(routing_information(p), rel=1e-10)
        lo, hi = r.intervals["gate_information"][layer]
        assert lo < r.gate_information[layer] < hi
    assert r.gate_information[0] > 10 * r.gate_information[1]
    assert "I(X;T)" in r.format_table()


def test_gate_interval_tracks_the_spread_over_sequences(tmp_path):
    # identical sequences: every group has the same gate sums, so the interval has (almost) no width;
    # sequences of different sharpness: a wide one
    rng = np.random.default_rng(2)
    E, m = 4, 40
    one = rng.normal(size=(25, 1, E))
    z_same = np.tile(one, (m, 1, 1))
    scale = np.repeat(rng.uniform(0.1, 4.0, m), 25)[:, None, None]
    z_diff = np.tile(one, (m, 1, 1)) * scale
    seq = np.arange(25 * m) // 25
    ids = np.zeros((25 * m, 1, 1), np.int64)
    same = analyze_log(write_log(tmp_path / "a", ids, num_experts=E, router_logits=z_same, seq_id=seq))
    diff = analyze_log(write_log(tmp_path / "b", ids, num_experts=E, router_logits=z_diff, seq_id=seq))
    w_same = np.diff(same.intervals["gate_information"][0])[0]
    w_diff = np.diff(diff.intervals["gate_information"][0])[0]
    assert w_same < 1e-6 < 0.01 < w_diff


def test_health_metrics_closed_forms(tmp_path):
    # E = 4, k = 2, loads [6, 2, 0, 0]... built from explicit sets; one token drops a choice
    ids = np.array([[0, 1], [0, 1], [0, 3], [0, -1], [0, 1], [0, 3]])[:, None, :]
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=4), capacity_factor=1.5,
                    expert_placement=2, estimator="plugin")
    load = np.array([6, 3, 0, 2])
    mean = load.sum() / 4
    assert r.load[0].tolist() == load.tolist()
    assert r.max_violation[0] == pytest.approx((6 - mean) / mean)
    assert r.dead_fraction[0] == pytest.approx(0.25)
    cap = 1.5 * mean
    assert r.oversubscribed_fraction[0] == pytest.approx(np.mean(load > cap))
    assert r.overflow_fraction[0] == pytest.approx(np.maximum(load - cap, 0).sum() / load.sum())
    assert r.token_drop_rate[0] == pytest.approx(1 / 6) and r.dropped_fraction[0] == pytest.approx(1 / 12)
    ranks = np.array([6 + 3, 0 + 2])  # experts 0-1 on rank 0, 2-3 on rank 1
    assert r.rank_balance[0] == pytest.approx(ranks.mean() / ranks.max())
    co = np.zeros((4, 4), int)
    for a, b in ((0, 1), (0, 1), (0, 3), (0, 1), (0, 3)):
        co[a, b] += 1
        co[b, a] += 1
    np.testing.assert_array_equal(r.coactivation[0], co)
    r2 = analyze_log(write_log(tmp_path / "l2", ids, num_experts=4), expert_placement={0: np.array([0, 1, 1, 1])})
    assert r2.rank_balance[0] == pytest.approx(np.mean([6, 5]) / 6)
    table = r.format_table()
    assert "MaxVio" in table and "dead" in table and "tokdrop" in table


def test_cross_layer_cooccurrence_is_the_transition_table(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, (500, 2, 1))
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=3))
    want = np.zeros((3, 3), int)
    np.add.at(want, (ids[:, 0, 0], ids[:, 1, 0]), 1)
    np.testing.assert_array_equal(r.cooccurrence[0], want)


@pytest.mark.parametrize("kw, exc, match", [
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"alpha": True}, ValueError, "alpha"),
    ({"permutations": 1}, ValueError, "permutations"),
    ({"permutations": 0}, ValueError, "shuffle"),
    ({"permutations": -3, "estimator": "plugin"}, ValueError, "permutations"),
    ({"intervals": "yes"}, TypeError, "intervals"),
    ({"capacity_factor": 0}, ValueError, "capacity_factor"),
    ({"capacity_factor": float("nan")}, ValueError, "capacity_factor"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"expert_placement": 9}, ValueError, "expert_placement"),
    ({"expert_placement": np.zeros(3, int)}, ValueError, "expert_placement"),
    ({"expert_placement": {5: 2}}, ValueError, "expert_placement"),
    ({"estimator": "magic"}, ValueError, "estimator"),
    ({"groups": 0}, ValueError, "groups"),
])
def test_bad_report_options_fail_before_counting(tmp_path, monkeypatch, kw, exc, match):
    log = write_log(tmp_path / "l", np.zeros((10, 1, 1), int), num_experts=4)

    def not_reached(*a, **k):
        raise AssertionError("counting started")

    monkeypatch.setattr("infomoe.logs._analysis._count_locally", not_reached)
    with pytest.raises(exc, match=match):
        analyze_log(log, **kw)


def test_report_from_tables_without_permutations_uses_the_chi_square_bias(tmp_path):
    spec = CountSpec.from_manifest(Manifest(source="t", layers=(LayerSpec(0, 4, 1),)))
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 10, 5000)
    t = count_shard({"expert_ids": {0: rng.integers(0, 4, (5000, 1))}, "token_id": tok}, spec=spec)
    r = report_from_tables(t, spec, estimator="plugin", permutations=0)
    assert r.pvalues == {} and r.significant == {} and r.null_method["mi_token"] == ("chi-square",)
    assert r.mi_bias["mi_token"][0] == pytest.approx(9 * 3 / (2 * 5000) / math.log(2))
    with pytest.raises(TypeError, match="tables"):
        report_from_tables({"load": 1}, spec)


def test_blocks_stand_in_for_sequences_without_seq_id(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (3000, 1, 1))
    r = analyze_log(write_log(tmp_path / "l", ids, num_experts=4, token_id=rng.integers(0, 5, 3000)))
    assert r.resampling_unit.startswith("blocks of 256")
    assert r.groups == int(np.ceil(3000 / 256)) or r.groups <= 12  # blocks hashed into 64 groups
