"""The results store: ``<root>/<run-id>/run.json`` plus one JSON file per finished cell
in ``cells/``, each written atomically (temp file + rename) as soon as the cell finishes,
so an interrupted run loses nothing already written and resumes where it stopped."""
from __future__ import annotations

import json
import shlex
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .._io import LockBusy, atomic_write_text, dumps_strict, exclusive_lock, safe_child, safe_name
from ..errors import BeexError
from .schema import RUN_SCHEMA, SCHEMA_VERSION, CellKey, CellRecord


def new_run_id(suite: str) -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{safe_name(suite)}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_BUSY = ("run {path} is being written by another beexbench process (pid {pid}): "
         "wait for it, or start a separate run with --run-id NAME")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def under(cls, root: Path, run_id: str) -> "RunDir":
        """The run folder ``root/run_id``; a run id that would leave ``root`` is refused."""
        return cls(safe_child(root, run_id, what="run id"))

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def cells_dir(self) -> Path:
        return self.path / "cells"

    def _file(self, *parts: str) -> Path:
        return safe_child(self.path, *parts, what="file")

    def write_run(self, doc: dict) -> None:
        body = {"schema": RUN_SCHEMA, "schema_version": SCHEMA_VERSION, **doc}
        atomic_write_text(self._file("run.json"), dumps_strict(body, default=str))

    def read_run(self) -> dict:
        """run.json, checked: a corrupt, foreign or newer one is a one-line error, never read silently."""
        path = self.path / "run.json"
        advice = _run_json_advice(self.path)
        doc = _read_json(path, advice=advice)
        _check_run_doc(doc, path, advice)
        return doc

    def check(self) -> "RunDir":
        """This run, after checking its run.json (when it has one) is one this beexbench can read."""
        if (self.path / "run.json").is_file():
            self.read_run()
        return self

    def update_run(self, **fields) -> None:
        doc = self.read_run()
        doc.update(fields)
        doc.pop("schema", None), doc.pop("schema_version", None)
        self.write_run(doc)

    @property
    def finished(self) -> bool:
        return (self.path / "run.json").is_file() and bool(self.read_run().get("finished_at"))

    @contextmanager
    def lock(self, *, busy: str | None = None):
        """Exclusive use of this run folder by one process (released by the OS if it dies;
        ``.lock`` is never followed if it is a symlink). A folder this call created is
        removed again if the body fails before any cell is written. ``busy``: what to tell the
        user when another process holds it (``{path}`` and ``{pid}`` are filled in)."""
        if self.path.exists() and not self.path.is_dir():
            raise BeexError(f"{self.path} is a file, not a run folder: choose a folder")
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(self.path / ".lock"))  # O_NOFOLLOW: a symlink is refused
            except LockBusy as held:
                raise BeexError((busy or _BUSY).format(path=self.path, pid=held.owner)) from None
            try:
                yield self
            except BaseException:
                if created:
                    self._discard_if_empty()
                raise

    def _discard_if_empty(self) -> None:
        """Remove what starting a run wrote (run.json, .lock, empty cells/) when no cell exists."""
        if self.cells_dir.is_dir() and any(self.cells_dir.iterdir()):
            return
        for name in ("run.json", ".lock"):
            (self.path / name).unlink(missing_ok=True)
        for folder in (self.cells_dir, self.path):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: something else is there, keep it

    def cell_path(self, key: CellKey) -> Path:
        return self._file("cells", f"{key.slug}.json")

    def write_cell(self, record: CellRecord, *, previous: Path | None = None) -> Path:
        """Write ``record`` atomically to its own file; ``previous``, another file that held the
        same cell (e.g. under an older file name), is removed after."""
        path = self.cell_path(record.key)
        self._check_slot(path, record.key)
        atomic_write_text(path, dumps_strict(record.to_dict(), default=_json_default))
        if previous is not None and previous != path:
            previous.unlink(missing_ok=True)
        return path

    def _check_slot(self, path: Path, key: CellKey) -> None:
        """A file already at ``path`` must be a readable record of the same cell."""
        if path.exists() and _read_record(path).key != key:
            raise BeexError(f"{path} holds another cell than {key.slug}: two cells map to one file; "
                            "move that file away and report this as a bug")

    def has_cell(self, key: CellKey) -> bool:
        """True when a finished (status ok) record for ``key`` exists; an unreadable record is
        an error, never a reason to run (and overwrite) the cell."""
        path = self.cell_path(key)
        if not path.is_file():
            return False
        self._check_slot(path, key)
        return _read_record(path).status == "ok"

    def entries(self) -> Iterator[tuple[Path, CellRecord]]:
        for path in sorted(self.cells_dir.glob("*.json")):
            yield path, _read_record(path)

    def cells(self) -> Iterator[CellRecord]:
        for _, record in self.entries():
            yield record

    def check_resumable(self) -> dict[CellKey, tuple[Path, CellRecord]]:
        """:meth:`index`, after checking that this beexbench may add to the run: a run.json or a
        record it cannot read (corrupt, foreign, newer schema) is an error, so nothing is rewritten."""
        try:
            if (self.path / "run.json").is_file():
                _check_run_doc(self.read_run(), self.path / "run.json")
            return self.index()
        except BeexError as exc:
            raise BeexError(f"cannot add to run {self.path} (nothing was changed): {exc}") from None

    def index(self) -> dict[CellKey, tuple[Path, CellRecord]]:
        """Every record of this run by its full key. A record this beexbench cannot read (corrupt,
        foreign, newer schema) or two files holding one cell is an error: nothing is rewritten."""
        out: dict[CellKey, tuple[Path, CellRecord]] = {}
        for path, record in self.entries():
            if record.key in out:
                raise BeexError(f"{out[record.key][0]} and {path} hold the same cell {record.key.slug}: "
                                "move one of them out of the run folder")
            out[record.key] = (path, record)
        return out


