"""Counts mode: DeviceTables count what count_shard counts, and the recorder's tables log reports the same."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")

from infomoe.logs import CountSpec, LayerSpec, Manifest, analyze_log, count_shard, open_log  # noqa: E402
from infomoe.logs._uncertainty import token_groups  # noqa: E402
from infomoe.logs.export import RoutingRecorder, tiny_model  # noqa: E402
from infomoe.logs.export import _device_tables  # noqa: E402
from infomoe.logs.export._device_tables import DeviceTables  # noqa: E402


def _chunks(d, sizes, seq):
    """Split the synthetic routing ``d`` into host chunks of the given sizes."""
    a = 0
    for n in sizes:
        b = a + n
        yield {"expert_ids": {l: d["ids"][a:b, l] for l in range(3)}, "valid": d["valid"][a:b],
               "token_id": d["tok"][a:b], "position": d["pos"][a:b], "label": d["lab"][a:b],
               "seq_id": seq[a:b], "router_logits": {l: d["logits"][a:b, l].astype(np.float32) for l in range(3)}}
        a = b


def _device_count(spec, chunks):
    dev = DeviceTables(spec, "cpu")
    for c in chunks:
        n = c["valid"].shape[0]
        t = lambda a: None if a is None else torch.as_tensor(np.asarray(a))  # noqa: E731
        lids = [s.layer_id for s in spec.layers]
        lg = c["router_logits"]
        dev.add([t(c["expert_ids"][l]) for l in lids],
                groups=t(token_groups(c, n, spec.groups).astype(np.int64)), valid=t(c["valid"]),
                token_id=t(c["token_id"]), position=t(c["position"]), label=t(c["label"]),
                router_logits=None if lg is None else [t(lg[l]) for l in lids])
    return dev.result()


def _spec(score_function="softmax", physical=False, **options):
    if physical:  # 6 physical slots of 3 logical experts: replicas merge
        m = Manifest(source="t", layers=tuple(LayerSpec(l, 6, 2) for l in range(3)), expert_id_space="physical",
                     physical_to_logical={l: [0, 1, 2, 0, 1, 2] for l in range(3)})
    else:
        m = Manifest(source="t", layers=tuple(LayerSpec(l, 6, 2) for l in range(3)), score_function=score_function)
    return CountSpec.from_manifest(m, **options)


@pytest.mark.parametrize("case", ["softmax", "sigmoid", "physical", "sparse", "small-buckets"])
def test_device_tables_equal_count_shard(case, rich_routing, assert_tables_equal, monkeypatch):
    d = rich_routing(np.random.default_rng(3), 2500)
    seq = np.repeat(np.arange(50), 50)
    options = {}
    if case == "sparse":  # every grouped table sparse, with buffer compactions and an oversized pass
        monkeypatch.setattr(_device_tables, "DENSE_CELLS", 0)
        monkeypatch.setattr(_device_tables, "SPARSE_BUFFER", 700)
    if case == "small-buckets":  # folded token ids and labels, few groups, coarse positions
        options = dict(token_buckets=16, label_buckets=2, groups=5, position_edges=(1, 10, 100))
    spec = _spec(score_function="sigmoid" if case == "sigmoid" else "softmax", physical=case == "physical",
                 **options)
    sizes = (900, 1, 1200, 399)
    host = sum(count_shard(c, spec=spec) for c in _chunks(d, sizes, seq))
    device = _device_count(spec, _chunks(d, sizes, seq))
    assert device.tokens == int(d["valid"].sum()) and device.load[0].sum() > 0
    assert (device.prob_sum[1] is None) == (case == "physical")  # no soft gate over replicas
    if case == "small-buckets":
        assert device.token_ids_folded > 0 and device.labels_folded > 0
    assert_tables_equal(host, device)


def test_device_tables_start_afresh_after_each_result(rich_routing, assert_tables_equal):
    d = rich_routing(np.random.default_rng(4), 600)
    seq = np.repeat(np.arange(12), 50)
    spec = _spec()
    dev = DeviceTables(spec, "cpu")
    before = dev.nbytes
    for _ in range(2):
        c = next(_chunks(d, (300,), seq))
        t = lambda a: torch.as_tensor(np.asarray(a))  # noqa: E731
        dev.add([t(c["expert_ids"][l]) for l in range(3)], groups=t(token_groups(c, 300, 64).astype(np.int64)),
                valid=t(c["valid"]), token_id=t(c["token_id"]))
        assert dev.tokens_added == 300 and dev.nbytes > before
        held = dev.nbytes
        first = dev.result()
        assert dev.tokens_added == 0 and dev.flushed_nbytes == held and dev.nbytes == before
    assert_tables_equal(first, _device_count(spec, [{**c, "label": None, "position": None, "router_logits": None}]))


def test_bad_ids_and_undefined_gates_raise_at_result():
    spec = _spec()
    dev = DeviceTables(spec, "cpu")
    ids = [torch.tensor([[0, 1], [6, 2]])] + [torch.tensor([[0, 1], [1, 2]])] * 2
    dev.add(ids, groups=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"layer 0: 1 expert id\(s\) outside \[-1, 5\]"):
        dev.result()
    assert dev.tokens_added == 0  # discarded
    lg = torch.zeros(2, 6)
    lg[1] = float("-inf")
    dev.add([torch.tensor([[0, 1], [1, 2]])] * 3, groups=torch.zeros(2, dtype=torch.int64),
            router_logits=[lg, None, None])
    with pytest.raises(ValueError, match=r"layer 0: router logits of 1 token\(s\) give no defined gate"):
        dev.result()
    # a padded token's logits are never looked at
    dev.add([torch.tensor([[0, 1], [1, 2]])] * 3, groups=torch.zeros(2, dtype=torch.int64),
            valid=torch.tensor([True, False]), router_logits=[lg, None, None])
    assert dev.result().logit_tokens[0].sum() == 1
    with pytest.raises(TypeError, match="`spec` must be a CountSpec"):
        DeviceTables({"layers": 3}, "cpu")


# ----------------------------------------------------------------------------- the recorder
def _run(model, path, batches, **kw):
    mask = torch.ones(batches[0].shape, dtype=torch.long)
    mask[0, :5] = 0  # left padding: routed, not counted
    with RoutingRecorder(model, path, **kw) as rec, torch.no_grad():
        for i, b in enumerate(batches):
            if i == 1:
                rec.set_batch(label=torch.tensor([0, 1, 2, -1]))
            if i == 2:
                rec.set_batch(seq_id=torch.tensor([7, 7, 9, 11]))
            model(input_ids=b, attention_mask=mask)
    return rec


def _close(a, b, path="report"):
    """Two JSON values equal: numbers to 1e-12 relative, everything else exactly."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), path
    else:
        assert a == b, path


