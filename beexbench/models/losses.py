"""How the exits' losses are combined during training (A9 and its ablation variants).

Each variant returns per-sample weights ``w[N, n_exits]`` summing to 1; the loss is
``mean_n sum_i w[n, i] * L_i[n]`` with L the per-sample cross-entropy, or the squared
error of standardized labels for regression (:mod:`beexbench.training.metrics`).

* ``soft_routing`` (A9 default): the exit rule, smoothed,
  s_i = sigmoid((delta - r_i) / tau) for i >= min_exit (0 before), where r_i is the
  fractional entropy reduction (classification) or the change of the prediction
  |y_i - y_{i-1}| in label standard deviations (regression: the prediction-change rule),
  q_i = s_i * prod_{j<i} (1 - s_j), the last exit takes the rest; mixed with a floor
  w = (1 - floor) * q + floor / n_exits so every exit keeps learning. The weights are
  computed from detached logits: they route each sample's loss, they are not trained.
* ``depth_weighted``: w_i proportional to i (PABEE).
* ``uniform``: w_i = 1 / n_exits.
* ``final``: only the last exit.
"""
from __future__ import annotations

import torch

from ..training.metrics import per_sample_loss
from .exits import entropy, fractional_entropy_reduction, prediction_change

LOSSES = ("soft_routing", "depth_weighted", "uniform", "final")


def exit_weights(
    kind: str,
    exit_logits: list[torch.Tensor],
    *,
    delta: float = 0.1,
    tau: float = 0.05,
    floor: float = 0.3,
    min_exit: int = 2,
    eps: float = 1e-6,
    regression: bool = False,
) -> torch.Tensor:
    n_exits, n = len(exit_logits), exit_logits[0].shape[0]
    device = exit_logits[0].device
    if kind == "uniform":
        return torch.full((n, n_exits), 1.0 / n_exits, device=device)
    if kind == "depth_weighted":
        w = torch.arange(1, n_exits + 1, dtype=torch.float32, device=device)
        return (w / w.sum()).expand(n, n_exits)
    if kind == "final":
        w = torch.zeros(n, n_exits, device=device)
        w[:, -1] = 1.0
        return w
    if kind != "soft_routing":
        raise ValueError(f"unknown exit loss '{kind}': use one of {LOSSES}")
    # the routing weights say which exits each sample's loss trains; they are not a target:
    # with gradient through them the model lowers the loss by moving the entropies (e.g.
    # keeping exit 1 uncertain so r_2 is large), not by classifying better
    exit_logits = [lg.detach() for lg in exit_logits]
    if not regression:
        h = torch.stack([entropy(lg) for lg in exit_logits], dim=1)  # [N, n_exits]
    q = torch.zeros(n, n_exits, device=device)
    remaining = torch.ones(n, device=device)
    for i in range(n_exits - 1):
        block = i + 1
        if block >= min_exit and i > 0:
            if regression:
                r = prediction_change(exit_logits[i].float(), exit_logits[i - 1].float())
            else:
                r = fractional_entropy_reduction(h[:, i - 1], h[:, i], eps)
            s = torch.sigmoid((delta - r) / tau)
        else:
            s = torch.zeros(n, device=device)
        q[:, i] = s * remaining
        remaining = remaining * (1 - s)
    q[:, -1] = remaining
    return (1 - floor) * q + floor / n_exits


def exit_loss(kind: str, exit_logits: list[torch.Tensor], labels: torch.Tensor, **kw) -> torch.Tensor:
    w = exit_weights(kind, exit_logits, regression=labels.is_floating_point(), **kw)
    per_exit = torch.stack([per_sample_loss(lg, labels) for lg in exit_logits], dim=1)
    return (w * per_exit).sum(1).mean()
