"""The per-host roofline: this core's achievable peak throughput on each instruction path (fp32
FMA, bf16 and int8 dot products, XOR-popcount) on 1 thread and on every usable core, plus a
streaming-read bandwidth for the memory slope, so a kernel's or model's speed can be read as a
share of its bound (:func:`share_of_bound`).

Measured by ``beexbench/kernels/roofline.cpp`` (register-resident loops with enough independent
accumulator chains to hide latency; paths picked at run time from CPUID, AMX after Linux's
``arch_prctl(ARCH_REQ_XCOMP_PERM)``), built and checksum-verified by :mod:`beexbench._native_build`
like the kernels. A path this host cannot run carries ``unavailable_reason`` ("no avx512f"),
never a figure. Each figure is the median of ``reps`` repetitions; ``spread`` is (max - min) / median.

Measured once per host and cached as strict JSON (``<cache>/roofline/<key>.json``, written
atomically) keyed by the CPU model, its SIMD flags, the usable core count, the beexbench version
and the benchmark's source; a file that is not valid JSON, is another host's (key) or does not
follow the schema is refused and measured again (never unpickled). The environment section of
every cell records the cached summary and its key (:func:`environment_entry`: it reads, never
measures - a benchmark must not run inside a latency measurement).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__, _native_build, settings
from .._io import LockBusy, atomic_write_text, dumps_strict, exclusive_lock
from ..errors import BeexError
from ..results.codec import RecordError, Section

SOURCE = Path(__file__).resolve().parents[1] / "kernels" / "roofline.cpp"
# no auto-vectorisation: the scalar paths must stay scalar (the SIMD paths are intrinsics);
# no FMA contraction: the scalar path is mul + add; -W...: GCC 12's own avx512fintrin.h (PR105593)
CFLAGS = ("-O3", "-fno-tree-vectorize", "-fno-tree-slp-vectorize", "-ffp-contract=off", "-pthread", "-Wall",
          "-Wno-unused-function", "-Wno-uninitialized", "-Wno-maybe-uninitialized")
LDFLAGS = ("-pthread",)
FORMAT, SCHEMA = "beexbench-roofline", 1
MAX_FILE_BYTES = 1 << 20
FLOP, MAC, BIT_MAC, BYTES = "FLOP/s", "MAC/s", "binary MAC/s", "B/s"
# name -> (instruction path, unit); the order of roofline.cpp's Path enum
PATHS: dict[str, tuple[str, str]] = {
    "fp32-fma-avx512": ("AVX-512F vfmadd231ps zmm", FLOP),
    "fp32-fma-avx2": ("AVX2+FMA vfmadd231ps ymm", FLOP),
    "fp32-scalar": ("scalar fp32 mul + add", FLOP),
    "bf16-avx512": ("AVX512-BF16 vdpbf16ps zmm", FLOP),
    "bf16-amx": ("AMX-BF16 tdpbf16ps", FLOP),
    "int8-avx512-vnni": ("AVX512-VNNI vpdpbusd zmm", MAC),
    "int8-avx-vnni": ("AVX-VNNI vpdpbusd ymm", MAC),
    "int8-amx": ("AMX-INT8 tdpbusd", MAC),
    "popcount-avx512": ("AVX512-VPOPCNTDQ vpxorq + vpopcntq + vpaddq zmm", BIT_MAC),
    "popcount-avx2": ("AVX2 vpxor + nibble-LUT vpshufb + vpsadbw ymm", BIT_MAC),
    "popcount-scalar": ("scalar xor + popcnt + add (64-bit)", BIT_MAC),
    "mem-read": ("streaming read, SSE2 loads", BYTES),
}
# the packed-bit kernels' backend (beexbench.kernels.backend()) -> the bound it runs against
KERNEL_BACKEND_PATH = {"avx512-vpopcnt": "popcount-avx512", "avx512-vnni": "int8-avx512-vnni",
                       "avx2": "popcount-avx2", "portable": "popcount-scalar"}
# operands of the timed loops (roofline.cpp's header says what each path does with them)
_OPERANDS = {"popcount": (0x5555_3333_0F0F_00FF, 0x0123_4567_89AB_CDEF)}
NOT_MEASURED = "not measured on this host yet: run `beexbench roofline` (never measured during a cell)"


@dataclass(frozen=True, kw_only=True)
class RooflinePath(Section):
    """One instruction path's peak: ops per second on 1 thread and on all usable cores."""

    name: str
    isa: str
    unit: str
    ops_per_s_1t: float | None
    ops_per_s_all: float | None
    spread_1t: float | None
    spread_all: float | None
    unavailable_reason: str | None

    def __post_init__(self) -> None:
        figures = (self.ops_per_s_1t, self.ops_per_s_all, self.spread_1t, self.spread_all)
        if self.unavailable_reason is None:
            if any(f is None or not math.isfinite(f) or f < 0 for f in figures) or not self.ops_per_s_1t > 0:
                raise ValueError(f"{self.name}: a measured path needs finite positive figures")
        elif any(f is not None for f in figures):
            raise ValueError(f"{self.name}: an unavailable path carries no figure")


