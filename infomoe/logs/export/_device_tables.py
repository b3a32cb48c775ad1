r"""The report's count tables, accumulated on the model's own device (torch).

A routing log of every token costs ``L k`` ids per token; at a billion
tokens nobody writes it.  The report (:mod:`infomoe.logs._report`) needs
only count tables (:class:`~infomoe.logs.LogTables`), which are sufficient
statistics, so a recorder in counts mode
(``RoutingRecorder(model, path, mode="counts")``) keeps them on the device
where the router ran and writes one ``"tables"`` record per flush
(:meth:`~infomoe.logs.LogWriter.append_tables`).  :class:`DeviceTables`
counts exactly what :func:`~infomoe.logs.count_shard` counts from the token
log of the same run (same buckets, same resampling groups, same top-k
convention, see :mod:`infomoe.logs._tables`), so the two reports are equal:
bit for bit for the counts, to rounding (summation order) for the sums of
the soft gate.

Every update is a fixed-shape tensor operation (``index_add_`` into
preallocated tables, sentinel cells for what is not counted), so a forward
pass adds no host synchronisation; values are copied to the host once per
flush.  Per-group tables (for the intervals) with at most
:data:`DENSE_CELLS` cells are dense ``int32`` tables; larger ones (a token x
top-k-set table, or token x expert with many experts) buffer cell keys on
the device and merge them with ``torch.unique`` when the buffer is full (one
synchronisation per :data:`SPARSE_BUFFER` keys).  Out-of-range expert ids
and router logits without a defined gate are counted on the device and
raise a ``ValueError`` at the flush, before anything is written.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from infomoe.logs._tables import CountSpec, LogTables, _comb_table, summed_tables

__all__ = ["DeviceTables", "DENSE_CELLS", "SPARSE_BUFFER", "MAX_CELL_COUNT"]

#: Per-group tables with at most this many cells are kept dense on the device (int32: 16 MiB).
DENSE_CELLS = 1 << 22

#: Cell keys a sparse table buffers on the device before merging them (int64: 8 MiB).
SPARSE_BUFFER = 1 << 20

#: Largest count a dense int32 cell may reach; the recorder flushes before it could.
MAX_CELL_COUNT = (1 << 31) - 1


class _GroupedTable:
    """A ``(groups, rows, cols)`` count table on the device: dense, or sparse cell keys.

    Rows and columns carry ``pad_rows``/``pad_cols`` sentinel values past the
    table (``rows, rows + 1, ...``: a dropped choice, a padding token, a
    bucket not counted), so an update is one key computation and one
    ``index_add_``, with no mask; the sentinel cells are cut off on the host.
    """

    def __init__(self, shape, pad_rows: int, pad_cols: int, device):
        import torch

        self.shape = tuple(int(v) for v in shape)
        G, R, C = self.shape
        self.padded = (G, R + pad_rows, C + pad_cols)
        self.dense = math.prod(self.shape) <= DENSE_CELLS
        if self.dense:
            self.table = torch.zeros(math.prod(self.padded), dtype=torch.int32, device=device)
        else:
            self.buffer = torch.empty(SPARSE_BUFFER, dtype=torch.int64, device=device)
            self.fill = 0
            self.keys = torch.zeros(0, dtype=torch.int64, device=device)
            self.counts = torch.zeros(0, dtype=torch.int64, device=device)

    def add(self, group, row, col, ones) -> None:
        """Count the cells ``(group[i], row[i], col[i])`` (int64 tensors; `ones` as long, int32)."""
        _, R, C = self.padded
        key = (group * R + row) * C + col
        if self.dense:
            self.table.index_add_(0, key, ones[:key.numel()])
            return
        m = key.numel()
        if self.fill + m > self.buffer.numel():
            self._compact()
        if m > self.buffer.numel():
            self._merge(key)
        else:
            self.buffer[self.fill:self.fill + m] = key
            self.fill += m

    def _merge(self, key) -> None:
        import torch

        u, c = torch.unique(key, return_counts=True)
        keys = torch.cat([self.keys, u])
        counts = torch.cat([self.counts, c])
        self.keys, inv = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros_like(self.keys).index_add_(0, inv, counts)

    def _compact(self) -> None:
        if self.fill:
            self._merge(self.buffer[:self.fill])
            self.fill = 0

    def to_host(self):
        """The counted cells as :class:`~infomoe.logs._uncertainty.GroupedCounts` (sentinels cut off)."""
        from infomoe.logs._uncertainty import GroupedCounts

        G, R, C = self.shape
        _, Rp, Cp = self.padded
        if self.dense:
            t = self.table.cpu().numpy().reshape(self.padded)[:, :R, :C].reshape(-1)
            nz = np.flatnonzero(t)
            return GroupedCounts(self.shape, nz.astype(np.int64), t[nz].astype(np.int64))
        self._compact()
        keys, counts = self.keys.cpu().numpy(), self.counts.cpu().numpy()
        g, r, c = keys // (Rp * Cp), keys // Cp % Rp, keys % Cp
        keep = (r < R) & (c < C) & (counts > 0)
        return GroupedCounts(self.shape, ((g * R + r) * C + c)[keep].astype(np.int64),
                             counts[keep].astype(np.int64))


class DeviceTables:
    """Running count tables of routing decisions, on one torch device.

    Parameters
    ----------
    spec : CountSpec
        What to count (the layers, in the order :meth:`add` receives them).
    device : torch.device or str
        Where the tables live (the model's device).

    Attributes
    ----------
    tokens_added : int
        Tokens (padding included) added since the last :meth:`result`.
    max_tokens : int
        Most tokens between two results (int32 cells).
    nbytes, flushed_nbytes : int
        Device memory the tables hold now, and held at the last result
        (about 35 MiB per layer of 32 experts, top-4, with the defaults).

    Notes
    -----
    :meth:`add` takes one forward pass; :meth:`result` copies the tables to
    the host as :class:`~infomoe.logs.LogTables` and starts afresh.  A
    dense cell is an ``int32``, so at most ``MAX_CELL_COUNT / k**2`` tokens
    (``k`` the largest top-k) may be added between two results
    (:attr:`max_tokens`); the recorder flushes before that.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from infomoe.logs import CountSpec, LayerSpec, Manifest, count_shard
    >>> from infomoe.logs.export._device_tables import DeviceTables
    >>> spec = CountSpec.from_manifest(Manifest(source="demo", layers=(LayerSpec(0, 4, 2),)))
    >>> ids = torch.tensor([[0, 1], [2, 3], [0, 1]])
    >>> dev = DeviceTables(spec, "cpu")
    >>> dev.add([ids], groups=torch.zeros(3, dtype=torch.int64), token_id=torch.tensor([5, 6, 5]))
    >>> t = dev.result()
    >>> host = count_shard({"expert_ids": {0: ids.numpy()}, "token_id": np.array([5, 6, 5]),
    ...                     "seq_id": np.zeros(3, np.int64)}, spec=spec)
    >>> t.load[0].tolist(), bool((t.token[0] == host.token[0]).all())
    ([2, 2, 1, 1], True)
    """

    def __init__(self, spec: CountSpec, device):
        import torch

        if not isinstance(spec, CountSpec):
            raise TypeError(f"`spec` must be a CountSpec, got {type(spec).__name__}.")
        self.spec = spec
        self.device = torch.device(device)
        k_max = max(s.top_k for s in spec.layers)
        self.max_tokens = MAX_CELL_COUNT // (k_max * k_max)
        self._luts = [None if t is None else torch.as_tensor(t, dtype=torch.int64, device=self.device)
                      for t in spec.luts]
        self._edges = torch.as_tensor(spec.position_edges, dtype=torch.int64, device=self.device)
        self._comb = [torch.as_tensor(_comb_table(s.num_experts, s.top_k), device=self.device)
                      if spec.counts_sets(i) else None for i, s in enumerate(spec.layers)]
        self._ones_cache: dict = {}
        self.flushed_nbytes = 0
        self._reset()

    # -- state --------------------------------------------------------------
    def _zeros(self, *shape, dtype=None):
        import torch

        return torch.zeros(shape, dtype=torch.int64 if dtype is None else dtype, device=self.device)

    def _reset(self) -> None:
        spec, L, G = self.spec, len(self.spec.layers), self.spec.groups
        z = self._zeros
        self.tokens_added = 0  # host-side count of tokens (valid or not) since the last result
        self._tokens, self._seq_tokens, self._tok_folded, self._lab_folded = z(), z(), z(), z()
        self._group_tokens = z(G + 1)
        self._load = [z(s.num_experts + 2) for s in spec.layers]
        self._coact = [z((s.num_experts + 2) ** 2) for s in spec.layers]
        self._dropping, self._incomplete = z(L), z(L)
        self._bad_ids, self._bad_gate = z(L), z(L)
        self._prob, self._ent, self._logit_tokens = [None] * L, [None] * L, [None] * L
        self._grouped = {name: [None] * L for name in ("token", "position", "label", "sets", "token_set")}
        self._grouped["transition"] = [None] * max(L - 1, 0)

    def _table(self, name: str, i: int, rows: int, cols: int, pad_rows: int, pad_cols: int) -> _GroupedTable:
        t = self._grouped[name][i]
        if t is None:
            t = self._grouped[name][i] = _GroupedTable((self.spec.groups, rows, cols), pad_rows, pad_cols,
                                                       self.device)
        return t

    def _ones(self, m: int, dtype):
        """A cached tensor of at least `m` ones (int32 for dense tables, int64 for the small ones)."""
        import torch

        cur = self._ones_cache.get(dtype)
        if cur is None or cur.numel() < m:
            cur = self._ones_cache[dtype] = torch.ones(max(m, 1 << 16), dtype=dtype, device=self.device)
        return cur[:m]

    @property
    def nbytes(self) -> int:
        """Device memory held by the tables (they are allocated at the first :meth:`add`)."""
        tensors = [self._tokens, self._group_tokens, self._dropping, self._incomplete, *self._load, *self._coact]
        tensors += [t for t in self._prob + self._ent + self._logit_tokens if t is not None]
        total = sum(t.numel() * t.element_size() for t in tensors)
        for ts in self._grouped.values():
            for t in ts:
                if t is None:
                    continue
                parts = [t.table] if t.dense else [t.buffer, t.keys, t.counts]
                total += sum(p.numel() * p.element_size() for p in parts)
        return int(total)

    # -- counting -----------------------------------------------------------
    def add(self, expert_ids: Sequence, *, groups, valid=None, token_id=None, position=None, label=None,
            router_logits: Optional[Sequence] = None) -> None:
        """Count one forward pass.

        Parameters
        ----------
        expert_ids : sequence of tensor (n, k_l)
            Chosen expert ids per layer, in the order of ``spec.layers``
            (``-1``: dropped).  Tensors on another device are copied to
            this one (asynchronously where the devices allow).
        groups : tensor (n,) of int64
            Resampling group of each token (:func:`~infomoe.logs._uncertainty.token_groups`
            of its sequence id).
        valid : tensor (n,) of bool, optional
            Tokens to count (padding is routed but not counted).
        token_id, position, label : tensor (n,) of int64, optional
            Per-token columns (label ``-1``: unlabelled).
        router_logits : sequence of (tensor (n, E_l) or None), optional
            Router logits per layer, for the sums of the soft gate.
        """
        import torch

        spec, G = self.spec, self.spec.groups
        n = int(groups.shape[0])
        here = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        # layers of a model split over devices (device_map="auto") come from several devices
        expert_ids = [here(e) for e in expert_ids]
        router_logits = None if router_logits is None else [here(t) for t in router_logits]
        groups, valid, token_id, position, label = map(here, (groups, valid, token_id, position, label))
        self.tokens_added += n
        if valid is None:
            valid = torch.ones(n, dtype=torch.bool, device=self.device)
        n_valid = valid.sum()
        self._tokens += n_valid
        self._seq_tokens += n_valid
        grp = groups.to(torch.int64)
        self._group_tokens.index_add_(0, torch.where(valid, grp, G), self._ones(n, torch.int64))

        def buckets(v, k, folded):
            v = v.to(torch.int64)
            if folded is not None:
                folded += (valid & (v >= k)).sum()
            return torch.where(v < 0, k, torch.remainder(v, k))

        tok = None if token_id is None else buckets(token_id, spec.token_buckets, self._tok_folded)
        lab = None if label is None else buckets(label, spec.label_buckets, self._lab_folded)
        pos = None
        if position is not None:
            pos = torch.searchsorted(self._edges, position.to(torch.int64).contiguous(), right=True) - 1
            pos = torch.where(pos < 0, len(spec.position_edges), pos)

        prev = None  # (E, k, transposed ids with sentinels) of the previous layer
        for i, s in enumerate(spec.layers):
            E = s.num_experts
            e = expert_ids[i].to(torch.int64).reshape(n, -1)
            k = e.shape[1]
            lut = self._luts[i]
            width = E if lut is None else lut.numel() - 1
            bad = (e < -1) | (e >= width)
            self._bad_ids[i] += bad.sum()
            e = torch.where(bad, -1, e)
            if lut is not None:
                e = lut[e]  # -1 indexes the appended -1
            et = torch.where(e.T < 0, E, e.T)
            et = torch.where(valid[None, :], et, E + 1).contiguous()  # (k, n): E dropped, E + 1 invalid
            flat = et.reshape(-1)
            ones = self._ones(flat.numel(), torch.int32)
            self._load[i].index_add_(0, flat, self._ones(flat.numel(), torch.int64))
            self._dropping[i] += ((e < 0).any(dim=1) & valid).sum()
            gflat = grp.repeat(k)
            for name, x, kx in (("token", tok, spec.token_buckets), ("position", pos, len(spec.position_edges)),
                                ("label", lab, spec.label_buckets)):
                if x is not None:  # row kx: not counted (negative id or label, position before the first edge)
                    self._table(name, i, kx, E, 1, 2).add(gflat, x.repeat(k), flat, ones)
            if prev is not None:
                pE, pk, pet = prev
                table = self._table("transition", i - 1, pE, E, 2, 2)
                for j in range(pk):
                    table.add(gflat, pet[j].repeat(k), flat, ones)
            prev = (E, k, et)
            for a in range(k):
                for b in range(a + 1, k):
                    self._coact[i].index_add_(0, et[a] * (E + 2) + et[b], self._ones(n, torch.int64))
            if self._comb[i] is not None:
                self._count_sets(i, e, k, grp, valid, tok)
            lg = None if router_logits is None else router_logits[i]
            if lg is not None and lut is None:
                self._count_gate(i, lg, grp, valid)

    def _count_sets(self, i, e, k, grp, valid, tok) -> None:
        import torch

        spec = self.spec
        E, C = spec.layers[i].num_experts, spec.set_alphabet(i)
        srt = torch.sort(e, dim=1).values
        ok = (srt[:, 0] >= 0) & valid
        if k > 1:
            ok &= (torch.diff(srt, dim=1) > 0).all(dim=1)
        safe = srt.clamp(0, E - 1)
        ct = self._comb[i]
        rank = ct[0][safe[:, 0]]
        for j in range(1, k):
            rank = rank + ct[j][safe[:, j]]
        self._incomplete[i] += valid.sum() - ok.sum()
        rank = torch.where(ok, rank, C)  # column C: not a complete set of a counted token
        ones = self._ones(rank.numel(), torch.int32)
        self._table("sets", i, 1, C, 0, 1).add(grp, torch.zeros_like(grp), rank, ones)
        if tok is not None and k >= 2:  # for k = 1 the set is the expert: I(token; E) already
            self._table("token_set", i, spec.token_buckets, C, 1, 1).add(grp, tok, rank, ones)

    def _count_gate(self, i, logits, grp, valid) -> None:
        """Sums of the soft gate and its entropy, as :func:`~infomoe.logs._tables._gate_stats` computes them."""
        import torch

        G, E = self.spec.groups, self.spec.layers[i].num_experts
        if self._prob[i] is None:
            self._prob[i] = self._zeros(G + 1, E, dtype=torch.float64)
            self._ent[i] = self._zeros(G + 1, dtype=torch.float64)
            self._logit_tokens[i] = self._zeros(G + 1)
        x = logits.reshape(valid.shape[0], -1).to(torch.float32)  # what the token log stores
        x = (x.cpu() if x.device.type == "mps" else x).to(torch.float64)  # MPS has no float64
        if self.spec.score_function == "sigmoid":
            undefined = torch.isnan(x).any(dim=1)
            logw = torch.nn.functional.logsigmoid(x)
        else:
            m = x.max(dim=1, keepdim=True).values
            undefined = ~torch.isfinite(m[:, 0])
            logw = x - m
        w = torch.exp(logw)
        ssum = w.sum(dim=1, keepdim=True)
        undefined |= ~(ssum[:, 0] > 0)
        p = w / ssum
        pz = torch.nan_to_num_(p * logw, nan=0.0)  # 0 log 0 = 0: NaN only where p = 0 and log w = -inf
        h = torch.log(ssum[:, 0]) - pz.sum(dim=1)
        p, h, undefined = p.to(self.device), h.to(self.device), undefined.to(self.device)
        self._bad_gate[i] += (undefined & valid).sum()
        g = torch.where(valid & ~undefined, grp, G)
        self._prob[i].index_add_(0, g, p)
        self._ent[i].index_add_(0, g, h)
        self._logit_tokens[i].index_add_(0, g, self._ones(g.numel(), torch.int64))

    # -- result -------------------------------------------------------------
    def result(self) -> LogTables:
        """Copy the tables to the host (one synchronisation) and start afresh.

        Raises
        ------
        ValueError
            If an expert id was outside ``[-1, E - 1]``, or router logits of
            a counted token gave no defined gate (a NaN, or a row that is
            all ``-inf``); the tables are discarded.
        """
        spec = self.spec
        self.flushed_nbytes = self.nbytes  # what the tables held, for memory reports after the flush
        host = lambda t: t.cpu().numpy()  # noqa: E731
        bad_ids, bad_gate = host(self._bad_ids), host(self._bad_gate)
        try:
            for i, s in enumerate(spec.layers):
                if bad_ids[i]:
                    raise ValueError(f"layer {s.layer_id}: {int(bad_ids[i])} expert id(s) outside [-1, "
                                     f"{s.num_experts - 1}] (the log declares {s.num_experts} experts); "
                                     "nothing of these tables is written.")
                if bad_gate[i]:
                    raise ValueError(f"layer {s.layer_id}: router logits of {int(bad_gate[i])} token(s) give "
                                     "no defined gate (NaN, or a row that is all -inf); nothing of these "
                                     "tables is written.")
            return self._host_tables(host)
        finally:
            self._reset()

    def _host_tables(self, host) -> LogTables:
        spec, L, G = self.spec, len(self.spec.layers), self.spec.groups
        load, dropped, coact = [], np.zeros(L, np.int64), []
        for i, s in enumerate(spec.layers):
            E = s.num_experts
            c = host(self._load[i])
            load.append(c[:E].astype(np.int64))
            dropped[i] = c[E]
            co = host(self._coact[i]).reshape(E + 2, E + 2)[:E, :E].astype(np.int64)
            coact.append(co + co.T)
        grouped = {name: tuple(None if t is None else t.to_host() for t in ts) for name, ts in self._grouped.items()}
        ent, lt = np.zeros((L, G)), np.zeros((L, G), np.int64)
        for i in range(L):
            if self._prob[i] is not None:
                ent[i], lt[i] = host(self._ent[i])[:G], host(self._logit_tokens[i])[:G]
        return LogTables(
            tokens=int(host(self._tokens)), load=tuple(load), record_pairs=np.zeros(L, np.int64), dropped=dropped,
            **summed_tables(grouped), incomplete_sets=host(self._incomplete).astype(np.int64),
            prob_sum=tuple(None if p is None else host(p)[:G] for p in self._prob),
            router_entropy_sum=ent, logit_tokens=lt, tokens_dropping=host(self._dropping).astype(np.int64),
            coactivation=tuple(coact), group_tokens=host(self._group_tokens)[:G].astype(np.int64),
            grouped_token=grouped["token"], grouped_position=grouped["position"], grouped_label=grouped["label"],
            grouped_transition=grouped["transition"], grouped_sets=grouped["sets"],
            grouped_token_set=grouped["token_set"], token_ids_folded=int(host(self._tok_folded)),
            labels_folded=int(host(self._lab_folded)), seq_id_tokens=int(host(self._seq_tokens)))
