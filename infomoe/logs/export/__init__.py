"""Exporters: record routing decisions from PyTorch, Hugging Face and JAX/Flax models.

* :class:`RoutingRecorder` -- a context manager that hooks the router modules
  of a PyTorch model (no modification) and writes a routing log, copying
  decisions off the accelerator in bounded batches.
* :data:`ADAPTERS` / :class:`RouterAdapter` -- how routers are found and read;
  Hugging Face Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, GraniteMoE, GPT-OSS,
  DeepSeek-V3 and Switch Transformers are built in.
* :func:`tiny_model` -- tiny random-config models of those architectures
  (CPU, no download) for docs and tests.
* :func:`expert_loss_matrix`, :func:`forced_routing` -- expert forcing: the
  next-token loss when one layer sends each token to each single expert;
  :func:`router_frontier_point` places the learned router against that
  layer's accuracy-rate frontier.
* :func:`routing_from_intermediates`, :func:`write_intermediates` -- pull
  router indices/weights out of Flax NNX ``nnx.capture`` or Linen
  ``capture_intermediates`` pytrees.  Arrays from numpy, JAX or torch (any
  device) are written directly with :func:`infomoe.logs.write_log`.

Facade convention (:mod:`infomoe._facade`): eager.  Importing this package
imports neither torch nor JAX; they load when used.
"""

from infomoe import _facade
from infomoe._router_frontier import FrontierPoint as FrontierPoint
from infomoe._router_frontier import rate_lower_bound as rate_lower_bound
from infomoe._router_frontier import router_frontier_point as router_frontier_point
from infomoe.logs.export._adapter import RouterAdapter as RouterAdapter
from infomoe.logs.export._adapter import RouterSignatureError as RouterSignatureError
from infomoe.logs.export._adapter import RouterSite as RouterSite
from infomoe.logs.export._forcing import ExpertLosses as ExpertLosses
from infomoe.logs.export._forcing import expert_loss_matrix as expert_loss_matrix
from infomoe.logs.export._forcing import forced_routing as forced_routing
from infomoe.logs.export._hf import ADAPTERS as ADAPTERS
from infomoe.logs.export._hf import TINY_ARCHS as TINY_ARCHS
from infomoe.logs.export._hf import get_adapter as get_adapter
from infomoe.logs.export._hf import tiny_config as tiny_config
from infomoe.logs.export._hf import tiny_model as tiny_model
from infomoe.logs.export._jax import find_leaves as find_leaves
from infomoe.logs.export._jax import router_indices_to_ids as router_indices_to_ids
from infomoe.logs.export._jax import router_mask_to_ids as router_mask_to_ids
from infomoe.logs.export._jax import routing_from_intermediates as routing_from_intermediates
from infomoe.logs.export._jax import write_intermediates as write_intermediates
from infomoe.logs.export._torch import RoutingRecorder as RoutingRecorder

__all__ = _facade.public_names(globals())
