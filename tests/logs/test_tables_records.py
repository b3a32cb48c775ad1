"""Tables records: the report's count tables stored in a log, read back, checked and merged."""

import json
import os

import numpy as np
import pytest

from infomoe.logs import CountSpec, LayerSpec, LogWriter, analyze_log, count_shard, open_log, write_log
from infomoe.logs._distributed import count_shard_for_path
from infomoe.logs._manifest import LogFormatError
from infomoe.logs._tables import tables_from_arrays, tables_to_arrays


@pytest.fixture(scope="module")
def rich(tmp_path_factory, rich_routing):
    """A token log (4 shards, every column) and a log holding the same tokens as two tables records."""
    d = rich_routing(np.random.default_rng(11), 3000)
    seq = np.repeat(np.arange(60), 50)
    root = tmp_path_factory.mktemp("t")
    tokens = write_log(root / "tokens", d["ids"], num_experts=6, router_logits=d["logits"], token_id=d["tok"],
                       position=d["pos"], label=d["lab"], valid=d["valid"], seq_id=seq, shard_tokens=800)
    spec = CountSpec.from_manifest(tokens.manifest)
    chunks = list(tokens.iter_chunks())
    with LogWriter(root / "tables", source="arrays", layers=tokens.manifest.layers) as w:
        w.append_tables(sum(count_shard(c, spec=spec) for c in chunks[:2]), spec)
        w.append_tables(sum(count_shard(c, spec=spec) for c in chunks[2:]), spec)
    return tokens, open_log(root / "tables", verify=True), spec


def test_round_trip_is_exact(rich, assert_tables_equal):
    tokens, _, spec = rich
    t = sum(count_shard(c, spec=spec) for c in tokens.iter_chunks(chunk_tokens=700))
    arrays = tables_to_arrays(t, spec)
    assert "token@0" not in arrays and "grouped_token@0@keys" in arrays  # sums of the groups: derived on reading
    assert_tables_equal(t, tables_from_arrays(arrays, spec), rtol=0)


def test_report_of_tables_records_equals_the_token_report(rich):
    tokens, tables, _ = rich
    assert [s.kind for s in tables.shards] == ["tables", "tables"]
    assert [s.rows for s in tables.shards] == [int(tables.read_shard(i)["tables"]["tokens"][0]) for i in (0, 1)]
    a, b = json.loads(analyze_log(tokens).to_json()), json.loads(analyze_log(tables).to_json())
    assert a["layers"][1]["mi_token"]["value"] == pytest.approx(b["layers"][1]["mi_token"]["value"], rel=1e-12)
    assert a["num_tokens"] == b["num_tokens"] == int(tokens.read(columns="valid")["valid"].sum())
    for la, lb in zip(a["layers"], b["layers"]):
        assert la["load"] == lb["load"] and la["set_entropy"] == lb["set_entropy"]
        assert la["router_entropy"] == pytest.approx(lb["router_entropy"], rel=1e-12)
    for lid in tokens.layer_ids:
        np.testing.assert_array_equal(tables.counts(lid), tokens.counts(lid))
        np.testing.assert_array_equal(tables.counts(lid, source="tokens"), 0)


def test_tables_records_add_to_token_shards_and_on_dask_tasks(rich, tmp_path, assert_tables_equal):
    tokens, tables, spec = rich
    # one log holding half the tokens as shards, half as a tables record
    chunks = list(tokens.iter_chunks())
    with LogWriter(tmp_path / "mixed", source="arrays", layers=tokens.manifest.layers) as w:
        for c in chunks[:2]:
            w.append(np.stack([c["expert_ids"][l] for l in range(3)], axis=1),
                     router_logits=np.stack([c["router_logits"][l] for l in range(3)], axis=1),
                     token_id=c["token_id"], position=c["position"], label=c["label"], valid=c["valid"],
                     seq_id=c["seq_id"])
        w.append_tables(sum(count_shard(c, spec=spec) for c in chunks[2:]), spec)
    whole = sum(count_shard(c, spec=spec) for c in chunks)
    mixed = open_log(tmp_path / "mixed")
    # the Dask task of each shard counts tables records too
    parts = [count_shard_for_path(mixed.path, s.index, spec=spec, columns=tuple(mixed.columns))
             for s in mixed.shards]
    assert_tables_equal(whole, sum(parts))
    assert analyze_log(mixed).format_table() == analyze_log(tokens).format_table()


def test_settings_mismatch_is_named(rich):
    _, tables, _ = rich
    with pytest.raises(ValueError, match="recorded with token_buckets=2048 but this analysis asks for "
                                         "token_buckets=100"):
        analyze_log(tables, token_buckets=100)
    with pytest.raises(ValueError, match=r"recorded with layers=\[0, 1, 2\] but this analysis asks for "
                                         r"layers=\[0, 1\]"):
        analyze_log(tables, layers=[0, 1])


