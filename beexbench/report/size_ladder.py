"""Where the size reduction comes from, per (task, target): a ladder of deployable artifacts, one
factor a step (issue 28).

    fp32 → fp32 with int8 token rows → 1-bit weights (packed, int8 rows) → 1-bit embeddings (A5 packed)

Each step is a ratio of sizes ("× smaller" = from / to), given twice and labelled: the *whole
artifact incl. tokenizer* (model files + the tokenizer/vocabulary files on disk,
``deployable_bytes``) and the *encoder only* (declared bits without any embedding table and
without the tokenizer, ``size_bits_no_emb``), with each side's test accuracy beside it and the
factor that differs named. A rung the run did not measure is skipped; the step across it then
names every factor it spans. Cumulative rows from fp32 are compared with the paper's ~18–21x,
which is an encoder figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .frame import num as _num, quality_of
from .tables import Table, fmt, fmt_accuracy

# (model, the factor that differs from the rung below it)
LADDER: tuple[tuple[str, str], ...] = (
    ("fp32", ""),
    ("fp32-int8-rows", "token embedding rows fp32 → int8 (fp16 scale per row); the same trained fp32 network"),
    ("beexformer-packed", "encoder weights and activations fp32 → 1 bit (BEExformer, trained binarized, run by the "
                          "packed engine); token rows int8 on both sides"),
    ("beexformer-a5-packed", "token embedding rows int8 → 1 bit (A5: a network trained with a binary token embedding)"),
)
PAPER_X = (18.0, 21.0)  # the paper's reported size reduction (encoder)
WHOLE = "whole artifact incl. tokenizer"
ENCODER = "encoder only"
COLUMNS = ["step (from → to)", "what differs", f"{WHOLE}: KiB on disk", f"× smaller, {WHOLE}",
           f"{ENCODER}: KiB (declared bits)", f"× smaller, {ENCODER}", "accuracy (test) from → to"]


@dataclass
class LadderTable(Table):
    """The size ladder of one (task, target) section (kind ``size_ladder``)."""

    @property
    def title(self) -> str:
        return f"Size ladder (where the size reduction comes from) — {self.task} on {self.target}"


def ratio(a, b) -> float:
    """``a / b`` ("× smaller" when a is the larger side); NaN when either is missing or b is 0."""
    a, b = _num(a), _num(b)
    return a / b if not (math.isnan(a) or math.isnan(b) or b == 0) else math.nan


def _rungs(g: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """The ladder's models present in ``g`` (one setting's rows), in ladder order; of several rows
    of one model (distilled, a fallback run) the plain one: the shortest label."""
    out = []
    for model, factor in LADDER:
        rows = g[g["model"] == model]
        if not rows.empty:
            out.append((model, factor, rows.loc[rows["label"].str.len().idxmin()]))
    return out


def _kib_bytes(v) -> str:
    return fmt(_num(v), ",.1f", 1 / 1024)


def _kib_bits(v) -> str:
    return fmt(_num(v), ",.1f", 1 / 8 / 1024)


def _row(a: tuple, b: tuple, differs: str, kind: str) -> tuple[list[str], dict]:
    (na, _, ra), (nb, _, rb) = a, b
    whole, enc = ratio(ra["deployable_bytes"], rb["deployable_bytes"]), ratio(ra["size_bits_no_emb"], rb["size_bits_no_emb"])
    step = f"{ra['label']} → {rb['label']}" + (" (all steps)" if kind == "cumulative" else "")
    cells = [step, differs, f"{_kib_bytes(ra['deployable_bytes'])} → {_kib_bytes(rb['deployable_bytes'])}",
             fmt(whole, ".2f"), f"{_kib_bits(ra['size_bits_no_emb'])} → {_kib_bits(rb['size_bits_no_emb'])}",
             fmt(enc, ".2f"), f"{fmt_accuracy(ra)} → {fmt_accuracy(rb)}"]
    raw = {"kind": kind, "from": na, "to": nb, "from_label": ra["label"], "to_label": rb["label"], "what_differs": differs,
           "deployable_bytes_from": _num(ra["deployable_bytes"]), "deployable_bytes_to": _num(rb["deployable_bytes"]),
           "x_smaller_whole_artifact_incl_tokenizer": whole,
           "encoder_only_bits_from": _num(ra["size_bits_no_emb"]), "encoder_only_bits_to": _num(rb["size_bits_no_emb"]),
           "x_smaller_encoder_only": enc, "accuracy_from": _num(ra["accuracy"]), "accuracy_to": _num(rb["accuracy"])}
    return cells, raw


def size_ladder(g: pd.DataFrame) -> LadderTable | None:
    """The ladder of an aggregated (task, target) group, for each setting with at least two rungs
    (steps never cross settings); None when no setting has two."""
    settings = g["setting"].fillna("default") if "setting" in g else pd.Series("default", index=g.index)
    rows, raws, notes = [], [], []
    for setting in sorted(set(settings), key=lambda s: (s != "default", s)):
        _ladder(_rungs(g[settings == setting]), setting, rows, raws, notes)
    if not rows:
        return None
    q = quality_of(g)
    notes += [
        f"{WHOLE}: the model's deployable files plus the tokenizer/vocabulary files its task's tokenizer is loaded "
        f"from, bytes on disk; {ENCODER}: declared bits of the network without its embedding tables, no tokenizer",
        "× smaller = from / to; each step changes the one factor named (a rung not run makes a step span several)",
        f"{q.name} ×100 as in the summary table; a missing size (—) is a record written before the tokenizer was counted",
    ]
    columns = [c.replace("accuracy", q.name) for c in COLUMNS]
    task, target = g["task"].iloc[0], g["target_label"].iloc[0]
    return LadderTable("size_ladder", str(task), str(target), columns, rows,
                       pd.DataFrame([{"task": task, "target": target, **r} for r in raws]), notes)


def _ladder(rungs: list, setting: str, rows: list, raws: list, notes: list) -> None:
    """Append one setting's steps (and cumulative rows from fp32, with the paper comparison)."""
    if len(rungs) < 2:
        return
    mine = []
    for i in range(1, len(rungs)):
        spanned = [f for m, f in LADDER if m in _between(rungs[i - 1][0], rungs[i][0])]
        differs = spanned[0] if len(spanned) == 1 else f"{len(spanned)} factors (a rung was not run): " + "; ".join(spanned)
        mine.append(_row(rungs[i - 1], rungs[i], differs, "step"))
    if rungs[0][0] == "fp32":
        mine += [_row(rungs[0], later, "every step above together", "cumulative") for later in rungs[2:]]
    for cells, raw in mine:
        rows.append(cells)
        raws.append({**raw, "setting": setting})
    for r in raws[len(raws) - len(mine):]:
        if r["from"] == "fp32" and r["to"] in ("beexformer-packed", "beexformer-a5-packed"):
            notes.append(f"paper ~{PAPER_X[0]:g}–{PAPER_X[1]:g}x (encoder) vs {r['from_label']} → {r['to_label']}: "
                         f"{fmt(r['x_smaller_encoder_only'], '.1f')}x {ENCODER}, "
                         f"{fmt(r['x_smaller_whole_artifact_incl_tokenizer'], '.1f')}x {WHOLE}")
    tok = [(r["label"], _num(r.get("tokenizer_bytes")), _num(r["deployable_bytes"])) for _, _, r in rungs]
    tok = [f"{lab} {t / 1024:,.1f} KiB ({100 * t / d:.0f}% of its whole artifact)" for lab, t, d in tok
           if not math.isnan(t) and not math.isnan(d) and d > 0]
    if tok:
        notes.append("tokenizer: " + ", ".join(tok))


def _between(lo: str, hi: str) -> list[str]:
    """The ladder's models after ``lo`` up to ``hi`` (the factors a step from lo to hi spans)."""
    names = [m for m, _ in LADDER]
    return names[names.index(lo) + 1: names.index(hi) + 1]
