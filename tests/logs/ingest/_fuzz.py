"""A small seeded mutation fuzzer for the importers (shared by the three importer tests).

Every mutated input has an expectation, derived from what the mutation did:

* ``"raise"``: the input is no longer a valid dump (a float or bool where an
  integer belongs, a missing required field, text that is not UTF-8 JSON...):
  the importer must refuse it with a ValueError/TypeError (or, for a path that
  does not exist, its own FileNotFoundError) naming the place;
* ``"same"``: the data the importer reads did not change (an ignored field, an
  integer dtype change): the importer must either refuse it with such an error
  or write a log equal to the import of the unmutated input;
* ``"any"``: the data changed in a way that may still be valid (a different
  expert id, a cut at a line boundary): refusing or writing a log that opens
  are both fine.

Outcomes are counted by :func:`classify`; only ``"refused"`` and
``"accepted"`` are acceptable.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import numpy as np

from infomoe.logs import open_log

ACCEPTABLE = ("refused", "accepted")


def snapshot(path) -> tuple:
    """Everything a log says, as comparable plain values (manifest fields and every shard's arrays)."""
    log = open_log(path, verify=True)
    m = log.manifest
    shards = []
    for i in range(len(log.shards)):
        chunk = log.read_shard(i)
        flat = {}
        for key, value in chunk.items():
            if isinstance(value, dict):
                for lid, a in value.items():
                    flat[f"{key}.{lid}"] = np.asarray(a).tolist()
            elif isinstance(value, np.ndarray):
                flat[key] = value.tolist()
            else:
                flat[key] = value
        shards.append(sorted(flat.items()))
    return (m.layers, m.expert_id_space, m.physical_to_logical, m.columns, m.topk_order, tuple(shards))


def _opens(path) -> bool:
    try:
        snapshot(path)
        return True
    except Exception:
        return False


def classify(call, out, *, expect: str, locators, baseline) -> tuple:
    """Run ``call(out)`` and name the outcome: (outcome, detail).

    Outcomes: ``"refused"`` (ValueError/TypeError whose message names one of
    ``locators``), ``"unlocated"`` (such an error naming none of them),
    ``"foreign"`` (any other exception), ``"unopenable"`` (a log at ``out``
    that cannot be opened and read), ``"wrong"`` (a log where the mutation
    must be refused, or one that differs from ``baseline`` although the data
    did not change), ``"accepted"``.
    """
    try:
        call(out)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        msg = str(exc)
        if isinstance(exc, FileNotFoundError) and msg.startswith("[Errno"):  # the OS's, not ours
            return "foreign", f"{type(exc).__name__}: {msg[:200]}"
        if os.path.exists(os.path.join(out, "manifest.json")) and not _opens(out):
            return "unopenable", f"{type(exc).__name__}: {msg[:200]}"
        if not any(loc in msg for loc in locators):
            return "unlocated", f"{type(exc).__name__}: {msg[:200]}"
        return "refused", f"{type(exc).__name__}: {msg[:300]}"
    except RecursionError as exc:  # noqa: B014 - listed apart for the report
        return "foreign", f"RecursionError: {str(exc)[:100]}"
    except Exception as exc:
        return "foreign", f"{type(exc).__name__}: {str(exc)[:200]}"
    try:
        got = snapshot(out)
    except Exception as exc:
        return "unopenable", f"{type(exc).__name__}: {str(exc)[:200]}"
    if expect == "raise":
        return "wrong", "accepted an invalid input"
    if expect == "same" and got != baseline:
        return "wrong", "the log differs from the import of the unmutated input"
    return "accepted", ""


def tally(results) -> dict:
    counts: dict = {}
    for outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


# ----------------------------------------------------------------------------- value mutations
#: Replacements that no integer field of any dump accepts.
def bad_ints(v):
    v = int(v)
    return [("float+0.5", v + 0.5), ("float", float(v)), ("bool", True), ("bool", False), ("str", str(v)),
            ("None", None), ("2**70", 2**70), ("2**63", 2**63), ("2**64-1", 2**64 - 1), ("-5", -5),
            ("list", [v]), ("dict", {"v": v}), ("inf", float("inf")), ("nan", float("nan"))]


#: Replacements that are valid for some integer fields and out of range for others.
MAYBE_INTS = [("10**9", 10**9), ("2**31", 2**31), ("2**31-1", 2**31 - 1)]


def paths(tree, prefix=()):
    """Paths to every leaf and every dict entry of a JSON-like tree (tensors and arrays are leaves)."""
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append(prefix + (k,))
            out.extend(paths(v, prefix + (k,)))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append(prefix + (i,))
            out.extend(paths(v, prefix + (i,)))
    return out


def get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def put(tree, path, value):
    tree = copy.deepcopy(tree)
    parent = get(tree, path[:-1])
    parent[path[-1]] = value
    return tree


def delete(tree, path):
    tree = copy.deepcopy(tree)
    parent = get(tree, path[:-1])
    del parent[path[-1]]
    return tree


def json_lines_equal(a: bytes, b: bytes):
    """True if both texts parse to the same JSON records, False if not, None if ``b`` does not parse."""
    def parse(t):
        recs = []
        for line in t.decode("utf-8").splitlines():
            if line.strip():
                recs.append(json.dumps(json.loads(line), sort_keys=True))
        return recs
    try:
        pb = parse(b)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return parse(a) == pb


def byte_mutations(rng, data: bytes, n: int):
    """``n`` byte-level mutations of ``data``: bit flips, truncations, non-UTF-8 bytes, deep nesting."""
    out = []
    for _ in range(n):
        kind = rng.choice(["flip", "flip3", "truncate", "nonutf8", "nest", "number"])
        b = bytearray(data)
        if kind in ("flip", "flip3"):
            for _ in range(1 if kind == "flip" else 3):
                i = int(rng.integers(len(b)))
                b[i] ^= 1 << int(rng.integers(8))
        elif kind == "truncate":
            b = b[: int(rng.integers(len(b)))]
        elif kind == "nonutf8":
            i = int(rng.integers(len(b)))
            b[i:i] = b"\xff\xfe\xc3"
        elif kind == "nest":
            i = int(rng.integers(len(b)))
            b[i:i] = b"[" * 100000 + b"1" + b"]" * 100000
        else:  # replace a digit run by a non-integer JSON number
            digits = [i for i, c in enumerate(b) if chr(c).isdigit()]
            i = digits[int(rng.integers(len(digits)))]
            b[i:i + 1] = rng.choice([b"Infinity", b"NaN", b"1e400", b"1.7", b"18446744073709551615"])
        out.append((kind, bytes(b)))
    return out


def fresh(root, i):
    d = os.path.join(root, f"case{i:04d}")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def describe_value(v) -> str:
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"{type(v).__name__}{tuple(v.shape)} {v.dtype}"
    text = repr(v)
    return text if len(text) <= 30 else text[:27] + "..."
