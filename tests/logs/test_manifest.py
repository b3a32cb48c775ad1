import hashlib
import json
import zlib

import numpy as np
import pytest

from infomoe.logs import FileRecord, LayerSpec, LogFormatError, Manifest, ShardRecord
from infomoe.logs._manifest import check_relative_path, checksum_file


def _manifest(**kw):
    files = (FileRecord("expert_ids.0", "|i1", (5, 2), "crc32:0000abcd"),
             FileRecord("expert_ids.3", "|i1", (5, 1), "crc32:0000abce"),
             FileRecord("seq_id", "<i8", (5,), "crc32:12345678"))
    shard = ShardRecord(0, "shards/00000000", "tokens", 5, files)
    base = dict(source="test", layers=(LayerSpec(0, 8, 2), LayerSpec(3, 4, 1)), model_id="m",
                score_function="sigmoid", topk_order="unordered", norm_topk_prob=True,
                expert_id_space="physical", physical_to_logical={0: [0, 1, 2, 3, 0, 1, 2, 3]},
                columns={"expert_ids": "|i1", "seq_id": "<i8"}, metadata={"a": [1, 2], "b": "x"},
                shards=(shard,), complete=True)
    base.update(kw)
    return Manifest(**base)


def test_json_round_trip():
    m = _manifest()
    text = m.to_json()
    back = Manifest.from_json(text)
    assert back == m
    assert back.physical_to_logical == {0: [0, 1, 2, 3, 0, 1, 2, 3]}
    assert back.shards[0].files[0].shape == (5, 2)
    assert back.num_tokens == 5
    d = json.loads(text)
    assert d["schema_version"] == 1 and d["layers"][1] == {"layer_id": 3, "num_experts": 4, "top_k": 1}
    assert Manifest.from_json(text.encode()) == m


