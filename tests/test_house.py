"""House rules that keep the tree readable (issue 27's guards): no module under beexbench/ or
baselines/ is over 350 lines, and every folder of code there has its row in docs/ARCHITECTURE.md's
folder table (and every folder that table names exists). Read from the files, so each fails on a
new long module or an undocumented folder."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("beexbench", "baselines")
MAX_LINES = 350
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def oversized(repo: Path = REPO, roots: tuple[str, ...] = ROOTS, limit: int = MAX_LINES) -> dict[str, int]:
    """{module path: its line count} for every .py file under ``roots`` with more than ``limit`` lines."""
    out = {}
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > limit:
                out[path.relative_to(repo).as_posix()] = n
    return out


def code_folders(repo: Path = REPO, roots: tuple[str, ...] = ROOTS) -> set[str]:
    """Every folder under ``roots`` (the roots too) holding a Python module or an ``__init__.py``,
    as ``path/`` (namespace folders such as beexbench/models/ have no ``__init__.py``)."""
    return {path.parent.relative_to(repo).as_posix() + "/" for root in roots for path in (repo / root).rglob("*.py")
            if "__pycache__" not in path.parts}


def documented_folders(text: str) -> set[str]:
    """The ``path/`` names in the first column of the markdown tables of ``text``."""
    found = set()
    for line in text.splitlines():
        cells = line.split("|")
        if line.lstrip().startswith("|") and len(cells) > 2:
            found |= set(re.findall(r"`([\w./-]+/)`", cells[1]))
    return found


def test_the_size_guard_finds_a_long_module(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "ok.py").write_text("x = 1\n" * 350)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * 351)
    assert oversized(tmp_path, ("pkg",)) == {"pkg/sub/long.py": 351}


def test_no_module_is_over_350_lines():
    found = oversized()
    assert len(list((REPO / "beexbench").rglob("*.py"))) > 50  # the walk saw the tree
    assert not found, f"over {MAX_LINES} lines (split each along a real seam): " + ", ".join(
        f"{path} ({n})" for path, n in sorted(found.items()))


def test_the_folder_guard_reads_the_table_and_the_tree(tmp_path):
    (tmp_path / "pkg" / "ns").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "ns" / "m.py").write_text("")
    (tmp_path / "pkg" / "data").mkdir()
    (tmp_path / "pkg" / "data" / "x.toml").write_text("")
    assert code_folders(tmp_path, ("pkg",)) == {"pkg/", "pkg/ns/"}
    table = "| folder | holds |\n|---|---|\n| `pkg/` (top) | x, not `pkg/ns/` |\n| `a/`, `b/c/` | y |\nsee `d/`\n"
    assert documented_folders(table) == {"pkg/", "a/", "b/c/"}


def test_every_code_folder_has_its_row_in_the_architecture_doc():
    folders = code_folders()
    assert {"beexbench/", "baselines/", "beexbench/models/", "beexbench/runner/executors/"} <= folders
    documented = documented_folders(ARCHITECTURE.read_text(encoding="utf-8"))
    missing = sorted(folders - documented)
    assert not missing, f"docs/ARCHITECTURE.md's folder table has no row for: {', '.join(missing)}"
    gone = sorted(d for d in documented if d.startswith(tuple(f"{r}/" for r in ROOTS)) and d not in folders)
    assert not gone, f"docs/ARCHITECTURE.md's folder table names folders that hold no code: {', '.join(gone)}"
