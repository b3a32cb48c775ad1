"""Megatron router traces (JSONL + bf16 logits sidecar) -> routing logs."""

import json
import os

import numpy as np
import pytest

from infomoe.logs import open_log
from infomoe.logs.ingest import import_megatron, read_bf16

from . import _fuzz

E, K, T = 8, 2, 5


def _write_rank(d, rank, steps, rng, logits=True, layers=(0, 1)):
    """Write router_trace_rank{rank}.jsonl (+ logits sidecar) the way Megatron's RouterTracer does."""
    torch = pytest.importorskip("torch") if logits else None
    recs, blobs, off = [], [], 0
    for step in steps:
        for layer in layers:
            lg = rng.normal(size=(T, E)).astype(np.float32)
            top = np.argsort(-lg, axis=1)[:, :K]
            rec = {"step": step, "stage": "pre_dispatch", "block": "decoder", "layer": layer, "rank": rank,
                   "num_tokens": T, "topk": K, "top_indices": top.tolist()}
            if logits:
                b = torch.from_numpy(lg).to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
                rec.update(logit_offset=off, logit_bytes=len(b), logit_shape=[T, E])
                off += len(b)
                blobs.append(b)
                rec["_bf16_as_f32"] = torch.from_numpy(lg).to(torch.bfloat16).float().numpy()
            recs.append(rec)
    with open(d / f"router_trace_rank{rank}.jsonl", "w") as f:
        for r in recs:
            print(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}), file=f)
    if logits:
        (d / f"logits_rank{rank}.bin").write_bytes(b"".join(blobs))
    return recs


def test_ranks_replicas_and_logits(tmp_path):
    rng = np.random.default_rng(0)
    r0 = _write_rank(tmp_path, 0, [0, 1], rng)
    r2 = _write_rank(tmp_path, 2, [0, 1], rng)                  # data-parallel rank: other tokens
    # rank 1 replicates rank 0 (tensor parallel): same records, rank field 1, own sidecar
    lines = [json.loads(x) for x in (tmp_path / "router_trace_rank0.jsonl").read_text().splitlines()]
    with open(tmp_path / "router_trace_rank1.jsonl", "w") as f:
        for x in lines:
            print(json.dumps(dict(x, rank=1)), file=f)
    (tmp_path / "logits_rank1.bin").write_bytes((tmp_path / "logits_rank0.bin").read_bytes())
    res = import_megatron(tmp_path, tmp_path / "log", logits=True)
    assert (res.num_tokens, res.num_shards, res.num_replicas_skipped) == (4 * T, 4, 2)
    log = open_log(tmp_path / "log")
    assert log.manifest.layers[0].num_experts == E               # from logit_shape
    d = log.read()
    # order: step 0 (rank 0, rank 2), step 1 (rank 0, rank 2)
    by = {(r["rank"], r["step"], r["layer"]): r for r in r0 + r2}
    order = [(0, 0), (2, 0), (0, 1), (2, 1)]
    for layer in (0, 1):
        np.testing.assert_array_equal(d["expert_ids"][layer],
                                      np.concatenate([by[(rk, st, layer)]["top_indices"] for rk, st in order]))
        np.testing.assert_array_equal(d["router_logits"][layer],
                                      np.concatenate([by[(rk, st, layer)]["_bf16_as_f32"] for rk, st in order]))
    np.testing.assert_array_equal(d["rank"], np.repeat([0, 2, 0, 2], T))
    np.testing.assert_array_equal(d["step"], np.repeat([0, 0, 1, 1], T))
    res2 = import_megatron(tmp_path, tmp_path / "log2", deduplicate=False)
    assert res2.num_tokens == 6 * T


def test_read_bf16_matches_torch():
    torch = pytest.importorskip("torch")
    import tempfile
    x = torch.tensor([1.0, -2.75, 3.14159, 1e-3, -65504.0, 0.0])
    b = x.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    p = os.path.join(tempfile.mkdtemp(), "l.bin")
    with open(p, "wb") as f:
        f.write(b"xx" + b)                                        # a 2-byte offset
    got = read_bf16(p, 2, len(b), [2, 3])
    np.testing.assert_array_equal(got, x.to(torch.bfloat16).float().numpy().reshape(2, 3))
    with pytest.raises(ValueError, match="beyond the end of the file"):
        read_bf16(p, 4, len(b), [2, 3])
    with pytest.raises(ValueError, match="needs 12 bytes"):
        read_bf16(p, 2, 10, [2, 3])


