"""Routing logs: one format for the routing decisions of any MoE stack.

A log is a directory with a JSON manifest and append-only ``.npy`` shards
(see :mod:`infomoe.logs._manifest` for the layout and why).  Write one with
:class:`LogWriter` (or :func:`write_log` for arrays in hand), read it lazily
with :func:`open_log`, and summarise it with :func:`analyze_log` (or
``infomoe report LOG --out DIR``).  Exporters for PyTorch, Hugging Face and
JAX live in :mod:`infomoe.logs.export`; importers for SGLang, vLLM and
Megatron in :mod:`infomoe.logs.ingest`.

Facade convention (:mod:`infomoe._facade`): eager.  Importing this package
imports neither torch nor JAX.
"""

from infomoe import _facade
from infomoe.logs._analysis import analyze_log as analyze_log
from infomoe.logs._analysis import analyze_log_distributed as analyze_log_distributed
from infomoe.logs._compare import LogComparison as LogComparison
from infomoe.logs._compare import SaturationCurve as SaturationCurve
from infomoe.logs._compare import compare_logs as compare_logs
from infomoe.logs._compare import router_saturation as router_saturation
from infomoe.logs._distributed import local_cluster as local_cluster
from infomoe.logs._manifest import FileRecord as FileRecord
from infomoe.logs._manifest import LayerSpec as LayerSpec
from infomoe.logs._manifest import LogFormatError as LogFormatError
from infomoe.logs._manifest import Manifest as Manifest
from infomoe.logs._manifest import ShardError as ShardError
from infomoe.logs._manifest import ShardRecord as ShardRecord
from infomoe.logs._reader import RoutingLog as RoutingLog
from infomoe.logs._reader import open_log as open_log
from infomoe.logs._report import LogReport as LogReport
from infomoe.logs._report import report_from_tables as report_from_tables
from infomoe.logs._tables import CountSpec as CountSpec
from infomoe.logs._tables import LogTables as LogTables
from infomoe.logs._tables import count_shard as count_shard
from infomoe.logs._writer import LogWriter as LogWriter
from infomoe.logs._writer import write_log as write_log

__all__ = _facade.public_names(globals())
