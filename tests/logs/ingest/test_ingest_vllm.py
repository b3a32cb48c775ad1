"""vLLM routed_experts arrays -> routing logs."""

import io
import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from infomoe.logs import open_log
from infomoe.logs.ingest import import_vllm

from . import _fuzz


def _reqs(rng, lens, layers=3, k=2, e=8):
    return [rng.integers(0, e, size=(n, layers, k)).astype(np.int32) for n in lens]


def test_arrays_columns_and_sharding(tmp_path):
    rng = np.random.default_rng(0)
    reqs = _reqs(rng, [4, 6, 3])
    res = import_vllm(reqs, tmp_path / "log", num_experts=8, layer_ids=[1, 3, 5], request_ids=[10, 11, 12],
                      labels=[0, 1, 0], shard_tokens=8)
    assert (res.num_tokens, res.num_shards) == (13, 2)                # 4+6 | 3
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (1, 3, 5) and log.manifest.source == "vllm"
    d = log.read()
    for j, lid in enumerate((1, 3, 5)):
        np.testing.assert_array_equal(d["expert_ids"][lid], np.concatenate([r[:, j] for r in reqs]))
    np.testing.assert_array_equal(d["seq_id"], [10] * 4 + [11] * 6 + [12] * 3)
    np.testing.assert_array_equal(d["position"], list(range(4)) + list(range(6)) + list(range(3)))
    np.testing.assert_array_equal(d["label"], [0] * 4 + [1] * 6 + [0] * 3)
    np.testing.assert_array_equal(log.counts(3), np.bincount(np.concatenate([r[:, 1].ravel() for r in reqs]),
                                                             minlength=8))


def test_request_outputs_and_npy_files(tmp_path):
    rng = np.random.default_rng(1)
    a, b = _reqs(rng, [3, 2])
    outs = [SimpleNamespace(prompt_token_ids=[5, 6], outputs=[SimpleNamespace(token_ids=[7, 8], routed_experts=a)]),
            SimpleNamespace(prompt_token_ids=[9], outputs=[SimpleNamespace(token_ids=[1, 2], routed_experts=b)])]
    import_vllm(outs, tmp_path / "log", num_experts=8)
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["token_id"], [5, 6, 7, 9, 1])     # last sampled token never routed
    np.save(tmp_path / "r0.npy", a)
    import_vllm([tmp_path / "r0.npy"], tmp_path / "log2", num_experts=8)
    np.testing.assert_array_equal(open_log(tmp_path / "log2").read()["expert_ids"][0], a[:, 0])


def test_bad_inputs(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="routed_experts \\[seq_len, layer_num, topk\\] must be 3-D"):
        import_vllm([np.zeros((3, 2), int)], tmp_path / "a", num_experts=4)
    with pytest.raises(ValueError, match="expert id outside"):
        import_vllm([np.full((2, 1, 1), 4)], tmp_path / "b", num_experts=4)
    with pytest.raises(ValueError, match="request 1 has \\[layers, topk\\]"):
        import_vllm([np.zeros((2, 3, 2), int), np.zeros((2, 2, 2), int)], tmp_path / "c", num_experts=4)
    with pytest.raises(TypeError, match="request 0: routed_experts .* must hold integers"):
        import_vllm([np.zeros((2, 3, 2))], tmp_path / "d", num_experts=4)
    with pytest.raises(ValueError, match="`labels` has 1 entries for 2 requests"):
        import_vllm(_reqs(rng, [1, 1]), tmp_path / "e", num_experts=8, labels=[0])
    with pytest.raises(ValueError, match="enable-return-routed-experts"):
        import_vllm([SimpleNamespace(routed_experts=None)], tmp_path / "f", num_experts=4)
    with pytest.raises(ValueError, match="`outputs` is empty"):
        import_vllm([], tmp_path / "g", num_experts=4)
    with pytest.raises(ValueError, match="num_experts"):
        import_vllm(_reqs(rng, [1]), tmp_path / "h", num_experts=0)


