"""One record per cell key across runs (what ``beexbench results export`` writes, one table row each:
:func:`beexbench.report.export.export_cells`)."""
from __future__ import annotations

from .._io import dumps_strict
from .schema import CellKey, CellRecord


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
