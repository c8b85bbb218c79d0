"""The arm64 engine check: the packed engine's whole-model op (``infer`` in
beexbench/engine/_engine.cpp, what beexformer-packed runs) on AArch64 under qemu user-mode
emulation, on its "neon" and "portable" instruction sets, bit for bit against x86.

    BEEXBENCH_ARM64_TORCH=/path/torch-2.13.0-cp311-cp311-manylinux_2_28_aarch64.whl \\
    BEEXBENCH_ARM64_ROOT=/path/arm64-debian-root  python tests/arm64/engine_check.py

1. On x86: small beexformer models are nudged off their initialisation (tests/nudged.py) and
   derived to beexformer-packed; for every token-row format (fp32, int8, int4, 1-bit rows:
   ``embedding.FORMATS``) and exit rule (fractional entropy, absolute entropy, none) the op's exact
   inputs (``_fused.whole_tensors`` + the rule's arguments) are written as raw files, and the
   reference logits and exit blocks as .npy: the x86 op on every x86 instruction set and 1 and 2
   threads, which must all equal the module path (``infer_modules``) first.
2. tests/arm64/engine_main.cpp (which #includes _engine.cpp, so the very code of the torch
   extension, TORCH_LIBRARY and all) is built with aarch64-linux-gnu-g++ against the aarch64
   torch wheel's headers, libtorch_cpu and libc10 (that wheel is CUDA-enabled: the two CUDA
   libraries libtorch_cpu names, libcudart / libcupti, are replaced by generated stubs that are
   never called), and run under ``qemu-aarch64-static -L ROOT`` (ROOT: an arm64 Debian root giving
   glibc, libstdc++ and zlib, e.g. the first stage of ``debootstrap --arch=arm64 --foreign
   --variant=minbase bookworm ROOT``) for every CPU model in ``QEMU_CPUS``.
3. Every output (neon and portable, 1 and 2 threads) must equal the x86 reference byte for byte:
   the tolerance of the x86 paths (tests/test_engine_native.py ``same``: torch.equal).

What it does not check: arm64 CPython and the torch binding (the op is called from C++, not
through torch.ops), and any speed: latency under qemu means nothing and is never measured.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "beexbench" / "engine"
MAIN = Path(__file__).with_name("engine_main.cpp")
CROSS_CXX, CROSS_CC, QEMU, NM = "aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc", "qemu-aarch64-static", \
    "aarch64-linux-gnu-nm"
QEMU_CPUS = ("cortex-a72", "max")  # a Raspberry Pi 4's core, and every feature qemu knows
ISAS = ("neon", "portable")
TORCH_ENV, ROOT_ENV = "BEEXBENCH_ARM64_TORCH", "BEEXBENCH_ARM64_ROOT"
CFLAGS = ["-std=c++20", "-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-Wall",
          "-Wno-unused-function", "-Wno-uninitialized", "-Wno-maybe-uninitialized"]  # engine/_native.py's
CONFIGS = {  # one word and several, both FFNs, a block without an exit head
    "odd-slfn": {"d_model": 40, "n_heads": 4, "n_blocks": 3, "d_ff": 72},
    "d96-gelu": {"d_model": 96, "n_heads": 4, "n_blocks": 3, "d_ff": 160, "ffn": "gelu"},
    "d45-one-head": {"d_model": 45, "n_heads": 5, "n_blocks": 3, "d_ff": 50, "exit_heads": False},
}
DTYPES = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64", torch.int32: "i32", torch.int16: "i16",
          torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool"}


def missing_tools() -> str | None:
    """Why the check cannot run here (None when it can)."""
    gone = [t for t in (CROSS_CXX, CROSS_CC, QEMU, NM) if shutil.which(t) is None]
    if gone:
        return f"{', '.join(gone)} not found (Debian: apt-get install -y g++-aarch64-linux-gnu qemu-user-static)"
    tw, rt = os.environ.get(TORCH_ENV), os.environ.get(ROOT_ENV)
    if not tw or not Path(tw).exists():
        return f"set {TORCH_ENV} to an aarch64 torch wheel (pip download torch==2.13.0 --platform " \
               "manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.11 --no-deps) or its unpacked folder"
    if not rt or not (Path(rt) / "usr" / "lib" / "aarch64-linux-gnu" / "libstdc++.so.6").exists():
        return f"set {ROOT_ENV} to an arm64 Debian root (debootstrap --arch=arm64 --foreign --variant=minbase " \
               "bookworm ROOT)"
    return None


def torch_tree(src: Path) -> Path:
    """A folder holding torch/include and torch/lib of the aarch64 wheel ``src`` (unpacked once
    into the temp folder when ``src`` is the wheel)."""
    if src.is_dir():
        return src
    dest = Path(tempfile.gettempdir()) / f"beex-arm64-{src.stem}"
    done = dest / ".unpacked"
    if not done.exists():
        with zipfile.ZipFile(src) as z:
            names = [n for n in z.namelist() if n.startswith("torch/include/") or (
                n.startswith("torch/lib/") and "cuda" not in n and "nvrtc" not in n and "nvshmem" not in n)]
            z.extractall(dest, names)
        done.touch()
    return dest


def stubs(lib: Path, root: Path, out: Path) -> None:
    """Empty stand-ins for the libraries libtorch_cpu / libc10 need and neither the wheel nor
    ROOT has (the CUDA runtime and CUPTI of a CUDA wheel): every symbol they import from them,
    under its version, as a function that returns 999. The engine never calls them."""
    out.mkdir(parents=True, exist_ok=True)
    have = {p.name for d in (lib, root / "usr" / "lib" / "aarch64-linux-gnu") for p in d.iterdir()}
    wanted: dict[str, set[str]] = {}
    for so in ("libtorch_cpu.so", "libc10.so"):
        nm = subprocess.run([NM, "-D", "--undefined-only", str(lib / so)], capture_output=True, text=True, check=True)
        for line in nm.stdout.splitlines():
            sym = line.split()[-1]
            if "@" in sym:
                name, _, ver = sym.partition("@")
                if ver.startswith("lib") and ver not in have:
                    wanted.setdefault(ver, set()).add(name)
    for soname, syms in wanted.items():
        (out / f"{soname}.c").write_text("".join(f"int {s}(void) {{ return 999; }}\n" for s in sorted(syms)))
        (out / f"{soname}.map").write_text(f"{soname} {{ global: *; }};\n")
        subprocess.run([CROSS_CC, "-shared", "-fPIC", "-o", str(out / soname), str(out / f"{soname}.c"),
                        f"-Wl,-soname,{soname}", f"-Wl,--version-script,{out / f'{soname}.map'}"], check=True)


def build(tree: Path, root: Path, engine_dir: Path, out: Path) -> Path:
    """engine_main for aarch64, linked to the wheel's libtorch_cpu (about 15 s)."""
    inc, lib, stub = tree / "torch" / "include", tree / "torch" / "lib", out.parent / "stubs"
    stubs(lib, root, stub)
    search = f"{lib}:{stub}"
    cmd = [CROSS_CXX, *CFLAGS, f"-I{engine_dir}", f"-I{inc}", f"-I{inc / 'torch/csrc/api/include'}", str(MAIN),
           "-o", str(out), f"-L{lib}", "-Wl,--no-as-needed", "-ltorch_cpu", "-lc10", "-Wl,--disable-new-dtags",
           f"-Wl,-rpath,{search}", f"-Wl,-rpath-link,{search}:{root / 'usr/lib/aarch64-linux-gnu'}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"engine_main does not build for aarch64:\n{r.stderr[-4000:]}")
    return out


def make_cases(work: Path, seed: int = 0) -> list[str]:
    """Inputs (raw files + manifest.txt) and x86 references (.npy) of every case; returns their names."""
    sys.path.insert(0, str(ROOT / "tests"))
    from nudged import nudged

    from beexbench.adapters.base import TaskSpec
    from beexbench.adapters.registry import get_adapter_class
    from beexbench.engine import _fused, _native
    from beexbench.engine.embedding import FORMATS, PackedEmbedding
    from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy

    ops = _native.ops()
    if ops is None:
        raise RuntimeError("the x86 packed engine is not available here (no reference)")
    spec = TaskSpec(task="arm64", num_labels=3, vocab_size=50, max_len=24)
    g = torch.Generator().manual_seed(seed)

    def data(n: int, holes: bool = False):
        lengths = torch.randint(1, spec.max_len + 1, (n,), generator=g)
        mask = torch.arange(spec.max_len)[None, :] < lengths[:, None]
        if holes:
            mask &= torch.rand(mask.shape, generator=g) > 0.3
        return (torch.randint(1, spec.vocab_size, (n, spec.max_len), generator=g) * mask).contiguous(), mask

    lines: list[str] = []
    names: list[str] = []

    def put(name: str, t: torch.Tensor) -> str:
        t = t.detach().contiguous()
        (work / f"{name}.bin").write_bytes(t.numpy().tobytes() if t.numel() else b"")
        lines.append(f"tensor {name} {DTYPES[t.dtype]} {t.dim()} {' '.join(map(str, t.shape))}".rstrip())
        return name

    inputs = [data(12), data(8, holes=True), data(1)]
    for i, (ids, mask) in enumerate(inputs):
        put(f"ids{i}", ids), put(f"mask{i}", mask)
    rules = {"frac": FractionalEntropy(0.1), "abs": AbsoluteEntropy(1.05), "final": ExitRule()}
    x86_isas = [isa for isa in ("portable", "avx2", "avx512") if _isa_ok(ops, isa)]
    threads = torch.get_num_threads()
    for cname, enc in CONFIGS.items():
        ids, mask = data(64)
        fl = nudged("beexformer", spec, {"encoder": enc}, ids, mask, ids[:, 0] % spec.num_labels, 12, seed=seed)
        model = get_adapter_class("beexformer-packed").derive(fl, None).model
        table = fl.module().tok.weight.detach().clone()
        for bits in FORMATS:
            model.tok = PackedEmbedding.from_table(table, bits)
            (fparams, words, meta, codes, scale, ln_eps), real_tok = _fused.whole_tensors(model)
            assert real_tok, "the token rows should be the engine's"
            m = f"{cname}-b{bits}"
            tens = [put(f"{m}-{k}", t) for k, t in
                    (("fparams", fparams), ("words", words), ("meta", meta), ("codes", codes), ("scale", scale))]
            for rname, rule in rules.items():
                args = _fused._rule_args(rule)
                for i, (ids, mask) in enumerate(inputs):
                    case = f"{m}-{rname}-x{i}"
                    want = model.infer_modules(ids, mask, rule)
                    for isa in x86_isas:
                        ops.engine_isa(isa)
                        for t in (1, 2):
                            torch.set_num_threads(t)
                            lo, bl = ops.infer(ids, mask, fparams, words, meta, codes, scale, ln_eps, *args)
                            if not (torch.equal(lo, want.logits) and torch.equal(bl, want.exit_block)):
                                raise RuntimeError(f"x86 {isa} x{t} differs from the module path on {case}")
                    ops.engine_isa("auto")
                    torch.set_num_threads(threads)
                    np.save(work / f"{case}.logits.npy", lo.numpy())
                    np.save(work / f"{case}.blocks.npy", bl.numpy())
                    a, b, min_exit, lower = args[1], args[2], args[3], args[4]
                    lines.append(f"case {case} ids{i} mask{i} {' '.join(tens)} {ln_eps!r} {args[0]} {float(a)!r} "
                                 f"{float(b)!r} {min_exit} {int(lower)}")
                    names.append(case)
    (work / "manifest.txt").write_text("\n".join(lines) + "\n")
    return names


def _isa_ok(ops, isa: str) -> bool:
    try:
        return ops.engine_isa(isa) == isa
    except RuntimeError:
        return False
    finally:
        ops.engine_isa("auto")


def compare(work: Path, out: Path, names: list[str], where: str) -> list[str]:
    """Every output that is not the x86 reference byte for byte (or is missing)."""
    bad = []
    for case in names:
        for kind, dt in (("logits", np.float32), ("blocks", np.int64)):
            want = np.load(work / f"{case}.{kind}.npy", allow_pickle=False)
            for isa in ISAS:
                for t in (1, 2):
                    f = out / f"{case}.{isa}.t{t}.{kind}.bin"
                    got = np.frombuffer(f.read_bytes(), dt) if f.exists() else None
                    if got is None or got.size != want.size:
                        bad.append(f"{where} {isa} x{t}: {case} {kind}: no or wrong-sized output")
                    elif got.tobytes() != want.astype(dt).tobytes():
                        bits = np.int64 if dt is np.int64 else np.uint32  # floats: compare their bits
                        d = np.nonzero(got.view(bits) != want.astype(dt).reshape(-1).view(bits))[0]
                        extra = f", max |diff| {np.abs(got - want.reshape(-1)).max():.3g}" if kind == "logits" else \
                            f": got {got.tolist()}, want {want.tolist()}"
                        bad.append(f"{where} {isa} x{t}: {case} {kind} differ from x86 ({d.size} elements{extra})")
    return bad


def arm64_runs(work: Path, names: list[str], engine_dir: Path = ENGINE, cpus: tuple[str, ...] = QEMU_CPUS,
               tag: str = "good") -> list[str]:
    """Build engine_main from ``engine_dir``/_engine.cpp and run the cases made in ``work``/cases
    (``make_cases``) under qemu on every CPU model of ``cpus``: every failure found."""
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    tree, root = torch_tree(Path(os.environ[TORCH_ENV])), Path(os.environ[ROOT_ENV])
    exe = build(tree, root, engine_dir, work / f"engine_main-{tag}")
    bad = []
    for cpu in cpus:
        out = work / f"out-{tag}-{cpu}"
        out.mkdir(exist_ok=True)
        r = subprocess.run([QEMU, "-cpu", cpu, "-L", str(root), str(exe), str(work / "cases"), str(out), *ISAS],
                           capture_output=True, text=True, timeout=1200)
        if r.returncode:
            bad.append(f"arm64 (qemu -cpu {cpu}): engine_main failed ({r.returncode}): {r.stderr[-2000:]}")
            continue
        bad += compare(work / "cases", out, names, f"arm64 (qemu -cpu {cpu})")
    return bad


def run(engine_dir: Path = ENGINE, cpus: tuple[str, ...] = QEMU_CPUS, seed: int = 0,
        keep: Path | None = None) -> list[str]:
    """Every failure found (empty: all bit-exact). Raises RuntimeError when it cannot run."""
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="beex-arm64-engine-") as tmp:
        work = keep or Path(tmp)
        (work / "cases").mkdir(parents=True, exist_ok=True)
        names = make_cases(work / "cases", seed)
        return arm64_runs(work, names, engine_dir, cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", type=Path, default=ENGINE, help="folder holding _engine.cpp (default: the tree's)")
    ap.add_argument("--keep", type=Path, help="write cases, binary and outputs here (kept)")
    a = ap.parse_args(argv)
    try:
        bad = run(a.engine, keep=a.keep)
    except RuntimeError as exc:
        print(f"arm64 engine check cannot run: {exc}", file=sys.stderr)
        return 2
    for b in bad:
        print(b)
    print(f"arm64 engine check: {len(CONFIGS)} models x every token-row format x 3 rules x 3 batches x "
          f"{len(QEMU_CPUS)} qemu CPUs x {'/'.join(ISAS)} x 1-2 threads: "
          + ("all bit-exact against x86" if not bad else f"{len(bad)} failures"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
