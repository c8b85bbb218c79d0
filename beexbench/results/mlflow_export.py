"""``beexbench results export --to mlflow``: every cell as one MLflow run, where teams already keep
their results (a local MLflow store, ``sqlite:///PATH.db`` or ``file:PATH``, or a tracking server).

One MLflow run per cell (:func:`export_mlflow`): the cell's key and its full model config are
parameters (flattened, ``config.encoder.d_model``); every numeric column declared in
:mod:`beexbench.results.columns` is a metric under its column name (a metric declared later is
exported with no change here; a value that was not measured is left out, never logged as 0); the
cell JSON (and ``--report``) are artifacts under ``beexbench/``; tags say the run id, git commit, CPU,
beexbench version and status. A failed cell is a FAILED run with its error.

Re-exporting updates: the MLflow run of a cell is found by its tag ``beexbench.cell =
<run id>/<cell slug>``; changed metrics are logged at the next step (so they are the run's latest
values), tags and artifacts are rewritten, and a cell whose JSON and report are unchanged is not
touched. MLflow parameters cannot change: a parameter that differs is a one-line error naming the
cell (every cell is checked before anything is written) unless ``replace``, which deletes that
MLflow run and creates it again. A parameter MLflow cannot hold (a value over its length limit, a
name it refuses) goes whole into the artifact ``beexbench/params_overflow.json``, never truncated.

MLflow 3 refuses its file store (``file:``) unless ``MLFLOW_ALLOW_FILE_STORE`` is set; naming a
``file:`` URI is that choice, so the export sets it (unless already set) for this process and says so.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import posixpath
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._io import dumps_strict
from ..errors import BeexError
from ._mlflow import check_uri, experiment_id, import_mlflow, limits, quiet
from .columns import columns
from .export import unique_cells
from .schema import CellRecord
from .store import unique_runs

CELL_TAG = "beexbench.cell"
STEP_TAG = "beexbench.export_step"
SHA_TAG = "beexbench.export_sha256"
ARTIFACT_DIR = "beexbench"
# MLflow runs written at once to a tracking server (network round trips overlap); a local store takes one at a
# time (its writes are serialised by the database or bound by Python: more threads measured no faster)
SERVER_WRITERS = 4
_NAME = re.compile(r"[\w.\- /]+")  # what MLflow accepts as a param/metric name on every OS
_SAFE_ID = re.compile(r"[\w.:\-]+")


@dataclass
class MlflowExport:
    """What one export did: MLflow runs created, updated, left as they were, deleted and recreated."""

    uri: str
    experiments: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    replaced: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return self.created + self.updated + self.unchanged + self.replaced


@dataclass
class _Cell:
    record: CellRecord
    experiment: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    overflow: dict[str, Any]
    sha: str
    existing: Any = None  # the MLflow Run found by its tag, or None


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _name_ok(name: str, limit: int) -> bool:
    return (len(name) <= limit and _NAME.fullmatch(name) is not None and not name.startswith("/")
            and posixpath.normpath(name) == name)


def _ms(iso: str) -> int | None:
    try:
        return int(_dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else None
    except ValueError:
        return None


def _cell(rec: CellRecord, experiment: str, report_sha: str) -> _Cell:
    key_len, val_len, tag_len = limits()
    flat: dict[str, Any] = {f"cell.{k}": v for k, v in rec.key.to_dict().items()}
    _flat("config", rec.model.get("config") or {}, flat)
    params, overflow = {}, {"params": {}, "metrics": {}}
    for name, value in flat.items():
        text = _text(value)
        if _name_ok(name, key_len) and len(text) <= val_len:
            params[name] = text
        else:
            overflow["params"][name] = value
    metrics = {}
    for col in columns():
        value = col.value(rec.metrics) if col.numeric else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if _name_ok(col.name, key_len):
                metrics[col.name] = float(value)
            else:
                overflow["metrics"][col.name] = value
    env = rec.environment
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    tags = {CELL_TAG: f"{rec.run_id}/{rec.key.slug}", "beexbench.run_id": rec.run_id, "beexbench.status": rec.status,
            "beexbench.git_commit": str(git.get("commit") or "unknown"), "beexbench.git_dirty": _text(git.get("dirty")),
            "beexbench.cpu": str(cpu.get("model") or "unknown"),
            "beexbench.version": str(packages.get("beexbench") or "unknown")}
    if git.get("commit"):
        tags["mlflow.source.git.commit"] = str(git["commit"])
    if rec.error:
        tags["beexbench.error"] = (rec.error if len(rec.error) <= tag_len else
                                   f"({len(rec.error)} characters: the error is in {ARTIFACT_DIR}/cell.json)")
    tags = {k: v if len(v) <= tag_len else f"({len(v)} characters: see {ARTIFACT_DIR}/cell.json)" for k, v in tags.items()}
    body = dumps_strict(rec.to_dict(), sort_keys=True, default=str)
    sha = hashlib.sha256((body + report_sha).encode()).hexdigest()
    return _Cell(rec, experiment, params, metrics, tags, overflow, sha)


def _load(roots: list[Path], experiment: str | None) -> tuple[list[tuple[CellRecord, str]], list[str]]:
    """(record, experiment name) of every cell (one per key, as the CSV export), and notes."""
    suite_of: dict[int, str] = {}
    records: list[CellRecord] = []
    for run in unique_runs(roots):
        doc = run.read_run() if (run.path / "run.json").is_file() else {}
        suite = doc.get("suite") if isinstance(doc.get("suite"), str) and doc.get("suite") else "beexbench"
        for rec in run.cells():
            suite_of[id(rec)] = suite
            records.append(rec)
    kept, notes = unique_cells(records)
    return [(rec, experiment or suite_of[id(rec)]) for rec in kept], notes


def _existing(client, exp_id: str, run_ids: set[str], notes: list[str]) -> dict[str, Any]:
    """``beexbench.cell`` tag -> the active MLflow run holding it, in one experiment."""
    found: dict[str, list] = {}
    filters = [f"tags.`beexbench.run_id` = '{r}'" for r in sorted(run_ids)] if all(
        _SAFE_ID.fullmatch(r) for r in run_ids) else [""]
    for filt in filters:
        token = None
        while True:
            page = client.search_runs([exp_id], filter_string=filt, max_results=1000, page_token=token)
            for run in page:
                tag = run.data.tags.get(CELL_TAG)
                if tag is not None:
                    found.setdefault(tag, []).append(run)
            token = page.token
            if not token:
                break
    out = {}
    for tag, runs in found.items():
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        if len(runs) > 1:
            notes.append(f"{len(runs)} MLflow runs hold {CELL_TAG}={tag}; updated the first created ({runs[0].info.run_id})")
        out[tag] = runs[0]
    return out


def _conflict(cell: _Cell) -> str | None:
    old = cell.existing.data.params
    for name in sorted(set(old) | set(cell.params)):
        if name in old and old[name] != cell.params.get(name):
            now = cell.params.get(name, "(no such parameter now)")
            return (f"cell {cell.tags[CELL_TAG]}: MLflow run {cell.existing.info.run_id} has parameter {name}={old[name]!r}, "
                    f"the record says {now!r}; MLflow parameters cannot change: re-export with --replace to delete "
                    "and recreate that MLflow run")
    return None


def _batches(client, run_id: str, metrics: list, params: list, tags: list) -> None:
    """log_batch within MLflow's limits: 1000 entities a call, of them at most 100 params and 100 tags."""
    while metrics or params or tags:
        p, t = params[:100], tags[:100]
        m = metrics[:1000 - len(p) - len(t)]
        client.log_batch(run_id, metrics=m, params=p, tags=t)
        metrics, params, tags = metrics[len(m):], params[len(p):], tags[len(t):]


