"""Issue 26: no silent slow path. Every BEEXBENCH_* setting has one parser (a bad value is a
one-line error, never a fallback); a deployment whose declared fast path cannot run fails with
the reason unless the user allowed the fallback, which is then recorded and labelled; a batch
size or length the test split cannot fill is a warning in the record; a lock file that is
hard-linked, not a regular file or not the user's is refused before anything is written to it.
(The whole chain through the real command, with the build lock held: test_reliability_build.py.)"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from beexbench import _io, settings
from beexbench import _native_build as nb
from beexbench.config import LatencySettings
from beexbench.errors import BeexError
from beexbench.results.implementation import FastPathUnavailable, Implementation, implementation_of, settle
from beexbench.results.metrics import CellMetrics
from beexbench.runner.measure import skipped_sizes

FAST = "the native C++ engine on the native packed-bit kernels"


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, raw", [
    ("BEEXBENCH_BUILD_TIMEOUT", "soon"), ("BEEXBENCH_BUILD_TIMEOUT", "nan"), ("BEEXBENCH_BUILD_TIMEOUT", "-1"),
    ("BEEXBENCH_BUILD_TIMEOUT", "inf"), ("BEEXBENCH_KERNELS", "avx9"), ("BEEXBENCH_ENGINE", "fast"),
    ("BEEXBENCH_KERNELS_VERBOSE", "maybe"), ("BEEXBENCH_ALLOW_FALLBACK", "2"), ("BEEXBENCH_CPU_TDP_W", "0"),
    ("BEEXBENCH_CPU_TDP_W", "nan"), ("BEEXBENCH_CPU_TDP_W", "1e9"), ("BEEXBENCH_ISOLATED", "yes"),
    ("BEEXBENCH_NODE_NAME", "a\u202eb"), ("BEEXBENCH_NODE_NAME", "x" * 101),
])
def test_every_bad_setting_is_one_line_naming_it(name, raw):
    (line,) = settings.problems({name: raw})
    assert line.startswith(f"environment variable {name}=") and "\n" not in line and line.endswith("fix or unset it")
    with pytest.raises(settings.SettingError):
        settings.get(name, {name: raw})


def test_cache_that_is_a_file_is_a_problem(tmp_path):
    (tmp_path / "f").write_text("x")
    assert settings.problems({"BEEXBENCH_CACHE": str(tmp_path / "f")}) == [
        f"environment variable BEEXBENCH_CACHE={str(tmp_path / 'f')!r} names something that is not a folder: fix or unset it"]
    assert settings.problems({"BEEXBENCH_CACHE": str(tmp_path / "new")}) == []  # created when needed


def test_good_and_unset_settings_parse_to_their_values():
    env = {"BEEXBENCH_BUILD_TIMEOUT": " 2.5 ", "BEEXBENCH_KERNELS": "Torch-Fallback", "BEEXBENCH_ENGINE": "STEPS",
           "BEEXBENCH_KERNELS_VERBOSE": "0", "BEEXBENCH_ALLOW_FALLBACK": "yes", "BEEXBENCH_CPU_TDP_W": "45",
           "BEEXBENCH_ISOLATED": "1", "BEEXBENCH_NODE_NAME": "rack 7"}
    assert settings.problems(env) == []
    got = {name: settings.get(name, env) for name in env}
    assert got == {"BEEXBENCH_BUILD_TIMEOUT": 2.5, "BEEXBENCH_KERNELS": "fallback", "BEEXBENCH_ENGINE": "steps",
                   "BEEXBENCH_KERNELS_VERBOSE": False, "BEEXBENCH_ALLOW_FALLBACK": True, "BEEXBENCH_CPU_TDP_W": 45.0,
                   "BEEXBENCH_ISOLATED": True, "BEEXBENCH_NODE_NAME": "rack 7"}
    assert {name: settings.get(name, {name: ""}) for name in settings.PARSERS} == {
        "BEEXBENCH_CACHE": None, "BEEXBENCH_BUILD_TIMEOUT": 600.0, "BEEXBENCH_KERNELS": "auto",
        "BEEXBENCH_KERNELS_VERBOSE": False, "BEEXBENCH_ENGINE": "auto", "BEEXBENCH_ALLOW_FALLBACK": False,
        "BEEXBENCH_CPU_TDP_W": None, "BEEXBENCH_NODE_NAME": None, "BEEXBENCH_ISOLATED": False}


def test_problems_lists_every_bad_setting_at_once():
    found = settings.problems({"BEEXBENCH_BUILD_TIMEOUT": "nan", "BEEXBENCH_ENGINE": "x", "BEEXBENCH_KERNELS": "auto"})
    assert [line.split("=")[0] for line in found] == ["environment variable BEEXBENCH_BUILD_TIMEOUT",
                                                      "environment variable BEEXBENCH_ENGINE"]


def test_every_setting_the_code_reads_has_a_parser():
    """Every BEEXBENCH_* name in the package's source is a setting with a parser (or a name only
    the test suite reads), so validation's settings.problems() sees every one."""
    root = Path(settings.__file__).parent
    names = {m for f in root.rglob("*.py") for m in re.findall(r"BEEXBENCH_[A-Z0-9_]*[A-Z0-9]", f.read_text("utf-8"))}
    assert {"BEEXBENCH_CACHE", "BEEXBENCH_BUILD_TIMEOUT", "BEEXBENCH_CPU_TDP_W"} <= names
    assert names - set(settings.TEST_SUITE_ONLY) == set(settings.PARSERS)


