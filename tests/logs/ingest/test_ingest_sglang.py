"""SGLang expert-distribution dumps -> routing logs (synthetic dumps in SGLang's layout)."""

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infomoe.logs import open_log  # noqa: E402
from infomoe.logs.ingest import import_sglang, load_sglang_dump  # noqa: E402

from . import _fuzz  # noqa: E402

L, P, LOGICAL, K, WIDTH = 3, 6, 4, 2, 8     # layer 0 dense (never routed), 6 physical slots, top-2 padded to 8
P2L = torch.tensor([[0, 1, 2, 3, 0, 1]] * L, dtype=torch.int64)


def _record(rng, fpid, rank, lens, decode=False):
    t = int(sum(lens))
    topk = torch.full((L, t, WIDTH), -1, dtype=torch.int32)
    phys = torch.from_numpy(rng.integers(0, P, size=(L - 1, t, K)).astype(np.int32))
    topk[1:, :, :K] = phys
    topk[1, 0, 1] = -1                                  # one padded choice stays -1
    return {"forward_pass_id": fpid, "rank": rank, "gatherer_key": "primary",
            "input_ids": rng.integers(0, 1000, t).tolist(), "positions": rng.integers(0, 50, t).tolist(),
            "extend_seq_lens": None if decode else list(lens), "forward_mode": 2 if decode else 1,
            "topk_ids_of_layer": topk, "misc_objects": [],
            "global_physical_count": torch.zeros((L, P), dtype=torch.int32)}


def _dump(path, records):
    torch.save({"records": records, "last_physical_to_logical_map": P2L}, path)


def _logical(ids_phys):
    p2l = P2L.numpy()
    out = np.where(ids_phys >= 0, p2l[0][np.clip(ids_phys, 0, None)], -1)
    return out


def test_per_token_ranks_mapping_and_dedup(tmp_path):
    rng = np.random.default_rng(0)
    shared = [_record(rng, 0, 0, [3, 2]), _record(rng, 1, 0, [1, 1], decode=True)]
    own = [_record(rng, 0, 1, [4])]
    _dump(tmp_path / "r0.pt", shared)
    _dump(tmp_path / "r1.pt", [dict(r, rank=1) for r in shared] + own)     # TP replica + DP tokens
    res = import_sglang(tmp_path, tmp_path / "log")
    # replicas differ only in the rank field, which is not part of the content key
    assert res.num_replicas_skipped == 2 and res.num_tokens == 5 + 2 + 4
    log = open_log(tmp_path / "log")
    m = log.manifest
    assert m.layer_ids == (1, 2)                        # dense layer 0 dropped
    assert all(s.top_k == K and s.num_experts == LOGICAL for s in m.layers)
    assert m.expert_id_space == "logical" and m.source == "sglang"
    d = log.read()
    recs = shared + own
    order = [recs[0], recs[2], recs[1]]                 # sorted by (forward_pass_id, rank)
    exp1 = np.concatenate([_logical(r["topk_ids_of_layer"][1, :, :K].numpy()) for r in order])
    np.testing.assert_array_equal(d["expert_ids"][1], exp1)
    assert d["expert_ids"][1][0, 1] == -1
    np.testing.assert_array_equal(d["token_id"], np.concatenate([r["input_ids"] for r in order]))
    np.testing.assert_array_equal(d["position"], np.concatenate([r["positions"] for r in order]))
    np.testing.assert_array_equal(d["seq_id"], [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4])
    np.testing.assert_array_equal(d["step"], [0] * 9 + [1, 1])
    np.testing.assert_array_equal(d["rank"], [0] * 5 + [1] * 4 + [0, 0])
    # expert load equals an independent count of the logical ids
    phys = np.concatenate([r["topk_ids_of_layer"][2, :, :K].numpy().ravel() for r in order])
    expected = np.bincount(P2L.numpy()[2][phys[phys >= 0]], minlength=LOGICAL)
    np.testing.assert_array_equal(log.counts(2), expected)


