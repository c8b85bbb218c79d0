"""Paper-style exports of the report's tables: ``tables.md`` (the formatted cells, as in the HTML)
and one CSV per kind (``summary.csv``, ``ablation.csv``) with the raw numbers behind them.

Names and labels come from results files, plugins and datasets, so both exports escape what
they carry: a Markdown cell shows raw HTML as text (``&lt;script&gt;``), cannot end the row
(``|``, line breaks) or open a link, image or code span; a CSV text cell that a spreadsheet would run
as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading ``'`` (OWASP).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

import pandas as pd

from .._io import atomic_write_text
from ..errors import BeexError
from ..results.export import unique_cells
from ..results.store import load_records
from .frame import records_frame
from .tables import Table

SUFFIXES = (".csv", ".parquet")


_MD_ESCAPED = "\\|`"  # backslash first: the others' escapes must not be escaped again
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def md_cell(text) -> str:
    """One Markdown table cell (or heading) showing ``text`` literally, on one line."""
    out = html.escape(" ".join(str(text).splitlines()), quote=False)
    for ch in _MD_ESCAPED:
        out = out.replace(ch, "\\" + ch)
    return out.replace("](", "]\\(")  # no inline link or image: "[text](url)"


def csv_cell(value):
    """A text cell a spreadsheet would run as a formula, made inert with a leading ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def csv_text(df: pd.DataFrame) -> str:
    """``df`` as CSV with every text cell passed through :func:`csv_cell` (numbers untouched)."""
    return df.apply(lambda col: col.map(csv_cell)).to_csv(index=False)


def markdown(tables: list[Table]) -> str:
    out = ["# beexbench tables", ""]
    for t in tables:
        out += [f"## {md_cell(t.title)}", ""]
        out.append("| " + " | ".join(md_cell(c) for c in t.columns) + " |")
        left = 2 if t.kind == "ablation" else 1
        out.append("|" + "|".join(":--" if i < left else "--:" for i in range(len(t.columns))) + "|")
        out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in t.rows]
        out += [""] + [f"- {md_cell(n)}" for n in t.notes] + [""]
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
            atomic_write_text(path, csv_text(pd.concat(raws, ignore_index=True)))
            paths.append(path)
        elif path.exists():
            path.unlink()  # a stale export from an earlier report would contradict this one
    return paths


# -- `beexbench results export`: every cell as one table row (CSV or Parquet), one row per cell
def export_frame(roots: list[Path], on_note: Callable[[str], None] | None = None) -> pd.DataFrame:
    records, notes = unique_cells(load_records(roots))
    for note in notes:
        if on_note is not None:
            on_note(note)
    return records_frame(records)


def export_cells(roots: list[Path], out: Path, *, on_note: Callable[[str], None] | None = None) -> Path:
    """Write every cell of ``roots`` (one row per cell key) to ``out``, a .csv or .parquet file."""
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
