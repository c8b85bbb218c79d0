"""The per-host roofline in the report: a small table of each host's bounds (from the summary every
cell's environment carries, :func:`beexbench.profilers.roofline.environment_entry`) and a kernel's
or model's speed read as a share of one bound: "at 48% of the popcount-avx512 bound (1 thread)".

Works from the recorded summaries only (a report may be built on another machine); a bound that
was not measured, or that the host cannot run, is said so with its reason, never shown as a share."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from ._html import esc

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
COLUMNS = ["path", "instructions", "1 thread", "all cores", "spread (1 thread / all)"]


def fmt_rate(value: float | None, unit: str) -> str:
    """``1.23 T binary MAC/s``; "—" for a missing figure."""
    if value is None or not math.isfinite(value):
        return "—"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix} {unit}"
    return f"{value:.3g} {unit}"


def _bounds(summary: Mapping[str, Any] | None) -> Mapping[str, Mapping[str, Any]]:
    bounds = (summary or {}).get("bounds")
    return bounds if isinstance(bounds, Mapping) else {}


def bounds_rows(summary: Mapping[str, Any] | None) -> list[list[str]]:
    """One row per path: name, instructions, the two figures and their spreads (or the reason)."""
    rows = []
    for name, b in _bounds(summary).items():
        if b.get("unavailable_reason"):
            rows.append([name, str(b.get("isa", "")), f"unavailable: {b['unavailable_reason']}", "", ""])
            continue
        unit = str(b.get("unit", ""))
        spread = "/".join(f"±{100 * s:.0f}%" if isinstance(s, (int, float)) else "—"
                          for s in (b.get("spread_1t"), b.get("spread_all")))
        rows.append([name, str(b.get("isa", "")), fmt_rate(b.get("ops_per_s_1t"), unit),
                     fmt_rate(b.get("ops_per_s_all"), unit), spread])
    return rows


def bounds_markdown(summary: Mapping[str, Any] | None) -> str:
    """The bounds as a Markdown table (or the sentence saying why there are none)."""
    if not _bounds(summary):
        return f"No roofline: {(summary or {}).get('unavailable_reason', 'not recorded')}."
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in bounds_rows(summary)]
    return "\n".join(lines)


def bounds_html(summary: Mapping[str, Any] | None, title: str) -> str:
    """One host's bounds as a small HTML table with a caption."""
    if not _bounds(summary):
        why = (summary or {}).get("unavailable_reason", "not recorded in these cells")
        return f'<p class="note" data-roofline="none"><b>{esc(title)}:</b> no roofline ({esc(why)}).</p>'
    s = summary or {}
    head = "".join(f'<th class="{"l" if i < 2 else ""}">{esc(c)}</th>' for i, c in enumerate(COLUMNS))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < 2 else ""}">{esc(c)}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in bounds_rows(s))
    load = s.get("load_avg_1m")
    cap = (f"{title}: peak throughput measured by beexbench's register-resident microbenchmark "
           f"(median of repetitions; all cores = {s.get('threads_all')} threads; measured {s.get('measured_at')}"
           + (f", 1-minute load average {load:.2f}" if isinstance(load, (int, float)) else "")
           + f"; key {s.get('key')}). FLOP counts 2 per MAC; a binary MAC is one bit through XOR + popcount.")
    return (f'<table data-roofline="{esc(s.get("key"))}"><caption>{esc(cap)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def host_summaries(environments: Iterable[Mapping[str, Any] | None]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Distinct roofline summaries by key (one per host), with a readable host name each."""
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for env in environments:
        if not isinstance(env, Mapping) or not isinstance(env.get("roofline"), Mapping):
            continue
        summary = env["roofline"]
        node = env.get("node") if isinstance(env.get("node"), Mapping) else {}
        host = str(node.get("name") or (env.get("cpu") or {}).get("model") or "host")
        key = str(summary.get("key") or f"unmeasured on {host}")
        out.setdefault(key, (f"{host} ({summary.get('cpu') or (env.get('cpu') or {}).get('model', '')})", summary))
    return out


def roofline_html(records: Iterable[Any]) -> str:
    """The report's roofline block: one bounds table per host the records were measured on
    ("" when no record carries a roofline entry, e.g. records older than it)."""
    hosts = host_summaries(getattr(r, "environment", None) for r in records)
    if not hosts:
        return ""
    return "<h3>Roofline (per-host bounds)</h3>" + "".join(bounds_html(s, title) for title, s in hosts.values())


def share(ops: float, latency_s: float, path: str, summary: Mapping[str, Any] | None,
          threads: str = "1t") -> tuple[float | None, str]:
    """``ops / latency_s`` as a share of ``path``'s bound: (share, sentence). The share is None
    (and the sentence says why) when the bound is missing or unavailable or the inputs are not
    finite positive numbers."""
    b = _bounds(summary).get(path)
    where = "1 thread" if threads == "1t" else "all cores"
    if not (isinstance(ops, (int, float)) and isinstance(latency_s, (int, float)) and math.isfinite(ops)
            and math.isfinite(latency_s) and ops > 0 and latency_s > 0):
        return None, f"no share of the {path} bound (ops {ops!r}, latency {latency_s!r} s)"
    if b is None:
        why = (summary or {}).get("unavailable_reason") or "not in this host's roofline"
        return None, f"no {path} bound ({why})"
    if b.get("unavailable_reason"):
        return None, f"the {path} bound is unavailable on this host: {b['unavailable_reason']}"
    bound = b.get("ops_per_s_1t" if threads == "1t" else "ops_per_s_all")
    if not isinstance(bound, (int, float)) or not bound > 0:
        return None, f"no {path} bound ({where})"
    value = ops / latency_s / bound
    return value, f"at {100 * value:.0f}% of the {path} bound ({where})"
