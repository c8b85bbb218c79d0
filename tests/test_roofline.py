"""The per-host roofline (issue 30): the microbenchmark's loops compute what they claim (checksums
recomputed here by hand), the cache is keyed by host and reused, a foreign or corrupt cache file is
refused and measured again (JSON only, never unpickled), unavailable paths carry a reason, and every
cell's environment carries the roofline's key. No timed assertions."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest

from beexbench.errors import BeexError
from beexbench.profilers import roofline as rf
from beexbench.report import roofline as report_rf

M64 = (1 << 64) - 1
# path -> (lanes the checksum sums, ops per lane per iteration): ties the C++ ops count to the checksum
LANES = {"fp32-fma-avx512": (12 * 16, 2), "fp32-fma-avx2": (10 * 8, 2), "fp32-scalar": (8, 2),
         "bf16-avx512": (12 * 16, 4), "bf16-amx": (4 * 256, 64), "int8-avx512-vnni": (12 * 16, 4),
         "int8-avx-vnni": (12 * 8, 4), "int8-amx": (4 * 256, 64), "popcount-avx512": (64, 64),
         "popcount-avx2": (16, 64), "popcount-scalar": (6, 64)}
OPERANDS = {"fp32": (-1, 2), "bf16": (3, -2), "int8": (200, -3), "popcount": (0xF0E1_D2C3_B4A5_9687, 0x0123_4567_89AB_CDEF)}


def _rotl(x: int, r: int) -> int:
    r %= 64
    return ((x << r) | (x >> (64 - r))) & M64 if r else x


def expected_checksum(name: str, n: int, p: int, q: int) -> float:
    """What roofline.cpp's header says each loop leaves, computed by hand for ``n`` iterations."""
    if name == "mem-read":
        words = p // 8
        return n * words * (words - 1) // 2
    lanes, per_lane = LANES[name]
    if name.startswith("fp32"):
        total = 0
        for e in range(lanes):
            x = e
            for _ in range(n):
                x = x * p + q
            total += x
        return total
    if name.startswith("bf16"):
        return sum(e + n * (per_lane // 2) * p * q for e in range(lanes))
    if name.startswith("int8"):
        return sum(e + n * per_lane * (p & 0xFF) * q for e in range(lanes))
    return n * sum(bin(_rotl(p, e) ^ q).count("1") for e in range(lanes))


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory):
    """One build of the microbenchmark for the module (a shared test build cache when given)."""
    shared = os.environ.get("BEEXBENCH_TEST_BUILD_CACHE")
    root = Path(shared) if shared else tmp_path_factory.mktemp("rfbuild")
    mp = pytest.MonkeyPatch()
    mp.setenv("BEEXBENCH_CACHE", str(root))
    rf.native()
    yield root
    mp.undo()


@pytest.mark.parametrize("name", list(rf.PATHS))
def test_each_path_computes_the_hand_computed_checksum_or_says_why_not(build_cache, name):
    reason = rf.unavailable_reason(name)
    if reason is not None:  # e.g. AMX on AMD, AVX-512 on an AVX2-only host: a reason, never a figure
        assert reason.strip() and ("no " in reason or "refused" in reason or "not " in reason or "lacks" in reason)
        with pytest.raises(BeexError, match=name):
            rf.run_path(name, 1, 3, 1, 1)
        path = rf.measure_path(name, 2)
        assert (path.ops_per_s_1t, path.ops_per_s_all, path.unavailable_reason) == (None, None, reason)
        return
    if name == "mem-read":
        p, q = 4096 + 8, 0
        assert rf.ops_per_iter(name, p) == 4104
    else:
        p, q = OPERANDS[name.split("-")[0]]
        lanes, per_lane = LANES[name]
        assert rf.ops_per_iter(name) == lanes * per_lane  # the ops counted are the work the checksum shows
    for n in (3, 40):  # 40 crosses the AVX2 popcount's 31-iteration byte flush
        for threads in (1, 2):
            _, checksum = rf.run_path(name, threads, n, p, q)
            assert checksum == threads * expected_checksum(name, n, p, q), (name, n, threads)


def test_a_measured_path_has_positive_figures_and_a_spread(build_cache):
    path = rf.measure_path("fp32-scalar", threads_all=2, reps=2, target_s=0.002)
    assert path.unavailable_reason is None and path.ops_per_s_1t > 0 and path.ops_per_s_all > 0
    assert path.spread_1t >= 0 and path.spread_all >= 0 and path.unit == "FLOP/s"


def test_a_path_is_either_measured_or_unavailable_with_a_reason():
    kw = dict(name="x", isa="i", unit="FLOP/s", spread_1t=None, spread_all=None)
    with pytest.raises(ValueError, match="no figure"):
        rf.RooflinePath(ops_per_s_1t=1.0, ops_per_s_all=None, unavailable_reason="no avx512f", **kw)
    with pytest.raises(ValueError, match="finite positive"):
        rf.RooflinePath(ops_per_s_1t=None, ops_per_s_all=None, unavailable_reason=None, **kw)


def fake_roofline(key: str) -> rf.Roofline:
    paths = []
    for name, (isa, unit) in rf.PATHS.items():
        amx = name.endswith("amx")
        paths.append(rf.RooflinePath(name=name, isa=isa, unit=unit, ops_per_s_1t=None if amx else 1e9,
                                     ops_per_s_all=None if amx else 2e9, spread_1t=None if amx else 0.01,
                                     spread_all=None if amx else 0.02, unavailable_reason="no amx-tile" if amx else None))
    return rf.Roofline(format=rf.FORMAT, schema=rf.SCHEMA, key=key, cpu="Test CPU", flags=("avx2",), cores=2,
                       beexbench="0", threads_all=2, reps=5, mem_bytes_per_thread=1 << 28, load_avg_1m=0.1,
                       measured_at="2026-12-07T00:00:00+00:00", paths=tuple(paths))


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """A fresh cache folder and a fake, counted measurement (nothing is really measured)."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_measure(reps: int = 5, target_s: float = 0.03) -> rf.Roofline:
        calls.append(1)
        return fake_roofline(rf.roofline_key())

    monkeypatch.setattr(rf, "measure", fake_measure)
    return calls


def test_the_cache_is_keyed_by_host_and_reused(counted, monkeypatch):
    first = rf.host_roofline()
    again = rf.host_roofline()
    assert len(counted) == 1 and again == first  # the second call read the cache
    file = rf.cache_file()
    assert file.name == f"{rf.roofline_key()}.json"
    doc = json.loads(file.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the cache"))
    assert doc["key"] == rf.roofline_key() and doc["format"] == "beexbench-roofline"
    rf.host_roofline(refresh=True)
    assert len(counted) == 2
    ident = rf.host_identity()
    monkeypatch.setattr(rf, "host_identity", lambda: {**ident, "cores": ident["cores"] + 1})  # another host
    assert rf.roofline_key() != first.key
    rf.host_roofline()
    assert len(counted) == 3 and rf.cache_file().is_file() and file.is_file()


class _Bomb:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["BEEXBENCH_CACHE"]) / "UNPICKLED",))


@pytest.mark.parametrize("content", ["garbage", "pickle", "foreign", "nan", "schema", "symlink"])
def test_a_foreign_or_corrupt_cache_file_is_refused_and_measured_again(counted, content, capsys, tmp_path):
    file = rf.cache_file()
    file.parent.mkdir(parents=True)
    good = fake_roofline(rf.roofline_key()).to_dict()
    if content == "garbage":
        file.write_text("{not json")
    elif content == "pickle":
        file.write_bytes(pickle.dumps(_Bomb()))
    elif content == "foreign":
        file.write_text(json.dumps({**good, "key": "0123456789abcdef"}))
    elif content == "nan":
        file.write_text(json.dumps(good).replace('"load_avg_1m": 0.1', '"load_avg_1m": NaN'))
    elif content == "schema":
        file.write_text(json.dumps({**good, "paths": good["paths"][:3]}))
    else:
        (tmp_path / "elsewhere.json").write_text(json.dumps(good))
        file.symlink_to(tmp_path / "elsewhere.json")
    r = rf.host_roofline()
    assert len(counted) == 1 and r.key == rf.roofline_key()
    assert "refused" in capsys.readouterr().err
    assert not (Path(os.environ["BEEXBENCH_CACHE"]) / "UNPICKLED").exists()
    assert not file.is_symlink() and rf.read_cached()[0] == r  # replaced by a good file


def test_the_environment_section_carries_the_roofline_key_and_never_measures(counted):
    from beexbench.profilers.environment import capture_environment

    entry = capture_environment()["roofline"]
    assert entry["key"] == rf.roofline_key() and "beexbench roofline" in entry["unavailable_reason"]
    assert counted == []  # reading the environment did not measure
    rf.host_roofline()
    entry = capture_environment()["roofline"]
    assert entry["key"] == rf.roofline_key() and len(counted) == 1
    assert entry["bounds"]["popcount-avx512"]["ops_per_s_1t"] == 1e9
    assert entry["bounds"]["int8-amx"]["unavailable_reason"] == "no amx-tile"
    json.dumps(entry, allow_nan=False)


def test_share_of_bound_and_the_report_sentence():
    r = fake_roofline("k")
    assert rf.share_of_bound(5e8, "popcount-avx512", roofline=r) == 0.5
    assert rf.share_of_bound(5e8, "popcount-avx512", threads="all", roofline=r) == 0.25
    for bad in ((5e8, "int8-amx"), (5e8, "nope"), (0.0, "popcount-avx2"), (float("nan"), "popcount-avx2")):
        with pytest.raises(BeexError):
            rf.share_of_bound(*bad, roofline=r)
    summary = r.summary()
    value, sentence = report_rf.share(ops=128 * 512 * 512, latency_s=128 * 512 * 512 / 4e8,
                                      path="popcount-avx512", summary=summary)
    assert value == pytest.approx(0.4) and sentence == "at 40% of the popcount-avx512 bound (1 thread)"
    assert report_rf.share(1.0, 1.0, "int8-amx", summary) == (None, "the int8-amx bound is unavailable on this host: no amx-tile")
    table = report_rf.bounds_markdown(summary)
    assert "| int8-amx | AMX-INT8 tdpbusd | unavailable: no amx-tile |" in table and "1 G FLOP/s" in table
    html = report_rf.roofline_html([type("R", (), {"environment": {"roofline": summary, "node": {"name": "n1"}}})()])
    assert 'data-roofline="k"' in html and "2 G binary MAC/s" in html


def test_the_roofline_command_prints_the_cached_figures_and_refuses_a_bad_format(counted):
    rf.host_roofline()
    exe = shutil.which("beexbench") or pytest.skip("the beexbench console script is not installed")
    env = dict(os.environ)
    out = subprocess.run([exe, "roofline", "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["key"] == rf.roofline_key()  # read from the cache: the fake's figures
    assert json.loads(out.stdout)["paths"][0]["ops_per_s_1t"] == 1e9
    bad = subprocess.run([exe, "roofline", "--format", "xml"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "--format must be text or json" in bad.stderr