def test_per_token_physical_space(tmp_path):
    rng = np.random.default_rng(1)
    rec = _record(rng, 0, 0, [5])
    _dump(tmp_path / "r0.pt", [rec])
    import_sglang(tmp_path / "r0.pt", tmp_path / "log", to_logical=False, drop_empty_layers=False)
    log = open_log(tmp_path / "log")
    assert log.manifest.expert_id_space == "physical"
    assert log.manifest.physical_to_logical[1] == P2L[1].tolist()
    assert log.layer_ids == (0, 1, 2)
    d = log.read()
    np.testing.assert_array_equal(d["expert_ids"][2], rec["topk_ids_of_layer"][2, :, :K].numpy())
    assert (d["expert_ids"][0] == -1).all()


def test_stat_mode_counts_and_copies(tmp_path):
    counts = torch.zeros((5, L, LOGICAL), dtype=torch.int32)       # circular buffer, 2 unused slots
    counts[:3, 1:] = torch.randint(0, 9, (3, L - 1, LOGICAL), dtype=torch.int32)
    payload = {"rank": 0, "logical_count": counts, "average_utilization_rate_over_window": None}
    torch.save(payload, tmp_path / "a.pt")
    torch.save(payload, tmp_path / "b.pt")                          # the same all-reduced counts again
    with pytest.raises(ValueError, match="`top_k` is required for stat dumps"):
        import_sglang(tmp_path, tmp_path / "x")
    res = import_sglang(tmp_path, tmp_path / "log", top_k=K, count_replicas=1)
    assert (res.num_count_records, res.num_replicas_skipped, res.num_tokens) == (3, 1, 0)
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (1, 2) and log.num_tokens == 0
    np.testing.assert_array_equal(log.counts(1, source="records"), counts[:, 1].sum(0).numpy())


class Evil:
    """An arbitrary object: torch.save pickles it, weights_only loading must refuse it."""


