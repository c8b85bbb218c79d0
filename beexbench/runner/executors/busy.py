"""Which training ran on this machine during a measurement.

A cluster lets training pack onto any node with free CPUs, while a measurement has its node's
``beexbench_measure`` slot to itself: measurements never overlap each other, but a training task may
overlap one (on the same Ray node, or on another Ray node of the same machine). Each training task
leaves a small file in the machine's temporary folder for as long as it runs (its start and, once
done, its end); a measurement reads them when it finishes and its record warns about every one that
overlapped it. The folder is per machine, not per Ray node, on purpose: two Ray nodes on one host
share its cores.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

KEEP_S = 6 * 3600.0  # marks that ended longer ago are removed when read (no measurement lasts that long)


def marks_dir() -> Path:
    return Path(tempfile.gettempdir()) / "beexbench-training-marks"


@contextmanager
def training_mark(what: str, folder: Path | None = None) -> Iterator[None]:
    """Mark this process as training ``what`` on this machine until the block ends."""
    folder = folder or marks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    path = folder / f"{os.getpid()}-{time.time_ns()}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "what": what, "start": start, "end": None}))
    try:
        yield
    finally:
        path.write_text(json.dumps({"pid": os.getpid(), "what": what, "start": start, "end": time.time()}))


def overlapping(start: float, end: float, folder: Path | None = None) -> list[str]:
    """What trained on this machine at some moment in [start, end] (and removes old marks). A mark
    without an end whose process is gone (killed mid-training) counts until the moment it is read."""
    folder = folder or marks_dir()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            t0, t1 = float(doc["start"]), doc["end"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if t1 is None and not psutil.pid_exists(int(doc.get("pid", -1))):
            t1 = time.time()
        if t1 is not None and t1 < time.time() - KEEP_S:
            path.unlink(missing_ok=True)
            continue
        if t0 <= end and (t1 is None or t1 >= start):
            found.append(str(doc.get("what")))
    return found


def shared_warning(start: float, end: float) -> list[str]:
    """A record warning when training overlapped the measurement [start, end] on this machine."""
    found = overlapping(start, end)
    if not found:
        return []
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return [f"training ran on this machine during the measurement ({shown}): its latency and energy figures "
            "shared the cores with it; give measuring nodes no training CPUs (`beexbench worker --num-cpus 0`) "
            "for clean figures"]
