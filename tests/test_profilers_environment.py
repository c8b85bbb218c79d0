"""Environment capture and noise warnings."""
from __future__ import annotations

import json
import socket

from beexbench.profilers import environment as env
from beexbench.targets import get_target


def test_capture_is_complete_and_json_safe():
    t = get_target("edge-1t")
    d = env.capture_environment(t, seed=7, config={"model": "beex", "lr": 1e-3})
    json.dumps(d)
    for key in ("timestamp_utc", "python", "packages", "git", "os", "cpu", "gpus", "seed", "config",
                "target", "threads_used", "torch_threads", "hostname_sha256"):
        assert key in d
    assert set(d["packages"]) >= {"torch", "numpy", "pandas", "fvcore", "tokenizers"}
    assert d["seed"] == 7 and d["config"]["model"] == "beex"
    assert d["threads_used"] == 1 and d["target"]["emulated"] is True
    assert socket.gethostname() not in json.dumps(d)
    assert d["timestamp_utc"].endswith("+00:00")
    assert d["cpu"]["model"] and d["cpu"]["logical_cores"] >= 1


def test_missing_package_reported_as_not_installed():
    assert env._version("surely-not-a-real-package-xyz") == "not installed"


def test_git_state_outside_a_repo(tmp_path):
    assert env.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_cpu_flags_trimmed_to_relevant():
    x86 = {"flags": "fpu vme sse4_2 avx avx2 avx512f avx512_vnni popcnt ht syscall"}
    assert env.cpu_flags(x86) == ["avx", "avx2", "avx512_vnni", "avx512f", "popcnt", "sse4_2"]
    arm = {"Features": "fp asimd evtstrm aes crc32 asimddp sve i8mm"}
    assert env.cpu_flags(arm) == ["asimd", "asimddp", "i8mm", "sve"]


def _cpufreq(tmp_path, governor, freqs):
    d = tmp_path / "cpu0" / "cpufreq"
    d.mkdir(parents=True)
    (d / "scaling_governor").write_text(governor + "\n")
    (d / "scaling_cur_freq").write_text(f"{freqs}\n")
    return tmp_path


def test_frequency_warnings_from_synthetic_cpufreq(tmp_path):
    root = _cpufreq(tmp_path / "a", "powersave", 2_000_000)
    w = env.frequency_warnings([0], root=root, samples=2, interval_s=0)
    assert len(w) == 1 and "governor: powersave" in w[0]
    root = _cpufreq(tmp_path / "b", "performance", 3_000_000)
    assert env.frequency_warnings([0], root=root, samples=2, interval_s=0) == []
    assert env.frequency_warnings([0], root=tmp_path / "none", samples=1) == []  # no cpufreq: silent


def test_noise_warnings_are_sentences():
    w = env.noise_warnings(get_target("cpu"))
    assert isinstance(w, list) and all(isinstance(s, str) and s for s in w)
