"""File helpers shared by every seam: checksums, atomic writes, strict JSON, names that
become paths, and lock files."""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from numbers import Number
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import BeexError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, fsync, then rename over ``path``:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results and reports are meant to be shared
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- #
# Names that become paths
# --------------------------------------------------------------------------- #
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,119}")  # no '+': a hashed name never equals a plain one
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")
_MAX_COMPONENT_BYTES = 255


def safe_name(name: str, *, keep: int = 60) -> str:
    """A file-system-safe name for any string, one-to-one: a short plain name (ASCII letters,
    digits, ``_ . = -``) is kept as it is; anything else becomes its plain characters (at most
    ``keep``) + ``+`` + 16 hex digits of the sha256 of the whole original."""
    name = str(name)
    if _PLAIN.fullmatch(name) and not name.endswith("."):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    stem = _UNSAFE.sub("-", name).strip("-.")[:keep].rstrip("-.")
    return f"{stem or '_'}+{digest}"


def _check_component(part: str, what: str) -> None:
    try:
        size = len(os.fsencode(part))
    except UnicodeError:  # e.g. a lone surrogate: no file system can name it
        size = _MAX_COMPONENT_BYTES + 1
    bad = (not part or part in (".", "..") or "\0" in part or "/" in part or os.sep in part
           or (os.altsep and os.altsep in part) or size > _MAX_COMPONENT_BYTES)
    if bad:
        shown = part if len(part) <= 60 else part[:57] + "..."
        raise BeexError(f"{what} {shown!r} is not a plain file name: use one name without '/', '..' "
                        f"or NUL, at most {_MAX_COMPONENT_BYTES} bytes")


def safe_child(root: str | os.PathLike, *parts: str, what: str = "name") -> Path:
    """``root/part/...`` after checking that each part is one plain path component and that
    the result, with every symlink already there resolved, stays inside ``root``; else a
    :class:`BeexError` naming ``what`` (e.g. ``--run-id``)."""
    for part in parts:
        _check_component(str(part), what)
    path = Path(root).joinpath(*map(str, parts))
    real_root = Path(root).resolve()
    real = path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise BeexError(f"{what} {'/'.join(map(str, parts))[:200]!r} leads to {real}, outside {real_root}: "
                        "remove the symlink there or choose another name")
    return path


# --------------------------------------------------------------------------- #
# Strict JSON: no NaN or Infinity, ever
# --------------------------------------------------------------------------- #
NULL_REASONS = "null_reasons"


def _nonfinite_reason(x: float) -> str:
    return "not a number (NaN)" if math.isnan(x) else f"infinite ({'+' if x > 0 else '-'}inf)"


def _pointer_part(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _finite(obj: Any, where: str, reasons: dict[str, str], default: Callable[[Any], Any] | None) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        reasons[where or "/"] = _nonfinite_reason(obj)
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}/{_pointer_part(k)}", reasons, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}/{i}", reasons, default) for i, v in enumerate(obj)]
    if isinstance(obj, Number) and hasattr(obj, "item"):  # numpy and torch scalars
        return _finite(obj.item(), where, reasons, default)
    if default is None:
        return obj  # json.dumps reports what it cannot write
    return _finite(default(obj), where, reasons, default)


def dumps_strict(doc: dict, *, default: Callable[[Any], Any] | None = None, indent: int | None = 2,
                 sort_keys: bool = False) -> str:
    """``doc`` as standard JSON: every NaN or infinite float becomes ``null`` and the top-level
    ``null_reasons`` map says why, keyed by the JSON Pointer of the value (RFC 6901), e.g.
    ``{"/metrics/accuracy/value": "not a number (NaN)"}``. Present only when non-empty
    (records always carry it)."""
    reasons: dict[str, str] = dict(doc.get(NULL_REASONS) or {})
    clean = _finite({k: v for k, v in doc.items() if k != NULL_REASONS}, "", reasons, default)
    if reasons or NULL_REASONS in doc:
        clean[NULL_REASONS] = reasons
    return json.dumps(clean, indent=indent, sort_keys=sort_keys, allow_nan=False)


# --------------------------------------------------------------------------- #
# Lock files
# --------------------------------------------------------------------------- #
class LockBusy(BeexError):
    """Another live process holds the lock; ``owner`` is its pid and ``host`` its host name
    as written in the file ("?" and "" when not written yet)."""

    def __init__(self, path: Path, owner: str, host: str = "") -> None:
        super().__init__(f"{path} is held by another beexbench process (pid {owner})")
        self.path, self.owner, self.host = path, owner, host

    @property
    def holder(self) -> str:
        """The holder in words, e.g. ``process 123 on node7``."""
        return _holder(self.owner, self.host)


def _open_lock_file(path: Path) -> int:
    """Create the lock file (O_EXCL), or open the one there; never through a symlink."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink() or exc.errno == errno.ELOOP:
            raise BeexError(f"lock file {path} is a symlink: delete it (beexbench never follows one) and retry") from None
        raise BeexError(f"cannot open lock file {path} ({exc.strerror}): check the folder's permissions") from None
    problem = _lock_file_problem(os.fstat(fd))
    if problem:
        os.close(fd)
        raise BeexError(f"lock file {path} {problem}: delete it and retry")
    return fd


def _lock_file_problem(st: os.stat_result) -> str | None:
    """Why an opened lock file must not be used (its contents are truncated and rewritten): not
    a regular file, hard-linked (writing it would truncate the file it is linked to), or owned by
    someone else; None when it is a private regular file."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links (it may be another file under a second name; beexbench never writes one)"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"is owned by user id {st.st_uid}, not by you ({os.getuid()})"
    return None


def _try_lock(fd: int, path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise BeexError(f"cannot lock {path} ({exc.strerror}): put that folder on a local disk") from None


def _owner(fd: int) -> tuple[str, str]:
    """``(pid, host)`` as the holder wrote them (``pid host``; older versions wrote the pid alone)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        fields = os.read(fd, 512).decode("utf-8", "replace").split()
    except OSError:
        fields = []
    return (fields[0] if fields else "?"), (fields[1] if len(fields) > 1 else "")


def _holder(pid: str, host: str) -> str:
    if pid == "?":
        return "another process"
    return f"process {pid} on {host}" if host else f"process {pid}"


@contextmanager
def exclusive_lock(path: str | os.PathLike, *, timeout_s: float = 0.0, poll_s: float = 0.2,
                   on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``path`` exclusively (the OS lock is released when the holder dies, so the lock
    of a dead process is recovered at once); the file holds ``pid host`` of the holder while
    held. Waits up to ``timeout_s`` (calling ``on_wait`` once with the holder in words, e.g.
    ``process 123 on node7``, when it first has to wait), then raises :class:`LockBusy`.
    A symlink or a non-file at ``path`` is refused, never followed."""
    path = Path(path)
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while not _try_lock(fd, path):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockBusy(path, *_owner(fd))
            if on_wait is not None and not told:
                on_wait(_holder(*_owner(fd)))
                told = True
            time.sleep(min(poll_s, left))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: no owner to name
    finally:
        os.close(fd)
