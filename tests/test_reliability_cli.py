"""Issue 15: honest exit statuses from the real ``beexbench`` command, and one-line errors for
everything a user causes (usage errors of whichever click typer bundles, bad configuration,
broken plugins, refused writes, ``--resume`` with flags that would change the run).

Exit statuses: 0 every cell ok, 1 some cells failed, 2 usage or configuration error,
3 a write refused (disk full, read-only, no permission), 130 interrupted (resumable)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from beexbench.cli import click_exceptions, run_cli
from beexbench.results.store import RunDir
from conftest import write_tiny_suite

PLUGIN = '''
import os, time
from baselines.floors import Majority


class FailingFloor(Majority):
    """Test plugin: its fit always fails."""

    def fit(self, *args, **kwargs):
        raise RuntimeError("this model always fails")


class SlowFloor(Majority):
    """Test plugin: with BEEX_TEST_MARKER set, fit writes that file and waits to be interrupted."""

    def fit(self, *args, **kwargs):
        marker = os.environ.get("BEEX_TEST_MARKER")
        if marker:
            open(marker, "w").close()
            time.sleep(120)
        return super().fit(*args, **kwargs)
'''
ENTRY_POINTS = """[beexbench.adapters]
failing-floor = beex_reliability_plugin:FailingFloor
slow-floor = beex_reliability_plugin:SlowFloor
broken-at-import = beex_reliability_broken:Model
"""


@pytest.fixture
def plugin_path(tmp_path_factory) -> Path:
    """A plugin package (models that fail, wait, or raise at import) installed by PYTHONPATH."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "beex_reliability_plugin.py").write_text(PLUGIN)
    (root / "beex_reliability_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    info = root / "beex_reliability_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beex-reliability-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _command() -> list[str]:
    """The installed console script (the real entry point), else the same main() by module."""
    script = Path(sys.executable).with_name("beexbench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "beexbench.cli"]


def _env(tmp_path: Path, plugin: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"), **extra}
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), env.get("PYTHONPATH")) if p)
    return env


def beexbench(tmp_path: Path, *args: str, plugin: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, env=_env(tmp_path, plugin, **env), timeout=300)


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()]


# -- the real command, as a subprocess ---------------------------------------------------
def test_unknown_flag_is_one_line_and_status_2(tmp_path):
    out = beexbench(tmp_path, "run", "--bogus")
    assert out.returncode == 2
    assert _error_lines(out.stderr) == ["error: No such option: --bogus (see `beexbench run --help`)"]


def test_bad_list_value_is_one_line_and_status_2(tmp_path):
    out = beexbench(tmp_path, "run", "--suite", "smoke", "--seeds", "a,b")
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert line.startswith("error: Invalid value for --seeds:") and "'a,b'" in line


def test_bad_config_lists_every_problem_and_status_2(tmp_path):
    """Nothing is loaded or trained: the smoke suite's task is never fetched (no network here)."""
    bad = tmp_path / "bad.toml"
    bad.write_text('models = ["fp32", "beexformr"]\ntasks = ["rotten_tomatoes"]\n'
                   "[model.encoder]\nn_heads = 3\nestimator = \"gg\"\n[model.train]\nepochs = 0\nlr = -1.0\n")
    out = beexbench(tmp_path, "run", "--config", str(bad), "--threads", "100000", "--batch-sizes", "0")
    assert out.returncode == 2
    lines = _error_lines(out.stderr)
    assert all(line.startswith("error: ") for line in lines) and len(lines) == 7, lines
    for expected in ("'threads' is 100000", "'latency.batch_sizes (--batch-sizes)' must be an integer >= 1, got 0",
                     "unknown model 'beexformr'", "'model.encoder.d_model' (128) must be divisible by 'model.encoder.n_heads' (3)",
                     "'model.encoder.estimator' is 'gg'", "'model.train.epochs' must be an integer >= 1, got 0",
                     "'model.train.lr' must be a finite number > 0, got -1.0"):
        assert any(expected in line for line in lines), expected
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_plugin_that_raises_at_import_is_one_line(tmp_path, plugin_path):
    out = beexbench(tmp_path, "run", "--suite", "smoke", "--models", "broken-at-import", plugin=plugin_path)
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert line.startswith("error: cannot load 'broken-at-import' from beex_reliability_broken:Model")
    assert "RuntimeError: this plugin is broken" in line and "reinstall the package that provides it or remove it" in line
    listed = beexbench(tmp_path, "list", "models", "--format", "json", plugin=plugin_path)
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m["description"] for m in json.loads(listed.stdout)["models"]}
    assert models["broken-at-import"].startswith("[broken: cannot load 'broken-at-import'") and models["fp32"]