# ----------------------------------------------------------------------------- fuzzing

E = 8


def _array_swaps(a, rng):
    """Mutations of one routed_experts array: (mutated, expectation)."""
    big = a.astype(np.uint64)
    big.flat[int(rng.integers(a.size))] = 2**64 - 1
    out_of_range = a.copy()
    out_of_range.flat[int(rng.integers(a.size))] = rng.choice([E, -5, 2**31 - 1])
    dropped = a.copy()
    dropped.flat[int(rng.integers(a.size))] = -1
    return [(a + 0.5, "raise"), (a.astype(np.float64), "raise"), (a.astype(bool), "raise"), (big, "raise"),
            (out_of_range, "raise"), (a.astype(str), "raise"), (a.astype(object), "raise"), (a[:, :, 0], "raise"),
            (a[None], "raise"), (a[:, :-1], "raise"), (a[:, :, :1], "raise"), (None, "raise"), (1.5, "raise"),
            ("not a file", "raise"), (a.astype(np.uint8), "same"), (a.astype(np.int64), "same"),
            (a.tolist(), "same"), (dropped, "any"), (a[:0], "any"), (a[:-1], "any")]


def run_vllm_fuzz(tmp_path, importer, n_struct=200, n_bytes=50, seed=16):
    """Fuzz ``importer`` (import_vllm's signature); return [(description, outcome, detail)]."""
    rng = np.random.default_rng(seed)
    data = np.random.default_rng(0)
    arrays = [data.integers(0, E, size=(n, 3, 2)).astype(np.int32) for n in (4, 6, 3)]
    npy = tmp_path / "r1.npy"
    np.save(npy, arrays[1])
    base_items = [arrays[0], npy, SimpleNamespace(routed_experts=arrays[2])]
    kwargs = dict(num_experts=E, layer_ids=[1, 3, 5], request_ids=[10, 11, 12], labels=[0, 1, 0], shard_tokens=8)
    importer(base_items, tmp_path / "base_log", **kwargs)
    baseline = _fuzz.snapshot(tmp_path / "base_log")
    prompts = [data.integers(0, 1000, size=n - 1).tolist() for n in (4, 6, 3)]
    req_outputs = [SimpleNamespace(prompt_token_ids=p, outputs=[SimpleNamespace(token_ids=[7, 8], routed_experts=a)])
                   for p, a in zip(prompts, arrays)]
    importer(req_outputs, tmp_path / "base_log_req", num_experts=E)
    baseline_req = _fuzz.snapshot(tmp_path / "base_log_req")
    results = []

    def run(desc, i, items, kw, expect, locators, base=baseline):
        out = os.path.join(_fuzz.fresh(tmp_path / "cases", i), "log")
        outcome, detail = _fuzz.classify(lambda o: importer(items, o, **kw), out, expect=expect,
                                         locators=locators, baseline=base)
        results.append((desc, outcome, detail))

    argument_swaps = {
        "num_experts": [(v, "raise") for _, v in _fuzz.bad_ints(E)] + [(0, "raise"), (2**31, "raise"),
                                                                     (2**63, "raise"), (16, "any")],
        "shard_tokens": [(v, "any" if isinstance(v, int) and v > 8 else "raise") for _, v in _fuzz.bad_ints(8)]
        + [(0, "raise"), (1, "any")],
    }
    for i in range(n_struct):
        r = rng.random()
        if r < 0.3:                                              # one request's array
            j = int(rng.integers(2)) * 2                         # the in-memory array or the CompletionOutput's
            swaps = _array_swaps(arrays[j], rng)
            new, expect = swaps[int(rng.integers(len(swaps)))]
            items = list(base_items)
            items[j] = new if j == 0 else SimpleNamespace(routed_experts=new)
            if j == 0 and isinstance(new, str):
                expect = "raise"
            run(f"request {j} <- {_fuzz.describe_value(new)}", i, items, kwargs, expect, [f"request {j}"])
        elif r < 0.55:                                           # a per-request or per-layer argument
            name = ["layer_ids", "request_ids", "labels"][int(rng.integers(3))]
            seq = list(kwargs[name])
            k = int(rng.integers(len(seq)))
            choice = rng.random()
            if choice < 0.15:
                new, expect, desc = seq[:-1], "raise", "shortened"
            elif choice < 0.25:
                new, expect, desc = seq[:1] * len(seq), ("any" if name == "labels" else "raise"), "duplicated"
            elif choice < 0.35:
                new, expect, desc = 5, "raise", "a scalar"
            else:
                pool = [(v, "raise") for _, v in _fuzz.bad_ints(seq[k])] + [(10**9, "raise"), (2**31, "raise")]
                if name == "request_ids":
                    pool[-2:] = [(10**9, "any"), (2**31, "any"), (2**63, "raise")]
                if name == "labels":                             # int32 column, -1 = unlabelled
                    pool = [(v, "any" if v == 10**9 else e) for v, e in pool if v != -5] + [(-1, "any"), (-2, "raise")]
                v, expect = pool[int(rng.integers(len(pool)))]
                new = list(seq)
                new[k] = v
                desc = f"[{k}] <- {_fuzz.describe_value(v)}"
            run(f"{name} {desc}", i, base_items, dict(kwargs, **{name: new}), expect, [f"`{name}`"])
        elif r < 0.65:
            name = list(argument_swaps)[int(rng.integers(2))]
            v, expect = argument_swaps[name][int(rng.integers(len(argument_swaps[name])))]
            run(f"{name} <- {_fuzz.describe_value(v)}", i, base_items, dict(kwargs, **{name: v}), expect,
                [f"`{name}`", "shard_tokens"])
        else:                                                    # a RequestOutput's fields
            j = int(rng.integers(3))
            req = req_outputs[j]
            comp = req.outputs[0]
            field = ["prompt_token_ids", "token_ids", "outputs", "routed_experts"][int(rng.integers(4))]
            if field in ("prompt_token_ids", "token_ids"):
                toks = list(getattr(req if field == "prompt_token_ids" else comp, field))
                k = int(rng.integers(len(toks)))
                pool = [v for _, v in _fuzz.bad_ints(toks[k])] + [2**31, -1]
                toks[k] = pool[int(rng.integers(len(pool)))]
                new_req = (SimpleNamespace(prompt_token_ids=toks, outputs=req.outputs) if field == "prompt_token_ids"
                           else SimpleNamespace(prompt_token_ids=req.prompt_token_ids,
                                                outputs=[SimpleNamespace(token_ids=toks, routed_experts=comp.routed_experts)]))
                expect, desc = "raise", f"{field}[{k}] <- {_fuzz.describe_value(toks[k])}"
            elif field == "outputs":
                v = [[], None, 5, "x"][int(rng.integers(4))]
                new_req, expect, desc = SimpleNamespace(prompt_token_ids=req.prompt_token_ids, outputs=v), "raise", \
                    f"outputs <- {v!r}"
            else:
                swaps = _array_swaps(comp.routed_experts, rng)
                new, expect = swaps[int(rng.integers(len(swaps)))]
                if isinstance(new, list) or new is None or isinstance(new, (str, float)):
                    expect = "same" if isinstance(new, list) else "raise"
                new_req = SimpleNamespace(prompt_token_ids=req.prompt_token_ids,
                                          outputs=[SimpleNamespace(token_ids=comp.token_ids, routed_experts=new)])
                desc = f"routed_experts <- {_fuzz.describe_value(new)}"
            items = list(req_outputs)
            items[j] = new_req
            run(f"RequestOutput {j} {desc}", n_struct + i, items, dict(num_experts=E), expect, [f"request {j}"],
                base=baseline_req)
    original = npy.read_bytes()
    for j, (kind, raw) in enumerate(_fuzz.byte_mutations(rng, original, n_bytes)):
        f = tmp_path / f"m{j}.npy"
        f.write_bytes(raw)
        try:
            with warnings.catch_warnings():                       # numpy warns on some corrupt headers
                warnings.simplefilter("ignore")
                loaded = np.load(f, allow_pickle=False)
            same = isinstance(loaded, np.ndarray) and loaded.dtype == arrays[1].dtype and \
                loaded.shape == arrays[1].shape and np.array_equal(loaded, arrays[1])
            expect = "same" if same else "any"
        except Exception:
            expect = "raise"
        run(f".npy bytes {kind}", 2 * n_struct + j, [arrays[0], f, base_items[2]], kwargs, expect,
            [f"request 1 ({f})"])
    return results


