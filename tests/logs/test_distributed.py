import dataclasses
import json
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
from distributed import Client  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

from infomoe.cli import main  # noqa: E402
from infomoe.logs import (CountSpec, LayerSpec, LogTables, LogWriter, ShardError,  # noqa: E402
                          analyze_log, count_shard, open_log, write_log)
from infomoe.logs._distributed import count_log_distributed, count_shard_for_path, local_cluster  # noqa: E402
from infomoe.logs._tables import ANALYSED_COLUMNS  # noqa: E402
from infomoe.logs._uncertainty import GroupedCounts  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """Three single-threaded worker processes behind nannies (a killed one is restarted)."""
    with local_cluster(3) as c, Client(c, set_as_default=False) as client:
        yield c, client


def _rich_log(path, rich_routing, n=6000, shard_tokens=700, seed=7):
    """3 layers, E=6, k=2, drops, invalid tokens, every analysed column, count records."""
    rng = np.random.default_rng(seed)
    d = rich_routing(rng, n)
    ids, tok, pos, lab, valid, logits = (d[k] for k in ("ids", "tok", "pos", "lab", "valid", "logits"))
    with LogWriter(path, source="test", layers=[LayerSpec(l, 6, 2) for l in range(3)]) as w:
        for a in range(0, n, shard_tokens):
            s = slice(a, a + shard_tokens)
            w.append(ids[s], router_logits=logits[s], token_id=tok[s], position=pos[s],
                     label=lab[s], valid=valid[s])
            if a == 0:
                w.append_counts(rng.integers(0, 50, (2, 3, 6)))
    return open_log(path)


@pytest.fixture(scope="module")
def rich(tmp_path_factory, rich_routing):
    return _rich_log(tmp_path_factory.mktemp("d") / "log", rich_routing)


def _assert_tables_equal(a: LogTables, b: LogTables):
    """Integer tables bit-identical; floating-point sums equal to rounding."""
    for f in dataclasses.fields(LogTables):
        x, y = getattr(a, f.name), getattr(b, f.name)
        xs, ys = (x, y) if isinstance(x, tuple) else ((x,), (y,))
        assert len(xs) == len(ys), f.name
        for u, v in zip(xs, ys):
            if u is None or v is None:
                assert u is None and v is None, f.name
            elif isinstance(u, GroupedCounts):
                assert u.shape == v.shape, f.name
                np.testing.assert_array_equal(u.keys, v.keys, err_msg=f.name)
                np.testing.assert_array_equal(u.counts, v.counts, err_msg=f.name)
            elif np.asarray(u).dtype.kind == "f":
                np.testing.assert_allclose(u, v, rtol=1e-12, atol=0, err_msg=f.name)
            else:
                np.testing.assert_array_equal(u, v, err_msg=f.name)


def _assert_reports_equal(r, ref):
    assert r.num_tokens == ref.num_tokens
    np.testing.assert_array_equal(r.layer_ids, ref.layer_ids)
    for a, b in zip(r.load, ref.load):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(r.record_pairs, ref.record_pairs)
    # every information value is computed from identical integer tables: identical floats
    for name in ("mi_token", "mi_token_set", "mi_position", "mi_label", "mi_transition", "set_entropy",
                 "load_cv", "dropped_fraction", "token_drop_rate", "normalized_entropy", "max_violation",
                 "dead_fraction", "oversubscribed_fraction", "overflow_fraction"):
        np.testing.assert_array_equal(getattr(r, name), getattr(ref, name), err_msg=name)
    for a, b in zip(r.coactivation + r.cooccurrence, ref.coactivation + ref.cooccurrence):
        np.testing.assert_array_equal(a, b)
    # intervals, nulls and significance are computed from identical integer tables too
    for name in ("mi_bias", "null_sd", "pvalues", "significant"):
        x, y = getattr(r, name), getattr(ref, name)
        assert x.keys() == y.keys(), name
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}[{k}]")
    assert r.intervals.keys() == ref.intervals.keys()
    for k in r.intervals:
        tol = 1e-9 if k == "gate_information" else 0
        np.testing.assert_allclose(r.intervals[k], ref.intervals[k], rtol=tol, atol=tol, err_msg=k)
    if ref.gate_information is not None:
        np.testing.assert_allclose(r.gate_information, ref.gate_information, rtol=1e-12, atol=1e-15)
    # sums of floating-point router statistics may be grouped differently
    if ref.router_entropy is None:
        assert r.router_entropy is None
    else:
        np.testing.assert_allclose(r.router_entropy, ref.router_entropy, rtol=1e-12)
    np.testing.assert_allclose(r.switch_balance, ref.switch_balance, rtol=1e-12)
    assert r.warnings == ref.warnings