def test_status_is_0_when_every_cell_is_ok_and_1_when_a_cell_failed(tmp_path, plugin_path):
    suite = write_tiny_suite(tmp_path, models=("majority",))
    ok = beexbench(tmp_path, "run", "--config", str(suite), "--format", "json", plugin=plugin_path)
    assert ok.returncode == 0, ok.stderr
    failed = beexbench(tmp_path, "run", "--config", str(suite), "--models", "failing-floor,majority", "--format", "json",
                       plugin=plugin_path)
    assert failed.returncode == 1, failed.stderr
    summary = json.loads(failed.stdout[failed.stdout.index("{"):])
    assert [c["cell"].split("__")[0] for c in summary["failed"]] == ["failing-floor"]
    assert "RuntimeError: this model always fails" in summary["failed"][0]["error"]
    assert summary["written"] and len(summary["written"]) == 2  # the ok cell was still measured and saved
    last = _error_lines(failed.stderr)[-1]
    assert last.startswith("error: 1 cell(s) failed: failing-floor") and "--resume" in last


def test_train_goes_on_past_a_failing_model_and_exits_1(tmp_path, plugin_path):
    suite = write_tiny_suite(tmp_path, models=("majority",))
    out = beexbench(tmp_path, "train", "--config", str(suite), "--models", "failing-floor,majority", "--no-floors",
                    "--out", str(tmp_path / "store"), plugin=plugin_path)
    assert out.returncode == 1, out.stderr
    (stored,) = out.stdout.split()
    assert "majority" in stored and Path(stored).is_dir()  # the model after the failing one was still trained
    last = _error_lines(out.stderr)[-1]
    assert last.startswith("error: failing-floor on ") and "RuntimeError: this model always fails" in last


def test_ctrl_c_exits_130_and_the_run_resumes(tmp_path, plugin_path):
    suite = write_tiny_suite(tmp_path, models=("majority", "slow-floor"))
    marker = tmp_path / "fitting"
    args = [*_command(), "run", "--config", str(suite)]
    # a shell that starts a job in the background (nohup ... &) leaves SIGINT ignored, and the
    # child would inherit that: give it the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path, plugin_path, BEEX_TEST_MARKER=str(marker)),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert _error_lines(stderr)[-1].startswith("interrupted: finished cells are saved")
    (run_dir,) = (tmp_path / "results").iterdir()
    assert [c.key.model for c in RunDir(run_dir).cells()] == ["majority"]  # the finished cell was kept
    again = beexbench(tmp_path, "run", "--config", str(suite), "--format", "json", plugin=plugin_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert summary["run_dir"] == str(run_dir) and [s.split("__")[0] for s in summary["written"]] == ["slow-floor"]
    assert RunDir(run_dir).finished


# -- in process: refused writes, --resume, threads ------------------------------------------
def _run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    code = run_cli(argv)
    return code, _error_lines(capsys.readouterr().err)


@pytest.mark.parametrize("code,reason,advice", [
    (errno.ENOSPC, "No space left on device", "free space, or write elsewhere"),
    (errno.EROFS, "Read-only file system", "write to a writable folder"),
    (errno.EACCES, "Permission denied", "fix its permissions, or use a folder you may write"),
])
def test_a_refused_write_is_one_line_and_status_3(tmp_path, monkeypatch, capsys, code, reason, advice):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))

    def refuse(self, doc):
        raise OSError(code, reason, str(self.path / "run.json"))

    monkeypatch.setattr(RunDir, "write_run", refuse)
    status, lines = _run(capsys, ["run", "--config", str(write_tiny_suite(tmp_path, models=("majority",)))])
    assert status == 3 and len(lines) == 1
    assert lines[0].startswith(f"error: {tmp_path / 'results'}/")
    assert lines[0].endswith(f"/run.json: {reason}: {advice} (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)")


def test_resume_refuses_flags_that_change_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_tiny_suite(tmp_path, models=("majority",))
    assert _run(capsys, ["run", "--config", str(suite), "--format", "json"])[0] == 0
    (run_dir,) = (tmp_path / "results").iterdir()
    status, lines = _run(capsys, ["run", "--resume", str(run_dir), "--threads", "1", "--models", "fp32"])
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: --resume finishes {run_dir} with the configuration it was started with")
    assert "change models, threads: drop them, or start a new run without --resume" in lines[0]
    status, lines = _run(capsys, ["run", "--resume", str(run_dir), "--run-id", "other"])
    assert status == 2 and "change --run-id" in lines[0]
    status, lines = _run(capsys, ["run", "--resume", str(run_dir), "--fresh"])
    assert status == 2 and lines == ["error: --fresh starts a new run and --resume finishes an old one: give only one of them"]
    # flags that agree with the run's own configuration are fine
    status, lines = _run(capsys, ["run", "--resume", str(run_dir), "--models", "majority", "--results", str(tmp_path / "results"),
                                  "--format", "json"])
    assert status == 0, lines
    status, lines = _run(capsys, ["run", "--resume", str(tmp_path), "--format", "json"])
    assert status == 2 and "is not a beexbench run folder" in lines[0]


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_thread_counts_outside_the_usable_cores_are_usage_errors(tmp_path, monkeypatch, capsys, threads):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    status, lines = _run(capsys, ["run", "--suite", "smoke", "--threads", threads])
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"error: 'threads' is {threads}, but this process may use")


def test_usage_errors_are_recognised_from_the_click_typer_bundles():
    assert isinstance(typer.BadParameter("x"), click_exceptions())
