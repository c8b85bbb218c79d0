"""The files of an ONNX Runtime deployment's checkpoint (:mod:`baselines.ort`): one ONNX graph
per block (``block<i>.onnx``) and a JSON header (``ort.json``: graphs, their inputs and outputs,
the exit rule), each written atomically and listed with its sha256 in the checkpoint's metadata;
read back only when every listed file has that checksum and every graph parses as ONNX."""
from __future__ import annotations

import hashlib
from pathlib import Path

import json
from typing import Any

from beexbench._io import atomic_write_bytes, atomic_write_text, dumps_strict
from beexbench.adapters.base import FitReport, TaskSpec
from beexbench.adapters.checkpoint import read_checkpoint, write_checkpoint
from beexbench.adapters.spec import ModelSpec
from beexbench.errors import BeexError

HEADER = "ort.json"  # the deployment's header: graphs, their inputs/outputs, the exit rule
HEADER_FORMAT = "beexbench-ort"
HEADER_VERSION = 1


def graph_file(index: int) -> str:
    return f"block{index}.onnx"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_files(directory: Path, graphs: list[bytes], header: dict) -> dict[str, str]:
    """Write the graphs (removing those of a deeper network written there before) and the header
    (``format`` and ``format_version`` added); return {file name: sha256} for the metadata."""
    files: dict[str, str] = {}
    for index, graph in enumerate(graphs, start=1):
        atomic_write_bytes(directory / graph_file(index), graph)
        files[graph_file(index)] = sha256(graph)
    for stale in directory.glob("block*.onnx"):
        if stale.name not in files:
            stale.unlink()
    text = dumps_strict({"format": HEADER_FORMAT, "format_version": HEADER_VERSION, **header}, sort_keys=True)
    atomic_write_text(directory / HEADER, text)
    files[HEADER] = sha256(text.encode("utf-8"))
    return files


def read_graphs(directory: Path, files: dict, blocks: int, what: str, redo: str) -> list[bytes]:
    """The ``blocks`` graphs ``files`` (the metadata's {file name: sha256}) lists, each checked
    against its checksum (the header too) and parsed as ONNX; a one-line BeexError (ending with
    ``redo``, what the user does about it) for a missing, extra, changed or unreadable file."""
    wanted = [graph_file(i) for i in range(1, blocks + 1)]
    if sorted(files) != sorted([*wanted, HEADER]):
        raise BeexError(f"checkpoint {directory} does not list the ONNX graphs of '{what}': {redo}")
    data = {}
    for name in [*wanted, HEADER]:
        path = directory / name
        blob = path.read_bytes() if path.is_file() else b""
        if sha256(blob) != files[name]:
            raise BeexError(f"checkpoint {directory}: {name} is tampered, foreign or incomplete (checksum mismatch): {redo}")
        data[name] = blob
    try:
        import onnx

        for name in wanted:
            onnx.load_from_string(data[name])
    except Exception as exc:  # protobuf's DecodeError (a file written with a matching checksum but not ONNX)
        raise BeexError(f"checkpoint {directory}: a graph is not a readable ONNX model ({type(exc).__name__}): {redo}") from None
    return [data[name] for name in wanted]


def save_checkpoint(adapter: Any, directory: Path, key: str, files: dict[str, str]) -> Path:
    """The exported deployment's checkpoint: its torch weights and the metadata (config, task, fit,
    and under ``key`` its graph files' checksums and its verification against torch), written last."""
    meta = {"config": adapter.config, "task": adapter.spec.to_dict(),
            "fit": adapter.fit_report.to_dict() if adapter.fit_report else None,
            key: {"files": files, "verification": adapter.verification}}
    return write_checkpoint(directory, adapter.name, adapter.model.state_dict(), json.loads(json.dumps(meta)))


def load_checkpoint(cls: Any, directory: Path, key: str) -> tuple[Any, dict, dict, str]:
    """The deployment rebuilt from its checkpoint's weights and settings (no graph read yet): the
    adapter, the metadata's ``key`` record, its listed files and the advice a broken folder gets."""
    tensors, doc = read_checkpoint(directory, cls.name)
    redo = f"delete {directory} and re-derive {cls.name} from fp32 (`beexbench train`)"
    try:
        adapter = cls(ModelSpec.from_dict(doc["config"]), TaskSpec(**doc["task"]))
        adapter.model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError, BeexError) as exc:
        raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]}): {redo}") from None
    adapter.model.eval()
    adapter.fit_report = FitReport.from_dict(doc.get("fit"))
    rec = doc.get(key) if isinstance(doc.get(key), dict) else {}
    files = rec.get("files") if isinstance(rec.get("files"), dict) else {}
    adapter.verification = rec.get("verification")
    return adapter, rec, files, redo
