"""RAPL energy counters read from the Linux powercap sysfs tree.

Layout (``root`` defaults to ``/sys/class/powercap``; tests pass synthetic trees)::

    intel-rapl:0/              name = "package-0", energy_uj, max_energy_range_uj
    intel-rapl:0/intel-rapl:0:0  name = "core"   (inside the package figure)
    intel-rapl:0/intel-rapl:0:2  name = "dram"   (outside it: added to the total)
    intel-rapl:1/              name = "psys" on some laptops (whole platform: recorded, not summed)

Counters are microjoules that wrap at ``max_energy_range_uj``; a negative delta means one wrap.
Two wraps between reads cannot be detected, so callers read at least every few minutes (a package
counter wraps after roughly 2^32 uJ / TDP, i.e. tens of minutes at most loads).
AMD CPUs expose the same layout under the same ``intel-rapl`` names on recent kernels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from beexbench.targets.base import CounterUnavailable

DEFAULT_ROOT = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"intel-rapl:\d+$")
_SUBZONE = re.compile(r"intel-rapl:\d+:\d+$")


@dataclass(frozen=True)
class RaplZone:
    key: str  # "package-0", "package-0/dram", ...
    path: Path
    max_range_uj: int
    in_total: bool  # packages and dram are disjoint; core/uncore/psys overlap them


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Microjoules between two raw counter reads, correcting a single wrap."""
    delta = after - before
    return delta + max_range if delta < 0 else delta


def _read_text(path: Path) -> str:
    return path.read_text().strip()


def find_zones(root: Path | str = DEFAULT_ROOT) -> list[RaplZone]:
    """The RAPL zones under ``root``; empty when there are none."""
    root = Path(root)
    if not root.is_dir():
        return []
    zones: list[RaplZone] = []
    for pkg in sorted(p for p in root.iterdir() if _PACKAGE.match(p.name)):
        try:
            pkg_name = _read_text(pkg / "name")
            zones.append(_zone(pkg, pkg_name, in_total=pkg_name.startswith("package") or pkg_name == "dram"))
            for sub in sorted(p for p in pkg.iterdir() if _SUBZONE.match(p.name)):
                sub_name = _read_text(sub / "name")
                zones.append(_zone(sub, f"{pkg_name}/{sub_name}", in_total=sub_name == "dram"))
        except FileNotFoundError:
            continue
    return zones


def _zone(path: Path, key: str, in_total: bool) -> RaplZone:
    return RaplZone(key, path, int(_read_text(path / "max_energy_range_uj")), in_total)


class RaplCounter:
    """Cumulative joules per RAPL domain since the counter was opened, wraps corrected."""

    provenance = "measured:rapl"

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        try:
            self.zones = find_zones(self.root)
        except PermissionError as err:
            raise CounterUnavailable(f"RAPL zones under {self.root} not readable ({err})") from err
        if not self.zones:
            raise CounterUnavailable(f"no RAPL counters under {self.root}")
        try:
            self._last = {z.key: self._raw(z) for z in self.zones}
        except PermissionError as err:
            raise CounterUnavailable(
                f"RAPL energy_uj under {self.root} not readable (permission denied; since 2020 kernels "
                "make it root-only: run as root or grant read access)"
            ) from err
        except (OSError, ValueError) as err:
            raise CounterUnavailable(f"RAPL energy_uj under {self.root} unreadable ({err})") from err
        self._acc_uj = {key: 0 for key in self._last}

    @staticmethod
    def _raw(zone: RaplZone) -> int:
        return int(_read_text(zone.path / "energy_uj"))

    def read(self) -> dict[str, float]:
        for zone in self.zones:
            raw = self._raw(zone)
            self._acc_uj[zone.key] += counter_delta(self._last[zone.key], raw, zone.max_range_uj)
            self._last[zone.key] = raw
        return {key: uj / 1e6 for key, uj in self._acc_uj.items()}

    def total(self, reading: Mapping[str, float]) -> float:
        return sum(reading[z.key] for z in self.zones if z.in_total)
