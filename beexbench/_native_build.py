"""Build, verify and load the native C++ extensions (packed-bit kernels and the engine's
fused steps), safely shared between processes.

Each extension lives in its own cache folder (``$BEEXBENCH_CACHE/kernels/<key>``) whose
``<key>`` hashes everything that changes the binary.  :func:`load` then

* loads the cached ``.so`` only after its sha256 matches the one recorded in
  ``<name>.so.sha256`` when it was built, so a truncated or damaged library is never
  handed to the dynamic loader (which would die with a bus error);
* otherwise rebuilds it from a clean folder while holding ``build.lock``: created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a symlink there is refused, never followed),
  holding ``pid host start-time`` of its owner.  A lock whose owner died (killed
  mid-compile) is removed; a waiter says whom it waits for, and gives up after
  ``$BEEXBENCH_BUILD_TIMEOUT`` seconds (default 600) with a message saying what to do.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .errors import BeexError

LOCK_NAME = "build.lock"
SUM_SUFFIX = ".sha256"
TIMEOUT_ENV = "BEEXBENCH_BUILD_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
POLL_SECONDS = 0.25
UNREADABLE_GRACE = 10.0  # a lock with no owner line yet is stale only after this long

try:  # serialises breaking a stale lock with creating a new one (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class NativeBuildError(BeexError):
    """A native extension could not be built or loaded safely."""


class BuildLockTimeout(NativeBuildError):
    """Another process held the build lock for longer than the timeout."""


def cache_root() -> Path:
    """``$BEEXBENCH_CACHE/kernels``, else ``$XDG_CACHE_HOME/beexbench/kernels``,
    else ``~/.cache/beexbench/kernels`` (same root as the data cache)."""
    env = os.environ.get("BEEXBENCH_CACHE")
    if env:
        return Path(env).expanduser() / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "beexbench" / "kernels"


def cache_key(source: Path, parts: Sequence[str]) -> str:
    """16 hex digits of sha256 over the source and every other input of the build."""
    h = hashlib.sha256(source.read_bytes())
    for part in parts:
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def _say(message: str) -> None:
    print(f"beexbench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The build lock
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    started: str  # the process's start time (Linux /proc), "" when unknown


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _me() -> LockOwner:
    return LockOwner(os.getpid(), socket.gethostname(), _start_time(os.getpid()))


def _alive(owner: LockOwner) -> bool:
    """Whether the lock's owner still runs (assumed so on another host: it cannot be checked)."""
    if owner.host != socket.gethostname():
        return True
    if owner.pid == os.getpid():
        return False  # this process holds no lock it did not take in build_lock()
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(owner.pid)
    return not (owner.started and now and now != owner.started)


def _read_owner(path: Path) -> tuple[LockOwner | None, os.stat_result]:
    """The owner recorded in a lock file, read without following a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NativeBuildError(f"{path} is a symlink, not a build lock; delete it and run again") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NativeBuildError(f"{path} is not a regular file; delete it and run again")
        fields = os.read(fd, 512).decode("utf-8", "replace").split()
    finally:
        os.close(fd)
    try:
        return LockOwner(int(fields[0]), fields[1], fields[2] if len(fields) > 2 else ""), st
    except (IndexError, ValueError):
        return None, st


def _is_stale(owner: LockOwner | None, st: os.stat_result) -> bool:
    if owner is None:  # just created (owner not written yet) or garbage
        return time.time() - st.st_mtime > UNREADABLE_GRACE
    return not _alive(owner)


@contextmanager
def _directory_mutex(directory: Path) -> Iterator[None]:
    """A short exclusive flock on the folder, so two waiters cannot both break one stale lock."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock: O_EXCL alone still guards the lock
            pass
        yield
    finally:
        os.close(fd)


