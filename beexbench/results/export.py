"""``beexbench results export``: every cell as one table row (CSV or Parquet), one row per cell."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .._io import atomic_write_text, dumps_strict
from ..errors import BeexError
from .schema import CellKey, CellRecord
from .store import load_records

SUFFIXES = (".csv", ".parquet")


def unique_cells(records: list[CellRecord]) -> tuple[list[CellRecord], list[str]]:
    """One record per cell key, in the order first read, and notes on what was left out: the
    same record read twice (a run reached twice) is kept once; records of one cell that differ
    (runs of the same job) keep the finished one over a failed one, then the later finished."""
    kept: dict[CellKey, CellRecord] = {}
    same = 0
    notes: list[str] = []
    for rec in records:
        old = kept.get(rec.key)
        if old is None:
            kept[rec.key] = rec
        elif _text(old) == _text(rec):
            same += 1
        else:
            new = max((old, rec), key=lambda r: (r.status == "ok", r.finished_at or ""))  # a tie keeps the first read
            kept[rec.key] = new
            gone = rec if new is old else old
            notes.append(f"{rec.key.slug}: in {old.run_id} and {rec.run_id}; exported {new.run_id}'s record, "
                         f"not {gone.run_id}'s ({'failed' if gone.status != 'ok' and new.status == 'ok' else 'older'})")
    if same:
        notes.insert(0, f"{same} record(s) were read twice (the same cell in the same form, e.g. a run linked twice); "
                        "exported once")
    return list(kept.values()), notes


def _text(rec: CellRecord) -> str:
    return dumps_strict(rec.to_dict(), sort_keys=True, default=str)


def export_frame(roots: list[Path], on_note: Callable[[str], None] | None = None) -> pd.DataFrame:
    from ..report.frame import records_frame

    records, notes = unique_cells(load_records(roots))
    for note in notes:
        if on_note is not None:
            on_note(note)
    return records_frame(records)


def export(roots: list[Path], out: Path, *, on_note: Callable[[str], None] | None = None) -> Path:
    """Write every cell of ``roots`` (one row per cell key) to ``out``, a .csv or .parquet file."""
    from ..report.export import csv_text

    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise BeexError(f"cannot export to '{out.suffix}': use a .csv or .parquet file name")
    if out.is_dir():
        raise BeexError(f"--out {out} is a folder: name a .csv or .parquet file")
    df = export_frame(roots, on_note)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        atomic_write_text(out, csv_text(df))  # text cells that a spreadsheet would run as formulas are quoted
    else:
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            raise BeexError("Parquet export needs pyarrow: pip install 'beexbench[parquet]' (or export to .csv)") from None
    return out
