import json
import os

import numpy as np
import pytest

from infomoe.logs import LayerSpec, LogFormatError, LogWriter, ShardError, open_log, write_log


@pytest.fixture
def log3(tmp_path):
    """Three token shards of 40 tokens, two layers, and one count record."""
    rng = np.random.default_rng(0)
    p = tmp_path / "log"
    data = []
    with LogWriter(p, source="t", layers=[LayerSpec(0, 6, 2), LayerSpec(2, 6, 2)]) as w:
        for s in range(3):
            ids = rng.integers(-1, 6, (40, 2, 2))
            gw = rng.random((40, 2, 2)).astype(np.float32)
            valid = rng.random(40) > 0.1
            w.append(ids, gate_weights=gw, seq_id=np.full(40, s), valid=valid,
                     position=np.arange(40))
            data.append((ids, gw, valid))
        w.append_counts({0: [1, 0, 0, 0, 0, 2], 2: [0, 0, 0, 0, 0, 5]})
    return p, data


def test_lazy_open_and_description(log3):
    p, _ = log3
    log = open_log(p)
    assert log.num_tokens == 120 and len(log.shards) == 4 and log.complete
    assert log.layer_ids == (0, 2)
    assert [s.kind for s in log.shards] == ["tokens"] * 3 + ["counts"]
    assert log.nbytes > 0 and "tokens=120" in repr(log)


def test_layer_and_column_selection(log3):
    p, data = log3
    log = open_log(p)
    chunks = list(log.iter_chunks(layers=[2], columns=["expert_ids", "seq_id"]))
    assert len(chunks) == 3
    for c, (ids, _, _) in zip(chunks, data):
        assert set(c) == {"expert_ids", "seq_id", "kind", "shard", "start", "offset"}
        assert c["offset"] == sum(len(d[0]) for d in data[:c["shard"]]) + c["start"]
        assert list(c["expert_ids"]) == [2]
        np.testing.assert_array_equal(c["expert_ids"][2], ids[:, 1])
        assert not c["expert_ids"][2].flags.writeable
    c = next(log.iter_chunks(layers=0, columns="gate_weights"))
    np.testing.assert_array_equal(c["gate_weights"][0], data[0][1][:, 0])
    with pytest.raises(ValueError, match="not in this log"):
        next(log.iter_chunks(layers=[1]))
    with pytest.raises(ValueError, match="not in this log"):
        next(log.iter_chunks(columns=["router_logits"]))


def test_chunk_tokens_slices_concatenate_to_the_whole(log3):
    p, data = log3
    log = open_log(p)
    chunks = list(log.iter_chunks(chunk_tokens=15))
    assert [len(c["seq_id"]) for c in chunks] == [15, 15, 10] * 3
    assert [c["start"] for c in chunks[:3]] == [0, 15, 30]
    whole = np.concatenate([c["expert_ids"][0] for c in chunks])
    np.testing.assert_array_equal(whole, np.concatenate([d[0][:, 0] for d in data]))
    np.testing.assert_array_equal(log.read()["valid"], np.concatenate([d[2] for d in data]))
    one = log.read_shard(1, layers=[0])
    np.testing.assert_array_equal(one["expert_ids"][0], data[1][0][:, 0])
    with pytest.raises(IndexError):
        log.read_shard(9)


def test_counts_from_tokens_and_records(log3):
    p, data = log3
    log = open_log(p)
    ids = np.concatenate([d[0] for d in data])
    valid = np.concatenate([d[2] for d in data])
    for i, lid in enumerate((0, 2)):
        e = ids[valid][:, i].ravel()
        expected = np.bincount(e[e >= 0], minlength=6)
        np.testing.assert_array_equal(log.counts(lid, source="tokens"), expected)
        rec = np.array([1, 0, 0, 0, 0, 2]) if lid == 0 else np.array([0, 0, 0, 0, 0, 5])
        np.testing.assert_array_equal(log.counts(lid, source="records"), rec)
        np.testing.assert_array_equal(log.counts()[lid], expected + rec)


def _flip_byte(path, offset_from_end=3):
    b = bytearray(path.read_bytes())
    b[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(b))


