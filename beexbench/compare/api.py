"""``beexbench.compare(base, new)``: two run folders (or merged result sets) cell by cell.

Cells are matched by key (model, task, target, seed, setting); cells only one side has are listed,
failed cells are listed. Latency is compared only between records measured on the same machine
(CPU model, GPU names) with the same thread setting and batch size, unless ``cross_host=True``
(then each such delta says which differs). The p-values of every comparison made are corrected
together (Holm by default), so that a gate over many cells does not fail by chance.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BeexError
from ..results.context import EnvironmentInfo
from ..results.export import unique_cells
from ..results.schema import CellKey, CellRecord
from ..results.store import load_records
from ..stats import ALPHA, adjust
from .deltas import Delta, batch1_pair, deltas
from .thresholds import Threshold, parse_fail_on


@dataclass(frozen=True)
class CellComparison:
    key: CellKey
    deltas: tuple[Delta, ...]
    notes: tuple[str, ...] = ()  # e.g. why latency was not compared


@dataclass(frozen=True)
class Comparison:
    cells: tuple[CellComparison, ...]
    only_base: tuple[CellKey, ...]
    only_new: tuple[CellKey, ...]
    failed: tuple[str, ...]  # "<slug>: failed in base|new"
    alpha: float
    correction: str
    thresholds: tuple[Threshold, ...] = ()
    regressions: tuple[str, ...] = field(default=())  # one line each: cell, metric, change, threshold

    @property
    def ok(self) -> bool:
        return not self.regressions


def _machine(rec: CellRecord, lat) -> tuple:
    env = EnvironmentInfo.of(rec.environment)
    return (env.cpu_model, env.gpu_names), (lat.threads, lat.batch_size, lat.target)


def _latency_note(a: CellRecord, b: CellRecord) -> str | None:
    """Why the two cells' latencies are not like with like (machines, or no thread setting in common)."""
    la, lb = batch1_pair(a, b)
    (ma, sa), (mb, sb) = _machine(a, la), _machine(b, lb)
    why = []
    if ma != mb:
        why.append(f"machines differ ({ma[0] or '?'} vs {mb[0] or '?'})")
    if sa != sb:
        why.append(f"thread/batch settings differ ({sa[0]} vs {sb[0]} threads, batch {sa[1]} vs {sb[1]})")
    return "; ".join(why) or None


def _load(roots: list[Path], side: str) -> dict[CellKey, CellRecord]:
    recs, _ = unique_cells(load_records(roots))
    if not recs:
        raise BeexError(f"{side}: no cell records under {', '.join(map(str, roots))}")
    return {r.key: r for r in recs}


def compare(base: Path | list[Path], new: Path | list[Path], *, fail_on: str | tuple[Threshold, ...] | None = None,
            alpha: float = ALPHA, correction: str = "holm", cross_host: bool = False) -> Comparison:
    """Compare every cell of ``new`` with the same cell of ``base``."""
    thresholds = parse_fail_on(fail_on) if isinstance(fail_on, (str, type(None))) else tuple(fail_on)
    if not 0 < alpha < 1:
        raise BeexError(f"alpha must be in (0, 1), not {alpha}")
    a = _load([base] if isinstance(base, Path) else list(base), "base")
    b = _load([new] if isinstance(new, Path) else list(new), "new")
    cells, failed = [], []
    for key in sorted(a.keys() & b.keys(), key=lambda k: k.slug):
        ra, rb = a[key], b[key]
        bad = [side for side, r in (("base", ra), ("new", rb)) if r.status != "ok"]
        if bad:
            failed.append(f"{key.slug}: failed in {' and '.join(bad)}")
            continue
        ds, notes = deltas(ra, rb), []
        why = _latency_note(ra, rb)
        if why and not cross_host:
            ds = [d for d in ds if d.metric != "latency"]
            notes.append(f"latency not compared: {why} (pass --cross-host to compare anyway)")
        elif why:
            notes.append(f"latency compared across settings: {why}")
        cells.append((key, ds, notes))
    tested = [(i, j) for i, (_, ds, _) in enumerate(cells) for j, d in enumerate(ds) if not d.exact]
    adjusted = adjust([cells[i][1][j].p_value for i, j in tested], correction)
    for (i, j), p in zip(tested, adjusted):
        cells[i][1][j] = dataclasses.replace(cells[i][1][j], p_adjusted=p)
    out = tuple(CellComparison(k, tuple(ds), tuple(n)) for k, ds, n in cells)
    regressions = tuple(f"{c.key.slug}: {d.metric} {d.shown()} beyond {t.shown()} (p={_p(d)}, {d.method})"
                        for c in out for d in c.deltas for t in thresholds if t.breached(d, alpha))
    return Comparison(cells=out, only_base=tuple(sorted(a.keys() - b.keys(), key=lambda k: k.slug)),
                      only_new=tuple(sorted(b.keys() - a.keys(), key=lambda k: k.slug)), failed=tuple(failed),
                      alpha=alpha, correction=correction, thresholds=thresholds, regressions=regressions)


def _p(d: Delta) -> str:
    return "exact" if d.exact else f"{d.p_adjusted:.3g}"