def test_unsafe_or_wrong_files(tmp_path):
    torch.save({"records": [Evil()]}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_sglang_dump(tmp_path / "evil.pt")
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an SGLang expert-distribution dump"):
        import_sglang(tmp_path / "other.pt", tmp_path / "log")
    rng = np.random.default_rng(0)
    _dump(tmp_path / "tok.pt", [_record(rng, 0, 0, [2])])
    torch.save({"rank": 0, "logical_count": torch.ones((1, L, LOGICAL), dtype=torch.int32)}, tmp_path / "st.pt")
    with pytest.raises(ValueError, match="mixes SGLang recorder modes"):
        import_sglang([tmp_path / "tok.pt", tmp_path / "st.pt"], tmp_path / "log")
    bad = _record(rng, 0, 0, [2])
    bad["topk_ids_of_layer"] = bad["topk_ids_of_layer"][:, :1]
    _dump(tmp_path / "bad.pt", [bad])
    with pytest.raises(ValueError, match="topk_ids_of_layer has shape"):
        import_sglang(tmp_path / "bad.pt", tmp_path / "log2")
    with pytest.raises(FileNotFoundError):
        import_sglang(tmp_path / "missing.pt", tmp_path / "log3")


# ----------------------------------------------------------------------------- fuzzing

_IGNORED = {"gatherer_key", "forward_mode", "misc_objects", "global_physical_count",
            "average_utilization_rate_over_window"}


def _tensor_swaps(t, rng, *, lo, hi, same_cuts=()):
    """Mutations of an integer tensor whose entries must lie in [lo, hi]: (mutated, expectation)."""
    def with_entry(v, dtype=None):
        a = (t if dtype is None else t.to(dtype)).clone()   # never write into the original
        a.view(-1)[int(rng.integers(a.numel()))] = v
        return a
    big = t.numpy().astype(np.uint64)
    big.flat[int(rng.integers(big.size))] = 2**64 - 1
    swaps = [(t.float() + 0.5, "raise"), (t.float(), "raise"), (t.bool(), "raise"), (torch.from_numpy(big), "raise"),
             (with_entry(hi + 1, torch.int64), "raise"), (with_entry(lo - 4), "raise"), (t.to(torch.int64), "same"),
             (t.tolist(), "same"), (t[:-1], "raise"), (t.numpy(), "same"), (None, "raise"), (1.5, "raise"),
             (with_entry(int(rng.integers(lo, hi + 1))), "any")]
    swaps += [(t[cut], "same") for cut in same_cuts]
    return swaps


def _sglang_cases(rng, tree, n, *, n_phys):
    cases = []
    all_paths = [p for p in _fuzz.paths(tree) if len(p) >= 2]
    while len(cases) < n:
        path = all_paths[int(rng.integers(len(all_paths)))]
        value = _fuzz.get(tree, path)
        key = next((p for p in reversed(path) if isinstance(p, str)), None)
        field = path[3] if len(path) > 3 and path[1] == "records" else key
        ignored = field in _IGNORED
        if rng.random() < 0.15:
            if ignored:
                expect = "same"
            elif len(path) == 3 and path[1] == "records":                  # drop a record
                expect = "any"
            elif key in ("rank", "extend_seq_lens") and path[-1] == key:   # optional keys
                expect = "any"
            else:
                expect = "raise"
            cases.append((f"delete {path}", _fuzz.delete(tree, path), expect))
            continue
        if isinstance(value, torch.Tensor):
            if field == "topk_ids_of_layer":
                swaps = _tensor_swaps(value, rng, lo=-1, hi=n_phys - 1, same_cuts=[(slice(None), slice(None), slice(0, K))])
            elif field == "last_physical_to_logical_map":
                swaps = _tensor_swaps(value, rng, lo=0, hi=LOGICAL - 1)
            elif field == "logical_count":                                 # no upper bound; fewer windows are valid
                swaps = _tensor_swaps(value, rng, lo=0, hi=2**20)
                swaps = [(v, "any" if i in (4, 8) else e) for i, (v, e) in enumerate(swaps)]
            else:
                swaps = [(value.float(), "same"), (None, "same")]
        elif isinstance(value, dict):
            swaps = [(5, "raise"), (None, "raise"), ([value], "raise")]
        elif isinstance(value, list):
            swaps = [(5, "raise"), ("x", "raise"), ({"a": 1}, "raise")]
            if value and isinstance(value[0], int):
                swaps.append((value[:-1] + [value[-1] + 0.5], "raise"))
            if field == "extend_seq_lens":
                swaps.append((None, "any"))
        elif isinstance(value, (int, str)) and not isinstance(value, bool):
            if isinstance(value, str):
                swaps = [(None, "any"), (5, "any")]
            else:
                swaps = [(v, "raise") for _, v in _fuzz.bad_ints(value)]
                for _, v in _fuzz.MAYBE_INTS:
                    ok = field in ("forward_pass_id",) or (field in ("rank", "input_ids", "positions") and v < 2**31)
                    swaps.append((v, "any" if ok else "raise"))
        else:
            continue
        if ignored:
            swaps = [(v, "same") for v, _ in swaps]
        new, expect = swaps[int(rng.integers(len(swaps)))]
        cases.append((f"{path} <- {_fuzz.describe_value(new)}", _fuzz.put(tree, path, new), expect))
    return cases


def _loaded_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_loaded_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_loaded_equal(x, y) for x, y in zip(a, b))
    return a == b


