"""The theory reference ships with the repository and every citation of it resolves.

Code, tests, notebooks and documents cite ``docs/theory.md#<section>``.  These
tests fail when a file cites a theory file that is not in the repository (such
as a path outside it), when a cited section anchor does not exist, when a
section the project relies on is missing, or when ``docs/theory.md`` names an
``infomoe`` function that does not exist.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pathlib
import re

import pytest

#: the file name every citation points at (spelled in two parts so that this
#: test file does not cite it itself)
THEORY_NAME = "theory" + ".md"
ROOT = pathlib.Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / THEORY_NAME
#: a citation: an optional path in front of the file name, an optional #anchor after it
CITATION = re.compile(r"[\w./-]*" + re.escape(THEORY_NAME) + r"(?:#[\w-]*)?")
#: files that are text and may cite it
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".rst", ".ini", ".yml",
                 ".yaml", ".sh", ".json", ""}
#: folders that are not part of the repository's sources (and every other hidden folder:
#: .git, virtual environments, tool caches), except the hidden folders in SOURCE_DOT_DIRS
SKIPPED_DIRS = {"__pycache__", "build", "dist", "results", "node_modules"}
SOURCE_DOT_DIRS = {".ci", ".github"}

#: sections the project relies on (docs/theory.md must keep these anchors)
REQUIRED_SECTIONS = [
    "entropy-estimators",
    "mutual-information-and-the-channel-form",
    "bias-of-plug-in-estimates",
    "blahut-arimoto",
    "rate-distortion",
    "the-certificate",
    "accuracy-rate-curve-of-a-bank",
    "channel-capacity",
    "generalization-bounds",
    "xu-raginsky",
    "union-bound-over-a-finite-class",
    "gibbs-rule-the-aminian-identity",
    "conditional-mutual-information",
    "pac-bayes",
    "paper-b-the-finite-expert-bank",
    "paper-a-routing-theory",
    "sparse-posterior",
    "load-balancing-losses",
    "coherence-babel-function-and-the-welch-bound",
    "closed-form-test-oracles",
]


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation
    other than ``-`` and ``_`` dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", title.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> set:
    """Anchors of every ATX heading outside code fences (duplicates get ``-1``, ``-2``...)."""
    anchors: set = set()
    seen: dict = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = github_anchor(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def repository_text_files(root: pathlib.Path):
    """Text files of the repository, without environments, caches and build output."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS
                       and (not d.startswith(".") or d in SOURCE_DOT_DIRS)
                       and not d.endswith(".egg-info")]
        for name in filenames:
            path = pathlib.Path(dirpath, name)
            if path.suffix in TEXT_SUFFIXES and not path.is_symlink():
                yield path


def citation_problems(root: pathlib.Path) -> list:
    """Every citation of the theory file under ``root`` that does not resolve, as text.

    A cited path resolves when it names an existing file inside ``root``,
    relative to ``root`` or to the citing file's folder; a cited anchor must
    be a heading anchor of that file.
    """
    root = root.resolve()
    anchors_of: dict = {}
    problems = []
    for path in repository_text_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for m in CITATION.finditer(text):
            cited, _, anchor = m.group(0).partition("#")
            line = text.count("\n", 0, m.start()) + 1
            where = f"{path.relative_to(root)}:{line}: {m.group(0)!r}"
            target = None
            if not cited.startswith("/"):
                for base in (root, path.parent):
                    candidate = (base / cited).resolve()
                    if candidate.is_file() and candidate.is_relative_to(root):
                        target = candidate
                        break
            if target is None:
                problems.append(f"{where} is not a file in the repository; cite "
                                "docs/" + THEORY_NAME + "#<section> instead")
                continue
            if anchor:
                if target not in anchors_of:
                    anchors_of[target] = heading_anchors(target.read_text(encoding="utf-8"))
                if anchor not in anchors_of[target]:
                    problems.append(f"{where}: {target.relative_to(root)} has no section "
                                    f"with the anchor #{anchor}")
    return problems


# ---------------------------------------------------------------------------


def test_theory_reference_is_in_the_repository():
    assert THEORY.is_file(), "docs/theory.md is missing"
    assert THEORY.read_text(encoding="utf-8").startswith("# ")


def test_every_citation_of_the_theory_resolves():
    problems = citation_problems(ROOT)
    assert not problems, "unresolved citations:\n" + "\n".join(problems)


def test_the_project_cites_the_theory_with_sections():
    # code, tests and notebooks cite sections (so the check above is not vacuous)
    cited = {path.relative_to(ROOT).as_posix()
             for path in repository_text_files(ROOT)
             if path != pathlib.Path(__file__).resolve()
             and re.search(r"docs/" + re.escape(THEORY_NAME) + "#[\\w-]+",
                           path.read_text(encoding="utf-8", errors="replace"))}
    assert len(cited) >= 5, cited
    assert {p.split("/")[0] for p in cited} >= {"infomoe", "tests", "notebooks"}, cited


def test_required_sections_exist():
    anchors = heading_anchors(THEORY.read_text(encoding="utf-8"))
    missing = [a for a in REQUIRED_SECTIONS if a not in anchors]
    assert not missing, f"docs/theory.md lacks the sections {missing}"


