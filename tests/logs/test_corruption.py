"""Corrupted routing logs: only our own errors, or the numbers of the intact log (issue 16).

A seeded fuzz run mutates the manifest (as JSON structure and as bytes) and the shard files (header
and data bytes, truncation, deletion) of a small log with token shards and a count record, opens it
with ``verify=True`` and reads every column and the expert load.  Each outcome must be one of our
own errors (a :class:`LogFormatError`/:class:`ShardError`, or a ``ValueError``/``TypeError`` raised
by infomoe itself with a message) or exactly the intact log's numbers.
"""

import copy
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import traceback

import numpy as np
import pytest

from infomoe.logs import LayerSpec, LogFormatError, LogWriter, ShardError, open_log
from infomoe.logs import _reader

INFOMOE_DIR = str(pathlib.Path(__import__("infomoe").__file__).resolve().parent)


def _make_log(path):
    rng = np.random.default_rng(0)
    layers = [LayerSpec(0, 4, 2), LayerSpec(3, 6, 1)]
    with LogWriter(path, source="fuzz", layers=layers) as w:
        for n in (5, 7):
            ids = {0: rng.integers(-1, 4, (n, 2)), 3: rng.integers(0, 6, (n, 1))}
            w.append(ids, gate_weights={0: rng.random((n, 2)), 3: rng.random((n, 1))},
                     seq_id=np.arange(n), position=np.arange(n), token_id=rng.integers(0, 50, n),
                     valid=rng.random(n) < 0.9)
        w.append_counts({0: rng.integers(0, 9, (2, 4)), 3: rng.integers(0, 9, (2, 6))}, step=3, rank=1)
    return path


def _numbers(path):
    log = open_log(path, verify=True)
    d = log.read()
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for lid, a in v.items():
                flat[f"{k}.{lid}"] = np.asarray(a).copy()
        else:
            flat[k] = np.asarray(v).copy()
    for lid, c in log.counts().items():
        flat[f"load.{lid}"] = c.copy()
    return flat


def _same(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k], equal_nan=True)
        for k in a)


def _ours(exc):
    if isinstance(exc, (LogFormatError, ShardError)):
        return True
    if isinstance(exc, (ValueError, TypeError)) and str(exc):
        frames = traceback.extract_tb(exc.__traceback__)
        return bool(frames) and frames[-1].filename.startswith(INFOMOE_DIR)
    return False


_ODD_VALUES = [None, True, False, -1, 0, 1, 2**31, 2**63, 2**70, 8.9, 1e308, "12", "", [], {}, [[[]]],
               "shards/00000000", "crc32:00000000", "|i1", "<f8", [1, 2], {"a": 1}]


def _paths(d, prefix=()):
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, prefix + (i,))
    return out


def _sensitive(p):
    """Fields whose change alters the numbers (not e.g. model_id or metadata text)."""
    return p[0] in ("layers", "columns", "shards", "num_tokens", "checksum", "expert_id_space")


def _mutate_structure(d, rng):
    d = copy.deepcopy(d)
    paths = [p for p in _paths(d) if p]
    if rng.random() < 0.8:
        paths = [p for p in paths if _sensitive(p)]
    where = rng.choice(paths)
    parent = d
    for key in where[:-1]:
        parent = parent[key]
    last = where[-1]
    op = rng.randrange(4)
    if op == 0 and isinstance(parent, dict):
        del parent[last]
    elif op == 1 and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))          # duplicate an entry
    elif op == 2 and isinstance(parent[last], int) and not isinstance(parent[last], bool):
        parent[last] = parent[last] + rng.choice([-1, 1, 2**32, 2**63])
    else:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    return json.dumps(d).encode()


def _mutate_bytes(data, rng):
    data = bytearray(data)
    op = rng.randrange(5)
    if op == 0 and data:                                           # flip one bit
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif op == 1:                                                  # truncate
        del data[rng.randrange(len(data) + 1):]
    elif op == 2:                                                  # a non-UTF-8 / odd byte
        data.insert(rng.randrange(len(data) + 1), rng.choice([0xFF, 0x80, 0x00, 0x7B, 0x5B]))
    elif op == 3 and data:                                         # overwrite a run with junk
        i = rng.randrange(len(data))
        data[i:i + 8] = bytes(rng.randrange(256) for _ in range(8))
    else:
        data = bytearray()                                         # empty file
    return bytes(data)


def test_fuzz_corrupted_logs(tmp_path):
    intact = _make_log(tmp_path / "intact")
    ref = _numbers(intact)
    manifest = json.loads((intact / "manifest.json").read_text())
    npy_files = sorted(p.relative_to(intact) for p in intact.rglob("*.npy"))
    rng = random.Random(20261202)
    outcomes = {"our error": 0, "same numbers": 0}
    for trial in range(400):
        case = tmp_path / f"case{trial}"
        shutil.copytree(intact, case)
        kind = rng.choice([0, 0, 0, 1, 2, 2])
        if kind == 0:
            what = "manifest structure"
            (case / "manifest.json").write_bytes(_mutate_structure(manifest, rng))
        elif kind == 1:
            what = "manifest bytes"
            (case / "manifest.json").write_bytes(_mutate_bytes((intact / "manifest.json").read_bytes(), rng))
        else:
            target = case / rng.choice(npy_files)
            what = f"shard file {target.relative_to(case)}"
            if rng.random() < 0.1:
                target.unlink()
            else:
                raw = target.read_bytes()
                if rng.random() < 0.6:                             # aim at the header
                    head = _mutate_bytes(raw[:128], rng)
                    target.write_bytes(head + raw[128:])
                else:
                    target.write_bytes(_mutate_bytes(raw, rng))
        try:
            got = _numbers(case)
        except Exception as exc:  # noqa: BLE001 - classified below
            assert _ours(exc), f"trial {trial} ({what}): foreign {type(exc).__name__}: {exc}"
            outcomes["our error"] += 1
        else:
            assert _same(got, ref), f"trial {trial} ({what}): opened and gave different numbers"
            outcomes["same numbers"] += 1
        shutil.rmtree(case)
    assert outcomes["our error"] > 200            # the mutations do hit: most must be detected


