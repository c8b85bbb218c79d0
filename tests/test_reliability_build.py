"""Native builds (issue 15): the build lock (an OS lock, see beexbench._io.exclusive_lock) is
free at once when its holder died, gives up on a live one after its timeout with a message,
never follows a symlink; a cached library is loaded only once its recorded sha256 matches,
else rebuilt (or refused with the reason)."""
from __future__ import annotations

import contextlib

import errno
import json
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from beexbench import _native_build as nb
from beexbench.engine import _native as engine_native
from beexbench.kernels import _build as kernels_build
from beexbench.results.schema import CellRecord
from beexbench.settings import SettingError
from conftest import write_tiny_suite

SHARED_CACHE_ENV = "BEEXBENCH_TEST_BUILD_CACHE"  # reuse one build across test sessions


# holds the build lock of argv[1] until a line arrives on stdin, then stays alive without it
HOLDER = ("import sys\nfrom pathlib import Path\nfrom beexbench import _native_build as nb\n"
          "with nb.build_lock(Path(sys.argv[1]), 'holder build', timeout=5):\n"
          "    print('held', flush=True)\n    sys.stdin.readline()\n"
          "print('released', flush=True)\nsys.stdin.readline()\n")


@contextlib.contextmanager
def lock_held_in(folder: Path):
    """A live process holding ``folder/build.lock`` for the block."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def holder(tmp_path):
    """A live process holding ``tmp_path/build.lock``."""
    with lock_held_in(tmp_path) as proc:
        yield proc


def lock_text(directory: Path) -> str:
    return (directory / nb.LOCK_NAME).read_text()


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------
def test_lock_of_a_killed_holder_is_taken_at_once(tmp_path, capsys, holder):
    assert lock_text(tmp_path) == f"{holder.pid} {socket.gethostname()}"
    holder.send_signal(signal.SIGKILL)  # killed mid-build: the file stays, naming it
    holder.wait()
    assert lock_text(tmp_path).split()[0] == str(holder.pid)
    t0 = time.monotonic()
    with nb.build_lock(tmp_path, "test build", timeout=30):
        assert lock_text(tmp_path).split()[0] == str(os.getpid())
    assert time.monotonic() - t0 < 2
    assert "waiting" not in capsys.readouterr().err
    assert lock_text(tmp_path) == ""  # released: the file stays (no unlink race), naming nobody


def test_lock_file_naming_a_live_process_is_free_without_its_os_lock(tmp_path):
    # what a pid-file lock would wrongly honour (a reused pid, or the old "pid host start" format):
    # only the OS lock counts, never what the file says
    (tmp_path / nb.LOCK_NAME).write_text(f"{os.getppid()} {socket.gethostname()} 1\n")
    t0 = time.monotonic()
    with nb.build_lock(tmp_path, "test build", timeout=30):
        assert lock_text(tmp_path).split()[0] == str(os.getpid())
    assert time.monotonic() - t0 < 2


def test_live_holder_past_timeout_fails_with_message(tmp_path, capsys, holder):
    t0 = time.monotonic()
    with pytest.raises(nb.BuildLockTimeout) as err:
        with nb.build_lock(tmp_path, "test build", timeout=0.5):
            pytest.fail("took a lock held by a live process")
    assert 0.4 < time.monotonic() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and f"process {holder.pid} on {socket.gethostname()}" in msg
    assert "delete that file" in msg and nb.TIMEOUT_ENV in msg
    err_text = capsys.readouterr().err
    assert f"waiting for process {holder.pid}" in err_text and nb.TIMEOUT_ENV in err_text
    assert lock_text(tmp_path).split()[0] == str(holder.pid)  # a live holder's lock stays


def test_waiter_says_whom_it_waits_for_and_takes_the_lock_when_released(tmp_path, capsys, holder):
    release = threading.Timer(0.5, lambda: (holder.stdin.write("\n"), holder.stdin.flush()))
    release.start()
    t0 = time.monotonic()
    try:
        with nb.build_lock(tmp_path, "test build", timeout=10):
            waited = time.monotonic() - t0
            assert lock_text(tmp_path).split()[0] == str(os.getpid())
            assert holder.poll() is None  # released, not dead
    finally:
        release.cancel()
    assert 0.3 < waited < 5
    err_text = capsys.readouterr().err
    assert err_text.count("waiting for") == 1  # said once, not every poll
    assert f"waiting for process {holder.pid} on {socket.gethostname()} to finish building test build" in err_text
    assert holder.stdout.readline().strip() == "released"


def test_no_locking_on_the_file_system_is_a_clear_error(tmp_path, monkeypatch):
    def flock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(nb.NativeBuildError, match="local disk"):
        with nb.build_lock(tmp_path, "test build", timeout=1):
            pass


def test_timeout_from_environment(monkeypatch):
    monkeypatch.setenv(nb.TIMEOUT_ENV, "2.5")
    assert nb.lock_timeout() == 2.5
    for bad in ("soon", "nan", "-1"):  # a usage error, never the fallback a failed build gives
        monkeypatch.setenv(nb.TIMEOUT_ENV, bad)
        with pytest.raises(SettingError, match=nb.TIMEOUT_ENV):
            nb.lock_timeout()


@pytest.mark.parametrize("dangling", [False, True])
def test_lock_symlink_is_never_followed(tmp_path, dangling):
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious")
    build = tmp_path / "build"
    build.mkdir()
    (build / nb.LOCK_NAME).symlink_to(victim)
    with pytest.raises(nb.NativeBuildError, match="symlink"):
        with nb.build_lock(build, "test build", timeout=1):
            pytest.fail("took a lock through a symlink")
    assert victim.read_text() == "precious" if not dangling else not victim.exists()
    assert (build / nb.LOCK_NAME).is_symlink()


# ---------------------------------------------------------------------------
# Verify before load, rebuild when it fails (the compiler is simulated here)
# ---------------------------------------------------------------------------
@pytest.fixture
def fake_toolchain(tmp_path, monkeypatch):
    """An Extension whose 'compiler' writes a file and whose 'loader' records what it loads."""
    calls = {"compiled": 0, "loaded": []}

    def compile_(ext, verbose):
        calls["compiled"] += 1
        ext.library.write_bytes(b"\x7fELF" + b"library" * 1000)

    monkeypatch.setattr(nb, "_compile", compile_)
    monkeypatch.setattr(nb, "_load_library", lambda lib: calls["loaded"].append(lib.read_bytes()))
    ext = nb.Extension(name="fake", source=Path(__file__), build_dir=tmp_path / "k" / "key",
                       cflags=(), what="fake ext")
    return ext, calls


def test_built_once_then_loaded_from_verified_cache(fake_toolchain):
    ext, calls = fake_toolchain
    assert nb.load(ext, timeout=1) is True
    assert nb.verify_problem(ext.library) is None
    assert nb.load(ext, timeout=1) is False
    assert calls["compiled"] == 1 and len(calls["loaded"]) == 1  # compile loads it itself
    assert lock_text(ext.build_dir) == ""  # released


@pytest.mark.parametrize("damage", ["truncate", "flip", "no checksum"])
def test_damaged_library_is_rebuilt_not_loaded(fake_toolchain, capsys, damage):
    ext, calls = fake_toolchain
    nb.load(ext, timeout=1)
    good = ext.library.read_bytes()
    (ext.build_dir / "stale.o").write_bytes(b"half")  # a half-written object from a killed build
    if damage == "truncate":
        ext.library.write_bytes(good[:100])
    elif damage == "flip":
        ext.library.write_bytes(good[:-1] + b"X")
    else:
        Path(str(ext.library) + nb.SUM_SUFFIX).unlink()
    assert nb.verify_problem(ext.library) is not None
    assert nb.load(ext, timeout=1) is True
    assert calls["compiled"] == 2 and not calls["loaded"]  # the damaged file never reached the loader
    assert ext.library.read_bytes() == good and nb.verify_problem(ext.library) is None
    assert not (ext.build_dir / "stale.o").exists()  # rebuilt from a clean folder
    assert "failed verification" in capsys.readouterr().err


def test_both_native_modules_share_the_build_code():
    for ext in (kernels_build.extension(), engine_native._extension()):
        assert isinstance(ext, nb.Extension) and ext.build_dir.parent == nb.cache_root()
    assert kernels_build.cache_root is nb.cache_root


# ---------------------------------------------------------------------------
# The real kernels, in fresh processes
# ---------------------------------------------------------------------------
PROBE = ("import beexbench.kernels as k; from beexbench.engine import _native;"
         "print(k.backend()); print(k.build_info()['compiled']); print(k.fallback_reason());"
         "print(_native.mode())")


def probe(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="session")
def built_native() -> Path:
    """A shared cache root holding verified builds of both native modules (compiled at most once)."""
    env = dict(os.environ, BEEXBENCH_KERNELS="auto")
    if os.environ.get(SHARED_CACHE_ENV):
        env["BEEXBENCH_CACHE"] = os.environ[SHARED_CACHE_ENV]
    out = probe(env)
    if out.returncode or out.stdout.split("\n")[0] == "torch-fallback":
        pytest.skip(f"native kernels cannot be built here: {out.stdout} {out.stderr[-500:]}")
    code = "from beexbench import _native_build; print(_native_build.cache_root())"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout.strip())


def test_truncated_kernels_rebuilt_in_a_fresh_process(tmp_path, monkeypatch, built_native):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path))
    ext = kernels_build.extension()
    for built in (ext, engine_native._extension()):  # only the kernels get damaged and recompiled
        shutil.copytree(built_native / built.build_dir.name, built.build_dir)
    (ext.build_dir / "lock").touch()  # cpp_extension's baton, left by a build killed mid-compile
    size = ext.library.stat().st_size
    with open(ext.library, "r+b") as fh:
        fh.truncate(size // 3)
    out = probe(dict(os.environ, BEEXBENCH_CACHE=str(tmp_path), BEEXBENCH_KERNELS="auto"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] != "torch-fallback" and lines[1] == "True", out.stdout + out.stderr
    assert "failed verification" in out.stderr
    assert nb.verify_problem(ext.library) is None and ext.library.stat().st_size == size


def test_damaged_kernels_without_compiler_refused_with_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    ext = kernels_build.extension()
    ext.build_dir.mkdir(parents=True)
    ext.library.write_bytes(b"\x7fELF" + b"\0" * 4096)  # truncated: loading it would crash
    nb.record_checksum(ext.library)
    ext.library.write_bytes(b"\x7fELF" + b"\0" * 64)
    out = probe(dict(os.environ, BEEXBENCH_KERNELS="auto"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "torch-fallback" and lines[3].startswith("python module path"), out.stdout
    assert "native kernels unavailable" in lines[2]
    assert "failed verification: checksum mismatch" in out.stderr
    assert not ext.library.exists()  # the damaged file is gone, not loaded


# ---------------------------------------------------------------------------
# A packed cell whose engine cannot load (its build lock held past the timeout), issue 26
# ---------------------------------------------------------------------------
@pytest.fixture
def engine_lock_held(tmp_path, monkeypatch, built_native):
    """A cache whose kernels are built and whose engine is not, its build lock held by a live process."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    kernels_ext, engine_ext = kernels_build.extension(), engine_native._extension()
    shutil.copytree(built_native / kernels_ext.build_dir.name, kernels_ext.build_dir)
    engine_ext.build_dir.mkdir(parents=True)
    with lock_held_in(engine_ext.build_dir) as proc:
        yield proc


