"""Paper-style exports of the report's tables: ``tables.md`` (the formatted cells, as in the HTML)
and one CSV per kind (``summary.csv``, ``ablation.csv``) with the raw numbers behind them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .._io import atomic_write_text
from .tables import Table


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(tables: list[Table]) -> str:
    out = ["# beexbench tables", ""]
    for t in tables:
        out += [f"## {_md_cell(t.title)}", ""]
        out.append("| " + " | ".join(_md_cell(c) for c in t.columns) + " |")
        left = 2 if t.kind == "ablation" else 1
        out.append("|" + "|".join(":--" if i < left else "--:" for i in range(len(t.columns))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        out += [""] + [f"- {_md_cell(n)}" for n in t.notes] + [""]
    return "\n".join(out)


def write_tables(tables: list[Table], folder: Path) -> list[Path]:
    """Write ``tables.md`` and ``<kind>.csv`` into ``folder``; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "tables.md"]
    atomic_write_text(paths[0], markdown(tables))
    for kind in ("summary", "ablation"):
        raws = [t.raw for t in tables if t.kind == kind and not t.raw.empty]
        path = folder / f"{kind}.csv"
        if raws:
            atomic_write_text(path, pd.concat(raws, ignore_index=True).to_csv(index=False))
            paths.append(path)
        elif path.exists():
            path.unlink()  # a stale export from an earlier report would contradict this one
    return paths
