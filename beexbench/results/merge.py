"""List, merge and export runs from several machines."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._io import dumps_strict
from ..errors import BeexError
from .schema import CellKey, CellRecord
from .store import RunDir, now_iso, unique_runs


def list_runs(roots: list[Path]) -> list[dict]:
    """One row per run folder (a run reached twice, e.g. through a symlink, is listed once)."""
    rows = []
    for run in unique_runs(roots):
        doc = run.read_run() if (run.path / "run.json").is_file() else {}
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        cells = list(run.cells())
        rows.append({
            "run_id": run.run_id,
            "path": str(run.path),
            "suite": doc.get("suite"),
            "target": config.get("target"),
            "started_at": doc.get("started_at"),
            "finished_at": doc.get("finished_at"),
            "cells_ok": sum(c.status == "ok" for c in cells),
            "cells_failed": sum(c.status != "ok" for c in cells),
        })
    return rows


PREFER = ("newer",)


@dataclass
class _Plan:
    """What a merge will write: cells by full key, and what it noticed on the way."""

    cells: dict[CellKey, CellRecord] = field(default_factory=dict)
    existing: dict[CellKey, tuple[Path, CellRecord]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def current(self, key: CellKey) -> CellRecord | None:
        return self.cells[key] if key in self.cells else self.existing.get(key, (None, None))[1]

    def offer(self, rec: CellRecord, prefer: str | None) -> None:
        old = self.current(rec.key)
        if old is None:
            self.cells[rec.key] = rec
        elif _same(old, rec):
            if rec.key in self.cells:  # the same cell twice among the sources (already in out: nothing to say)
                self.notes.append(f"{rec.key.slug}: the same record in {old.run_id} and {rec.run_id}; kept one")
        elif prefer is None:
            self.conflicts.append(f"{rec.key.slug} differs between {old.run_id} and {rec.run_id}")
        elif (rec.finished_at or "") > (old.finished_at or ""):
            self.cells[rec.key] = rec
            self.notes.append(f"{rec.key.slug}: in {old.run_id} and {rec.run_id}; kept {rec.run_id} (newer)")
        else:
            self.notes.append(f"{rec.key.slug}: in {old.run_id} and {rec.run_id}; kept {old.run_id} (not older)")


def _same(a: CellRecord, b: CellRecord) -> bool:
    """The two records would be written as the same file (NaN included: compared as JSON)."""
    return dumps_strict(a.to_dict(), sort_keys=True) == dumps_strict(b.to_dict(), sort_keys=True)


def _plan(roots: list[Path], out_run: RunDir, out_is_run: bool, prefer: str | None) -> _Plan:
    plan = _Plan(existing=out_run.index() if out_is_run else {})
    for run in unique_runs(roots):
        plan.sources.append(run.run_id)
        for rec in run.cells():
            if rec.status == "ok":
                plan.offer(rec, prefer)
    if plan.conflicts:
        raise BeexError(f"{len(plan.conflicts)} cell(s) conflict, e.g. {plan.conflicts[0]}: nothing was merged; "
                        "pass --prefer newer to keep the newer of each, or merge into a new --out")
    if not plan.cells and not out_is_run:
        raise BeexError(f"no finished cells under {', '.join(map(str, roots))}: nothing to merge")
    return plan


_BUSY = ("{path} is being written by another beexbench process (pid {pid}): nothing was merged; "
         "merge again when it has finished (a cell that differs is then refused as a conflict), or choose another --out")
_RUN_PARTS = {".lock", "run.json", "cells"}


def _refuse_foreign(path: Path) -> None:
    """A folder that holds something else than a run (no run.json, no cells/, other files) is
    refused before even a lock file is put in it: no merge makes such a folder, so no race does."""
    if not path.is_dir() or (path / "run.json").is_file() or (path / "cells").is_dir():
        return
    others = sorted(p.name for p in path.iterdir() if p.name not in _RUN_PARTS)
    if others:
        raise BeexError(f"{path} exists and is not a beexbench run folder (it holds {others[0]!r}): choose a new --out")


def _out_is_run(out_run: RunDir) -> bool:
    """Whether ``out`` already holds a run (its run.json checked: a newer or corrupt one is an
    error). Asked only while holding its lock, so a merge that finished a moment ago is seen."""
    _refuse_foreign(out_run.path)
    if (out_run.path / "run.json").is_file():
        out_run.read_run()
        return True
    return out_run.cells_dir.is_dir()  # the cells of a run without run.json (e.g. moved away): kept, added to


def merge_runs(roots: list[Path], out: Path, *, prefer: str | None = None) -> tuple[int, list[str]]:
    """Copy every finished cell of ``roots`` into the run folder ``out`` (new or existing) and
    return (cells written, notes). Nothing is overwritten: a cell already in ``out``, or in two
    of the runs, with different content is refused unless ``prefer="newer"`` (the later
    ``finished_at`` wins); an existing ``out``'s run.json is never replaced. ``out``'s lock is
    taken before anything in it is looked at: a merge that another process is writing is refused
    (nothing merged), and one that finished first is an existing run like any other."""
    if prefer not in (None, *PREFER):
        raise BeexError(f"--prefer {prefer!r} is not known: use --prefer newer, or leave it out to refuse conflicts")
    out_run = RunDir(Path(out))
    _refuse_foreign(out_run.path)
    with out_run.lock(busy=_BUSY):
        out_is_run = _out_is_run(out_run)
        has_run_json = (out_run.path / "run.json").is_file()
        plan = _plan(roots, out_run, out_is_run, prefer)
        for rec in plan.cells.values():
            out_run.write_cell(rec, previous=plan.existing.get(rec.key, (None,))[0])
        if not has_run_json:
            out_run.write_run({"run_id": out_run.run_id, "suite": "merged", "merged_from": plan.sources,
                               "started_at": now_iso(), "finished_at": now_iso(), "notes": plan.notes})
    return len(plan.cells), plan.notes
