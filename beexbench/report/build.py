"""``build_report``: saved results -> one self-contained HTML file."""
from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..adapters.checkpoint import atomic_write_text
from ..errors import BeexError
from ..results.store import load_records
from .frame import records_frame
from .pareto import pareto_mask
from .plots import pareto_plot

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .55rem;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.front td{font-weight:600}.note{color:#555;font-size:.9rem}
.warn{color:#8a4b00}img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2rem}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    return format(v, spec)


def summary_table(df: pd.DataFrame) -> str:
    d = df.copy()
    d["front"] = pareto_mask(d, "latency_ms")
    cols = [("model", "l"), ("accuracy", ""), ("size", ""), ("MACs/sample", ""), ("BOPs/sample", ""),
            ("latency bs=1 median / p90 (ms)", ""), ("energy / sample", ""), ("mean exit", "")]
    head = "".join(f'<th class="{c}">{esc(n)}</th>' for n, c in cols)
    body = []
    for _, r in d.sort_values("accuracy", ascending=False).iterrows():
        energy = f"{_fmt(r.energy_j, '.4g')} J ({esc(r.energy_provenance)})" if r.energy_j is not None and not pd.isna(r.energy_j) else esc(r.energy_provenance)
        body.append(
            f'<tr class="{"front" if r.front else ""}"><td class="l">{esc(r.model)}{" ★" if r.front else ""}</td>'
            f"<td>{_fmt(r.accuracy, '.4f')} [{_fmt(r.accuracy_lo, '.3f')}, {_fmt(r.accuracy_hi, '.3f')}]</td>"
            f"<td>{_fmt((r.size_bits or 0) / 8 / 1024, ',.1f')} KiB</td>"
            f"<td>{_fmt((r.macs or 0) / 1e6, '.2f')} M</td><td>{_fmt((r.bops or 0) / 1e6, '.2f')} M</td>"
            f"<td>{_fmt(r.latency_ms, '.3f')} / {_fmt(r.latency_p90_ms, '.3f')}</td><td>{energy}</td>"
            f"<td>{_fmt(r.mean_exit, '.2f')} / {_fmt(r.n_blocks, '.0f')}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def build_report(results: list[Path] | Path, out: Path) -> Path:
    """Read every run under ``results`` and write one self-contained HTML file to ``out``."""
    roots = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    records = load_records(roots)
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise BeexError(f"no finished results under {', '.join(map(str, roots))}: run `beexbench run` first")
    df = records_frame(ok)
    sections = []
    for (task, target), g in df.groupby(["task", "target"], sort=True):
        emulated = " (emulated)" if g["emulated"].any() else ""
        title = f"{task} on {target}{emulated}"
        img = pareto_plot(g, "latency_ms", "latency at batch size 1, median (ms)", f"Accuracy vs latency — {title}",
                          err=("latency_lo", "latency_hi"))
        sections.append(
            f"<section><h2>{esc(title)}</h2>{summary_table(g)}"
            f'<figure><img alt="{esc("accuracy vs latency, " + title)}" src="{img}"><figcaption class="note">'
            "Non-dominated models are ringed and joined by the dashed front (★ in the table).</figcaption></figure></section>"
        )
    failed = [r for r in records if r.status != "ok"]
    fail_html = "".join(f"<li>{esc(r.key.model)} on {esc(r.key.task)}: {esc(r.error)}</li>" for r in failed)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>beexbench report</title>
<style>{CSS}</style></head><body><h1>beexbench report</h1>
<p class="note">{len(ok)} results from {df['run_id'].nunique()} run(s), generated {esc(stamp)} from saved results only.
All models are trained from scratch on each task's train split, without distillation.
FLOPs = 2 × MACs; BOPs are multiply-accumulates between two 1-bit operands, counted apart.</p>
{''.join(sections)}
{'<h2>Failed cells</h2><ul class="warn">' + fail_html + '</ul>' if failed else ''}
</body></html>"""
    out = Path(out)
    atomic_write_text(out, page)
    return out