def run_sglang_fuzz(tmp_path, importer, n_per_token=150, n_stat=60, n_bytes=50, seed=16):
    """Fuzz ``importer`` (import_sglang's signature); return [(description, outcome, detail)]."""
    rng = np.random.default_rng(seed)
    data = np.random.default_rng(0)
    shared = [_record(data, 0, 0, [3, 2]), _record(data, 1, 0, [1, 1], decode=True)]
    own = [_record(data, 0, 1, [4])]
    per_token = {"r0.pt": {"records": shared, "last_physical_to_logical_map": P2L},
                 "r1.pt": {"records": [copy.deepcopy(dict(r, rank=1)) for r in shared] + own, "last_physical_to_logical_map": P2L}}
    counts = torch.zeros((5, L, LOGICAL), dtype=torch.int32)
    counts[:3, 1:] = torch.from_numpy(data.integers(0, 9, (3, L - 1, LOGICAL)).astype(np.int32))
    payload = {"rank": 0, "logical_count": counts, "average_utilization_rate_over_window": None}
    stat = {"a.pt": payload, "b.pt": copy.deepcopy(payload)}
    results = []

    def write(d, tree):
        for name, obj in tree.items():
            torch.save(obj, os.path.join(d, name))

    baselines = {}
    for name, tree, kw in (("per_token", per_token, {}), ("stat", stat, {"top_k": K, "count_replicas": 1})):
        d = tmp_path / f"base_{name}"
        d.mkdir()
        write(d, tree)
        importer(d, d / "log", **kw)
        baselines[name] = _fuzz.snapshot(d / "log")

    def run(desc, i, tree, kw, expect, base):
        d = _fuzz.fresh(tmp_path / "cases", i)
        try:
            write(d, tree)
        except Exception:                                       # torch cannot save this mutation: not a dump
            return
        outcome, detail = _fuzz.classify(lambda out: importer(d, out, **kw), os.path.join(d, "log"), expect=expect,
                                         locators=list(tree) + ["`top_k`", "`num_experts`"], baseline=base)
        results.append((desc, outcome, detail))

    cases = [(c, {}, "per_token") for c in _sglang_cases(rng, per_token, n_per_token, n_phys=P)]
    cases += [(c, {"top_k": K, "count_replicas": 1}, "stat") for c in _sglang_cases(rng, stat, n_stat, n_phys=P)]
    for i, ((desc, tree, expect), kw, mode) in enumerate(cases):
        run(desc, i, tree, kw, expect, baselines[mode])
    base_file = tmp_path / "base_per_token" / "r0.pt"
    original = base_file.read_bytes()
    for j, (kind, raw) in enumerate(_fuzz.byte_mutations(rng, original, n_bytes)):
        d = _fuzz.fresh(tmp_path / "cases", len(cases) + j)
        torch.save(per_token["r1.pt"], os.path.join(d, "r1.pt"))
        with open(os.path.join(d, "r0.pt"), "wb") as f:
            f.write(raw)
        try:
            same = _loaded_equal(torch.load(os.path.join(d, "r0.pt"), weights_only=True),
                                 torch.load(base_file, weights_only=True))
            expect = "same" if same else "any"
        except Exception:
            expect = "raise"
        outcome, detail = _fuzz.classify(lambda out, d=d: importer(d, out), os.path.join(d, "log"), expect=expect,
                                         locators=["r0.pt"], baseline=baselines["per_token"])
        results.append((f".pt bytes {kind}", outcome, detail))
    return results


def test_fuzz_sglang_only_our_errors_or_a_correct_log(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)            # durability is not under test: keep it fast
    results = run_sglang_fuzz(tmp_path, import_sglang)
    bad = [r for r in results if r[1] not in _fuzz.ACCEPTABLE]
    assert not bad, f"{len(bad)} of {len(results)} mutations mishandled, e.g. {bad[:5]}"
    counts = _fuzz.tally([(o, d) for _, o, d in results])
    assert counts.get("refused", 0) > 80 and counts.get("accepted", 0) > 10   # both paths exercised


# ----------------------------------------------------------------------------- one test per fuzz finding
def _one_record_dump(path, **changes):
    rec = _record(np.random.default_rng(5), 0, 0, [3, 2])
    rec.update(changes)
    _dump(path, [rec])
    return rec