# -- targeted cases ---------------------------------------------------------------------------------

def test_writer_refuses_out_of_range_step_rank_and_counts(tmp_path):
    with LogWriter(tmp_path / "log", source="t", layers=[LayerSpec(0, 3, 1)]) as w:
        with pytest.raises(ValueError, match="int32 range"):
            w.append_counts({0: [1, 2, 3]}, rank=2**40 + 7)
        with pytest.raises(ValueError, match="int64 range"):
            w.append_counts({0: [1, 2, 3]}, step=2**63)
        with pytest.raises(ValueError, match="int64 range"):
            w.append(np.zeros((2, 1, 1), np.int64), step=2**63)
        with pytest.raises(ValueError, match=r"beyond 2\*\*63 - 1"):
            w.append_counts({0: np.array([2**64 - 1, 0, 0], dtype=np.uint64)})
        with pytest.raises(ValueError, match=r"beyond 2\*\*63 - 1"):
            w.append_counts({0: np.array([2**63, 0, 0], dtype=np.uint64)})
    with pytest.raises(ValueError, match="at most 999999999"):
        LayerSpec(10**9, 4, 1)


def test_count_totals_past_int64_are_an_error_not_a_wrap(tmp_path):
    with LogWriter(tmp_path / "log", source="t", layers=[LayerSpec(0, 2, 1)]) as w:
        w.append_counts({0: [2**62, 0]})
        w.append_counts({0: [2**62, 0]})
        w.append_counts({0: [2**62, 1]})
    with pytest.raises(ValueError, match="exceeds 2\\*\\*63 - 1"):
        open_log(tmp_path / "log").counts(0)


def test_read_keeps_no_maps_open_many_shards_under_a_low_file_limit(tmp_path):
    with LogWriter(tmp_path / "log", source="t", layers=[LayerSpec(0, 4, 1), LayerSpec(1, 4, 1)]) as w:
        for i in range(200):
            w.append(np.full((2, 2, 1), i % 4), seq_id=[i, i], position=[0, 1])
    code = ("import resource, numpy as np; from infomoe.logs import open_log\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            f"d = open_log({str(tmp_path / 'log')!r}, verify=True).read(on_error='skip')\n"
            "print(len(d['seq_id']), int(d['seq_id'].sum()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["400", str(2 * sum(range(200)))]   # 800 files, 256 descriptors


def test_verify_checks_the_size_before_reading_a_huge_file(tmp_path, monkeypatch):
    path = _make_log(tmp_path / "log")
    target = next(iter(sorted(path.rglob("expert_ids.0.npy"))))
    with open(target, "r+b") as f:
        f.truncate(4 << 30)                                        # sparse 4 GiB: reading it takes seconds
    def no_checksum(*a, **k):
        raise AssertionError("checksummed before the size check")
    monkeypatch.setattr(_reader, "checksum_file", no_checksum)
    with pytest.raises(ShardError, match="longer than its header says"):
        open_log(path, verify=True).read()


def test_empty_and_garbled_npy_headers_are_shard_errors(tmp_path):
    path = _make_log(tmp_path / "log")
    target = sorted(path.rglob("seq_id.npy"))[0]
    raw = target.read_bytes()
    for bad in (b"", raw[:20], raw.replace(b"}", b"{", 1), raw.replace(b"'descr'", b"'de\xffcr'", 1)):
        target.write_bytes(bad)
        with pytest.raises(ShardError, match="seq_id.npy"):
            open_log(path).read()


_FORK_SCRIPT = """
import os, sys, time
import numpy as np
from infomoe.logs import LayerSpec, LogWriter, open_log
path = sys.argv[1]
w = LogWriter(path, source="t", layers=[LayerSpec(0, 2, 1)])
r, wfd = os.pipe()
pid = os.fork()
if pid == 0:                       # child: outlives the parent's writer, like a DataLoader worker
    try:
        os.close(r)
        try:
            w.append(np.zeros((1, 1, 1), np.int64))
            msg = b"wrote"
        except RuntimeError as exc:
            msg = b"refused" if "forked" in str(exc) else b"other"
        os.write(wfd, msg)
        time.sleep(3)
    finally:
        os._exit(0)
os.close(wfd)
print(os.read(r, 16).decode())
w.close()
with LogWriter(path, source="t", layers=[LayerSpec(0, 2, 1)], resume=True) as w2:   # the child still lives
    w2.append(np.ones((1, 1, 1), np.int64))
os.waitpid(pid, 0)
print(open_log(path).num_tokens)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_does_not_keep_the_log_locked(tmp_path):
    # in a fresh interpreter: forking the test process itself (JAX and numba threads) could deadlock
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(tmp_path / "log")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "1"]