def _run_json_advice(run: Path) -> str:
    """What to do about a run.json this beexbench cannot read: the cells keep every result, and a
    run folder without run.json is still read (report, list, merge), so this leads somewhere."""
    return (f"move it out of the folder (e.g. to {run.name}-run.json.bad beside it), then "
            f"`beexbench results merge --results {shlex.quote(str(run))} --out NEW_RUN` copies its cells into a new run "
            "folder, which `beexbench run --resume NEW_RUN` with the run's --suite or --config finishes")


def _check_run_doc(doc, path: Path, advice: str | None = None) -> None:
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("schema") != RUN_SCHEMA or not isinstance(version, int) or isinstance(version, bool):
        raise BeexError(f"{path} is not a beexbench run file: {advice or 'point at a folder written by `beexbench run`'}")
    if version > SCHEMA_VERSION:
        raise BeexError(f"{path} has run schema version {version}; this beexbench writes {SCHEMA_VERSION}: upgrade beexbench")


def _read_record(path: Path) -> CellRecord:
    return CellRecord.from_dict(_read_json(path), source=str(path))


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_CELL_ADVICE = "delete it and re-run that cell with `beexbench run --resume`"


def _read_json(path: Path, *, advice: str = _CELL_ADVICE) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BeexError(f"{path} not found: run `beexbench run` first") from None
    except IsADirectoryError:
        raise BeexError(f"{path} is a folder, not a file: {advice}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BeexError(f"{path} is corrupt ({_one_line(exc)}): {advice}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def find_runs(root: Path) -> list[RunDir]:
    """Run folders under ``root`` (or ``root`` itself when it is one), oldest first. A run.json
    this beexbench cannot read (corrupt, foreign, newer schema) is an error, as a cell's is."""
    root = Path(root)
    if not root.exists():
        raise BeexError(f"results folder {root} does not exist: run `beexbench run` first or pass --results DIR")
    if not root.is_dir():
        raise BeexError(f"--results {root} is a file, not a folder: pass a results folder or a run folder")
    if is_run_folder(root):
        return [RunDir(root).check()]
    runs = [RunDir(p).check() for p in sorted(root.iterdir()) if p.is_dir() and is_run_folder(p)]
    if not runs:
        raise BeexError(f"no beexbench runs in {root}: run `beexbench run` first or pass --results DIR")
    return runs


def is_run_folder(path: Path) -> bool:
    """A beexbench run folder: ``run.json`` or ``cells/`` in it (False where it cannot be looked at)."""
    try:
        return (path / "run.json").is_file() or (path / "cells").is_dir()
    except OSError:
        return False


def unique_runs(roots: list[Path]) -> list[RunDir]:
    """:func:`find_runs` of every root, each run folder once (a run reached twice, e.g. through a
    symlink or a root given twice, is read once)."""
    seen: set[Path] = set()
    out: list[RunDir] = []
    for root in roots:
        for run in find_runs(root):
            real = run.path.resolve()
            if real not in seen:
                seen.add(real)
                out.append(run)
    return out


def load_records(roots: list[Path]) -> list[CellRecord]:
    """Every cell record of every run under ``roots`` (each run once); a corrupt file is an error naming it."""
    records: list[CellRecord] = []
    for run in unique_runs(roots):
        records.extend(run.cells())
    return records