@pytest.mark.parametrize("changes, error, match", [
    ({"forward_pass_id": 1.7}, TypeError, r"r0.pt record 0: 'forward_pass_id' must be an integer, got 1.7"),
    ({"forward_pass_id": 2**63}, ValueError, r"'forward_pass_id' must be an integer >= 0 and <= 9223372036854775807"),
    ({"rank": True}, TypeError, r"'rank' must be an integer, got True"),
    ({"input_ids": [True, 5, 6, 7, 8]}, TypeError, r"'input_ids' must hold integers, found True"),
    ({"input_ids": torch.ones(5, dtype=torch.bool)}, TypeError, r"'input_ids' must hold integers, got a bool tensor"),
    ({"positions": torch.full((5,), 1.7)}, TypeError, r"'positions' must hold integers, got a torch.float32 tensor"),
    ({"positions": [0, 1, 2, 3, 2**31]}, ValueError, r"'positions' has 2147483648 at index \[4\]"),
    ({"extend_seq_lens": [3, 3]}, ValueError, r"'extend_seq_lens' sum to 6, the record has 5 input_ids"),
    ({"extend_seq_lens": [2**62, 2**62, 2**62, 2**62 + 5]}, ValueError, r"'extend_seq_lens' has 4611686018427387909 at index \[3\], outside \[0, 5\]"),
    ({"input_ids": [1, 2]}, ValueError, r"topk_ids_of_layer has shape \(3, 5, 8\), expected \[3, 2, k >= 1\]"),
])
def test_a_bad_record_field_is_refused_naming_file_record_and_field(tmp_path, changes, error, match):
    _one_record_dump(tmp_path / "r0.pt", **changes)
    with pytest.raises(error, match=match):
        import_sglang(tmp_path / "r0.pt", tmp_path / "log")
    assert not (tmp_path / "log").exists()


def test_physical_ids_are_checked_exactly(tmp_path):
    rec = _record(np.random.default_rng(6), 0, 0, [3])
    big = rec["topk_ids_of_layer"].numpy().astype(np.uint64)
    big[1, 0, 0] = 2**64 - 1                                       # was wrapped to -1, "dropped"
    _dump(tmp_path / "a.pt", [dict(rec, topk_ids_of_layer=torch.from_numpy(big))])
    with pytest.raises(ValueError, match=r"a.pt record 0: 'topk_ids_of_layer' .* unsigned value 18446744073709551615"):
        import_sglang(tmp_path / "a.pt", tmp_path / "log")
    beyond = rec["topk_ids_of_layer"].clone()
    beyond[2, 1, 0] = P                                            # one past the last physical slot
    _dump(tmp_path / "b.pt", [dict(rec, topk_ids_of_layer=beyond)])
    with pytest.raises(ValueError, match=rf"b.pt record 0: 'topk_ids_of_layer' \(physical ids\) has an expert id "
                                         rf"outside \[-1, {P}\): {P} at index \[2, 1, 0\]"):
        import_sglang(tmp_path / "b.pt", tmp_path / "log")
    late = rec["topk_ids_of_layer"].clone()
    late[1, 0, 5] = 3                                              # a routed id after padding columns
    _dump(tmp_path / "c.pt", [dict(rec, topk_ids_of_layer=late)])
    with pytest.raises(ValueError, match=r"c.pt record 0: .* expert beyond column top_k=2"):
        import_sglang(tmp_path / "c.pt", tmp_path / "log")
    _dump(tmp_path / "d.pt", [rec])
    with pytest.raises(ValueError, match=r"d.pt record 0: .* beyond column top_k=1"):  # top_k below the routing
        import_sglang(tmp_path / "d.pt", tmp_path / "log", top_k=1)
    assert not (tmp_path / "log").exists()


def test_the_physical_to_logical_map_and_sizes_are_checked(tmp_path):
    rec = _record(np.random.default_rng(7), 0, 0, [3])
    for p2l, error, match in (
            (P2L.float(), TypeError, r"'last_physical_to_logical_map' \[layers, physical\] must hold integers"),
            (torch.tensor([[0, 1, 2, 3, 0, 2**31]] * L), ValueError,
             r"maps a slot to logical expert 2147483648, but there are only 6 physical slots"),
            (torch.tensor([[0, 1, 2, 3, 0, -1]] * L), ValueError, r"has -1 at index \[0, 5\], outside \[0, inf\]")):
        torch.save({"records": [rec], "last_physical_to_logical_map": p2l}, tmp_path / "m.pt")
        with pytest.raises(error, match=match):
            import_sglang(tmp_path / "m.pt", tmp_path / "log")
    _dump(tmp_path / "ok.pt", [rec])
    with pytest.raises(ValueError, match=r"`num_experts` must be an integer >= 1 and <="):   # was MemoryError
        import_sglang(tmp_path / "ok.pt", tmp_path / "log", num_experts=2**31 - 1)
    with pytest.raises(ValueError, match=r"`num_experts`=7 must lie in \[4, 6\]"):
        import_sglang(tmp_path / "ok.pt", tmp_path / "log", num_experts=7)
    with pytest.raises(TypeError, match=r"`top_k` must be an integer, got 1.5"):
        import_sglang(tmp_path / "ok.pt", tmp_path / "log", top_k=1.5)
    assert not (tmp_path / "log").exists()
    import_sglang(tmp_path / "ok.pt", tmp_path / "log")
    assert open_log(tmp_path / "log").manifest.topk_order == "unordered"   # torch.topk(sorted=False) upstream