@pytest.mark.parametrize("kw, exc", [
    (dict(layer_id=-1, num_experts=4, top_k=1), ValueError),
    (dict(layer_id=0, num_experts=0, top_k=1), ValueError),
    (dict(layer_id=0, num_experts=4, top_k=5), ValueError),
    (dict(layer_id=0, num_experts=4.0, top_k=1), TypeError),
    (dict(layer_id=True, num_experts=4, top_k=1), TypeError),
])
def test_layerspec_rejects(kw, exc):
    with pytest.raises(exc):
        LayerSpec(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(layers=()), "at least one MoE layer"),
    (dict(layers=(LayerSpec(0, 8, 2), LayerSpec(0, 4, 1)), physical_to_logical=None), "duplicate"),
    (dict(score_function="relu"), "score_function"),
    (dict(topk_order="random"), "topk_order"),
    (dict(expert_id_space="virtual"), "expert_id_space"),
    (dict(physical_to_logical={0: [0, 1]}), "one entry per physical"),
    (dict(physical_to_logical={5: [0] * 8}), "not in `layers`"),
    (dict(expert_id_space="logical"), "expert_id_space='physical'"),
    (dict(metadata={"x": object()}), "JSON"),
    (dict(columns={"expert_ids": "|O"}), "dtype"),
])
def test_manifest_rejects(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _manifest(**kw)


def _tampered(fn):
    d = json.loads(_manifest().to_json())
    fn(d)
    return json.dumps(d)


@pytest.mark.parametrize("fn, match", [
    (lambda d: d.update(format="other"), "format tag"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["shards"][0].update(path="/etc"), "absolute"),
    (lambda d: d["shards"][0].update(path="shards/../../x"), r"'\.\.'"),
    (lambda d: d["shards"][0].update(path="..\\x"), "backslash"),
    (lambda d: d["shards"][0].update(path="C:/x"), "absolute"),
    (lambda d: d["shards"][0]["files"][0].update(key="../x"), "invalid file key"),
    (lambda d: d["shards"][0]["files"][0].update(dtype="|O"), "object"),
    (lambda d: d["shards"][0]["files"][0].update(dtype="[('a', '<i4')]"), "dtype"),
    (lambda d: d["shards"][0]["files"][0].update(shape=[4, 2]), "rows"),
    (lambda d: d["shards"][0]["files"][0].update(checksum="md5:abc"), "checksum"),
    (lambda d: d["shards"][0]["files"][0].update(key="expert_ids.7"), "layer not in"),
    (lambda d: d["shards"][0].update(index=3), "index"),
    (lambda d: d["shards"][0].update(rows=0), "row count"),
    (lambda d: d.pop("layers"), "'layers' field is missing"),
    # issue 16: manifests that used to open and give wrong numbers
    (lambda d: d["shards"].append(dict(d["shards"][0], index=1)), "listed more than once"),
    (lambda d: d.pop("shards"), "'shards' field is missing"),
    (lambda d: d.pop("columns"), "'columns' field is missing"),
    (lambda d: d.update(columns={}), "lists none"),
    (lambda d: d["columns"].pop("seq_id"), r"unexpected files \['seq_id'\]"),
    (lambda d: d["shards"][0].update(kind="counts"), "counts shard 0"),
    (lambda d: d["layers"][1].update(top_k=2), r"say \|i1 \(5, 2\)"),
    (lambda d: d["layers"][0].update(layer_id="0"), "must be an integer"),
    (lambda d: d["layers"][1].update(num_experts=4.0), "must be an integer"),
    (lambda d: d["layers"][1].update(top_k=True), "must be an integer"),
    (lambda d: d["layers"][1].update(layer_id=10**9), "at most 999999999"),
    (lambda d: d["layers"][1].update(num_experts=2**31 - 1), "at most 16777216"),
    (lambda d: d["layers"][1].update(num_experts=2**70), "at most 16777216"),
    (lambda d: d.update(num_tokens=100), "stale"),
    (lambda d: d.update(complete="false"), "'complete' must be true or false"),
    (lambda d: d["layers"].__setitem__(0, [0, 8, 2]), "must be an object"),
    (lambda d: d["physical_to_logical"]["0"].__setitem__(0, True), "got a bool"),
])
def test_from_json_rejects(fn, match):
    with pytest.raises(LogFormatError, match=match):
        Manifest.from_json(_tampered(fn))


def test_from_json_rejects_non_json():
    with pytest.raises(LogFormatError, match="not valid JSON"):
        Manifest.from_json("{not json")


@pytest.mark.parametrize("text, match", [
    (b"\xff\xfe{}", "not UTF-8"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),                 # RecursionError inside json
    ('{"format": "infomoe.routing-log", "schema_version": Infinity}', "not valid JSON"),
    ('{"format": "infomoe.routing-log", "schema_version": NaN}', "not valid JSON"),
])
def test_from_json_foreign_failures_become_log_format_errors(text, match):
    with pytest.raises(LogFormatError, match=match):
        Manifest.from_json(text)


def test_from_json_deep_metadata_is_a_log_format_error():
    d = json.loads(_manifest().to_json())
    text = json.dumps(d)[:-1] + ', "metadata": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(LogFormatError):
        Manifest.from_json(text)


@pytest.mark.parametrize("path", ["a/b", "shards/00000001", "x"])
def test_relative_paths_accepted(path):
    assert check_relative_path(path, "p") == path


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "..", "./a", "a//b", "a/", "a\\b", "a\x00b"])
def test_relative_paths_rejected(path):
    with pytest.raises(LogFormatError):
        check_relative_path(path, "p")


def test_checksum_file_matches_stdlib(tmp_path):
    data = np.random.default_rng(0).bytes(3_000_001)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert checksum_file(p, "crc32", block=65536) == f"crc32:{zlib.crc32(data):08x}"
    assert checksum_file(p, "sha256") == "sha256:" + hashlib.sha256(data).hexdigest()
    assert checksum_file(p, "blake2b") == "blake2b:" + hashlib.blake2b(data, digest_size=32).hexdigest()
    with pytest.raises(ValueError, match="checksum"):
        checksum_file(p, "md5")


def test_layer_lookup():
    m = _manifest()
    assert m.layer(3) == LayerSpec(3, 4, 1)
    assert m.layer_ids == (0, 3)
    with pytest.raises(ValueError, match="not in this log"):
        m.layer(1)
