"""Real edge boards: what each declares (cores, SIMD, memory, typical power, GPU) and whether this
machine is one.

A board target runs only *on* its board: ``beexbench worker --targets rpi5`` (or ``--target board``,
whichever board this is) on a Raspberry Pi 5. It is found from the files the board's kernel writes
(``/proc/device-tree/model``, ``/etc/nv_tegra_release``) and ``/proc/cpuinfo`` (an AArch64 machine
whose cores are the profile's), never from a name alone: on any other machine, an x86 host or an
arm64 program under qemu user-mode emulation included (qemu shows the host's files), the target is
unavailable, so no host or emulator latency is ever recorded as a board's. Its records say
``emulated: false`` and carry the board's declaration (``target.board``), which the report shows
next to the target. On an x86 host, the thread-limited emulations (:mod:`.edge`: ``edge-1t``,
``edge-2t``, ``rpi4-like``) stay, labelled ``emulated``.

The declared figures are the vendors' (typical power is board power at idle / under a full CPU
load, as published or widely measured): a description, not a measurement.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from beexbench.targets.cpu import CpuTarget

ARM_MACHINES = ("aarch64", "arm64")


@dataclass(frozen=True)
class Board:
    name: str  # the target's name
    model: str  # as the device tree names it (matched as a prefix, case-insensitively)
    soc: str
    cores: int
    core: str
    cpu_parts: tuple[str, ...]  # /proc/cpuinfo "CPU part" of the core (ARM's part numbers)
    clock_ghz: float
    simd: str
    memory: str
    power_w: str
    gpu: str | None = None  # a CUDA GPU (Jetson): measured with the ``cuda`` target on the board
    tegra: bool = False  # NVIDIA Jetson: /etc/nv_tegra_release exists

    def declares(self) -> dict:
        """JSON-safe: what the profile declares (kept in every record made on the board)."""
        return {"name": self.name, "model": self.model, "soc": self.soc, "cores": self.cores, "core": self.core,
                "clock_ghz": self.clock_ghz, "simd": self.simd, "memory": self.memory, "typical_power_w": self.power_w,
                "gpu": self.gpu}

    def summary(self) -> str:
        gpu = f"; GPU {self.gpu}" if self.gpu else ""
        return (f"{self.model} ({self.soc}): {self.cores}x {self.core} {self.clock_ghz:g} GHz, {self.simd}, "
                f"{self.memory}, {self.power_w}{gpu}")


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("rpi4", "Raspberry Pi 4", "Broadcom BCM2711", 4, "Cortex-A72", ("0xd08",), 1.8,
          "NEON (asimd), no dotprod, no SVE", "1/2/4/8 GB LPDDR4-3200", "~2.7 W idle, ~6.4 W CPU load"),
    Board("rpi5", "Raspberry Pi 5", "Broadcom BCM2712", 4, "Cortex-A76", ("0xd0b",), 2.4,
          "NEON (asimd, dotprod), no SVE", "2/4/8/16 GB LPDDR4X-4267", "~3 W idle, ~8 W CPU load"),
    Board("jetson-nano", "NVIDIA Jetson Nano", "NVIDIA Tegra X1", 4, "Cortex-A57", ("0xd07",), 1.43,
          "NEON (asimd), no SVE", "4 GB LPDDR4 (shared with the GPU)", "5 W / 10 W power modes",
          gpu="128-core Maxwell (CUDA 10)", tegra=True),
    Board("jetson-orin-nano", "NVIDIA Jetson Orin Nano", "NVIDIA Orin", 6, "Cortex-A78AE", ("0xd42",), 1.5,
          "NEON (asimd, dotprod), no SVE", "4/8 GB LPDDR5 (shared with the GPU)", "7 W / 15 W (25 W) power modes",
          gpu="1024-core Ampere with 32 tensor cores (CUDA 12)", tegra=True),
)}


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _cpu_parts(cpuinfo: str) -> set[str]:
    return {line.split(":", 1)[1].strip().lower() for line in cpuinfo.splitlines()
            if line.split(":", 1)[0].strip().lower() == "cpu part" and ":" in line}


def detect(root: Path | str = "/", machine: str | None = None) -> tuple[Board | None, str]:
    """The board this machine is (or None), and the evidence, read under ``root`` (tests pass a
    folder of fake files): an AArch64 ``machine``, the device tree's model (or the Tegra release
    file with a Jetson model), and cores whose ``CPU part`` is the profile's where cpuinfo lists any."""
    root = Path(root)
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in ARM_MACHINES:
        return None, f"{machine or 'unknown'} machine, not AArch64"
    model = _read(root / "proc/device-tree/model")
    tegra = (root / "etc/nv_tegra_release").is_file()
    if not model:
        return None, "no /proc/device-tree/model (not a board's kernel, or an emulator)"
    # longest model first: "NVIDIA Jetson Orin Nano" before "NVIDIA Jetson Nano" could be a prefix clash
    for board in sorted(BOARDS.values(), key=lambda b: len(b.model), reverse=True):
        if not model.lower().startswith(board.model.lower()):
            continue
        if board.tegra and not tegra:
            return None, f"device tree says {model!r} but /etc/nv_tegra_release is missing"
        parts = _cpu_parts(_read(root / "proc/cpuinfo"))
        if parts and not parts & set(board.cpu_parts):
            return None, f"device tree says {model!r} but the cores are CPU part {', '.join(sorted(parts))}"
        return board, f"device tree: {model}" + (", /etc/nv_tegra_release" if tegra else "")
    return None, f"device tree model {model!r} is no known board ({', '.join(b.model for b in BOARDS.values())})"


class BoardTarget(CpuTarget):
    """The CPU of a real edge board, measured on the board itself (never emulated)."""

    emulated = False

    def __init__(self, board: Board | None, root: Path | str = "/", machine: str | None = None,
                 name: str | None = None, **overrides) -> None:
        found, evidence = detect(root, machine)
        self.board = board or found
        self.evidence = evidence
        self.on_board = found is not None and (board is None or found.name == board.name)
        title = name or (board.name if board else "board")
        what = self.board.summary() if self.board else "the edge board this machine is (detected)"
        super().__init__(name=title, description=f"{what}; real board, measured on it", **overrides)

    def available(self) -> tuple[bool, str]:
        if self.on_board:
            return True, ""
        want = self.board.model if self.board else "a known edge board"
        return False, (f"not running on {want} ({self.evidence}): a board target measures on the board only; "
                       "on this host use an emulated edge target (edge-1t, edge-2t, rpi4-like)")

    def describe(self) -> dict:
        out = super().describe()
        out["board"] = dict(self.board.declares(), detected=self.on_board, evidence=self.evidence) if self.board else None
        return out


def _named(name: str):
    def factory(**overrides) -> BoardTarget:
        return BoardTarget(BOARDS[name], **overrides)

    factory.__doc__ = f"{BOARDS[name].summary()} (real board)"
    return factory


def board(**overrides) -> BoardTarget:
    """Whichever known board this machine is (unavailable elsewhere)."""
    return BoardTarget(None, **overrides)


rpi4 = _named("rpi4")
rpi5 = _named("rpi5")
jetson_nano = _named("jetson-nano")
jetson_orin_nano = _named("jetson-orin-nano")