def test_missing_layer_is_minus_one_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    _write_rank(tmp_path, 0, [0], rng, logits=False, layers=(0, 3))
    with open(tmp_path / "router_trace_rank0.jsonl", "a") as f:   # step 1 lacks layer 3
        print(json.dumps({"step": 1, "block": "decoder", "layer": 0, "rank": 0, "num_tokens": 1, "topk": K,
                          "top_indices": [[1, 2]]}), file=f)
        print(json.dumps({"step": 1, "block": "mtp", "mtp_idx": 0, "layer": 0, "rank": 0, "num_tokens": 1,
                          "topk": K, "top_indices": [[0, 1]]}), file=f)
    with pytest.raises(ValueError, match="`num_experts` is required"):
        import_megatron(tmp_path, tmp_path / "x")
    import_megatron(tmp_path, tmp_path / "log", num_experts=E)
    d = open_log(tmp_path / "log").read()
    assert open_log(tmp_path / "log").layer_ids == (0, 3)
    np.testing.assert_array_equal(d["expert_ids"][3][-1], [-1, -1])
    np.testing.assert_array_equal(d["expert_ids"][0][-1], [1, 2])
    with pytest.raises(ValueError, match="logit_offset"):
        import_megatron(tmp_path, tmp_path / "y", num_experts=E, logits=True)
    with open(tmp_path / "router_trace_rank0.jsonl", "a") as f:
        f.write('{"step": 2, "layer": 0, "rank"')                 # truncated last line
    with pytest.raises(ValueError, match=r"router_trace_rank0.jsonl:\d+: not valid JSON"):
        import_megatron(tmp_path, tmp_path / "z", num_experts=E)


def test_bad_ids_and_shapes(tmp_path):
    rec = {"step": 0, "block": "decoder", "layer": 0, "rank": 0, "num_tokens": 2, "topk": 2,
           "top_indices": [[0, 9], [1, 2]]}
    (tmp_path / "router_trace_rank0.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="expert id outside"):
        import_megatron(tmp_path, tmp_path / "a", num_experts=4)
    rec.update(top_indices=[[0, 1]])
    (tmp_path / "router_trace_rank0.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="num_tokens=2 but top_indices has 1 rows"):
        import_megatron(tmp_path, tmp_path / "b", num_experts=4)
    with pytest.raises(FileNotFoundError):
        import_megatron(tmp_path / "nowhere", tmp_path / "c", num_experts=4)


# ----------------------------------------------------------------------------- fuzzing

_INT_KEYS = {"step", "layer", "rank", "num_tokens", "topk", "logit_offset", "logit_bytes"}
_OPTIONAL = {"stage": "same", "block": "same", "num_tokens": "same", "topk": "same"}


def _megatron_expect(path, kind, value_kind):
    """Expectation of a structured mutation of the trace ``{file: [records]}`` (see _fuzz)."""
    depth = len(path)
    if depth == 2:                                               # a whole record
        return "any" if kind == "delete" else "raise"
    key = path[2]
    if key == "stage":
        return "same"
    if key == "block":
        if kind == "delete":
            return "same"
        return "any" if value_kind == "str" else "raise"
    if kind == "delete":
        if depth == 3:
            return _OPTIONAL.get(key, "raise")
        return "raise"                                           # a row or entry of a list
    if value_kind == "bad":
        return "raise"
    if value_kind == "maybe":
        return "any" if key == "step" else "raise"
    return "any"                                                 # another valid expert id


def _megatron_cases(rng, recs_by_file, n):
    """``n`` structured mutations: (description, mutated {file: records}, expectation)."""
    tree = {f: list(r) for f, r in recs_by_file.items()}
    all_paths = [p for p in _fuzz.paths(tree) if len(p) >= 2]
    cases = []
    while len(cases) < n:
        path = all_paths[int(rng.integers(len(all_paths)))]
        value = _fuzz.get(tree, path)
        r = rng.random()
        if r < 0.15:
            cases.append((f"delete {path}", _fuzz.delete(tree, path), _megatron_expect(path, "delete", None)))
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str, list, dict)):
            continue
        if isinstance(value, dict):
            swaps = [("bad", [value]), ("bad", 5), ("bad", None), ("bad", "x")]
        elif isinstance(value, str):
            swaps = [("bad", None), ("bad", 5), ("bad", True), ("bad", [value]), ("str", "mtp")]
        elif isinstance(value, list):
            swaps = [("bad", None), ("bad", 5), ("bad", "x"), ("bad", {"a": value}),
                     ("bad", value[:-1] + [value[-1] + 0.5] if value and not isinstance(value[-1], list) else 7.5)]
            if value and isinstance(value[0], list):               # a ragged row
                swaps.append(("bad", [value[0][:-1]] + value[1:]))
        else:
            swaps = [("bad", v) for _, v in _fuzz.bad_ints(value)] + [("maybe", v) for _, v in _fuzz.MAYBE_INTS]
            if "top_indices" in path:
                swaps += [("valid", (value + 1) % E), ("valid", -1)]
        vk, new = swaps[int(rng.integers(len(swaps)))]
        cases.append((f"{path} <- {_fuzz.describe_value(new)}", _fuzz.put(tree, path, new),
                      _megatron_expect(path, "set", vk)))
    return cases


