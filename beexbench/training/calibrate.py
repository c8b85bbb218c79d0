"""Exit-rule calibration on the validation split (never test) and the trade-off sweep."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..models.exits import ExitRule, simulate
from .batches import EncodedSplit
from .metrics import metric_name, score

# how a calibration picks its setting from the validation sweep (CalibrationSpec.objective):
# "cheapest-within-tolerance": the cheapest within ``tolerance`` of the no-exit score (the default);
# "accuracy-seeking": the best validation score, ties to the cheaper (the paper's exits that raise accuracy)
OBJECTIVES = ("cheapest-within-tolerance", "accuracy-seeking")
CostFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (exit_block, lengths) -> MACs per sample


@torch.no_grad()
def all_exit_logits(forward, split: EncodedSplit, batch_size: int = 256) -> torch.Tensor:
    """[n_exits, N, C] logits of every exit for every sample (all blocks run)."""
    chunks = [torch.stack(forward(b.input_ids, b.attention_mask)) for b in split.batches(batch_size)]
    return torch.cat(chunks, dim=1)


def sweep(
    rules: Sequence[ExitRule],
    logits: torch.Tensor,
    labels: torch.Tensor,
    lengths: torch.Tensor,
    cost_fn: CostFn | None = None,
    exit_blocks: list[int] | None = None,
) -> list[dict]:
    """Score (keyed by its metric: ``accuracy`` or ``pearson_r``), mean exit block, exit
    histogram and (with ``cost_fn``) mean MACs per rule."""
    n_blocks = max(exit_blocks) if exit_blocks else logits.shape[0]
    metric = metric_name(labels)
    rows = []
    for rule in rules:
        d = simulate(rule, logits, exit_blocks)
        row = {
            **rule.to_dict(),
            metric: score(d.logits, labels),
            "mean_exit_block": float(d.exit_block.float().mean()),
            "exit_histogram": torch.bincount(d.exit_block, minlength=n_blocks + 1)[1:].tolist(),
        }
        if cost_fn is not None:
            row["mean_macs"] = float(cost_fn(d.exit_block, lengths).double().mean())
        rows.append(row)
    return rows


def choose(rows: list[dict], reference: float, tolerance: float, metric: str = "accuracy",
           objective: str = OBJECTIVES[0]) -> int:
    """Index of the rule ``objective`` picks (:data:`OBJECTIVES`): the cheapest whose ``metric`` is
    within ``tolerance`` of the reference (the same model without exits; ties go to the
    better-scoring rule), or with ``"accuracy-seeking"`` the best-scoring one (ties to the cheaper)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"calibration objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    key = "mean_macs" if all("mean_macs" in r for r in rows) else "mean_exit_block"
    if objective == "accuracy-seeking":
        return min(range(len(rows)), key=lambda i: (-rows[i][metric], rows[i][key]))
    ok = [i for i, r in enumerate(rows) if r[metric] >= reference - tolerance]
    if not ok:
        ok = [max(range(len(rows)), key=lambda i: rows[i][metric])]
    return min(ok, key=lambda i: (rows[i][key], -rows[i][metric]))