def _sequential_tables(log, spec, chunk_tokens):
    lids = [s.layer_id for s in spec.layers]
    cols = [c for c in log.columns if c in ANALYSED_COLUMNS]
    total = LogTables.zeros(spec)
    for chunk in log.iter_chunks(lids, cols, chunk_tokens):
        total = total + count_shard(chunk, spec=spec)
    for chunk in log.iter_chunks(lids, kind="counts"):
        total = total + count_shard(chunk, spec=spec)
    return total


@pytest.mark.parametrize("fan_in", [2, 8])
def test_tables_identical_to_single_process(rich, cluster, fan_in):
    _, client = cluster
    spec = CountSpec.from_manifest(rich.manifest)
    assert len(rich.shards) == 10  # 9 token shards, 1 count record
    got = count_log_distributed(rich, spec, client, chunk_tokens=300, fan_in=fan_in,
                                progress=False)
    _assert_tables_equal(got, _sequential_tables(rich, spec, 300))
    assert got.tokens == int(rich.read(columns=["valid"])["valid"].sum())


def test_report_identical_to_single_process(rich, cluster):
    _, client = cluster
    kw = dict(chunk_tokens=500, progress=False, estimator="miller_madow", layers=[2, 0])
    _assert_reports_equal(analyze_log(rich, scheduler=client, **kw),
                          analyze_log(rich, **kw))
    # a cluster object and its address are accepted as well
    c, _ = cluster
    _assert_reports_equal(analyze_log(rich.path, scheduler=c.scheduler_address,
                                                  progress=False), analyze_log(rich, progress=False))


def test_scheduler_none_is_the_plain_path(rich):
    for s in (None, "none", "None"):
        _assert_reports_equal(analyze_log(rich, scheduler=s, progress=False),
                              analyze_log(rich, progress=False))


def test_single_shard_and_physical_ids(tmp_path, cluster):
    _, client = cluster
    p = tmp_path / "l"
    with LogWriter(p, source="sglang", layers=[LayerSpec(0, 6, 2)], expert_id_space="physical",
                   physical_to_logical={0: [0, 1, 2, 0, 1, 2]}) as w:
        w.append(np.array([[0, 4], [3, 1], [5, -1], [0, 3]])[:, None, :])
    r = analyze_log(p, scheduler=client, progress=False)
    assert r.load[0].tolist() == [4, 2, 1]  # hand count: logical 0 <- {0,3,0,3}, 1 <- {4,1}, 2 <- {5}
    _assert_reports_equal(r, analyze_log(p, progress=False))


def test_count_shard_for_path_is_the_per_shard_table(rich):
    spec = CountSpec.from_manifest(rich.manifest)
    parts = [count_shard_for_path(rich.path, s.index, spec=spec, chunk_tokens=1000,
                                  columns=["expert_ids", "token_id", "position", "label", "valid",
                                           "router_logits"]) for s in rich.shards]
    _assert_tables_equal(sum(parts), _sequential_tables(rich, spec, 1000))
    stale = count_shard_for_path(rich.path, 3, spec=spec, expected_path="shards/elsewhere")
    assert "log replaced" in stale.reason and stale.shard == 3


def test_corrupted_shard_raises_or_is_skipped(tmp_path, cluster, rich_routing):
    _, client = cluster
    log = _rich_log(tmp_path / "log", rich_routing, n=2100)
    f = next((tmp_path / "log" / log.shards[2].path).glob("expert_ids.1.npy"))
    f.write_bytes(f.read_bytes()[:-8])  # truncated
    with pytest.raises(ShardError, match=r"shard 2 \(" + log.shards[2].path):
        analyze_log(log, scheduler=client, progress=False)
    with pytest.warns(RuntimeWarning, match="shard 2"):
        r = analyze_log(log, scheduler=client, progress=False, on_error="skip")
    with pytest.warns(RuntimeWarning, match="shard 2"):
        ref = analyze_log(log, progress=False, on_error="skip")
    _assert_reports_equal(r, ref)