def run_packed(tmp_path: Path, isolate: bool, **env: str) -> tuple[subprocess.CompletedProcess, CellRecord]:
    """``beexbench run`` (the console script) of beexformer-packed on the tiny task; its one cell."""
    suite = write_tiny_suite(tmp_path, models=("beexformer-packed",), isolate=isolate)
    script = Path(sys.executable).with_name("beexbench")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "beexbench.cli"]
    out = subprocess.run([*command, "run", "--config", str(suite)], capture_output=True, text=True, timeout=580,
                         env={**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"), nb.TIMEOUT_ENV: "1", **env})
    (cell,) = (tmp_path / "results").glob("*/cells/*.json")
    return out, CellRecord.from_dict(json.loads(cell.read_text()), source=str(cell))


def test_packed_cell_fails_when_its_engine_cannot_load(tmp_path, monkeypatch, engine_lock_held):
    """Was: the cell ran the Python module path (about 40x slower) and was recorded as ok, exit 0."""
    monkeypatch.delenv("BEEXBENCH_ALLOW_FALLBACK", raising=False)
    out, rec = run_packed(tmp_path, isolate=False, BEEXBENCH_ALLOW_FALLBACK="0")
    assert out.returncode == 1, out.stderr[-2000:]
    assert rec.status == "failed" and rec.metrics is None
    assert rec.error.startswith("FastPathUnavailable: beexformer-packed: its fast path (the native C++ engine on the "
                                "native packed-bit kernels) is unavailable: fused engine unavailable (BuildLockTimeout:")
    assert f"process {engine_lock_held.pid}" in rec.error and "BEEXBENCH_ALLOW_FALLBACK=1" in rec.error


def test_allowed_fallback_is_recorded_and_labelled(tmp_path, engine_lock_held):
    """With the fallback allowed, the cell is measured (in fresh processes, which wait for the lock too)
    and the record, its warnings and the report's label say which path ran and why."""
    from beexbench.report.frame import records_frame

    out, rec = run_packed(tmp_path, isolate=True, BEEXBENCH_ALLOW_FALLBACK="1")
    assert out.returncode == 0, out.stderr[-2000:]
    impl = rec.metrics.implementation
    assert (impl.engine, impl.isa, impl.fallback, impl.allowed_by) == ("python", None, True, "BEEXBENCH_ALLOW_FALLBACK=1")
    assert impl.kernels != "torch-fallback" and impl.reason.startswith("fused engine unavailable (BuildLockTimeout:")
    assert rec.metrics.batch1.isolated  # what the measuring process ran, carried back to the record
    assert any(w.startswith(f"implementation: {impl.label} instead of") for w in rec.warnings)
    # the report's tables and figures name a model by this label: the fallback is its own, labelled row
    assert records_frame([rec])["label"].tolist() == [f"beexformer-packed (tiny) [fallback: python engine, {impl.kernels} kernels]"]
