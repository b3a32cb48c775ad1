"""Importers on fixtures written by the upstream code itself (see fixtures/README.md and the generators)."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from infomoe.logs import open_log
from infomoe.logs.ingest import (
    import_megatron,
    import_megatron_requests,
    import_sglang,
    import_sglang_requests,
    import_vllm,
    moe_layers_from_config,
)

FIX = Path(__file__).parent / "fixtures"


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- Megatron-Core 0.19.2
def test_megatron_micro_batches_are_merged_and_recomputes_skipped(tmp_path):
    recs = _jsonl(FIX / "megatron_microbatch" / "router_trace_rank0.jsonl")
    assert len(recs) == 12                                    # 2 steps x (2 micro-batches + 1 recompute) x 2 layers
    res = import_megatron(FIX / "megatron_microbatch", tmp_path / "log", num_experts=8)
    assert (res.num_tokens, res.num_shards) == (16, 4)         # was: "layer 0 appears twice"
    log = open_log(tmp_path / "log")
    assert log.manifest.topk_order == "unordered"              # routing_map.nonzero(): ascending expert id
    d = log.read()
    first = [r for r in recs if r["layer"] == 0]
    expect = np.concatenate([first[i]["top_indices"] for i in (0, 1, 3, 4)])   # recomputes 2 and 5 skipped
    np.testing.assert_array_equal(d["expert_ids"][0], expect)
    np.testing.assert_array_equal(d["step"], np.repeat([7, 7, 8, 8], 4))


def test_megatron_logits_give_the_gate_weight_order(tmp_path):
    import_megatron(FIX / "megatron_microbatch", tmp_path / "log", logits=True)
    log = open_log(tmp_path / "log")
    assert log.manifest.topk_order == "descending"
    d = log.read()
    for lid in (0, 1):
        ids, lg = d["expert_ids"][lid], d["router_logits"][lid]
        chosen = np.take_along_axis(lg, ids, axis=1)
        assert (np.diff(chosen, axis=1) <= 0).all()            # column 0 is the top expert
        top = np.argsort(-lg, axis=1, kind="stable")[:, :2]
        np.testing.assert_array_equal(np.sort(ids, 1), np.sort(top, 1))   # the same set, now in order


def test_megatron_pipeline_stages_merge_into_global_layers(tmp_path):
    r0 = _jsonl(FIX / "megatron_pp" / "router_trace_rank0.jsonl")
    r1 = _jsonl(FIX / "megatron_pp" / "router_trace_rank1.jsonl")
    assert {r["layer"] for r in r0} == {r["layer"] for r in r1} == {0, 1}    # stage-local layer numbers
    res = import_megatron(FIX / "megatron_pp", tmp_path / "log", num_experts=8, layer_offsets={1: 2},
                          pipelines=[[0, 1]])
    assert (res.num_tokens, res.num_merged) == (8, 2)
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (0, 1, 2, 3)
    d = log.read()
    for lid, (recs, local) in {0: (r0, 0), 1: (r0, 1), 2: (r1, 0), 3: (r1, 1)}.items():
        np.testing.assert_array_equal(d["expert_ids"][lid],
                                      np.concatenate([r["top_indices"] for r in recs if r["layer"] == local]))
    assert (d["rank"] == 0).all()
    with pytest.raises(ValueError, match=r"layer 0 of step 0, micro-batch 0 was already written .* check `pipelines`"):
        import_megatron(FIX / "megatron_pp", tmp_path / "bad", num_experts=8, pipelines=[[0, 1]])


def test_megatron_mtp_heads_do_not_collide(tmp_path):
    res = import_megatron(FIX / "megatron_mtp", tmp_path / "log", num_experts=8, block="mtp")
    log = open_log(tmp_path / "log")
    assert res.num_tokens == 4 and log.layer_ids == (0, 1)
    assert log.manifest.metadata["mtp_layers"] == {"0": [0, 0], "1": [1, 0]}
    recs = [r for r in _jsonl(FIX / "megatron_mtp" / "router_trace_rank0.jsonl") if r["block"] == "mtp"]
    for r in recs:
        np.testing.assert_array_equal(log.read()["expert_ids"][r["mtp_idx"]], r["top_indices"])


def test_megatron_record_indices_layers_are_one_based(tmp_path):
    recs = _jsonl(FIX / "megatron_record_indices" / "router_trace_rank0.jsonl")
    assert [r["layer"] for r in recs] == [1, 2]                # Megatron's 1-based layer_number
    import_megatron(FIX / "megatron_record_indices", tmp_path / "log", num_experts=8, layer_base=1)
    assert open_log(tmp_path / "log").layer_ids == (0, 1)
    with pytest.raises(ValueError, match=r"'layer' is 0, below `layer_base`=1"):
        import_megatron(FIX / "megatron_pp", tmp_path / "bad", num_experts=8, layer_base=1)


def test_megatron_completions_routing_indices(tmp_path):
    choice = json.loads((FIX / "megatron_completions.json").read_text())["choices"][0]
    res = import_megatron_requests([choice], tmp_path / "log", num_experts=8)
    assert res.num_tokens == 4                                 # prompt 3 + generated 2 - 1
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["token_id"], [11, 12, 13, 14])
    np.testing.assert_array_equal(d["position"], [0, 1, 2, 3])
    np.testing.assert_array_equal(d["expert_ids"][1], np.array(choice["moe_topk_indices"])[:, 1])
    prompt_only = {k: v for k, v in choice.items() if k != "moe_topk_indices"}
    assert import_megatron_requests([prompt_only], tmp_path / "log2", num_experts=8).num_tokens == 3


# ----------------------------------------------------------------------------- SGLang 0.5.23
def _torch():
    return pytest.importorskip("torch")


def test_sglang_per_pass_mode_is_imported_as_counts(tmp_path):
    torch = _torch()
    res = import_sglang(FIX / "sglang_per_pass", tmp_path / "log", top_k=2)   # was: "missing 'topk_ids_of_layer'"
    assert (res.num_count_records, res.num_replicas_skipped) == (2, 2)       # TP=2: rank 1 repeats rank 0
    d = torch.load(FIX / "sglang_per_pass" / "rank0.pt", weights_only=True)
    p2l = d["last_physical_to_logical_map"].numpy()
    gpc = sum(r["global_physical_count"].numpy() for r in d["records"])
    log = open_log(tmp_path / "log")
    assert log.manifest.topk_order == "unordered"
    for lid in log.layer_ids:
        np.testing.assert_array_equal(log.counts(lid, source="records"),
                                      np.bincount(p2l[lid], weights=gpc[lid], minlength=5).astype(np.int64))


def test_sglang_pipeline_stages_are_merged_tokens(tmp_path):
    res = import_sglang(FIX / "sglang_pp", tmp_path / "log")
    assert res.num_tokens == 4                                 # was 8 rows, -1 in the other stage's layers
    assert res.num_merged == 1
    d = open_log(tmp_path / "log").read()
    assert all((d["expert_ids"][lid] >= 0).all() for lid in range(4))


def test_sglang_stat_counts_under_tensor_parallel_are_counted_once(tmp_path):
    import_sglang(FIX / "sglang_stat_tp2", tmp_path / "log", top_k=2, count_replicas=2)
    single = np.array(json.loads((FIX / "sglang_stat_tp2" / "expected_single_rank.json").read_text()))
    log = open_log(tmp_path / "log")
    assert log.manifest.topk_order == "unordered"
    for lid in log.layer_ids:
        np.testing.assert_array_equal(log.counts(lid, source="records"), single[:, lid].sum(0))
    assert log.manifest.metadata["count_replicas"] == 2
    with pytest.raises(ValueError, match="`count_replicas` is required"):
        import_sglang(FIX / "sglang_stat_tp2", tmp_path / "x", top_k=2)


def test_sglang_sentinel_slots_are_dropped(tmp_path):
    torch = _torch()
    rec = torch.load(FIX / "sglang_sentinel" / "rank0.pt", weights_only=True)["records"][0]
    assert int(rec["topk_ids_of_layer"][1, 2, 1]) == 255
    import_sglang(FIX / "sglang_sentinel", tmp_path / "log")  # was: "has 255 ... outside [-1, 5]"
    d = open_log(tmp_path / "log").read()
    assert d["expert_ids"][1][2, 1] == -1 and d["expert_ids"][3][0, 0] == -1
    assert (d["expert_ids"][0] >= 0).all()


def test_sglang_routed_experts_of_requests(tmp_path):
    responses = json.loads((FIX / "sglang_routed_experts.json").read_text())
    res = import_sglang_requests(responses, tmp_path / "log", num_experts=5, num_layers=3, top_k=2)
    assert res.num_tokens == 5 + 3                             # [start_len, seqlen - 1)
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (1, 2)                             # layer 0 is dense: all zeros
    d = log.read()
    np.testing.assert_array_equal(d["position"], [0, 1, 2, 3, 4, 2, 3, 4])
    np.testing.assert_array_equal(d["token_id"], [1, 2, 3, 4, 9, 9, 11, 12])
    flat = np.frombuffer(base64.b64decode(responses[1]["meta_info"]["routed_experts"]), np.int32).reshape(-1, 3, 2)
    np.testing.assert_array_equal(d["expert_ids"][2][5:], flat[:, 2])
    cfg = {"num_hidden_layers": 3, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1}
    import_sglang_requests(responses, tmp_path / "log2", num_experts=5, model_config=cfg)
    assert open_log(tmp_path / "log2").layer_ids == (1, 2)


# ----------------------------------------------------------------------------- vLLM 0.33.0
def _vllm_items():
    spec = json.loads((FIX / "vllm_requests.json").read_text())
    items = [dict(r, routed_experts=np.load(FIX / r["file"])) for r in spec["requests"]]
    return spec, items


def test_vllm_dense_layers_prompt_start_and_sentinels(tmp_path):
    spec, items = _vllm_items()
    assert items[0]["routed_experts"].dtype == np.uint8 and items[0]["routed_experts"].shape[1] == 4
    import_vllm([items[0]["routed_experts"]], tmp_path / "plain", num_experts=spec["num_experts"])
    assert open_log(tmp_path / "plain").layer_ids == (1, 3)   # was (0, 1, 2, 3): dense layers "all to expert 0"
    res = import_vllm(items, tmp_path / "log", num_experts=spec["num_experts"])
    assert res.num_tokens == 6 + 4
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (1, 3)                             # was (0, 1, 2, 3): dense layers "all to expert 0"
    assert log.manifest.topk_order == "unordered"
    d = log.read()
    np.testing.assert_array_equal(d["position"], [0, 1, 2, 3, 4, 5, 2, 3, 4, 5])
    np.testing.assert_array_equal(d["token_id"], [1, 2, 3, 4, 20, 21, 7, 8, 9, 23])
    assert d["expert_ids"][1][7, 1] == -1                      # the 255 slot
    by_cfg = import_vllm(items, tmp_path / "log2", num_experts=60,
                         moe_layers={"num_hidden_layers": 4, "decoder_sparse_step": 2, "mlp_only_layers": []})
    assert by_cfg.num_tokens == 10 and open_log(tmp_path / "log2").layer_ids == (1, 3)
    assert moe_layers_from_config({"text_config": {"num_hidden_layers": 4, "decoder_sparse_step": 2}}) == [1, 3]


def test_vllm_prompt_start_argument_and_explicit_layers(tmp_path):
    _, items = _vllm_items()
    arrays = [it["routed_experts"] for it in items]
    tokens = [it["prompt_token_ids"] + it["token_ids"] for it in items]
    import_vllm(arrays, tmp_path / "log", num_experts=60, prompt_start=[0, 2], token_ids=tokens, moe_layers=[1, 3])
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["token_id"][6:], [7, 8, 9, 23])
    with pytest.raises(ValueError, match=r"`moe_layers` names layers \[4\]"):
        import_vllm(arrays, tmp_path / "x", num_experts=60, moe_layers=[1, 4])
    with pytest.raises(ValueError, match="need at least 6"):
        import_vllm(arrays[1:], tmp_path / "y", num_experts=60, prompt_start=2, token_ids=[[1, 2, 3]])


def _csv_counts(path):
    rows = [tuple(map(int, x.split(","))) for x in path.read_text().splitlines()[1:]]
    return {(l, e): c for l, e, c in rows}


def test_sglang_per_rank_csvs_merge(tmp_path):
    d = FIX / "sglang_csv"
    res = import_sglang(d, tmp_path / "log", top_k=2)         # was: "no .pt files"
    assert (res.num_count_records, res.num_replicas_skipped) == (2, 1)    # rank 1 replicates rank 0 (TP)
    log = open_log(tmp_path / "log")
    assert log.layer_ids == (0, 1) and log.manifest.topk_order == "unordered"
    assert log.manifest.metadata["sentinel_choices_dropped"] == 1
    r0, r2 = (_csv_counts(d / f"expert_distribution_rank{r}_timestamp0.csv") for r in (0, 2))
    for lid in (0, 1):
        expect = np.zeros(6, np.int64)
        for t in (r0, r2):
            for (l, e), c in t.items():
                if l == lid and e < 6:
                    expect[e] += c
        np.testing.assert_array_equal(log.counts(lid, source="records"), expect)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "expert_distribution_rank0_timestamp0.csv").write_text("layer_id,expert_id,count\nUNKNOWN,3,1\n")
    with pytest.raises(ValueError, match=r"rank0_timestamp0.csv:2: expected three integers .*'UNKNOWN' layer"):
        import_sglang(bad, tmp_path / "log2", top_k=2)
    assert not (tmp_path / "log2").exists()
