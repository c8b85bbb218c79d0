"""The arm64 check: the packed-bit kernels on AArch64 (NEON and the portable reference), under
qemu user-mode emulation, bit for bit against the x86 torch ops.

    python tests/arm64/check.py            # or: python -m pytest -q -m arm64 tests/test_arm64.py

1. Cases (inputs) are drawn here, and their reference outputs computed by the x86 build's torch
   ops (``torch.ops.beexbench_kernels``: pack_rows, binary_matmul, binary_linear, on every x86
   backend, which must agree) and the engine's token-row lookups (``PackedEmbedding``).
2. ``tests/arm64/harness.cpp`` (``beexbench/kernels/bits_core.h``, no ATen) is compiled twice: for
   this host (portable path) and with ``aarch64-linux-gnu-g++ -static`` (portable + NEON), the
   latter run under ``qemu-aarch64-static`` for each CPU model in ``QEMU_CPUS``.
3. Every output of every path must equal the x86 reference byte for byte (int32 products, packed
   words and the float epilogues alike: the builds use -ffp-contract=off, so they round the same).
4. The torch-facing glue (``binary_gemm.cpp``'s "neon" backend, ``_engine.cpp``'s "neon"
   instruction set) is cross-compiled for aarch64 against torch's headers: it compiles, but is not
   run (that needs an arm64 torch).  Latency under qemu is meaningless and is never measured.
"""
from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "beexbench" / "kernels"
HARNESS = Path(__file__).with_name("harness.cpp")
CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64-static"
QEMU_CPUS = ("cortex-a72", "max")  # a Raspberry Pi 4's core, and every feature qemu knows
CXXFLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-Wall"]
PATHS = {0: "portable", 1: "neon"}


def missing_tools() -> str | None:
    """Why the check cannot run here (None when it can)."""
    gone = [t for t in (CROSS_CXX, QEMU, "g++") if shutil.which(t) is None]
    if gone:
        return (f"{', '.join(gone)} not found (Debian: apt-get install -y g++-aarch64-linux-gnu qemu-user-static)")
    return None


def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    x = torch.randn(*shape, generator=g)
    flat = x.view(-1)
    special = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-40, -1e-40])
    idx = torch.randint(0, flat.numel(), (min(flat.numel(), 3 * len(special)),), generator=g)
    flat[idx] = special.repeat(3)[: idx.numel()]
    return x


def make_cases(seed: int = 0) -> list[dict]:
    """Inputs and x86 reference outputs of every kernel on awkward shapes (tails of every
    width, more than 31 words so the byte counters are flushed)."""
    from beexbench import kernels
    from beexbench.engine.embedding import FORMATS, PackedEmbedding

    ops = torch.ops.beexbench_kernels
    if kernels.backend() not in kernels.available_backends() or kernels.fallback_reason():
        raise RuntimeError(f"the x86 native kernels are not active: {kernels.fallback_reason()}")
    g = torch.Generator().manual_seed(seed)
    cases: list[dict] = []
    shapes = [(1, 1, 1), (2, 4, 63), (3, 5, 64), (5, 9, 65), (4, 8, 128), (3, 13, 130), (7, 17, 200),
              (2, 8, 1000), (3, 7, 2100), (2, 5, 4100)]
    backends = kernels.available_backends()

    def on_every_backend(fn):
        outs = []
        for b in backends:
            kernels.set_backend(b)
            outs.append(fn())
        kernels.set_backend("auto")
        for b, o in zip(backends[1:], outs[1:]):
            if not torch.equal(o.view(torch.uint8), outs[0].view(torch.uint8)):
                raise RuntimeError(f"x86 backends {backends[0]} and {b} disagree: no reference")
        return outs[0]

    for M, N, K in shapes:
        W = (K + 63) // 64
        x, sh = _rand(g, N, K), _rand(g, K)
        for shift in (False, True):
            ref = on_every_backend(lambda: ops.pack_rows(x + sh if shift else x))
            cases.append(dict(kind=1, head=(N, K, 0, int(shift), 0), arrays=[x] + ([sh] if shift else []), ref=ref,
                              what=f"pack N={N} K={K}{' +shift' if shift else ''}"))
        A, B = ops.pack_rows(_rand(g, M, K)), ops.pack_rows(_rand(g, N, K))
        cases.append(dict(kind=2, head=(M, N, K, 0, 0), arrays=[A, B], what=f"binary_matmul M={M} N={N} K={K}",
                          ref=on_every_backend(lambda: ops.binary_matmul(A, B, K))))
        xl, alpha, bias = _rand(g, M, K), torch.rand(N, generator=g) + 0.1, torch.randn(N, generator=g)
        for with_bias in (False, True):
            b = bias if with_bias else None
            cases.append(dict(kind=3, head=(M, N, K, int(with_bias), 0), arrays=[xl, B, alpha] + ([bias] if with_bias else []),
                              what=f"binary_linear M={M} N={N} K={K}{' +bias' if with_bias else ''}",
                              ref=on_every_backend(lambda: ops.binary_linear(xl, B, alpha, b, K))))
        # the engine's plinear: bits of (x + shift) against word-major weights wt[W][N]
        wt = B.t().contiguous()
        cases.append(dict(kind=4, head=(M, N, K, 1, 1), arrays=[xl, sh, wt, alpha, bias],
                          what=f"engine plinear n={M} N={N} K={K} +shift +bias",
                          ref=on_every_backend(lambda: ops.binary_linear(xl + sh, B, alpha, bias, K))))
    for bits in FORMATS:
        for d in (1, 7, 16, 33, 64, 100, 131):
            V, n = 11, 9
            emb = PackedEmbedding.from_table(_rand(g, V, d).nan_to_num(0.0, 3.0, -3.0), bits)
            ids = torch.randint(0, V, (n,), generator=g)
            pos = torch.randn(n, d, generator=g)
            codes = emb.codes.contiguous()
            scale = emb.scale.float().contiguous() if bits != 32 else torch.zeros(V)
            ref = emb(ids) + pos
            cases.append(dict(kind=5, head=(bits, V, d, n, codes.numel() * codes.element_size()),
                              arrays=[codes, scale, ids, pos], ref=ref, what=f"token rows {bits}-bit d={d}"))
    return cases