def _write_trace(d, tree, sidecars):
    for name, recs in tree.items():
        with open(os.path.join(d, name), "w") as f:
            for r in recs:
                print(json.dumps(r), file=f)
    for name, data in sidecars.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def run_megatron_fuzz(tmp_path, importer, n_struct=200, n_bytes=60, seed=16):
    """Fuzz ``importer`` (import_megatron's signature); return [(description, outcome, detail)]."""
    rng = np.random.default_rng(seed)
    base = tmp_path / "base"
    base.mkdir()
    _write_rank(base, 0, [0, 1], np.random.default_rng(0))
    _write_rank(base, 2, [0, 1], np.random.default_rng(1))
    names = ["router_trace_rank0.jsonl", "router_trace_rank2.jsonl"]
    tree = {n: [json.loads(x) for x in (base / n).read_text().splitlines()] for n in names}
    texts = {n: (base / n).read_bytes() for n in names}
    sidecars = {f"logits_rank{r}.bin": (base / f"logits_rank{r}.bin").read_bytes() for r in (0, 2)}
    importer(base, tmp_path / "base_log", logits=True)
    baseline = _fuzz.snapshot(tmp_path / "base_log")
    results = []
    locators = names + list(sidecars)

    def run(desc, i, files, cars, expect):
        d = _fuzz.fresh(tmp_path / "cases", i)
        _write_trace(d, files, cars)
        outcome, detail = _fuzz.classify(lambda out: importer(d, out, logits=True), os.path.join(d, "log"),
                                         expect=expect, locators=locators, baseline=baseline)
        results.append((desc, outcome, detail))

    for i, (desc, t, expect) in enumerate(_megatron_cases(rng, tree, n_struct)):
        run(desc, i, t, sidecars, expect)
    for j, (kind, data) in enumerate(_fuzz.byte_mutations(rng, texts[names[0]], n_bytes)):
        same = _fuzz.json_lines_equal(texts[names[0]], data)
        expect = "raise" if same is None else ("same" if same else "any")
        d = _fuzz.fresh(tmp_path / "cases", n_struct + j)
        _write_trace(d, {names[1]: tree[names[1]]}, sidecars)
        with open(os.path.join(d, names[0]), "wb") as f:
            f.write(data)
        outcome, detail = _fuzz.classify(lambda out, d=d: importer(d, out, logits=True), os.path.join(d, "log"),
                                         expect=expect, locators=locators, baseline=baseline)
        results.append((f"bytes {kind}", outcome, detail))
    for j in range(20):                                          # the logits sidecar
        data = bytearray(sidecars["logits_rank0.bin"])
        if j % 2:
            data = data[: int(rng.integers(len(data)))]
        else:
            i = int(rng.integers(len(data)))
            data[i] ^= 1 << int(rng.integers(8))
        run(f"sidecar {'truncate' if j % 2 else 'flip'}", n_struct + n_bytes + j, tree,
            dict(sidecars, **{"logits_rank0.bin": bytes(data)}), "raise" if j % 2 else "any")
    return results


