"""HTML building blocks. Every string from a results file goes through :func:`esc`."""
from __future__ import annotations

import html
import re

from .tables import Table

# No scripts, no external fetches: the page can only show inline styles and data: images.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1250px;color:#222;padding:0 1rem;line-height:1.4}
h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.front td:first-child{font-weight:600}tr.floor td{font-style:italic;color:#555;background:#fafafa}
.note{color:#555;font-size:.85rem}.warn{color:#8a4b00}.unavail{border:1px dashed #bbb;padding:1rem;color:#666;background:#fafafa}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}figure{margin:0}
img{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2rem}ul.tight li{margin:.15rem 0}
details{margin:.4rem 0}summary{cursor:pointer}nav ul{columns:2}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(*parts) -> str:
    return "s-" + re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-")


def table_html(t: Table, *, caption: bool = True) -> str:
    left = {0, 1} if t.kind == "ablation" else {0}
    head = "".join(f'<th class="{"l" if i in left else ""}">{esc(c)}</th>' for i, c in enumerate(t.columns))
    body = []
    for k, row in enumerate(t.rows):
        cls = t.row_classes[k] if k < len(t.row_classes) else ""
        cells = "".join(f'<td class="{"l" if i in left else ""}">{esc(c)}</td>' for i, c in enumerate(row))
        body.append(f'<tr class="{cls}">{cells}</tr>')
    notes = "".join(f"<li>{esc(n)}</li>" for n in t.notes)
    cap = f"<caption class=\"note\" style=\"caption-side:bottom;text-align:left\"><ul class=\"tight\">{notes}</ul></caption>" if caption and notes else ""
    return f'<table data-kind="{esc(t.kind)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>{cap}</table>'


def figure(uri: str, alt: str, caption: str = "") -> str:
    cap = f'<figcaption class="note">{esc(caption)}</figcaption>' if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="{uri}">{cap}</figure>'


def unavailable(what: str, why: str) -> str:
    return f'<figure><div class="unavail" data-unavailable="{esc(what)}"><b>{esc(what)}: unavailable.</b> {esc(why)}</div></figure>'


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")
