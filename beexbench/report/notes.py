"""Method, convention, environment and warning sections, read from the records themselves."""
from __future__ import annotations

from collections import defaultdict

from ..results.schema import CellRecord
from ._html import esc
from .frame import _get, target_label

PROVENANCE_TEXT = {
    "measured:rapl": "measured with the CPU's RAPL energy counters (idle power subtracted, counter wrap handled)",
    "measured:nvml": "measured with the NVIDIA NVML total-energy counter (whole board, idle power subtracted)",
    "estimated:tdp-share": "ESTIMATED, not measured: TDP × the process's share of CPU time (inputs kept in the results)",
    "unavailable": "no energy counter and no estimate possible: shown as unavailable, never as zero",
}

NOISY = ("noisy", "wide CI", "loaded", "rough", "frequency", "other processes")


def _cell(r: CellRecord) -> str:
    seed = f" seed {r.key.seed}" if r.key.seed is not None else ""
    setting = "" if r.key.setting in ("", "default") else f" ({r.key.setting})"
    return f"{r.key.model}{setting} / {r.key.task} / {target_label(r)}{seed}"


def _energy_provenance(r: CellRecord) -> str:
    """Where the cell's energy figure comes from, or "not measured" (no energy section)."""
    energy = r.metrics.energy if r.metrics is not None else None
    return energy.provenance if energy is not None else "not measured"


def _ul(items) -> str:
    return '<ul class="tight">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def method_notes(records: list[CellRecord]) -> str:
    measured = [(r, r.metrics) for r in records if r.metrics is not None]
    conventions = sorted({m.ops.convention for _, m in measured} - {""})
    size_notes = sorted({str(n) for _, m in measured for n in m.size.notes})
    by_note = defaultdict(set)  # how each model was trained, as its records state it
    for r in records:
        note = str(_get(r.model, "training_note", default=""))
        if note:
            by_note[note].add(r.key.model)
    training = [f"{note} ({', '.join(sorted(models))})" for note, models in sorted(by_note.items())]
    provenances = defaultdict(set)
    for r in records:
        provenances[_energy_provenance(r)].add(r.key.model)
    uncounted = sorted({f"{r.key.model}: {k}" for r, m in measured for k in m.ops.uncounted})
    parts = [
        "<h3>Training</h3>",
        _ul([esc("Each model is trained on each task's train split as stated below (from scratch or from a "
                 "pretrained backbone; with or without knowledge distillation, KD, from a teacher model - rows "
                 "trained with KD are labelled so); the exit rule is calibrated on the validation split, and "
                 "accuracy is measured once on the test split.")] + [esc(t) for t in training]),
        "<h3>Operations</h3>",
        _ul([esc("MACs count multiply-accumulates of fp32, int8 and 1-bit-weight (w1a32) products; FLOPs = 2 × MACs. "
                 "BOPs are multiply-accumulates whose two operands are both 1-bit (XNOR-popcount), counted apart and "
                 "not in FLOPs. OPs = FLOPs + BOPs/64 is a literature convention (Bi-Real Net, BiBERT), not a measurement."),
             esc("Early-exit models: the cost of a sample is the cost of the blocks and exit heads it actually ran; "
                 "tables show the mean over the test split.")]
            + [f"<details><summary>Counting convention recorded in the results</summary><p class=\"note\">{esc(c)}</p></details>"
               for c in conventions]
            + ([f'<span class="warn">{esc("Operations the counter could not see: " + ", ".join(uncounted))}</span>'] if uncounted else [])),
        "<h3>Size</h3>",
        _ul([esc("Size = bits per component (1-bit weights, their 32-bit scales, int8 weights with scales, fp32 remainder); "
                 "shown with and without the embedding table. The size on disk of the deployable artifact is in the CSV.")]
            + [esc(n) for n in size_notes]),
        "<h3>Latency and energy</h3>",
        _ul([esc("Latency: warm-up, then at least N iterations and at least T seconds; median and p90 at batch size 1, "
                 "per sample on real test inputs (so the exit depth varies as in deployment); error bars are the "
                 "bootstrap 95% interval of the median (one seed) or ± std over seeds.")]
            + [f"<b>{esc(p)}</b> ({esc(', '.join(sorted(ms)))}): {esc(PROVENANCE_TEXT.get(p, 'see the results file'))}"
               for p, ms in sorted(provenances.items())]),
    ]
    return "".join(parts)


