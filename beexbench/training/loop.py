"""The shared training loop: AdamW, warm-up then cosine/linear decay, gradient
clipping, fixed seeds, and model selection on the validation split."""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
from torch import nn

from ..errors import TrainingDiverged
from ..progress import NULL_PROGRESS, Progress
from .batches import Batch, EncodedSplit
from .config import TrainConfig
from .metrics import metric_name, score

SCHEDULES = ("cosine", "linear")


def make_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    warmup = max(1, int(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * t)) if cfg.schedule == "cosine" else max(0.0, 1 - t)

    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{cfg.schedule}': use one of {', '.join(SCHEDULES)}")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _finite(loss: float, epoch: int, step: int, cfg: TrainConfig) -> float:
    """``loss``, when finite: a non-finite loss means training diverged, so the cell stops
    before anything is selected or saved."""
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: the loss is {loss} at epoch {epoch}, step {step} (lr {cfg.lr}): "
            "lower model.train.lr or check the task's labels")
    return loss


@torch.no_grad()
def final_exit_score(model: nn.Module, split: EncodedSplit, batch_size: int = 256) -> float:
    """Accuracy (or Pearson r) of the last exit over the whole split."""
    was_training = model.training
    model.eval()
    outputs = torch.cat([model(b.input_ids, b.attention_mask)[-1] for b in split.batches(batch_size)])
    model.train(was_training)
    return score(outputs, split.labels)


def train(
    model: nn.Module,
    loss_fn: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor],
    train_split: EncodedSplit,
    val_split: EncodedSplit,
    cfg: TrainConfig,
    *,
    description: str = "train",
    progress: Progress = NULL_PROGRESS,
    select: Callable[[nn.Module], float] | None = None,
    selected_by: str = "final exit",
    distill: Callable[[list[torch.Tensor], Batch], torch.Tensor] | None = None,
) -> dict:
    """Train in place; load the epoch with the best validation score ``select(model)``
    (default: the final exit's accuracy, or Pearson r for regression; an early-exit model
    passes its deployed rule's score). ``cfg.patience`` > 0 stops once that many epochs in
    a row did not improve it. ``distill(exit_logits, batch)``: extra loss terms from a teacher
    (:class:`~beexbench.training.distill.Distiller`), added to ``loss_fn``'s."""
    if cfg.epochs < 1:
        raise ValueError(f"train.epochs must be at least 1, got {cfg.epochs}")
    select = select or (lambda m: final_exit_score(m, val_split))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.max_train_examples:
        idx = torch.randperm(len(train_split), generator=gen)[: cfg.max_train_examples]
        train_split = EncodedSplit(train_split.input_ids[idx], train_split.attention_mask[idx], train_split.labels[idx])
    steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt, sched = make_optimizer(model, cfg, total)
    best_acc, best_epoch, best_state, history, stopped_early = -math.inf, 0, None, [], False
    metric = metric_name(val_split.labels)
    start = time.perf_counter()
    with progress.task(description, total=total) as task:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            running, n = 0.0, 0
            batch: Batch
            for batch in train_split.batches(cfg.batch_size, shuffle=True, generator=gen, bucket=cfg.length_buckets):
                outputs = model(batch.input_ids, batch.attention_mask)
                loss = loss_fn(outputs, batch.labels)
                if distill is not None:
                    loss = loss + distill(outputs, batch)
                value = _finite(loss.item(), epoch, n + 1, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                opt.step()
                sched.step()
                running, n = running + value, n + 1
                task.advance(1, loss=f"{running / n:.3f}")
            model.eval()
            with torch.no_grad():
                acc = select(model)
            history.append({"epoch": epoch, "train_loss": running / max(1, n), "val_accuracy": acc})
            progress.log(f"{description}: epoch {epoch} loss {running / max(1, n):.4f} val {metric} {acc:.4f} ({selected_by})")
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif cfg.patience and epoch - best_epoch >= cfg.patience:
                stopped_early = True
                task.advance(total - epoch * steps_per_epoch)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {
        "epochs": len(history),
        "steps": len(history) * steps_per_epoch,
        "seconds": time.perf_counter() - start,
        "best_epoch": best_epoch,
        "val_accuracy": best_acc,
        "val_metric": metric,
        "history": tuple(history),
        "selected_by": selected_by,
        "stopped_early": stopped_early,
    }
