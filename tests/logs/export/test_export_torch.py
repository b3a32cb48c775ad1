"""RoutingRecorder: hooks, per-token columns, bounded flushing, errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from infomoe.logs import LayerSpec, LogWriter, open_log  # noqa: E402
from infomoe.logs.export import RouterAdapter, RoutingRecorder, tiny_model  # noqa: E402


class ToyRouter(nn.Module):
    def __init__(self, hidden, num_experts, top_k):
        super().__init__()
        self.proj = nn.Linear(hidden, num_experts, bias=False)
        self.num_experts, self.top_k = num_experts, top_k

    def forward(self, h):
        logits = self.proj(h.reshape(-1, h.shape[-1]))
        w, idx = torch.topk(torch.softmax(logits, -1), self.top_k, dim=-1)
        return logits, w, idx


class ToyBlock(nn.Module):
    def __init__(self, hidden, num_experts, top_k):
        super().__init__()
        self.router = ToyRouter(hidden, num_experts, top_k)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, h):
        _, w, idx = self.router(h)
        return h + self.out(h) * w.sum(-1).reshape(h.shape[:-1] + (1,))


class ToyMoE(nn.Module):
    def __init__(self, hidden=8, num_experts=5, top_k=2, layers=3, vocab=20):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleList([ToyBlock(hidden, num_experts, top_k) for _ in range(layers)])

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, fail=False):
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        for i, b in enumerate(self.blocks):
            h = b(h)
            if fail and i == 1:
                raise RuntimeError("boom")
        return h


TOY = RouterAdapter("toy", ("ToyRouter",))


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _expected_toy(model, ids):
    with torch.no_grad():
        h = model.embed(ids)
        out = []
        for b in model.blocks:
            _, w, idx = b.router(h)
            out.append((idx.numpy(), w.numpy()))
            h = b(h)
    return out


def test_custom_adapter_records_router_outputs(tmp_path):
    torch.manual_seed(0)
    model = ToyMoE()
    ids = torch.randint(0, 20, (2, 6))
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY, record_logits=True) as rec, torch.no_grad():
        model(ids)
    assert rec.layer_ids == [0, 1, 2]
    log = open_log(tmp_path / "log")
    assert log.layers == (LayerSpec(0, 5, 2), LayerSpec(1, 5, 2), LayerSpec(2, 5, 2))
    data = log.read()
    for lid, (idx, w) in enumerate(_expected_toy(model, ids)):
        np.testing.assert_array_equal(data["expert_ids"][lid], idx)
        np.testing.assert_allclose(data["gate_weights"][lid], w, rtol=1e-6)
        assert data["router_logits"][lid].shape == (12, 5)
    np.testing.assert_array_equal(data["seq_id"], [0] * 6 + [1] * 6)
    np.testing.assert_array_equal(data["position"], list(range(6)) * 2)
    assert data["valid"].all()


def test_hooks_removed_after_exception_in_forward(tmp_path):
    model = ToyMoE()
    before = _hook_count(model)
    with pytest.raises(RuntimeError, match="boom"):
        with RoutingRecorder(model, tmp_path / "log", adapter=TOY, flush_tokens=4) as rec, torch.no_grad():
            model(torch.randint(0, 20, (1, 4)))                   # one complete pass -> flushed
            assert _hook_count(model) == before + 2 + 3
            model(torch.randint(0, 20, (1, 4)), fail=True)        # incomplete pass is discarded
    assert _hook_count(model) == before
    assert rec.num_tokens_recorded == 4
    log = open_log(tmp_path / "log")
    assert log.num_tokens == 4 and log.complete is False        # resumable, committed shard kept


def test_hooks_removed_after_exception_in_body(tmp_path):
    model = ToyMoE()
    before = _hook_count(model)
    with pytest.raises(KeyError):
        with RoutingRecorder(model, tmp_path / "log", adapter=TOY):
            raise KeyError("x")
    assert _hook_count(model) == before


def _run(model, path, flush_tokens, batches):
    with RoutingRecorder(model, path, flush_tokens=flush_tokens, record_logits=True) as rec, torch.no_grad():
        for ids, mask in batches:
            rec.set_batch(label=torch.arange(ids.shape[0]) % 2)
            model(input_ids=ids, attention_mask=mask)
    return rec


def test_bounded_flushing_equals_one_flush(tmp_path):
    model = tiny_model("mixtral")
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(5):
        ids = torch.randint(3, 99, (2, 5), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, :1] = 0
        batches.append((ids, mask))
    small = _run(model, tmp_path / "small", 12, batches)
    big = _run(model, tmp_path / "big", 10_000, batches)
    assert small.num_shards == 3 and big.num_shards == 1     # 10+10 | 10+10 | 10 tokens
    a, b = open_log(tmp_path / "small"), open_log(tmp_path / "big")
    assert [s.rows for s in a.shards] == [20, 20, 10]
    ra, rb = a.read(), b.read()
    assert set(ra) == set(rb) >= {"expert_ids", "gate_weights", "router_logits", "seq_id", "position", "valid",
                                  "token_id", "label"}
    for key in ra:
        if isinstance(ra[key], dict):
            for lid in ra[key]:
                np.testing.assert_array_equal(ra[key][lid], rb[key][lid])
        else:
            np.testing.assert_array_equal(ra[key], rb[key])
    np.testing.assert_array_equal(ra["seq_id"], np.repeat(np.arange(10), 5))
    np.testing.assert_array_equal(ra["label"], np.repeat(np.arange(10) % 2, 5))


def test_generate_continues_sequences(tmp_path):
    model = tiny_model("mixtral")
    ids = torch.randint(3, 99, (2, 4), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with RoutingRecorder(model, tmp_path / "log") as rec, torch.no_grad():
        rec.set_batch(label=[4, 7])
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False,
                       pad_token_id=0)
    d = open_log(tmp_path / "log").read()
    assert len(d["seq_id"]) == 2 * 4 + 2 * 2                      # prompt + 2 cached decode steps
    np.testing.assert_array_equal(d["seq_id"], [0] * 4 + [1] * 4 + [0, 1, 0, 1])
    np.testing.assert_array_equal(d["position"], [0, 1, 2, 3] * 2 + [4, 4, 5, 5])
    np.testing.assert_array_equal(d["label"], [4] * 4 + [7] * 4 + [4, 7, 4, 7])


def test_inputs_embeds_with_set_batch_token_ids(tmp_path):
    model = ToyMoE()
    ids = torch.randint(0, 20, (1, 3))
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY, step=5, rank=2) as rec, torch.no_grad():
        rec.set_batch(input_ids=ids, seq_id=[42])
        model(inputs_embeds=model.embed(ids))
        rec.set_batch(input_ids=ids)
        model(inputs_embeds=model.embed(ids))                     # no seq_id override: running counter
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["seq_id"], [42] * 3 + [0] * 3)
    np.testing.assert_array_equal(d["token_id"], ids.reshape(-1).tolist() * 2)
    np.testing.assert_array_equal(d["step"], [5] * 6)
    np.testing.assert_array_equal(d["rank"], [2] * 6)


def test_token_ids_for_some_batches_only_is_an_error_not_a_lost_column(tmp_path):
    model = ToyMoE()
    ids = torch.randint(0, 20, (1, 3))
    with pytest.raises(ValueError, match=r"set_batch\(input_ids=\.\.\.\)"):
        with RoutingRecorder(model, tmp_path / "log", adapter=TOY) as rec, torch.no_grad():
            rec.set_batch(input_ids=ids)
            model(inputs_embeds=model.embed(ids))
            model(inputs_embeds=model.embed(ids))                 # no token ids: would drop the column


def test_labels_of_some_batches_are_kept_unlabelled_ones_are_minus_one(tmp_path):
    model = ToyMoE()
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY, flush_tokens=1000) as rec, torch.no_grad():
        model(torch.randint(0, 20, (1, 2)))                       # unlabelled
        rec.set_batch(label=[3])
        model(torch.randint(0, 20, (1, 2)))                       # same shard, labelled
    np.testing.assert_array_equal(open_log(tmp_path / "log").read()["label"], [-1, -1, 3, 3])


def test_subset_of_layers_and_open_writer(tmp_path):
    model = ToyMoE()
    with LogWriter(tmp_path / "log", source="mine", layers=[LayerSpec(1, 5, 2)]) as w:
        with RoutingRecorder(model, w, adapter=TOY, layers=[1]) as rec, torch.no_grad():
            model(torch.randint(0, 20, (2, 2)))
        assert rec.layer_ids == [1]
        w.append(np.zeros((1, 1, 2), np.int64), gate_weights=np.full((1, 1, 2), 0.5, np.float32),
                 seq_id=[9], position=[0], valid=[True], token_id=[0])
    log = open_log(tmp_path / "log")
    assert log.manifest.source == "mine" and log.num_tokens == 5


def test_direct_router_calls_are_ignored(tmp_path):
    model = ToyMoE()
    with pytest.warns(RuntimeWarning, match="1 router call"):
        with RoutingRecorder(model, tmp_path / "log", adapter=TOY) as rec, torch.no_grad():
            model.blocks[0].router(torch.zeros(3, 8))
    assert rec.num_ignored_calls == 1 and rec.num_tokens_recorded == 0


def test_bad_inputs(tmp_path):
    model = ToyMoE()
    with pytest.raises(ValueError, match="flush_tokens"):
        RoutingRecorder(model, tmp_path / "a", adapter=TOY, flush_tokens=0)
    with pytest.raises(ValueError, match=r"`layers` \[7\] not found; router layer ids are \[0, 1, 2\]"):
        RoutingRecorder(model, tmp_path / "a", adapter=TOY, layers=[7])
    with pytest.raises(TypeError, match="adapter"):
        RoutingRecorder(model, tmp_path / "a", adapter=3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        RoutingRecorder(object(), tmp_path / "a", adapter=TOY)
    with pytest.raises(ValueError, match="found no router modules"):
        RoutingRecorder(model, tmp_path / "a", adapter=RouterAdapter("none", ("Nope",)))
    with pytest.raises(ValueError, match="needs `model.config.model_type`"):
        RoutingRecorder(model, tmp_path / "a")
    bad = RouterAdapter("bad", ("ToyRouter",), ids_index=0, weights_index=1)   # logits read as ids
    before = _hook_count(model)
    with pytest.raises(TypeError, match="gave expert ids Tensor of shape \\(4, 5\\) and dtype torch.float32"):
        with RoutingRecorder(model, tmp_path / "b", adapter=bad), torch.no_grad():
            model(torch.randint(0, 20, (1, 4)))
    assert _hook_count(model) == before
    with pytest.raises(ValueError, match="`label` must have shape"):
        with RoutingRecorder(model, tmp_path / "c", adapter=TOY) as rec, torch.no_grad():
            rec.set_batch(label=[1, 2, 3])
            model(torch.randint(0, 20, (1, 4)))


def test_explicit_position_ids_win(tmp_path):
    model = tiny_model("qwen3_moe")
    ids = torch.randint(3, 99, (1, 4))
    with RoutingRecorder(model, tmp_path / "log"), torch.no_grad():
        model(input_ids=ids, position_ids=torch.tensor([[0, 1, 0, 1]]))   # two packed sequences
    np.testing.assert_array_equal(open_log(tmp_path / "log").read()["position"], [0, 1, 0, 1])


# -- continuation: every convention transformers has used to pass the KV cache ---------------------

class _StubCache:
    """Stands in for a transformers ``Cache``: only ``get_seq_length`` is read."""

    def __init__(self, n):
        self.n = n

    def get_seq_length(self, layer_idx=0):
        return self.n


class ToyLM(ToyMoE):
    """A ToyMoE whose forward accepts (and ignores) every cache/position keyword of transformers."""

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **cache_kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)


def _legacy_tuple_cache(batch, past):
    kv = torch.zeros(batch, 2, past, 4)
    return tuple((kv, kv) for _ in range(3))


# how each transformers version calls the model's forward for the decode step after `past` tokens
# (batch of 2, one new token per sequence); the prefill call is the same call with past = 0
_CONVENTIONS = {
    # 4.x: legacy tuple cache, full-length attention mask
    "4.x legacy tuple cache": lambda b, past, s: dict(
        past_key_values=_legacy_tuple_cache(b, past) if past else None,
        attention_mask=torch.ones(b, past + s, dtype=torch.long)),
    # 4.3x-5.1x: Cache object under past_key_values, cache_position, full-length mask
    "past_key_values Cache + cache_position": lambda b, past, s: dict(
        past_key_values=_StubCache(past), cache_position=torch.arange(past, past + s),
        attention_mask=torch.ones(b, past + s, dtype=torch.long)),
    # 5.2x: Cache object under `cache`, no mask for an unpadded batch, explicit position_ids
    "cache= without mask (5.2x generate)": lambda b, past, s: dict(
        cache=_StubCache(past), position_ids=torch.arange(past, past + s).expand(b, s)),
    # a manual decode loop passing only `cache=`
    "cache= only": lambda b, past, s: dict(cache=_StubCache(past)),
    "cache_params (state-space models)": lambda b, past, s: dict(cache_params=_StubCache(past)),
    "cache_position only": lambda b, past, s: dict(cache_position=torch.arange(past, past + s)),
    "position_ids only": lambda b, past, s: dict(position_ids=torch.arange(past, past + s).expand(b, s)),
    "attention mask longer than the input": lambda b, past, s: dict(
        attention_mask=torch.ones(b, past + s, dtype=torch.long)),
}


@pytest.mark.parametrize("convention", sorted(_CONVENTIONS))
def test_continuation_detected_for_every_cache_convention(convention, tmp_path):
    call = _CONVENTIONS[convention]
    model = ToyLM()
    ids = torch.randint(0, 20, (2, 4), generator=torch.Generator().manual_seed(0))
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY) as rec, torch.no_grad():
        rec.set_batch(label=[4, 7])
        model(input_ids=ids, **call(2, 0, 4))                      # prefill
        for past in (4, 5):                                         # two decode steps
            model(input_ids=ids[:, :1], **call(2, past, 1))
        model(input_ids=ids, **call(2, 0, 4))                      # a new batch again
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["seq_id"], [0] * 4 + [1] * 4 + [0, 1, 0, 1] + [2] * 4 + [3] * 4)
    np.testing.assert_array_equal(d["position"], [0, 1, 2, 3] * 2 + [4, 4, 5, 5] + [0, 1, 2, 3] * 2)
    np.testing.assert_array_equal(d["label"][:12], [4] * 4 + [7] * 4 + [4, 7, 4, 7])
    assert (d["label"][12:] == -1).all()                            # labels do not leak into a new batch


def test_empty_cache_starts_a_new_batch(tmp_path):
    model = ToyLM()
    ids = torch.randint(0, 20, (1, 3))
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY), torch.no_grad():
        model(input_ids=ids, cache=_StubCache(0))
        model(input_ids=ids, cache=_StubCache(0), position_ids=torch.arange(3)[None])
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["seq_id"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(d["position"], [0, 1, 2] * 2)


def test_left_padded_prefill_is_not_a_continuation(tmp_path):
    # transformers' generate() gives padding positions 1 and real tokens 0.. : min(position_ids) == 0
    model = ToyLM()
    ids = torch.randint(0, 20, (2, 4))
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    pid = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with RoutingRecorder(model, tmp_path / "log", adapter=TOY), torch.no_grad():
        model(input_ids=ids, attention_mask=mask, position_ids=pid)
        model(input_ids=ids, attention_mask=mask, position_ids=pid)
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["seq_id"], np.repeat([0, 1, 2, 3], 4))


def test_generate_of_a_single_unpadded_sequence_continues_it(tmp_path):
    # a batch of one without attention mask: transformers 5.2x passes only cache= and position_ids
    model = tiny_model("mixtral")
    ids = torch.randint(3, 99, (1, 5), generator=torch.Generator().manual_seed(1))
    with RoutingRecorder(model, tmp_path / "log"), torch.no_grad():
        model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    d = open_log(tmp_path / "log").read()
    np.testing.assert_array_equal(d["seq_id"], [0] * 8)
    np.testing.assert_array_equal(d["position"], np.arange(8))


# -- upstream drift: an unknown router signature fails loudly, naming the versions ---------------

class _TwoTupleRouter(ToyRouter):
    def forward(self, h):
        logits, w, idx = super().forward(h)
        return logits, idx                                          # an upstream "refactor"


class _FloatIdsRouter(ToyRouter):
    def forward(self, h):
        logits, w, idx = super().forward(h)
        return logits, w, idx.float()


@pytest.mark.parametrize("router_cls,what", [
    (_TwoTupleRouter, "returned a tuple of 2 items: (Tensor of shape (3, 5) and dtype torch.float32, "),
    (_FloatIdsRouter, "expert ids Tensor of shape (3, 2) and dtype torch.float32"),
])
def test_unknown_router_signature_names_versions(router_cls, what, tmp_path):
    from importlib import metadata

    from infomoe.logs.export import RouterSignatureError

    model = ToyMoE()
    for b in model.blocks:
        b.router.__class__ = router_cls
        b.forward = lambda h, _b=b: _b.router(h)[0][:, :0].sum() + h  # calls the router, unpacks nothing
    adapter = RouterAdapter("toy", (router_cls.__name__,))
    with pytest.raises(RouterSignatureError) as err:
        with RoutingRecorder(model, tmp_path / "log", adapter=adapter), torch.no_grad():
            model(torch.randint(0, 20, (1, 3)))
    msg = str(err.value)
    assert what in msg
    assert f"torch {metadata.version('torch')}" in msg
    assert "transformers" in msg and "convert=" in msg