def _arrays(rich):
    tokens, _, spec = rich
    return tables_to_arrays(sum(count_shard(c, spec=spec) for c in tokens.iter_chunks()), spec), spec


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.pop("load@1"), "lack 'load@1'"),
    (lambda a: a.update({"prob_sum@0": a["prob_sum@0"][:-1]}), r"'prob_sum@0' has shape \(63, 6\), expected \(64, 6\)"),
    (lambda a: a["coactivation@2"].__setitem__((0, 1), -3), "'coactivation@2' holds a negative count -3"),
    (lambda a: a.update({"prob_sum@0": a["prob_sum@0"].astype(np.int64)}), "must hold finite floats"),
    (lambda a: a.update({"grouped_token@0@keys": a["grouped_token@0@keys"][::-1].copy()}), "not increasing"),
    (lambda a: a.pop("grouped_sets@1@counts"), "needs 1-d 'keys' and 'counts'"),
    (lambda a: a.update({"extra@0": np.zeros(2)}), r"unknown arrays \['extra@0'\]"),
    (lambda a: a.update({"spec": np.frombuffer(b"{nope", np.uint8)}), "not a CountSpec in JSON"),
    (lambda a: a.pop("spec"), "have no 'spec'"),
])
def test_damaged_tables_get_a_clear_error(rich, damage, message):
    arrays, spec = _arrays(rich)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    damage(arrays)
    with pytest.raises(ValueError, match=message):
        tables_from_arrays(arrays, spec)


def test_append_tables_checks_its_arguments(rich, tmp_path):
    tokens, _, spec = rich
    t = count_shard(next(tokens.iter_chunks()), spec=spec)
    with LogWriter(tmp_path / "w", source="arrays", layers=[LayerSpec(0, 6, 2), LayerSpec(1, 6, 2)]) as w:
        with pytest.raises(TypeError, match="`tables` must be LogTables"):
            w.append_tables({"load": 1}, spec)
        with pytest.raises(TypeError, match="`spec` must be a CountSpec"):
            w.append_tables(t, "spec")
        with pytest.raises(ValueError, match="layer 2 is not in this log"):
            w.append_tables(t, spec)
    with LogWriter(tmp_path / "v", source="arrays", layers=[LayerSpec(l, 8, 2) for l in range(3)]) as w:
        with pytest.raises(ValueError, match="`spec` layer 0 has 6 experts, top-2; the log says 8, top-2"):
            w.append_tables(t, spec)


def test_manifest_refuses_odd_tables_files(rich, tmp_path):
    _, tables, _ = rich
    import shutil

    p = tmp_path / "copy"
    shutil.copytree(tables.path, p)
    mpath = os.path.join(p, "manifest.json")
    m = json.load(open(mpath))
    m["shards"][0]["files"][0]["key"] = "../evil"
    json.dump(m, open(mpath, "w"))
    with pytest.raises(LogFormatError, match="invalid file key '../evil'"):
        open_log(p)
    m["shards"][0]["files"] = [f for f in m["shards"][0]["files"] if f["key"] not in ("../evil", "spec")]
    json.dump(m, open(mpath, "w"))
    with pytest.raises(LogFormatError, match="has no 'spec' file"):
        open_log(p)


@pytest.mark.parametrize("with_seq_id", [True, False])
def test_write_log_counts_mode_reports_what_the_token_log_reports(rich_routing, tmp_path, with_seq_id):
    d = rich_routing(np.random.default_rng(5), 2000)
    cols = dict(num_experts=6, router_logits=d["logits"].astype(np.float16), token_id=d["tok"], position=d["pos"],
                label=d["lab"], valid=d["valid"], shard_tokens=300)
    if with_seq_id:
        cols["seq_id"] = np.repeat(np.arange(40), 50)
    a = write_log(tmp_path / "ids", d["ids"], **cols)
    b = write_log(tmp_path / "counts", d["ids"], mode="counts", **cols)
    assert [s.kind for s in b.shards] == ["tables"] and b.shards[0].rows == int(d["valid"].sum())
    # same slices counted in the same order: equal to the last bit, block groups (no seq_id) included
    assert analyze_log(a).to_json() == analyze_log(b).to_json()


def test_write_log_counts_mode_errors(tmp_path):
    ids = np.zeros((4, 1, 1), np.int64)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        write_log(tmp_path / "a", ids, mode="tables")
    with pytest.raises(ValueError, match='applies to mode="counts" only'):
        write_log(tmp_path / "b", ids, count_options={"groups": 4})
    with pytest.raises(ValueError, match="every token is padding"):
        write_log(tmp_path / "c", ids, mode="counts", valid=np.zeros(4, bool))
    with pytest.raises(ValueError, match="ids must lie in"):  # the checks of append apply
        write_log(tmp_path / "d", ids + 5, num_experts=2, mode="counts")


def test_write_intermediates_counts_mode(tmp_path):
    from infomoe.logs.export import write_intermediates

    rng = np.random.default_rng(0)
    tree = {f"layers_{l}": {"idx": rng.integers(0, 4, (500, 2))} for l in range(2)}
    a = write_intermediates(tmp_path / "a", tree, ids="idx", num_experts=4)
    b = write_intermediates(tmp_path / "b", tree, ids="idx", num_experts=4, mode="counts",
                            count_options={"groups": 16})
    assert b.shards[0].kind == "tables" and analyze_log(b).groups <= 16
    np.testing.assert_array_equal(b.counts(1), a.counts(1))