def test_fuzz_megatron_only_our_errors_or_a_correct_log(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)            # durability is not under test: keep it fast
    results = run_megatron_fuzz(tmp_path, import_megatron)
    bad = [r for r in results if r[1] not in _fuzz.ACCEPTABLE]
    assert not bad, f"{len(bad)} of {len(results)} mutations mishandled, e.g. {bad[:5]}"
    counts = _fuzz.tally([(o, d) for _, o, d in results])
    assert counts.get("refused", 0) > 100 and counts.get("accepted", 0) > 10   # both paths exercised


# ----------------------------------------------------------------------------- one test per fuzz finding
def _one_layer_trace(d, **changes):
    rec = {"step": 0, "block": "decoder", "layer": 0, "rank": 0, "num_tokens": 2, "topk": 2,
           "top_indices": [[0, 1], [2, 3]]}
    rec.update(changes)
    (d / "router_trace_rank0.jsonl").write_text(json.dumps(rec) + "\n")
    return d


@pytest.mark.parametrize("changes, error, match", [
    ({"step": 1.7}, TypeError, r"rank0.jsonl:1: 'step' must be an integer, got 1.7"),
    ({"step": 1.0}, TypeError, r"'step' must be an integer, got 1.0"),
    ({"topk": 1.5}, TypeError, r"'topk' must be an integer, got 1.5"),
    ({"layer": True}, TypeError, r"'layer' must be an integer, got True"),
    ({"top_indices": [[0, 1], [2, 3.7]]}, TypeError, r"'top_indices' must hold integers, found 3.7"),
    ({"top_indices": [[0, True], [2, 3]]}, TypeError, r"'top_indices' must hold integers, found True"),
    ({"top_indices": [[0, "1"], [2, 3]]}, TypeError, r"'top_indices' must hold integers, found str '1'"),
    ({"top_indices": [[0, 2**64 - 1], [2, 3]]}, ValueError, r"'top_indices' has an integer beyond the int64"),
    ({"top_indices": [[0, 2**70], [2, 3]]}, ValueError, r"'top_indices' has an integer beyond the int64"),
    ({"top_indices": [[0, float("inf")], [2, 3]]}, TypeError, r"'top_indices' must hold integers, found inf"),
    ({"top_indices": [[0, 1], [2]]}, ValueError, r"'top_indices' is ragged"),
    ({"top_indices": [[0, -2], [2, 3]]}, ValueError, r"'top_indices' has -2 at index \[0, 1\]"),
    ({"step": 2**63}, ValueError, r"'step' must be an integer >= 0 and <= 9223372036854775807"),
    ({"rank": 2**31}, ValueError, r"'rank' must be an integer >= 0 and <= 2147483647"),
    ({"rank": 1}, ValueError, r"'rank' is 1 in rank 0's trace file"),
    ({"layer": 10**9}, ValueError, r"'layer' must be an integer >= 0 and <= 999999999"),
    ({"topk": 3}, ValueError, r"'topk' is 3 but 'top_indices' has 2 columns"),
    ({"num_tokens": "2"}, TypeError, r"'num_tokens' must be an integer, got str '2'"),
    ({"block": None}, TypeError, r"'block' must be a string, got None"),
])
def test_a_bad_field_is_refused_naming_file_line_and_field(tmp_path, changes, error, match):
    _one_layer_trace(tmp_path, **changes)
    with pytest.raises(error, match=match):
        import_megatron(tmp_path, tmp_path / "log", num_experts=4)
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("text, error, match", [
    (b'{"step": 0, "layer": 0, "rank": 0, "top_indices": [[0, 1]], "stage": "\xff\xfe"}\n',
     ValueError, r"rank0.jsonl:1: not UTF-8 text \(byte \d+ of the line is 0xff\)"),
    (b"[" * 100000 + b"]" * 100000 + b"\n", ValueError, r"rank0.jsonl:1: JSON nested too deeply"),
    (b'{"step": 0, "layer": 0, "rank": 0, "top_indices": [[0, Infinity]]}\n',
     TypeError, r"rank0.jsonl:1: 'top_indices' must hold integers, found inf"),
    (b'{"step": 0, "layer": 0, "rank": 0, "top_indices": [[0, 1e400]]}\n',
     TypeError, r"rank0.jsonl:1: 'top_indices' must hold integers, found inf"),
    (b'[0, 1]\n', ValueError, r"rank0.jsonl:1: a router-trace record must be a JSON object, got a list of 2 items: \(0, 1\)"),
    (b'{"step": 0, "layer": 0, "top_indices": [[0, 1]]}\n', ValueError, r"rank0.jsonl:1: record has no 'rank' field"),
])
def test_corrupt_text_is_refused_naming_file_and_line(tmp_path, text, error, match):
    (tmp_path / "router_trace_rank0.jsonl").write_bytes(text)
    with pytest.raises(error, match=match):
        import_megatron(tmp_path, tmp_path / "log", num_experts=4)