def test_corrupted_shard_named_and_rest_readable(log3):
    p, data = log3
    _flip_byte(p / "shards" / "00000001" / "gate_weights.2.npy")
    log = open_log(p)  # structure is intact: without verification nothing is noticed
    assert len(list(log.iter_chunks())) == 3
    log = open_log(p, verify=True)
    with pytest.raises(ShardError, match=r"shard 1 \(shards/00000001\): gate_weights.2.npy is corrupted"):
        list(log.iter_chunks())
    with pytest.warns(RuntimeWarning, match="shard 1"):
        got = [c["shard"] for c in log.iter_chunks(on_error="skip")]
    assert got == [0, 2]
    problems = log.check()
    assert [e.shard for e in problems] == [1]
    with pytest.raises(ShardError, match="shard 1"):
        log.verify_shard(1)


def test_truncated_shard_named_without_verification(log3):
    p, data = log3
    f = p / "shards" / "00000002" / "expert_ids.0.npy"
    f.write_bytes(f.read_bytes()[:-7])
    log = open_log(p)
    with pytest.raises(ShardError, match=r"shard 2 .*expert_ids.0.npy is truncated"):
        list(log.iter_chunks())
    with pytest.warns(RuntimeWarning):
        chunks = list(log.iter_chunks(on_error="skip"))
    assert [c["shard"] for c in chunks] == [0, 1]
    np.testing.assert_array_equal(chunks[1]["expert_ids"][0], data[1][0][:, 0])
    # selecting only an intact layer of the damaged shard still works
    assert len(list(log.iter_chunks(layers=[2]))) == 3


@pytest.mark.parametrize("damage, match", [
    (lambda f: f.unlink(), "missing"),
    (lambda f: f.write_bytes(b"\x93NUMPY"), "header"),
    (lambda f: f.write_bytes(f.read_bytes() + b"xx"), "longer"),
])
def test_damaged_files(log3, damage, match):
    p, _ = log3
    damage(p / "shards" / "00000000" / "seq_id.npy")
    with pytest.raises(ShardError, match=f"shard 0 .*{match}"):
        list(open_log(p).iter_chunks())


def test_object_arrays_are_refused(log3):
    p, _ = log3
    f = p / "shards" / "00000000" / "seq_id.npy"
    np.save(f, np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="object arrays are refused"):
        list(open_log(p).iter_chunks(columns=["seq_id"]))


def _edit_manifest(p, fn):
    m = json.loads((p / "manifest.json").read_text())
    fn(m)
    (p / "manifest.json").write_text(json.dumps(m))


def test_manifest_path_escape_rejected(log3, tmp_path):
    p, _ = log3
    _edit_manifest(p, lambda m: m["shards"][0].update(path="../outside"))
    with pytest.raises(LogFormatError, match=r"'\.\.'"):
        open_log(p)
    _edit_manifest(p, lambda m: m["shards"][0].update(path=str(tmp_path / "abs")))
    with pytest.raises(LogFormatError, match="absolute"):
        open_log(p)


def test_symlink_out_of_the_log_rejected(log3, tmp_path):
    p, _ = log3
    outside = tmp_path / "outside"
    os.rename(p / "shards" / "00000001", outside)
    os.symlink(outside, p / "shards" / "00000001")
    log = open_log(p)
    with pytest.raises(ShardError, match="shard 1 .*outside the log directory"):
        list(log.iter_chunks())
    # a file symlink inside a shard is caught too
    f = p / "shards" / "00000000" / "seq_id.npy"
    os.rename(f, tmp_path / "seq.npy")
    os.symlink(tmp_path / "seq.npy", f)
    with pytest.raises(ShardError, match="shard 0 .*outside"):
        log.read_shard(0)


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a routing log"):
        open_log(tmp_path)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(LogFormatError):
        open_log(tmp_path)


def test_bad_arguments(log3):
    log = open_log(log3[0])
    with pytest.raises(ValueError, match="on_error"):
        next(log.iter_chunks(on_error="ignore"))
    with pytest.raises(ValueError, match="chunk_tokens"):
        next(log.iter_chunks(chunk_tokens=0))
    with pytest.raises(ValueError, match="source"):
        log.counts(source="both")


def test_reader_sees_only_committed_shards_while_writing(tmp_path):
    p = tmp_path / "l"
    w = LogWriter(p, source="t", layers=[LayerSpec(0, 4, 1)])
    w.append(np.zeros((5, 1, 1), int))
    log = open_log(p)
    w.append(np.ones((5, 1, 1), int))
    assert log.num_tokens == 5 and not log.complete  # a snapshot of the manifest
    assert open_log(p).num_tokens == 10
    w.close()


def test_read_empty_selection(tmp_path):
    log = write_log(tmp_path / "l", np.zeros((3, 1, 1), int), num_experts=2)
    out = log.read(columns=["expert_ids"])
    assert out["expert_ids"][0].shape == (3, 1)