@dataclass(frozen=True, kw_only=True)
class Roofline(Section):
    """A host's bounds, as measured (and cached) by :func:`host_roofline`."""

    format: str
    schema: int
    key: str
    cpu: str
    flags: tuple[str, ...]
    cores: int
    beexbench: str
    threads_all: int
    reps: int
    mem_bytes_per_thread: int
    load_avg_1m: float | None
    measured_at: str
    paths: tuple[RooflinePath, ...]

    def __post_init__(self) -> None:
        if self.format != FORMAT or self.schema != SCHEMA:
            raise ValueError(f"not a {FORMAT} file of schema {SCHEMA}")
        if [p.name for p in self.paths] != list(PATHS):
            raise ValueError("its paths are not this version's")

    def path(self, name: str) -> RooflinePath:
        for p in self.paths:
            if p.name == name:
                return p
        raise BeexError(f"unknown roofline path {name!r}: use one of {', '.join(PATHS)}")

    def summary(self) -> dict[str, Any]:
        """What a cell's environment records: the key, when, and each path's bounds."""
        return {"key": self.key, "measured_at": self.measured_at, "threads_all": self.threads_all,
                "cpu": self.cpu, "load_avg_1m": self.load_avg_1m,
                "bounds": {p.name: {k: v for k, v in p.to_dict().items() if k != "name"} for p in self.paths}}


# --------------------------------------------------------------------------- the native side
def _extension() -> _native_build.Extension:
    parts = (sys.version, " ".join(CFLAGS + LDFLAGS), os.environ.get("CXX", "c++"))
    key = _native_build.cache_key(SOURCE, parts)
    return _native_build.Extension(name=f"beexbench_roofline_{key}", source=SOURCE,
                                   build_dir=_native_build.cache_root() / f"roofline-{key}", cflags=CFLAGS,
                                   ldflags=LDFLAGS, what="the roofline microbenchmark")


_LIB: list[ctypes.CDLL] = []


