"""PyTorch routing recorder: forward hooks on router modules, bounded device buffers.

The recorder never modifies the model.  It registers

* a forward hook on every router module that an adapter selects, reading the
  expert ids and gate weights the router *returned* (the ones the experts use);
* a forward pre-hook and a forward hook on the module that receives
  ``input_ids``/``attention_mask`` (the model itself for decoder-only models,
  the encoder or decoder stack for encoder-decoder models), which delimit one
  forward pass and give the per-token columns.

Decisions stay on the accelerator until ``flush_tokens`` tokens are buffered;
then each column is concatenated on the device and copied to the host with a
single ``.cpu()`` and written as one shard.  Every shard holds all recorded
layers for the same tokens.  In counts mode nothing per token is kept: the
report's count tables are accumulated on the device
(:mod:`infomoe.logs.export._device_tables`) and written as one ``"tables"``
record per flush.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np

from infomoe._validate import check_choice, check_positive_int
from infomoe.logs.export._adapter import SUPPORTED_UPSTREAM, RouterSite, upstream_versions
from infomoe.logs.export._hf import resolve_adapter

__all__ = ["RoutingRecorder"]

#: Keyword names under which transformers has passed the KV cache to a model's forward:
#: ``past_key_values`` (4.x, 5.x before 5.2x), ``cache`` (5.2x; ``past_key_values`` deprecated),
#: ``cache_params`` (state-space / hybrid models).
CACHE_KWARGS = ("past_key_values", "cache", "cache_params")


def _cached_length(cache) -> int:
    """Tokens already held by a KV cache object (0 when unknown or empty)."""
    import torch

    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):  # transformers Cache objects (DynamicCache, StaticCache, ...)
        try:
            return int(cache.get_seq_length())
        except Exception:  # pragma: no cover - exotic caches that cannot tell
            return 0
    if isinstance(cache, (tuple, list)) and cache:  # legacy: per layer (key, value), (batch, heads, past, dim)
        first = cache[0]
        if isinstance(first, (tuple, list)) and first and torch.is_tensor(first[0]) and first[0].ndim >= 3:
            return int(first[0].shape[-2])
    return 0


def _past_length(kwargs: dict, seq_len: int, mask) -> int:
    """How many tokens of each sequence came before this forward call (0: a new batch).

    Reads every convention transformers has used to continue a sequence:
    a non-empty KV cache under any of :data:`CACHE_KWARGS`, ``cache_position``
    (the absolute positions of the new tokens), an attention mask longer than
    the input, and explicit ``position_ids`` that start past 0 in every row.
    The largest of these wins (they agree whenever they are all present).
    """
    import torch

    past = max(_cached_length(kwargs.get(k)) for k in CACHE_KWARGS)
    cpos = kwargs.get("cache_position")
    if torch.is_tensor(cpos) and cpos.numel() > 0:
        past = max(past, int(cpos.reshape(-1)[0]))
    if mask is not None and mask.shape[-1] > seq_len:
        past = max(past, int(mask.shape[-1]) - seq_len)
    pid = kwargs.get("position_ids")
    if torch.is_tensor(pid) and pid.ndim == 2 and pid.shape[-1] == seq_len and pid.numel() > 0:
        past = max(past, int(pid.min()))  # a prefill, padded or not, has a token at position 0
    return past


class _BatchInfo:
    """Per-forward token bookkeeping (kept on the tokens' device)."""

    __slots__ = ("n_seq", "seq_len", "seq_id", "position", "valid", "token_id", "label", "seq_host")

    def __init__(self, n_seq, seq_len, seq_id, position, valid, token_id, label, seq_host):
        self.n_seq, self.seq_len = n_seq, seq_len
        self.seq_id, self.position, self.valid = seq_id, position, valid
        self.token_id, self.label = token_id, label
        self.seq_host = seq_host  # (n_seq,) int64 on the host, or None when only the device has it


class RoutingRecorder:
    """Record the routing decisions of a PyTorch model into a routing log.

    A context manager: on entry it finds the router modules (through an
    adapter) and registers forward hooks; every forward pass of the model
    inside the ``with`` block adds one row per token, with the expert ids and
    gate weights every router returned; on exit (also after an exception)
    the hooks are removed and buffered tokens are written.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not modified.
    path_or_writer : str, os.PathLike or infomoe.logs.LogWriter
        Log directory to create (closed on exit), or an open writer (left
        open; its manifest must match the hooked layers).
    adapter : "auto", str or RouterAdapter
        ``"auto"`` picks the Hugging Face adapter from
        ``model.config.model_type`` (see :data:`infomoe.logs.export.ADAPTERS`);
        a string names one; a :class:`RouterAdapter` instance is used as is.
    layers : sequence of int, optional
        Record only these layer ids (default: every router found).
    mode : {"ids", "counts"}, default "ids"
        ``"ids"`` writes every token's expert ids and gate weights (token
        shards).  ``"counts"`` keeps only the count tables that
        :func:`~infomoe.logs.analyze_log` and ``infomoe report`` need,
        accumulated on the model's device (expert load, token x expert,
        position x expert, label x expert, consecutive-layer and top-k set
        tables, per resampling group, and the soft-gate sums), and writes
        them as ``"tables"`` records: the report equals the one of the
        token log of the same run (counts exactly, soft-gate sums to
        rounding), at a size independent of the number of tokens.
    flush_tokens : int, optional
        Tokens buffered on the device before one host copy and one shard
        (default 65536; in counts mode 2**24, and never more than the
        int32 tables allow).  A forward pass is never split, so a shard
        holds at most ``flush_tokens`` plus one forward pass of tokens.
    record_logits : bool, optional
        Also record the router logits ``(tokens, experts)``: in ids mode
        as a column (default False; they cost ``E/k`` times the memory of
        the ids), in counts mode as the soft-gate sums (default True).
    count_options : dict, optional
        Counts mode: settings of the tables, as for
        :meth:`~infomoe.logs.CountSpec.from_manifest` (``token_buckets``,
        ``position_edges``, ``label_buckets``, ``max_set_alphabet``,
        ``groups``); the report reads them back from the log.
    model_id : str, optional
        Written to the manifest (default: ``model.config.name_or_path``).
    step, rank : int, optional
        Values of the per-token ``step``/``rank`` columns; ``recorder.step``
        may be changed between forward passes.
    metadata : dict, optional
        Extra manifest metadata.
    resume : bool
        Passed to :class:`LogWriter` when ``path_or_writer`` is a path.

    Notes
    -----
    Per-token columns come from the forward call of the input module
    (``adapter.input_module``), read by a forward pre-hook:
    ``input_ids`` -> ``token_id``; ``attention_mask`` -> ``valid`` (padding
    tokens are routed by the model and recorded, with ``valid=False``) and
    ``position = cumsum(mask) - 1`` (correct for left padding), or the
    ``position_ids`` argument when the call passes one; each new batch
    gets fresh ``seq_id`` values ``0, 1, ...`` counting across batches.  A
    forward that continues sequences -- a non-empty KV cache (passed as
    ``past_key_values``, ``cache`` or ``cache_params``, as transformers 4.x
    and 5.x do), a ``cache_position`` past 0, an attention mask longer than
    the input, or ``position_ids`` that start past 0 in every row -- on a
    batch of the previous batch's size continues it: same ``seq_id`` values,
    positions carry on.  So ``model.generate(...)`` inside the recorder records prompt and
    generated tokens per sequence.  :meth:`set_batch` overrides any of these
    for the next forward pass (e.g. labels, or token ids when the model is
    called with ``inputs_embeds``).

    Router outputs that arrive outside a forward of the input module (e.g. a
    router called directly, or recomputed during backward under activation
    checkpointing) are not recorded; their number is
    :attr:`num_ignored_calls`.

    Examples
    --------
    >>> import torch
    >>> from infomoe.logs.export import RoutingRecorder, tiny_model
    >>> from infomoe.logs import open_log
    >>> import tempfile, os
    >>> model = tiny_model("mixtral")
    >>> path = os.path.join(tempfile.mkdtemp(), "log")
    >>> with RoutingRecorder(model, path) as rec, torch.no_grad():
    ...     _ = model(torch.randint(0, 99, (2, 6)))
    >>> open_log(path).num_tokens
    12
    """

    def __init__(self, model, path_or_writer, *, adapter="auto", layers: Optional[Sequence[int]] = None,
                 mode: str = "ids", flush_tokens: Optional[int] = None, record_logits: Optional[bool] = None,
                 count_options: Optional[dict] = None, model_id: Optional[str] = None,
                 step: Optional[int] = None, rank: Optional[int] = None, metadata: Optional[dict] = None,
                 resume: bool = False):
        import torch  # noqa: F401  (fail early with ImportError if torch is absent)

        if not hasattr(model, "named_modules"):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        self.mode = check_choice(mode, "mode", ("ids", "counts"))
        counts = self.mode == "counts"
        if count_options is not None and not counts:
            raise ValueError('`count_options` applies to mode="counts" only.')
        if count_options is not None and not isinstance(count_options, dict):
            raise TypeError(f"`count_options` must be a dict, got {type(count_options).__name__}.")
        allowed = {"token_buckets", "position_edges", "label_buckets", "max_set_alphabet", "groups"}
        unknown = sorted(set(count_options or ()) - allowed)
        if unknown:
            raise ValueError(f"`count_options` {unknown} are not table settings; allowed: {sorted(allowed)}.")
        self.count_options = dict(count_options or {})
        self.model = model
        self.adapter = resolve_adapter(adapter, model)
        self.flush_tokens = check_positive_int((1 << 24 if counts else 65536) if flush_tokens is None
                                               else flush_tokens, "flush_tokens")
        self.record_logits = counts if record_logits is None else bool(record_logits)
        self.step = step
        self.rank = rank
        self._target = path_or_writer
        self._resume = resume
        self._extra_meta = dict(metadata or {})
        if model_id is None:
            cfg = getattr(model, "config", None)
            model_id = getattr(cfg, "name_or_path", None) or None
        self.model_id = model_id

        sites = self.adapter.sites(model)
        if not sites:
            raise ValueError(f"adapter {self.adapter.name!r} found no router modules in "
                             f"{type(model).__name__} (looked for {self.adapter.router_classes or 'match='}); "
                             f"installed: {upstream_versions()}, built-in adapters are written for "
                             f"{SUPPORTED_UPSTREAM}.")
        if layers is not None:
            wanted = [int(x) for x in layers]
            have = {s.layer_id for s in sites}
            missing = [x for x in wanted if x not in have]
            if missing:
                raise ValueError(f"`layers` {missing} not found; router layer ids are {sorted(have)}.")
            sites = [s for s in sites if s.layer_id in set(wanted)]
        self.sites = sorted(sites, key=lambda s: s.layer_id)
        self._uniform_k = len({s.top_k for s in self.sites}) == 1
        self._uniform_e = len({s.num_experts for s in self.sites}) == 1

        self._handles: list = []
        self._writer = None
        self._own_writer = False
        self._active = False
        self._ctx: Optional[_BatchInfo] = None
        self._pending: dict = {}
        self._override: Optional[dict] = None
        self._prev: Optional[_BatchInfo] = None
        self._next_seq = 0
        self._has_token_ids: Optional[bool] = None
        self._buf: list = []
        self._buf_tokens = 0
        self.count_spec = None  # counts mode: the CountSpec of the tables (set on entry)
        self._device_tables = None  # counts mode: DeviceTables, made at the first forward
        self.num_tokens_recorded = 0
        self.num_shards = 0
        self.num_ignored_calls = 0

    # -- layer specs -------------------------------------------------------
    @property
    def layer_ids(self) -> list[int]:
        return [s.layer_id for s in self.sites]

    def layer_specs(self):
        from infomoe.logs import LayerSpec
        return [LayerSpec(s.layer_id, s.num_experts, s.top_k) for s in self.sites]

    # -- context manager ---------------------------------------------------
    def __enter__(self):
        from infomoe.logs import LogWriter

        if isinstance(self._target, LogWriter):
            self._writer = self._target
            self._own_writer = False
        else:
            opts = self.adapter.manifest_options(self.model)
            meta = opts.pop("metadata")
            meta.update({"layer_names": {str(s.layer_id): s.name for s in self.sites},
                         "adapter": self.adapter.name, "model_class": type(self.model).__name__})
            meta.update(self._extra_meta)
            self._writer = LogWriter(self._target, source=f"torch:{self.adapter.name}",
                                     layers=self.layer_specs(), model_id=self.model_id,
                                     metadata=meta, resume=self._resume, **opts)
            self._writer.__enter__()
            self._own_writer = True
        if self.mode == "counts":
            from infomoe.logs._tables import CountSpec

            try:
                self.count_spec = CountSpec.from_manifest(self._writer.manifest, layers=self.layer_ids,
                                                          **self.count_options)
            except BaseException:
                if self._own_writer:
                    self._writer.__exit__(None, None, None)
                raise
        try:
            inp = self.adapter.input_module(self.model) if self.adapter.input_module else self.model
            self._handles.append(inp.register_forward_pre_hook(self._on_begin, with_kwargs=True))
            self._handles.append(inp.register_forward_hook(self._on_end))
            for s in self.sites:
                self._handles.append(s.module.register_forward_hook(self._make_router_hook(s)))
        except BaseException:
            self._remove_hooks()
            raise
        self._active = True
        return self

    def __exit__(self, exc_type, exc, tb):
        self._remove_hooks()
        self._active = False
        self._ctx = None
        self._pending = {}
        try:
            self.flush()
        except BaseException as flush_exc:
            if self._own_writer:  # keep the log marked incomplete
                self._writer.__exit__(type(flush_exc), flush_exc, flush_exc.__traceback__)
            raise
        if self._own_writer:
            self._writer.__exit__(exc_type, exc, tb)
        if self.num_ignored_calls:
            warnings.warn(f"RoutingRecorder: {self.num_ignored_calls} router call(s) outside a forward of "
                          "the input module were not recorded.", RuntimeWarning, stacklevel=2)
        return False

    def _remove_hooks(self):
        while self._handles:
            self._handles.pop().remove()

    # -- batch bookkeeping -------------------------------------------------
    def set_batch(self, *, input_ids=None, attention_mask=None, seq_id=None, label=None):
        """Override the per-token columns of the next forward pass.

        Parameters
        ----------
        input_ids : tensor (batch, seq), optional
            Token ids (use when the model is called with ``inputs_embeds``).
        attention_mask : tensor (batch, seq) or (batch, past + seq), optional
            1 = real token, 0 = padding.
        seq_id : tensor or array (batch,), optional
            Sequence ids (default: a running counter).
        label : tensor or array (batch,) or (batch, seq), optional
            Label/domain per sequence or per token (integers >= 0, -1 =
            unlabelled); labels carry over to continuation forwards (the
            first token's label of each sequence).
        """
        self._override = dict(input_ids=input_ids, attention_mask=attention_mask, seq_id=seq_id, label=label)

    def _on_begin(self, module, args, kwargs):
        import torch

        ov = self._override or {}
        self._override = None
        input_ids = ov.get("input_ids")
        if input_ids is None:
            input_ids = kwargs.get("input_ids")
            if input_ids is None and args and torch.is_tensor(args[0]) and not args[0].is_floating_point():
                input_ids = args[0]
        mask = ov.get("attention_mask")
        if mask is None:
            mask = kwargs.get("attention_mask")
            if mask is not None and (not torch.is_tensor(mask) or mask.ndim != 2):
                mask = None  # 4-D / custom masks: no padding information we can trust
        embeds = kwargs.get("inputs_embeds")
        if input_ids is not None:
            n_seq, seq_len = int(input_ids.shape[0]), int(input_ids.shape[-1])
            device = input_ids.device
        elif embeds is not None:
            n_seq, seq_len = int(embeds.shape[0]), int(embeds.shape[1])
            device = embeds.device
        else:
            self._ctx = None  # unknown layout: router outputs of this pass are ignored
            return None
        past = _past_length(kwargs, seq_len, mask)
        continuing = past > 0 and self._prev is not None and self._prev.n_seq == n_seq

        if ov.get("seq_id") is not None:
            seq = self._as_tensor(ov["seq_id"], device)
            if seq.numel() != n_seq:
                raise ValueError(f"`seq_id` must have one entry per sequence ({n_seq}), got {seq.numel()}.")
            seq = seq.reshape(n_seq)
            seq_host = None
        elif continuing:
            seq = self._prev.seq_id[:, :1].reshape(n_seq)
            seq_host = self._prev.seq_host
        else:
            seq = torch.arange(self._next_seq, self._next_seq + n_seq, dtype=torch.int64, device=device)
            seq_host = np.arange(self._next_seq, self._next_seq + n_seq, dtype=np.int64)
            self._next_seq += n_seq
        seq2 = seq.reshape(n_seq, 1).expand(n_seq, seq_len)

        if mask is not None:
            m = mask.to(device=device)
            if m.shape[0] != n_seq:
                raise ValueError(f"`attention_mask` has {m.shape[0]} rows but the batch has {n_seq} sequences.")
            pos = (m.long().cumsum(-1) - 1).clamp(min=0)[:, -seq_len:]
            valid = m[:, -seq_len:].bool()
        else:
            pos = torch.arange(past, past + seq_len, dtype=torch.int64, device=device).expand(n_seq, seq_len)
            valid = torch.ones((n_seq, seq_len), dtype=torch.bool, device=device)
        pid = kwargs.get("position_ids")
        if torch.is_tensor(pid) and pid.ndim == 2 and pid.shape[-1] == seq_len and pid.shape[0] in (1, n_seq):
            pos = pid.to(device=device, dtype=torch.int64).expand(n_seq, seq_len)  # explicit positions win

        label = ov.get("label")
        if label is not None:
            lab = self._as_tensor(label, device)
            if lab.ndim == 1 and lab.shape[0] == n_seq:
                lab = lab.reshape(n_seq, 1).expand(n_seq, seq_len)
            elif lab.shape != (n_seq, seq_len):
                raise ValueError(f"`label` must have shape ({n_seq},) or ({n_seq}, {seq_len}), "
                                 f"got {tuple(lab.shape)}.")
            if (lab < -1).any():
                raise ValueError("`label` must hold integers >= 0 (-1 = unlabelled).")
        elif continuing and self._prev.label is not None:
            lab = self._prev.label[:, :1].expand(n_seq, seq_len)
        else:
            lab = None
        tok = None if input_ids is None else input_ids.reshape(n_seq, seq_len).to(torch.int64)
        if self._has_token_ids is None:
            self._has_token_ids = tok is not None
        elif self._has_token_ids != (tok is not None):
            raise ValueError("RoutingRecorder: this forward pass has " + ("no " if tok is None else "")
                             + "token ids but earlier ones " + ("had" if tok is None else "had none")
                             + "; one log holds token ids for every token or for none (call "
                             "set_batch(input_ids=...) before a forward with inputs_embeds).")
        self._ctx = _BatchInfo(n_seq, seq_len, seq2, pos, valid, tok, lab, seq_host)
        self._pending = {}
        return None

    @staticmethod
    def _as_tensor(x, device):
        import torch

        if torch.is_tensor(x):
            if x.is_floating_point() or x.is_complex():
                raise TypeError(f"expected integers, got a {x.dtype} tensor.")
            return x.to(device=device, dtype=torch.int64)
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"expected integers, got an array of dtype {a.dtype}.")
        return torch.as_tensor(a, dtype=torch.int64, device=device)

    def _make_router_hook(self, site: RouterSite):
        def hook(module, inputs, output):
            if self._ctx is None:
                self.num_ignored_calls += 1
                return None
            if site.layer_id in self._pending:
                raise RuntimeError(f"RoutingRecorder: router {site.name!r} ran twice in one forward pass; "
                                   "record such models with one RouterAdapter layer_id per call.")
            ids, weights, logits = self.adapter.read(module, output)
            self._pending[site.layer_id] = (ids, weights, logits if self.record_logits else None)
            return None
        return hook

    def _on_end(self, module, args, output):
        import torch

        ctx, pending = self._ctx, self._pending
        self._ctx, self._pending = None, {}
        if ctx is None or not pending:
            return None  # e.g. a decoder-only step of an encoder-decoder model
        missing = [s.layer_id for s in self.sites if s.layer_id not in pending]
        if missing:
            raise RuntimeError(f"RoutingRecorder: layers {missing} did not run in this forward pass "
                               f"(got {sorted(pending)}); pass layers= to record a subset.")
        n_tok = ctx.n_seq * ctx.seq_len
        if self.mode == "counts":
            self._count(ctx, pending, n_tok)
            return None
        ids_l, w_l, lg_l = [], [], []
        with torch.no_grad():
            for s in self.sites:
                ids, w, lg = pending[s.layer_id]
                ids, w = self._checked_decisions(s, ids, w, ctx, n_tok)
                ids_l.append(ids.to(torch.int32))
                w_l.append(w.to(torch.float32))
                if lg is not None:
                    lg_l.append(lg.detach().reshape(n_tok, -1).to(torch.float32))
            rec = {"ids": ids_l, "w": w_l, "lg": lg_l or None,
                   "seq_id": ctx.seq_id.reshape(-1), "position": ctx.position.reshape(-1),
                   "valid": ctx.valid.reshape(-1),
                   "token_id": None if ctx.token_id is None else ctx.token_id.reshape(-1),
                   "label": None if ctx.label is None else ctx.label.reshape(-1),
                   "step": self.step}
            if self._uniform_k:  # one (T, L, k) tensor per forward: one host copy per column
                rec["ids"] = torch.stack(ids_l, dim=1)
                rec["w"] = torch.stack(w_l, dim=1)
            if lg_l and self._uniform_e:
                rec["lg"] = torch.stack(lg_l, dim=1)
        self._prev = ctx
        self._buf.append(rec)
        self._buf_tokens += n_tok
        if self._buf_tokens >= self.flush_tokens:
            self.flush()
        return None

    @staticmethod
    def _checked_decisions(site: RouterSite, ids, w, ctx: _BatchInfo, n_tok: int):
        """A router's ids and weights as ``(n_tok, k)``, or a RuntimeError naming the shapes."""
        ids = ids.detach().reshape(-1, ids.shape[-1])
        w = w.detach().reshape(-1, w.shape[-1])
        if ids.shape[0] != n_tok or w.shape != ids.shape or ids.shape[1] != site.top_k:
            raise RuntimeError(
                f"RoutingRecorder: router {site.name!r} returned expert ids of shape "
                f"{tuple(ids.shape)} and weights {tuple(w.shape)}, expected ({n_tok}, {site.top_k}) "
                f"for a batch of {ctx.n_seq} x {ctx.seq_len} tokens ({upstream_versions()}; "
                f"adapters are written for {SUPPORTED_UPSTREAM}).")
        return ids, w

    def _count(self, ctx: _BatchInfo, pending: dict, n_tok: int) -> None:
        """Counts mode: add one forward pass to the tables on the device."""
        import torch

        from infomoe.logs._uncertainty import token_groups
        from infomoe.logs.export._device_tables import DeviceTables

        spec = self.count_spec
        site = {s.layer_id: s for s in self.sites}
        with torch.no_grad():
            ids, logits = [], []
            for ls in spec.layers:
                e, w, lg = pending[ls.layer_id]
                e, _ = self._checked_decisions(site[ls.layer_id], e, w, ctx, n_tok)
                ids.append(e)
                logits.append(None if lg is None else lg.detach().reshape(n_tok, -1))
            dev = self._device_tables
            if dev is None:
                dev = self._device_tables = DeviceTables(spec, ids[0].device)
            cap = min(self.flush_tokens, dev.max_tokens)
            if dev.tokens_added and dev.tokens_added + n_tok > dev.max_tokens:
                self.flush()  # an int32 cell could overflow in this pass
            seq_host = ctx.seq_host
            if seq_host is None:  # seq_id given as a tensor through set_batch: one copy to the host
                seq_host = ctx.seq_id[:, 0].cpu().numpy()
            g = torch.as_tensor(token_groups({"seq_id": seq_host}, ctx.n_seq, spec.groups).astype(np.int64))
            groups = g.to(dev.device, non_blocking=True).repeat_interleave(ctx.seq_len)
            label = None if ctx.label is None else ctx.label.reshape(-1)
            dev.add(ids, groups=groups, valid=ctx.valid.reshape(-1),
                    token_id=None if ctx.token_id is None else ctx.token_id.reshape(-1),
                    position=ctx.position.reshape(-1), label=label,
                    router_logits=logits if self.record_logits else None)
        self._prev = ctx
        if dev.tokens_added >= cap:
            self.flush()

    # -- flushing ----------------------------------------------------------
    def flush(self) -> int:
        """Write what is buffered as one shard (in counts mode, one tables record); returns tokens written."""
        import torch

        if self.mode == "counts":
            dev = self._device_tables
            if dev is None or not dev.tokens_added:
                return 0
            tables = dev.result()
            if tables.tokens:  # a pass of padding only counts nothing
                self._writer.append_tables(tables, self.count_spec)
                self.num_shards += 1
            self.num_tokens_recorded += tables.tokens
            return tables.tokens
        if not self._buf:
            return 0
        buf, self._buf, n = self._buf, [], self._buf_tokens
        self._buf_tokens = 0

        def cat_host(key):
            parts = [r[key] for r in buf]
            if all(p is None for p in parts):
                return None
            return torch.cat(parts, dim=0).cpu().numpy()

        # labelled and unlabelled batches in one shard, or after labelled shards: unlabelled = -1
        if any(r["label"] is not None for r in buf) or "label" in (self._writer.manifest.columns or {}):
            for r in buf:
                if r["label"] is None:
                    r["label"] = torch.full_like(r["seq_id"], -1)

        def cat_layers(key):
            first = buf[0][key]
            if first is None:
                return None
            if torch.is_tensor(first):
                return cat_host(key)
            return {s.layer_id: torch.cat([r[key][i] for r in buf], dim=0).cpu().numpy()
                    for i, s in enumerate(self.sites)}

        kwargs = dict(gate_weights=cat_layers("w"), seq_id=cat_host("seq_id"), position=cat_host("position"),
                      valid=cat_host("valid"), token_id=cat_host("token_id"), label=cat_host("label"),
                      rank=self.rank)
        if self.record_logits:
            kwargs["router_logits"] = cat_layers("lg")
        steps = [r["step"] for r in buf]
        if any(s is not None for s in steps):
            kwargs["step"] = np.concatenate([
                np.full(len(r["seq_id"]), -1 if r["step"] is None else int(r["step"]), dtype=np.int64)
                for r in buf])
        ids = cat_layers("ids")
        self._writer.append(ids, **kwargs)
        self.num_tokens_recorded += n
        self.num_shards += 1
        return n