@pytest.mark.parametrize("raw", ["nan", "soon", "-3"])
def test_bad_build_timeout_raises_never_falls_back(monkeypatch, tmp_path, raw):
    """Was: a bad BEEXBENCH_BUILD_TIMEOUT became the same silent Python fallback as a failed build."""
    monkeypatch.setenv(nb.TIMEOUT_ENV, raw)
    with pytest.raises(settings.SettingError, match=nb.TIMEOUT_ENV):
        nb.lock_timeout()
    # a fresh process with an empty cache takes the build path, where the timeout is read
    code = ("from beexbench.engine import _native\nfrom beexbench.errors import BeexError\n"
            "try:\n    _native._load()\nexcept BeexError as e:\n    print('ERR', e)\n"
            "else:\n    print('LOADED', _native._State.ops is not None, _native._State.reason)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BEEXBENCH_CACHE": str(tmp_path), nb.TIMEOUT_ENV: raw})
    assert out.stdout.startswith(f"ERR environment variable {nb.TIMEOUT_ENV}={raw!r}"), out.stdout + out.stderr


# -- the implementation record ----------------------------------------------------------------
def test_fast_path_is_recorded_without_fallback():
    impl = settle("m", fast_path=FAST, engine="native", isa="avx512", kernels="avx512-vpopcnt", reason=None)
    assert (impl.fallback, impl.allowed_by, impl.reason, impl.label) == (False, None, None, "")
    assert Implementation.from_dict(impl.to_dict()) == impl


def test_unavailable_fast_path_fails_with_reason_unless_allowed(monkeypatch):
    monkeypatch.delenv("BEEXBENCH_ALLOW_FALLBACK", raising=False)
    with pytest.raises(FastPathUnavailable) as err:
        settle("beexformer-packed", fast_path=FAST, engine="python", isa=None, kernels="avx2", reason="lock held 1s")
    assert str(err.value) == (
        f"beexformer-packed: its fast path ({FAST}) is unavailable: lock held 1s; fix that and re-run the cell "
        "(--resume), or set BEEXBENCH_ALLOW_FALLBACK=1 to measure the slower path, labelled as a fallback")
    assert isinstance(err.value, BeexError)
    monkeypatch.setenv("BEEXBENCH_ALLOW_FALLBACK", "1")
    impl = settle("beexformer-packed", fast_path=FAST, engine="python", isa=None, kernels="avx2", reason="lock held 1s")
    assert (impl.fallback, impl.allowed_by, impl.reason) == (True, "BEEXBENCH_ALLOW_FALLBACK=1", "lock held 1s")
    assert impl.label == "fallback: python engine, avx2 kernels"
    monkeypatch.setenv("BEEXBENCH_ALLOW_FALLBACK", "0")
    forced = settle("m", fast_path=FAST, engine="python", isa=None, kernels="torch-fallback", reason="forced",
                    forced_by="BEEXBENCH_KERNELS=fallback")
    assert forced.allowed_by == "BEEXBENCH_KERNELS=fallback" and forced.fallback


def test_inconsistent_implementation_is_refused_on_reading():
    doc = settle("m", fast_path=FAST, engine="native", isa="avx2", kernels="avx2", reason=None).to_dict()
    with pytest.raises(BeexError, match="inconsistent"):
        Implementation.from_dict({**doc, "fallback": True}, source="x.json", at="/metrics/implementation")
    with pytest.raises(BeexError, match="/metrics/implementation/engine is missing"):
        Implementation.from_dict({k: v for k, v in doc.items() if k != "engine"}, at="/metrics/implementation")


def test_adapter_without_declared_fast_path_runs_pytorch_and_a_bad_declaration_is_an_error():
    class Plain:
        name = "plain"

    class Odd:
        name = "odd"

        def implementation(self):
            return "fast"

    assert implementation_of(Plain()) == Implementation.pytorch()
    with pytest.raises(TypeError, match="odd.implementation"):
        implementation_of(Odd())


