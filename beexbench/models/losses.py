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

The variants are the entries of :data:`EXIT_LOSSES`, a :class:`~beexbench._registry.Registry` of
functions ``f(exit_logits, *, delta, tau, floor, min_exit, eps, regression) -> w[N, n_exits]``
(every keyword is passed; take ``**kw`` for those not used). The built-ins are added on the
registry's first lookup (importing this module registers nothing); another variant comes in
through the ``beexbench.exit_losses`` entry-point group or ``register_exit_loss("name", fn)``,
and its name is then a valid ``loss.kind`` of a ModelSpec.
"""
from __future__ import annotations

from typing import Callable

import torch

from .._registry import Registry
from ._registration import registrar
from ..training.metrics import per_sample_loss, problem_of
from .exits import entropy, fractional_entropy_reduction, prediction_change

_BUILTIN_LOSSES = {kind: f"beexbench.models.losses:{fn}" for kind, fn in (
    ("soft_routing", "soft_routing_weights"), ("depth_weighted", "depth_weights"), ("uniform", "uniform_weights"),
    ("final", "final_weights"))}
LOSSES = tuple(_BUILTIN_LOSSES)  # the built-in names (LossSpec.kind's Literal type)
LOSS_ENTRY_POINT_GROUP = "beexbench.exit_losses"
EXIT_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("exit loss", entry_point_group=LOSS_ENTRY_POINT_GROUP,
                                                              builtins=_BUILTIN_LOSSES)
register_exit_loss = registrar(EXIT_LOSSES)


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
    """The weights of the variant registered as ``kind`` (:data:`EXIT_LOSSES`)."""
    if kind not in EXIT_LOSSES:
        raise ValueError(f"unknown exit loss '{kind}': use one of {tuple(EXIT_LOSSES.names(sort=False))}")
    return EXIT_LOSSES.get(kind)(exit_logits, delta=delta, tau=tau, floor=floor, min_exit=min_exit, eps=eps,
                                 regression=regression)


def uniform_weights(exit_logits: list[torch.Tensor], **_) -> torch.Tensor:
    n_exits, n = len(exit_logits), exit_logits[0].shape[0]
    return torch.full((n, n_exits), 1.0 / n_exits, device=exit_logits[0].device)


def depth_weights(exit_logits: list[torch.Tensor], **_) -> torch.Tensor:
    n_exits, n = len(exit_logits), exit_logits[0].shape[0]
    w = torch.arange(1, n_exits + 1, dtype=torch.float32, device=exit_logits[0].device)
    return (w / w.sum()).expand(n, n_exits)


def final_weights(exit_logits: list[torch.Tensor], **_) -> torch.Tensor:
    n_exits, n = len(exit_logits), exit_logits[0].shape[0]
    w = torch.zeros(n, n_exits, device=exit_logits[0].device)
    w[:, -1] = 1.0
    return w


def soft_routing_weights(exit_logits: list[torch.Tensor], *, delta: float = 0.1, tau: float = 0.05,
                         floor: float = 0.3, min_exit: int = 2, eps: float = 1e-6, regression: bool = False,
                         **_) -> torch.Tensor:
    n_exits, n = len(exit_logits), exit_logits[0].shape[0]
    device = exit_logits[0].device
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
    w = exit_weights(kind, exit_logits, regression=problem_of(labels) == "regression", **kw)  # labels follow the task (check_labels)
    per_exit = torch.stack([per_sample_loss(lg, labels) for lg in exit_logits], dim=1)
    return (w * per_exit).sum(1).mean()
