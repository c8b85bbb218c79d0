"""The MLflow side of ``beexbench results export --to mlflow``: the optional import (a one-line
error naming the extra when it is missing), the tracking URI checked before anything is written,
MLflow's limits, and the experiment a cell's run goes into."""
from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from ..errors import BeexError

EXTRA = "pip install 'beexbench[mlflow]'"
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc") + _DB_SCHEMES


def import_mlflow(uri: str | None):
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise BeexError(f"exporting to MLflow needs the mlflow extra: {EXTRA}") from None
    if uri is not None and urlparse(uri).scheme.split("+")[0] in _DB_SCHEMES:
        try:
            for name in ("sqlalchemy", "alembic"):  # MLflow's database stores need both
                importlib.import_module(name)
        except ImportError:
            raise BeexError(f"an MLflow database store ({uri}) needs SQLAlchemy and alembic: {EXTRA}") from None
    return mlflow, MlflowClient


def check_uri(uri: str) -> str:
    """The tracking URI as MLflow takes it, or a one-line error; nothing is written."""
    text = str(uri).strip()
    parsed = urlparse(text)
    scheme = parsed.scheme.split("+")[0].lower()
    if not text:
        raise BeexError("--mlflow-uri is empty: give sqlite:///PATH.db, file:PATH or http(s)://HOST[:PORT]")
    if scheme == "":  # a plain path: MLflow's file store
        return check_uri("file:" + str(Path(text).resolve()))
    if scheme not in _SCHEMES:
        raise BeexError(f"--mlflow-uri {text}: unknown scheme '{parsed.scheme}' (use sqlite:///PATH.db, file:PATH, "
                        "http(s)://HOST[:PORT] or a database URI MLflow supports)")
    if scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path:
            raise BeexError(f"--mlflow-uri {text}: a file store is file:/ABSOLUTE/PATH or file:RELATIVE/PATH")
        path = Path(parsed.path)
        if path.exists() and not path.is_dir():
            raise BeexError(f"--mlflow-uri {text}: {path} is a file; a file store is a folder")
        return "file:" + str(path.resolve())
    if scheme == "sqlite":
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise BeexError(f"--mlflow-uri {text}: a SQLite store is sqlite:///PATH.db (an in-memory one would be lost)")
        path = Path(text[len("sqlite:///"):])
        if path.is_dir():
            raise BeexError(f"--mlflow-uri {text}: {path} is a folder; name the database file")
        if path.exists():
            with open(path, "rb") as fh:
                head = fh.read(16)
            if head and head != b"SQLite format 3\x00":
                raise BeexError(f"--mlflow-uri {text}: {path} is not an SQLite database")
        return "sqlite:///" + str(path.resolve())
    if scheme in ("http", "https") and not parsed.netloc:
        raise BeexError(f"--mlflow-uri {text}: a tracking server is http(s)://HOST[:PORT]")
    return text


@contextmanager
def quiet():
    """MLflow's and alembic's INFO lines (database set-up) stay out of the export's output."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def limits() -> tuple[int, int, int]:
    """(name length, param value length, tag value length) of the installed MLflow."""
    from mlflow.utils import validation as v

    return (getattr(v, "MAX_ENTITY_KEY_LENGTH", 250), getattr(v, "MAX_PARAM_VAL_LENGTH", 6000),
            getattr(v, "MAX_TAG_VAL_LENGTH", 5000))


def experiment_id(client, name: str, uri: str, create: bool) -> str | None:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage != "active":
            raise BeexError(f"MLflow experiment '{name}' is deleted in {uri}: restore it or pass --experiment NAME")
        return exp.experiment_id
    if not create:
        return None
    location = None
    if uri.startswith("sqlite:///"):  # MLflow's default would be ./mlruns under the current folder
        from mlflow.utils.file_utils import path_to_local_file_uri

        location = path_to_local_file_uri(str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / name))
    return client.create_experiment(name, artifact_location=location)
