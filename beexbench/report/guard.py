"""What ``build_report`` checks before it writes anything: that neither the HTML nor its tables
folder would land inside a results folder (a
report file in a run folder breaks every later list, report, merge and resume of that run, and
one named like a cell replaces it)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import BeexError
from ..results.store import is_run_folder


def _holds_runs(folder: Path) -> bool:
    """A results root: a folder with a run folder directly in it."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir() and is_run_folder(Path(entry.path)):
                        return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_destination(path: Path, roots: list[Path], what: str, option: str) -> None:
    """Refuse ``path`` (the report file or its tables folder) inside one of the ``roots`` being read,
    or inside any run folder or results root: one line, before any work."""
    target = Path(os.path.abspath(path))
    real = target.resolve()
    for root in roots:
        if root.exists() and _inside(real, root.resolve()):
            raise BeexError(f"{option} {path} is inside --results {root}: write the {what} outside the results folders")
    for folder in (real, *real.parents):
        if is_run_folder(folder):
            raise BeexError(f"{option} {path} is inside the beexbench run folder {folder}: "
                            f"write the {what} outside the results folders (e.g. under reports/)")
        if _holds_runs(folder):
            raise BeexError(f"{option} {path} is inside the beexbench results folder {folder}: "
                            f"write the {what} outside the results folders (e.g. under reports/)")
