"""The router-adapter interface: how router modules are found in a PyTorch model and read.

:class:`RouterAdapter` describes one model family's routers; the built-in
Hugging Face adapters are in :mod:`infomoe.logs.export._hf`, the recorder that
uses them in :mod:`infomoe.logs.export._torch`.  Nothing here imports torch
until an adapter reads a router output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from infomoe._validate import describe

__all__ = ["RouterAdapter", "RouterSignatureError", "RouterSite", "SUPPORTED_UPSTREAM", "upstream_versions"]

_INT_RE = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class RouterSite:
    """One hooked router module.

    Attributes
    ----------
    layer_id : int
        Layer id written to the log.
    name : str
        Qualified module name (``model.layers.3.mlp.gate``).
    module : torch.nn.Module
        The router module.
    num_experts : int
        Number of experts it routes to.
    top_k : int
        Number of expert ids it returns per token.
    """

    layer_id: int
    name: str
    module: Any = field(repr=False)
    num_experts: int
    top_k: int


def _first_int(name: str) -> Optional[int]:
    m = _INT_RE.search(name)
    return None if m is None else int(m.group(1))


def upstream_versions() -> str:
    """The installed versions of the libraries whose router code the adapters read, for messages."""
    from importlib import metadata

    parts = []
    for dist in ("torch", "transformers"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


#: The upstream releases the built-in adapters are written and tested for (also in setup.cfg).
SUPPORTED_UPSTREAM = "torch >=2.4,<3 (tested 2.13.0), transformers >=5.0,<6 (tested 5.24.0)"


class RouterSignatureError(TypeError):
    """A router returned something its adapter does not know how to read.

    Raised on the first forward pass, so that an upstream change of a router's
    signature stops the run with a message naming the versions instead of
    recording wrong expert ids.
    """

    def __init__(self, adapter, module, what: str):
        self.adapter_name = adapter.name
        super().__init__(
            f"adapter {adapter.name!r}: router {type(module).__name__} {what}. This adapter is written for "
            f"{SUPPORTED_UPSTREAM}; installed: {upstream_versions()}. The router's signature has changed "
            "upstream: pass convert= (or ids_index=/weights_index=) to RouterAdapter, or install a supported "
            "version.")


@dataclass(frozen=True)
class RouterAdapter:
    """How to find router modules in a PyTorch model and read their decisions.

    The default conversion handles routers whose forward returns a tuple with
    the chosen expert ids at ``ids_index`` (shape ``(tokens, k)``), the gate
    weights actually used at ``weights_index`` and, optionally, the router
    logits at ``logits_index`` -- the Hugging Face 5.x ``*TopKRouter`` layout
    ``(router_logits, scores, indices)`` and the MegaBlocks layout
    ``(scores, expert_weights, expert_indices)``.  Pass ``convert`` for any
    other layout.

    Parameters
    ----------
    name : str
        Adapter name, written to the manifest ``source`` (``"torch:<name>"``).
    router_classes : tuple of str
        Class names of router modules (matched on ``type(module).__name__``).
    match : callable, optional
        ``match(qualified_name, module) -> bool``; used instead of
        ``router_classes`` when given.
    ids_index, weights_index : int
        Positions of the expert ids and gate weights in the router output.
    logits_index : int or None
        Position of the router logits (``None``: the router exposes none).
    convert : callable, optional
        ``convert(module, output) -> (ids, weights, logits_or_None)`` with
        ``ids`` an integer tensor ``(tokens, k)`` (-1 = dropped), ``weights``
        ``(tokens, k)``.  Overrides the index-based reading.
    num_experts, top_k : callable, optional
        ``f(module) -> int``; default reads ``module.num_experts`` /
        ``module.top_k``.
    score_function, topk_order : str
        Written to the manifest (see :class:`infomoe.logs.Manifest`).
    norm_topk_prob : callable, bool or None
        ``f(model) -> bool | None`` or a constant: whether the selected
        weights are renormalised to sum to one.
    layer_id : callable, optional
        ``f(model, qualified_name) -> int``; default: the first integer in
        the qualified name (``model.layers.3.mlp.gate`` -> 3).
    input_module : callable, optional
        ``f(model) -> module`` whose forward receives ``input_ids`` and
        ``attention_mask``; default: the model itself.
    metadata : callable, optional
        ``f(model) -> dict`` of extra manifest metadata.
    """

    name: str
    router_classes: tuple = ()
    match: Optional[Callable[[str, Any], bool]] = None
    ids_index: int = 2
    weights_index: int = 1
    logits_index: Optional[int] = 0
    convert: Optional[Callable] = None
    num_experts: Optional[Callable[[Any], int]] = None
    top_k: Optional[Callable[[Any], int]] = None
    score_function: str = "softmax"
    topk_order: str = "descending"
    norm_topk_prob: Any = None
    layer_id: Optional[Callable[[Any, str], int]] = None
    input_module: Optional[Callable[[Any], Any]] = None
    metadata: Optional[Callable[[Any], dict]] = None

    # -- discovery ---------------------------------------------------------
    def is_router(self, name: str, module) -> bool:
        if self.match is not None:
            return bool(self.match(name, module))
        return type(module).__name__ in self.router_classes

    def sites(self, model) -> list[RouterSite]:
        """All router modules of ``model``, in module-registration order."""
        out = []
        for name, module in model.named_modules():
            if not self.is_router(name, module):
                continue
            if self.layer_id is not None:
                lid = int(self.layer_id(model, name))
            else:
                lid = _first_int(name)
                if lid is None:
                    lid = len(out)
            ne = self.num_experts(module) if self.num_experts else getattr(module, "num_experts", None)
            tk = self.top_k(module) if self.top_k else getattr(module, "top_k", None)
            if ne is None or tk is None:
                raise ValueError(
                    f"adapter {self.name!r}: router {name!r} ({type(module).__name__}) has no "
                    "`num_experts`/`top_k` attribute; pass num_experts=/top_k= callables to RouterAdapter.")
            out.append(RouterSite(lid, name, module, int(ne), int(tk)))
        ids = [s.layer_id for s in out]
        if len(set(ids)) != len(ids):
            raise ValueError(f"adapter {self.name!r}: router modules map to duplicate layer ids {ids}; "
                             "pass layer_id= to RouterAdapter.")
        return out

    # -- conversion --------------------------------------------------------
    def read(self, module, output):
        """``(ids (T, k) int, weights (T, k) float, logits (T, E) or None)`` from a router output.

        Raises :class:`RouterSignatureError` (naming the installed torch and
        transformers versions) when the output is not the layout this
        adapter reads: upstream changed the router's signature.
        """
        import torch

        if self.convert is not None:
            ids, weights, logits = self.convert(module, output)
        else:
            wanted = [i for i in (self.ids_index, self.weights_index, self.logits_index) if i is not None]
            if not isinstance(output, (tuple, list)) or len(output) <= max(wanted):
                raise RouterSignatureError(
                    self, module, f"returned {describe(output)}, expected a tuple with the expert ids at "
                    f"[{self.ids_index}] and the gate weights at [{self.weights_index}]")
            ids = output[self.ids_index]
            weights = output[self.weights_index]
            logits = None if self.logits_index is None else output[self.logits_index]
        if not (torch.is_tensor(ids) and not ids.is_floating_point() and not ids.is_complex()
                and ids.dtype != torch.bool):
            raise RouterSignatureError(self, module, f"gave expert ids {describe(ids)}, expected an integer "
                                                     "tensor (tokens, k)")
        if not (torch.is_tensor(weights) and weights.is_floating_point()):
            raise RouterSignatureError(self, module, f"gave gate weights {describe(weights)}, expected a "
                                                     "floating-point tensor (tokens, k)")
        if logits is not None and not (torch.is_tensor(logits) and logits.is_floating_point()):
            raise RouterSignatureError(self, module, f"gave router logits {describe(logits)}, expected a "
                                                     "floating-point tensor (tokens, experts)")
        return ids, weights, logits

    def manifest_options(self, model) -> dict:
        norm = self.norm_topk_prob(model) if callable(self.norm_topk_prob) else self.norm_topk_prob
        meta = dict(self.metadata(model)) if self.metadata is not None else {}
        return dict(score_function=self.score_function, topk_order=self.topk_order,
                    norm_topk_prob=None if norm is None else bool(norm), metadata=meta)
