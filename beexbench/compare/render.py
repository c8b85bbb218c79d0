"""A comparison as Markdown (for a CI log or a pull request) or a small HTML page."""
from __future__ import annotations

import html

from ..report.export import md_cell
from .api import Comparison


def _verdict(d, alpha: float) -> str:
    if d.exact:
        return "same" if d.change == 1.0 else "changed (exact)"
    return "distinguishable" if d.significant(alpha) else "not distinguishable"


def rows(c: Comparison) -> list[list[str]]:
    out = []
    for cell in c.cells:
        for d in cell.deltas:
            base = f"{d.base * 100:.2f}%" if d.metric == "accuracy" else f"{d.base:.4g}"
            new = f"{d.new * 100:.2f}%" if d.metric == "accuracy" else f"{d.new:.4g}"
            p = "exact" if d.exact else f"{d.p_adjusted:.3g}"
            out.append([cell.key.slug, d.metric, base, new, d.shown(), p, _verdict(d, c.alpha), d.method])
    return out


HEADER = ["cell", "metric", "base", "new", "change [95% CI]", "p (corrected)", "verdict", "test"]


def summary_lines(c: Comparison) -> list[str]:
    out = [f"{len(c.cells)} cell(s) compared; p-values corrected together ({c.correction}), alpha {c.alpha}."]
    if c.thresholds:
        out.append("gate: " + ", ".join(t.shown() for t in c.thresholds))
    out += [f"REGRESSION {r}" for r in c.regressions]
    out += [f"only in base: {k.slug}" for k in c.only_base] + [f"only in new: {k.slug}" for k in c.only_new]
    out += list(c.failed)
    out += [f"{cell.key.slug}: {n}" for cell in c.cells for n in cell.notes]
    return out


def markdown(c: Comparison) -> str:
    lines = ["# beexbench compare", ""] + [f"- {md_cell(s)}" for s in summary_lines(c)] + [""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join(["--"] * len(HEADER)) + "|")
    lines += ["| " + " | ".join(md_cell(v) for v in r) + " |" for r in rows(c)]
    return "\n".join(lines) + "\n"


def html_page(c: Comparison) -> str:
    esc = html.escape
    items = "".join(f"<li>{esc(s)}</li>" for s in summary_lines(c))
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows(c))
    return (f"<!doctype html><meta charset='utf-8'><title>beexbench compare</title><h1>beexbench compare</h1>"
            f"<ul>{items}</ul><table border='1'><tr>{head}</tr>{body}</table>\n")