@pytest.mark.parametrize("counts, error, match", [
    (torch.full((2, L, LOGICAL), 1.5), TypeError, r"st.pt: 'logical_count' .* must hold integers"),
    (torch.ones((2, L, LOGICAL), dtype=torch.bool), TypeError, r"st.pt: 'logical_count' .* must hold integers"),
    (torch.full((2, L, LOGICAL), -1, dtype=torch.int32), ValueError, r"st.pt: 'logical_count' .* has -1"),
    (torch.from_numpy(np.full((2, L, LOGICAL), 2**64 - 1, np.uint64)), ValueError, r"unsigned value 18446744073709551615"),
    (torch.full((2, L, LOGICAL), 2**61, dtype=torch.int64), ValueError, r"sums to more than 2\*\*62"),
])
def test_stat_counts_are_checked_exactly(tmp_path, counts, error, match):
    torch.save({"rank": 0, "logical_count": counts}, tmp_path / "st.pt")
    with pytest.raises(error, match=match):
        import_sglang(tmp_path / "st.pt", tmp_path / "log", top_k=K, count_replicas=1)
    assert not (tmp_path / "log").exists()


def test_stat_rank_and_top_k_are_checked(tmp_path):
    torch.save({"rank": 1.0, "logical_count": torch.ones((1, L, LOGICAL), dtype=torch.int32)}, tmp_path / "st.pt")
    with pytest.raises(TypeError, match=r"st.pt: 'rank' must be an integer, got 1.0"):
        import_sglang(tmp_path / "st.pt", tmp_path / "log", top_k=K, count_replicas=1)
    torch.save({"rank": 0, "logical_count": torch.ones((1, L, LOGICAL), dtype=torch.int32)}, tmp_path / "st.pt")
    with pytest.raises(ValueError, match=r"`top_k`=5 exceeds the 4 experts"):
        import_sglang(tmp_path / "st.pt", tmp_path / "log", top_k=5, count_replicas=1)


def test_corrupt_dumps_are_refused_naming_the_file(tmp_path):
    _dump(tmp_path / "r0.pt", [_record(np.random.default_rng(8), 0, 0, [2])])
    raw = (tmp_path / "r0.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut.pt: cannot be loaded with torch.load\(weights_only=True\)"):
        import_sglang(tmp_path / "cut.pt", tmp_path / "log")
    torch.save({1: "x", "a": 2}, tmp_path / "keys.pt")                # mixed key types: was a TypeError of sorted()
    with pytest.raises(ValueError, match=r"keys.pt: not an SGLang expert-distribution dump"):
        import_sglang(tmp_path / "keys.pt", tmp_path / "log")


def test_a_replica_with_other_padding_is_still_a_replica(tmp_path):
    rec = _record(np.random.default_rng(9), 0, 0, [3])
    _dump(tmp_path / "r0.pt", [rec])
    _dump(tmp_path / "r1.pt", [dict(rec, rank=1, topk_ids_of_layer=rec["topk_ids_of_layer"][:, :, :K].clone())])
    res = import_sglang(tmp_path, tmp_path / "log")
    assert (res.num_tokens, res.num_replicas_skipped) == (3, 1)
