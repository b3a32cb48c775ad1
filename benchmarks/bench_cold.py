"""Speed of the first call in a new process (issue 17, "Fast from the first call").

Each case runs its timed statement once in a fresh ``python`` subprocess, from
before ``import infomoe`` to after the first call returns (so the lazy imports
the call triggers are included; creating the input data is not), in two
settings:

* ``warm``: the on-disk caches were filled by an earlier process (the first,
  cold run fills them), as for every process after the first on a machine;
* ``cold``: the caches are empty (a new temporary directory per run, e.g.
  ``NUMBA_CACHE_DIR``), as for the first process after installing.

Every case's caches live in temporary directories made by this script, so
the repository's ``__pycache__`` is neither used nor touched.  The table
prints the best and the median of ``--repeats`` runs, the target and the
ratio best / target (<= 1 meets it).  Next to each case a ``floor`` row times
what any implementation on the same stack pays in a new process (importing
the libraries and loading one trivial cached kernel), to show how much of
the time is the project's own.

Cases (add one by appending a :class:`Case` to ``CASES``):

* ``numba-mi``: ``infomoe.mutual_information(x, y)`` of 1e6 ``int64`` pairs
  (1,000 x 64 labels), targets 0.5 s warm and 3 s cold.
* ``mi-short``: the same for 1e4 pairs (no target; short inputs are
  counted with numpy and load nothing of numba).
* ``numba-floor``: ``import numba, scipy.special`` and one trivial
  ``@njit(cache=True)`` kernel loaded from (warm) or compiled into (cold) the
  cache: numba's own fixed cost (its import and the initialisation of its CPU
  target on the first kernel).
* ``jax-curve``: ``infomoe.accuracy_rate_curve(losses)`` of 2,000 x 16
  random 0/1 losses (the default 64 slopes + ``inf``), targets 1.5 s warm and
  3 s cold; the caches are infomoe's persistent JAX compilation cache and,
  with the ``fast-start`` extra, its stored traced programs
  (``$INFOMOE_CACHE/jax``).
* ``jax-capacity``: ``infomoe.channel_capacity`` of a 4 x 3 channel with two
  near-duplicate rows (no target).
* ``jax-floor``: ``import jax`` and one trivial jitted function loaded from
  (warm) or compiled into (cold) JAX's own persistent cache: JAX's fixed cost
  in a new process.

Usage::

    python benchmarks/bench_cold.py                   # every case, 5 repeats
    python benchmarks/bench_cold.py --case numba-mi --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Case:
    """One first-call measurement.

    Parameters
    ----------
    name : str
        Row label.
    setup : str
        Python run before the clock starts (imports of numpy, input data).
    stmt : str
        The timed code (its imports included).
    cache_env : callable
        ``cache_env(directory) -> dict`` of environment variables that put
        every cache the case uses under ``directory`` (empty: cold).
    target_warm, target_cold : float or None
        Targets in seconds (None: no target, e.g. a floor row).
    note : str
        Printed under the table.
    """

    name: str
    setup: str
    stmt: str
    cache_env: Callable[[str], dict]
    target_warm: Optional[float] = None
    target_cold: Optional[float] = None
    note: str = ""
    files: dict = field(default_factory=dict)  # extra module files written next to the script


def _numba_cache(d: str) -> dict:
    return {"NUMBA_CACHE_DIR": d}


_MI_SETUP = """
import numpy as np
rng = np.random.default_rng(0)
x = rng.integers(0, 1000, 1_000_000)
y = rng.integers(0, 64, 1_000_000)
"""

def _jax_cache(d: str) -> dict:
    return {"INFOMOE_CACHE": d, "INFOMOE_JAX_CACHE": "1"}


def _jax_own_cache(d: str) -> dict:
    return {"JAX_COMPILATION_CACHE_DIR": d, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


_CURVE_SETUP = """
import numpy as np
rng = np.random.default_rng(0)
d = (rng.random((2000, 16)) < rng.uniform(0.2, 0.6, 16)).astype(np.float64)
"""

_CAPACITY_SETUP = """
import numpy as np
rng = np.random.default_rng(1)
W = rng.dirichlet(np.ones(3), size=4)
W[3] = np.abs(W[2] + rng.uniform(-1e-3, 1e-3, 3))
W[3] /= W[3].sum()
"""

CASES = [
    Case("numba-mi", _MI_SETUP,
         "import infomoe\nvalue = float(infomoe.mutual_information(x, y))\n"
         "print('infomoe from ' + infomoe.__file__)",
         _numba_cache, target_warm=0.5, target_cold=3.0,
         note="first mutual_information of 1e6 int64 pairs (1,000 x 64), lazy imports included"),
    Case("mi-short", _MI_SETUP.replace("1_000_000", "10_000"),
         "import infomoe\nvalue = float(infomoe.mutual_information(x, y))\n"
         "print('infomoe from ' + infomoe.__file__)",
         _numba_cache,
         note="first mutual_information of 1e4 int64 pairs (counted with numpy: no numba at all)"),
    Case("numba-floor", "import numpy as np\nx = np.arange(10)",
         "import scipy.special\nimport floor_kernel\nvalue = int(floor_kernel.total(x))",
         _numba_cache,
         note="import numba + scipy.special and one trivial cached @njit kernel: "
              "numba's fixed cost in a new process",
         files={"floor_kernel.py": textwrap.dedent("""
             from numba import njit

             @njit(cache=True)
             def total(x):
                 s = 0
                 for v in x:
                     s += v
                 return s
             """)}),
    Case("jax-curve", _CURVE_SETUP,
         "import infomoe\nc = infomoe.accuracy_rate_curve(d)\nvalue = float(c.rate_at_d_min)\n"
         "print('infomoe from ' + infomoe.__file__)",
         _jax_cache, target_warm=1.5, target_cold=3.0,
         note="first accuracy_rate_curve of 2,000 x 16 random 0/1 losses (65 slopes), "
              "infomoe's persistent JAX cache in $INFOMOE_CACHE/jax"),
    Case("jax-capacity", _CAPACITY_SETUP,
         "import infomoe\nvalue = infomoe.channel_capacity(W).capacity\n"
         "print('infomoe from ' + infomoe.__file__)",
         _jax_cache,
         note="first channel_capacity of a 4 x 3 channel with two near-duplicate rows"),
    Case("jax-floor", "import numpy as np\nx = np.arange(10.0)",
         "import jax\nvalue = float(jax.jit(lambda v: (v * v).sum())(x))",
         _jax_own_cache,
         note="import jax and one trivial jitted function through JAX's own persistent cache: "
              "JAX's fixed cost in a new process"),
]

_RUNNER = """
import json, sys, time
{setup}
t0 = time.perf_counter()
{stmt}
t1 = time.perf_counter()
print("BENCH_COLD " + json.dumps({{"seconds": t1 - t0, "value": repr(value)}}))
"""


def run_once(case: Case, cache_dir: str, workdir: str, src: str = REPO) -> dict:
    """Run ``case`` once in a fresh interpreter with its caches under ``cache_dir``,
    importing ``infomoe`` from ``src``."""
    code = _RUNNER.format(setup=case.setup, stmt=case.stmt)
    code = f"import sys\nsys.path.insert(0, {src!r})\n" + code
    env = dict(os.environ, **case.cache_env(cache_dir))
    env["PYTHONPATH"] = os.pathsep.join([workdir, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=workdir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case.name} failed:\n{proc.stderr}")
    if "infomoe from " in proc.stdout and "infomoe from " + src not in proc.stdout:
        raise RuntimeError(f"case {case.name} did not import infomoe from {src}:\n{proc.stdout}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_COLD ")][-1]
    return json.loads(line[len("BENCH_COLD "):])


def measure(case: Case, repeats: int, src: str = REPO) -> dict:
    """Best and median seconds, warm and cold, of ``repeats`` fresh processes each."""
    root = tempfile.mkdtemp(prefix=f"bench_cold_{case.name}_")
    try:
        work = os.path.join(root, "work")
        os.makedirs(work)
        for fname, text in case.files.items():
            with open(os.path.join(work, fname), "w") as f:
                f.write(text)
        cold, warm, values = [], [], set()

        def cold_run(r):
            d = os.path.join(root, f"cold{r}")  # each cold run gets an empty cache of its own
            os.makedirs(d)
            res = run_once(case, d, work, src)
            cold.append(res["seconds"])
            values.add(res["value"])

        cold_run(0)                             # also fills the cache of the warm runs
        for r in range(repeats):                # warm and cold runs alternate, so that the
            res = run_once(case, os.path.join(root, "cold0"), work, src)  # load of the machine
            warm.append(res["seconds"])         # hits both alike
            values.add(res["value"])
            if r + 1 < repeats:
                cold_run(r + 1)
        if len(values) != 1:
            raise AssertionError(f"case {case.name}: different results warm and cold: {values}")
        return {"warm": warm, "cold": cold, "value": values.pop()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fmt_row(name, kind, times, target):
    best, med = min(times), statistics.median(times)
    if target is None:
        return f"{name:<14} {kind:<5} {best:>8.3f} {med:>8.3f} {'-':>8} {'-':>7}  {'-'}"
    ratio = best / target
    return (f"{name:<14} {kind:<5} {best:>8.3f} {med:>8.3f} {target:>8.2f} {ratio:>7.2f}  "
            f"{'meets' if ratio <= 1 else 'MISSES'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", action="append", choices=[c.name for c in CASES],
                    help="run only this case (repeatable); default: all")
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per setting (default 5)")
    ap.add_argument("--src", default=REPO,
                    help="directory to import infomoe from, e.g. an export of an older commit "
                         "(`git archive HEAD~3 | tar -x -C /tmp/old`) for a before/after "
                         "comparison; default: this repository")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    cases = [c for c in CASES if args.case is None or c.name in args.case]
    print(f"infomoe from {os.path.abspath(args.src)}; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {args.repeats} fresh processes per row; seconds from "
          "before `import infomoe` to after the first call")
    print(f"{'case':<14} {'cache':<5} {'best':>8} {'median':>8} {'target':>8} {'ratio':>7}  verdict")
    notes = []
    for case in cases:
        res = measure(case, args.repeats, os.path.abspath(args.src))
        print(_fmt_row(case.name, "warm", res["warm"], case.target_warm), flush=True)
        print(_fmt_row(case.name, "cold", res["cold"], case.target_cold), flush=True)
        notes.append(f"  {case.name}: {case.note} (result {res['value']})")
    print("ratio = best / target (<= 1 meets the target)")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
