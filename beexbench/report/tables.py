"""The report's tables as plain data: formatted cells (HTML and Markdown show these) plus the
raw numbers behind them (the CSV export), so every output carries the same figures."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..adapters.roles import FULL_PRECISION_REFERENCE
from ..results.columns import Column, column, columns
from .frame import has_role, is_floor, model_roles, quality_of
from .pareto import pareto_mask

# Where a model appears is decided by the role its records state (beexbench.adapters.roles):
# every model is a summary row; an "ablation of X" is also compared with X in the ablation
# table; a "deployment of X" (the same trained network run another way) is a summary row only;
# the "full-precision reference" is what the compression ratios are against; a "reference
# floor" is a reference line, never on a Pareto front.



def fronts() -> list[tuple[str, str]]:
    """(column, axis name) pairs the Pareto fronts are computed on (lower cost is better): the
    columns whose declaration names a ``front`` (beexbench.results.columns)."""
    return [(c.name, c.front) for c in columns() if c.front]


def own_columns() -> list[Column]:
    """Declared columns shown as a summary-table column of their own (a declared metric's)."""
    return [c for c in columns() if c.header]


@dataclass
class Table:
    """A titled table: ``rows`` are display strings, ``raw`` holds the numbers they come from."""

    kind: str  # "summary" | "ablation"
    task: str
    target: str
    columns: list[str]
    rows: list[list[str]]
    raw: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)
    reference: str = ""  # ablation tables: the model(s) the variants are compared with

    @property
    def title(self) -> str:
        name = "Summary" if self.kind == "summary" else f"Ablations (Δ against the full model: {self.reference})"
        return f"{name} — {self.task} on {self.target}"


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v, spec: str, scale: float = 1.0, empty: str = "—") -> str:
    return empty if _nan(v) else format(v * scale, spec)


def fmt_accuracy(r) -> str:
    """Percent; ``mean ± std (n seeds)`` or ``value [95% Wilson CI]``; "undefined" where the
    metric does not exist (Pearson r of a constant prediction)."""
    if _nan(r["accuracy"]):
        return "undefined" if r.get("accuracy_undefined") else "—"
    if r["n_seeds"] > 1:
        return f"{r['accuracy'] * 100:.1f} ± {fmt(r['accuracy_std'], '.1f', 100)}"
    if _nan(r["accuracy_lo"]):
        return f"{r['accuracy'] * 100:.1f}"
    return f"{r['accuracy'] * 100:.1f} [{r['accuracy_lo'] * 100:.1f}, {r['accuracy_hi'] * 100:.1f}]"


def fmt_energy(r) -> str:
    j = r["energy_j"]
    if _nan(j):
        return f"unavailable ({r['energy_provenance']})" if r["energy_provenance"] not in ("unavailable", "") else "unavailable"
    v, unit = (j * 1e3, "mJ") if abs(j) < 1 else (j, "J")
    part = f", {r['energy_n']} of {r['n_seeds']} seeds" if r.get("energy_n", r["n_seeds"]) < r["n_seeds"] else ""
    return f"{v:.3g} {unit} ({r['energy_provenance']}{part})"


def fmt_ms(v) -> str:
    """Milliseconds with three significant figures and no lost zeros: 1.00, 31.3, 360."""
    if _nan(v):
        return "—"
    return format(v, ".2f" if abs(v) < 10 else ".1f" if abs(v) < 100 else ".0f")


def fmt_latency(r) -> str:
    """``median / p90 @ threads`` of the fastest thread setting, then the other settings' medians:
    ``0.41 / 0.50 @ 1t (2t: 0.43)``."""
    text = f"{fmt_ms(r['latency_ms'])} / {fmt_ms(r['latency_p90_ms'])}"
    if r.get("latency_threads"):
        text += f" @ {r['latency_threads']}t"
    others = {t: v for t, v in (r.get("latency_by_threads") or {}).items() if str(t) != str(r.get("latency_threads"))}
    if others:
        text += " (" + ", ".join(f"{t}t: {fmt_ms(v)}" for t, v in sorted(others.items())) + ")"
    return text


def show(r, name: str) -> str:
    """A column's value as its declaration formats it (``fmt`` after ``scale``); with several
    seeds and a declared spread, ``mean ± std``."""
    c = column(name)
    text = fmt(r[name], c.fmt or "g", c.scale)
    if c.spread and c.spread in r and r.get("n_seeds", 1) > 1 and not _nan(r[c.spread]):
        text += f" ± {fmt(r[c.spread], c.fmt or 'g', c.scale)}"
    return text


def fmt_kib(bits) -> str:
    return fmt(bits, ",.1f", 1 / 8 / 1024)