@pytest.mark.parametrize("arch", ["qwen3_moe", "mixtral"])
def test_counts_mode_report_equals_the_token_log_report(arch, tmp_path, assert_tables_equal):
    torch.manual_seed(0)
    model = tiny_model(arch)
    batches = [torch.randint(0, 99, (4, 16)) for _ in range(4)]
    _run(model, tmp_path / "ids", batches, record_logits=True)
    rec = _run(model, tmp_path / "counts", batches, mode="counts", flush_tokens=100)
    ids_log, counts_log = open_log(tmp_path / "ids"), open_log(tmp_path / "counts", verify=True)
    kinds = [s.kind for s in counts_log.shards]
    assert kinds == ["tables"] * 2 and rec.num_shards == 2  # flushed after 2 passes of 64 tokens, and on exit
    assert counts_log.num_tokens == 0 and rec.num_tokens_recorded == 4 * 4 * 16 - 4 * 5
    assert f"tokens=0, counted tokens={rec.num_tokens_recorded}, shards=2" in repr(counts_log)
    assert counts_log.counts().keys() == ids_log.counts().keys()
    for lid, c in ids_log.counts().items():
        np.testing.assert_array_equal(counts_log.counts(lid), c)

    spec = CountSpec.from_manifest(ids_log.manifest)
    from infomoe.logs._analysis import _count_locally

    options = dict(chunk_tokens=1 << 16, on_error="raise", num_threads=1, progress=False)
    assert_tables_equal(_count_locally(ids_log, spec, **options), _count_locally(counts_log, spec, **options))
    a, b = json.loads(analyze_log(ids_log).to_json()), json.loads(analyze_log(counts_log).to_json())
    assert b["uncertainty"]["resampling_unit"] == "sequences (seq_id)" and b["num_tokens"] == rec.num_tokens_recorded
    _close(a, b)