def test_older_records_without_implementation_still_read(tmp_path):
    path = os.path.join(os.path.dirname(__file__), "data", "v3-beexformer-classification.json")
    doc = json.load(open(path, encoding="utf-8"))
    m = CellMetrics.from_dict(doc["metrics"], version=3, null_reasons=doc.get("null_reasons"))
    assert m.implementation is None and "implementation" not in m.to_dict()
    impl = settle("m", fast_path=FAST, engine="python", isa=None, kernels="avx2", reason="r", forced_by="X=1")
    again = CellMetrics.from_dict({**doc["metrics"], "implementation": impl.to_dict()}, version=3,
                                  null_reasons=doc.get("null_reasons"))
    assert again.implementation == impl and again.to_dict()["implementation"] == impl.to_dict()


# -- batch sizes and lengths the test split cannot fill (defect 11) -----------------------------
def test_batch_sizes_larger_than_the_test_split_are_named():
    lat = LatencySettings(batch_sizes=[1, 4, 20, 64], seq_lens=[8, 128])
    assert skipped_sizes(lat, n_test=20, max_len=64) == [
        "batch_sweep: batch size 64 is larger than the test split (20 samples): not measured",
        "seq_len_sweep: length 128 exceeds the task's max_len 64: not measured"]


@pytest.mark.parametrize("isolate", [False, True])
def test_sweep_gaps_and_the_implementation_reach_the_record(tmp_path, isolate):
    """Was: a batch size larger than the test split was dropped without a word. Measured in this
    process and in a fresh one (whose sections travel back as JSON), the warning and the
    implementation are there."""
    import torch

    from beexbench.adapters.base import TaskSpec
    from beexbench.adapters.registry import create_model
    from beexbench.runner.isolate import measure_speed_by_threads
    from beexbench.targets import get_target
    from beexbench.training.batches import EncodedSplit

    spec = TaskSpec(task="gaps", num_labels=2, vocab_size=40, max_len=12)
    adapter = create_model("fp32", spec, {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 32}}, seed=0)
    ckpt = adapter.save(tmp_path / "fp32")
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(6, 12, dtype=torch.bool)
    test = EncodedSplit(torch.randint(1, 40, (6, 12), generator=g), mask, torch.zeros(6, dtype=torch.long))
    lat = LatencySettings(warmup=1, min_iters=3, min_seconds=0.0, max_seconds=2.0, batch_sizes=[1, 2, 64],
                          seq_lens=[8, 16], samples=4, isolate=isolate)
    speed, records, warnings = measure_speed_by_threads(adapter, ckpt, test, get_target("cpu", threads=1),
                                                        {"threads": 1}, lat, energy=False)
    assert [r.batch_size for r in speed.batch_sweep] == [2] and [r.seq_len for r in speed.seq_len_sweep] == [8]
    assert all(r.isolated == isolate for r in records)
    assert speed.implementation == Implementation.pytorch()
    assert [w for w in speed.warnings if "not measured" in w] == [
        "batch_sweep: batch size 64 is larger than the test split (6 samples): not measured",
        "seq_len_sweep: length 16 exceeds the task's max_len 12: not measured"]


# -- lock files (defect 5) ------------------------------------------------------------------------
def test_hard_linked_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    os.link(victim, tmp_path / "build.lock")
    with pytest.raises(BeexError, match="has 2 hard links"):
        with _io.exclusive_lock(tmp_path / "build.lock"):
            pytest.fail("took a hard-linked lock")
    assert victim.read_text() == "keep me"
    with pytest.raises(nb.NativeBuildError, match="hard links"):
        with nb.build_lock(tmp_path, "test build", timeout=1):
            pytest.fail("took a hard-linked build lock")
    assert victim.read_text() == "keep me"


def test_lock_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    (tmp_path / ".lock").write_text("")
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path / ".lock").st_uid + 1)
    with pytest.raises(BeexError, match="is owned by user id"):
        with _io.exclusive_lock(tmp_path / ".lock"):
            pytest.fail("took another user's lock")


def test_fifo_lock_is_refused(tmp_path):
    os.mkfifo(tmp_path / ".lock")
    with pytest.raises(BeexError, match="not a regular file"):
        with _io.exclusive_lock(tmp_path / ".lock"):
            pytest.fail("took a fifo as a lock")


# -- validation, through the real command (needs validate.check to call settings.problems()) ---------
def test_bad_settings_are_usage_errors_before_any_work(tmp_path):
    from conftest import write_tiny_suite

    suite = write_tiny_suite(tmp_path, models=("majority",))
    script = Path(sys.executable).with_name("beexbench")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "beexbench.cli"]
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"), "BEEXBENCH_BUILD_TIMEOUT": "nan",
           "BEEXBENCH_ENGINE": "fastest"}
    out = subprocess.run([*command, "run", "--config", str(suite)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if "BEEXBENCH_" in line]
    assert len(lines) == 2 and "BEEXBENCH_BUILD_TIMEOUT='nan'" in lines[0] and "BEEXBENCH_ENGINE='fastest'" in lines[1]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*/cells/*.json"))
