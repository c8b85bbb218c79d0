"""Real edge boards (beexbench/targets/boards.py): found from the files a board's kernel writes
(fed here as fake files), unavailable anywhere else, and labelled apart from the emulated edge
targets in records and the report."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from beexbench.errors import BeexError
from beexbench.report.frame import target_label
from beexbench.targets import get_target
from beexbench.targets.boards import BOARDS, BoardTarget, detect
from test_report import make_record

CPUINFO = "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"


def fake_board(root: Path, model: str | None, part: str | None = None, cores: int = 4, tegra: bool = False) -> Path:
    if model is not None:
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\0")  # as the kernel writes it
    if part is not None:
        (root / "proc").mkdir(exist_ok=True)
        (root / "proc/cpuinfo").write_text("".join(CPUINFO.format(i=i, part=part) for i in range(cores)))
    if tegra:
        (root / "etc").mkdir()
        (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    return root


@pytest.mark.parametrize("model, part, tegra, want", [
    ("Raspberry Pi 5 Model B Rev 1.0", "0xd0b", False, "rpi5"),
    ("Raspberry Pi 4 Model B Rev 1.4", "0xd08", False, "rpi4"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "0xd42", True, "jetson-orin-nano"),
    ("NVIDIA Jetson Nano Developer Kit", "0xd07", True, "jetson-nano"),
])
def test_each_board_is_found_from_its_files(tmp_path, model, part, tegra, want):
    board, evidence = detect(fake_board(tmp_path, model, part, tegra=tegra), machine="aarch64")
    assert board is BOARDS[want]
    assert model in evidence


@pytest.mark.parametrize("model, part, tegra, machine, why", [
    ("Raspberry Pi 5 Model B Rev 1.0", "0xd0b", False, "x86_64", "not AArch64"),
    (None, "0xd0b", False, "aarch64", "no /proc/device-tree/model"),  # e.g. an arm64 program under qemu-user
    ("Raspberry Pi 5 Model B Rev 1.0", "0xd08", False, "aarch64", "CPU part 0xd08"),  # an A72 is no Pi 5
    ("NVIDIA Jetson Orin Nano Developer Kit", "0xd42", False, "aarch64", "nv_tegra_release is missing"),
    ("Pine64 RockPro64", "0xd08", False, "aarch64", "no known board"),
])
def test_anything_else_is_no_board_and_says_why(tmp_path, model, part, tegra, machine, why):
    board, evidence = detect(fake_board(tmp_path, model, part, tegra=tegra), machine=machine)
    assert board is None
    assert why in evidence


def test_a_named_board_runs_only_on_that_board(tmp_path):
    pi4 = fake_board(tmp_path, "Raspberry Pi 4 Model B Rev 1.4", "0xd08")
    assert get_target("rpi4", root=pi4, machine="aarch64").available() == (True, "")
    ok, reason = get_target("rpi5", root=pi4, machine="aarch64").available()
    assert not ok and "Raspberry Pi 5" in reason
    with pytest.raises(BeexError, match="emulated edge target"):
        get_target("rpi5", root=pi4, machine="x86_64").require_available()


def test_the_board_target_is_whichever_board_this_is(tmp_path):
    t = get_target("board", root=fake_board(tmp_path, "Raspberry Pi 5 Model B Rev 1.1", "0xd0b"), machine="aarch64")
    assert t.available()[0] and t.board.name == "rpi5"
    d = t.describe()
    assert d["emulated"] is False
    assert d["board"]["cores"] == 4 and d["board"]["core"] == "Cortex-A76" and d["board"]["detected"] is True
    assert not get_target("board", root=tmp_path / "elsewhere", machine="aarch64").available()[0]


def test_jetson_declares_its_cuda_gpu_and_the_pis_none():
    assert "CUDA" in BOARDS["jetson-orin-nano"].declares()["gpu"]
    assert BOARDS["rpi5"].declares()["gpu"] is None
    assert all("NEON" in b.simd for b in BOARDS.values())


def test_list_targets_shows_the_boards_and_what_they_declare():
    from beexbench.cli.list_cmd import _collect  # the rows `beexbench list targets` prints

    rows = {r["name"]: r for r in _collect("targets")}
    assert rows["rpi5"]["origin"] == "board" and rows["rpi4-like"]["origin"] == "emulated"
    assert "4x Cortex-A76 2.4 GHz" in rows["rpi5"]["description"]
    assert "~3 W idle" in rows["rpi5"]["description"]
    assert "1024-core Ampere" in rows["jetson-orin-nano"]["description"]


def test_records_from_an_emulated_target_and_a_real_board_are_labelled_apart(tmp_path):
    emulated = get_target("rpi4-like").describe()
    real = get_target("rpi4", root=fake_board(tmp_path, "Raspberry Pi 4 Model B Rev 1.4", "0xd08"),
                      machine="aarch64").describe()
    base = make_record(target="rpi4", cpu="Cortex-A72")
    on_emulation = dataclasses.replace(base, target=emulated)
    on_board = dataclasses.replace(base, target=real)
    assert target_label(on_emulation) == "rpi4 · emulated on Cortex-A72"
    assert target_label(on_board) == "rpi4 · on a Raspberry Pi 4 board (Cortex-A72)"
