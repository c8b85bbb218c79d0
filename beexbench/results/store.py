"""The results store: ``<root>/<run-id>/run.json`` plus one JSON file per finished cell
in ``cells/``, each written atomically (temp file + rename) as soon as the cell finishes,
so an interrupted run loses nothing already written and resumes where it stopped."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .._io import atomic_write_text
from ..errors import BeexError
from .schema import RUN_SCHEMA, SCHEMA_VERSION, CellKey, CellRecord


def new_run_id(suite: str) -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{suite}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def cells_dir(self) -> Path:
        return self.path / "cells"

    def write_run(self, doc: dict) -> None:
        atomic_write_text(self.path / "run.json", json.dumps({"schema": RUN_SCHEMA, "schema_version": SCHEMA_VERSION, **doc}, indent=2, default=str))

    def read_run(self) -> dict:
        return _read_json(self.path / "run.json")

    def update_run(self, **fields) -> None:
        doc = self.read_run()
        doc.update(fields)
        doc.pop("schema", None), doc.pop("schema_version", None)
        self.write_run(doc)

    @property
    def finished(self) -> bool:
        return (self.path / "run.json").is_file() and bool(self.read_run().get("finished_at"))

    @contextmanager
    def lock(self):
        """Exclusive use of this run folder by one process (released by the OS if it dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError:
                other = Path(path).read_text().strip() or "?"
                raise BeexError(
                    f"run {self.path} is being written by another beexbench process (pid {other}): "
                    "wait for it, or start a separate run with --run-id NAME"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield self
        finally:
            os.close(fd)

    def cell_path(self, key: CellKey) -> Path:
        return self.cells_dir / f"{key.slug}.json"

    def write_cell(self, record: CellRecord) -> Path:
        path = self.cell_path(record.key)
        atomic_write_text(path, json.dumps(record.to_dict(), indent=2, default=_json_default))
        return path

    def has_cell(self, key: CellKey) -> bool:
        """True when a finished (status ok) record for ``key`` exists and is readable."""
        path = self.cell_path(key)
        if not path.is_file():
            return False
        try:
            return CellRecord.from_dict(_read_json(path), source=str(path)).status == "ok"
        except BeexError:
            return False

    def cells(self) -> Iterator[CellRecord]:
        for path in sorted(self.cells_dir.glob("*.json")):
            yield CellRecord.from_dict(_read_json(path), source=str(path))


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BeexError(f"{path} not found: run `beexbench run` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BeexError(f"{path} is corrupt ({exc}): delete it and re-run that cell with `beexbench run --resume`") from None


def find_runs(root: Path) -> list[RunDir]:
    """Run folders under ``root`` (or ``root`` itself when it is one), oldest first."""
    root = Path(root)
    if not root.exists():
        raise BeexError(f"results folder {root} does not exist: run `beexbench run` first or pass --results DIR")
    if (root / "run.json").is_file() or (root / "cells").is_dir():
        return [RunDir(root)]
    runs = [RunDir(p) for p in sorted(root.iterdir()) if p.is_dir() and ((p / "run.json").is_file() or (p / "cells").is_dir())]
    if not runs:
        raise BeexError(f"no beexbench runs in {root}: run `beexbench run` first or pass --results DIR")
    return runs


def load_records(roots: list[Path]) -> list[CellRecord]:
    """Every cell record of every run under ``roots``; a corrupt file is an error naming it."""
    records: list[CellRecord] = []
    for root in roots:
        for run in find_runs(root):
            records.extend(run.cells())
    return records
