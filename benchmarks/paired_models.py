"""Two models of the same run(s), sample by sample: per seed an exact McNemar on the test split
(from each cell's per-sample outputs, schema 4), across seeds a paired t of the accuracy
difference, Holm over every comparison printed. An independent check of the report's pairwise
sentences (it reads the records and calls scipy through beexbench.stats, nothing of the report).

    python benchmarks/paired_models.py --results /tmp/res --a fp32 --b beexformer [--task rotten_tomatoes]
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from beexbench.results.export import unique_cells
from beexbench.results.store import load_records
from beexbench.stats import adjust, mcnemar, seed_difference


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, nargs="+", required=True)
    ap.add_argument("--a", required=True, help="the reference model")
    ap.add_argument("--b", required=True, help="the model compared with it")
    ap.add_argument("--task", default=None)
    args = ap.parse_args()
    recs, _ = unique_cells(load_records(args.results))
    by = defaultdict(dict)  # (task, target, setting) -> {(model, seed): record}
    for r in recs:
        if r.status == "ok" and r.key.model in (args.a, args.b) and (args.task is None or r.key.task == args.task):
            by[(r.key.task, r.key.target, r.key.setting)][(r.key.model, r.key.seed)] = r
    lines, pvals = [], []
    for (task, target, setting), cells in sorted(by.items()):
        seeds = sorted({s for m, s in cells if (args.a, s) in cells and (args.b, s) in cells})
        acc_a, acc_b = [], []
        for s in seeds:
            ra, rb = cells[(args.a, s)], cells[(args.b, s)]
            sa, sb = ra.metrics.extra.get("samples"), rb.metrics.extra.get("samples")
            acc_a.append(ra.metrics.accuracy.value)
            acc_b.append(rb.metrics.accuracy.value)
            if sa is None or sb is None or isinstance(sa, dict) or sa.split_digest != sb.split_digest:
                lines.append((f"{task} {target} seed {s}: no shared per-sample outputs (records before schema 4?)", None))
                continue
            t = mcnemar(sa.correct(), sb.correct())
            pvals.append(t.p_value)
            lines.append((f"{task} {target} seed {s}: {args.a} {acc_a[-1]:.4f} vs {args.b} {acc_b[-1]:.4f}: "
                          f"{t.delta * 100:+.2f} pp [{t.delta_lo * 100:+.2f}, {t.delta_hi * 100:+.2f}], "
                          f"discordant {t.only_a}/{t.only_b}, exact McNemar p = {t.p_value:.3g}", len(pvals) - 1))
        if len(seeds) >= 2:
            d = seed_difference(acc_a, acc_b)
            pvals.append(d.p_value)
            lines.append((f"{task} {target} over seeds {seeds}: mean {d.mean * 100:+.2f} pp "
                          f"[{d.lo * 100:+.2f}, {d.hi * 100:+.2f}] (paired t, n={d.n}), p = {d.p_value:.3g}", len(pvals) - 1))
    adjusted = adjust(pvals, "holm") if pvals else []
    for text, i in lines:
        if i is None:
            print(text)
        else:
            verdict = "distinguishable" if adjusted[i] < 0.05 else "not distinguishable"
            print(f"{text}; Holm-adjusted p = {adjusted[i]:.3g} over {len(pvals)} comparisons: {verdict}")


if __name__ == "__main__":
    main()
