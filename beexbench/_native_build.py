"""Build, verify and load the native C++ extensions (packed-bit kernels and the engine's
fused steps), safely shared between processes.

Each extension lives in its own cache folder (``$BEEXBENCH_CACHE/kernels/<key>``) whose
``<key>`` hashes everything that changes the binary.  :func:`load` then

* loads the cached ``.so`` only after its sha256 matches the one recorded in
  ``<name>.so.sha256`` when it was built, so a truncated or damaged library is never
  handed to the dynamic loader (which would die with a bus error);
* otherwise rebuilds it from a clean folder while holding ``build.lock``, an
  :func:`~beexbench._io.exclusive_lock` (an OS lock, released when its holder dies, so a
  build killed mid-compile never blocks the next; a symlink there is refused, never
  followed).  A waiter says whom it waits for, and gives up after
  ``$BEEXBENCH_BUILD_TIMEOUT`` seconds (default 600) with a message saying what to do.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from . import settings
from ._io import LockBusy, atomic_write_text, exclusive_lock, sha256_file
from .errors import BeexError

LOCK_NAME = "build.lock"
SUM_SUFFIX = ".sha256"
TIMEOUT_ENV = settings.BUILD_TIMEOUT
DEFAULT_TIMEOUT = settings.DEFAULT_BUILD_TIMEOUT
POLL_SECONDS = 0.25


class NativeBuildError(BeexError):
    """A native extension could not be built or loaded safely."""


class BuildLockTimeout(NativeBuildError):
    """Another process held the build lock for longer than the timeout."""


def cache_root() -> Path:
    """``$BEEXBENCH_CACHE/kernels``, else ``$XDG_CACHE_HOME/beexbench/kernels``,
    else ``~/.cache/beexbench/kernels`` (same root as the data cache)."""
    return settings.cache_root() / "kernels"


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
def lock_timeout() -> float:
    """``$BEEXBENCH_BUILD_TIMEOUT`` (default 600 s); a value that is not a finite number of
    seconds >= 0 is a :class:`~beexbench.settings.SettingError`, never a fallback."""
    return settings.build_timeout()


@contextmanager
def build_lock(directory: Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold ``directory/build.lock`` while building; wait (saying so) for a live holder
    up to ``timeout`` seconds (default :func:`lock_timeout`).  A dead holder's lock is free."""
    path = directory / LOCK_NAME
    limit = lock_timeout() if timeout is None else timeout

    def waiting(who: str) -> None:
        _say(f"waiting for {who} to finish building {what} in {directory} (up to {limit:g}s, {TIMEOUT_ENV})")

    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(path, timeout_s=limit, poll_s=POLL_SECONDS, on_wait=waiting))
        except LockBusy as busy:
            raise BuildLockTimeout(
                f"{what}: {busy.holder} has held {path} for over {limit:g}s; if no beexbench build is "
                f"running, delete that file, else wait or raise {TIMEOUT_ENV}") from None
        except BeexError as exc:  # a symlink or non-file there, or no locking on this file system
            raise NativeBuildError(f"{what}: {exc}") from None
        yield


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------
def _sum_file(lib: Path) -> Path:
    return lib.with_name(lib.name + SUM_SUFFIX)


def record_checksum(lib: Path) -> None:
    """Write ``<lib>.sha256`` (atomically) after a successful build."""
    atomic_write_text(_sum_file(lib), f"{sha256_file(lib)}  {lib.name}\n")


def verify_problem(lib: Path) -> str | None:
    """Why ``lib`` must not be loaded (missing, no recorded checksum, mismatch), or None."""
    if not lib.is_file() or lib.is_symlink():
        return "not built"
    try:
        recorded = _sum_file(lib).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return "no recorded checksum"
    if sha256_file(lib) != recorded:
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