def dataset_notes(records: list[CellRecord]) -> str:
    cards = {}
    for r in records:
        cards.setdefault(r.key.task, r.task or {})
    items = []
    for name, card in sorted(cards.items()):
        splits = card.get("split_sizes") or {}
        split_txt = ", ".join(f"{k} {v}" for k, v in splits.items())
        limit = f"; limited to {card['limit']} examples per split" if card.get("limit") else ""
        items.append(f"<b>{esc(name)}</b>: {esc(card.get('description', ''))} "
                     f"<span class=\"note\">(source {esc(card.get('source', '?'))}; {esc(split_txt)}{esc(limit)})</span>")
    items.append(esc("Scores are on these datasets as built by beexbench. They are not SST-2, GLUE or any leaderboard's "
                     "scores and must not be compared with or reported as such."))
    return _ul(items)


def target_notes(records: list[CellRecord]) -> str:
    seen = {}
    for r in records:
        seen.setdefault(target_label(r), r.target or {})
    items = []
    for label, t in sorted(seen.items()):
        extra = "; ".join(str(n) for n in t.get("notes") or [])
        kind = ("EMULATED: runs on the host with the target's thread count; its latency and energy are the host's, "
                "not the real device's. " if t.get("emulated") else "")
        items.append(f"<b>{esc(label)}</b>: {esc(kind + str(t.get('description', '')))}"
                     f" ({esc(t.get('threads', '?'))} threads){esc('; ' + extra if extra else '')}")
    return _ul(items)


def environment_table(records: list[CellRecord]) -> str:
    runs = {}
    for r in records:
        runs.setdefault(r.run_id, r)
    head = ["run", "git commit", "beexbench", "torch", "python", "CPU", "cores (usable)", "threads", "GPU", "OS", "started"]
    rows = []
    for run_id, r in sorted(runs.items()):
        e = r.environment or {}
        git = e.get("git") or {}
        commit = str(git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
        pk = e.get("packages") or {}
        gpus = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in e.get("gpus") or []) or "none"
        cpu = e.get("cpu") or {}
        osd = e.get("os") or {}
        cells = [run_id, commit, pk.get("beexbench", "?"), pk.get("torch", "?"), e.get("python", "?"), cpu.get("model", "?"),
                 f"{cpu.get('logical_cores', '?')} ({cpu.get('usable_cores', '?')})", e.get("threads_used", "?"), gpus,
                 f"{osd.get('system', '')} {osd.get('release', '')}", e.get("timestamp_utc", r.started_at)]
        rows.append("<tr>" + "".join(f'<td class="l">{esc(c)}</td>' for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f'<th class="l">{esc(h)}</th>' for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def warnings_section(records: list[CellRecord], duplicates: int, floors: list[str] | tuple = (), *,
                     other_config: int = 0) -> str:
    by_text = defaultdict(list)
    for r in records:
        for w in r.warnings or []:
            by_text[str(w)].append(_cell(r))
    noisy = sum(len(c) for w, c in by_text.items() if any(k in w for k in NOISY))
    estimated = sorted({_cell(r) for r in records if _energy_provenance(r).startswith("estimated")})
    lead = [f'<p class="warn" data-floor-warning>{esc(w)}</p>' for w in floors]
    if noisy:
        lead.append(f'<p class="warn">{esc(f"{noisy} warning(s) say the machine was noisy or a timing is rough: read those latencies as indicative.")}</p>')
    if estimated:
        lead.append(f'<p class="warn">{esc("Energy is estimated, not measured, for: " + "; ".join(estimated))}</p>')
    if duplicates:
        lead.append(f'<p class="note">{esc(f"{duplicates} record(s) repeated a (model, task, target, seed) cell of another run; the most recent one is shown.")}</p>')
    if other_config:
        lead.append(f'<p class="warn" data-other-config>{esc(f"{other_config} record(s) were left out: their model was built or trained with another configuration than its most recent record (runs that share a suite name but not its settings). Report one run with --results RUN_FOLDER to see them.")}</p>')
    if not by_text:
        return "".join(lead) + '<p class="note">No warnings were recorded.</p>'
    items = []
    for w, cells in sorted(by_text.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        items.append(f"<li>{esc(w)} <details><summary class=\"note\">{len(cells)} cell(s)</summary>"
                     f"<p class=\"note\">{esc('; '.join(sorted(set(cells))))}</p></details></li>")
    return "".join(lead) + f'<ul class="tight warn">{"".join(items)}</ul>'


def failed_section(records: list[CellRecord]) -> str:
    failed = [r for r in records if r.status != "ok"]
    if not failed:
        return ""
    return "<h2>Failed cells</h2>" + _ul([f'<span class="warn">{esc(_cell(r))}: {esc(r.error)}</span>' for r in failed])