def test_errors(rich, cluster, tmp_path):
    _, client = cluster
    with pytest.raises(TypeError, match="`scheduler`"):
        analyze_log(rich, scheduler=3.5, progress=False)
    with pytest.raises(ValueError, match="`fan_in`"):
        analyze_log(rich, scheduler=client, fan_in=1, progress=False)
    with pytest.raises(ValueError, match="`estimator`"):
        analyze_log(rich, scheduler=client, estimator="magic", progress=False)
    with pytest.raises(ValueError, match="`on_error`"):
        analyze_log(rich, scheduler=client, on_error="ignore", progress=False)
    with pytest.raises(FileNotFoundError):
        analyze_log(tmp_path / "nope", scheduler=client, progress=False)
    # an error inside a task (an expert id beyond num_experts) reaches the caller
    p = tmp_path / "bad"
    with LogWriter(p, source="t", layers=[LayerSpec(0, 4, 1)]) as w:
        w.append(np.array([[0], [1]])[:, None, :])
    m = json.loads((p / "manifest.json").read_text())
    m["layers"][0]["num_experts"] = 1
    (p / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"layer 0: expert id 1 outside \[-1, 0\]"):
        analyze_log(p, progress=False)
    with pytest.raises(ValueError, match="expert id 1 outside"):
        analyze_log(p, scheduler=client, progress=False)


def test_cli_scheduler_address(rich, cluster, tmp_path):
    c, _ = cluster
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["report", rich.path, "--out", str(a), "--no-progress", "--no-plots"]) == 0
    assert main(["report", rich.path, "--out", str(b), "--no-progress", "--no-plots",
                 "--scheduler", c.scheduler_address]) == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for la, lb in zip(sa["layers"], sb["layers"]):
        assert la["load"] == lb["load"]
        assert la["mi_token"] == lb["mi_token"] and la["mi_label"] == lb["mi_label"]
        assert la["router_entropy"] == pytest.approx(lb["router_entropy"], rel=1e-12)
    assert sa["num_tokens"] == sb["num_tokens"]


def test_local_cluster_by_name(tmp_path):
    log = write_log(tmp_path / "log", np.array([[0, 1], [1, 2], [2, 3], [3, 0]] * 50),
                    num_experts=4, token_id=np.arange(200) % 4, shard_tokens=50)
    r = analyze_log(log, scheduler="local", n_workers=1, progress=False, estimator="plugin")
    assert r.mi_token[0] == pytest.approx(1.0)  # H(E) = 2 bits, H(E | token) = 1 bit
    _assert_reports_equal(r, analyze_log(log, progress=False, estimator="plugin"))


class _Recorder(SchedulerPlugin):
    """Counts how often each shard task started, and which workers left."""

    def __init__(self):
        self.starts = Counter()
        self.done = set()
        self.removed = []

    def transition(self, key, start, finish, *args, **kwargs):
        if str(key).startswith("infomoe-count-shard"):
            if finish == "processing":
                self.starts[key] += 1
            elif finish == "memory":
                self.done.add(key)

    def remove_worker(self, scheduler, worker, **kwargs):
        self.removed.append(worker)


def test_killed_worker_does_not_change_the_result(tmp_path, cluster):
    c, client = cluster
    rng = np.random.default_rng(3)
    n, L, E = 64 * 4000, 4, 16
    tok = rng.integers(0, 500, n)
    ids = ((tok[:, None, None] + rng.integers(0, 3, (n, L, 2)) * np.array([1, 5])) % E)
    log = write_log(tmp_path / "big", ids, num_experts=E, token_id=tok,
                    position=np.arange(n) % 2048, shard_tokens=4000)
    ref = analyze_log(log, progress=False, chunk_tokens=1000)
    client.wait_for_workers(3)
    rec = _Recorder()
    c.scheduler.add_plugin(rec, name="recorder-test")
    try:
        with ThreadPoolExecutor(1) as ex:
            run = ex.submit(analyze_log, log, scheduler=client, progress=False,
                            chunk_tokens=1000)
            victim = pid = None
            t0 = time.monotonic()
            while victim is None and time.monotonic() - t0 < 60:
                if len(rec.done) >= 4:  # running, well before the end (64 shard tasks)
                    for addr, ws in list(c.scheduler.workers.items()):
                        if ws.processing:
                            victim = addr
                            break
                time.sleep(0.005)
            assert victim is not None and len(rec.done) < 40
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            r = run.result(timeout=120)
        assert victim in rec.removed
        assert max(rec.starts.values()) >= 2  # some shard was counted again elsewhere
        _assert_reports_equal(r, ref)
    finally:
        c.scheduler.remove_plugin(name="recorder-test")


