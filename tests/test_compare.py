"""`beexbench compare` (issue 29): paired deltas between two runs, the gate's exit status, and the
refusal to compare latency across machines."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from beexbench.compare import compare, parse_fail_on
from beexbench.errors import BeexError
from beexbench.results.costs import Latency
from beexbench.results.samples import Samples, split_digest
from test_report import make_record, write_run

N = 400
LABELS = np.arange(N) % 2


def _with(rec, *, correct: np.ndarray, latency_scale: float = 1.0, seed: int = 0, cpu: str | None = None):
    """``rec`` with per-sample outputs (``correct``: which samples it gets right) and 64 inputs x 4
    repeats of batch-1 latency whose per-input cost varies 3x (so pairing matters)."""
    rng = np.random.default_rng(seed)
    per_input = np.linspace(1.0, 3.0, 64)
    values = np.tile(per_input, 4) * latency_scale * rng.normal(1.0, 0.01, 256)
    lat = Latency.from_values(values.tolist(), timer="perf_counter_ns", threads=2, batch_size=1, n_inputs=64)
    pred = np.where(correct, LABELS, 1 - LABELS)
    samples = Samples.pack(pred, LABELS, np.full(N, 2), digest=split_digest(np.zeros((N, 4)), np.full(N, 4), LABELS),
                           regression=False)
    acc = float(correct.mean())
    m = rec.metrics
    m = dataclasses.replace(m, batch1=lat, latency_by_threads=(lat,), accuracy=dataclasses.replace(m.accuracy, value=acc, correct=int(correct.sum()), n=N),
                            extra={**m.extra, "samples": samples})
    out = dataclasses.replace(rec, metrics=m)
    if cpu:
        out.environment = {**out.environment, "cpu": {**out.environment["cpu"], "model": cpu}}
    return out


def _runs(tmp_path, new_correct, *, scale=1.0, cpu=None):
    base_correct = np.arange(N) % 5 != 0  # 80%
    base = [_with(make_record("fp32", n=N), correct=base_correct, seed=1)]
    new = [_with(make_record("fp32", n=N), correct=new_correct, latency_scale=scale, seed=2, cpu=cpu)]
    return write_run(tmp_path / "a", "base", base), write_run(tmp_path / "b", "new", new)


def test_compare_with_itself_is_not_distinguishable(tmp_path):
    a, b = _runs(tmp_path, np.arange(N) % 5 != 0)
    c = compare(a, b, fail_on="accuracy:-1pp,latency:+10%,size:+5%")
    acc, lat, size = c.cells[0].deltas
    assert acc.method.startswith("exact McNemar") and acc.change == 0 and acc.p_value == 1.0
    assert lat.method.startswith("paired bootstrap") and not lat.significant(c.alpha)
    assert size.exact and size.change == 1.0
    assert c.ok and not c.regressions


def test_compare_finds_a_slowdown_and_an_accuracy_drop(tmp_path):
    worse = (np.arange(N) % 5 != 0) & (np.arange(N) % 7 != 0)  # loses some samples, gains none
    a, b = _runs(tmp_path, worse, scale=1.25)
    c = compare(a, b, fail_on="accuracy:-1pp,latency:+10%")
    acc, lat = c.cells[0].deltas[:2]
    lost = int(((np.arange(N) % 5 != 0) & (np.arange(N) % 7 == 0)).sum())  # 46: right in base, wrong now
    assert lost == 46 and acc.change == pytest.approx(-lost / N)
    assert acc.p_value < 1e-6 and lat.change == pytest.approx(1.25, rel=0.02) and lat.lo > 1.1
    assert len(c.regressions) == 2 and not c.ok


def test_change_inside_threshold_passes(tmp_path):
    a, b = _runs(tmp_path, np.arange(N) % 5 != 0, scale=1.05)  # 5% slower: real, but inside +10%
    c = compare(a, b, fail_on="latency:+10%")
    lat = c.cells[0].deltas[1]
    assert lat.significant(c.alpha) and c.ok


def test_latency_refused_across_machines(tmp_path):
    a, b = _runs(tmp_path, np.arange(N) % 5 != 0, scale=2.0, cpu="Another CPU")
    c = compare(a, b, fail_on="latency:+10%")
    assert [d.metric for d in c.cells[0].deltas] == ["accuracy", "size"] and c.ok
    assert "machines differ" in c.cells[0].notes[0]
    c2 = compare(a, b, fail_on="latency:+10%", cross_host=True)
    assert not c2.ok


def test_unpaired_records_say_so(tmp_path):
    a = write_run(tmp_path / "a", "base", [make_record("fp32", acc=0.80, n=N)])
    b = write_run(tmp_path / "b", "new", [make_record("fp32", acc=0.70, n=N)])
    acc = compare(a, b).cells[0].deltas[0]
    assert acc.method.startswith("unpaired") and acc.change == pytest.approx(-0.10) and acc.p_value < 0.01


@pytest.mark.parametrize("text, problem", [("accuracy:-1%", "in pp"), ("speed:+1%", "unknown metric"),
                                           ("latency:10%", "cannot read"), ("latency:+0%", "zero"),
                                           ("latency:+1%,latency:+2%", "twice")])
def test_fail_on_refuses_bad_thresholds(text, problem):
    with pytest.raises(BeexError, match=problem):
        parse_fail_on(text)


def test_cli_exit_status(tmp_path):
    a, b = _runs(tmp_path, np.arange(N) % 5 != 0, scale=1.5)
    cmd = [sys.executable, "-c", "from beexbench.cli import main; main()", "compare", str(a), str(b)]
    slow = subprocess.run([*cmd, "--fail-on", "latency:+10%", "--out", str(tmp_path / "s.md")], capture_output=True, text=True)
    assert slow.returncode == 1, slow.stderr
    assert "REGRESSION" in slow.stdout and "latency" in (tmp_path / "s.md").read_text()
    same = subprocess.run([*cmd[:-1], str(a), "--fail-on", "latency:+10%"], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    bad = subprocess.run([*cmd, "--fail-on", "latency:ten"], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_a_real_run_against_a_deliberately_slowed_model_fails_the_gate(tmp_path, monkeypatch):
    """End to end: the same tiny suite run twice (the second reuses the trained model from the
    model store) with a model whose predict sleeps 3 ms in the second run only: `beexbench compare`
    finds the latency regression (exit 1) and no accuracy change; the base against itself exits 0."""
    import time

    from baselines.fp32 import FP32
    from beexbench.adapters.registry import ADAPTERS, register_model
    from beexbench.config import load_config
    from beexbench.runner import run_suite
    from conftest import write_tiny_suite

    class Sleepy(FP32):
        """fp32 with an optional sleep in predict (the regression this test plants)."""

        name = "sleepy-fp32"
        sleep_s = 0.0

        def predict(self, input_ids, attention_mask):
            if type(self).sleep_s:
                time.sleep(type(self).sleep_s)
            return super().predict(input_ids, attention_mask)

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    ADAPTERS.unregister(Sleepy.name)
    register_model(Sleepy.name)(Sleepy)
    try:
        suite = write_tiny_suite(tmp_path, models=(Sleepy.name,))
        base = run_suite(load_config(config_file=suite, run_id="base")).run_dir
        Sleepy.sleep_s = 0.003
        slow = run_suite(load_config(config_file=suite, run_id="slow")).run_dir
    finally:
        ADAPTERS.unregister(Sleepy.name)
    c = compare(base, slow, fail_on="accuracy:-1pp,latency:+10%")
    acc, lat = c.cells[0].deltas[:2]
    assert acc.change == 0 and acc.method.startswith("exact McNemar")
    assert lat.change > 1.5 and lat.method.startswith("paired bootstrap") and not c.ok
    assert [r.split(": ")[1].split()[0] for r in c.regressions] == ["latency"]
    cmd = [sys.executable, "-c", "from beexbench.cli import main; main()", "compare"]
    assert subprocess.run([*cmd, str(base), str(slow), "--fail-on", "latency:+10%"], capture_output=True).returncode == 1
    assert subprocess.run([*cmd, str(base), str(base), "--fail-on", "latency:+10%"], capture_output=True).returncode == 0


def test_latency_is_compared_at_a_thread_setting_both_measured(tmp_path):
    """Each run's headline is its fastest setting; when they differ (1 vs 2 threads), compare reads both
    cells at the base's setting from latency_by_threads instead of refusing or mixing settings."""
    def two_settings(rec, one_ms, two_ms, headline):
        lat = {t: Latency.from_values([ms] * 8, timer="perf_counter_ns", threads=t, batch_size=1, n_inputs=4)
               for t, ms in ((1, one_ms), (2, two_ms))}
        m = dataclasses.replace(rec.metrics, batch1=lat[headline], latency_by_threads=(lat[1], lat[2]))
        return dataclasses.replace(rec, metrics=m)

    a = write_run(tmp_path / "a", "base", [two_settings(make_record("fp32", n=N), 1.0, 1.2, headline=1)])
    b = write_run(tmp_path / "b", "new", [two_settings(make_record("fp32", n=N), 1.5, 0.9, headline=2)])
    cell = compare(a, b).cells[0]
    lat = next(d for d in cell.deltas if d.metric == "latency")
    assert (lat.base, lat.new) == (1.0, 1.5) and not cell.notes  # 1 thread on both sides, not 1.0 vs 0.9
