"""RAPL sysfs reader on synthetic powercap trees."""
from __future__ import annotations

from pathlib import Path

import pytest

from beexbench.targets import CounterUnavailable, CpuTarget
from beexbench.targets._rapl import RaplCounter, counter_delta, find_zones

MAX = 262_143_328_850  # a real package max_energy_range_uj


def make_zone(path: Path, name: str, energy_uj: int, max_uj: int = MAX) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "powercap"
    pkg = make_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    core = make_zone(pkg / "intel-rapl:0:0", "core", 500_000)
    dram = make_zone(pkg / "intel-rapl:0:1", "dram", 2_000_000, max_uj=65_712_999_613)
    psys = make_zone(root / "intel-rapl:1", "psys", 7_000_000)
    make_zone(root / "intel-rapl-mmio:0", "package-0", 0)  # duplicate MMIO interface: ignored
    return root, {"pkg": pkg, "core": core, "dram": dram, "psys": psys}


def test_counter_delta_by_hand():
    assert counter_delta(100, 350, 1000) == 250
    assert counter_delta(900, 100, 1000) == 200  # wrapped once: (1000 - 900) + 100


def test_zones_found_and_totals_only_disjoint_domains(tree):
    root, _ = tree
    zones = {z.key: z.in_total for z in find_zones(root)}
    assert zones == {"package-0": True, "package-0/core": False, "package-0/dram": True, "psys": False}


def test_normal_delta_in_joules(tree):
    root, z = tree
    c = RaplCounter(root)
    set_energy(z["pkg"], 1_000_000 + 3_500_000)  # +3.5 J
    set_energy(z["core"], 500_000 + 2_000_000)  # +2 J (inside the package)
    set_energy(z["dram"], 2_000_000 + 250_000)  # +0.25 J
    set_energy(z["psys"], 7_000_000 + 9_000_000)
    r = c.read()
    assert r["package-0"] == pytest.approx(3.5)
    assert r["package-0/core"] == pytest.approx(2.0)
    assert r["package-0/dram"] == pytest.approx(0.25)
    assert r["psys"] == pytest.approx(9.0)
    assert c.total(r) == pytest.approx(3.75)  # package + dram; core and psys overlap them


def test_wrap_is_corrected(tree):
    root, z = tree
    set_energy(z["pkg"], MAX - 1_000_000)
    c = RaplCounter(root)
    set_energy(z["pkg"], 2_000_000)  # wrapped: 1 J to the top + 2 J after
    assert c.read()["package-0"] == pytest.approx(3.0)
    set_energy(z["pkg"], 2_500_000)  # accumulates across reads
    assert c.read()["package-0"] == pytest.approx(3.5)


def test_missing_tree_is_unavailable(tmp_path):
    with pytest.raises(CounterUnavailable, match="no RAPL counters"):
        RaplCounter(tmp_path / "nothing")


def test_permission_denied_is_unavailable_and_energy_falls_back(tree, monkeypatch):
    root, _ = tree
    real_read_text = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)  # chmod 000 means nothing to root
    with pytest.raises(CounterUnavailable, match="permission denied"):
        RaplCounter(root)

    from beexbench.profilers.energy import track_energy

    monkeypatch.setenv("BEEXBENCH_CPU_TDP_W", "100")
    with track_energy(CpuTarget(threads=1, rapl_root=root), n_samples=1, idle_seconds=0.01) as e:
        sum(range(10_000))
    assert e.record.provenance == "estimated:tdp-share"
    assert "permission denied" in e.record.inputs["counter_unavailable"]


def test_cpu_target_uses_rapl_tree_for_energy(tree):
    root, z = tree
    from beexbench.profilers.energy import track_energy

    with track_energy(CpuTarget(threads=1, rapl_root=root), n_samples=4, idle_seconds=0.01) as e:
        set_energy(z["pkg"], 1_000_000 + 8_000_000)
    rec = e.record
    assert rec.provenance == "measured:rapl"
    assert rec.idle_watts == 0.0  # the synthetic counter did not move while idle
    assert rec.joules_raw == pytest.approx(8.0) and rec.joules == pytest.approx(8.0)
    assert rec.joules_per_sample == pytest.approx(2.0)
    assert rec.domains["package-0"] == pytest.approx(8.0)
