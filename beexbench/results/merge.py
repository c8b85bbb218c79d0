"""List, merge and export runs from several machines."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ..errors import BeexError
from .schema import CellRecord
from .store import RunDir, find_runs, load_records, now_iso


def list_runs(roots: list[Path]) -> list[dict]:
    rows = []
    for root in roots:
        for run in find_runs(root):
            doc = run.read_run() if (run.path / "run.json").is_file() else {}
            cells = list(run.cells())
            rows.append({
                "run_id": run.run_id,
                "path": str(run.path),
                "suite": doc.get("suite"),
                "target": (doc.get("config") or {}).get("target"),
                "started_at": doc.get("started_at"),
                "finished_at": doc.get("finished_at"),
                "cells_ok": sum(c.status == "ok" for c in cells),
                "cells_failed": sum(c.status != "ok" for c in cells),
            })
    return rows


def merge_runs(roots: list[Path], out: Path) -> tuple[int, list[str]]:
    """Copy every finished cell of ``roots`` into the run folder ``out``. The same cell
    (model, task, target, seed, setting) from two runs keeps the later one and says so."""
    out_run = RunDir(Path(out))
    if out_run.path.exists() and any(out_run.path.iterdir()) and not (out_run.path / "run.json").is_file():
        raise BeexError(f"{out} exists and is not a beexbench run folder: choose a new --out")
    chosen: dict[str, tuple[CellRecord, Path]] = {}
    notes: list[str] = []
    sources = []
    for root in roots:
        for run in find_runs(root):
            sources.append(run.run_id)
            for rec in run.cells():
                if rec.status != "ok":
                    continue
                slug = rec.key.slug
                if slug in chosen:
                    old = chosen[slug][0]
                    keep = rec if (rec.finished_at or "") >= (old.finished_at or "") else old
                    notes.append(f"{slug}: in {old.run_id} and {rec.run_id}; kept {keep.run_id} (later)")
                    if keep is old:
                        continue
                chosen[slug] = (rec, run.cell_path(rec.key))
    if not chosen:
        raise BeexError(f"no finished cells under {', '.join(map(str, roots))}: nothing to merge")
    with out_run.lock():
        for rec, path in chosen.values():
            out_run.cells_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out_run.cells_dir / path.name)
        out_run.write_run({"run_id": out_run.run_id, "suite": "merged", "merged_from": sources,
                           "started_at": now_iso(), "finished_at": now_iso(), "notes": notes})
    return len(chosen), notes


def export_frame(roots: list[Path]) -> pd.DataFrame:
    from ..report.frame import records_frame

    return records_frame(load_records(roots))


def export(roots: list[Path], out: Path) -> Path:
    df = export_frame(roots)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        df.to_csv(out, index=False)
    elif out.suffix == ".parquet":
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            raise BeexError("Parquet export needs pyarrow: pip install 'beexbench[parquet]' (or export to .csv)") from None
    else:
        raise BeexError(f"cannot export to '{out.suffix}': use a .csv or .parquet file name")
    return out