def test_fuzz_vllm_only_our_errors_or_a_correct_log(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)            # durability is not under test: keep it fast
    results = run_vllm_fuzz(tmp_path, import_vllm)
    bad = [r for r in results if r[1] not in _fuzz.ACCEPTABLE]
    assert not bad, f"{len(bad)} of {len(results)} mutations mishandled, e.g. {bad[:5]}"
    counts = _fuzz.tally([(o, d) for _, o, d in results])
    assert counts.get("refused", 0) > 80 and counts.get("accepted", 0) > 10   # both paths exercised


# ----------------------------------------------------------------------------- one test per fuzz finding
@pytest.mark.parametrize("array, error, match", [
    (np.full((2, 1, 2), 1.7), TypeError, r"request 0: routed_experts .* must hold integers, .*dtype float64"),
    (np.full((2, 1, 2), 1.0), TypeError, r"must hold integers, .*dtype float64"),
    (np.ones((2, 1, 2), bool), TypeError, r"must hold integers, .*dtype bool"),
    (np.full((2, 1, 2), 2**64 - 1, np.uint64), ValueError, r"unsigned value 18446744073709551615, beyond the int64"),
    ([[[0, True]], [[1, 2]]], TypeError, r"must hold integers, found True"),
    ([[[0, 1]], [[1]]], ValueError, r"request 0: routed_experts .* is ragged"),
    ([[[0, 2**70]], [[1, 2]]], ValueError, r"beyond the int64 range"),
])
def test_routed_experts_are_never_truncated_or_wrapped(tmp_path, array, error, match):
    with pytest.raises(error, match=match):
        import_vllm([array], tmp_path / "log", num_experts=4)
    assert not (tmp_path / "log").exists()


