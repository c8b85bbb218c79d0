"""MLPerf LoadGen (``mlcommons-loadgen``, extra ``[loadgen]``) as the scenarios' traffic generator and
judge. Each run is one ``StartTestWithLogSettings`` in performance mode, logging into a temporary
folder; the verdict, its reasons and the figures are read back from LoadGen's own summary
(``mlperf_log_summary.txt``): ``Result is : VALID|INVALID``, each ``... satisfied : Yes|NO`` line,
the early-stopping lines, the percentiles. Nothing here decides validity: LoadGen does.

LoadGen calls ``issue_queries`` from its own thread: SingleStream and Offline serve the queries in
that call (LoadGen waits for them anyway); Server hands each query to the dynamic batcher
(:class:`~beexbench.profilers._traffic.Batcher`), whose thread completes them."""
from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

from ._traffic import Batcher, Limits, Outcome, Workload

MAX_SUMMARY_BYTES = 1 << 20


def available() -> bool:
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("mlcommons-loadgen")
    except PackageNotFoundError:
        return "unknown version"


def _number(text: str, label: str) -> float | None:
    m = re.search(re.escape(label) + r"\s*:\s*([0-9.eE+-]+)", text)
    return float(m.group(1)) if m else None


def parse_summary(text: str) -> dict:
    """The figures and the verdict of one LoadGen summary (``mlperf_log_summary.txt``)."""
    verdict = re.search(r"Result is\s*:\s*(VALID|INVALID)", text)
    if verdict is None:
        raise RuntimeError("LoadGen wrote no verdict ('Result is : ...') in its summary")
    checks = {m.group(1).strip(): m.group(2) == "Yes" for m in re.finditer(r"\n\s*([A-Za-z ]+?) satisfied\s*:\s*(Yes|NO)", text)}
    reasons = [f"LoadGen: {name.lower()} not satisfied" for name, ok in checks.items() if not ok]
    if checks.get("Early stopping") is False:
        block = text.split("Early Stopping Result:", 1)[-1].split("\n\n", 1)[0]
        detail = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if detail:
            reasons.append(f"LoadGen early stopping: {detail.lstrip('* ').replace(' * ', '; ')}")
    ns = lambda label: (v / 1e6 if (v := _number(text, label)) is not None else None)  # noqa: E731
    return {"valid": verdict.group(1) == "VALID", "reasons": reasons, "checks": checks,
            "p50_ms": ns("50.00 percentile latency (ns)"), "p90_ms": ns("90.00 percentile latency (ns)"),
            "p99_ms": ns("99.00 percentile latency (ns)"),
            "sps": _number(text, "Samples per second") or _number(text, "Completed samples per second")
            or _number(text, "QPS w/o loadgen overhead")}


class LoadGenGenerator:
    """Runs each scenario through LoadGen; one test at a time (LoadGen is process-global)."""

    _lock = threading.Lock()

    def __init__(self, seed: int = 0):
        import mlperf_loadgen  # noqa: F401 - fails here, not mid-run, when it is missing

        self.seed = seed
        self.label = f"loadgen {version()}"

    def _run(self, w: Workload, limits: Limits, scenario: str, configure, issue) -> Outcome:
        import mlperf_loadgen as lg

        s = lg.TestSettings()
        s.scenario = {"single-stream": lg.TestScenario.SingleStream, "offline": lg.TestScenario.Offline,
                      "server": lg.TestScenario.Server}[scenario]
        s.mode = lg.TestMode.PerformanceOnly
        s.min_duration_ms = int(limits.min_seconds * 1e3)
        s.max_duration_ms = max(int(limits.max_seconds * 1e3), 1)
        s.min_query_count = limits.min_queries
        s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = self.seed
        configure(s)
        with self._lock, tempfile.TemporaryDirectory(prefix="beexbench-loadgen-") as tmp:
            log = lg.LogSettings()
            log.log_output.outdir = tmp
            log.log_output.copy_summary_to_stdout = False
            log.enable_trace = False
            sut = lg.ConstructSUT(issue, lambda: None)
            qsl = lg.ConstructQSL(w.n, w.n, lambda ids: None, lambda ids: None)
            try:
                lg.StartTestWithLogSettings(sut, qsl, s, log)
            finally:
                lg.DestroyQSL(qsl)
                lg.DestroySUT(sut)
            path = Path(tmp) / "mlperf_log_summary.txt"
            if not path.is_file():
                raise RuntimeError("LoadGen wrote no summary")
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_SUMMARY_BYTES)
        got = parse_summary(text)
        # the query count and wall time are counted by the caller (_counted)
        return Outcome(got["sps"] or 0.0, got["p50_ms"], got["p90_ms"], got["p99_ms"], 0, 0.0, got["valid"], got["reasons"],
                       got["checks"].get("Performance constraints") if scenario == "server" else None)

    @staticmethod
    def _complete(samples) -> None:
        import mlperf_loadgen as lg

        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in samples])

    def _counted(self, w: Workload, limits: Limits, scenario: str, configure, issue, served: list) -> Outcome:
        import time

        start = time.perf_counter()
        out = self._run(w, limits, scenario, configure, issue)
        out.n_queries, out.duration_s = served[0], time.perf_counter() - start
        return out

    def single_stream(self, w: Workload, limits: Limits, expected_ms: float) -> Outcome:
        served = [0]

        def issue(samples):
            w.run([q.index for q in samples])
            served[0] += len(samples)
            self._complete(samples)

        def configure(s):
            s.single_stream_expected_latency_ns = max(int(expected_ms * 1e6), 1)

        return self._counted(w, limits, "single-stream", configure, issue, served)

    def offline(self, w: Workload, limits: Limits, batch_size: int, expected_sps: float) -> Outcome:
        served = [0]

        def issue(samples):
            for i in range(0, len(samples), batch_size):
                chunk = samples[i:i + batch_size]
                w.run([q.index for q in chunk])
                served[0] += len(chunk)
                self._complete(chunk)

        def configure(s):
            s.offline_expected_qps = max(float(expected_sps), 1.0)

        return self._counted(w, limits, "offline", configure, issue, served)

    def server(self, w: Workload, limits: Limits, qps: float, bound_ms: float, max_batch: int, wait_ms: float) -> Outcome:
        import time

        served = [0]

        def done(items):
            served[0] += len(items)
            self._complete([it[2] for it in items])

        batcher = Batcher(w, max_batch, wait_ms, done)

        def issue(samples):
            now = time.perf_counter()
            for q in samples:
                batcher.submit((q.index, now, q))

        def configure(s):
            s.server_target_qps = float(qps)
            s.server_target_latency_ns = max(int(bound_ms * 1e6), 1)
            s.server_target_latency_percentile = 0.99

        try:
            return self._counted(w, limits, "server", configure, issue, served)
        finally:
            batcher.close()
