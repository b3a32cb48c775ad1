"""Expert forcing: the loss of a PyTorch MoE language model when one layer's routing is overridden.

:func:`forced_routing` is a context manager that makes one router module
return given expert ids and gate weights (a forward hook that replaces the
router's output, written back in the layout its adapter reads, so it works
for every built-in Hugging Face family); :func:`expert_loss_matrix` uses it
to measure, for every held-out token, the next-token loss when the layer
sends that token to each single expert, next to the loss of the learned
routing.  The ``(tokens x experts)`` matrix is the distortion matrix of the
layer's accuracy-rate curve (see :func:`infomoe.router_frontier_point`).
The model is never modified: the hook is removed on exit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from infomoe._progress import progress_bar
from infomoe._validate import check_positive_int
from infomoe.logs.export._hf import resolve_adapter

__all__ = ["ExpertLosses", "expert_loss_matrix", "forced_routing"]


# -- writing a forced decision back into a router's output ---------------------

def _write_indexed(adapter, module, output, ids, weights, rows):
    """Default writer: the ``*TopKRouter`` tuple layout read by ``ids_index``/``weights_index``."""
    import torch

    out = list(output)
    old_ids, old_w = out[adapter.ids_index], out[adapter.weights_index]
    if old_ids.shape != ids.shape:
        raise ValueError(f"forced expert ids have shape {tuple(ids.shape)} but router {type(module).__name__} "
                         f"returned {tuple(old_ids.shape)} (one row per token of this forward pass, k columns).")
    ids = ids.to(device=old_ids.device, dtype=old_ids.dtype)
    weights = weights.to(device=old_w.device, dtype=old_w.dtype)
    if rows is not None:
        r = rows.to(old_ids.device).reshape(-1, 1)
        ids = torch.where(r, ids, old_ids)
        weights = torch.where(r, weights, old_w)
    out[adapter.ids_index] = ids
    out[adapter.weights_index] = weights
    return type(output)(out) if isinstance(output, tuple) else out


def _write_switch(adapter, module, output, ids, weights, rows):
    """Switch Transformers: ``(one-hot dispatch (B, S, E), gate (B, S), logits)``, top-1."""
    import torch

    onehot, gate, logits = output
    n = onehot.shape[-1]
    if ids.shape != (onehot.reshape(-1, n).shape[0], 1):
        raise ValueError(f"forced expert ids have shape {tuple(ids.shape)}; the Switch router routes "
                         f"{onehot.reshape(-1, n).shape[0]} tokens to 1 expert each.")
    new = torch.nn.functional.one_hot(ids[:, 0].to(onehot.device).long(), n).to(onehot.dtype)
    new_gate = weights[:, 0].to(device=gate.device, dtype=gate.dtype)
    if rows is not None:
        r = rows.to(onehot.device)
        new = torch.where(r[:, None], new, onehot.reshape(-1, n))
        new_gate = torch.where(r, new_gate, gate.reshape(-1))
    return new.reshape(onehot.shape), new_gate.reshape(gate.shape), logits


def _writer_for(adapter, write):
    if write is not None:
        if not callable(write):
            raise TypeError(f"`write` must be callable(module, output, ids, weights, rows) -> output, got {write!r}.")
        return lambda ad, module, output, ids, weights, rows: write(module, output, ids, weights, rows)
    if adapter.name.startswith("switch_transformers"):
        return _write_switch
    if adapter.convert is not None:
        raise ValueError(f"adapter {adapter.name!r} reads its router with a custom convert=; pass "
                         "write=callable(module, output, ids, weights, rows) -> output to say how a forced "
                         "decision is written back.")
    return _write_indexed


def _site(adapter, model, layer):
    sites = adapter.sites(model)
    if not sites:
        raise ValueError(f"adapter {adapter.name!r} found no router modules in {type(model).__name__}.")
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"`layer` must be an int layer id, got {layer!r}.")
    for s in sites:
        if s.layer_id == int(layer):
            return s
    raise ValueError(f"`layer` {layer} not found; router layer ids are {sorted(s.layer_id for s in sites)}.")


class _Override:
    """The decision the hooked router returns on the next forward passes (None: its own)."""

    def __init__(self):
        self.ids = self.weights = self.rows = None
        self.seen = []  # (ids, weights, logits) read from the router's own output, when capturing
        self.capture = False


@contextlib.contextmanager
def _hook(model, layer, adapter, write=None):
    ad = resolve_adapter(adapter, model)
    site = _site(ad, model, layer)
    writer = _writer_for(ad, write)
    state = _Override()

    def hook(module, inputs, output):
        if state.capture:
            ids, w, logits = ad.read(module, output)
            state.seen.append((ids.detach(), w.detach(), None if logits is None else logits.detach()))
        if state.ids is None:
            return None
        return writer(ad, module, output, state.ids, state.weights, state.rows)

    handle = site.module.register_forward_hook(hook)
    try:
        yield site, ad, state
    finally:
        handle.remove()


@contextlib.contextmanager
def forced_routing(model, ids, weights=None, *, layer: int, rows=None, adapter="auto", write=None):
    """Make one router return the given expert ids and gate weights inside a ``with`` block.

    A forward hook on the router of ``layer`` replaces the router's output
    by ``ids``/``weights`` (the router's logits are kept), written in the
    layout the adapter reads, so the model's own expert dispatch runs with
    the forced decision.  Every forward pass inside the block must route
    ``ids.shape[0]`` tokens through that layer.

    Parameters
    ----------
    model : torch.nn.Module
        A model with routers an adapter finds (see :data:`infomoe.logs.export.ADAPTERS`).
    ids : int or tensor (tokens, k)
        Expert ids per token (flattened batch x sequence, row-major).  An int
        sends every token to that single expert (gate weight 1), whatever
        the number of tokens.
    weights : tensor (tokens, k), optional
        Gate weights; default ``[1, 0, ..., 0]`` per row.
    layer : int
        Layer id of the router (as :class:`~infomoe.logs.export.RoutingRecorder` numbers them).
    rows : bool tensor (tokens,), optional
        Force only these tokens; the others keep the router's own decision.
    adapter : "auto", str or RouterAdapter
        As in :class:`~infomoe.logs.export.RoutingRecorder`.
    write : callable, optional
        ``write(module, output, ids, weights, rows) -> output`` for adapters
        with a custom ``convert=`` (built in: the ``*TopKRouter`` tuple and
        Switch Transformers).

    Notes
    -----
    A single expert ``e`` is written as the k ids ``(e, ..., e)`` with weights
    ``(1, 0, ..., 0)`` so that the router's output keeps its shape; the
    zero-weight copies add exactly nothing to the layer's output.

    Examples
    --------
    >>> import torch
    >>> from infomoe.logs.export import forced_routing, tiny_model
    >>> model = tiny_model("olmoe")
    >>> x = torch.randint(0, 99, (1, 5))
    >>> with torch.no_grad(), forced_routing(model, 3, layer=0):
    ...     y = model(x).logits
    >>> tuple(y.shape)
    (1, 5, 99)
    """
    import torch

    with _hook(model, layer, adapter, write) as (site, ad, state):
        const = isinstance(ids, (int, np.integer)) and not isinstance(ids, bool)
        if const:
            e = int(ids)
            if not 0 <= e < site.num_experts:
                raise ValueError(f"`ids` {e} is not an expert of layer {layer} (0..{site.num_experts - 1}).")
        else:
            if not torch.is_tensor(ids) or ids.is_floating_point() or ids.ndim != 2:
                raise TypeError("`ids` must be an int or an integer tensor (tokens, k).")
            if weights is None:
                weights = torch.zeros(ids.shape, dtype=torch.float32)
                weights[:, 0] = 1.0
            if not torch.is_tensor(weights) or weights.shape != ids.shape:
                raise ValueError(f"`weights` must be a tensor of the shape of `ids` {tuple(ids.shape)}.")
            state.ids, state.weights = ids, weights
        state.rows = None if rows is None else torch.as_tensor(rows).reshape(-1).bool()
        if const:
            k = 1 if ad.name.startswith("switch_transformers") else site.top_k

            def sized(module, inputs):
                h = inputs[0]
                n = h.reshape(-1, h.shape[-1]).shape[0]
                if state.ids is None or state.ids.shape[0] != n:
                    state.ids = torch.full((n, k), e, dtype=torch.long, device=h.device)
                    w = torch.zeros((n, k), dtype=torch.float32, device=h.device)
                    w[:, 0] = 1.0
                    state.weights = w

            pre = site.module.register_forward_pre_hook(sized)
        try:
            yield
        finally:
            if const:
                pre.remove()


# -- the loss matrix ------------------------------------------------------------

@dataclass(frozen=True)
class ExpertLosses:
    """Per-token next-token losses of one MoE layer's single-expert and learned routing.

    Rows are the predicted tokens (position ``t`` predicting token ``t + 1``
    where both are real tokens), in the order of the batch, then position.

    Attributes
    ----------
    loss : ndarray (tokens, experts)
        Cross-entropy (nats) of the next-token prediction when the layer
        sends the token to that single expert (gate weight 1).
    routed_loss : ndarray (tokens,)
        Cross-entropy of the model as it is (the learned top-k routing).
    router_probs : ndarray (tokens, experts)
        The layer's soft gate on the token: softmax of the router logits
        (normalised sigmoid scores for ``score_function="sigmoid"``).
    routed_ids, routed_weights : ndarray (tokens, k)
        The learned decision of the layer.
    seq_id, position, target : ndarray of int (tokens,)
        Row of the input batch, position of the token, id of the predicted token.
    layer, num_experts, top_k : int
    mode : str
        ``"token"`` (only that token forced, its context routed as learned)
        or ``"all"`` (every token of the sequence forced to the expert).
    """

    loss: np.ndarray = field(repr=False)
    routed_loss: np.ndarray = field(repr=False)
    router_probs: np.ndarray = field(repr=False)
    routed_ids: np.ndarray = field(repr=False)
    routed_weights: np.ndarray = field(repr=False)
    seq_id: np.ndarray = field(repr=False)
    position: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)
    layer: int
    num_experts: int
    top_k: int
    mode: str

    @property
    def num_tokens(self) -> int:
        return int(self.loss.shape[0])

    def __repr__(self) -> str:
        return (f"ExpertLosses(tokens={self.num_tokens}, layer={self.layer}, experts={self.num_experts}, "
                f"top_k={self.top_k}, mode={self.mode!r}, routed_loss={float(self.routed_loss.mean()):.4g}, "
                f"best_single={float(self.loss.mean(0).min()):.4g}, oracle={float(self.loss.min(1).mean()):.4g})")


def _token_ce(logits, targets):
    import torch

    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), reduction="none").reshape(targets.shape)


def _probs(ad, logits):
    import torch

    x = logits.float()
    if ad.score_function == "sigmoid":
        s = torch.sigmoid(x)
        return s / s.sum(-1, keepdim=True)
    return torch.softmax(x, -1)


def expert_loss_matrix(model, input_ids, *, layer: int, attention_mask=None, adapter="auto",
                       mode: str = "token", batch_size: int = 8, write=None,
                       progress: bool = False) -> ExpertLosses:
    """Next-token loss of every token when one MoE layer sends it to each single expert.

    Parameters
    ----------
    model : torch.nn.Module
        A causal language model returning ``.logits`` of shape
        ``(batch, seq, vocab)`` (any built-in decoder-only Hugging Face MoE
        family, on any device).  Run in eval mode and without gradients;
        its mode is restored afterwards.
    input_ids : tensor or array (n_seq, seq_len)
        Held-out token ids.
    layer : int
        Layer id of the MoE router to force.
    attention_mask : tensor or array (n_seq, seq_len), optional
        1 = real token; only positions whose token and next token are real
        give rows.
    adapter : "auto", str or RouterAdapter
        As in :class:`~infomoe.logs.export.RoutingRecorder`.
    mode : {"token", "all"}
        ``"token"`` (default): row ``t`` forces only token ``t`` and the
        earlier tokens keep their learned routing -- the loss of that
        token's own routing decision; costs ``seq_len`` forward passes of the
        prefixes, each of ``batch x experts`` sequences.  ``"all"``: every
        token of the sequence goes to the expert at once (one forward pass
        per expert); the earlier tokens' forced outputs then change the
        context too.
    batch_size : int, default 8
        Sequences per forward pass (times ``experts`` in the forced passes).
    write : callable, optional
        For custom adapters, see :func:`forced_routing`.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    ExpertLosses

    Raises
    ------
    ValueError
        Unknown `layer` or `mode`, inputs of the wrong shape, or a model
        whose output has no ``logits``.

    Notes
    -----
    In a causal model the loss at position ``t`` depends only on positions
    ``<= t``, so ``"token"`` mode runs the prefix ``[0, t]`` with only its
    last token forced: exact, and the forced row with the learned decision
    reproduces ``routed_loss``.

    Examples
    --------
    >>> import torch
    >>> from infomoe.logs.export import expert_loss_matrix, tiny_model
    >>> model = tiny_model("qwen3_moe")
    >>> x = torch.randint(3, 99, (2, 6), generator=torch.Generator().manual_seed(0))
    >>> m = expert_loss_matrix(model, x, layer=1)
    >>> m.loss.shape, m.router_probs.shape
    ((10, 4), (10, 4))
    """
    import torch

    if mode not in ("token", "all"):
        raise ValueError(f"`mode` must be 'token' or 'all', got {mode!r}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        raise TypeError(f"`model` must be a torch.nn.Module with parameters, got {type(model).__name__}.") from None
    x = torch.as_tensor(np.asarray(input_ids) if not torch.is_tensor(input_ids) else input_ids)
    if x.ndim != 2 or x.is_floating_point() or x.shape[1] < 2:
        raise ValueError(f"`input_ids` must be integer token ids (n_seq, seq_len >= 2), got shape {tuple(x.shape)}"
                         f" and dtype {x.dtype}.")
    x = x.long()
    if attention_mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    else:
        mask = torch.as_tensor(np.asarray(attention_mask) if not torch.is_tensor(attention_mask)
                               else attention_mask)
        if mask.shape != x.shape:
            raise ValueError(f"`attention_mask` must have the shape of `input_ids` {tuple(x.shape)}, "
                             f"got {tuple(mask.shape)}.")
        mask = mask.bool()
    n_seq, S = x.shape
    ok = mask[:, :-1] & mask[:, 1:]  # (n_seq, S-1): row t predicts token t+1

    was_training = model.training
    model.eval()
    cols = {k: [] for k in ("routed", "forced", "ids", "w", "probs")}
    try:
        with torch.no_grad(), _hook(model, layer, adapter, write) as (site, ad, state):
            E, k = site.num_experts, site.top_k
            kf = 1 if ad.name.startswith("switch_transformers") else k
            batches = [(i, min(i + batch_size, n_seq)) for i in range(0, n_seq, batch_size)]
            total = len(batches) * (S - 1 if mode == "token" else 1)
            bar = progress_bar(enabled=progress, total=total, desc=f"expert forcing (layer {layer})",
                               unit="pass")
            for a, b in batches:
                xb, mb = x[a:b].to(device), mask[a:b].to(device)
                B = b - a
                # the learned routing: losses, decisions and soft gate of the layer
                state.capture, state.seen = True, []
                out = model(input_ids=xb, attention_mask=mb.long())
                state.capture = False
                logits = getattr(out, "logits", None)
                if logits is None or logits.ndim != 3 or logits.shape[:2] != xb.shape:
                    raise ValueError("`model` must return .logits of shape (batch, seq, vocab) (a causal "
                                     "language model).")
                if len(state.seen) != 1:
                    raise ValueError(f"the router of layer {layer} ran {len(state.seen)} times in one forward "
                                     "pass; expert forcing needs one call per pass.")
                ids, w, rl = state.seen[0]
                if rl is None:
                    raise ValueError(f"adapter {ad.name!r} exposes no router logits: the soft gate is needed.")
                cols["routed"].append(_token_ce(logits[:, :-1], xb[:, 1:]).cpu())
                cols["ids"].append(ids.reshape(B, S, -1)[:, :-1].cpu())
                cols["w"].append(w.float().reshape(B, S, -1)[:, :-1].cpu())
                cols["probs"].append(_probs(ad, rl).reshape(B, S, E)[:, :-1].cpu())
                # forced: replicate the batch once per expert, replica r goes to expert r // B
                expert_of_row = torch.arange(E, device=device).repeat_interleave(B)  # (E*B,)
                xr, mr = xb.repeat(E, 1), mb.repeat(E, 1)
                forced = torch.empty((B, S - 1, E), dtype=torch.float32)
                steps = range(S - 1) if mode == "token" else [S - 2]
                for t in steps:
                    L = t + 1 if mode == "token" else S
                    fid = expert_of_row.reshape(-1, 1, 1).expand(E * B, L, kf)
                    fw = torch.zeros((E * B, L, kf), dtype=torch.float32, device=device)
                    fw[..., 0] = 1.0
                    rows = torch.zeros((E * B, L), dtype=torch.bool, device=device)
                    if mode == "token":
                        rows[:, t] = True
                    else:
                        rows[:] = True
                    state.ids, state.weights = fid.reshape(-1, kf), fw.reshape(-1, kf)
                    state.rows = rows.reshape(-1)
                    lo = model(input_ids=xr[:, :L], attention_mask=mr[:, :L].long()).logits
                    state.ids = state.weights = state.rows = None
                    if mode == "token":
                        ce = _token_ce(lo[:, t], xr[:, t + 1])  # (E*B,)
                        forced[:, t] = ce.reshape(E, B).T.cpu()
                    else:
                        ce = _token_ce(lo[:, :-1], xr[:, 1:])  # (E*B, S-1)
                        forced[:] = ce.reshape(E, B, S - 1).permute(1, 2, 0).cpu()
                    bar.update(1)
                cols["forced"].append(forced)
            bar.close()
    finally:
        model.train(was_training)

    okf = ok.reshape(-1).numpy()
    seq = np.repeat(np.arange(n_seq), S - 1)[okf]
    pos = np.tile(np.arange(S - 1), n_seq)[okf]

    def cat(name, width=None):
        a = torch.cat(cols[name]).double().numpy() if name != "ids" else torch.cat(cols[name]).numpy()
        return a.reshape(n_seq * (S - 1), -1)[okf] if width else a.reshape(-1)[okf]

    res = ExpertLosses(loss=cat("forced", E), routed_loss=cat("routed"), router_probs=cat("probs", E),
                       routed_ids=cat("ids", k).astype(np.int64), routed_weights=cat("w", k),
                       seq_id=seq.astype(np.int64), position=pos.astype(np.int64),
                       target=x[:, 1:].reshape(-1).numpy()[okf].astype(np.int64),
                       layer=int(layer), num_experts=int(E), top_k=int(k), mode=mode)
    if not np.all(np.isfinite(res.loss)) or not np.all(np.isfinite(res.routed_loss)):
        raise ValueError("the model gave non-finite losses (NaN/inf logits); check the model and inputs.")
    if res.num_tokens == 0:
        raise ValueError("no predicted tokens: every position is padding or has no real next token.")
    return res