def test_vllm_dtypes_are_read_exactly(tmp_path):
    a = np.array([[[3, 1]], [[0, 2]]], np.uint8)                  # vLLM's dtype below 256 experts
    import_vllm([a, torch_or_list(a)], tmp_path / "log", num_experts=4)
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["expert_ids"][0], [[3, 1], [0, 2], [3, 1], [0, 2]])


def torch_or_list(a):
    """The same ids as a torch tensor (if torch is installed) or a nested list."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return a.tolist()
    return torch.from_numpy(a.astype(np.int32))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(layer_ids=[10**9]), ValueError, r"`layer_ids`\[0\] must be an integer >= 0 and <= 999999999"),
    (dict(layer_ids=[1.7]), TypeError, r"`layer_ids`\[0\] must be an integer, got 1.7"),
    (dict(request_ids=[1.7]), TypeError, r"`request_ids`\[0\] must be an integer, got 1.7"),
    (dict(request_ids=[2**63]), ValueError, r"`request_ids`\[0\] must be an integer >= 0 and <= 9223372036854775807"),
    (dict(labels=[True]), TypeError, r"`labels`\[0\] must be an integer, got True"),
    (dict(labels=[2**31]), ValueError, r"`labels`\[0\] must be an integer >= -1 and <= 2147483647"),
    (dict(token_ids=[[5, 2**31]]), ValueError, r"`token_ids`\[0\] has 2147483648 at index \[1\]"),
    (dict(token_ids=[[5, 6.0]]), TypeError, r"`token_ids`\[0\] must hold integers, found 6.0"),
    (dict(token_ids=5), TypeError, r"`token_ids` must be a sequence with one entry per request"),
    (dict(num_experts=2**31 - 1), ValueError, r"`num_experts` must be an integer >= 1 and <="),
    (dict(num_experts=4.0), TypeError, r"`num_experts` must be an integer, got 4.0"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, error, match):
    kw = dict(num_experts=4)
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        import_vllm([np.zeros((2, 1, 2), np.int32)], tmp_path / "log", **kw)
    assert not (tmp_path / "log").exists()


def test_request_output_token_ids_are_checked(tmp_path):
    a = np.zeros((3, 1, 2), np.int32)
    for prompt, match in (([5, True], r"request 0: prompt_token_ids must hold integers, found True"),
                          ([5, 2**64 - 1], r"request 0: prompt_token_ids has an integer beyond the int64"),
                          ([5, -1], r"request 0: prompt_token_ids has -1 at index \[1\]")):
        out = SimpleNamespace(prompt_token_ids=prompt, outputs=[SimpleNamespace(token_ids=[7, 8], routed_experts=a)])
        with pytest.raises((TypeError, ValueError), match=match):
            import_vllm([out], tmp_path / "log", num_experts=4)
    with pytest.raises(ValueError, match=r"request 0: `outputs` must be a non-empty list"):
        import_vllm([SimpleNamespace(prompt_token_ids=[1], outputs=5)], tmp_path / "log", num_experts=4)


def test_corrupt_npy_files_are_refused_naming_the_file(tmp_path):
    a = np.zeros((3, 1, 2), np.int32)
    np.save(tmp_path / "ok.npy", a)
    raw = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match=r"request 0 \(.*cut.npy\): the .npy file holds 20 bytes of data"):
        import_vllm([tmp_path / "cut.npy"], tmp_path / "log", num_experts=4)
    (tmp_path / "nest.npy").write_bytes(raw[:20] + b"[" * 50 + raw[70:])
    with pytest.raises(ValueError, match=r"nest.npy\): not a readable .npy file"):
        import_vllm([tmp_path / "nest.npy"], tmp_path / "log", num_experts=4)
    np.save(tmp_path / "obj.npy", np.array([[[1, None]]], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match=r"obj.npy\): routed_experts must hold integers, the file holds dtype object"):
        import_vllm([tmp_path / "obj.npy"], tmp_path / "log", num_experts=4)
    head = io.BytesIO()                                           # a header claiming 2**40 rows: nothing allocated
    np.lib.format.write_array_header_1_0(head, {"descr": "<i4", "fortran_order": False, "shape": (2**40, 1, 2)})
    (tmp_path / "huge.npy").write_bytes(head.getvalue() + a.tobytes())
    with pytest.raises(ValueError, match=r"huge.npy\): the .npy file holds 24 bytes of data, its header "
                                         r"\(1099511627776, 1, 2\) int32 needs 8796093022208"):
        import_vllm([tmp_path / "huge.npy"], tmp_path / "log", num_experts=4)
    with pytest.raises(FileNotFoundError, match=r"request 0 \(.*missing.npy\): the .npy file does not exist"):
        import_vllm([tmp_path / "missing.npy"], tmp_path / "log", num_experts=4)
    assert not (tmp_path / "log").exists()


def test_a_failure_after_committed_shards_leaves_nothing(tmp_path):
    reqs = [np.zeros((4, 1, 2), np.int32), np.zeros((4, 1, 2), np.int32), np.full((4, 1, 2), 9, np.int32)]
    with pytest.raises(ValueError, match=r"routed_experts of request 2 has an expert id outside \[-1, 4\): 9"):
        import_vllm(reqs, tmp_path / "log", num_experts=4, shard_tokens=4)   # 2 shards written first
    assert not (tmp_path / "log").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
    with pytest.raises(TypeError, match="`outputs` must be a list"):
        import_vllm("r0.npy", tmp_path / "log", num_experts=4)