def test_internal_links_of_the_theory_resolve():
    text = THEORY.read_text(encoding="utf-8")
    anchors = heading_anchors(text)
    links = re.findall(r"\]\(#([\w-]+)\)", text)
    assert len(links) > 10
    broken = sorted(set(links) - anchors)
    assert not broken, f"docs/theory.md links to missing sections {broken}"


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_functions_named_in_the_theory_exist():
    names = set(re.findall(r"`(infomoe(?:\.\w+)+)(?:\([^`]*\))?`", THEORY.read_text(encoding="utf-8")))
    assert len(names) > 20
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/theory.md names functions that do not exist: {missing}"


#: public namespaces whose names, parameters and result fields docs/theory.md may name
NAMESPACES = ("infomoe", "infomoe.bounds", "infomoe.routing", "infomoe.routing.jax_losses", "infomoe.bank",
              "infomoe.plot", "infomoe.logs", "infomoe.testing")
#: names in backticks that are not infomoe's (literals, other libraries)
FOREIGN_NAMES = {"None", "True", "False", "load_balancing_loss_func"}


def known_identifiers() -> set:
    """Public names of :data:`NAMESPACES`, their parameters and their result fields."""
    known = set()
    for ns in NAMESPACES:
        module = importlib.import_module(ns)
        for name in getattr(module, "__all__", dir(module)):
            known.add(name)
            obj = getattr(module, name, None)
            if callable(obj):
                try:
                    known.update(inspect.signature(obj).parameters)
                except (TypeError, ValueError):
                    pass
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
                known.update(f.name for f in dataclasses.fields(obj))
    return known


def test_identifiers_and_files_named_in_the_theory_exist():
    text = THEORY.read_text(encoding="utf-8")
    names = set(re.findall(r"`([A-Za-z_]\w*)(?:\([^`]*\))?`", text)) - FOREIGN_NAMES
    assert len(names) > 50
    unknown = sorted(names - known_identifiers())
    assert not unknown, f"docs/theory.md names {unknown}, which infomoe does not define"
    files = set(re.findall(r"`([\w./-]+\.(?:py|ipynb|md))`", text))
    assert len(files) > 10
    missing = sorted(f for f in files if not (ROOT / f).is_file())
    assert not missing, f"docs/theory.md names files that do not exist: {missing}"


# --- the checker itself catches what it is meant to catch ------------------


def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


THEORY_STUB = "# Theory\n\n## Entropy estimators\n\n## Blahut-Arimoto\n\n### Rate-distortion\n"


def test_github_anchor_rules():
    assert github_anchor("Paper B: the finite expert bank") == "paper-b-the-finite-expert-bank"
    assert github_anchor("Gibbs rule: the Aminian identity") == "gibbs-rule-the-aminian-identity"
    assert github_anchor("Blahut-Arimoto") == "blahut-arimoto"
    assert github_anchor("Coherence, Babel function and the Welch bound") == \
        "coherence-babel-function-and-the-welch-bound"
    assert heading_anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_checker_accepts_valid_citations(tmp_path):
    root = _tree(tmp_path, {
        "docs/" + THEORY_NAME: THEORY_STUB,
        "pkg/mod.py": "# see docs/" + THEORY_NAME + "#entropy-estimators\n",
        "notebooks/nb.ipynb": '{"source": "[x](../docs/' + THEORY_NAME + '#rate-distortion)"}',
        "docs/other.md": "[t](" + THEORY_NAME + "#blahut-arimoto) and docs/" + THEORY_NAME + "\n",
    })
    assert citation_problems(root) == []


@pytest.mark.parametrize("citing", [
    "# see " + THEORY_NAME + ": the oracle\n",                              # no such file at the root
    "# see /work/shared/reference/" + THEORY_NAME + "\n",                   # outside the repository
    "# see ../" + THEORY_NAME + "\n",                                       # outside the repository
    "# see docs/" + THEORY_NAME + "#no-such-section\n",                     # missing anchor
    "# see docs/" + THEORY_NAME + "#entropy\n",                             # anchor prefix only
])
def test_checker_rejects_bad_citations(tmp_path, citing):
    root = _tree(tmp_path / "repo", {"docs/" + THEORY_NAME: THEORY_STUB, "pkg/mod.py": citing})
    problems = citation_problems(root)
    assert len(problems) == 1 and "pkg/mod.py:1" in problems[0]


def test_checker_skips_environments_not_ci(tmp_path):
    root = _tree(tmp_path, {"docs/" + THEORY_NAME: THEORY_STUB,
                            ".ci/run": "# see docs/" + THEORY_NAME + "#no-such-section\n",
                            ".venv-ci/lib/x.py": "# " + THEORY_NAME + "\n",
                            ".tox/py311/lib/y.md": THEORY_NAME,
                            "pkg/__pycache__/x.txt": THEORY_NAME})
    # environments and caches are skipped; the hidden .ci folder is a source folder
    problems = citation_problems(root)
    assert len(problems) == 1 and problems[0].startswith(".ci/run:1"), problems


def test_no_placeholder_references_sections():
    # a "References" section that says "None" is noise: leave the section out where there is none
    import re
    pkg = ROOT / "infomoe"
    pat = re.compile(r"^([ ]+)References\n\1-{10}\n\1None\b", re.M)
    found = [str(p) for p in pkg.rglob("*.py") if pat.search(p.read_text())]
    assert not found, found