def write_cases(cases: list[dict], path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<q", len(cases)))
        for c in cases:
            fh.write(struct.pack("<7q", c["kind"], *c["head"], 0))
            for a in c["arrays"]:
                fh.write(a.contiguous().numpy().tobytes())


def read_outputs(path: Path, n_cases: int, n_paths: int) -> list[dict[int, bytes]]:
    data = path.read_bytes()
    at, out = 0, []
    for _ in range(n_cases):
        got = {}
        for _ in range(n_paths):
            p, nb = struct.unpack_from("<2q", data, at)
            at += 16
            got[p] = data[at:at + nb]
            at += nb
        out.append(got)
    if at != len(data):
        raise RuntimeError(f"harness output has {len(data) - at} stray bytes")
    return out


def build(cxx: str, out: Path, core_dir: Path = KERNELS, static: bool = False) -> None:
    cmd = [cxx, *CXXFLAGS, *(["-static"] if static else []), f"-I{core_dir}", str(HARNESS), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def compare(cases: list[dict], outs: list[dict[int, bytes]], paths: tuple[int, ...], where: str) -> list[str]:
    bad = []
    for c, got in zip(cases, outs):
        want = c["ref"].contiguous().numpy().tobytes()
        for p in paths:
            if got.get(p) != want:
                bad.append(f"{where} {PATHS[p]}: {c['what']} differs from x86 ({_first_diff(got.get(p), want)})")
    return bad


def _first_diff(got: bytes | None, want: bytes) -> str:
    if got is None:
        return "no output"
    if len(got) != len(want):
        return f"{len(got)} bytes, expected {len(want)}"
    a, b = np.frombuffer(got, np.uint8), np.frombuffer(want, np.uint8)
    return f"first differing byte {int(np.nonzero(a != b)[0][0])} of {len(want)}"


def glue_compiles(work: Path) -> list[str]:
    """Cross-compile binary_gemm.cpp and _engine.cpp for aarch64 against torch's headers (object
    files only): their NEON backend / instruction set compiles.  Returns the failures."""
    from torch.utils import cpp_extension

    inc = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    bad = []
    for src in (KERNELS / "binary_gemm.cpp", ROOT / "beexbench" / "engine" / "_engine.cpp"):
        cmd = [CROSS_CXX, "-std=c++20", "-O1", "-fPIC", "-ffp-contract=off", "-Wno-unused-function",
               "-DTORCH_EXTENSION_NAME=arm64_check", *inc, "-c", str(src), "-o", str(work / (src.stem + ".o"))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            bad.append(f"{src.name} does not cross-compile for aarch64:\n{r.stderr[-3000:]}")
    return bad


def run(core_dir: Path = KERNELS, glue: bool = True, cpus: tuple[str, ...] = QEMU_CPUS, seed: int = 0) -> list[str]:
    """Every failure found (empty: all bit-exact). Raises RuntimeError when the tools are missing."""
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    cases = make_cases(seed)
    with tempfile.TemporaryDirectory(prefix="beex-arm64-") as tmp:
        work = Path(tmp)
        write_cases(cases, work / "cases.bin")
        build("g++", work / "h_x86", core_dir)
        build(CROSS_CXX, work / "h_arm64", core_dir, static=True)
        bad = []
        subprocess.run([str(work / "h_x86"), str(work / "cases.bin"), str(work / "x86.out")], check=True,
                       capture_output=True)
        bad += compare(cases, read_outputs(work / "x86.out", len(cases), 1), (0,), "x86 harness")
        for cpu in cpus:
            out = work / f"arm64-{cpu}.out"
            subprocess.run([QEMU, "-cpu", cpu, str(work / "h_arm64"), str(work / "cases.bin"), str(out)], check=True,
                           capture_output=True)
            bad += compare(cases, read_outputs(out, len(cases), 2), (0, 1), f"arm64 (qemu -cpu {cpu})")
        if glue:
            bad += glue_compiles(work)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core", type=Path, default=KERNELS, help="folder holding bits_core.h (default: the tree's)")
    ap.add_argument("--no-glue", action="store_true", help="skip cross-compiling the torch extensions' sources")
    a = ap.parse_args(argv)
    try:
        bad = run(a.core, glue=not a.no_glue)
    except RuntimeError as exc:
        print(f"arm64 check cannot run: {exc}", file=sys.stderr)
        return 2
    for b in bad:
        print(b)
    print(f"arm64 check: every kernel x {len(QEMU_CPUS)} qemu CPUs x 2 paths: "
          + ("all bit-exact against x86" if not bad else f"{len(bad)} failures"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
