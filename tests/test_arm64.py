"""The packed-bit kernels on AArch64 under qemu user-mode emulation: NEON and the portable
reference, bit for bit against the x86 torch ops (tests/arm64/check.py). Skipped, with the reason,
where aarch64-linux-gnu-g++ or qemu-aarch64-static is missing (Debian: apt-get install -y
g++-aarch64-linux-gnu qemu-user-static). The torch extensions' own sources are cross-compiled too
when BEEXBENCH_ARM64_GLUE=1 (about 40 s more). The whole-model engine (tests/arm64/engine_check.py: the
real ``infer`` op built against the aarch64 torch wheel's libtorch, every token-row format) runs when
BEEXBENCH_ARM64_ENGINE=1 and BEEXBENCH_ARM64_TORCH / BEEXBENCH_ARM64_ROOT name the aarch64 torch wheel and
an arm64 Debian root (about 2 min)."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("arm64_check", Path(__file__).with_name("arm64") / "check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

pytestmark = pytest.mark.skipif(check.missing_tools() is not None, reason=f"arm64 check: {check.missing_tools()}")


def test_every_kernel_on_arm64_equals_x86_bit_for_bit():
    assert check.run(glue=False) == []


def test_a_broken_neon_routine_fails_the_check(tmp_path):
    # drop bit 0 of every word in the NEON XOR / vcnt accumulation of the binary GEMM tiles
    core = (check.KERNELS / "bits_core.h").read_text()
    good = "acc8 = vaddq_u8(acc8, vcntq_u8(vreinterpretq_u8_u64(x)));"
    assert core.count(good) == 1
    (tmp_path / "bits_core.h").write_text(
        core.replace(good, "acc8 = vaddq_u8(acc8, vcntq_u8(vreinterpretq_u8_u64(vandq_u64(x, vdupq_n_u64(~1ull)))));"))
    bad = check.run(core_dir=tmp_path, glue=False, cpus=("cortex-a72",))
    assert bad, "the check passed a broken NEON routine"
    assert all(" neon: binary_" in b for b in bad)  # only the NEON GEMM paths, never the portable one
    assert any("binary_matmul" in b for b in bad) and any("binary_linear" in b for b in bad)


@pytest.mark.skipif(os.environ.get("BEEXBENCH_ARM64_GLUE") != "1", reason="set BEEXBENCH_ARM64_GLUE=1 (about 40 s)")
def test_the_torch_extensions_cross_compile_for_aarch64(tmp_path):
    assert shutil.which(check.CROSS_CXX)
    assert check.glue_compiles(tmp_path) == []


# --- the whole-model engine (tests/arm64/engine_check.py): about 2 min, so only on request ---
_espec = importlib.util.spec_from_file_location("arm64_engine_check",
                                                Path(__file__).with_name("arm64") / "engine_check.py")
engine_check = importlib.util.module_from_spec(_espec)
_espec.loader.exec_module(engine_check)
_ENGINE_WHY = ("set BEEXBENCH_ARM64_ENGINE=1 (about 2 min)" if os.environ.get("BEEXBENCH_ARM64_ENGINE") != "1"
               else engine_check.missing_tools())
needs_engine_check = pytest.mark.skipif(_ENGINE_WHY is not None, reason=f"arm64 engine check: {_ENGINE_WHY}")

# single-line breaks of the engine's NEON routines (beexbench/kernels/bits_core.h, namespace neon)
BREAKS = {
    # bit 0 of every word dropped in the XOR / vcnt products of the engine's word-major layout
    "products": ("vcntq_u8(vreinterpretq_u8_u64(veorq_u64(av, vld1q_u64(wr + 2 * k))))",
                 "vcntq_u8(vreinterpretq_u8_u64(vandq_u64(veorq_u64(av, vld1q_u64(wr + 2 * k)), vdupq_n_u64(~1ull))))"),
    # the int4 token rows' upper 8 nibbles decoded with bias 7 instead of 8
    "int4-rows": ("vcombine_u8(eight, eight)", "vcombine_u8(eight, vdup_n_u8(7))"),
}


@pytest.fixture(scope="module")
def engine_cases(tmp_path_factory):
    work = tmp_path_factory.mktemp("arm64-engine")
    (work / "cases").mkdir()
    return work, engine_check.make_cases(work / "cases")


@needs_engine_check
def test_the_whole_model_engine_on_arm64_equals_x86_bit_for_bit(engine_cases):
    """Every token-row format, exit rule, neon and portable, 1 and 2 threads, two qemu CPUs."""
    work, names = engine_cases
    assert {n.split("-b")[1].split("-")[0] for n in names} == {"32", "8", "4", "1"}
    assert engine_check.arm64_runs(work, names) == []


@needs_engine_check
@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_neon_engine_routine_fails_the_engine_check(engine_cases, tmp_path, name):
    work, names = engine_cases
    good, bad_line = BREAKS[name]
    core = (check.KERNELS / "bits_core.h").read_text()
    assert core.count(good) == 1
    (tmp_path / "engine").mkdir()
    (tmp_path / "kernels").mkdir()
    shutil.copy(engine_check.ENGINE / "_engine.cpp", tmp_path / "engine" / "_engine.cpp")
    (tmp_path / "kernels" / "bits_core.h").write_text(core.replace(good, bad_line))
    bad = engine_check.arm64_runs(work, names, engine_dir=tmp_path / "engine", cpus=("cortex-a72",), tag=name)
    assert bad, "the engine check passed a broken NEON routine"
    assert all(" neon x" in b for b in bad), bad[:3]  # the portable path is untouched
    hit = {b.split(": ")[1].split("-b")[1].split("-")[0] for b in bad}
    assert hit == ({"32", "8", "4", "1"} if name == "products" else {"4"}), hit