def native() -> ctypes.CDLL:
    """The microbenchmark library (built and verified on first use)."""
    if not _LIB:
        ext = _extension()
        _native_build.load(ext, verbose=settings.kernels_verbose())
        lib = ctypes.CDLL(str(ext.library))
        lib.rf_path_count.restype = ctypes.c_int
        lib.rf_path_name.restype, lib.rf_path_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
        lib.rf_unavailable.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.rf_ops_per_iter.restype = ctypes.c_double
        lib.rf_ops_per_iter.argtypes = [ctypes.c_int, ctypes.c_longlong]
        lib.rf_run.restype = ctypes.c_double
        lib.rf_run.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
                               ctypes.POINTER(ctypes.c_double)]
        names = [lib.rf_path_name(i).decode() for i in range(lib.rf_path_count())]
        if names != list(PATHS):
            raise BeexError(f"{ext.library}: its paths {names} are not {list(PATHS)}")
        _LIB.append(lib)
    return _LIB[0]


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run on this host (None when it can)."""
    buf = ctypes.create_string_buffer(160)
    return buf.value.decode() if native().rf_unavailable(list(PATHS).index(name), buf, len(buf)) else None


def run_path(name: str, threads: int, iters: int, p: int, q: int) -> tuple[float, float]:
    """Seconds and checksum of ``iters`` iterations of ``name`` on ``threads`` threads."""
    total = ctypes.c_double(0.0)
    p, q = (v - (1 << 64) if v >= 1 << 63 else v for v in (p, q))  # 64-bit patterns as C long long
    secs = native().rf_run(list(PATHS).index(name), threads, iters, p, q, ctypes.byref(total))
    if secs < 0:
        raise BeexError(f"roofline path {name} cannot run here: {unavailable_reason(name) or 'bad arguments'}")
    return secs, total.value


def ops_per_iter(name: str, p: int = 0) -> float:  # mem-read: the bytes of a p-byte pass
    return native().rf_ops_per_iter(list(PATHS).index(name), p)


# --------------------------------------------------------------------------- measuring
def usable_cores() -> int:  # all-core figures run one thread per CPU this process may use
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def mem_bytes_per_thread(threads: int) -> int:
    """256 MiB a thread (well past any last-level cache), at most a quarter of free memory in all."""
    import psutil

    share = psutil.virtual_memory().available // (4 * max(1, threads))
    return int(max(16 << 20, min(256 << 20, share)) // 64 * 64)


def _operands(name: str, mem_bytes: int) -> tuple[int, int]:
    if name == "mem-read":
        return mem_bytes, 0
    return _OPERANDS["popcount"] if name.startswith("popcount") else (1, 1)


def _figures(name: str, threads: int, iters: int, p: int, q: int, reps: int) -> tuple[float, float]:
    rates = []
    for _ in range(reps):
        secs, _ = run_path(name, threads, iters, p, q)
        rates.append(threads * ops_per_iter(name, p) * iters / secs)
    mid = statistics.median(rates)
    return mid, (max(rates) - min(rates)) / mid


def _calibrate(name: str, p: int, q: int, target_s: float) -> int:
    iters = 1 if name == "mem-read" else 64
    while True:
        secs, _ = run_path(name, 1, iters, p, q)
        if secs >= target_s / 4 or iters >= 1 << 40:
            return max(1, round(iters * target_s / max(secs, 1e-9)))
        iters *= 8


def measure_path(name: str, threads_all: int, reps: int = 5, target_s: float = 0.03,
                 mem_bytes: int = 64 << 20) -> RooflinePath:
    isa, unit = PATHS[name]
    reason = unavailable_reason(name)
    if reason is not None:
        return RooflinePath(name=name, isa=isa, unit=unit, ops_per_s_1t=None, ops_per_s_all=None, spread_1t=None,
                            spread_all=None, unavailable_reason=reason)
    p, q = _operands(name, mem_bytes)
    iters = _calibrate(name, p, q, target_s)
    one, spread_one = _figures(name, 1, iters, p, q, reps)
    allc, spread_all = _figures(name, threads_all, iters, p, q, reps)
    isa = f"{isa}, {mem_bytes >> 20} MiB a thread" if name == "mem-read" else isa
    return RooflinePath(name=name, isa=isa, unit=unit, ops_per_s_1t=one, ops_per_s_all=allc, spread_1t=spread_one,
                        spread_all=spread_all, unavailable_reason=None)


def host_identity() -> dict[str, Any]:
    """What the cache key hashes: the CPU, its flags, the usable cores, beexbench and the benchmark."""
    from ._cpu import cpu_flags, cpu_model

    return {"cpu": cpu_model(), "flags": cpu_flags(), "cores": usable_cores(), "logical": os.cpu_count(),
            "beexbench": __version__, "source": hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16],
            "schema": SCHEMA}


def roofline_key(identity: dict[str, Any] | None = None) -> str:
    doc = json.dumps(identity or host_identity(), sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _not_strict(name: str) -> float:
    raise ValueError(f"{name} is not strict JSON")


def cache_file(key: str | None = None) -> Path:
    return settings.cache_root() / "roofline" / f"{key or roofline_key()}.json"


def measure(reps: int = 5, target_s: float = 0.03) -> Roofline:
    """Measure every path now (a few seconds; nothing cached)."""
    if not 1 <= reps <= 100 or not 0 < target_s <= 10:
        raise BeexError(f"roofline: reps must be 1..100 and target_s in (0, 10], got {reps}, {target_s}")
    ident, threads = host_identity(), usable_cores()
    mem = mem_bytes_per_thread(threads)
    paths = tuple(measure_path(name, threads, reps, target_s, mem) for name in PATHS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Roofline(format=FORMAT, schema=SCHEMA, key=roofline_key(ident), cpu=ident["cpu"], flags=tuple(ident["flags"]),
                    cores=ident["cores"], beexbench=__version__, threads_all=threads, reps=reps,
                    mem_bytes_per_thread=mem, load_avg_1m=load,
                    measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), paths=paths)


# --------------------------------------------------------------------------- the cache
def read_cached(key: str | None = None) -> tuple[Roofline | None, str | None]:
    """The cached roofline for ``key`` (this host's by default), or None and why not ("absent",
    or the reason the file was refused). JSON only: nothing in the file is ever executed."""
    key = key or roofline_key()
    path = cache_file(key)
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return None, "not a regular file"
        if not path.exists():
            return None, "absent"
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, f"larger than {MAX_FILE_BYTES} bytes"
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_strict)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable or not JSON ({type(exc).__name__})"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None, "not a beexbench roofline file"
    if doc.get("key") != key:
        return None, f"another host's or version's roofline (key {str(doc.get('key'))[:40]!r}, expected {key!r})"
    try:
        return Roofline.from_dict(doc, source=str(path)), None
    except RecordError as exc:
        return None, f"does not follow the schema ({str(exc).split(': ', 1)[-1][:200]})"


def host_roofline(refresh: bool = False) -> Roofline:
    """This host's roofline: read from the cache, else measured once (under a lock, so two
    processes never measure at the same time) and cached. ``refresh``: measure again."""
    key = roofline_key()
    path = cache_file(key)
    if not refresh:
        cached, problem = read_cached(key)
        if cached is not None:
            return cached
        if problem != "absent":
            print(f"beexbench: roofline cache {path} refused ({problem}); measuring again", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(path.parent / f"{key}.lock", timeout_s=settings.build_timeout()):
            cached, _ = (None, None) if refresh else read_cached(key)  # measured meanwhile by another process
            if cached is not None:
                return cached
            roofline = measure()
            atomic_write_text(path, dumps_strict(roofline.to_dict()) + "\n")
            return roofline
    except LockBusy as busy:
        raise BeexError(f"the roofline of this host is being measured by {busy.holder} for too long; "
                        f"wait, or delete {busy.path} if no beexbench process is running") from None


def environment_entry() -> dict[str, Any]:
    """The roofline part of a cell's environment: the cached summary and its key, or the key and
    why there is none. Reads only: never measures (not inside a latency measurement)."""
    try:
        key = roofline_key()
        cached, problem = read_cached(key)
    except (BeexError, OSError) as exc:
        return {"key": None, "unavailable_reason": f"roofline unreadable: {exc}"}
    if cached is not None:
        return cached.summary()
    why = NOT_MEASURED if problem == "absent" else f"cached roofline refused ({problem}): {NOT_MEASURED}"
    return {"key": key, "unavailable_reason": why}


def share_of_bound(achieved_ops_per_s: float, path: str, *, threads: str = "1t",
                   roofline: Roofline | None = None) -> float:
    """``achieved / bound`` for ``path`` on ``threads`` ("1t" or "all") of this host's roofline
    (measured if not cached); an unknown or unavailable path, or a rate that is not a finite
    positive number, is a :class:`BeexError` - never a made-up share."""
    if threads not in ("1t", "all"):
        raise BeexError(f"threads must be '1t' or 'all', got {threads!r}")
    if not (isinstance(achieved_ops_per_s, (int, float)) and math.isfinite(achieved_ops_per_s) and achieved_ops_per_s > 0):
        raise BeexError(f"achieved ops/s must be a finite positive number, got {achieved_ops_per_s!r}")
    if path not in PATHS:
        raise BeexError(f"unknown roofline path {path!r}: use one of {', '.join(PATHS)}")
    bound = (roofline or host_roofline()).path(path)
    if bound.unavailable_reason is not None:
        raise BeexError(f"the {path} bound is unavailable on this host: {bound.unavailable_reason}")
    return achieved_ops_per_s / (bound.ops_per_s_1t if threads == "1t" else bound.ops_per_s_all)
