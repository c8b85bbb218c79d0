"""The packed-bit kernels on AArch64 under qemu user-mode emulation: NEON and the portable
reference, bit for bit against the x86 torch ops (tests/arm64/check.py). Skipped, with the reason,
where aarch64-linux-gnu-g++ or qemu-aarch64-static is missing (Debian: apt-get install -y
g++-aarch64-linux-gnu qemu-user-static). The torch extensions' own sources are cross-compiled too
when BEEXBENCH_ARM64_GLUE=1 (about 40 s more)."""
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