def _create(path: Path) -> int:
    """The new lock's fd, holding this process's ``pid host start-time``; FileExistsError if taken."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    me = _me()
    os.write(fd, f"{me.pid} {me.host} {me.started}\n".encode())
    return fd


def _try_take(path: Path) -> tuple[int | None, LockOwner | None]:
    """Create the lock (returns its fd) or report who holds it; a dead owner's lock is removed."""
    with _directory_mutex(path.parent):
        try:
            return _create(path), None
        except FileExistsError:
            pass
        try:
            owner, st = _read_owner(path)
        except FileNotFoundError:  # released meanwhile
            return _create(path), None
        if not _is_stale(owner, st):
            return None, owner
        os.unlink(path)
        who = f"process {owner.pid}" if owner else "an unknown process"
        _say(f"removed a stale build lock {path} left by {who}, which is no longer running")
        return _create(path), None


def lock_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise NativeBuildError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 600")
    return value


@contextmanager
def build_lock(directory: Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold ``directory/build.lock`` while building; wait (saying so) for a live owner
    up to ``timeout`` seconds (default :func:`lock_timeout`), recover a dead owner's lock."""
    path = directory / LOCK_NAME
    limit = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + limit
    told = False
    while True:
        fd, owner = _try_take(path)
        if fd is not None:
            break
        who = f"process {owner.pid} on {owner.host}" if owner else "another process"
        if time.monotonic() >= deadline:
            raise BuildLockTimeout(
                f"{what}: {who} has held {path} for over {limit:g}s; if no beexbench build is "
                f"running, delete that file, else wait or raise {TIMEOUT_ENV}")
        if not told:
            _say(f"waiting for {who} to finish building {what} in {directory} "
                 f"(up to {limit:g}s, {TIMEOUT_ENV})")
            told = True
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))
    try:
        yield
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sum_file(lib: Path) -> Path:
    return lib.with_name(lib.name + SUM_SUFFIX)


def record_checksum(lib: Path) -> None:
    """Write ``<lib>.sha256`` (atomically) after a successful build."""
    tmp = _sum_file(lib).with_name(f".{lib.name}{SUM_SUFFIX}.tmp{os.getpid()}")
    tmp.write_text(f"{_sha256(lib)}  {lib.name}\n", encoding="ascii")
    os.replace(tmp, _sum_file(lib))


def verify_problem(lib: Path) -> str | None:
    """Why ``lib`` must not be loaded (missing, no recorded checksum, mismatch), or None."""
    if not lib.is_file() or lib.is_symlink():
        return "not built"
    try:
        recorded = _sum_file(lib).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return "no recorded checksum"
    if _sha256(lib) != recorded:
        return "checksum mismatch (damaged or truncated)"
    return None


# ---------------------------------------------------------------------------
# Build and load
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Extension:
    """One native extension: its source, flags and cache folder."""

    name: str
    source: Path
    build_dir: Path
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    what: str = "native extension"

    @property
    def library(self) -> Path:
        return self.build_dir / f"{self.name}.so"


def _clear(directory: Path) -> None:
    """Empty the build folder (all but the lock) so nothing half-written is reused."""
    for entry in directory.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _compile(ext: Extension, verbose: bool) -> None:
    """Compile with torch's cpp_extension (which also loads the result)."""
    from torch.utils import cpp_extension

    cpp_extension.load(name=ext.name, sources=[str(ext.source)], extra_cflags=list(ext.cflags),
                       extra_ldflags=list(ext.ldflags), build_directory=str(ext.build_dir),
                       is_python_module=False, verbose=verbose)


def _load_library(lib: Path) -> None:
    import torch

    torch.ops.load_library(str(lib))


def load(ext: Extension, verbose: bool = False, timeout: float | None = None) -> bool:
    """Load ``ext`` from its verified cache, else rebuild it under the build lock.

    Returns True when this process compiled it.  Raises on any failure."""
    if verify_problem(ext.library) is None:
        _load_library(ext.library)
        return False
    ext.build_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(ext.build_dir, ext.what, timeout):
        problem = verify_problem(ext.library)  # another process may have built it meanwhile
        if problem is None:
            _load_library(ext.library)
            return False
        if problem != "not built":
            _say(f"{ext.library} ({ext.what}) failed verification: {problem}; rebuilding it")
        _clear(ext.build_dir)
        _compile(ext, verbose)
        record_checksum(ext.library)
    return True