def test_logit_fields_are_checked_before_anything_is_read(tmp_path):
    rng = np.random.default_rng(3)
    _write_rank(tmp_path, 0, [0], rng, layers=(0,))
    lines = [json.loads(x) for x in (tmp_path / "router_trace_rank0.jsonl").read_text().splitlines()]

    def rewrite(**changes):
        (tmp_path / "router_trace_rank0.jsonl").write_text(json.dumps(dict(lines[0], **changes)) + "\n")

    for key in ("logit_bytes", "logit_shape"):                    # a missing key: was KeyError
        rec = dict(lines[0])
        del rec[key]
        (tmp_path / "router_trace_rank0.jsonl").write_text(json.dumps(rec) + "\n")
        with pytest.raises(ValueError, match=f"rank0.jsonl:1: .*{key}"):
            import_megatron(tmp_path, tmp_path / "log", logits=True)
    rewrite(logit_shape=[T, 2**31 - 1])                            # a huge expert count: was MemoryError later
    with pytest.raises(ValueError, match=r"'logit_shape'\[1\] \(experts\) must be an integer >= 1 and <="):
        import_megatron(tmp_path, tmp_path / "log", logits=True)
    rewrite(logit_offset=2**63)                                    # was OverflowError
    with pytest.raises(ValueError, match=r"rank0.jsonl:1: .*beyond the end of the file"):
        import_megatron(tmp_path, tmp_path / "log", logits=True)
    rewrite(rank=0)
    (tmp_path / "logits_rank0.bin").unlink()                       # was FileNotFoundError of the sidecar
    with pytest.raises(ValueError, match=r"rank0.jsonl:1: .*logits_rank0.bin: the logits sidecar does not exist"):
        import_megatron(tmp_path, tmp_path / "log", logits=True)
    assert not (tmp_path / "log").exists()


def test_read_bf16_sizes_in_exact_integers(tmp_path):
    p = tmp_path / "l.bin"
    p.write_bytes(b"\x00" * 8)
    # 2**32 * 2**32 * 2 wraps to 0 in int64: an overflowing product must not pass for an empty block
    with pytest.raises(ValueError, match=r"needs 36893488147419103232 bytes"):
        read_bf16(p, 0, 0, [2**32, 2**32])
    with pytest.raises(TypeError, match=r"`shape`\[0\] must be an integer, got 2.0"):
        read_bf16(p, 0, 8, [2.0, 2])
    with pytest.raises(TypeError, match=r"`offset` must be an integer, got True"):
        read_bf16(p, True, 8, [2, 2])


def test_a_failed_import_leaves_nothing(tmp_path):
    rng = np.random.default_rng(4)
    _write_rank(tmp_path, 0, [0, 1, 2], rng, layers=(0,))
    sidecar = tmp_path / "logits_rank0.bin"
    sidecar.write_bytes(sidecar.read_bytes()[:-2])                 # only the last step's block is cut
    with pytest.raises(ValueError, match="the sidecar is truncated"):
        import_megatron(tmp_path, tmp_path / "log", logits=True)
    # steps 0 and 1 were committed while importing, but no partial log appears
    assert not (tmp_path / "log").exists()
    assert not [p.name for p in tmp_path.iterdir() if "importing" in p.name]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        import_megatron(tmp_path, tmp_path / "full", num_experts=E)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_megatron(tmp_path, empty, num_experts=E).num_tokens == 3 * T
    assert open_log(empty).manifest.topk_order == "unordered"     # routing_map.nonzero(): ascending ids