def test_cli_scheduler_flag_parsing(cluster):
    import argparse

    from infomoe.logs._cli import register
    from infomoe.logs._cli import report_analyzer
    from infomoe.logs._distributed import CLI_CONNECT_TIMEOUT

    c, _ = cluster
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["report", "LOG", "--out", "D"]
    absent = parser.parse_args(base)
    bare = parser.parse_args(base + ["--scheduler", "--workers", "2"])
    addr = parser.parse_args(base + ["--scheduler", c.scheduler_address])  # one that answers
    assert absent.scheduler is None and bare.scheduler == "local" and bare.workers == 2
    assert report_analyzer(absent) is analyze_log
    assert report_analyzer(parser.parse_args(base + ["--scheduler", "none"])) is analyze_log
    assert report_analyzer(bare).keywords == {"scheduler": "local", "n_workers": 2}
    f = report_analyzer(addr)
    assert f.func is analyze_log
    assert f.keywords == {"scheduler": c.scheduler_address, "n_workers": None,
                          "connect_timeout": CLI_CONNECT_TIMEOUT}


def _closed_port():
    """A localhost port nothing listens on (bound once by us, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _report_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("infomoe report: error: --scheduler ")
    return err.strip()


def test_cli_scheduler_mistakes_fail_before_the_log_is_read(tmp_path, capsys, monkeypatch):
    def not_reached(*a, **k):
        raise AssertionError("counting started")

    monkeypatch.setattr("infomoe.logs._distributed.count_log_distributed", not_reached)
    monkeypatch.setattr("infomoe.logs._analysis._count_locally", not_reached)
    # LOG does not exist: reading it first would end in "not a routing log", not a --scheduler error
    base = ["report", str(tmp_path / "LOG"), "--out", str(tmp_path / "r"), "--scheduler"]
    port = _closed_port()
    err = _report_error(capsys, base + [f"tcp://127.0.0.1:{port}"])
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in err
    assert "no Dask scheduler answers" in _report_error(capsys, base + [f"127.0.0.1:{port}"])
    assert "needs a host and a port number" in _report_error(capsys, base + ["tcp://127.0.0.1"])
    assert "does not exist" in _report_error(capsys, base + [str(tmp_path / "scheduler.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "is not JSON" in _report_error(capsys, base + [str(bad)])
    bad.write_text('{"type": "Scheduler"}')
    assert 'no "address"' in _report_error(capsys, base + [str(bad)])
    bad.write_text(json.dumps({"address": f"tcp://127.0.0.1:{port}"}))
    assert "no Dask scheduler answers" in _report_error(capsys, base + [str(bad)])
    assert main(base[:-1] + ["--scheduler", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_scheduler_file(rich, cluster, tmp_path):
    c, _ = cluster
    f = tmp_path / "scheduler.json"
    f.write_text(json.dumps({"type": "Scheduler", "address": c.scheduler_address}))
    out = tmp_path / "r"
    assert main(["report", rich.path, "--out", str(out), "--no-progress", "--no-plots",
                 "--scheduler", str(f)]) == 0
    ref = analyze_log(rich)
    s = json.loads((out / "summary.json").read_text())
    assert [l["load"] for l in s["layers"]] == [c.tolist() for c in ref.load]


def test_library_missing_scheduler_file_raises_at_once(rich, tmp_path):
    with pytest.raises(FileNotFoundError, match="scheduler file .* does not exist"):
        analyze_log(rich, scheduler=str(tmp_path / "nope.json"))


def test_unreachable_scheduler_subprocess(rich, tmp_path):
    """The real command: one line, status 2, and no Dask connection retries (a short timeout)."""
    import subprocess
    import sys

    port = _closed_port()
    p = subprocess.run([sys.executable, "-m", "infomoe.cli", "report", rich.path, "--out",
                        str(tmp_path / "r"), "--scheduler", f"tcp://127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in p.stderr


def test_dask_analyzer_shows_no_progress_bar_unless_asked(rich, cluster, capsys):
    pytest.importorskip("tqdm")
    _, client = cluster
    capsys.readouterr()
    analyze_log(rich, scheduler=client, layers=[0])
    assert "report (dask)" not in capsys.readouterr().err
    analyze_log(rich, scheduler=client, layers=[0], progress=True)
    assert "report (dask)" in capsys.readouterr().err