def front_flags(group: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Boolean column per axis: on the non-dominated front of accuracy against that cost; with the
    group's per-seed ``cells``, dominated only where the dominance is distinguishable
    (:func:`beexbench.report.dominance.significant_front`)."""
    if cells is None:
        return pd.DataFrame({name: pareto_mask(group, col) for col, name in fronts()}, index=group.index)
    from .dominance import significant_front

    return pd.DataFrame({name: significant_front(group, cells, col, name)[0] for col, name in fronts()}, index=group.index)


SUMMARY_COLUMNS = [
    "model", "seeds", "accuracy % (test)", "size KiB (total / w/o emb.)", "× smaller than fp32 (bits / w/o emb. / disk)",
    "MACs M", "BOPs M", "OPs M",
    "latency bs=1 ms (median / p90 @ threads)", "energy / sample", "mean exit / blocks", "Pareto front",
]


def summary_table(group: pd.DataFrame, cells: pd.DataFrame | None = None) -> Table:
    """One row per model of one (task, target) group, most accurate first; ``cells`` (the group's
    per-seed rows): fronts count only distinguishable dominance."""
    g = group.sort_values(["accuracy", "label"], ascending=[False, True], na_position="last")
    floor = is_floor(g)
    # the reference floors are reference lines, not candidates: the fronts are over the other models
    flags = front_flags(g[~floor], cells).reindex(g.index, fill_value=False).astype(bool)
    reference = g[has_role(g, FULL_PRECISION_REFERENCE.kind)]
    refs = {row["setting"]: row for _, row in reference.iterrows()}

    def smaller(r, col):  # compression against the fp32 counterpart of the same setting, "—" without one
        ref = refs.get(r["setting"])
        if ref is None or _nan(r[col]) or _nan(ref[col]) or not r[col]:
            return math.nan
        return ref[col] / r[col]

    extra = [c for c in own_columns() if c.name in g]
    rows, classes, raw = [], [], []
    for i, r in g.iterrows():
        ratios = [smaller(r, c) for c in ("size_bits", "size_bits_no_emb", "disk_bytes")]
        on = [name for name in flags.columns if flags.at[i, name]]
        rows.append([
            r["label"] + (" — reference floor" if floor[i] else ""), str(r["n_seeds"]), fmt_accuracy(r),
            f"{fmt_kib(r['size_bits'])} / {fmt_kib(r['size_bits_no_emb'])}",
            " / ".join(fmt(x, ".1f") for x in ratios),
            show(r, "macs"), show(r, "bops"), show(r, "ops"),
            fmt_latency(r),
            fmt_energy(r),
            f"{show(r, 'mean_exit')} / {show(r, 'n_blocks')}" if not _nan(r["n_blocks"]) else "—",
            *(show(r, c.name) for c in extra),
            ", ".join(on) or "—",
        ])
        classes.append("floor" if floor[i] else "front" if on else "")
        raw.append({
            "task": r["task"], "target": r["target_label"], "model": r["label"], "role": r.get("role", "model"),
            "n_seeds": r["n_seeds"],
            "seeds": r["seeds"], "accuracy": r["accuracy"], "accuracy_std": r["accuracy_std"],
            "accuracy_lo": r["accuracy_lo"], "accuracy_hi": r["accuracy_hi"], "accuracy_interval": r["spread"],
            "size_bits": r["size_bits"], "size_bits_without_embeddings": r["size_bits_no_emb"],
            "disk_bytes": r["disk_bytes"], "x_smaller_bits": ratios[0], "x_smaller_bits_without_embeddings": ratios[1],
            "x_smaller_disk": ratios[2], "macs_non_binary": r["macs"], "bops": r["bops"], "flops": r["flops"],
            "ops": r["ops"], "latency_median_ms": r["latency_ms"], "latency_p90_ms": r["latency_p90_ms"],
            "latency_lo_ms": r["latency_lo"], "latency_hi_ms": r["latency_hi"],
            "latency_threads": r.get("latency_threads", ""), "latency_median_ms_by_threads": r.get("latency_by_threads") or {},
            "energy_j_per_sample": r["energy_j"], "energy_provenance": r["energy_provenance"],
            "mean_exit_block": r["mean_exit"], "n_blocks": r["n_blocks"],
            **{c.csv or c.name: r[c.name] for c in extra},
            **{f"front_{name}": bool(flags.at[i, name]) for name in flags.columns},
        })
    multi = (g["n_seeds"] > 1).any()
    q = quality_of(group)
    notes = [
        f"{q.name} (×100): " + ("mean ± std over seeds where seeds > 1, else " if multi else "")
        + f"the test value [{q.interval}]",
        "MACs: fp32/int8/w1a32 multiply-accumulates per sample; BOPs: 1-bit × 1-bit MACs; OPs = FLOPs + BOPs/64",
        f"Pareto front: the axes on which the model is not dominated (higher {q.name}, lower cost)"
        + ("; dominated only where another model is distinguishably better on each axis on which they differ "
           "(α = 0.05 per pair; see the Pareto figures' captions)" if cells is not None else
           "; geometric: no test of whether a dominance is distinguishable"),
    ]
    if floor.any():
        notes.append("reference floors: majority (the most frequent train label; regression: the train mean) and bow-linear "
                     "(TF-IDF of token uni+bigrams, logistic or ridge regression), fitted with scikit-learn on the same "
                     "train split, settings chosen on val, fitted once (deterministic); dashed lines and marked points on the Pareto plots, "
                     "not candidates on the Pareto fronts; each neural model below bow-linear or dominated by it is named in the warnings")
    q = quality_of(group)
    columns = [f"{q.axis} (test)" if c == SUMMARY_COLUMNS[2] else c for c in SUMMARY_COLUMNS]
    columns[-1:-1] = [c.header for c in extra]  # declared metrics' own columns, before the fronts
    names = sorted(set(reference["model"]))
    if names and names != ["fp32"]:  # the compression column names the reference the records declare
        columns[4] = columns[4].replace("fp32", " / ".join(names))
    return Table("summary", str(group["task"].iloc[0]), str(group["target_label"].iloc[0]),
                 columns, rows, pd.DataFrame(raw), notes, classes)


ABLATION_COLUMNS = ["variant", "what changes", "seeds", "accuracy % (test)", "Δ accuracy (pp)",
                    "Δ OPs %", "Δ size %", "Δ latency %", "mean exit / blocks"]


def _rel(a, b) -> float:
    return math.nan if _nan(a) or _nan(b) or b == 0 else (a / b - 1) * 100


def _first_sentence(text: str, limit: int = 90) -> str:
    s = text.split(". ")[0].strip().rstrip(".")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def ablation_table(group: pd.DataFrame) -> Table | None:
    """Each model whose role is "ablation of X" against X in the same (task, target) group."""
    roles = model_roles(group)
    variants = group[roles.map(lambda role: role.kind == "ablation").astype(bool)]
    if variants.empty:
        return None
    variants = variants.assign(_of=roles[variants.index].map(lambda role: role.of)).sort_values("label")
    task, target = str(group["task"].iloc[0]), str(group["target_label"].iloc[0])
    notes = []
    ordered = []  # (reference of this setting or None, row, reference name): each variant against its own full model
    for (of, setting), vs in variants.groupby(["_of", "setting"], sort=True):
        full = group[(group["model"] == of) & (group["setting"] == setting)]
        ref = full.iloc[0] if len(full) else None
        if ref is None:
            notes.append(f"the full model ({of}) has no result for setting '{setting}' in this group: Δ not computed")
        ordered += ([(ref, ref, of)] if ref is not None else []) + [(ref, v, of) for _, v in vs.iterrows()]
    rows, raw = [], []
    for ref, r, of in ordered:
        is_ref = ref is not None and r is ref
        d_acc = math.nan if ref is None else (r["accuracy"] - ref["accuracy"]) * 100
        d_ops = math.nan if ref is None else _rel(r["ops"], ref["ops"])
        d_size = math.nan if ref is None else _rel(r["size_bits"], ref["size_bits"])
        d_lat = math.nan if ref is None else _rel(r["latency_ms"], ref["latency_ms"])
        rows.append([
            r["label"] + (" (full model)" if is_ref else ""), "reference" if is_ref else _first_sentence(r["description"]),
            str(r["n_seeds"]), fmt_accuracy(r),
            "0 (ref.)" if is_ref else fmt(d_acc, "+.1f"), "—" if is_ref else fmt(d_ops, "+.1f"),
            "—" if is_ref else fmt(d_size, "+.1f"), "—" if is_ref else fmt(d_lat, "+.1f"),
            f"{show(r, 'mean_exit')} / {show(r, 'n_blocks')}" if not _nan(r["n_blocks"]) else "—",
        ])
        raw.append({
            "task": task, "target": target, "model": r["label"], "reference": of, "n_seeds": r["n_seeds"],
            "accuracy": r["accuracy"], "accuracy_std": r["accuracy_std"], "accuracy_lo": r["accuracy_lo"],
            "accuracy_hi": r["accuracy_hi"], "accuracy_interval": r["spread"],
            "delta_accuracy_pp": 0.0 if is_ref else d_acc, "delta_ops_pct": 0.0 if is_ref else d_ops,
            "delta_size_pct": 0.0 if is_ref else d_size, "delta_latency_pct": 0.0 if is_ref else d_lat,
            "mean_exit_block": r["mean_exit"],
        })
    multi = len(raw) and any(x["n_seeds"] > 1 for x in raw)
    q = quality_of(group)
    notes.insert(0, f"Δ = variant − full model, in {q.delta} on the test split (relative % for costs); "
                 + (f"{q.name} is mean ± std over seeds" if multi else "")
                 + (" where seeds > 1, else " if multi else "")
                 + f"each value with its own {q.interval} — a Δ inside both intervals is not a finding")
    columns = list(ABLATION_COLUMNS)
    if q.key != "accuracy":
        columns[3:5] = [f"{q.axis} (test)", f"Δ {q.axis}"]
    return Table("ablation", task, target, columns, rows, pd.DataFrame(raw), notes,
                 reference=", ".join(dict.fromkeys(of for _, _, of in ordered)))
