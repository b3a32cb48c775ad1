"""The issue-15 entry points under corrupted input: only our ValueError/TypeError (naming the place) or a log.

Every field of the upstream fixtures is replaced by values no integer field accepts, or removed; the
importer must refuse naming the request/file (never a foreign exception, never a half-written log) or
write a log that opens.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from infomoe.logs.ingest import (
    import_megatron,
    import_megatron_requests,
    import_sglang,
    import_sglang_requests,
    import_vllm,
)

from . import _fuzz

FIX = Path(__file__).parent / "fixtures"
JUNK = [("float", 1.5), ("bool", True), ("str", "7"), ("None", None), ("2**64", 2**64), ("-5", -5), ("list", [3]),
        ("dict", {"a": 1}), ("nan", float("nan")), ("b64", "!!not base64!!")]


def _mutations(tree, rng, n):
    paths = _fuzz.paths(tree)
    picks = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    for i in picks:
        path = paths[int(i)]
        yield f"del {path}", _fuzz.delete(tree, path)
        name, value = JUNK[int(rng.integers(len(JUNK)))]
        yield f"{path} <- {name}", _fuzz.put(tree, path, value)


def _run(tmp_path, cases, call, locators):
    results = []
    for i, (desc, tree) in enumerate(cases):
        d = _fuzz.fresh(tmp_path, i)
        out = os.path.join(d, "log")
        outcome, detail = _fuzz.classify(lambda out, tree=tree: call(tree, out), out, expect="any",
                                         locators=locators, baseline=None)
        if outcome == "refused":
            assert not os.path.exists(out), f"{desc}: refused but left {out}"
        results.append((desc, outcome, detail))
        shutil.rmtree(d)
    bad = [r for r in results if r[1] not in _fuzz.ACCEPTABLE]
    assert not bad, f"{len(bad)} of {len(results)} mutations mishandled, e.g. {bad[:5]}"
    return _fuzz.tally([(o, d) for _, o, d in results])


def test_fuzz_sglang_routed_experts(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    tree = json.loads((FIX / "sglang_routed_experts.json").read_text())
    counts = _run(tmp_path, _mutations(tree, np.random.default_rng(0), 40),
                  lambda t, out: import_sglang_requests(t, out, num_experts=5, num_layers=3, top_k=2),
                  ["request ", "`responses`"])
    assert counts.get("refused", 0) > 10


def test_fuzz_megatron_completions(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    tree = json.loads((FIX / "megatron_completions.json").read_text())["choices"]
    counts = _run(tmp_path, _mutations(tree, np.random.default_rng(1), 40),
                  lambda t, out: import_megatron_requests(t, out, num_experts=8), ["request ", "`requests`"])
    assert counts.get("refused", 0) > 10


def test_fuzz_vllm_request_dicts(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    spec = json.loads((FIX / "vllm_requests.json").read_text())
    tree = [dict(r, routed_experts=np.load(FIX / r["file"]).tolist()) for r in spec["requests"]]
    counts = _run(tmp_path, _mutations(tree, np.random.default_rng(2), 40),
                  lambda t, out: import_vllm(t, out, num_experts=60), ["request ", "`outputs`"])
    assert counts.get("refused", 0) > 10


@pytest.mark.parametrize("fixture, kw", [
    ("megatron_pp", {"num_experts": 8, "layer_offsets": {1: 2}, "pipelines": [[0, 1]]}),
    ("megatron_microbatch", {"logits": True}),
    ("megatron_mtp", {"num_experts": 8, "block": "mtp"}),
])
def test_fuzz_megatron_traces_with_the_new_options(tmp_path, monkeypatch, fixture, kw):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    src = FIX / fixture
    files = sorted(src.glob("router_trace_rank*.jsonl"))
    trees = {f.name: [json.loads(x) for x in f.read_text().splitlines()] for f in files}
    rng = np.random.default_rng(3)
    cases = []
    for name, recs in trees.items():
        for desc, t in _mutations(recs, rng, 12):
            cases.append((f"{name}: {desc}", {**trees, name: t}))

    def call(t, out):
        d = Path(out).parent / "src"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for f in src.iterdir():
            if f.suffix == ".bin":
                shutil.copy(f, d / f.name)
        for name, recs in t.items():
            (d / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
        return import_megatron(d, out, **kw)

    counts = _run(tmp_path, cases, call, ["router_trace_rank", "`pipelines`", "`layer_offsets`"])
    assert counts.get("refused", 0) > 5


def test_new_arguments_are_checked_before_anything_is_written(tmp_path):
    mb, pp = FIX / "megatron_microbatch", FIX / "megatron_pp"
    cases = [
        (lambda o: import_megatron(mb, o, num_experts=8, layer_base=2), ValueError, r"`layer_base` must be .* <= 1"),
        (lambda o: import_megatron(mb, o, num_experts=8, layer_offsets=[2]), TypeError, "`layer_offsets` must map"),
        (lambda o: import_megatron(mb, o, num_experts=8, layer_offsets={0: 1.5}), TypeError, r"`layer_offsets`\[0\]"),
        (lambda o: import_megatron(pp, o, num_experts=8, pipelines=[[0]]), ValueError,
         r"does not list the ranks \[1\]"),
        (lambda o: import_megatron(pp, o, num_experts=8, pipelines="01"), TypeError, "`pipelines` must be a list"),
        (lambda o: import_megatron(pp, o, num_experts=8, pipelines=[[0, 0]]), ValueError, "lists rank 0 twice"),
        (lambda o: import_megatron(pp, o, num_experts=8, pipelines=[[0, True]]), TypeError, r"`pipelines`\[0\]\[1\]"),
        (lambda o: import_sglang_requests({"meta_info": {}}, o, num_experts=5), TypeError,
         "`responses` must be a list"),
        (lambda o: import_sglang_requests([{"meta_info": {}}], o, num_experts=5), ValueError,
         r"request 0: no meta_info\['routed_experts'\]"),
        (lambda o: import_sglang_requests(["AAAAAA=="], o, num_experts=5), ValueError, "`num_layers` and `top_k`"),
        (lambda o: import_sglang_requests(["AAA"], o, num_experts=5, num_layers=1, top_k=1), ValueError,
         "request 0: 'routed_experts' is not base64"),
        (lambda o: import_sglang_requests(["AAAA"], o, num_experts=5, num_layers=1, top_k=1), ValueError,
         "not a whole number of int32 ids"),
        (lambda o: import_sglang_requests(["AAAAAAAAAAAAAAAA"], o, num_experts=5, num_layers=1, top_k=2), ValueError,
         "not a whole number of rows"),
        (lambda o: import_sglang_requests(["AAAAAA=="], o, num_experts=5, num_layers=1, top_k=1, start_len=-1),
         ValueError, "`start_len` must be an integer >= 0"),
        (lambda o: import_megatron_requests([{"text": ""}], o, num_experts=8), ValueError, "request 0: no 'moe_topk"),
        (lambda o: import_megatron_requests([{"choices": []}], o, num_experts=8), ValueError, "pass its 'choices'"),
        (lambda o: import_megatron_requests([{"moe_topk_indices": [[[0.5]]]}], o, num_experts=8), TypeError,
         "request 0: 'moe_topk_indices'"),
        (lambda o: import_vllm([np.ones((2, 2, 2), int)], o, num_experts=4, prompt_start=[0, 1]), ValueError,
         "`prompt_start` has 2 entries for 1 requests"),
        (lambda o: import_vllm([np.ones((2, 2, 2), int)], o, num_experts=4, moe_layers=[0], layer_ids=[0, 1]),
         ValueError, "either `moe_layers` or `layer_ids`"),
        (lambda o: import_vllm([np.ones((2, 2, 2), int)], o, num_experts=4, moe_layers={"x": 1}), TypeError,
         "model config 'num_hidden_layers' must be an integer, got None"),
        (lambda o: import_vllm([np.zeros((2, 2, 2), int)], o, num_experts=4), ValueError, "no MoE layer left"),
        (lambda o: import_sglang(FIX / "sglang_stat_tp2", o, top_k=2, count_replicas=4), ValueError,
         r"stat.pt: 'logical_count'\[.*\] = \d+ is not a multiple of `count_replicas`=4"),
        (lambda o: import_sglang(FIX / "sglang_stat_tp2", o, top_k=2, count_replicas=0), ValueError,
         "`count_replicas` must be an integer >= 1"),
        (lambda o: import_sglang(FIX / "sglang_per_pass", o), ValueError, "`top_k` is required for per_pass"),
    ]
    for i, (call, error, match) in enumerate(cases):
        out = tmp_path / f"log{i}"
        with pytest.raises(error, match=match):
            call(out)
        assert not out.exists()


def test_fuzz_sglang_per_pass_records(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    dump = torch.load(FIX / "sglang_per_pass" / "rank0.pt", weights_only=True)
    rec = dump["records"][0]
    cases = [("count float", dict(rec, global_physical_count=rec["global_physical_count"].float())),
             ("count -1", dict(rec, global_physical_count=rec["global_physical_count"] - 9)),
             ("count shape", dict(rec, global_physical_count=rec["global_physical_count"][:, :3])),
             ("fpid str", dict(rec, forward_pass_id="0")), ("rank bool", dict(rec, rank=True)),
             ("no fpid", {k: v for k, v in rec.items() if k != "forward_pass_id"})]
    for i, (desc, r) in enumerate(cases):
        d = tmp_path / f"c{i}"
        d.mkdir()
        torch.save(dict(dump, records=[r]), d / "r0.pt")
        with pytest.raises((ValueError, TypeError), match=r"r0.pt record 0: "):
            import_sglang(d, d / "log", top_k=2)
        assert not (d / "log").exists(), desc
