"""How close the Server scenario's QPS search comes to the analytic answer (issue 31): a toy model
that sleeps D per query (an M/D/1 queue with one row per batch), bound 10 D, judged by LoadGen, at
the test's probe length (500 queries) and a longer one; the analytic QPS is Erlang's M/D/1 p99.

    python benchmarks/server_search.py [--queries 500 3000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_scenarios import D, md1_qps_at_p99, sleeper  # noqa: E402  (the test's toy and reference)

from beexbench.profilers.scenarios import ScenarioPlan, run_scenarios  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, nargs="+", default=[500, 3000], help="queries per Server probe")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"{'queries/probe':>13s} {'found QPS':>10s} {'analytic':>9s} {'found/analytic':>15s} verdict")
    for q in args.queries:
        for _ in range(args.repeats):
            plan = ScenarioPlan(scenarios=("single-stream", "offline", "server"), min_seconds=0.3, max_seconds=60.0, min_queries=64,
                                server_min_queries=q, offline_batch_sizes=(1,), server_bound_ms=10 * D * 1e3,
                                server_max_batch=1, server_wait_ms=0.0, server_probes=5)
            s = run_scenarios(sleeper(), plan, load=lambda: 0.0)
            service = 1 / s.get("offline").search[0].achieved  # sleep + call overhead, measured warm (after SingleStream)
            srv, analytic = s.get("server"), md1_qps_at_p99(10 * D, service)
            found = srv.value or float("nan")
            print(f"{q:13d} {found:10.1f} {analytic:9.1f} {found / analytic:15.3f} {srv.validity}")


if __name__ == "__main__":
    main()