def _write(client, cell: _Cell, exp_id: str, report: Path | None, uri: str) -> str:
    """Create or update the cell's MLflow run (the fewest calls: tags given at creation, one
    log_batch, the artifacts written through the run's artifact repository); return what was done."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    old = cell.existing
    if old is not None and old.data.tags.get(SHA_TAG) == cell.sha:
        return "unchanged"
    rec = cell.record
    now = int(_dt.datetime.now(_dt.timezone.utc).timestamp() * 1000)
    step = 0 if old is None else int(old.data.tags.get(STEP_TAG, "0")) + 1
    tags = {**cell.tags, STEP_TAG: str(step), SHA_TAG: cell.sha}
    if old is None:
        run = client.create_run(exp_id, start_time=_ms(rec.started_at), tags=tags, run_name=rec.key.slug)
        params, metrics, tags = cell.params, cell.metrics, {}
    else:
        run = old
        params = {k: v for k, v in cell.params.items() if k not in old.data.params}
        metrics = {k: v for k, v in cell.metrics.items() if old.data.metrics.get(k) != v}
    run_id = run.info.run_id
    _batches(client, run_id, [Metric(k, v, now, step) for k, v in metrics.items()],
             [Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in tags.items()])
    with tempfile.TemporaryDirectory(prefix="beexbench-mlflow-") as tmp:
        (Path(tmp) / "cell.json").write_text(dumps_strict(rec.to_dict(), default=str), encoding="utf-8")
        if cell.overflow["params"] or cell.overflow["metrics"]:
            (Path(tmp) / "params_overflow.json").write_text(json.dumps(cell.overflow, indent=2, default=str), encoding="utf-8")
        if uri.startswith("databricks"):
            repo = client._tracking_client._get_artifact_repo(run_id)  # with the workspace's profile
        else:
            repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=uri)
        repo.log_artifacts(tmp, ARTIFACT_DIR)
        if report is not None:
            repo.log_artifact(str(report), ARTIFACT_DIR)
    client.set_terminated(run_id, "FINISHED" if rec.status == "ok" else "FAILED", end_time=_ms(rec.finished_at) or now)
    return "created" if old is None else "updated"


def export_mlflow(roots: list[Path], *, uri: str | None = None, experiment: str | None = None, report: Path | None = None,
                  replace: bool = False, on_note: Callable[[str], None] | None = None) -> MlflowExport:
    """Export every cell of ``roots`` to the MLflow store at ``uri`` (default: MLflow's own default,
    ``MLFLOW_TRACKING_URI`` or its local store); one MLflow run per cell. Every problem the user can
    fix (extra missing, URI, report path, a changed parameter) is a :class:`BeexError` before any write."""
    checked = check_uri(uri) if uri is not None else None
    mlflow, MlflowClient = import_mlflow(checked)
    checked = checked or check_uri(mlflow.get_tracking_uri())
    import_mlflow(checked)
    if experiment is not None and not 0 < len(experiment) <= 500:
        raise BeexError("--experiment is 1 to 500 characters")
    if report is not None and not Path(report).is_file():
        raise BeexError(f"--report {report} is not a file: give the report's HTML (or Markdown) file")
    report_sha = hashlib.sha256(Path(report).read_bytes()).hexdigest() if report is not None else ""
    loaded, notes = _load(roots, experiment)
    result = MlflowExport(checked, sorted({e for _, e in loaded}), notes=notes)
    if checked.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it only behind this switch
        result.notes.append("MLflow's file store is in maintenance mode; MLflow's default local store is sqlite:///PATH.db")
    cells = [_cell(rec, exp, report_sha) for rec, exp in loaded]
    if checked.startswith("sqlite:///"):  # every check above passed: the database's folder may be made
        Path(checked[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        try:
            client = MlflowClient(tracking_uri=checked)
            ids = {name: experiment_id(client, name, checked, create=False) for name in result.experiments}
            for name, exp_id in ids.items():
                if exp_id is None:
                    continue
                mine = [c for c in cells if c.experiment == name]
                found = _existing(client, exp_id, {c.record.run_id for c in mine}, result.notes)
                for c in mine:
                    c.existing = found.get(c.tags[CELL_TAG])
        except BeexError:
            raise
        except Exception as exc:  # MLflow's own errors (server unreachable, store unreadable): one line
            raise BeexError(f"cannot read the MLflow store {checked}: {' '.join(str(exc).split())[:300]}") from None
        problems = [p for c in cells if c.existing is not None for p in [_conflict(c)] if p]
        if problems and not replace:
            more = f" (and {len(problems) - 1} more cell(s))" if len(problems) > 1 else ""
            raise BeexError(problems[0] + more)
        conflicted = {c.tags[CELL_TAG] for c in cells if c.existing is not None and _conflict(c)}
        for name in result.experiments:
            ids[name] = ids[name] or experiment_id(client, name, checked, create=True)

        def one(c: _Cell) -> str:
            try:
                if c.tags[CELL_TAG] in conflicted:
                    client.delete_run(c.existing.info.run_id)
                    c.existing = None
                    _write(client, c, ids[c.experiment], report, checked)
                    return "replaced"
                return _write(client, c, ids[c.experiment], report, checked)
            except OSError:
                raise
            except Exception as exc:  # MLflow's own errors: one line naming the cell; re-export resumes
                raise BeexError(f"MLflow export stopped at cell {c.tags[CELL_TAG]} (re-exporting updates what was "
                                f"written): {' '.join(str(exc).split())[:300]}") from None

        local = checked.startswith(("sqlite:", "file:"))
        with ThreadPoolExecutor(max_workers=1 if local else SERVER_WRITERS) as pool:
            for done in pool.map(one, cells):
                setattr(result, done, getattr(result, done) + 1)
    for note in result.notes:
        if on_note is not None:
            on_note(note)
    return result