def test_counts_mode_settings_are_read_back_and_checked(tmp_path):
    torch.manual_seed(1)
    model = tiny_model("mixtral")
    batches = [torch.randint(0, 99, (4, 16)) for _ in range(2)]
    _run(model, tmp_path / "c", batches, mode="counts",
         count_options=dict(token_buckets=32, groups=8, position_edges=(0, 4, 8)))
    r = analyze_log(tmp_path / "c")  # adopts the recorded settings
    assert r.token_buckets == 32 and tuple(r.position_edges) == (0, 4, 8) and 2 <= r.groups <= 8
    with pytest.raises(ValueError, match=r"recorded with groups=8, token_buckets=32 but this analysis asks for "
                                         r"groups=64, token_buckets=2048"):
        analyze_log(tmp_path / "c", token_buckets=2048, groups=64)


def test_counts_mode_errors(tmp_path):
    model = tiny_model("mixtral")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        RoutingRecorder(model, tmp_path / "a", mode="tokens")
    with pytest.raises(ValueError, match='applies to mode="counts" only'):
        RoutingRecorder(model, tmp_path / "a", count_options={"groups": 4})
    with pytest.raises(ValueError, match=r"\['bins'\] are not table settings"):
        RoutingRecorder(model, tmp_path / "a", mode="counts", count_options={"bins": 4})
    with pytest.raises(ValueError, match="`groups`"):
        with RoutingRecorder(model, tmp_path / "b", mode="counts", count_options={"groups": 0}):
            pass


def test_counts_mode_follows_generate_and_an_open_writer_with_a_layer_subset(tmp_path):
    from infomoe.logs import LogWriter

    model = tiny_model("mixtral")
    ids = torch.randint(3, 99, (2, 4), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    for mode in ("ids", "counts"):
        with RoutingRecorder(model, tmp_path / mode, mode=mode, record_logits=True) as rec, torch.no_grad():
            rec.set_batch(label=[4, 7])
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0)
    a, b = analyze_log(tmp_path / "ids"), analyze_log(tmp_path / "counts")
    assert a.num_tokens == b.num_tokens == 12  # prompt + 2 cached decode steps, continuing the sequences
    _close(json.loads(a.to_json()), json.loads(b.to_json()))

    layers = [LayerSpec(s.layer_id, s.num_experts, s.top_k) for s in RoutingRecorder(model, tmp_path / "x").sites]
    with LogWriter(tmp_path / "w", source="mine", layers=layers) as w:
        with RoutingRecorder(model, w, mode="counts", layers=[layers[-1].layer_id]), torch.no_grad():
            model(input_ids=ids)
    log = open_log(tmp_path / "w")
    with pytest.raises(ValueError, match="recorded with layers="):
        analyze_log(log)  # the tables hold one layer of the log's two
    r = analyze_log(log, layers=[layers[-1].layer_id])
    assert r.num_tokens == 8 and r.load[0].sum() == 8 * layers[-1].top_k


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), experts=st.lists(st.integers(1, 5), min_size=1, max_size=3), k=st.integers(1, 3),
       groups=st.integers(1, 6), buckets=st.integers(1, 9), seed=st.integers(0, 2**16), sparse=st.booleans())
def test_device_tables_equal_count_shard_property(n, experts, k, groups, buckets, seed, sparse, assert_tables_equal):
    """Any shape: repeated experts, drops, padding, negative and folded ids, every table exact."""
    rng = np.random.default_rng(seed)
    layers = tuple(LayerSpec(l, e, min(k, e)) for l, e in enumerate(experts))
    spec = CountSpec.from_manifest(Manifest(source="t", layers=layers), groups=groups, token_buckets=buckets,
                                   label_buckets=buckets, position_edges=(1, 3))
    chunk = {"expert_ids": {s.layer_id: rng.integers(-1, s.num_experts, (n, s.top_k)) for s in layers},
             "valid": rng.random(n) < 0.8, "token_id": rng.integers(-1, 2 * buckets, n),
             "position": rng.integers(0, 6, n), "label": rng.integers(-1, 2 * buckets, n),
             "seq_id": rng.integers(0, 5, n),
             "router_logits": {s.layer_id: rng.normal(size=(n, s.num_experts)).astype(np.float32) for s in layers}}
    old = _device_tables.DENSE_CELLS, _device_tables.SPARSE_BUFFER
    if sparse:
        _device_tables.DENSE_CELLS, _device_tables.SPARSE_BUFFER = 0, 7
    try:
        device = _device_count(spec, [chunk])
    finally:
        _device_tables.DENSE_CELLS, _device_tables.SPARSE_BUFFER = old
    assert_tables_equal(count_shard(chunk, spec=spec), device)
